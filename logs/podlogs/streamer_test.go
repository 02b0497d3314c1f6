package podlogs_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/logs/podlogs"
)

type podHandlers struct{ pods cache.ResourceEventHandler }

func (p *podHandlers) AddEventHandlers(_, pods cache.ResourceEventHandler) error {
	p.pods = pods
	return nil
}
func (p *podHandlers) AddJobPodEventHandler(cache.ResourceEventHandler) error { return nil }

type payloads struct {
	mu    sync.Mutex
	lines []string
}

func (p *payloads) Emit(envelopes ...*loggregator_v2.Envelope) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range envelopes {
		p.lines = append(p.lines, string(e.GetLog().GetPayload()))
	}
}

func (p *payloads) got() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// logServer plays the API server's pods/log endpoint: each connection gets
// the next scripted answer, after recording the sinceTime it asked for.
type logServer struct {
	mu      sync.Mutex
	answers []func(w http.ResponseWriter)
	since   []string
}

func (l *logServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	Expect(r.URL.Path).To(Equal("/api/v1/namespaces/apps/pods/dora-0/log"))
	Expect(r.URL.Query().Get("follow")).To(Equal("true"))
	Expect(r.URL.Query().Get("timestamps")).To(Equal("true"))
	l.mu.Lock()
	l.since = append(l.since, r.URL.Query().Get("sinceTime"))
	var answer func(http.ResponseWriter)
	if len(l.answers) > 0 {
		answer, l.answers = l.answers[0], l.answers[1:]
	}
	l.mu.Unlock()
	if answer == nil {
		<-r.Context().Done() // a quiet, open stream
		return
	}
	answer(w)
}

func (l *logServer) sinceTimes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.since...)
}

// startStreamer runs a streamer against server until the spec ends and
// returns where it registered its pod handlers and what it emitted.
func startStreamer(server http.Handler) (*podHandlers, *payloads) {
	httpServer := httptest.NewServer(server)
	DeferCleanup(httpServer.Close)
	clientset, err := kubernetes.NewForConfig(&rest.Config{Host: httpServer.URL})
	Expect(err).NotTo(HaveOccurred())
	handlers := &podHandlers{}
	emitter := &payloads{}
	streamer, err := podlogs.NewStreamer(lagertest.NewTestLogger("pod-logs"), clientset, handlers, emitter)
	Expect(err).NotTo(HaveOccurred())
	process := ifrit.Invoke(streamer)
	DeferCleanup(func() {
		process.Signal(os.Interrupt)
		Eventually(process.Wait()).Should(Receive())
	})
	return handlers, emitter
}

// appPod is dora-0 with its app container started after the streamer did
// (so it is read from its start), with annotations.
func appPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "dora-0", Namespace: "apps", UID: "uid-1",
			Labels:      map[string]string{k8s.LabelAppGUID: "app", k8s.LabelSourceType: k8s.SourceTypeApp, k8s.PodIndexLabel: "0"},
			Annotations: annotations,
		},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name:    k8s.AppContainerName,
			Started: ptr.To(true),
			State:   corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Now().Add(time.Hour))}},
		}}},
	}
}

var _ = Describe("Streamer", func() {
	It("reconnects after the stream breaks, from the last line's second, without repeating a line", func() {
		base := time.Now().UTC().Truncate(time.Second)
		line := func(offset time.Duration, text string) string {
			return fmt.Sprintf("%s %s\n", base.Add(offset).Format(time.RFC3339Nano), text)
		}
		server := &logServer{answers: []func(http.ResponseWriter){
			// The first stream ends after two lines (an API server restart).
			func(w http.ResponseWriter) {
				fmt.Fprint(w, line(100*time.Millisecond, "one"), line(200*time.Millisecond, "two"))
			},
			// The server answers the retry from the second: "one" and "two" again.
			func(w http.ResponseWriter) {
				fmt.Fprint(w, line(100*time.Millisecond, "one"), line(200*time.Millisecond, "two"), line(300*time.Millisecond, "three"))
			},
			// Then it refuses once.
			func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) },
		}}
		handlers, emitter := startStreamer(server)
		// A container that started after the streamer did: read from its start.
		handlers.pods.OnAdd(appPod(nil), false)

		Eventually(emitter.got, 10*time.Second).Should(Equal([]string{"one", "two", "three"}))
		Eventually(server.sinceTimes, 10*time.Second).Should(HaveLen(4), "retried after the 503 as well")
		since := server.sinceTimes()
		Expect(since[0]).To(BeEmpty(), "the first stream starts at the container's start")
		Expect(since[1]).To(Equal(base.Format(time.RFC3339)), "the second at the last line's second")
		Expect(since[2]).To(Equal(base.Format(time.RFC3339)))
		Expect(since[3]).To(Equal(base.Format(time.RFC3339)), "a refused retry does not move it")
		Consistently(emitter.got, 300*time.Millisecond).Should(HaveLen(3))
	})

	It("drops an instance's lines over its log rate limit, reporting the overage once, as Diego does", func() {
		base := time.Now().UTC().Truncate(time.Second)
		line := func(offset time.Duration, text string) string {
			return fmt.Sprintf("%s %s\n", base.Add(offset).Format(time.RFC3339Nano), text)
		}
		// 9-byte lines written within 30 ms against 25 bytes/s: two fit.
		server := &logServer{answers: []func(http.ResponseWriter){func(w http.ResponseWriter) {
			fmt.Fprint(w, line(100*time.Millisecond, "line-0001"), line(110*time.Millisecond, "line-0002"),
				line(120*time.Millisecond, "line-0003"), line(130*time.Millisecond, "line-0004"),
				line(2500*time.Millisecond, "line-0005"))
		}}}
		handlers, emitter := startStreamer(server)
		handlers.pods.OnAdd(appPod(map[string]string{k8s.AnnotationLogRateLimit: "25"}), false)
		Eventually(emitter.got, 10*time.Second).Should(Equal([]string{
			"line-0001", "line-0002", "app instance exceeded log rate limit (25 bytes/sec)", "line-0005",
		}))
	})
})
