package events

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"code.cloudfoundry.org/lager/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/iris-cf/iris/cc"
	"github.com/iris-cf/iris/k8s"
)

// CCPoster sends a callback to Cloud Controller; *cc.Client implements it.
type CCPoster interface {
	Post(ctx context.Context, path string, body any) error
}

// PodSource delivers pod events and serves pods from the cache;
// *k8s.Caches implements it.
type PodSource interface {
	AddEventHandlers(statefulSets, pods cache.ResourceEventHandler) error
	Pod(namespace, name string) *corev1.Pod
}

// AnnotationUnreportedCrashes lists, as JSON, the crashes seen on a pod that
// CC has not accepted yet, oldest first.
const AnnotationUnreportedCrashes = "cloudfoundry.org/unreported-crashes"

// maxUnreportedCrashes bounds the list kept per pod while CC is down. With
// the kubelet's crash-loop backoff capped at 5 minutes that is over 4 hours
// of an instance crashing without pause; older crashes are dropped, logged.
const maxUnreportedCrashes = 50

// CrashReporter posts every crash of an app instance to CC once, in order,
// each with its own exit status and crash count.
//
// A pod shows only its latest termination, so a crash that is not reported
// before the container crashes again would vanish from Kubernetes. The
// informer handler therefore captures each crash from the pod update that
// shows it, and the worker writes the crashes CC has not accepted onto the
// pod (AnnotationUnreportedCrashes) before it posts them: a CC outage, an
// Iris restart or a new leader loses none. A posted crash is recorded with
// AnnotationLastReportedCrash, which also tells the other replicas (whose
// handlers see every pod too) that it is done.
//
// CC down or answering 5xx: retried with capped exponential backoff up to
// maxRetries (and again on the pod's next event); 4xx: final, logged and
// recorded so it is not retried.
type CrashReporter struct {
	*worker
	clientset kubernetes.Interface
	pods      PodSource
	cc        CCPoster

	mu sync.Mutex
	// instances holds the pods with crashes in flight, by queue key
	// (namespace/name/uid: a StatefulSet reuses the name for the next pod,
	// whose crashes are its own).
	instances map[string]*instanceCrashes
}

// instanceCrashes is what this process knows of one pod's crashes.
type instanceCrashes struct {
	namespace, name string
	uid             types.UID
	// pending are the crashes CC has not accepted, oldest first.
	pending []Crash
	// done are the keys of crashes reported (or finally rejected) lately,
	// so an event from a cache that lags behind Iris's own writes cannot
	// bring one back. Bounded: a stale event is seconds old, not hours.
	done []string
	// recorded is true while pending is what the pod's annotation holds.
	recorded bool
	gone     bool // the pod was deleted
}

const maxDoneKeys = 64

// NewCrashReporter registers for pod events; Run starts reporting.
func NewCrashReporter(logger lager.Logger, clientset kubernetes.Interface, pods PodSource, ccClient CCPoster, opts Options) (*CrashReporter, error) {
	r := &CrashReporter{
		clientset: clientset,
		pods:      pods,
		cc:        ccClient,
		instances: map[string]*instanceCrashes{},
	}
	r.worker = newWorker(logger, "crash-reporter", opts, r.report)
	r.resync = r.pendingKeys
	err := pods.AddEventHandlers(cache.ResourceEventHandlerFuncs{}, cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.observe(obj) },
		UpdateFunc: func(_, obj any) { r.observe(obj) },
		DeleteFunc: r.forget,
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func instanceKey(pod *corev1.Pod) string {
	return pod.Namespace + "/" + pod.Name + "/" + string(pod.UID)
}

// observe takes in what one pod event shows: a new crash, and what another
// replica (or an earlier run) recorded on the pod.
func (r *CrashReporter) observe(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	// A BBS-desired LRP's crashes reach CC through Diego's tps-watcher,
	// which reads them from the BBS front's event stream; posting them here
	// too would count each crash twice.
	if _, bbs := pod.Annotations[k8s.AnnotationBBSDomain]; bbs {
		return
	}
	crash, crashed := CrashFromPod(pod)
	recorded := recordedCrashes(pod)
	lastReported := pod.Annotations[AnnotationLastReportedCrash]
	key := instanceKey(pod)

	r.mu.Lock()
	defer r.mu.Unlock()
	inst := r.instances[key]
	if inst == nil {
		if len(recorded) == 0 && (!crashed || crash.Key == lastReported) {
			return // nothing in flight: the common case keeps no state
		}
		inst = &instanceCrashes{namespace: pod.Namespace, name: pod.Name, uid: pod.UID}
		r.instances[key] = inst
	}
	inst.reportedUpTo(lastReported)
	for _, c := range recorded {
		inst.see(c)
	}
	if crashed && crash.Key != lastReported {
		inst.see(crash)
	}
	if len(inst.pending) == 0 && lastReported == inst.lastDone() && len(recorded) == 0 {
		delete(r.instances, key) // the pod shows everything done
		return
	}
	if len(inst.pending) > 0 {
		r.add(key)
	}
}

// forget handles a deleted pod: crashes seen before the deletion are still
// reported; then the state goes.
func (r *CrashReporter) forget(obj any) {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	key := instanceKey(pod)
	r.mu.Lock()
	defer r.mu.Unlock()
	inst := r.instances[key]
	if inst == nil {
		return
	}
	if len(inst.pending) == 0 {
		delete(r.instances, key)
		return
	}
	inst.gone = true
	r.add(key)
}

// pendingKeys is the worker's resync: every pod with crashes in flight.
func (r *CrashReporter) pendingKeys(add func(string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, inst := range r.instances {
		if len(inst.pending) > 0 {
			add(key)
		}
	}
}

// see adds c unless it is known; crashes are kept in the order they
// happened.
func (i *instanceCrashes) see(c Crash) {
	if slices.Contains(i.done, c.Key) || slices.ContainsFunc(i.pending, func(p Crash) bool { return p.Key == c.Key }) {
		return
	}
	i.pending = append(i.pending, c)
	slices.SortStableFunc(i.pending, func(a, b Crash) int {
		switch {
		case a.Request.CrashTimestamp < b.Request.CrashTimestamp:
			return -1
		case a.Request.CrashTimestamp > b.Request.CrashTimestamp:
			return 1
		}
		return 0
	})
	i.recorded = false
}

// reportedUpTo drops the pending crashes up to and including key, which
// the pod says was reported (by this or another replica).
func (i *instanceCrashes) reportedUpTo(key string) {
	if key == "" {
		return
	}
	for n, c := range i.pending {
		if c.Key == key {
			for _, d := range i.pending[:n+1] {
				i.markDone(d.Key)
			}
			i.pending = slices.Clone(i.pending[n+1:])
			i.recorded = false
			return
		}
	}
	if !slices.Contains(i.done, key) {
		i.markDone(key)
	}
}

func (i *instanceCrashes) markDone(key string) {
	i.done = append(i.done, key)
	if len(i.done) > maxDoneKeys {
		i.done = slices.Clone(i.done[len(i.done)-maxDoneKeys:])
	}
}

func (i *instanceCrashes) lastDone() string {
	if len(i.done) == 0 {
		return ""
	}
	return i.done[len(i.done)-1]
}

// recordedCrashes reads the pod's list of unreported crashes. An unreadable
// list (edited by hand) is ignored: the pod's current crash is still seen.
func recordedCrashes(pod *corev1.Pod) []Crash {
	raw := pod.Annotations[AnnotationUnreportedCrashes]
	if raw == "" {
		return nil
	}
	var crashes []Crash
	if err := json.Unmarshal([]byte(raw), &crashes); err != nil {
		return nil
	}
	return crashes
}

// report records the pod's unreported crashes on it, then posts them to CC
// oldest first, recording each one CC accepted.
func (r *CrashReporter) report(ctx context.Context, logger lager.Logger, key string) error {
	if err := r.record(ctx, logger, key); err != nil {
		return err
	}
	for {
		r.mu.Lock()
		inst := r.instances[key]
		if inst == nil || len(inst.pending) == 0 {
			if inst != nil && inst.gone {
				delete(r.instances, key)
			}
			r.mu.Unlock()
			return nil
		}
		crash := inst.pending[0]
		r.mu.Unlock()

		path := fmt.Sprintf("/internal/v4/apps/%s/crashed", crash.ProcessGUID)
		err := r.cc.Post(ctx, path, crash.Request)
		switch {
		case err == nil:
			logger.Info("reported", lager.Data{"process_guid": crash.ProcessGUID, "index": crash.Request.Index,
				"crash_count": crash.Request.CrashCount, "exit_description": crash.Request.ExitDescription})
		case cc.IsFinal(err):
			// CC will never take this report (e.g. 404 ProcessNotFound after
			// the app was deleted); record it so it is not sent again.
			logger.Error("rejected-by-cc", err, lager.Data{"process_guid": crash.ProcessGUID})
		default:
			return err
		}
		r.mu.Lock()
		inst.reportedUpTo(crash.Key)
		r.mu.Unlock()
		// Until this write lands, done (in memory) keeps the crash from being
		// posted again; an Iris restart in that window posts it once more.
		if err := r.record(ctx, logger, key); err != nil {
			return err
		}
	}
}

// record writes what this process knows of the pod's crashes onto the pod,
// if the pod does not hold it already.
func (r *CrashReporter) record(ctx context.Context, logger lager.Logger, key string) error {
	r.mu.Lock()
	inst := r.instances[key]
	if inst == nil || inst.recorded || inst.gone {
		r.mu.Unlock()
		return nil
	}
	pending := slices.Clone(inst.pending)
	if len(pending) > maxUnreportedCrashes {
		dropped := pending[:len(pending)-maxUnreportedCrashes]
		logger.Error("dropping-oldest-unreported-crashes", fmt.Errorf("%d crashes not reported while CC was unreachable", len(dropped)),
			lager.Data{"oldest": dropped[0].Key})
		pending = slices.Clone(pending[len(dropped):])
		inst.pending = pending
	}
	namespace, name, uid, lastDone := inst.namespace, inst.name, inst.uid, inst.lastDone()
	r.mu.Unlock()

	annotations := map[string]any{AnnotationUnreportedCrashes: nil}
	if len(pending) > 0 {
		list, err := json.Marshal(pending)
		if err != nil {
			return err
		}
		annotations[AnnotationUnreportedCrashes] = string(list)
	}
	if lastDone != "" {
		annotations[AnnotationLastReportedCrash] = lastDone
	}
	// The uid precondition keeps a replaced pod of the same name from
	// getting this pod's record.
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": uid, "annotations": annotations}})
	if err != nil {
		return err
	}
	_, err = r.clientset.CoreV1().Pods(namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	switch {
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		// The pod is gone (a patch without a resource version conflicts
		// only on the uid): its crashes are still posted, from memory.
	case err != nil:
		return fmt.Errorf("recording crashes on %s/%s: %w", namespace, name, err)
	}
	r.mu.Lock()
	if slices.EqualFunc(inst.pending, pending, func(a, b Crash) bool { return a.Key == b.Key }) {
		inst.recorded = true
	}
	r.mu.Unlock()
	return nil
}
