package integration_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	natsgo "github.com/nats-io/nats.go"

	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/route"
)

// The Helm chart in deploy/helm/iris, checked with the helm binary that
// scripts/cluster builds ($IRIS_CLUSTER_BIN/helm).
//
// Golden file: `helm template` with testdata/golden-values.yaml must equal
// deploy/helm/iris/testdata/golden.yaml. After an intended chart change,
// regenerate it and review the diff:
//
//	IRIS_UPDATE_GOLDEN=1 go test ./integration -ginkgo.focus='golden'
//
// (with the cluster's env: eval "$(scripts/cluster env)").
const (
	chartDir         = "../deploy/helm/iris"
	goldenValuesFile = chartDir + "/testdata/golden-values.yaml"
	goldenFile       = chartDir + "/testdata/golden.yaml"
)

// manifest is one rendered object.
type manifest struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Data map[string]string `json:"data"`
}

var _ = Describe("Helm chart", Ordered, func() {
	var helmPath, helmHome string

	// helm runs the helm binary with its own config/cache dirs; it returns
	// stdout, and stderr with the exit error.
	helm := func(args ...string) (string, error) { return runHelm(helmPath, helmHome, args...) }

	parse := func(rendered string) []manifest {
		var out []manifest
		for _, doc := range strings.Split(rendered, "\n---\n") {
			var m manifest
			Expect(yaml.Unmarshal([]byte(doc), &m)).To(Succeed(), doc)
			if m.Kind != "" {
				out = append(out, m)
			}
		}
		return out
	}

	// loadConfig runs the rendered iris.yml through Iris's own config loader.
	loadConfig := func(manifests []manifest) config.Config {
		for _, m := range manifests {
			if m.Kind == "ConfigMap" && m.Data["iris.yml"] != "" {
				path := filepath.Join(GinkgoT().TempDir(), "iris.yml")
				Expect(os.WriteFile(path, []byte(m.Data["iris.yml"]), 0o600)).To(Succeed())
				cfg, err := config.Load(path)
				Expect(err).NotTo(HaveOccurred(), "rendered iris.yml:\n%s", m.Data["iris.yml"])
				return cfg
			}
		}
		Fail("no ConfigMap with iris.yml rendered")
		return config.Config{}
	}

	BeforeAll(func() {
		bin := os.Getenv("IRIS_CLUSTER_BIN")
		if bin == "" {
			Fail("IRIS_CLUSTER_BIN is not set: run the tests with `make test`, or `eval \"$(scripts/cluster env)\"` after `scripts/cluster build`")
		}
		helmPath = filepath.Join(bin, "helm")
		if _, err := os.Stat(helmPath); err != nil {
			Fail(fmt.Sprintf("helm is missing from $IRIS_CLUSTER_BIN (%v): run `scripts/cluster build`", err))
		}
		helmHome = GinkgoT().TempDir()
	})

	It("passes helm lint", func() {
		out, err := helm("lint", "--strict", chartDir)
		Expect(err).NotTo(HaveOccurred(), out)
	})

	It("renders every kind with the defaults, and a config Iris loads", func() {
		out, err := helm("template", "iris", chartDir, "--namespace", "cf-system")
		Expect(err).NotTo(HaveOccurred())
		manifests := parse(out)
		var kinds []string
		for _, m := range manifests {
			kinds = append(kinds, m.Kind)
		}
		Expect(kinds).To(ContainElements("Deployment", "Service", "ServiceAccount", "Role", "RoleBinding",
			"ConfigMap", "PodDisruptionBudget", "NetworkPolicy"))
		Expect(kinds).NotTo(ContainElements("ClusterRole", "ClusterRoleBinding", "Namespace"))

		cfg := loadConfig(manifests)
		Expect(cfg.WorkloadsNamespaces).To(Equal([]string{"cf-workloads"}))
		Expect(cfg.API.ListenAddress).To(BeEmpty(), "plain HTTP must be off by default")
		Expect(cfg.API.TLSListenAddress).To(Equal("0.0.0.0:8086"))
		Expect(cfg.LeaderElection.Namespace).To(Equal("cf-system"))
		Expect(cfg.LRP.ServiceAccountName).To(Equal("iris-app"))
		Expect(cfg.BBS.Enabled()).To(BeFalse(), "the BBS front must be off by default")
		Expect(out).NotTo(ContainSubstring("bbs-tls"))
	})

	It("renders the BBS front when enabled: config, container and Service port, certificates, NetworkPolicy", func() {
		out, err := helm("template", "iris", chartDir, "--namespace", "cf-system",
			"--set", "bbs.enabled=true", "--set", "bbs.port=8899", "--set", "bbs.allowPrivileged=true",
			"--set", "bbs.serverTLSSecret=my-bbs-tls", "--set", "bbs.clientCASecret=my-bbs-ca",
			"--set", "networkPolicy.iris.enabled=true",
			"--set-json", `networkPolicy.iris.apiFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"kubecf"}}}]`,
			"--set-json", `networkPolicy.iris.bbsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"diego"}}}]`)
		Expect(err).NotTo(HaveOccurred())
		cfg := loadConfig(parse(out))
		Expect(cfg.BBS).To(Equal(config.BBS{
			TLSListenAddress: "0.0.0.0:8899",
			TLSCertFile:      "/etc/iris/bbs-tls/tls.crt",
			TLSKeyFile:       "/etc/iris/bbs-tls/tls.key",
			ClientCAFile:     "/etc/iris/bbs-client-ca/ca.crt",
			AllowPrivileged:  true,
			Stacks:           map[string]string{},
			Diego: config.Diego{PlacementConfigMap: "iris-space-backends", DefaultBackend: "diego",
				Migration: config.Migration{IntervalSeconds: 5, MaxInFlight: 100, LeaseName: "iris-space-migrator"}},
		}))
		var (
			service    corev1.Service
			deployment appsv1.Deployment
			policy     networkingv1.NetworkPolicy
		)
		for _, doc := range strings.Split(out, "\n---\n") {
			var m manifest
			Expect(yaml.Unmarshal([]byte(doc), &m)).To(Succeed())
			switch {
			case m.Kind == "Service":
				Expect(yaml.Unmarshal([]byte(doc), &service)).To(Succeed())
			case m.Kind == "Deployment":
				Expect(yaml.Unmarshal([]byte(doc), &deployment)).To(Succeed())
			case m.Kind == "NetworkPolicy" && m.Metadata.Name == "iris":
				Expect(yaml.Unmarshal([]byte(doc), &policy)).To(Succeed())
			}
		}
		Expect(service.Spec.Ports).To(ContainElement(And(HaveField("Name", "bbs"), HaveField("Port", BeEquivalentTo(8899)))))
		container := deployment.Spec.Template.Spec.Containers[0]
		Expect(container.Ports).To(ContainElement(And(HaveField("Name", "bbs"), HaveField("ContainerPort", BeEquivalentTo(8899)))))
		Expect(container.VolumeMounts).To(ContainElements(
			HaveField("MountPath", "/etc/iris/bbs-tls"), HaveField("MountPath", "/etc/iris/bbs-client-ca")))
		Expect(deployment.Spec.Template.Spec.Volumes).To(ContainElements(
			HaveField("Secret.SecretName", "my-bbs-tls"), HaveField("Secret.SecretName", "my-bbs-ca")))
		// The BBS port from bbsFrom only: not from the API's peers, nor
		// from staging pods.
		Expect(policy.Spec.Ingress).To(ContainElement(And(
			HaveField("Ports", ConsistOf(HaveField("Port.IntVal", BeEquivalentTo(8899)))),
			HaveField("From", ConsistOf(HaveField("NamespaceSelector.MatchLabels", HaveKeyWithValue("kubernetes.io/metadata.name", "diego")))),
		)))
		for _, rule := range policy.Spec.Ingress {
			if len(rule.From) != 1 || rule.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "diego" {
				Expect(rule.Ports).NotTo(ContainElement(HaveField("Port.IntVal", BeEquivalentTo(8899))))
			}
		}
	})

	It("renders Diego behind the BBS front: its client certificate, the placement config, read access to that one ConfigMap", func() {
		_, err := helm("template", "iris", chartDir, "--namespace", "cf-system",
			"--set", "bbs.enabled=true", "--set", "bbs.diego.url=https://bbs.service.cf.internal:8889")
		Expect(err).To(MatchError(ContainSubstring("bbs.diego.clientSecret is required")))

		out, err := helm("template", "iris", chartDir, "--namespace", "cf-system",
			"--set", "bbs.enabled=true", "--set", "bbs.diego.url=https://bbs.service.cf.internal:8889",
			"--set", "bbs.diego.clientSecret=iris-diego-bbs", "--set", "bbs.diego.defaultBackend=kubernetes",
			"--set-json", `bbs.stacks={"cflinuxfs4":"registry.example.com/cf/cflinuxfs4:1.200"}`)
		Expect(err).NotTo(HaveOccurred())
		cfg := loadConfig(parse(out))
		Expect(cfg.BBS.Stacks).To(Equal(map[string]string{"cflinuxfs4": "registry.example.com/cf/cflinuxfs4:1.200"}))
		Expect(cfg.BBS.Diego).To(Equal(config.Diego{
			URL:                "https://bbs.service.cf.internal:8889",
			CAFile:             "/etc/iris/diego-bbs/ca.crt",
			ClientCertFile:     "/etc/iris/diego-bbs/tls.crt",
			ClientKeyFile:      "/etc/iris/diego-bbs/tls.key",
			PlacementConfigMap: "iris-space-backends",
			DefaultBackend:     "kubernetes",
			Migration:          config.Migration{IntervalSeconds: 5, MaxInFlight: 100, LeaseName: "iris-space-migrator"},
		}))
		var (
			deployment appsv1.Deployment
			role       rbacv1.Role
		)
		for _, doc := range strings.Split(out, "\n---\n") {
			var m manifest
			Expect(yaml.Unmarshal([]byte(doc), &m)).To(Succeed())
			switch {
			case m.Kind == "Deployment":
				Expect(yaml.Unmarshal([]byte(doc), &deployment)).To(Succeed())
			case m.Kind == "Role" && strings.HasSuffix(m.Metadata.Name, "-leader-election"):
				Expect(yaml.Unmarshal([]byte(doc), &role)).To(Succeed())
			}
		}
		Expect(deployment.Spec.Template.Spec.Volumes).To(ContainElement(HaveField("Secret.SecretName", "iris-diego-bbs")))
		Expect(deployment.Spec.Template.Spec.Containers[0].VolumeMounts).To(ContainElement(HaveField("MountPath", "/etc/iris/diego-bbs")))
		Expect(role.Rules).To(ContainElement(rbacv1.PolicyRule{
			APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"iris-space-backends"},
			Verbs: []string{"get", "list", "watch"},
		}), "read only, and only the placement ConfigMap")
		Expect(role.Rules).To(ContainElement(rbacv1.PolicyRule{
			APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"iris-space-backends-migrations"},
			Verbs: []string{"get", "list", "watch", "patch"},
		}), "the moves: watched, and written by server-side apply, that one ConfigMap only")
		Expect(out).To(ContainSubstring("name: iris-space-backends-migrations"), "the chart creates the moves ConfigMap")
	})

	It("serves the ops listener over TLS with the admin routes when ops.admin is enabled, probes over HTTPS", func() {
		out, err := helm("template", "iris", chartDir, "--namespace", "cf-system", "--set", "ops.admin.enabled=true")
		Expect(err).NotTo(HaveOccurred())
		cfg := loadConfig(parse(out))
		Expect(cfg.Ops).To(Equal(config.Ops{ListenAddress: "0.0.0.0:8090", TLSCertFile: "/etc/iris/ops-tls/tls.crt",
			TLSKeyFile: "/etc/iris/ops-tls/tls.key", ClientCAFile: "/etc/iris/ops-admin-ca/ca.crt"}))
		var deployment appsv1.Deployment
		for _, doc := range strings.Split(out, "\n---\n") {
			var m manifest
			Expect(yaml.Unmarshal([]byte(doc), &m)).To(Succeed())
			if m.Kind == "Deployment" && !strings.Contains(m.Metadata.Name, "log-agent") {
				Expect(yaml.Unmarshal([]byte(doc), &deployment)).To(Succeed())
			}
		}
		container := deployment.Spec.Template.Spec.Containers[0]
		Expect(container.ReadinessProbe.HTTPGet.Scheme).To(BeEquivalentTo("HTTPS"))
		Expect(container.LivenessProbe.HTTPGet.Scheme).To(BeEquivalentTo("HTTPS"))
		Expect(deployment.Spec.Template.Spec.Volumes).To(ContainElements(HaveField("Secret.SecretName", "iris-ops-tls"), HaveField("Secret.SecretName", "iris-ops-admin-ca")))
	})

	It("renders the log agent, its RBAC and Loggregator's config when an ingress is set", func() {
		out, err := helm("template", "iris", chartDir, "--namespace", "cf-system",
			"--set", "loggregator.ingressAddress=metron.cf-system:3458", "--set", "secrets.loggregator=iris-loggregator")
		Expect(err).NotTo(HaveOccurred())
		manifests := parse(out)
		var kinds []string
		for _, m := range manifests {
			kinds = append(kinds, m.Kind)
		}
		Expect(kinds).To(ContainElement("DaemonSet"))
		// The kubelet's node proxy is an explicit opt-in, off by default.
		Expect(kinds).NotTo(ContainElements("ClusterRole", "ClusterRoleBinding"))
		cfg := loadConfig(manifests)
		Expect(cfg.Loggregator.IngressAddress).To(Equal("metron.cf-system:3458"))
		Expect(cfg.Loggregator.CertFile).To(Equal("/etc/iris/loggregator/tls.crt"))
		Expect(cfg.Metrics.DiskFromStatsSummary).To(BeFalse())
		cfg.LogAgent.NodeName = "node-from-downward-api"
		Expect(cfg.ValidateLogAgent()).To(Succeed())

		out, err = helm("template", "iris", chartDir, "--namespace", "cf-system",
			"--set", "loggregator.ingressAddress=metron.cf-system:3458", "--set", "secrets.loggregator=iris-loggregator",
			"--set", "metrics.diskFromStatsSummary=true")
		Expect(err).NotTo(HaveOccurred())
		manifests = parse(out)
		kinds = nil
		for _, m := range manifests {
			kinds = append(kinds, m.Kind)
		}
		Expect(kinds).To(ContainElements("ClusterRole", "ClusterRoleBinding"), "metrics.diskFromStatsSummary=true grants nodes/proxy")
		Expect(out).To(ContainSubstring(`resources: ["nodes/proxy"]`))
		Expect(loadConfig(manifests).Metrics.DiskFromStatsSummary).To(BeTrue())

		_, err = helm("template", "iris", chartDir, "--set", "loggregator.ingressAddress=metron:3458")
		Expect(err).To(MatchError(ContainSubstring("secrets.loggregator is required")))

		out, err = helm("template", "iris", chartDir, "--set", "loggregator.ingressAddress=metron:3458",
			"--set", "secrets.loggregator=s", "--set", "metrics.diskFromStatsSummary=false", "--set", "logAgent.enabled=false")
		Expect(err).NotTo(HaveOccurred())
		for _, m := range parse(out) {
			Expect(m.Kind).NotTo(BeElementOf("DaemonSet", "ClusterRole", "ClusterRoleBinding"))
		}
	})

	It("matches the golden file with fixed values", func() {
		out, err := helm("template", "golden", chartDir, "--namespace", "cf-system", "-f", goldenValuesFile)
		Expect(err).NotTo(HaveOccurred())
		loadConfig(parse(out))
		if os.Getenv("IRIS_UPDATE_GOLDEN") == "1" {
			Expect(os.WriteFile(goldenFile, []byte(out), 0o644)).To(Succeed())
			AddReportEntry("regenerated " + goldenFile)
		}
		golden, err := os.ReadFile(goldenFile)
		Expect(err).NotTo(HaveOccurred(), "regenerate with IRIS_UPDATE_GOLDEN=1")
		Expect(out).To(Equal(string(golden)), "helm template differs from %s; if intended, regenerate with IRIS_UPDATE_GOLDEN=1", goldenFile)
	})

	DescribeTable("rejects wrong values with the schema's message",
		func(flag, value, message string) {
			_, err := helm("template", "iris", chartDir, flag, value)
			Expect(err).To(MatchError(ContainSubstring("values don't meet the specifications of the schema")))
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("replicas not a number", "--set", "replicas=two", "at '/replicas': got string, want integer"),
		Entry("replicas 0", "--set", "replicas=0", "at '/replicas': minimum: got 0, want 1"),
		Entry("unknown log level", "--set", "logLevel=loud", "at '/logLevel': value must be one of 'debug', 'info', 'error', 'fatal'"),
		Entry("no workloads namespace", "--set-json", "workloadsNamespaces=[]", "at '/workloadsNamespaces': minItems: got 0, want 1"),
		Entry("unknown component", "--set-json", `components=["api","bogus"]`, "at '/components/1': value must be one of"),
		Entry("a typo in a key", "--set", "replica=2", "additional properties 'replica' not allowed"),
		Entry("an unknown AppArmor profile", "--set", "lrp.apparmorProfile=strict", "at '/lrp/apparmorProfile'"),
		Entry("Iris's NetworkPolicy without CC's peers", "--set", "networkPolicy.iris.enabled=true", "at '/networkPolicy/iris/apiFrom'"),
	)

	It("installs into the cluster with namespaced RBAC only", func() {
		ctx := context.Background()
		releaseNS := createNamespace("iris-helm-")
		workloadsNS := []string{releaseNS + "-apps", releaseNS + "-apps2"}
		DeferCleanup(func() {
			_, err := helm("uninstall", "iris", "--namespace", releaseNS)
			Expect(err).NotTo(HaveOccurred())
			for _, ns := range append(workloadsNS, releaseNS) {
				err := clientset.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					Expect(err).NotTo(HaveOccurred())
				}
			}
		})

		_, err := helm("install", "iris", chartDir, "--namespace", releaseNS,
			"--set", "createNamespaces=true",
			"--set", "loggregator.ingressAddress=metron.cf-system:3458", "--set", "secrets.loggregator=iris-loggregator",
			"--set", "networkPolicy.iris.enabled=true",
			"--set-json", `networkPolicy.iris.apiFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"kubecf"}}}]`,
			"--set-json", fmt.Sprintf(`workloadsNamespaces=[%q,%q]`, workloadsNS[0], workloadsNS[1]))
		Expect(err).NotTo(HaveOccurred())

		const name = "iris" // the release name contains the chart name
		Expect(clientset.AppsV1().Deployments(releaseNS).Get(ctx, name, metav1.GetOptions{})).NotTo(BeNil())
		Expect(clientset.CoreV1().Services(releaseNS).Get(ctx, name, metav1.GetOptions{})).NotTo(BeNil())
		Expect(clientset.CoreV1().ConfigMaps(releaseNS).Get(ctx, name, metav1.GetOptions{})).NotTo(BeNil())
		Expect(clientset.CoreV1().ServiceAccounts(releaseNS).Get(ctx, name, metav1.GetOptions{})).NotTo(BeNil())
		Expect(clientset.PolicyV1().PodDisruptionBudgets(releaseNS).Get(ctx, name, metav1.GetOptions{})).NotTo(BeNil())
		Expect(clientset.RbacV1().Roles(releaseNS).Get(ctx, name+"-leader-election", metav1.GetOptions{})).NotTo(BeNil())
		// Iris's own NetworkPolicy, as the API server stored it: the API from
		// CC and the workloads namespaces' staging pods, ops from anywhere.
		irisPolicy, err := clientset.NetworkingV1().NetworkPolicies(releaseNS).Get(ctx, name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(irisPolicy.Spec.Ingress).To(HaveLen(2))
		Expect(irisPolicy.Spec.Ingress[0].From).To(HaveLen(3))
		Expect(irisPolicy.Spec.Ingress[0].From[1].PodSelector.MatchLabels).To(Equal(map[string]string{"cloudfoundry.org/source_type": "STG"}))
		Expect(irisPolicy.Spec.Ingress[0].Ports).To(HaveLen(1))
		Expect(irisPolicy.Spec.Ingress[0].Ports[0].Port.IntValue()).To(Equal(8086))
		Expect(irisPolicy.Spec.Ingress[1].From).To(BeEmpty())
		Expect(irisPolicy.Spec.Ingress[1].Ports[0].Port.IntValue()).To(Equal(8090))
		for _, ns := range workloadsNS {
			Expect(clientset.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})).NotTo(BeNil())
			Expect(clientset.RbacV1().Roles(ns).Get(ctx, name, metav1.GetOptions{})).NotTo(BeNil())
			Expect(clientset.RbacV1().RoleBindings(ns).Get(ctx, name, metav1.GetOptions{})).NotTo(BeNil())
			Expect(clientset.NetworkingV1().NetworkPolicies(ns).Get(ctx, name+"-apps", metav1.GetOptions{})).NotTo(BeNil())
			appSA, err := clientset.CoreV1().ServiceAccounts(ns).Get(ctx, "iris-app", metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(appSA.AutomountServiceAccountToken).To(HaveValue(BeFalse()))
		}

		// Iris's ServiceAccount, impersonated.
		restConfig, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
		Expect(err).NotTo(HaveOccurred())
		restConfig.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + releaseNS + ":" + name}
		iris, err := kubernetes.NewForConfig(restConfig)
		Expect(err).NotTo(HaveOccurred())
		dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
		ns := workloadsNS[0]

		// The RBAC authorizer sees new bindings after its informers do.
		Eventually(func() error {
			_, err := iris.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
			return err
		}, "10s", "100ms").Should(Succeed())
		_, err = iris.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		labels := map[string]string{"app": "rbac-check"}
		podSpec := corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "c", Image: "busybox"}},
			},
		}
		_, err = iris.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: "rbac-check"},
			Spec:       batchv1.JobSpec{Template: podSpec},
		}, dryRun)
		Expect(err).NotTo(HaveOccurred())
		podSpec.Spec.RestartPolicy = corev1.RestartPolicyAlways
		// StatefulSets are written the way Iris writes them: server-side apply.
		rbacCheck := &appsv1.StatefulSet{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
			ObjectMeta: metav1.ObjectMeta{Name: "rbac-check"},
			Spec: appsv1.StatefulSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: podSpec,
			},
		}
		applyConfig, err := json.Marshal(rbacCheck)
		Expect(err).NotTo(HaveOccurred())
		_, err = iris.AppsV1().StatefulSets(ns).Patch(ctx, "rbac-check", types.ApplyPatchType, applyConfig,
			metav1.PatchOptions{FieldManager: k8s.FieldManager, DryRun: []string{metav1.DryRunAll}})
		Expect(err).NotTo(HaveOccurred())
		// Authorized, so the answer is about the (missing) pod.
		_, err = iris.CoreV1().Pods(ns).Patch(ctx, "no-such-pod", types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"a":"b"}}}`), metav1.PatchOptions{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "patching a pod: %v", err)
		_, err = iris.CoordinationV1().Leases(releaseNS).Get(ctx, "iris-reporters", metav1.GetOptions{})
		Expect(err == nil || apierrors.IsNotFound(err)).To(BeTrue(), "getting the lease: %v", err)
		_, err = iris.CoordinationV1().Leases(releaseNS).Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "iris-reporters"},
		}, dryRun)
		Expect(err).NotTo(HaveOccurred())

		forbidden := func(err error) {
			GinkgoHelper()
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "expected Forbidden, got %v", err)
		}
		_, err = iris.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
		forbidden(err)
		_, err = iris.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
		forbidden(err)
		_, err = iris.AppsV1().StatefulSets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		forbidden(err)
		_, err = iris.AppsV1().StatefulSets("default").List(ctx, metav1.ListOptions{})
		forbidden(err)
		_, err = iris.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "iris-reporters"},
		}, dryRun)
		forbidden(err)

		// Metrics: metrics.k8s.io in its namespaces. The kubelet's node proxy
		// (disk from the stats summary) is an opt-in left off here: nothing
		// cluster-scoped is granted.
		can := func(client kubernetes.Interface, attrs authorizationv1.ResourceAttributes) bool {
			GinkgoHelper()
			review, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			return review.Status.Allowed
		}
		Expect(can(iris, authorizationv1.ResourceAttributes{Group: "metrics.k8s.io", Resource: "pods", Verb: "list", Namespace: ns})).To(BeTrue())
		// LRP objects are written with server-side apply (create and patch)
		// and watched by the reconciler; nothing else is granted, but for
		// the egress policy a desire creates and then hands to the apply
		// manager by one update (get on a conflict): no power beyond patch
		// and list.
		for _, attrs := range []authorizationv1.ResourceAttributes{
			{Group: "apps", Resource: "statefulsets", Verb: "patch"},
			{Resource: "secrets", Verb: "watch"},
			{Group: "networking.k8s.io", Resource: "networkpolicies", Verb: "watch"},
			{Group: "networking.k8s.io", Resource: "networkpolicies", Verb: "update"},
			{Group: "networking.k8s.io", Resource: "networkpolicies", Verb: "get"},
			{Group: "policy", Resource: "poddisruptionbudgets", Verb: "patch"},
		} {
			attrs.Namespace = ns
			Expect(can(iris, attrs)).To(BeTrue(), "%+v", attrs)
		}
		for _, attrs := range []authorizationv1.ResourceAttributes{
			{Resource: "pods", Verb: "get"},
			{Resource: "secrets", Verb: "update"},
			{Group: "networking.k8s.io", Resource: "networkpolicies", Verb: "deletecollection"},
			{Group: "policy", Resource: "poddisruptionbudgets", Verb: "get"},
		} {
			attrs.Namespace = ns
			Expect(can(iris, attrs)).To(BeFalse(), "%+v", attrs)
		}
		Expect(can(iris, authorizationv1.ResourceAttributes{Resource: "pods", Subresource: "log", Verb: "get", Namespace: ns})).To(BeTrue())
		Expect(can(iris, authorizationv1.ResourceAttributes{Resource: "nodes", Subresource: "proxy", Verb: "get"})).To(BeFalse())
		Expect(can(iris, authorizationv1.ResourceAttributes{Resource: "nodes", Subresource: "proxy", Verb: "create"})).To(BeFalse())
		Expect(can(iris, authorizationv1.ResourceAttributes{Resource: "nodes", Verb: "list"})).To(BeFalse())

		// The log agent: a DaemonSet whose ServiceAccount reads pods of the
		// workloads namespaces and nothing else.
		ds, err := clientset.AppsV1().DaemonSets(releaseNS).Get(ctx, name+"-log-agent", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(ds.Spec.Template.Spec.Containers[0].Args).To(HaveExactElements("log-agent", "--config", "/etc/iris/config/iris.yml"))
		agentConfig := *restConfig
		agentConfig.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + releaseNS + ":" + name + "-log-agent"}
		agent, err := kubernetes.NewForConfig(&agentConfig)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() error {
			_, err := agent.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return err
		}, "10s", "100ms").Should(Succeed())
		_, err = agent.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		forbidden(err)
		_, err = agent.CoreV1().Secrets(ns).Get(ctx, "anything", metav1.GetOptions{})
		forbidden(err)
		Expect(can(agent, authorizationv1.ResourceAttributes{Resource: "pods", Verb: "delete", Namespace: ns})).To(BeFalse())
	})

	It("runs the image's Iris with the installed chart's config and ServiceAccount: desire, route, lead, stop", func() {
		ctx := context.Background()
		releaseNS := createNamespace("iris-chart-run-")
		appsNS := releaseNS + "-apps"
		DeferCleanup(func() {
			_, err := helm("uninstall", "iris", "--namespace", releaseNS)
			Expect(err).NotTo(HaveOccurred())
			for _, ns := range []string{appsNS, releaseNS} {
				err := clientset.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					Expect(err).NotTo(HaveOccurred())
				}
			}
		})
		_, err := helm("install", "iris", chartDir, "--namespace", releaseNS,
			"--set", "createNamespaces=true", "--set", "image.repository="+oci.Host()+"/cf/iris", "--set", "image.tag=chart-test",
			"--set", "loggregator.ingressAddress=metron.cf-system:3458", "--set", "secrets.loggregator=iris-loggregator",
			"--set", "bbs.enabled=true",
			"--set-json", fmt.Sprintf(`workloadsNamespaces=[%q]`, appsNS))
		Expect(err).NotTo(HaveOccurred())

		// The image: the suite's static binary packaged by scripts/image and
		// pushed to the suite's registry, as an operator would.
		ref := oci.Host() + "/cf/iris:chart-test"
		build := exec.Command("go", "run", "./scripts/image", "-binary", irisPath, "-platforms", "linux/"+runtime.GOARCH, "-push", ref, "-insecure")
		build.Dir = ".."
		out, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		deployment, err := clientset.AppsV1().Deployments(releaseNS).Get(ctx, "iris", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		container := deployment.Spec.Template.Spec.Containers[0]
		Expect(container.Image).To(Equal(ref))
		Expect(container.Command).To(BeEmpty(), "the chart relies on the image's entrypoint")

		parsed, err := name.ParseReference(ref, name.Insecure)
		Expect(err).NotTo(HaveOccurred())
		img, err := remote.Image(parsed, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
		Expect(err).NotTo(HaveOccurred())
		imageConfig, err := img.ConfigFile()
		Expect(err).NotTo(HaveOccurred())
		Expect(imageConfig.Config.Entrypoint).To(Equal([]string{"/usr/local/bin/iris"}))
		Expect(imageConfig.Config.User).To(Equal("65532:65532"))
		binary := filepath.Join(GinkgoT().TempDir(), "iris")
		extractFile(img, "usr/local/bin/iris", binary)

		// The chart's iris.yml as installed, with what only the test
		// environment knows (CC, NATS, Loggregator, listen addresses) taken
		// from the suite's config, and a kubeconfig that acts as the
		// chart's ServiceAccount.
		cm, err := clientset.CoreV1().ConfigMaps(releaseNS).Get(ctx, "iris", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		var chartConfig, suiteConfig map[string]any
		Expect(yaml.Unmarshal([]byte(cm.Data["iris.yml"]), &chartConfig)).To(Succeed())
		Expect(yaml.Unmarshal([]byte(readFile(irisConfigFile)), &suiteConfig)).To(Succeed())
		for _, key := range []string{"cc", "loggregator", "route"} {
			chartConfig[key] = suiteConfig[key]
		}
		apiAddr, tlsAddr, opsAddr := freeAddress(), freeAddress(), freeAddress()
		api := chartConfig["api"].(map[string]any)
		// The chart's TLS listener (on by default) on a free address, with
		// the suite's certificates in place of the mounted Secrets'.
		suiteAPI := suiteConfig["api"].(map[string]any)
		Expect(api["tls_listen_address"]).NotTo(BeEmpty(), "the chart serves TLS by default")
		api["listen_address"], api["tls_listen_address"] = apiAddr, tlsAddr
		for _, key := range []string{"tls_cert_file", "tls_key_file", "client_ca_file"} {
			api[key] = suiteAPI[key]
		}
		chartConfig["ops"] = map[string]any{"listen_address": opsAddr}
		// The BBS front as the chart renders it, on a free port with the
		// suite's certificates in place of the mounted Secrets.
		bbsAddr := freeAddress()
		chartBBS, suiteBBS := chartConfig["bbs"].(map[string]any), suiteConfig["bbs"].(map[string]any)
		Expect(chartBBS).To(HaveKeyWithValue("tls_listen_address", "0.0.0.0:8889"))
		chartBBS["tls_listen_address"] = bbsAddr
		for _, key := range []string{"tls_cert_file", "tls_key_file", "client_ca_file"} {
			Expect(chartBBS).To(HaveKey(key))
			chartBBS[key] = suiteBBS[key]
		}
		chartConfig["log_level"] = "debug"
		chartConfig["kubeconfig"] = impersonatingKubeconfig("system:serviceaccount:" + releaseNS + ":iris")
		configData, err := yaml.Marshal(chartConfig)
		Expect(err).NotTo(HaveOccurred())
		session := startExtraIris(binary, string(configData))
		Eventually(func() (int, error) {
			resp, err := http.Get("http://" + opsAddr + "/readyz")
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}, 30*time.Second, 200*time.Millisecond).Should(Equal(http.StatusOK))

		Expect(newBBSClientTo("https://"+bbsAddr).Ping(lagertest.NewTestLogger("chart-bbs"), "chart")).To(BeTrue(),
			"the chart's BBS front answers /v1/ping over mTLS")

		natsConn, err := natsgo.Connect(nats.URL())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(natsConn.Close)
		lrp := newLRP(1)
		rec := &recorder{appGUID: lrp.AppGUID}
		_, err = natsConn.Subscribe(route.SubjectRegister, rec.handle(route.SubjectRegister))
		Expect(err).NotTo(HaveOccurred())
		Expect(natsConn.Flush()).To(Succeed())

		// Everything a desire creates: StatefulSet, registry Secret, egress
		// NetworkPolicy; then the instance runs, is routed and stops.
		lrp.Lifecycle.DockerLifecycle.RegistryUsername, lrp.Lifecycle.DockerLifecycle.RegistryPassword = "bob", "hunter2"
		lrp.EgressRules = []models.SecurityGroupRule{{Protocol: "tcp", Destinations: []string{"10.0.0.0/8"}, Ports: []uint32{443}}}
		send := func(method, path string, body any) int {
			status, resp := requestTo("http://"+apiAddr, method, path, body)
			GinkgoWriter.Printf("%s %s: %d %s\n", method, path, status, resp)
			return status
		}
		// A buildpack staging with the chart's defaults (plain HTTP off):
		// its uploader, played here, reports to Iris's https URL without a
		// client certificate, with its staging's token and the CA from its
		// Secret, and the result reaches CC.
		staging := uuid.NewString()
		Expect(send("POST", "/stage/"+staging, buildpackStaging(staging))).To(Equal(http.StatusAccepted))
		var job batchv1.Job
		Eventually(func(g Gomega) {
			jobs, err := clientset.BatchV1().Jobs(appsNS).List(ctx, metav1.ListOptions{LabelSelector: k8s.LabelStagingGUID + "=" + staging})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(jobs.Items).To(HaveLen(1))
			job = jobs.Items[0]
		}, 10*time.Second).Should(Succeed())
		Expect(job.Spec.Template.Spec.Containers[0].Env).To(ContainElement(corev1.EnvVar{
			Name: "STAGING_COMPLETION_URL", Value: "https://iris." + releaseNS + ".svc:8086/stage/" + staging + "/completed"}))
		token, ca := stagingCompletionToken(appsNS, &job)
		Expect(ca).NotTo(BeEmpty())
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(ca)).To(BeTrue())
		// The Service's name does not resolve here: the same request goes to
		// the address this Iris listens on, which its certificate names.
		completed := `{"task_guid":"` + staging + `","failed":false,"result":"{\"lifecycle_type\":\"buildpack\",\"process_types\":{\"web\":\"rackup\"}}"}`
		status, body := asUploader(roots, "PUT", "https://"+tlsAddr+"/stage/"+staging+"/completed", token, completed)
		Expect(status).To(Equal(http.StatusOK), body)
		Eventually(func(g Gomega) { g.Expect(cc.stagingCallbacks(staging, true)).To(HaveLen(1)) }, 30*time.Second).Should(Succeed())
		Expect(string(cc.stagingCallbacks(staging, true)[0].Result)).To(ContainSubstring(`"process_types":{"web":"rackup"}`))

		Expect(send("PUT", "/apps/"+lrp.ProcessGUID, lrp)).To(Equal(http.StatusAccepted))
		Expect(statefulSets(appsNS, lrp)).To(HaveLen(1))
		Expect(statefulSets(appsNS, lrp)[0].Spec.Template.Spec.ServiceAccountName).To(Equal("iris-app"))
		Expect(secrets(appsNS, lrp)).To(HaveLen(1))
		Expect(networkPolicies(appsNS, lrp)).To(HaveLen(1))
		Eventually(runningPods(appsNS, lrp), 30*time.Second).Should(Equal(1))
		Eventually(func(g Gomega) { g.Expect(uris(rec.registers())).To(ContainElement("dora.example.com@0")) }, 30*time.Second).Should(Succeed())
		for _, lease := range []string{"iris-reporters", "iris-route-emitter"} {
			Eventually(func() string {
				l, err := clientset.CoordinationV1().Leases(releaseNS).Get(ctx, lease, metav1.GetOptions{})
				if err != nil || l.Spec.HolderIdentity == nil {
					return ""
				}
				return *l.Spec.HolderIdentity
			}, 30*time.Second).ShouldNot(BeEmpty(), "lease %s", lease)
		}

		Expect(send("PUT", "/apps/"+lrp.GUID+"/"+lrp.Version+"/stop", nil)).To(Equal(http.StatusOK))
		Eventually(func(g Gomega) int { return len(statefulSetsWith(g, appsNS, lrp)) }, 30*time.Second).Should(BeZero())

		// A task, cancelled: its Job goes and the task reporter (on the
		// reporters' Lease) tells CC.
		task := newTask()
		Expect(send("POST", "/tasks/"+task.GUID, ccTaskBody(task))).To(Equal(http.StatusAccepted))
		Eventually(func() (int, error) {
			jobs, err := clientset.BatchV1().Jobs(appsNS).List(ctx, metav1.ListOptions{LabelSelector: k8s.LabelTaskGUID + "=" + task.GUID})
			if err != nil {
				return 0, err
			}
			return len(jobs.Items), nil
		}, 10*time.Second).Should(Equal(1))
		Expect(send("DELETE", "/tasks/"+task.GUID, nil)).To(Equal(http.StatusNoContent))
		Eventually(func() []models.TaskCompletedRequest { return cc.taskCallbacks(task.GUID, true) }, 30*time.Second).Should(
			Equal([]models.TaskCompletedRequest{{TaskGUID: task.GUID, Failed: true, FailureReason: "task was cancelled"}}))

		Expect(string(session.Out.Contents())).NotTo(ContainSubstring("forbidden"))
		Expect(string(session.Out.Contents())).NotTo(ContainSubstring(token))
	})
})

// runHelm runs the helm binary with its config and cache dirs under home;
// it returns stdout, and stderr with the exit error.
func runHelm(helmPath, home string, args ...string) (string, error) {
	cmd := exec.Command(helmPath, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// impersonatingKubeconfig writes a copy of the suite's kubeconfig whose
// requests act as user (a ServiceAccount), and returns its path.
func impersonatingKubeconfig(user string) string {
	kubeconfig, err := clientcmd.LoadFromFile(os.Getenv("KUBECONFIG"))
	Expect(err).NotTo(HaveOccurred())
	for _, auth := range kubeconfig.AuthInfos {
		auth.Impersonate = user
	}
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(clientcmd.WriteToFile(*kubeconfig, path)).To(Succeed())
	return path
}

// extractFile writes the file at path in img's filesystem to dest, executable.
func extractFile(img v1.Image, path, dest string) {
	fs := mutate.Extract(img)
	defer fs.Close()
	tr := tar.NewReader(fs)
	for {
		header, err := tr.Next()
		Expect(err).NotTo(HaveOccurred(), "%s not in the image", path)
		if strings.TrimPrefix(header.Name, "/") != path {
			continue
		}
		f, err := os.OpenFile(dest, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		Expect(err).NotTo(HaveOccurred())
		_, err = io.Copy(f, tr)
		Expect(err).NotTo(HaveOccurred())
		Expect(f.Close()).To(Succeed())
		return
	}
}
