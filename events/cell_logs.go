package events

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/logs"
)

// LogEmitter takes envelopes without blocking; *logs.Sender implements it.
type LogEmitter interface {
	Emit(envelopes ...*loggregator_v2.Envelope)
}

// CellLogger tells app users, in `cf logs`, what happens to their instances,
// as Diego's cells do: CELL lines when an instance's container is created,
// becomes healthy or unhealthy, exits, and is stopped and destroyed. It
// writes only while it runs, which is on the Lease holder, so replicas do
// not repeat each other.
type CellLogger struct {
	logger  lager.Logger
	emitter LogEmitter
	active  atomic.Bool
	now     func() time.Time
}

// NewCellLogger registers for app pod events; Run turns emission on.
func NewCellLogger(logger lager.Logger, pods PodSource, emitter LogEmitter) (*CellLogger, error) {
	c := &CellLogger{logger: logger.Session("cell-logs"), emitter: emitter, now: time.Now}
	err := pods.AddEventHandlers(cache.ResourceEventHandlerFuncs{}, cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if pod, ok := obj.(*corev1.Pod); ok {
				c.emit(pod, CellMessages(nil, pod))
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			oldPod, ok1 := oldObj.(*corev1.Pod)
			newPod, ok2 := newObj.(*corev1.Pod)
			if ok1 && ok2 {
				c.emit(newPod, CellMessages(oldPod, newPod))
			}
		},
		DeleteFunc: func(obj any) {
			if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tombstone.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				c.emit(pod, destroyedMessages(pod))
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Run emits until signalled.
func (c *CellLogger) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	c.active.Store(true)
	close(ready)
	<-signals
	c.active.Store(false)
	return nil
}

func (c *CellLogger) emit(pod *corev1.Pod, messages []string) {
	if len(messages) == 0 || !c.active.Load() {
		return
	}
	src, ok := logs.SourceForPod(pod)
	if !ok {
		return
	}
	src = src.WithSourceType(logs.SourceTypeCell)
	now := c.now()
	for i, msg := range messages {
		// Distinct timestamps keep the lines of one event in order in `cf logs`.
		c.emitter.Emit(src.LogEnvelopes(now.Add(time.Duration(i)), true, []byte(msg))...)
	}
}

// CellMessages are the CELL lines for a pod's change from old (nil: just
// seen) to pod, worded as Diego's rep words them. A pod seen for the first
// time only gets lines about what is still to come, so a restarted Iris or
// a new leader does not replay the history of running instances.
func CellMessages(old, pod *corev1.Pod) []string {
	cell, instance := pod.Spec.NodeName, string(pod.UID)
	var out []string
	if pod.DeletionTimestamp != nil {
		if old != nil && old.DeletionTimestamp == nil {
			out = append(out, fmt.Sprintf("Cell %s stopping instance %s", cell, instance))
		}
		return out
	}
	// An update may carry scheduling and start together; a first sight of
	// a started pod is history and is not told.
	wasScheduled := old != nil && old.Spec.NodeName != ""
	if cell != "" && !wasScheduled && (old != nil || !started(pod)) {
		out = append(out, fmt.Sprintf("Cell %s creating container for instance %s", cell, instance))
	}
	if old == nil {
		return out
	}
	if started(pod) && !started(old) {
		out = append(out,
			fmt.Sprintf("Cell %s successfully created container for instance %s", cell, instance),
			"Starting health monitoring of container")
	}
	if crash, ok := CrashFromPod(pod); ok {
		if prev, had := CrashFromPod(old); !had || prev.Key != crash.Key {
			out = append(out, crash.Request.ExitDescription)
		}
	}
	switch ready, wasReady := podReady(pod), podReady(old); {
	case ready && !wasReady:
		out = append(out, "Container became healthy")
	case !ready && wasReady:
		out = append(out, "Container became unhealthy")
	}
	return out
}

func destroyedMessages(pod *corev1.Pod) []string {
	cell, instance := pod.Spec.NodeName, string(pod.UID)
	if cell == "" {
		return nil
	}
	return []string{
		fmt.Sprintf("Cell %s destroying container for instance %s", cell, instance),
		fmt.Sprintf("Cell %s successfully destroyed container for instance %s", cell, instance),
	}
}

// started reports whether the app container ever ran in this pod.
func started(pod *corev1.Pod) bool {
	status := k8s.AppContainerStatus(pod)
	return status != nil && k8s.ContainerStarted(*status)
}

func podReady(pod *corev1.Pod) bool {
	ready := k8s.PodCondition(pod, corev1.PodReady)
	return ready != nil && ready.Status == corev1.ConditionTrue
}
