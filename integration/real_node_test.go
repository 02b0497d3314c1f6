package integration_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	bbsmodels "code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	natsgo "github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/route"
)

// These specs run the test app (integration/testapp) in real containers on
// the real node of scripts/cluster (kubelet, containerd, runc): what they
// check is observed from the running process, not read from objects.
var _ = Describe("Apps in real containers on the real node", Ordered, ContinueOnFailure, func() {
	var (
		node  string
		tag   string
		image string
	)

	BeforeAll(func() {
		node, tag = os.Getenv("IRIS_REAL_NODE"), os.Getenv("IRIS_REAL_NODE_PLACEMENT_TAG")
		if node == "" || tag == "" {
			Skip("the cluster has no real node: IRIS_REAL_NODE is not set (scripts/cluster starts one where the machine " +
				"allows it; see IRIS_CLUSTER_REAL_NODE in its header)")
		}
		image = pushTestApp()
	})

	// realLRP is a desire for the test app on the real node, with an http
	// health check on /health.
	realLRP := func(instances int) *models.DesireLRPRequest {
		lrp := newLRP(instances)
		lrp.PlacementTags = []string{tag}
		lrp.Lifecycle = models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{Image: image}}
		lrp.HealthCheckType, lrp.HealthCheckHTTPEndpoint = "http", "/health"
		lrp.MemoryMB = 64
		lrp.Environment["MEMORY_LIMIT"] = "64m"
		return lrp
	}

	// readyPods waits until the LRP's instances all run Ready on the real node.
	readyPods := func(lrp *models.DesireLRPRequest, instances int) []corev1.Pod {
		GinkgoHelper()
		var ready []corev1.Pod
		Eventually(func(g Gomega) {
			ready = nil
			for _, p := range podsWith(g, namespace, lrp) {
				g.Expect(p.Spec.NodeName).To(Equal(node))
				if isReady(p) {
					ready = append(ready, p)
				}
			}
			g.Expect(ready).To(HaveLen(instances))
		}, 2*time.Minute, 250*time.Millisecond).Should(Succeed())
		return ready
	}

	It("runs the app, which answers on its pod IP with the environment CC and Diego give it", func() {
		lrp := realLRP(2)
		desire(lrp)
		DeferCleanup(stopLRP, lrp)

		for _, pod := range readyPods(lrp, 2) {
			index := pod.Labels["apps.kubernetes.io/pod-index"]
			Expect(appGet(Default, pod, "/")).To(Equal("testapp " + index + "\n"))

			var env map[string]string
			Expect(json.Unmarshal([]byte(appGet(Default, pod, "/env")), &env)).To(Succeed())
			Expect(env).To(HaveKeyWithValue("CF_INSTANCE_INDEX", index))
			Expect(env).To(HaveKeyWithValue("INSTANCE_INDEX", index))
			Expect(env).To(HaveKeyWithValue("CF_INSTANCE_GUID", string(pod.UID)))
			Expect(env).To(HaveKeyWithValue("INSTANCE_GUID", string(pod.UID)))
			Expect(env).To(HaveKeyWithValue("CF_INSTANCE_INTERNAL_IP", pod.Status.PodIP))
			Expect(env).To(HaveKeyWithValue("CF_INSTANCE_IP", pod.Status.HostIP))
			Expect(env).To(HaveKeyWithValue("CF_INSTANCE_PORT", "8080"))
			Expect(env).To(HaveKeyWithValue("CF_INSTANCE_ADDR", pod.Status.PodIP+":8080"))
			Expect(env).To(HaveKeyWithValue("CF_INSTANCE_PORTS", `[{"external":8080,"internal":8080}]`))
			Expect(env).To(HaveKeyWithValue("PORT", "8080"))
			Expect(env).To(HaveKeyWithValue("VCAP_APPLICATION", lrp.Environment["VCAP_APPLICATION"]))
			Expect(env).To(HaveKeyWithValue("MEMORY_LIMIT", "64m"))
		}
		Eventually(states(lrp), 30*time.Second).Should(ConsistOf(models.InstanceRunning, models.InstanceRunning))
	})

	It("runs the app hardened, as seen from inside its container", func() {
		lrp := realLRP(1)
		desire(lrp)
		DeferCleanup(stopLRP, lrp)
		pod := readyPods(lrp, 1)[0]

		var id map[string]any
		Expect(json.Unmarshal([]byte(appGet(Default, pod, "/identity")), &id)).To(Succeed())
		Expect(id).To(HaveKeyWithValue("Uid", "2000\t2000\t2000\t2000"), "lrp.app_uid, not the image's user")
		Expect(id).To(HaveKeyWithValue("Gid", "2000\t2000\t2000\t2000"))
		Expect(id).To(HaveKeyWithValue("CapEff", "0000000000000000"))
		Expect(id).To(HaveKeyWithValue("CapPrm", "0000000000000000"))
		Expect(id).To(HaveKeyWithValue("NoNewPrivs", "1"))
		Expect(id).To(HaveKeyWithValue("Seccomp", "2"), "a seccomp filter (RuntimeDefault)")
		Expect(id).To(HaveKeyWithValue("ServiceAccountToken", false))
	})

	It("gates readiness, and so the route, on the http health check", func() {
		conn, err := natsgo.Connect(nats.URL(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(100*time.Millisecond))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		lrp := realLRP(1)
		lrp.Environment["HEALTHY"] = "false"
		rec := &recorder{appGUID: lrp.AppGUID}
		_, err = conn.Subscribe(route.SubjectRegister, rec.handle(route.SubjectRegister))
		Expect(err).NotTo(HaveOccurred())
		Expect(conn.Flush()).To(Succeed())

		desire(lrp)
		DeferCleanup(stopLRP, lrp)
		var pod corev1.Pod
		Eventually(func(g Gomega) {
			ps := podsWith(g, namespace, lrp)
			g.Expect(ps).To(HaveLen(1))
			pod = ps[0]
			g.Expect(pod.Status.PodIP).NotTo(BeEmpty())
			g.Expect(appGet(g, pod, "/health")).To(Equal("unhealthy\n"))
		}, 2*time.Minute, 250*time.Millisecond).Should(Succeed(), "the app runs and answers, unhealthy")
		Consistently(func(g Gomega) {
			p, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(isReady(*p)).To(BeFalse())
			g.Expect(states(lrp)(g)).To(ConsistOf(models.InstanceClaimed))
			g.Expect(rec.registers()).To(BeEmpty())
		}, 5*time.Second, 500*time.Millisecond).Should(Succeed(), "not ready, not routed while the health check fails")

		appPost(pod, "/health?ok=true")
		Eventually(states(lrp), 30*time.Second).Should(ConsistOf(models.InstanceRunning))
		Eventually(rec.registers, 30*time.Second).Should(ConsistOf(And(
			HaveField("Host", pod.Status.PodIP),
			HaveField("Port", uint32(8080)),
			HaveField("URIs", ConsistOf("dora.example.com")),
		)))
		By("the registered address reaches the app")
		reg := rec.registers()[0]
		Expect(httpGet(Default, fmt.Sprintf("http://%s/", net.JoinHostPort(reg.Host, fmt.Sprint(reg.Port))))).To(Equal("testapp 0\n"))
	})

	It("gates readiness on the port health check: not ready until the app listens", func() {
		lrp := realLRP(1)
		lrp.HealthCheckType, lrp.HealthCheckHTTPEndpoint = "port", ""
		lrp.Ports = []int32{8080, 9090}
		lrp.Environment["LISTEN"], lrp.Environment["CONTROL_PORT"] = "false", "9090"
		desire(lrp)
		DeferCleanup(stopLRP, lrp)
		var pod corev1.Pod
		control := func(g Gomega, path string) string {
			return httpGet(g, "http://"+net.JoinHostPort(pod.Status.PodIP, "9090")+path)
		}
		Eventually(func(g Gomega) {
			ps := podsWith(g, namespace, lrp)
			g.Expect(ps).To(HaveLen(1))
			pod = ps[0]
			g.Expect(pod.Status.PodIP).NotTo(BeEmpty())
			g.Expect(control(g, "/")).To(Equal("testapp 0\n"))
		}, 2*time.Minute, 250*time.Millisecond).Should(Succeed(), "the app runs, listening on its control port only")
		Consistently(func(g Gomega) {
			g.Expect(states(lrp)(g)).To(ConsistOf(models.InstanceClaimed))
		}, 5*time.Second, 500*time.Millisecond).Should(Succeed(), "not ready while nothing listens on the first port")

		resp, err := appClient.Post("http://"+net.JoinHostPort(pod.Status.PodIP, "9090")+"/listen", "text/plain", nil)
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Eventually(states(lrp), 30*time.Second).Should(ConsistOf(models.InstanceRunning))
		Expect(appGet(Default, pod, "/")).To(Equal("testapp 0\n"))
	})

	It("reports an app that exits with status 1 once, as Diego would, and the kubelet restarts it", func() {
		lrp := realLRP(1)
		desire(lrp)
		DeferCleanup(stopLRP, lrp)
		pod := readyPods(lrp, 1)[0]

		appPost(pod, "/exit?code=1")
		Eventually(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, true)).To(HaveLen(1)) }, time.Minute).Should(Succeed())
		crash := cc.crashes(lrp.ProcessGUID, true)[0]
		Expect(crash.Instance).To(Equal(string(pod.UID)))
		Expect(crash.Index).To(Equal(0))
		Expect(crash.CellID).To(Equal(node))
		Expect(crash.Reason).To(Equal("CRASHED"))
		Expect(crash.ExitStatus).To(Equal(1))
		Expect(crash.ExitDescription).To(Equal("APP/PROC/WEB: Exited with status 1"))
		Expect(crash.CrashCount).To(Equal(1))

		By("the kubelet restarted the container, which answers again")
		Eventually(func(g Gomega) {
			p, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.Status.ContainerStatuses[0].RestartCount).To(BeNumerically(">=", 1))
			g.Expect(p.Status.ContainerStatuses[0].LastTerminationState.Terminated).NotTo(BeNil())
			g.Expect(p.Status.ContainerStatuses[0].LastTerminationState.Terminated.ExitCode).To(Equal(int32(1)))
			g.Expect(appGet(g, *p, "/")).To(Equal("testapp 0\n"))
		}, time.Minute, 250*time.Millisecond).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, false)).To(HaveLen(1)) }, 3*time.Second).Should(Succeed())

		By("exiting again: a crash loop, which the kubelet backs off and CC hears with the count")
		current, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		appPost(*current, "/exit?code=1")
		Eventually(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, true)).To(HaveLen(2)) }, time.Minute).Should(Succeed())
		Expect(cc.crashes(lrp.ProcessGUID, true)[1].CrashCount).To(Equal(2))
		Eventually(func(g Gomega) string {
			p, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.Status.ContainerStatuses[0].State.Waiting).NotTo(BeNil())
			return p.Status.ContainerStatuses[0].State.Waiting.Reason
		}, 30*time.Second, 250*time.Millisecond).Should(Equal("CrashLoopBackOff"))
	})

	It("restarts an instance whose liveness (http health check) fails, and CC hears the crash", func() {
		lrp := realLRP(1)
		desire(lrp)
		DeferCleanup(stopLRP, lrp)
		pod := readyPods(lrp, 1)[0]

		appPost(pod, "/health?ok=false")
		Eventually(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, true)).To(HaveLen(1)) }, time.Minute).Should(Succeed())
		crash := cc.crashes(lrp.ProcessGUID, true)[0]
		Expect(crash.Instance).To(Equal(string(pod.UID)))
		Expect(crash.CrashCount).To(Equal(1))
		Eventually(func(g Gomega) {
			p, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			status := p.Status.ContainerStatuses[0]
			g.Expect(status.RestartCount).To(BeNumerically(">=", 1))
			g.Expect(status.LastTerminationState.Terminated).NotTo(BeNil())
			g.Expect(crash.ExitStatus).To(Equal(int(status.LastTerminationState.Terminated.ExitCode)))
			// A new process: healthy again, as the app starts.
			g.Expect(appGet(g, *p, "/health")).To(Equal("healthy\n"))
		}, time.Minute, 250*time.Millisecond).Should(Succeed())
	})

	It("reports an app that allocates past memory_mb as out of memory", func() {
		lrp := realLRP(1)
		desire(lrp)
		DeferCleanup(stopLRP, lrp)
		pod := readyPods(lrp, 1)[0]

		appPost(pod, "/allocate?mb=256")
		Eventually(func() []models.AppCrashedRequest { return cc.crashes(lrp.ProcessGUID, true) }, time.Minute).Should(ConsistOf(And(
			HaveField("ExitStatus", 137),
			HaveField("ExitDescription", "APP/PROC/WEB: Exited with status 137 (out of memory)"),
		)))
		p, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		status := p.Status.ContainerStatuses[0]
		last := status.LastTerminationState.Terminated
		if last == nil { // not restarted yet
			last = status.State.Terminated
		}
		Expect(last).NotTo(BeNil())
		Expect(last.Reason).To(Equal("OOMKilled"), "the kernel's OOM killer, as the kubelet saw it")
	})

	It("runs an LRP desired through the BBS front, whose actual LRP reports the running instance's real address", func() {
		client := newBBSClient()
		logger := lagertest.NewTestLogger("real-node-bbs")
		lrp := bbsDockerLRP(1, "real.example.com")
		lrp.RootFs = "docker://" + strings.Replace(image, ":latest", "#latest", 1)
		lrp.PlacementTags = []string{tag}
		lrp.MemoryMb = 64
		lrp.Action = bbsmodels.WrapAction(bbsmodels.Codependent(&bbsmodels.RunAction{
			Path: "/tmp/lifecycle/launcher",
			Args: []string{"app", "", `{"cmd":["/testapp"],"ports":[{"Port":8080,"Protocol":"tcp"}]}`},
			User: "root",
			Env:  []*bbsmodels.EnvironmentVariable{{Name: "PORT", Value: "8080"}},
		}))
		Expect(client.DesireLRP(logger, "trace", lrp)).To(Succeed())
		DeferCleanup(func() { _ = client.RemoveDesiredLRP(logger, "trace", lrp.ProcessGuid) })

		var actual *bbsmodels.ActualLRP
		Eventually(func(g Gomega) {
			lrps, err := client.ActualLRPs(logger, "trace", bbsmodels.ActualLRPFilter{ProcessGuid: lrp.ProcessGuid})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(lrps).To(HaveLen(1))
			g.Expect(lrps[0].State).To(Equal(bbsmodels.ActualLRPStateRunning))
			actual = lrps[0]
		}, 2*time.Minute, 250*time.Millisecond).Should(Succeed())
		Expect(actual.CellId).To(Equal(node))
		Expect(actual.Ports).NotTo(BeEmpty())
		address := net.JoinHostPort(actual.InstanceAddress, fmt.Sprint(actual.Ports[0].ContainerPort))
		Expect(httpGet(Default, "http://"+address+"/")).To(Equal("testapp 0\n"), "the app answers where BBS says it runs")
		var env map[string]string
		Expect(json.Unmarshal([]byte(httpGet(Default, "http://"+address+"/env")), &env)).To(Succeed())
		Expect(env).To(HaveKeyWithValue("CF_INSTANCE_GUID", actual.InstanceGuid))
		Expect(env).To(HaveKeyWithValue("CF_INSTANCE_INDEX", "0"))
		Expect(env).To(HaveKeyWithValue("CF_INSTANCE_INTERNAL_IP", actual.InstanceAddress))
	})

	It("ships the app's real output from the kubelet's CRI log files, across a rotation by the kubelet", func() {
		lrp := realLRP(1)
		desire(lrp)
		DeferCleanup(stopLRP, lrp)
		pod := readyPods(lrp, 1)[0]
		agent := startLogAgent(realLogAgentConfig(node))
		DeferCleanup(stopLogAgent, agent)
		lines := func() []string { return ingress.payloads(lrp.AppGUID, "APP/PROC/WEB") }

		appPost(pod, "/log?stream=stdout&line=hello+from+stdout")
		appPost(pod, "/log?stream=stderr&line=hello+from+stderr")
		Eventually(lines, 30*time.Second).Should(ContainElements("testapp listening on :8080", "hello from stdout", "hello from stderr"))
		types := map[string]loggregator_v2.Log_Type{}
		for _, e := range ingress.logs(lrp.AppGUID, "APP/PROC/WEB") {
			types[string(e.GetLog().Payload)] = e.GetLog().Type
			Expect(e.InstanceId).To(Equal("0"))
			Expect(e.Tags).To(HaveKeyWithValue("process_instance_id", string(pod.UID)))
		}
		Expect(types).To(HaveKeyWithValue("hello from stdout", loggregator_v2.Log_OUT))
		Expect(types).To(HaveKeyWithValue("hello from stderr", loggregator_v2.Log_ERR))

		By("writing past the kubelet's containerLogMaxSize (1Mi), so it rotates the file")
		before := len(lines())
		line := strings.Repeat("r", 120)
		appPost(pod, "/log?stream=stdout&n=10000&line="+line)
		containerDir := filepath.Join(os.Getenv("IRIS_REAL_NODE_LOG_DIR"), "pods",
			fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID), "app")
		Eventually(func(g Gomega) []string {
			entries, err := os.ReadDir(containerDir)
			g.Expect(err).NotTo(HaveOccurred())
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			return names
		}, time.Minute, 500*time.Millisecond).Should(ContainElement(HavePrefix("0.log.")), "the kubelet rotated 0.log")
		appPost(pod, "/log?stream=stdout&line=after+rotation")
		Eventually(func(g Gomega) { g.Expect(len(lines())).To(Equal(before + 10001)) }, time.Minute).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(len(lines())).To(Equal(before + 10001)) }, 2*time.Second).Should(Succeed())
		got := lines()[before:]
		Expect(got[len(got)-1]).To(Equal("after rotation"))
		Expect(got[:10000]).To(HaveEach(line), "every line exactly once")
	})
})

// realLogAgentConfig writes a log agent config that tails the real node's
// pod log directory (the kubelet's /var/log/pods), with its own positions.
func realLogAgentConfig(node string) string {
	dir := GinkgoT().TempDir()
	configFile := filepath.Join(dir, "agent.yml")
	Expect(os.WriteFile(configFile, []byte(ingress.baseConfig()+fmt.Sprintf(`
log_agent:
  pod_log_dir: %q
  positions_file: %q
  node_name: %q
  scan_interval_milliseconds: 200
  poll_interval_milliseconds: 50
`, filepath.Join(os.Getenv("IRIS_REAL_NODE_LOG_DIR"), "pods"), filepath.Join(dir, "positions.json"), node)), 0o600)).To(Succeed())
	return configFile
}

// pushTestApp builds integration/testapp (static) into a one-layer image
// and pushes it to the suite's registry, from which the real node pulls it.
func pushTestApp() string {
	GinkgoHelper()
	return pushTestAppImage(buildTestApp(), "iris-testapp:latest", "/testapp")
}

func buildTestApp() string {
	GinkgoHelper()
	binary, err := gexec.BuildWithEnvironment("github.com/iris-cf/iris/integration/testapp", []string{"CGO_ENABLED=0"}, "-trimpath")
	Expect(err).NotTo(HaveOccurred())
	return binary
}

// pushTestAppImage pushes binary as /testapp in an image named
// repoAndTag on the suite's registry, with entrypoint, and returns its
// reference.
func pushTestAppImage(binary, repoAndTag string, entrypoint ...string) string {
	GinkgoHelper()
	data, err := os.ReadFile(binary)
	Expect(err).NotTo(HaveOccurred())
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	Expect(tw.WriteHeader(&tar.Header{Name: "testapp", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg})).To(Succeed())
	_, err = tw.Write(data)
	Expect(err).NotTo(HaveOccurred())
	Expect(tw.Close()).To(Succeed())
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil })
	Expect(err).NotTo(HaveOccurred())
	img, err := mutate.AppendLayers(empty.Image, l)
	Expect(err).NotTo(HaveOccurred())
	cfg, err := img.ConfigFile()
	Expect(err).NotTo(HaveOccurred())
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	// Root in the image: the specs observe that Iris runs it as app_uid.
	cfg.Config = v1.Config{Entrypoint: entrypoint, User: "0"}
	img, err = mutate.ConfigFile(img, cfg)
	Expect(err).NotTo(HaveOccurred())
	ref, err := name.ParseReference(oci.Host()+"/"+repoAndTag, name.Insecure)
	Expect(err).NotTo(HaveOccurred())
	Expect(remote.Write(ref, img)).To(Succeed())
	return ref.String()
}

// stopLRP stops the LRP as CC does, so its containers do not outlive the
// spec on the real node.
func stopLRP(lrp *models.DesireLRPRequest) {
	status, body := request("PUT", "/apps/"+lrp.GUID+"/"+lrp.Version+"/stop", nil)
	Expect(status).To(BeElementOf(http.StatusOK, http.StatusAccepted, http.StatusNotFound), string(body))
}

func isReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

var appClient = &http.Client{Timeout: 5 * time.Second}

// appGet asks the app in pod (on its pod IP and port 8080) for path.
func appGet(g Gomega, pod corev1.Pod, path string) string {
	return httpGet(g, "http://"+net.JoinHostPort(pod.Status.PodIP, "8080")+path)
}

func httpGet(g Gomega, url string) string {
	resp, err := appClient.Get(url)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	return string(body)
}

func appPost(pod corev1.Pod, path string) {
	GinkgoHelper()
	resp, err := appClient.Post("http://"+net.JoinHostPort(pod.Status.PodIP, "8080")+path, "text/plain", nil)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	Expect(resp.StatusCode).To(Equal(http.StatusOK), string(body))
}
