package integration_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/logs"
)

// criLog plays the container runtime: it appends CRI-format records to a
// container's log file under the agent's pod log directory.
type criLog struct{ path string }

func newCRILog(podLogDir string, pod corev1.Pod, container string) *criLog {
	dir := filepath.Join(podLogDir, fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID), container)
	Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
	return &criLog{path: filepath.Join(dir, "0.log")}
}

func (l *criLog) write(stream, tag, content string) {
	GinkgoHelper()
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, tag, content)
	Expect(err).NotTo(HaveOccurred())
}

func (l *criLog) out(lines ...string) {
	GinkgoHelper()
	for _, line := range lines {
		l.write("stdout", "F", line)
	}
}

// rotate renames the file as the kubelet does; the runtime reopens a new one.
func (l *criLog) rotate(suffix string) {
	GinkgoHelper()
	Expect(os.Rename(l.path, l.path+"."+suffix)).To(Succeed())
}

// writeAgentConfig writes a log agent config for node, with its own pod log
// directory and positions file.
func writeAgentConfig(node string) (podLogDir, configFile string) {
	dir := GinkgoT().TempDir()
	podLogDir = filepath.Join(dir, "pods")
	configFile = filepath.Join(dir, "agent.yml")
	Expect(os.WriteFile(configFile, []byte(ingress.baseConfig()+fmt.Sprintf(`
log_agent:
  pod_log_dir: %q
  positions_file: %q
  node_name: %q
  scan_interval_milliseconds: 200
  poll_interval_milliseconds: 50
`, podLogDir, filepath.Join(dir, "positions.json"), node)), 0o600)).To(Succeed())
	return podLogDir, configFile
}

func startLogAgent(configFile string) *gexec.Session {
	session, err := gexec.Start(exec.Command(irisPath, "log-agent", "--config", configFile), GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	return session
}

func stopLogAgent(session *gexec.Session) {
	session.Signal(syscall.SIGTERM)
	Eventually(session, 20*time.Second).Should(gexec.Exit(0))
}

var _ = Describe("Log agent", Ordered, func() {
	var (
		lrp        = newLRP(1)
		pod        corev1.Pod
		podLogDir  string
		configFile string
		agent      *gexec.Session
		app        *criLog
	)
	appLines := func() []string { return ingress.payloads(lrp.AppGUID, "APP/PROC/WEB") }

	BeforeAll(func() {
		desire(lrp)
		Eventually(runningPods(namespace, lrp), 30*time.Second).Should(Equal(1))
		pod = pods(namespace, lrp)[0]

		podLogDir, configFile = writeAgentConfig(pod.Spec.NodeName)

		app = newCRILog(podLogDir, pod, "app")
		agent = startLogAgent(configFile)
		DeferCleanup(func() {
			if agent != nil && agent.ExitCode() == -1 {
				stopLogAgent(agent)
			}
		})
	})

	It("ships stdout and stderr lines with the app's source, index and tags, joining partials and splitting long lines", func() {
		app.out("hello from dora")
		app.write("stderr", "F", "something failed")
		app.write("stdout", "P", "first half, ")
		app.write("stdout", "F", "second half")
		long := strings.Repeat("x", logs.MaxPayloadBytes+100)
		app.out(long)

		Eventually(appLines, 15*time.Second).Should(HaveLen(5))
		Expect(appLines()).To(Equal([]string{"hello from dora", "something failed", "first half, second half",
			long[:logs.MaxPayloadBytes], long[logs.MaxPayloadBytes:]}))
		envelopes := ingress.logs(lrp.AppGUID, "APP/PROC/WEB")
		Expect(envelopes[0].GetLog().Type).To(Equal(loggregator_v2.Log_OUT))
		Expect(envelopes[1].GetLog().Type).To(Equal(loggregator_v2.Log_ERR))
		Expect(envelopes[0].InstanceId).To(Equal("0"))
		Expect(envelopes[0].Tags).To(Equal(map[string]string{
			"source_type": "APP/PROC/WEB", "app_id": lrp.AppGUID, "app_name": "dora",
			"space_id": "space-guid", "space_name": "dev", "organization_id": "org-guid", "organization_name": "acme",
			"process_id": lrp.GUID, "process_type": "web", "process_instance_id": string(pod.UID),
		}))
	})

	It("follows rotation without losing or repeating a line", func() {
		// The agent must know the file before it rotates: a file rotated
		// before the agent's first look is read from the new file on.
		app.out("followed")
		Eventually(appLines, 15*time.Second).Should(ContainElement("followed"))
		before := len(appLines())
		app.out("before rotation")
		app.rotate("20261124-120000")
		app.out("after rotation 1", "after rotation 2")
		Eventually(appLines, 15*time.Second).Should(HaveLen(before + 3))
		Expect(appLines()[before:]).To(Equal([]string{"before rotation", "after rotation 1", "after rotation 2"}))
	})

	It("resumes after a restart where it stopped, across a rotation while it was down", func() {
		app.out("last before restart")
		Eventually(appLines, 15*time.Second).Should(ContainElement("last before restart"))
		before := len(appLines())
		stopLogAgent(agent)

		app.out("while down 1")
		app.rotate("20261124-130000")
		app.out("while down 2")
		agent = startLogAgent(configFile)
		app.out("after restart")

		Eventually(appLines, 15*time.Second).Should(HaveLen(before + 3))
		Consistently(appLines, 2*time.Second).Should(HaveLen(before + 3))
		Expect(appLines()[before:]).To(Equal([]string{"while down 1", "while down 2", "after restart"}))
	})

	It("ships a task's output as APP/TASK/<name> under the app guid", func() {
		task := newTask()
		desireTask(task)
		taskPod := runningTaskPod(task)
		taskLogDir, taskConfig := writeAgentConfig(taskPod.Spec.NodeName)
		taskAgent := startLogAgent(taskConfig)
		DeferCleanup(func() { stopLogAgent(taskAgent) })

		newCRILog(taskLogDir, *taskPod, "task").out("migrating", "done")
		lines := func() []string { return ingress.payloads(task.AppGUID, "APP/TASK/"+task.Name) }
		Eventually(lines, 15*time.Second).Should(Equal([]string{"migrating", "done"}))
		e := ingress.logs(task.AppGUID, "APP/TASK/"+task.Name)[0]
		Expect(e.InstanceId).To(Equal("0"))
		Expect(e.Tags).To(HaveKeyWithValue("process_id", task.GUID))
	})
})

var _ = Describe("Log agent and a BBS LRP's log_rate_limit", func() {
	It("ships the instance's lines up to its limit, then Diego's overage message once, and drops the rest of that second", func() {
		client := newBBSClient()
		logger := lagertest.NewTestLogger("bbs-log-rate")
		lrp := bbsDockerLRP(1, "chatty.example.com")
		lrp.LogRateLimit = &models.LogRateLimit{BytesPerSecond: 64}
		Expect(client.DesireLRP(logger, "trace", lrp)).To(Succeed())
		DeferCleanup(func() { Expect(client.RemoveDesiredLRP(logger, "trace", lrp.ProcessGuid)).To(Succeed()) })
		var pod corev1.Pod
		Eventually(func(g Gomega) {
			pods := bbsPodsWith(g, lrp)
			g.Expect(pods).To(HaveLen(1))
			g.Expect(pods[0].Spec.NodeName).NotTo(BeEmpty())
			pod = pods[0]
		}, 60*time.Second).Should(Succeed())
		Expect(pod.Annotations).To(HaveKeyWithValue(k8s.AnnotationLogRateLimit, "64"))

		podLogDir, configFile := writeAgentConfig(pod.Spec.NodeName)
		app := newCRILog(podLogDir, pod, "app")
		// 20-byte lines written within microseconds: three fit into 64 bytes.
		for i := 1; i <= 10; i++ {
			app.out(fmt.Sprintf("chatty line %02d ....", i))
		}
		agent := startLogAgent(configFile)
		DeferCleanup(stopLogAgent, agent)

		appGUID := lrp.MetricTags["app_id"].Static
		lines := func() []string { return ingress.payloads(appGUID, "APP/PROC/WEB") }
		want := []string{"chatty line 01 ....", "chatty line 02 ....", "chatty line 03 ....",
			"app instance exceeded log rate limit (64 bytes/sec)"}
		Eventually(lines, 15*time.Second).Should(Equal(want))
		Consistently(lines, "1s").Should(Equal(want))
	})
})
