package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/metrics"
)

type fakeUsage struct {
	pods     map[string][]metricsv1beta1.PodMetrics
	podsErr  map[string]error
	summary  map[string]*statsv1alpha1.Summary
	nodeErr  error
	listings int
}

func (f *fakeUsage) PodMetrics(_ context.Context, ns string) ([]metricsv1beta1.PodMetrics, error) {
	f.listings++
	return f.pods[ns], f.podsErr[ns]
}

func (f *fakeUsage) StatsSummary(_ context.Context, node string) (*statsv1alpha1.Summary, error) {
	if f.nodeErr != nil {
		return nil, f.nodeErr
	}
	return f.summary[node], nil
}

type podList []*corev1.Pod

func (p *podList) EachAppPod(fn func(*corev1.Pod)) {
	for _, pod := range *p {
		fn(pod)
	}
}

// collector takes every envelope at once.
type collector struct {
	mu        sync.Mutex
	envelopes []*loggregator_v2.Envelope
}

func (c *collector) EmitWait(_ context.Context, e ...*loggregator_v2.Envelope) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.envelopes = append(c.envelopes, e...)
	return nil
}

// Len is how many envelopes it has, read while a pass may be emitting.
func (c *collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.envelopes)
}

func appPod(ns, name, uid, index string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), Labels: map[string]string{
			k8s.LabelGUID: "process-guid", k8s.LabelAppGUID: "app-guid", k8s.LabelSourceType: k8s.SourceTypeApp, k8s.PodIndexLabel: index,
		}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{
			Name: k8s.AppContainerName,
			Resources: corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi"), corev1.ResourceEphemeralStorage: resource.MustParse("1Gi")},
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
			},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func podMetrics(ns, name, cpu, mem string) metricsv1beta1.PodMetrics {
	return metricsv1beta1.PodMetrics{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Containers: []metricsv1beta1.ContainerMetrics{{Name: k8s.AppContainerName, Usage: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
		}}},
	}
}

var _ = Describe("Reporter", func() {
	var (
		usage  *fakeUsage
		out    *collector
		logger *lagertest.TestLogger
	)
	used := uint64(50 << 20)

	BeforeEach(func() {
		usage = &fakeUsage{
			pods: map[string][]metricsv1beta1.PodMetrics{
				"ns1": {podMetrics("ns1", "dora-0", "50m", "100Mi")},
				"ns2": {podMetrics("ns2", "dora-1", "250m", "10Mi")},
			},
			podsErr: map[string]error{},
			summary: map[string]*statsv1alpha1.Summary{"node-a": {Pods: []statsv1alpha1.PodStats{{
				PodRef:           statsv1alpha1.PodReference{Name: "dora-0", Namespace: "ns1", UID: "uid-0"},
				EphemeralStorage: &statsv1alpha1.FsStats{UsedBytes: &used},
			}}}},
		}
		out = &collector{}
		logger = lagertest.NewTestLogger("metrics")
	})

	reporter := func(pods ...*corev1.Pod) *metrics.Reporter {
		list := podList(pods)
		return metrics.NewReporter(logger, usage, &list, out, []string{"ns1", "ns2"}, 15e9)
	}

	It("emits Diego's container metrics per instance under the process guid", func() {
		reporter(appPod("ns1", "dora-0", "uid-0", "0")).EmitOnce(context.Background())
		Expect(out.envelopes).To(HaveLen(1))
		e := out.envelopes[0]
		Expect(e.SourceId).To(Equal("process-guid"))
		Expect(e.InstanceId).To(Equal("0"))
		Expect(e.Tags).To(HaveKeyWithValue("app_id", "app-guid"))
		m := e.GetGauge().GetMetrics()
		Expect(m["cpu"].Value).To(BeNumerically("~", 5.0, 1e-9))
		Expect(m["cpu"].Unit).To(Equal("percentage"))
		Expect(m["cpu_entitlement"].Value).To(BeNumerically("~", 50.0, 1e-9))
		Expect(m["memory"].Value).To(BeEquivalentTo(100 << 20))
		Expect(m["memory_quota"].Value).To(BeEquivalentTo(256 << 20))
		Expect(m["disk"].Value).To(BeEquivalentTo(used))
		Expect(m["disk_quota"].Value).To(BeEquivalentTo(1 << 30))
		Expect(m["memory"].Unit).To(Equal("bytes"))
	})

	It("carries log_rate and log_rate_limit, without which CC from 2022-08 shows every stat as zero", func() {
		logs := uint64(1000)
		usage.summary["node-a"].Pods[0].Containers = []statsv1alpha1.ContainerStats{{Name: k8s.AppContainerName, Logs: &statsv1alpha1.FsStats{UsedBytes: &logs}}}
		clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
		r := reporter(appPod("ns1", "dora-0", "uid-0", "0")).WithClock(clk)
		r.EmitOnce(context.Background())
		m := out.envelopes[0].GetGauge().GetMetrics()
		Expect(m).To(HaveKeyWithValue("log_rate", &loggregator_v2.GaugeValue{Unit: "B/s", Value: 0}), "no earlier sample")
		Expect(m).To(HaveKeyWithValue("log_rate_limit", &loggregator_v2.GaugeValue{Unit: "B/s", Value: -1}), "an LRP without a limit is unlimited")

		clk.Step(15 * time.Second)
		logs = 4000
		r.EmitOnce(context.Background())
		Expect(out.envelopes[1].GetGauge().GetMetrics()["log_rate"].Value).To(BeNumerically("~", 200.0, 1e-9))

		clk.Step(15 * time.Second)
		logs = 10 // rotated
		r.EmitOnce(context.Background())
		Expect(out.envelopes[2].GetGauge().GetMetrics()["log_rate"].Value).To(BeZero())
		Expect(out.envelopes[2].Timestamp).To(Equal(time.Unix(1030, 0).UnixNano()))
	})

	It("reports the log rate limit the LRP asked for", func() {
		pod := appPod("ns1", "dora-0", "uid-0", "0")
		pod.Annotations = map[string]string{k8s.AnnotationLogRateLimit: "4096"}
		reporter(pod).EmitOnce(context.Background())
		Expect(out.envelopes[0].GetGauge().GetMetrics()).To(HaveKeyWithValue("log_rate_limit", &loggregator_v2.GaugeValue{Unit: "B/s", Value: 4096}))
	})

	It("lists metrics once per namespace, not per pod", func() {
		reporter(appPod("ns1", "dora-0", "uid-0", "0"), appPod("ns2", "dora-1", "uid-1", "1")).EmitOnce(context.Background())
		Expect(usage.listings).To(Equal(2))
		Expect(out.envelopes).To(HaveLen(2))
	})

	It("still emits the others when a namespace's metrics are denied, and logs that once", func() {
		usage.podsErr["ns1"] = errors.New(`pods.metrics.k8s.io is forbidden`)
		r := reporter(appPod("ns1", "dora-0", "uid-0", "0"), appPod("ns2", "dora-1", "uid-1", "1"))
		r.EmitOnce(context.Background())
		r.EmitOnce(context.Background())
		Expect(out.envelopes).To(HaveLen(2))
		for _, e := range out.envelopes {
			Expect(e.InstanceId).To(Equal("1"))
		}
		Expect(logger.LogMessages()).To(HaveLen(2)) // usage-unavailable for ns1, no-metrics for dora-0
	})

	It("emits zero disk when the stats summary is unavailable, and skips pods without metrics", func() {
		usage.nodeErr = errors.New("no kubelet")
		reporter(appPod("ns1", "dora-0", "uid-0", "0"), appPod("ns1", "new-0", "uid-9", "0")).EmitOnce(context.Background())
		Expect(out.envelopes).To(HaveLen(1))
		Expect(out.envelopes[0].GetGauge().GetMetrics()["disk"].Value).To(BeZero())
	})

	It("ignores pods that are not running", func() {
		pod := appPod("ns1", "dora-0", "uid-0", "0")
		pod.Status.Phase = corev1.PodPending
		reporter(pod).EmitOnce(context.Background())
		Expect(out.envelopes).To(BeEmpty())
		Expect(usage.listings).To(BeZero())
	})

	It("takes a pod's tags and quotas once per pod version, and afresh when the pod changes", func() {
		pod := appPod("ns1", "dora-0", "uid-0", "0")
		pod.ResourceVersion = "1"
		pod.Annotations = map[string]string{k8s.AnnotationLogRateLimit: "4096"}
		r := reporter(pod)
		r.EmitOnce(context.Background())

		pod.Annotations[k8s.AnnotationLogRateLimit] = "8192"
		r.EmitOnce(context.Background())
		Expect(out.envelopes[1].GetGauge().GetMetrics()["log_rate_limit"].Value).To(BeEquivalentTo(4096), "same resource version: the pod did not change")

		pod.ResourceVersion = "2"
		r.EmitOnce(context.Background())
		Expect(out.envelopes[2].GetGauge().GetMetrics()["log_rate_limit"].Value).To(BeEquivalentTo(8192))
	})

	It("builds new envelopes every pass: the sender may still hold the previous ones", func() {
		r := reporter(appPod("ns1", "dora-0", "uid-0", "0"))
		r.EmitOnce(context.Background())
		usage.pods["ns1"] = []metricsv1beta1.PodMetrics{podMetrics("ns1", "dora-0", "100m", "200Mi")}
		r.EmitOnce(context.Background())
		Expect(out.envelopes).To(HaveLen(2))
		Expect(out.envelopes[0]).NotTo(BeIdenticalTo(out.envelopes[1]))
		Expect(out.envelopes[0].GetGauge().GetMetrics()["memory"].Value).To(BeEquivalentTo(100 << 20))
		Expect(out.envelopes[1].GetGauge().GetMetrics()["memory"].Value).To(BeEquivalentTo(200 << 20))
	})

	It("reports a pod that took over a name under its own uid, with its own log samples", func() {
		logs := uint64(1000)
		usage.summary["node-a"].Pods[0].Containers = []statsv1alpha1.ContainerStats{{Name: k8s.AppContainerName, Logs: &statsv1alpha1.FsStats{UsedBytes: &logs}}}
		clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
		pods := podList{appPod("ns1", "dora-0", "uid-0", "0")}
		r := metrics.NewReporter(logger, usage, &pods, out, []string{"ns1"}, 15e9).WithClock(clk)
		r.EmitOnce(context.Background())

		// The StatefulSet's next pod of the same name; the summary now
		// names it and its log is larger than the old pod's.
		pods[0] = appPod("ns1", "dora-0", "uid-new", "0")
		pods[0].Annotations = map[string]string{k8s.AnnotationLogRateLimit: "10"}
		usage.summary["node-a"].Pods[0].PodRef.UID = "uid-new"
		logs = 4000
		clk.Step(15 * time.Second)
		r.EmitOnce(context.Background())
		Expect(out.envelopes).To(HaveLen(2))
		m := out.envelopes[1].GetGauge().GetMetrics()
		Expect(m["log_rate_limit"].Value).To(BeEquivalentTo(10))
		Expect(m["log_rate"].Value).To(BeZero(), "the new pod has no earlier sample")
		Expect(m["memory"].Value).To(BeEquivalentTo(100<<20), "metrics-server names pods by name")
	})

	It("logs a pod without metrics once, its recovery once, and forgets it when it is gone", func() {
		pods := podList{appPod("ns1", "dora-0", "uid-0", "0"), appPod("ns1", "new-0", "uid-9", "0")}
		r := metrics.NewReporter(logger, usage, &pods, out, []string{"ns1"}, 15e9)
		r.EmitOnce(context.Background())
		r.EmitOnce(context.Background())
		Expect(logger.LogMessages()).To(Equal([]string{"metrics.metrics.usage-unavailable"}))

		usage.pods["ns1"] = append(usage.pods["ns1"], podMetrics("ns1", "new-0", "10m", "1Mi"))
		r.EmitOnce(context.Background())
		r.EmitOnce(context.Background())
		Expect(logger.LogMessages()).To(Equal([]string{"metrics.metrics.usage-unavailable", "metrics.metrics.recovered"}))

		// Gone while without metrics: nothing more is logged about it, and
		// a pod of that name without metrics later is logged afresh.
		usage.pods["ns1"] = usage.pods["ns1"][:1]
		r.EmitOnce(context.Background())
		pods = pods[:1]
		r.EmitOnce(context.Background())
		Expect(logger.LogMessages()).To(HaveLen(3))
		pods = append(pods, appPod("ns1", "new-0", "uid-10", "0"))
		r.EmitOnce(context.Background())
		Expect(logger.LogMessages()).To(Equal([]string{"metrics.metrics.usage-unavailable", "metrics.metrics.recovered", "metrics.metrics.usage-unavailable", "metrics.metrics.usage-unavailable"}))
	})
})

// stallingEmitter takes nothing while stuck, as a Loggregator that
// stopped reading: it waits until the pass's context ends.
type stallingEmitter struct {
	*collector
	stuck atomic.Bool
}

func (s *stallingEmitter) EmitWait(ctx context.Context, e ...*loggregator_v2.Envelope) error {
	if s.stuck.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.collector.EmitWait(ctx, e...)
}

var _ = Describe("Reporter at scale", func() {
	const interval = 15 * time.Second
	var (
		usage  *fakeUsage
		pods   podList
		out    *collector
		logger *lagertest.TestLogger
		clk    *clocktesting.FakeClock
	)

	// instances are n running app pods with usage.
	instances := func(n int) {
		pods = nil
		usage.pods["ns1"] = nil
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("app-%d", i)
			pods = append(pods, appPod("ns1", name, "uid-"+name, "0"))
			usage.pods["ns1"] = append(usage.pods["ns1"], podMetrics("ns1", name, "10m", "1Mi"))
		}
	}

	BeforeEach(func() {
		usage = &fakeUsage{pods: map[string][]metricsv1beta1.PodMetrics{}, summary: map[string]*statsv1alpha1.Summary{"node-a": {}}}
		out = &collector{}
		logger = lagertest.NewTestLogger("metrics")
		clk = clocktesting.NewFakeClock(time.Unix(1000, 0))
	})

	reporter := func(emitter metrics.Emitter) *metrics.Reporter {
		return metrics.NewReporter(logger, usage, &pods, emitter, []string{"ns1"}, interval).WithClock(clk)
	}

	It("spreads a pass over the first half of the interval instead of handing it over at once", func() {
		instances(1000)
		r := reporter(out)
		done := make(chan struct{})
		go func() { defer close(done); r.EmitOnce(context.Background()) }()

		// The first batch at once; the second when a quarter of the pass
		// is due (256 of 1000 instances, of 7.5 s).
		Eventually(clk.HasWaiters).Should(BeTrue())
		Expect(out.Len()).To(Equal(256))
		clk.Step(interval / 2 * 256 / 1000)
		Eventually(out.Len).Should(Equal(512))
		Eventually(clk.HasWaiters).Should(BeTrue())
		Expect(done).NotTo(BeClosed())

		// Within half the interval, everything.
		clk.Step(interval / 2)
		Eventually(done).Should(BeClosed())
		Expect(out.Len()).To(Equal(1000))
		Expect(r.Skipped()).To(BeZero())
	})

	It("skips and counts the rest of a pass Loggregator did not take within the interval, and does not report its usage later", func() {
		instances(300) // a batch of 256, then 44
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		DeferCleanup(cancel)
		emitter := &stallingEmitter{collector: out}
		emitter.stuck.Store(true)
		r := reporter(emitter)
		r.EmitOnce(ctx)
		Expect(r.Skipped()).To(BeEquivalentTo(44), "the stuck batch is the emitter's to count")
		Expect(logger.LogMessages()).To(ConsistOf("metrics.metrics.pass-incomplete"))

		// The next pass, with Loggregator back: metrics-server no longer
		// lists the pods the last pass did not reach, so they get nothing
		// (and the pass is one batch, not paced).
		usage.pods["ns1"] = usage.pods["ns1"][:256]
		emitter.stuck.Store(false)
		done := make(chan struct{})
		go func() { defer close(done); r.EmitOnce(context.Background()) }()
		Eventually(done).Should(BeClosed())
		Expect(out.Len()).To(Equal(256))
	})

	It("ends a paced pass when signalled, without waiting for the interval", func() {
		instances(1000)
		process := ifrit.Background(reporter(out))
		Eventually(process.Ready()).Should(BeClosed())
		Eventually(clk.HasWaiters).Should(BeTrue())
		clk.Step(interval) // the first pass
		Eventually(out.Len).Should(Equal(256))

		process.Signal(os.Interrupt)
		Eventually(process.Wait()).Should(Receive(BeNil()))
		Expect(out.Len()).To(Equal(256))
		Expect(logger.LogMessages()).To(BeEmpty(), "stopping is no failure")
	})
})
