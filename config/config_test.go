package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/config"
)

func writeConfig(content string) string {
	path := filepath.Join(GinkgoT().TempDir(), "iris.yml")
	Expect(os.WriteFile(path, []byte(content), 0o600)).To(Succeed())
	return path
}

// jsonKeys lists the YAML keys of a struct type, recursing into nested structs.
func jsonKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := strings.Split(f.Tag.Get("json"), ",")[0]
		keys = append(keys, key)
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, jsonKeys(f.Type)...)
		}
	}
	return keys
}

var _ = Describe("Config", func() {
	It("loads the annotated example, which documents every key", func() {
		cfg, err := config.Load("iris.example.yml")
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.DefaultNamespace()).To(Equal("cf-workloads"))
		Expect(cfg.API.TLSListenAddress).To(Equal("0.0.0.0:8086"))

		example, err := os.ReadFile("iris.example.yml")
		Expect(err).NotTo(HaveOccurred())
		for _, key := range jsonKeys(reflect.TypeOf(config.Config{})) {
			Expect(string(example)).To(ContainSubstring(key+":"), "key %q is not documented", key)
		}
	})

	It("loads the dev config", func() {
		_, err := config.Load("dev.yml")
		Expect(err).NotTo(HaveOccurred())
	})

	It("fills defaults for keys not given", func() {
		cfg, err := config.Load(writeConfig("components: [api]\napi:\n  listen_address: 127.0.0.1:1\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.LRP.AppUID).To(Equal(int64(2000)))
		Expect(cfg.API.MaxRequestBodyBytes).To(BeNumerically(">", 0))
		Expect(cfg.Runs(config.ComponentAPI)).To(BeTrue())
	})

	It("lets staging pods trust Iris's server certificate when they reach it over https and no CA is given", func() {
		tls := "components: [api]\napi:\n  tls_listen_address: 127.0.0.1:1\n  tls_cert_file: /etc/iris/tls/tls.crt\n  tls_key_file: k\n  client_ca_file: c\n"
		cfg, err := config.Load(writeConfig(tls + "staging:\n  iris_url: https://iris:8086\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.Staging.IrisCAFile).To(Equal("/etc/iris/tls/tls.crt"))
		cfg, err = config.Load(writeConfig(tls + "staging:\n  iris_url: https://iris:8086\n  iris_ca_file: /etc/iris/tls/ca.crt\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.Staging.IrisCAFile).To(Equal("/etc/iris/tls/ca.crt"))
		cfg, err = config.Load(writeConfig(tls + "staging:\n  iris_url: http://iris:8085\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.Staging.IrisCAFile).To(BeEmpty())
	})

	It("takes the name of the upload identity Secret, and refuses one Kubernetes could not name", func() {
		base := "components: [api]\napi:\n  listen_address: 127.0.0.1:1\n"
		cfg, err := config.Load(writeConfig(base + "staging:\n  upload_identity_secret_name: cc-uploader-client\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.Staging.UploadIdentitySecretName).To(Equal("cc-uploader-client"))
		_, err = config.Load(writeConfig(base + "staging:\n  upload_identity_secret_name: Not_A_Name\n"))
		Expect(err).To(MatchError(ContainSubstring("staging: upload_identity_secret_name")))
	})

	It("rejects unknown keys", func() {
		_, err := config.Load(writeConfig("api:\n  listen_adress: 127.0.0.1:1\n"))
		Expect(err).To(MatchError(ContainSubstring("listen_adress")))
	})

	It("reports every problem at once", func() {
		_, err := config.Load(writeConfig("components: [api, bogus]\napi:\n  tls_listen_address: :8443\nlrp:\n  app_uid: 0\n"))
		Expect(err).To(MatchError(ContainSubstring(`unknown component "bogus"`)))
		Expect(err).To(MatchError(ContainSubstring("tls_cert_file")))
		Expect(err).To(MatchError(ContainSubstring("app_uid")))
	})

	It("leaves the BBS front off by default, and needs all three files for its mTLS listener", func() {
		cfg, err := config.Load(writeConfig("components: [api]\napi:\n  listen_address: 127.0.0.1:1\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.BBS.Enabled()).To(BeFalse())

		_, err = config.Load(writeConfig("components: [api]\napi:\n  listen_address: 127.0.0.1:1\nbbs:\n  tls_listen_address: 127.0.0.1:8889\n  tls_cert_file: /crt\n"))
		Expect(err).To(MatchError(ContainSubstring("bbs: tls_listen_address needs tls_cert_file, tls_key_file and client_ca_file")))

		_, err = config.Load(writeConfig("components: [api]\napi:\n  listen_address: 127.0.0.1:1\nbbs:\n  listen_address: 127.0.0.1:8888\n  stacks:\n    cflinuxfs4: \"\"\n"))
		Expect(err).To(MatchError(ContainSubstring(`bbs: stacks: "cflinuxfs4": want a stack name and an image reference`)))
		cfg, err = config.Load(writeConfig("components: [api]\napi:\n  listen_address: 127.0.0.1:1\nbbs:\n  listen_address: 127.0.0.1:8888\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.BBS.Enabled()).To(BeTrue())
	})

	It("bounds the API and LRPs by default, and keeps the kubelet's node proxy off", func() {
		cfg, err := config.Load(writeConfig("components: [api]\napi:\n  listen_address: 127.0.0.1:1\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.API.ReadTimeoutSeconds).To(Equal(30))
		Expect(cfg.API.IdleTimeoutSeconds).To(Equal(120))
		Expect(cfg.API.MaxInFlightRequests).To(Equal(100))
		Expect(cfg.LRP.MaxInstances).To(Equal(1000))
		Expect(cfg.Metrics.DiskFromStatsSummary).To(BeFalse())
	})

	It("rejects bounds that would bound nothing", func() {
		_, err := config.Load(writeConfig("components: [api]\napi:\n  listen_address: 127.0.0.1:1\n  read_timeout_seconds: 0\n  max_in_flight_requests: 0\nlrp:\n  max_instances: 2147483648\n"))
		Expect(err).To(MatchError(ContainSubstring("read_timeout_seconds and idle_timeout_seconds must be positive")))
		Expect(err).To(MatchError(ContainSubstring("max_in_flight_requests must be positive")))
		Expect(err).To(MatchError(ContainSubstring("max_instances must be between 1 and 2147483647")))
	})

	It("gives tasks CC's default limits and never lets them be unlimited", func() {
		cfg := config.Default()
		Expect([]int64{cfg.Tasks.DefaultMemoryMB, cfg.Tasks.DefaultDiskMB}).To(Equal([]int64{1024, 1024}))
		_, err := config.Load(writeConfig("components: [api]\napi:\n  listen_address: 127.0.0.1:1\ntasks:\n  default_memory_mb: 0\n"))
		Expect(err).To(MatchError(ContainSubstring("tasks: default_memory_mb and default_disk_mb must be between 1 and 2147483647")))
		_, err = config.Load(writeConfig("components: [api]\napi:\n  listen_address: 127.0.0.1:1\ntasks:\n  default_disk_mb: -1\n"))
		Expect(err).To(MatchError(ContainSubstring("tasks: default_memory_mb and default_disk_mb")))
	})

	It("requires a listener for the API", func() {
		_, err := config.Load(writeConfig("log_level: info\n"))
		Expect(err).To(MatchError(ContainSubstring("listen_address")))
	})
})

var _ = Describe("LoadLogAgent", func() {
	write := func(body string) string {
		path := filepath.Join(GinkgoT().TempDir(), "agent.yml")
		Expect(os.WriteFile(path, []byte(body), 0o600)).To(Succeed())
		return path
	}
	agentYAML := `
loggregator:
  ingress_address: 127.0.0.1:3458
  ca_cert_file: /ca
  cert_file: /crt
  key_file: /key
`
	It("needs only the agent's sections and takes the node from $NODE_NAME", func() {
		GinkgoT().Setenv("NODE_NAME", "node-7")
		cfg, err := config.LoadLogAgent(write(agentYAML))
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.LogAgent.NodeName).To(Equal("node-7"))
		Expect(cfg.LogAgent.PodLogDir).To(Equal("/var/log/pods"))
	})

	It("fails without a node or an ingress", func() {
		GinkgoT().Setenv("NODE_NAME", "")
		_, err := config.LoadLogAgent(write("log_level: info\n"))
		Expect(err).To(MatchError(ContainSubstring("loggregator.ingress_address is required")))
		Expect(err).To(MatchError(ContainSubstring("node_name")))
	})
})

var _ = Describe("NATS password", func() {
	It("is read from nats_password_file, without the trailing newline", func() {
		file := filepath.Join(GinkgoT().TempDir(), "password")
		Expect(os.WriteFile(file, []byte("s3cret\n"), 0o600)).To(Succeed())
		cfg := config.Default()
		cfg.Route.NATSPasswordFile = file
		Expect(cfg.NATSPasswordValue()).To(Equal("s3cret"))
		cfg.Route.NATSPassword = "inline"
		Expect(cfg.Validate()).To(MatchError(ContainSubstring("not both")))
	})
})
