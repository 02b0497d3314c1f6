// Package metrics emits container metrics of app instances to Loggregator,
// as Diego's cells do: every interval, per instance, one gauge envelope with
// cpu, memory, disk and their quotas, under the process guid CC queries.
package metrics

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
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

// Emitter takes envelopes without blocking (*logs.Sender).
type Emitter interface {
	Emit(envelopes ...*loggregator_v2.Envelope)
}

// Reporter emits metrics every interval. It is an ifrit runner.
type Reporter struct {
	logger     lager.Logger
	usage      Usage
	pods       AppPods
	emitter    Emitter
	namespaces []string
	interval   time.Duration
	clock      clock.PassiveClock

	// logSamples are the last log byte count seen per pod, for log_rate.
	logSamples map[types.UID]logSample

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
		logSamples: map[types.UID]logSample{},
		problems:   map[string]bool{},
	}
}

// WithClock makes the reporter read time from c (a fake clock in tests).
func (r *Reporter) WithClock(c clock.PassiveClock) *Reporter {
	r.clock = c
	return r
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
	close(ready)
	ticker := time.NewTicker(r.interval)
	defer ticker.Stop()
	for {
		select {
		case <-signals:
			return nil
		case <-ticker.C:
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
// whose usage is known. Failures of one source are logged once and the
// others are still emitted.
func (r *Reporter) EmitOnce(ctx context.Context) {
	var pods []*corev1.Pod
	nodes := map[string]bool{}
	r.pods.EachAppPod(func(pod *corev1.Pod) {
		if pod.Status.Phase == corev1.PodRunning && pod.DeletionTimestamp == nil && pod.Spec.NodeName != "" {
			pods = append(pods, pod)
			nodes[pod.Spec.NodeName] = true
		}
	})
	if len(pods) == 0 {
		return
	}

	usage := map[types.UID]*containerUsage{}
	byName := map[string]types.UID{}
	for _, pod := range pods {
		usage[pod.UID] = &containerUsage{}
		byName[pod.Namespace+"/"+pod.Name] = pod.UID
	}
	for _, ns := range r.namespaces {
		list, err := r.usage.PodMetrics(ctx, ns)
		if r.problem("pod-metrics/"+ns, err) {
			continue
		}
		for _, pm := range list {
			u := usage[byName[pm.Namespace+"/"+pm.Name]]
			if u == nil {
				continue
			}
			for _, c := range pm.Containers {
				if c.Name == k8s.AppContainerName {
					u.cpuNanoCores = c.Usage.Cpu().ScaledValue(resource.Nano)
					u.memoryBytes = c.Usage.Memory().Value()
					u.known = true
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
			u := usage[types.UID(ps.PodRef.UID)]
			if u == nil {
				continue
			}
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

	r.forgetPodsOtherThan(pods)
	now := r.clock.Now()
	for _, pod := range pods {
		u := usage[pod.UID]
		if !u.known {
			r.problem(podProblemKey(pod), fmt.Errorf("no metrics for pod yet"))
			continue
		}
		r.problem(podProblemKey(pod), nil)
		if e := gauge(pod, u, r.logRate(pod.UID, u, now), now); e != nil {
			r.emitter.Emit(e)
		}
	}
}

// logRate is the bytes per second the container logged since the previous
// round: the growth of its log files in the kubelet's stats summary. 0 when
// there is no earlier sample yet, the summary is not read
// (metrics.disk_from_stats_summary off) or the log was rotated meanwhile.
func (r *Reporter) logRate(uid types.UID, u *containerUsage, now time.Time) float64 {
	if !u.logsKnown {
		return 0
	}
	prev, seen := r.logSamples[uid]
	r.logSamples[uid] = logSample{bytes: u.logBytes, at: now}
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

// gauge builds Diego's container metric envelope for pod. Quotas are the
// container's limits; cpu is a percentage of one core; cpu_entitlement is
// usage as a percentage of the CPU request, when there is one.
//
// log_rate and log_rate_limit are always present: CC from 2022-08 on reads
// the gauge only when it carries them and shows every stat as zero
// otherwise. log_rate_limit is the limit the LRP asked for, which Iris's log
// agent enforces, or -1 for unlimited, as Diego's executor reports it.
func gauge(pod *corev1.Pod, u *containerUsage, logRate float64, now time.Time) *loggregator_v2.Envelope {
	src, ok := logs.SourceForPod(pod)
	if !ok {
		return nil
	}
	index, err := strconv.Atoi(pod.Labels[k8s.PodIndexLabel])
	if err != nil {
		return nil
	}
	var limits, requests corev1.ResourceList
	for _, c := range pod.Spec.Containers {
		if c.Name == k8s.AppContainerName {
			limits, requests = c.Resources.Limits, c.Resources.Requests
		}
	}
	cpuPercent := float64(u.cpuNanoCores) / 1e7 // nanocores → % of one core
	values := map[string]*loggregator_v2.GaugeValue{
		"cpu":          {Unit: "percentage", Value: cpuPercent},
		"memory":       {Unit: "bytes", Value: float64(u.memoryBytes)},
		"disk":         {Unit: "bytes", Value: float64(u.diskBytes)},
		"memory_quota": {Unit: "bytes", Value: float64(limits.Memory().Value())},
		"disk_quota":   {Unit: "bytes", Value: float64(limits.StorageEphemeral().Value())},
		// Diego's executor reports both in bytes per second.
		"log_rate":       {Unit: "B/s", Value: logRate},
		"log_rate_limit": {Unit: "B/s", Value: logRateLimit(src)},
	}
	if request := requests.Cpu().MilliValue(); request > 0 {
		values["cpu_entitlement"] = &loggregator_v2.GaugeValue{Unit: "percentage", Value: float64(u.cpuNanoCores) / 1e6 / float64(request) * 100}
	}
	tags := make(map[string]string, len(src.Tags))
	for k, v := range src.Tags {
		tags[k] = v
	}
	return &loggregator_v2.Envelope{
		Timestamp: now.UnixNano(),
		// CC reads an OPI process's metrics by its process guid.
		SourceId:   pod.Labels[k8s.LabelGUID],
		InstanceId: strconv.Itoa(index),
		Tags:       tags,
		Message:    &loggregator_v2.Envelope_Gauge{Gauge: &loggregator_v2.Gauge{Metrics: values}},
	}
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

// forgetPodsOtherThan drops per-pod problems and log samples of pods that
// are gone.
func (r *Reporter) forgetPodsOtherThan(pods []*corev1.Pod) {
	current := make(map[string]bool, len(pods))
	for _, pod := range pods {
		current[podProblemKey(pod)] = true
	}
	uids := make(map[types.UID]bool, len(pods))
	for _, pod := range pods {
		uids[pod.UID] = true
	}
	for uid := range r.logSamples {
		if !uids[uid] {
			delete(r.logSamples, uid)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for key := range r.problems {
		if strings.HasPrefix(key, noMetricsPrefix) && !current[key] {
			delete(r.problems, key)
		}
	}
}

const noMetricsPrefix = "no-metrics/"

func podProblemKey(pod *corev1.Pod) string { return noMetricsPrefix + pod.Namespace + "/" + pod.Name }
