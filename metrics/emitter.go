// Package metrics emits container metrics of app instances to Loggregator,
// as Diego's cells do: every interval, per instance, one gauge envelope with
// cpu, memory, disk and their quotas, under the process guid CC queries.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	"k8s.io/utils/clock"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/logs"
)

// Usage reads resource usage: PodMetrics from the metrics.k8s.io API (one
// list per namespace) and the kubelet's stats summary (one per node).
type Usage interface {
	PodMetrics(ctx context.Context, namespace string) ([]metricsv1beta1.PodMetrics, error)
	StatsSummary(ctx context.Context, node string) (*statsv1alpha1.Summary, error)
}

// AppPods lists the cached app pods (*k8s.Caches).
type AppPods interface {
	EachAppPod(fn func(*corev1.Pod))
}

// Emitter takes envelopes for Loggregator (*logs.Sender), waiting while
// it has too many queued until ctx ends (then it counts what it did not
// take as dropped): a pass is far larger than any buffer, and must neither
// be dropped nor push log lines out.
type Emitter interface {
	EmitWait(ctx context.Context, envelopes ...*loggregator_v2.Envelope) error
}

// Reporter emits metrics every interval. It is an ifrit runner.
type Reporter struct {
	logger     lager.Logger
	usage      Usage
	pods       AppPods
	emitter    Emitter
	namespaces []string
	interval   time.Duration
	clock      clock.WithTicker

	// skipped counts the envelopes passes did not emit because the
	// emitter did not take them within the interval.
	skipped atomic.Uint64

	// instances are what the reporter knows of every running app pod, by
	// uid, and byName the same by namespace and name (how metrics-server
	// names them). Only EmitOnce uses them; Run calls it from one goroutine.
	instances map[types.UID]*instance
	byName    map[podName]*instance
	// pass numbers EmitOnce's calls, to forget the pods a pass did not see.
	pass uint64
	// running is the instances of one pass, kept to reuse its array.
	running []*instance

	// problems logged once each until they go away, so a missing
	// metrics-server or an RBAC denial is visible without flooding the log.
	mu       sync.Mutex
	problems map[string]bool
}

// NewReporter returns a reporter for the app pods in namespaces.
func NewReporter(logger lager.Logger, usage Usage, pods AppPods, emitter Emitter, namespaces []string, interval time.Duration) *Reporter {
	return &Reporter{
		logger:     logger.Session("metrics"),
		usage:      usage,
		pods:       pods,
		emitter:    emitter,
		namespaces: namespaces,
		interval:   interval,
		clock:      clock.RealClock{},
		instances:  map[types.UID]*instance{},
		byName:     map[podName]*instance{},
		problems:   map[string]bool{},
	}
}

// WithClock makes the reporter read time and wait with c (a fake clock in
// tests).
func (r *Reporter) WithClock(c clock.WithTicker) *Reporter {
	r.clock = c
	return r
}

// Skipped is how many envelopes passes did not emit because Loggregator
// did not take them within the interval.
func (r *Reporter) Skipped() uint64 { return r.skipped.Load() }

type podName struct{ namespace, name string }

// instance is one running app pod: what its envelope takes from the pod,
// derived once per pod version (at 250,000 instances, deriving it on every
// pass cost more than the pass's interval), the usage this pass found, and
// the state kept between passes.
type instance struct {
	uid             types.UID
	name            podName
	resourceVersion string
	// seen is the last pass that listed the pod.
	seen uint64

	// From the pod. ok is false for a pod that gets no envelope (not one
	// of Iris's app instances, or without an index).
	ok         bool
	sourceID   string
	instanceID string
	// tags are shared, read only, by every envelope of this pod version:
	// nothing downstream writes an envelope's tags.
	tags            map[string]string
	memoryQuota     float64
	diskQuota       float64
	cpuRequestMilli int64
	logRateLimit    float64

	// This pass's usage.
	usage containerUsage

	// Between passes: the last log size, for log_rate, and whether the
	// pod's missing metrics were logged.
	logSample  logSample
	logSampled bool
	noMetrics  bool
}

// logSample is a container's log size at one time.
type logSample struct {
	bytes uint64
	at    time.Time
}

// Run emits once per interval until signalled.
func (r *Reporter) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A signal ends a pass too: a paced pass takes half the interval.
	go func() {
		select {
		case <-signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	close(ready)
	ticker := r.clock.NewTicker(r.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
			// A round never takes longer than the interval, so rounds do not pile up.
			roundCtx, done := context.WithTimeout(ctx, r.interval)
			r.EmitOnce(roundCtx)
			done()
		}
	}
}

// containerUsage is what one app container uses.
type containerUsage struct {
	cpuNanoCores int64
	memoryBytes  int64
	known        bool
	diskBytes    int64
	diskKnown    bool
	logBytes     uint64
	logsKnown    bool
}

// EmitOnce reads usage and emits one envelope per running app instance
// whose usage is known, spread over the first half of the interval (see
// pace). Failures of one source are logged once and the others are still
// emitted. When ctx ends before the emitter took the whole pass, the rest
// is skipped (and counted): the next pass brings newer values anyway.
func (r *Reporter) EmitOnce(ctx context.Context) {
	start := r.clock.Now()
	r.pass++
	// Each pod is derived as it is listed and not kept: the cache makes
	// every pod it lists for the call, 1.2 KB each.
	instances := r.running[:0]
	nodes := map[string]bool{}
	r.pods.EachAppPod(func(pod *corev1.Pod) {
		if pod.Status.Phase == corev1.PodRunning && pod.DeletionTimestamp == nil && pod.Spec.NodeName != "" {
			instances = append(instances, r.instance(pod))
			nodes[pod.Spec.NodeName] = true
		}
	})
	defer func() {
		// Keep the array, not the instances: deleted ones must not stay alive.
		clear(instances)
		r.running = instances[:0]
	}()
	r.forgetUnseen()
	if len(instances) == 0 {
		return
	}

	for _, ns := range r.namespaces {
		list, err := r.usage.PodMetrics(ctx, ns)
		if r.problem("pod-metrics/"+ns, err) {
			continue
		}
		for i := range list {
			pm := &list[i]
			inst := r.byName[podName{pm.Namespace, pm.Name}]
			if inst == nil {
				continue
			}
			for _, c := range pm.Containers {
				if c.Name == k8s.AppContainerName {
					inst.usage.cpuNanoCores = nanoCores(c.Usage)
					inst.usage.memoryBytes = quantityValue(c.Usage, corev1.ResourceMemory)
					inst.usage.known = true
				}
			}
		}
	}
	for node := range nodes {
		summary, err := r.usage.StatsSummary(ctx, node)
		if r.problem("stats-summary/"+node, err) {
			continue
		}
		for _, ps := range summary.Pods {
			inst := r.instances[types.UID(ps.PodRef.UID)]
			if inst == nil {
				continue
			}
			u := &inst.usage
			if ps.EphemeralStorage != nil && ps.EphemeralStorage.UsedBytes != nil {
				u.diskBytes, u.diskKnown = int64(*ps.EphemeralStorage.UsedBytes), true
			}
			for _, c := range ps.Containers {
				if c.Name == k8s.AppContainerName && c.Logs != nil && c.Logs.UsedBytes != nil {
					u.logBytes, u.logsKnown = *c.Logs.UsedBytes, true
				}
			}
		}
	}

	now := r.clock.Now()
	batch := make([]*loggregator_v2.Envelope, 0, emitBatch)
	first, emitted := 0, 0
	flush := func() error {
		if err := r.pace(ctx, start, first, len(instances)); err != nil {
			r.skipped.Add(uint64(len(batch)))
			return err
		}
		// What the emitter did not take of the batch, it counts itself.
		if err := r.emitter.EmitWait(ctx, batch...); err != nil {
			return err
		}
		emitted += len(batch)
		batch = batch[:0]
		return nil
	}
	for i, inst := range instances {
		u := inst.usage
		inst.usage = containerUsage{}
		if !u.known {
			if !inst.noMetrics {
				inst.noMetrics = true
				r.problem(noMetricsPrefix+inst.name.namespace+"/"+inst.name.name, fmt.Errorf("no metrics for pod yet"))
			}
			continue
		}
		if inst.noMetrics {
			inst.noMetrics = false
			r.problem(noMetricsPrefix+inst.name.namespace+"/"+inst.name.name, nil)
		}
		logRate := inst.logRate(&u, now)
		if !inst.ok {
			continue
		}
		if len(batch) == 0 {
			first = i
		}
		batch = append(batch, inst.gauge(&u, logRate, now))
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				r.incomplete(ctx, err, emitted, instances[i+1:])
				return
			}
		}
	}
	if len(batch) > 0 {
		if err := flush(); err != nil {
			r.incomplete(ctx, err, emitted, nil)
		}
	}
}

// emitBatch is how many envelopes EmitOnce hands the emitter at once.
const emitBatch = 256

// pace waits until the batch starting at instance first of n is due: a
// pass's envelopes go out evenly over the first half of the interval. One
// Iris emits what a whole foundation's cells emit, each a little, on
// their own schedules; handed over at once, a 250,000-instance pass would
// reach Loggregator's agent as one burst that its buffers must absorb.
// Evenly, it is the steady rate the foundation produces anyway. The other
// half leaves room for reading usage and for a slow Loggregator to catch
// up before the next pass. A batch that is late goes out at once.
func (r *Reporter) pace(ctx context.Context, start time.Time, first, n int) error {
	due := start.Add(time.Duration(int64(r.interval/2) * int64(first) / int64(n)))
	wait := due.Sub(r.clock.Now())
	if wait <= 0 {
		return nil
	}
	timer := r.clock.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pacing metrics: %w", ctx.Err())
	}
}

// incomplete ends a pass that ran out of time (or was stopped): the
// instances it did not reach forget this pass's usage, so the next pass
// does not report it as theirs, and are counted as skipped.
func (r *Reporter) incomplete(ctx context.Context, err error, emitted int, rest []*instance) {
	skipped := 0
	for _, inst := range rest {
		if inst.usage.known && inst.ok {
			skipped++
		}
		inst.usage = containerUsage{}
	}
	r.skipped.Add(uint64(skipped))
	if errors.Is(ctx.Err(), context.Canceled) {
		return // stopping
	}
	r.logger.Error("pass-incomplete", err, lager.Data{"emitted": emitted, "skipped": skipped})
}

// instance returns what the reporter knows of pod, derived afresh when the
// pod is new or changed, and marks it seen by this pass.
func (r *Reporter) instance(pod *corev1.Pod) *instance {
	inst := r.instances[pod.UID]
	if inst == nil {
		inst = &instance{uid: pod.UID}
		r.instances[pod.UID] = inst
	}
	if inst.resourceVersion != pod.ResourceVersion || inst.resourceVersion == "" {
		inst.derive(pod)
	}
	// A pod's name outlives it (a StatefulSet's next pod takes it): the
	// newest pod listed under a name is the one metrics-server means.
	r.byName[inst.name] = inst
	inst.seen = r.pass
	return inst
}

// forgetUnseen drops the pods this pass did not list, and their problems.
func (r *Reporter) forgetUnseen() {
	var gone []string
	for uid, inst := range r.instances {
		if inst.seen == r.pass {
			continue
		}
		delete(r.instances, uid)
		if r.byName[inst.name] == inst {
			delete(r.byName, inst.name)
		}
		if inst.noMetrics {
			gone = append(gone, noMetricsPrefix+inst.name.namespace+"/"+inst.name.name)
		}
	}
	if len(gone) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, key := range gone {
		delete(r.problems, key)
	}
}

// derive takes from pod what its envelopes need.
func (inst *instance) derive(pod *corev1.Pod) {
	inst.name = podName{pod.Namespace, pod.Name}
	inst.resourceVersion = pod.ResourceVersion
	inst.ok = false
	inst.tags = nil
	src, ok := logs.SourceForPod(pod)
	if !ok {
		return
	}
	index, err := strconv.Atoi(pod.Labels[k8s.PodIndexLabel])
	if err != nil {
		return
	}
	var limits, requests corev1.ResourceList
	for _, c := range pod.Spec.Containers {
		if c.Name == k8s.AppContainerName {
			limits, requests = c.Resources.Limits, c.Resources.Requests
		}
	}
	inst.ok = true
	// CC reads an OPI process's metrics by its process guid.
	inst.sourceID = pod.Labels[k8s.LabelGUID]
	inst.instanceID = strconv.Itoa(index)
	inst.tags = src.Tags
	inst.memoryQuota = float64(limits.Memory().Value())
	inst.diskQuota = float64(limits.StorageEphemeral().Value())
	inst.cpuRequestMilli = requests.Cpu().MilliValue()
	inst.logRateLimit = logRateLimit(src)
}

// nanoCores is the CPU in usage, in nanocores; 0 when absent.
func nanoCores(usage corev1.ResourceList) int64 {
	q, ok := usage[corev1.ResourceCPU]
	if !ok {
		return 0
	}
	return q.ScaledValue(resource.Nano)
}

// quantityValue is the named quantity in usage; 0 when absent.
func quantityValue(usage corev1.ResourceList, name corev1.ResourceName) int64 {
	q, ok := usage[name]
	if !ok {
		return 0
	}
	return q.Value()
}

// logRate is the bytes per second the container logged since the previous
// round: the growth of its log files in the kubelet's stats summary. 0 when
// there is no earlier sample yet, the summary is not read
// (metrics.disk_from_stats_summary off) or the log was rotated meanwhile.
func (inst *instance) logRate(u *containerUsage, now time.Time) float64 {
	if !u.logsKnown {
		return 0
	}
	prev, seen := inst.logSample, inst.logSampled
	inst.logSample, inst.logSampled = logSample{bytes: u.logBytes, at: now}, true
	elapsed := now.Sub(prev.at).Seconds()
	if !seen || elapsed <= 0 || u.logBytes < prev.bytes {
		return 0
	}
	return float64(u.logBytes-prev.bytes) / elapsed
}

// logRateLimit is the gauge's log_rate_limit: -1 for unlimited, as Diego's
// executor reports it.
func logRateLimit(src logs.Source) float64 {
	if src.LogRateLimit == nil {
		return -1
	}
	return float64(*src.LogRateLimit)
}

// gaugeEnvelope is one gauge envelope with everything it points to, in
// one allocation instead of eleven. The sender holds envelopes until
// Loggregator has them, so each pass needs new ones.
type gaugeEnvelope struct {
	envelope loggregator_v2.Envelope
	message  loggregator_v2.Envelope_Gauge
	gauge    loggregator_v2.Gauge
	values   [8]loggregator_v2.GaugeValue
}

// gauge builds Diego's container metric envelope for the instance. Quotas
// are the container's limits; cpu is a percentage of one core;
// cpu_entitlement is usage as a percentage of the CPU request, when there
// is one.
//
// log_rate and log_rate_limit are always present: CC from 2022-08 on reads
// the gauge only when it carries them and shows every stat as zero
// otherwise. log_rate_limit is the limit the LRP asked for, which Iris's log
// agent enforces, or -1 for unlimited, as Diego's executor reports it.
func (inst *instance) gauge(u *containerUsage, logRate float64, now time.Time) *loggregator_v2.Envelope {
	g := &gaugeEnvelope{}
	g.values = [8]loggregator_v2.GaugeValue{
		{Unit: "percentage", Value: float64(u.cpuNanoCores) / 1e7}, // nanocores → % of one core
		{Unit: "bytes", Value: float64(u.memoryBytes)},
		{Unit: "bytes", Value: float64(u.diskBytes)},
		{Unit: "bytes", Value: inst.memoryQuota},
		{Unit: "bytes", Value: inst.diskQuota},
		// Diego's executor reports both in bytes per second.
		{Unit: "B/s", Value: logRate},
		{Unit: "B/s", Value: inst.logRateLimit},
	}
	values := make(map[string]*loggregator_v2.GaugeValue, len(g.values))
	values["cpu"] = &g.values[0]
	values["memory"] = &g.values[1]
	values["disk"] = &g.values[2]
	values["memory_quota"] = &g.values[3]
	values["disk_quota"] = &g.values[4]
	values["log_rate"] = &g.values[5]
	values["log_rate_limit"] = &g.values[6]
	if request := inst.cpuRequestMilli; request > 0 {
		g.values[7] = loggregator_v2.GaugeValue{Unit: "percentage", Value: float64(u.cpuNanoCores) / 1e6 / float64(request) * 100}
		values["cpu_entitlement"] = &g.values[7]
	}
	g.gauge.Metrics = values
	g.message.Gauge = &g.gauge
	g.envelope = loggregator_v2.Envelope{
		Timestamp:  now.UnixNano(),
		SourceId:   inst.sourceID,
		InstanceId: inst.instanceID,
		Tags:       inst.tags,
		Message:    &g.message,
	}
	return &g.envelope
}

// problem logs err once under key and reports whether there was one; a nil
// err clears the key so a recurrence is logged again.
func (r *Reporter) problem(key string, err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		if r.problems[key] {
			r.logger.Info("recovered", lager.Data{"source": key})
			delete(r.problems, key)
		}
		return false
	}
	if !r.problems[key] {
		r.logger.Error("usage-unavailable", err, lager.Data{"source": key})
		r.problems[key] = true
	}
	return true
}

const noMetricsPrefix = "no-metrics/"
