package integration_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/iris-cf/iris/integration/testcerts"
)

// The suite runs the real iris binary against the real local cluster that
// scripts/cluster starts (make test does both). Each run gets fresh
// namespaces, so runs never see each other's objects.
func TestIntegration(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Integration Suite")
}

var (
	clientset *kubernetes.Clientset
	namespace string
	// otherNamespace is watched by Iris too, but is not the default.
	otherNamespace string
	irisURL        string
	irisOpsURL     string
	irisTLSURL     string
	irisSession    *gexec.Session
	nats           *natsServer
	cc             *fakeCC
	oci            *ociRegistry
	ingress        *loggregator
	irisPath       string
	irisConfigFile string
	clientCA       *testcerts.CA
	clientLeaf     *testcerts.Leaf
	serverCA       *testcerts.CA
	// serverCertDir holds Iris's server certificate (server.crt, server.key).
	serverCertDir string
	// bbsURL is Iris's BBS front (mTLS, the same certificates as the API).
	bbsURL string
)

var _ = BeforeSuite(func() {
	kubeconfig := os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		Fail("KUBECONFIG is not set: run the integration tests with `make test`, or `eval \"$(scripts/cluster env)\"` after `scripts/cluster up`")
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	restConfig.QPS, restConfig.Burst = 200, 400
	clientset, err = kubernetes.NewForConfig(restConfig)
	Expect(err).NotTo(HaveOccurred())

	namespace = createNamespace("iris-it-")
	otherNamespace = createNamespace("iris-it-other-")

	// Built as the image builds it (scripts/image): static, no cgo, so the
	// binary under test is the one the image ships.
	irisPath, err = gexec.BuildWithEnvironment("github.com/iris-cf/iris/cmd/iris", []string{"CGO_ENABLED=0"}, "-trimpath")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(gexec.CleanupBuildArtifacts)

	dir := GinkgoT().TempDir()
	serverCA, clientCA = newCA("iris-server-ca"), newCA("cc-client-ca")
	serverLeaf, err := serverCA.Issue("iris.local")
	Expect(err).NotTo(HaveOccurred())
	serverCertDir = dir
	certFile, keyFile, err := serverLeaf.WriteFiles(dir, "server")
	Expect(err).NotTo(HaveOccurred())
	clientCAFile := filepath.Join(dir, "client-ca.crt")
	Expect(os.WriteFile(clientCAFile, clientCA.PEM, 0o600)).To(Succeed())
	clientLeaf, err = clientCA.Issue("cloud-controller")
	Expect(err).NotTo(HaveOccurred())

	nats = startNATS()
	// CC's internal API: its own server CA, and a client CA that signs
	// the certificate Iris presents on callbacks.
	ccCA, irisClientCA := newCA("cc-server-ca"), newCA("iris-client-ca")
	ccLeaf, err := ccCA.Issue("cloud-controller-ng.service.cf.internal")
	Expect(err).NotTo(HaveOccurred())
	cc = startFakeCC(ccLeaf, irisClientCA)
	DeferCleanup(cc.server.Close)
	irisClientLeaf, err := irisClientCA.Issue("iris")
	Expect(err).NotTo(HaveOccurred())
	ccClientCert, ccClientKey, err := irisClientLeaf.WriteFiles(dir, "cc-client")
	Expect(err).NotTo(HaveOccurred())
	ccCAFile := filepath.Join(dir, "cc-ca.crt")
	Expect(os.WriteFile(ccCAFile, ccCA.PEM, 0o600)).To(Succeed())
	oci = startRegistry()
	DeferCleanup(oci.server.Close)
	ingress = startLoggregator(dir)
	DeferCleanup(ingress.Stop)

	addr, tlsAddr, opsAddr, bbsAddr := freeAddress(), freeAddress(), freeAddress(), freeAddress()
	testLifecycleAddr = freeAddress()
	bbsURL = "https://" + bbsAddr
	irisURL, irisTLSURL, irisOpsURL = "http://"+addr, "https://"+tlsAddr, "http://"+opsAddr
	irisConfigFile = filepath.Join(dir, "iris.yml")
	Expect(os.WriteFile(irisConfigFile, []byte(fmt.Sprintf(`
log_level: debug
kubeconfig: %q
workloads_namespaces: [%q, %q]
api:
  listen_address: %q
  tls_listen_address: %q
  tls_cert_file: %q
  tls_key_file: %q
  client_ca_file: %q
  max_request_body_bytes: 65536
lrp:
  droplet_registry: 127.0.0.1:5000/cloudfoundry
  droplet_registry_secret_name: droplet-registry
  apparmor_profile: %q
  runner_image: %q
staging:
  iris_url: %q
  stack_image: %q
  lifecycle_bundle_url: %q
  timeout_seconds: 600
  insecure_registries: [%q]
route:
  nats_servers: [%q]
  default_register_interval_seconds: 300
cc:
  internal_api_url: %q
  ca_cert_file: %q
  cert_file: %q
  key_file: %q
events:
  max_backoff_seconds: 2
  task_job_ttl_seconds: 3
leader_election:
  lease_duration_seconds: 6
  renew_deadline_seconds: 4
  retry_period_seconds: 1
loggregator:
  ingress_address: %q
  ca_cert_file: %q
  cert_file: %q
  key_file: %q
metrics:
  interval_seconds: 1
ops:
  listen_address: %q
bbs:
  tls_listen_address: %q
  tls_cert_file: %q
  tls_key_file: %q
  client_ca_file: %q
  stacks:
    %s: %q
    cflinuxfs4-test: iris-test/cflinuxfs4:1.0
`, kubeconfig, namespace, otherNamespace, addr, tlsAddr, certFile, keyFile, clientCAFile, appArmorProfile(), testRunnerImage, irisURL, testStackImage, testLifecycleURL(), oci.Host(), nats.URL(), cc.URL(), ccCAFile, ccClientCert, ccClientKey,
		ingress.Addr(), ingress.caFile, ingress.certFile, ingress.keyFile, opsAddr,
		bbsAddr, certFile, keyFile, clientCAFile, testStack, testStackImage)), 0o600)).To(Succeed())

	startIris()
})

// appArmorProfile is Iris's default, runtime/default, where the host has
// AppArmor; elsewhere none: the real node's kubelet refuses pods that ask for
// a profile on a host without AppArmor ("Cannot enforce AppArmor").
func appArmorProfile() string {
	if enabled, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil && strings.TrimSpace(string(enabled)) == "Y" {
		return "runtime/default"
	}
	return ""
}

// secondIrisConfig is the suite's config for a second Iris process: the
// same, without the ops and BBS listeners (which the first one holds) and
// with the components given.
func secondIrisConfig(components string) string {
	config := readFile(irisConfigFile)
	opsAddr := strings.TrimPrefix(irisOpsURL, "http://")
	config = strings.Replace(config, "listen_address: "+strconv.Quote(opsAddr), `listen_address: ""`, 1)
	// The BBS listener (the config's last section) is the first one's too.
	config, _, _ = strings.Cut(config, "\nbbs:\n")
	return strings.Replace(config, "log_level: debug", "log_level: debug\ncomponents: ["+components+"]", 1)
}

// startExtraIris runs binary with config (YAML) beside the suite's Iris
// until the spec ends, when SIGTERM must drain it and exit 0.
func startExtraIris(binary, config string) *gexec.Session {
	file := filepath.Join(GinkgoT().TempDir(), "iris.yml")
	Expect(os.WriteFile(file, []byte(config), 0o600)).To(Succeed())
	session, err := gexec.Start(exec.Command(binary, "--config", file), GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		session.Signal(syscall.SIGTERM)
		Eventually(session, 20*time.Second).Should(gexec.Exit(0))
	})
	return session
}

// startIris runs the iris binary with the suite's config and waits until
// every member started (ops /readyz answers 200 only then). If Iris exits
// because a listener's port was taken (see freeAddress), its listeners move
// to new ports and it starts again.
func startIris() {
	GinkgoHelper()
	for attempt := 1; ; attempt++ {
		var err error
		irisSession, err = gexec.Start(exec.Command(irisPath, "--config", irisConfigFile), GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			if irisSession.ExitCode() != -1 {
				return // exited: told apart below
			}
			resp, err := http.Get(irisOpsURL + "/readyz")
			g.Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		}, 30*time.Second, 100*time.Millisecond).Should(Succeed())
		if irisSession.ExitCode() == -1 {
			return
		}
		Expect(string(irisSession.Out.Contents())).To(ContainSubstring("address already in use"), "Iris exited while starting")
		Expect(attempt).To(BeNumerically("<", 3), "Iris found its ports taken %d times", attempt)
		moveIrisListeners()
	}
}

// moveIrisListeners gives the suite's Iris new listen addresses, in its
// config and in the URLs the specs use.
func moveIrisListeners() {
	config := readFile(irisConfigFile)
	for _, url := range []*string{&irisURL, &irisTLSURL, &irisOpsURL} {
		scheme, old, _ := strings.Cut(*url, "://")
		moved := freeAddress()
		// Addresses are quoted in the config, alone or ending a URL.
		config = strings.ReplaceAll(config, old+`"`, moved+`"`)
		*url = scheme + "://" + moved
	}
	Expect(os.WriteFile(irisConfigFile, []byte(config), 0o600)).To(Succeed())
}

// stopIris stops the suite's Iris in a spec: SIGTERM must drain it and exit
// 0. The spec's cleanup starts it again if the spec did not get that far.
func stopIris() {
	GinkgoHelper()
	terminateIris()
	DeferCleanup(ensureIrisRuns)
}

// killIris kills the suite's Iris (SIGKILL: nothing is released); the
// spec's cleanup starts it again if the spec did not.
func killIris() {
	GinkgoHelper()
	irisSession.Kill()
	Eventually(irisSession, 10*time.Second).Should(gexec.Exit())
	DeferCleanup(ensureIrisRuns)
}

func ensureIrisRuns() {
	if irisSession.ExitCode() != -1 {
		startIris()
	}
}

// terminateIris sends SIGTERM, which must drain and exit 0.
func terminateIris() {
	GinkgoHelper()
	irisSession.Signal(syscall.SIGTERM)
	Eventually(irisSession, 20*time.Second).Should(gexec.Exit(0))
}

var _ = AfterSuite(func() {
	if irisSession != nil && irisSession.ExitCode() == -1 {
		// SIGTERM drains and exits 0: part of the contract, checked here.
		terminateIris()
	}
	if nats != nil {
		nats.Stop()
	}
	for _, ns := range []string{namespace, otherNamespace} {
		if ns != "" {
			_ = clientset.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	}
})

func createNamespace(prefix string) string {
	ns, err := clientset.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return ns.Name
}

func newCA(cn string) *testcerts.CA {
	ca, err := testcerts.NewCA(cn)
	Expect(err).NotTo(HaveOccurred())
	return ca
}

// freeAddress returns a loopback address with a port nobody listens on now,
// for a listener the suite starts later. Such a port is free only until
// someone binds it, so the ports come from outside the kernel's ephemeral
// range (net.ipv4.ip_local_port_range): a port picked with ":0" and closed
// again could be handed to any outgoing connection (the suite makes many)
// before Iris binds it, or while a spec restarts Iris or NATS on it. Outside
// that range only explicit binds take ports: each process starts at a random
// port, hands none out twice, and startIris moves Iris if one was taken all
// the same (another suite picked it at the same moment).
func freeAddress() string {
	GinkgoHelper()
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.handedOut == nil {
		ports.low, ports.high = suitePortRange()
		ports.next = ports.low + rand.IntN(ports.high-ports.low)
		ports.handedOut = map[int]bool{}
	}
	for range ports.high - ports.low {
		port := ports.next
		ports.next++
		if ports.next == ports.high {
			ports.next = ports.low
		}
		if ports.handedOut[port] {
			continue
		}
		address := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", address)
		if err != nil {
			continue
		}
		Expect(l.Close()).To(Succeed())
		ports.handedOut[port] = true
		return address
	}
	Fail(fmt.Sprintf("no free port in [%d, %d)", ports.low, ports.high))
	return ""
}

// ports is freeAddress's bookkeeping.
var ports struct {
	mu        sync.Mutex
	low, high int
	next      int
	handedOut map[int]bool
}

// suitePortRange is [27000, 32768) without the kernel's ephemeral ports,
// or above them if that leaves too few. 27000 stays clear of the fixed
// ports of the dev and test clusters (scripts/cluster, scripts/test).
func suitePortRange() (low, high int) {
	low, high = 27000, 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var ephemeralLow, ephemeralHigh int
		if _, err := fmt.Sscan(string(data), &ephemeralLow, &ephemeralHigh); err == nil {
			if ephemeralLow < high && ephemeralHigh >= low {
				high = max(low, ephemeralLow)
			}
			if high-low < 1000 {
				low, high = ephemeralHigh+1, 65536
			}
		}
	}
	Expect(high-low).To(BeNumerically(">=", 1000), "too few ports outside the ephemeral range [%d, %d)", low, high)
	return low, high
}

// mtlsClient presents cert (nil: none) and trusts Iris's server CA.
func mtlsClient(cert *testcerts.Leaf) *http.Client {
	cfg := &tls.Config{RootCAs: serverCA.Pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		c, err := cert.TLSCertificate()
		Expect(err).NotTo(HaveOccurred())
		cfg.Certificates = []tls.Certificate{c}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}
