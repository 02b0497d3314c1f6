package logagent_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/logagent"
	"github.com/iris-cf/iris/logs"
	"github.com/iris-cf/iris/logs/crilog"
)

// knownSources resolves the pod UIDs the test has declared.
type knownSources struct {
	mu   sync.Mutex
	byID map[types.UID]logs.Source
}

func (k *knownSources) Lookup(uid types.UID) (logs.Source, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	src, ok := k.byID[uid]
	return src, ok
}
func (k *knownSources) Prune(time.Time) {}

func (k *knownSources) add(uid types.UID, appGUID string) {
	k.addLimited(uid, appGUID, nil)
}

// addRunner declares a pod that runs a recipe with Iris's runner.
func (k *knownSources) addRunner(uid types.UID, appGUID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.byID[uid] = logs.Source{SourceID: appGUID, InstanceID: "0", SourceType: "APP/PROC/WEB", Runner: true}
}

func (k *knownSources) addLimited(uid types.UID, appGUID string, logRateLimit *int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.byID[uid] = logs.Source{SourceID: appGUID, InstanceID: "0", SourceType: "APP/PROC/WEB", LogRateLimit: logRateLimit}
}

// recordingEmitter keeps "source_id: payload" of every log envelope.
type recordingEmitter struct {
	mu    sync.Mutex
	lines []string
	typed []string // "source_type: payload"
}

func (r *recordingEmitter) Emit(envelopes ...*loggregator_v2.Envelope) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range envelopes {
		r.lines = append(r.lines, e.SourceId+": "+string(e.GetLog().GetPayload()))
		r.typed = append(r.typed, e.GetTags()["source_type"]+": "+string(e.GetLog().GetPayload()))
	}
}

func (r *recordingEmitter) gotTyped() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.typed...)
}

func (r *recordingEmitter) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

var _ = Describe("Agent", func() {
	var (
		dir, podLogDir, checkpointFile string
		sources                        *knownSources
		emitter                        *recordingEmitter
	)

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		podLogDir = filepath.Join(dir, "pods")
		checkpointFile = filepath.Join(dir, "positions.json")
		Expect(os.MkdirAll(podLogDir, 0o755)).To(Succeed())
		sources = &knownSources{byID: map[types.UID]logs.Source{}}
		emitter = &recordingEmitter{}
	})

	start := func() ifrit.Process {
		agent := logagent.New(lagertest.NewTestLogger("agent"), logagent.Config{
			PodLogDir:      podLogDir,
			CheckpointFile: checkpointFile,
			Namespaces:     []string{"apps"},
			ScanInterval:   50 * time.Millisecond,
			Follower:       crilog.FollowerConfig{PollInterval: 10 * time.Millisecond},
		}, sources, emitter)
		process := ifrit.Invoke(agent)
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		return process
	}
	stop := func(process ifrit.Process) {
		process.Signal(os.Interrupt)
		Eventually(process.Wait()).Should(Receive(BeNil()))
	}

	// logFile returns the path of a container's N.log in a pod directory.
	logFile := func(namespace, pod, uid, container string, restart int) string {
		path := filepath.Join(podLogDir, namespace+"_"+pod+"_"+uid, container, fmt.Sprintf("%d.log", restart))
		Expect(os.MkdirAll(filepath.Dir(path), 0o755)).To(Succeed())
		return path
	}
	write := func(path string, lines ...string) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		Expect(err).NotTo(HaveOccurred())
		defer f.Close()
		for _, line := range lines {
			_, err := fmt.Fprintf(f, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), line)
			Expect(err).NotTo(HaveOccurred())
		}
	}
	// writeAt writes lines as the container wrote them at t, on stream.
	writeAt := func(path string, t time.Time, stream string, lines ...string) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		Expect(err).NotTo(HaveOccurred())
		defer f.Close()
		for _, line := range lines {
			_, err := fmt.Fprintf(f, "%s %s F %s\n", t.UTC().Format(time.RFC3339Nano), stream, line)
			Expect(err).NotTo(HaveOccurred())
		}
	}
	savedPaths := func() []string {
		data, err := os.ReadFile(checkpointFile)
		if os.IsNotExist(err) {
			return nil
		}
		Expect(err).NotTo(HaveOccurred())
		var saved struct {
			Positions map[string]json.RawMessage `json:"positions"`
		}
		Expect(json.Unmarshal(data, &saved)).To(Succeed())
		var paths []string
		for p := range saved.Positions {
			paths = append(paths, p)
		}
		return paths
	}

	It("follows only pods of its namespaces that are Iris's, picking up a pod once it becomes known", func() {
		ours := logFile("apps", "dora-0", "uid-1", "app", 0)
		other := logFile("kube-system", "coredns-0", "uid-2", "coredns", 0)
		notYet := logFile("apps", "late-0", "uid-3", "app", 0)
		sources.add("uid-1", "dora")
		sources.add("uid-2", "coredns")
		write(ours, "hello")
		write(other, "not ours")
		write(notYet, "early line")
		start()

		Eventually(emitter.got).Should(ConsistOf("dora: hello"))
		sources.add("uid-3", "late")
		Eventually(emitter.got).Should(ConsistOf("dora: hello", "late: early line"))
		Consistently(emitter.got, 200*time.Millisecond).Should(HaveLen(2))
	})

	It("ships a runner pod's tagged lines under their source type without the tag, drops its own logs, and leaves other pods' lines as written", func() {
		runner := logFile("apps", "bp-0", "uid-r", "app", 0)
		docker := logFile("apps", "docker-0", "uid-d", "app", 0)
		sources.addRunner("uid-r", "bp")
		sources.add("uid-d", "docker")
		write(runner,
			"@iris[CELL] Downloading droplet...",
			`{"timestamp":"1","source":"iris-actions","message":"iris-actions.run.starting"}`,
			"@iris[APP/PROC/WEB] listening on 8080",
			"@iris[CELL] Exit status 0",
			"iris actions: failed: Exited with status 1")
		write(docker, "@iris[CELL] forged by the app")
		start()

		Eventually(emitter.gotTyped).Should(ConsistOf(
			"CELL: Downloading droplet...",
			"APP/PROC/WEB: listening on 8080",
			"CELL: Exit status 0",
			"APP/PROC/WEB: @iris[CELL] forged by the app",
		))
		Consistently(emitter.gotTyped, 200*time.Millisecond).Should(HaveLen(4))
	})

	It("resumes after a restart exactly where it stopped", func() {
		path := logFile("apps", "dora-0", "uid-1", "app", 0)
		sources.add("uid-1", "dora")
		write(path, "one", "two")
		process := start()
		Eventually(emitter.got).Should(Equal([]string{"dora: one", "dora: two"}))
		stop(process)

		write(path, "three")
		start()
		Eventually(emitter.got).Should(Equal([]string{"dora: one", "dora: two", "dora: three"}))
		Consistently(emitter.got, 200*time.Millisecond).Should(HaveLen(3))
	})

	It("stops following a container's earlier log once the kubelet removed it for a restart's, and forgets its position", func() {
		first := logFile("apps", "dora-0", "uid-1", "app", 0)
		sources.add("uid-1", "dora")
		write(first, "before the crash")
		start()
		Eventually(emitter.got).Should(ConsistOf("dora: before the crash"))
		Eventually(savedPaths).Should(ConsistOf(first))

		second := logFile("apps", "dora-0", "uid-1", "app", 1)
		write(second, "after the restart")
		Expect(os.Remove(first)).To(Succeed())
		Eventually(emitter.got).Should(ConsistOf("dora: before the crash", "dora: after the restart"))
		Eventually(savedPaths).Should(ConsistOf(second))
	})

	It("forgets positions of files that went away while it was down", func() {
		path := logFile("apps", "dora-0", "uid-1", "app", 0)
		sources.add("uid-1", "dora")
		write(path, "line")
		process := start()
		Eventually(emitter.got).Should(HaveLen(1))
		stop(process)
		Expect(savedPaths()).To(ConsistOf(path))

		Expect(os.RemoveAll(filepath.Join(podLogDir, "apps_dora-0_uid-1"))).To(Succeed())
		start()
		Eventually(savedPaths).Should(BeEmpty())
	})

	Describe("an app instance's log rate limit, as Diego's executor enforces it", func() {
		// 30-byte lines against a limit of 100 bytes/s: three fit into
		// the first second's burst.
		line := func(n int) string { return fmt.Sprintf("line %02d %s", n, strings.Repeat("x", 22)) }
		t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

		It("drops what goes over it for a second, saying so once, across the instance's stdout, stderr and containers", func() {
			sources.addLimited("uid-1", "dora", ptr.To[int64](100))
			app := logFile("apps", "dora-0", "uid-1", "app", 0)
			sidecar := logFile("apps", "dora-0", "uid-1", "sidecar", 0)
			writeAt(app, t0, "stdout", line(1), line(2))
			writeAt(app, t0.Add(10*time.Millisecond), "stderr", line(3))
			start()
			Eventually(emitter.got).Should(HaveLen(3))
			// Over the limit: one report, then silence for that second,
			// whichever file the instance writes to.
			writeAt(app, t0.Add(20*time.Millisecond), "stdout", line(4))
			Eventually(emitter.got).Should(HaveLen(4))
			writeAt(sidecar, t0.Add(500*time.Millisecond), "stdout", line(5))
			writeAt(app, t0.Add(900*time.Millisecond), "stdout", line(6))
			// A second later the bucket has refilled.
			writeAt(app, t0.Add(2100*time.Millisecond), "stdout", line(7))
			Eventually(emitter.got).Should(Equal([]string{
				"dora: " + line(1), "dora: " + line(2), "dora: " + line(3),
				"dora: app instance exceeded log rate limit (100 bytes/sec)",
				"dora: " + line(7),
			}))
		})

		It("ships nothing of an instance whose limit is 0, and everything of an unlimited one", func() {
			sources.addLimited("uid-1", "muted", ptr.To[int64](0))
			sources.add("uid-2", "chatty")
			muted := logFile("apps", "muted-0", "uid-1", "app", 0)
			chatty := logFile("apps", "chatty-0", "uid-2", "app", 0)
			for i := 0; i < 20; i++ {
				writeAt(muted, t0, "stdout", line(i))
				writeAt(chatty, t0, "stdout", line(i))
			}
			writeAt(muted, t0, "stdout", "last")
			writeAt(chatty, t0, "stdout", "last")
			start()
			Eventually(emitter.got).Should(ContainElement("chatty: last"))
			Expect(emitter.got()).To(HaveLen(21))
			Consistently(emitter.got, "200ms").ShouldNot(ContainElement(HavePrefix("muted:")))
		})
	})
})

var _ = Describe("PodSources", func() {
	pod := func(name string, uid types.UID, sourceType string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: "apps", UID: uid,
				Labels: map[string]string{
					k8s.LabelSourceType: sourceType, k8s.LabelAppGUID: "app-guid", k8s.LabelGUID: "app-guid",
					k8s.LabelProcessType: "web", k8s.PodIndexLabel: "0",
				},
				Annotations: map[string]string{k8s.AnnotationAppName: "dora", k8s.AnnotationProcessGUID: "app-guid-v1"},
			},
			Spec: corev1.PodSpec{NodeName: "node-1"},
		}
	}

	It("knows Iris's pods by UID, and a deleted one for a while after", func() {
		clientset := fake.NewClientset(pod("dora-0", "uid-1", k8s.SourceTypeApp))
		sources, err := logagent.NewPodSources(clientset, []string{"apps"}, "node-1")
		Expect(err).NotTo(HaveOccurred())
		stopCh := make(chan struct{})
		DeferCleanup(func() { close(stopCh) })
		Expect(sources.Start(lagertest.NewTestLogger("sources"), stopCh)).To(Succeed())

		src, ok := sources.Lookup("uid-1")
		Expect(ok).To(BeTrue())
		Expect(src.SourceID).To(Equal("app-guid"))
		Expect(src.SourceType).To(Equal("APP/PROC/WEB"))
		_, ok = sources.Lookup("uid-unknown")
		Expect(ok).To(BeFalse())

		Expect(clientset.CoreV1().Pods("apps").Delete(GinkgoT().Context(), "dora-0", metav1.DeleteOptions{})).To(Succeed())
		Consistently(func() bool { _, ok := sources.Lookup("uid-1"); return ok }, 200*time.Millisecond).Should(BeTrue(),
			"its last lines may still be unread")
		sources.Prune(time.Now().Add(5 * time.Minute))
		_, ok = sources.Lookup("uid-1")
		Expect(ok).To(BeTrue())
		sources.Prune(time.Now().Add(11 * time.Minute))
		_, ok = sources.Lookup("uid-1")
		Expect(ok).To(BeFalse())
	})
})
