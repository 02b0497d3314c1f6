package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/bbs/models"
	loggregator_v2 "code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/google/uuid"
	"github.com/tedsuo/ifrit"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	bbsk8s "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/bifrost/bbs/bbstest"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/events"
	"github.com/iris-cf/iris/internal/benchenv"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/metrics"
	"github.com/iris-cf/iris/route"
)

// BenchmarkInstances250k feeds the real pod handlers of one Iris (the
// informer cache with its transform and indexes, route emitter, crash
// reporter, CELL logs, BBS event feed; the metrics reporter's pass) the
// pod events of 250,000 instances: first every pod as the informer's
// initial list delivers it, then one status update per instance (a
// rolling restart's readiness flip; 1% of them a crash), as fast as the
// handlers take them. It prints the event rates, CPU per event and heap.
// Run with
//
//	go test ./cmd/iris -run '^$' -bench Instances250k -benchtime 1x
//
// (IRIS_BENCH_INSTANCES for another count; 5 instances per LRP; half the
// LRPs BBS-desired, half OPI). Takes about 3 GB and a few minutes.
func BenchmarkInstances250k(b *testing.B) {
	total := benchenv.Int(b, "IRIS_BENCH_INSTANCES", 250000)
	for i := 0; i < b.N; i++ {
		benchmarkInstances(b, total, 5)
	}
}

type countingBus struct{ published atomic.Int64 }

func (c *countingBus) Publish(string, []byte) error { c.published.Add(1); return nil }
func (c *countingBus) Subscribe(string, func([]byte)) (func(), error) {
	return func() {}, nil
}
func (c *countingBus) Greet(func([]byte)) (func(), error) { return func() {}, nil }
func (c *countingBus) OnReconnect(func())                 {}

type countingEnvelopes struct{ n atomic.Int64 }

func (c *countingEnvelopes) Emit(envelopes ...*loggregator_v2.Envelope) {
	c.n.Add(int64(len(envelopes)))
}

func (c *countingEnvelopes) EmitWait(_ context.Context, envelopes ...*loggregator_v2.Envelope) error {
	c.n.Add(int64(len(envelopes)))
	return nil
}

type countingCC struct{ n atomic.Int64 }

func (c *countingCC) Post(context.Context, string, any) error { c.n.Add(1); return nil }

type countingPublisher struct{ n atomic.Int64 }

func (c *countingPublisher) Publish(models.Event) { c.n.Add(1) }

// usage answers the metrics reporter as metrics-server and the kubelets
// would: every pod's usage, empty node summaries.
type usage struct{ pods []metricsv1beta1.PodMetrics }

func (u *usage) PodMetrics(context.Context, string) ([]metricsv1beta1.PodMetrics, error) {
	return u.pods, nil
}

func (u *usage) StatsSummary(context.Context, string) (*statsv1alpha1.Summary, error) {
	return &statsv1alpha1.Summary{}, nil
}

func benchmarkInstances(b *testing.B, total, perLRP int) {
	const ns = "cf-workloads"
	lrpCount := total / perLRP
	logger := lagertest.NewTestLogger("bench")
	stsWatch, podWatch := watch.NewFakeWithChanSize(4096, false), watch.NewFakeWithChanSize(4096, false)
	clientset := fake.NewClientset()
	clientset.PrependWatchReactor("*", func(action k8stesting.Action) (bool, watch.Interface, error) {
		switch action.GetResource() {
		case schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}:
			return true, stsWatch, nil
		case schema.GroupVersionResource{Version: "v1", Resource: "pods"}:
			if action.(k8stesting.WatchAction).GetWatchRestrictions().Labels.String() == k8s.LabelSourceType+"="+k8s.SourceTypeApp {
				return true, podWatch, nil
			}
		}
		return true, watch.NewFake(), nil
	})
	caches, err := k8s.NewCaches(clientset, []string{ns})
	if err != nil {
		b.Fatal(err)
	}
	bus, envelopes, cc, publisher := &countingBus{}, &countingEnvelopes{}, &countingCC{}, &countingPublisher{}
	emitter, err := route.NewEmitter(logger, bus, caches, 0, 20*time.Second, clock.RealClock{})
	if err != nil {
		b.Fatal(err)
	}
	crashes, err := events.NewCrashReporter(logger, clientset, caches, cc, events.Options{MaxRetries: 1})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := events.NewCellLogger(logger, caches, envelopes); err != nil {
		b.Fatal(err)
	}
	if _, err := bbsk8s.NewFeed(logger, caches, publisher); err != nil {
		b.Fatal(err)
	}
	u := &usage{}
	// Diego's interval: a pass is paced over half of it (7.5 s of wall time).
	reporter := metrics.NewReporter(logger, u, caches, envelopes, []string{ns}, 15*time.Second)
	var processes []ifrit.Process
	for _, r := range []ifrit.Runner{ifrit.RunFunc(caches.Run(logger)), emitter, crashes} {
		processes = append(processes, ifrit.Invoke(r))
	}
	defer func() {
		for i := len(processes) - 1; i >= 0; i-- {
			processes[i].Signal(os.Interrupt)
			<-processes[i].Wait()
		}
	}()

	// The LRPs first (what the pods' routes and identities come from).
	builder := k8s.NewBuilder(config.Default().LRP)
	type lrpPods struct {
		sts *appsv1.StatefulSet
	}
	created := metav1.NewTime(time.Now().Add(-time.Hour))
	var template *corev1.PodSpec
	lrps := make([]lrpPods, 0, lrpCount)
	for i := 0; i < lrpCount; i++ {
		lrp := bbstest.DockerLRP(uuid.NewString()+"-"+uuid.NewString(), int32(perLRP), fmt.Sprintf("app-%d.example.com", i),
			bbstest.Space{AppName: fmt.Sprintf("app-%d", i), SpaceGUID: "space-guid", SpaceName: "dev", OrgGUID: "org-guid", OrgName: "acme"})
		w, err := bbsk8s.DesiredWorkload(lrp, bbsk8s.TranslateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if i%2 == 1 { // an OPI LRP: its crashes go to CC from Iris
			w.FrontAnnotations, w.FrontState = nil, nil
		}
		built, err := builder.Build(w, ns)
		if err != nil {
			b.Fatal(err)
		}
		sts := built.StatefulSet
		sts.UID, sts.ResourceVersion, sts.CreationTimestamp = types.UID(uuid.NewString()), strconv.Itoa(i+1), created
		if template == nil {
			template = sts.Spec.Template.Spec.DeepCopy()
		}
		stsWatch.Add(sts.DeepCopy())
		// What the pods need of it; the template's spec is the same for all.
		sts.Spec.Template.Spec = corev1.PodSpec{}
		sts.Annotations = nil
		lrps = append(lrps, lrpPods{sts: sts})
	}
	waitUntil(b, func() bool { n := 0; caches.EachStatefulSetKey(func(string) { n++ }); return n == lrpCount })

	pod := func(l lrpPods, index, serial int, rv int, ready bool, restarts int32) *corev1.Pod {
		p := benchPod(l.sts, template, index, serial, rv, ready)
		if restarts > 0 {
			s := &p.Status.ContainerStatuses[0]
			s.RestartCount = restarts
			s.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", ContainerID: "containerd://" + strconv.Itoa(serial), FinishedAt: metav1.Now()}}
		}
		return p
	}

	// Initial list: every pod added.
	before, cpu := liveHeapMiB(), benchenv.ProcessCPU()
	start := time.Now()
	serial := 0
	for _, l := range lrps {
		for index := 0; index < perLRP; index++ {
			podWatch.Add(pod(l, index, serial, 2000000+serial, true, 0))
			serial++
		}
	}
	waitUntil(b, func() bool { n := 0; caches.EachAppPod(func(*corev1.Pod) { n++ }); return n == total })
	addDuration, addCPU := time.Since(start), benchenv.ProcessCPU()-cpu
	withPods := liveHeapMiB()

	// Metrics reporter: passes over every instance. The handlers may still
	// be working off the initial list's events, so wait until the process
	// is idle: the pass's CPU is then its own (and the GC it causes).
	u.pods = make([]metricsv1beta1.PodMetrics, 0, total)
	caches.EachAppPod(func(p *corev1.Pod) {
		u.pods = append(u.pods, metricsv1beta1.PodMetrics{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
			Containers: []metricsv1beta1.ContainerMetrics{{Name: k8s.AppContainerName}}})
	})
	var passes []metricsPass
	for pass := 0; pass < 3; pass++ {
		waitIdle(b)
		passes = append(passes, measureMetricsPass(func() { reporter.EmitOnce(context.Background()) }, &envelopes.n))
	}
	metricsLoad := benchenv.LoadAverage()
	u.pods = nil

	// What building the synthetic pods costs by itself, to tell it from
	// the handlers' CPU below.
	cpu = benchenv.ProcessCPU()
	for _, l := range lrps {
		for index := 0; index < perLRP; index++ {
			_ = pod(l, index, 0, 0, true, 0)
		}
	}
	generatorCPU := 2 * (benchenv.ProcessCPU() - cpu)

	// Updates: every instance not ready, then ready again (a rolling
	// restart's flips), 1% with a crash.
	cpu, start = benchenv.ProcessCPU(), time.Now()
	published, logged := bus.published.Load(), envelopes.n.Load()
	serial = 0
	for _, ready := range []bool{false, true} {
		for li, l := range lrps {
			for index := 0; index < perLRP; index++ {
				var restarts int32
				// One instance in 100 crashes, of the OPI LRPs (odd ones):
				// the crash reporter leaves BBS LRPs' crashes to tps-watcher.
				if ready && index == 0 && li%(100/perLRP*2) == 1 {
					restarts = 1
				}
				podWatch.Add(pod(l, index, li*perLRP+index, 3000000+serial, ready, restarts))
				serial++
			}
		}
	}
	lastRV := strconv.Itoa(3000000 + 2*total - 1)
	waitUntil(b, func() bool {
		last := lrps[len(lrps)-1]
		p := caches.Pod(ns, last.sts.Name+"-"+strconv.Itoa(perLRP-1))
		return p != nil && p.ResourceVersion == lastRV
	})
	updateDuration, updateCPU := time.Since(start), benchenv.ProcessCPU()-cpu
	updates := 2 * total
	load := benchenv.LoadAverage()

	fmt.Printf("250k instances, in process (%d LRPs × %d instances; informer transform and indexes, route emitter, crash reporter, CELL logs, BBS event feed; load %s):\n", lrpCount, perLRP, load)
	fmt.Printf("  initial list: %d pod adds in %s (%.0f/s), CPU %s (%.1f µs per pod); heap %.0f MiB -> %.0f MiB (%.0f B per instance)\n",
		total, addDuration.Round(time.Millisecond), float64(total)/addDuration.Seconds(), addCPU.Round(time.Millisecond),
		float64(addCPU.Microseconds())/float64(total), before, withPods, (withPods-before)*(1<<20)/float64(total))
	handlerCPU := updateCPU - generatorCPU
	fmt.Printf("  updates: %d pod updates in %s (%.0f/s), CPU %s of which building the pods %s: handlers %.1f µs per update (one core: %.0f updates/s); %d route messages, %d CELL log envelopes, %d BBS events, %d crashes posted to CC\n",
		updates, updateDuration.Round(time.Millisecond), float64(updates)/updateDuration.Seconds(), updateCPU.Round(time.Millisecond), generatorCPU.Round(time.Millisecond),
		float64(handlerCPU.Microseconds())/float64(updates), float64(updates)/handlerCPU.Seconds(),
		bus.published.Load()-published, envelopes.n.Load()-logged, publisher.n.Load(), cc.n.Load())
	for i, p := range passes {
		name := "first pass (builds the per-pod cache)"
		if i > 0 {
			name = fmt.Sprintf("pass %d", i+1)
		}
		fmt.Printf("  metrics reporter, %s over %d instances (process idle before it): %s (paced over half the interval), CPU %s (%.1f µs per instance; %.1f%% of the 15 s interval), %.0f allocations and %.0f B per instance, %d envelopes; load %s\n",
			name, total, p.wall.Round(time.Millisecond), p.cpu.Round(time.Millisecond), float64(p.cpu.Microseconds())/float64(total),
			100*p.cpu.Seconds()/15, float64(p.mallocs)/float64(total), float64(p.bytes)/float64(total), p.envelopes, metricsLoad)
	}
	last := passes[len(passes)-1]
	benchenv.EmitResult(benchenv.Result{Goal: fmt.Sprintf("250k: pod updates the handlers take on one core (Instances250k, %d instances)", total), Value: float64(updates) / handlerCPU.Seconds(), Unit: "updates/s",
		Target: 1700, Compare: benchenv.AtLeast, Note: fmt.Sprintf("%.1f µs CPU per update; target: a rolling restart of 250k in 10 min", float64(handlerCPU.Microseconds())/float64(updates)), Load: load})
	benchenv.EmitResult(benchenv.Result{Goal: fmt.Sprintf("250k: metrics reporter CPU per pass (Instances250k, %d instances)", total), Value: last.cpu.Seconds(), Unit: "s",
		Target: 15, Compare: benchenv.AtMost, Note: fmt.Sprintf("%.1f µs per instance; target: the 15 s interval", float64(last.cpu.Microseconds())/float64(total)), Load: metricsLoad})
	benchenv.EmitResult(benchenv.Result{Goal: fmt.Sprintf("250k: heap with %d instances and handlers' state (Instances250k)", total), Value: withPods, Unit: "MiB",
		Note: fmt.Sprintf("%.0f B per instance", (withPods-before)*(1<<20)/float64(total)), Load: load})
	b.ReportMetric(float64(total)/addDuration.Seconds(), "adds/s")
	b.ReportMetric(float64(updates)/updateDuration.Seconds(), "updates/s")
	b.ReportMetric(float64(handlerCPU.Microseconds())/float64(updates), "handler-cpu-µs/update")
	b.ReportMetric(withPods, "heap-MiB")
	b.ReportMetric(float64(passes[len(passes)-1].cpu.Microseconds())/float64(total), "metrics-cpu-µs/instance")
}

// metricsPass is what one metrics reporter pass cost.
type metricsPass struct {
	wall, cpu      time.Duration
	mallocs, bytes uint64
	envelopes      int64
}

func measureMetricsPass(pass func(), envelopes *atomic.Int64) metricsPass {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	sent, cpu, start := envelopes.Load(), benchenv.ProcessCPU(), time.Now()
	pass()
	p := metricsPass{wall: time.Since(start), cpu: benchenv.ProcessCPU() - cpu, envelopes: envelopes.Load() - sent}
	runtime.ReadMemStats(&after)
	p.mallocs, p.bytes = after.Mallocs-before.Mallocs, after.TotalAlloc-before.TotalAlloc
	return p
}

// waitIdle waits until the process used under 5% of one core over half a
// second (the informer's handlers done), after a GC.
func waitIdle(b *testing.B) {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		runtime.GC()
		cpu := benchenv.ProcessCPU()
		time.Sleep(500 * time.Millisecond)
		if benchenv.ProcessCPU()-cpu < 25*time.Millisecond {
			return
		}
	}
	b.Fatal("the process did not become idle within 10 minutes")
}

func benchPod(sts *appsv1.StatefulSet, template *corev1.PodSpec, index, serial, rv int, ready bool) *corev1.Pod {
	name := sts.Name + "-" + strconv.Itoa(index)
	labels := make(map[string]string, len(sts.Spec.Template.Labels)+3)
	for k, v := range sts.Spec.Template.Labels {
		labels[k] = v
	}
	labels[appsv1.ControllerRevisionHashLabelKey] = sts.Name + "-6d5f8c7b9c"
	labels[appsv1.StatefulSetPodNameLabel] = name
	labels[k8s.PodIndexLabel] = strconv.Itoa(index)
	annotations := make(map[string]string, len(sts.Spec.Template.Annotations))
	for k, v := range sts.Spec.Template.Annotations {
		annotations[k] = v
	}
	started := metav1.NewTime(sts.CreationTimestamp.Add(time.Second))
	readiness := corev1.ConditionFalse
	if ready {
		readiness = corev1.ConditionTrue
	}
	spec := *template.DeepCopy()
	spec.NodeName = "cell-" + strconv.Itoa(serial%100)
	ip := fmt.Sprintf("10.%d.%d.%d", 200+serial/62500%50, serial/250%250, serial%250)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: sts.Namespace, UID: types.UID(fmt.Sprintf("%s-%d", sts.UID, index)), ResourceVersion: strconv.Itoa(rv),
			Labels: labels, Annotations: annotations, CreationTimestamp: sts.CreationTimestamp,
			OwnerReferences: []metav1.OwnerReference{k8s.OwnerReference(sts)},
		},
		Spec: spec,
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip, HostIP: "10.0.0.1", StartTime: &started, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: started},
				{Type: corev1.PodReady, Status: readiness, LastTransitionTime: started},
				{Type: corev1.ContainersReady, Status: readiness, LastTransitionTime: started},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: started},
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: k8s.AppContainerName, Ready: ready, Started: ptr.To(true), Image: spec.Containers[0].Image, ContainerID: "containerd://" + name,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
			}},
		},
	}
}

func waitUntil(b *testing.B, done func() bool) {
	if err := benchenv.WaitUntil(10*time.Minute, done); err != nil {
		b.Fatal("the caches did not catch up within 10 minutes")
	}
}

func liveHeapMiB() float64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}
