// Package podlogs ships app, task and staging logs by following the
// pods/log API, for clusters where the node log agent cannot run. It costs
// one API-server stream per running container, so the agent is the choice
// for large clusters. The API mixes stdout and stderr, so every line is OUT.
package podlogs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/logs"
)

// Emitter takes envelopes without blocking (*logs.Sender).
type Emitter interface {
	Emit(envelopes ...*loggregator_v2.Envelope)
}

// PodEvents delivers app pod and task/staging pod events (*k8s.Caches).
type PodEvents interface {
	AddEventHandlers(statefulSets, pods cache.ResourceEventHandler) error
	AddJobPodEventHandler(handler cache.ResourceEventHandler) error
}

const maxLineBytes = 1 << 20

// Streamer follows the logs of every started container of Iris's pods
// while it runs (on the Lease holder only, so lines are not repeated by
// replicas).
type Streamer struct {
	logger    lager.Logger
	clientset kubernetes.Interface
	emitter   Emitter

	mu      sync.Mutex
	ctx     context.Context // nil while not running
	since   time.Time       // containers started before this are read from here on
	pods    map[string]*corev1.Pod
	streams map[string]bool // uid/container being streamed or finished
	// limits are the pods' log rate limits by pod UID, one per instance
	// shared by its containers, as Diego shares one per container.
	limits map[string]*logs.RateLimit
	wg     sync.WaitGroup
}

// NewStreamer registers for pod events; Run starts streaming.
func NewStreamer(logger lager.Logger, clientset kubernetes.Interface, events PodEvents, emitter Emitter) (*Streamer, error) {
	s := &Streamer{
		logger:    logger.Session("pod-logs"),
		clientset: clientset,
		emitter:   emitter,
		pods:      map[string]*corev1.Pod{},
		streams:   map[string]bool{},
		limits:    map[string]*logs.RateLimit{},
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    s.seen,
		UpdateFunc: func(_, obj any) { s.seen(obj) },
		DeleteFunc: s.deleted,
	}
	if err := events.AddEventHandlers(cache.ResourceEventHandlerFuncs{}, handler); err != nil {
		return nil, err
	}
	if err := events.AddJobPodEventHandler(handler); err != nil {
		return nil, err
	}
	return s, nil
}

// Run streams until signalled. Containers already running when it starts
// are read from that moment: a new leader does not replay old lines.
func (s *Streamer) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.ctx, s.since = ctx, time.Now()
	for _, pod := range s.pods {
		s.startLocked(pod)
	}
	s.mu.Unlock()
	close(ready)

	<-signals
	s.mu.Lock()
	s.ctx = nil
	s.streams = map[string]bool{}
	s.mu.Unlock()
	cancel()
	s.wg.Wait()
	return nil
}

func (s *Streamer) seen(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pods[string(pod.UID)] = pod
	s.startLocked(pod)
}

func (s *Streamer) deleted(obj any) {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.pods, string(pod.UID))
		delete(s.limits, string(pod.UID))
	}
}

// startLocked starts a stream for each started container of pod not
// streamed yet.
func (s *Streamer) startLocked(pod *corev1.Pod) {
	if s.ctx == nil {
		return
	}
	src, ok := logs.SourceForPod(pod)
	if !ok {
		return
	}
	limit, known := s.limits[string(pod.UID)]
	if !known {
		limit = logs.NewRateLimit(src.LogRateLimit)
		s.limits[string(pod.UID)] = limit
	}
	statuses := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, status := range statuses {
		key := string(pod.UID) + "/" + status.Name
		if !k8s.ContainerStarted(status) || s.streams[key] {
			continue
		}
		s.streams[key] = true
		var since time.Time
		if startedAt := containerStart(status); startedAt.Before(s.since) {
			since = s.since
		}
		s.wg.Add(1)
		go s.stream(s.ctx, pod.Namespace, pod.Name, string(pod.UID), status.Name, src, limit, since)
	}
}

func containerStart(status corev1.ContainerStatus) time.Time {
	switch {
	case status.State.Running != nil:
		return status.State.Running.StartedAt.Time
	case status.State.Terminated != nil:
		return status.State.Terminated.StartedAt.Time
	case status.LastTerminationState.Terminated != nil:
		return status.LastTerminationState.Terminated.StartedAt.Time
	}
	return time.Time{}
}

// stream follows one container's log, reconnecting after errors from the
// last timestamp seen, until the pod is gone or the container finished and
// its log was read to the end.
func (s *Streamer) stream(ctx context.Context, namespace, name, uid, container string, src logs.Source, limit *logs.RateLimit, since time.Time) {
	defer s.wg.Done()
	logger := s.logger.Session("stream", lager.Data{"pod": namespace + "/" + name, "container": container})
	last := since
	backoff := time.Second
	for ctx.Err() == nil {
		opts := &corev1.PodLogOptions{Container: container, Follow: true, Timestamps: true}
		if !last.IsZero() {
			t := metav1.NewTime(last)
			opts.SinceTime = &t // second precision: earlier lines are skipped below
		}
		body, err := s.clientset.CoreV1().Pods(namespace).GetLogs(name, opts).Stream(ctx)
		if err == nil {
			before := last
			last, err = s.read(body, src, limit, last)
			body.Close()
			if last.After(before) {
				// The stream worked for a while: a break now is news, not
				// the same failure again.
				backoff = time.Second
			}
		}
		if ctx.Err() != nil {
			return
		}
		pod, exists := s.pod(uid)
		if !exists || (err == nil && finished(pod, container)) {
			logger.Debug("done")
			return
		}
		if err != nil {
			logger.Error("stream-failed", err, lager.Data{"retry_in": backoff.String()})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// read emits each line newer than last that limit admits and returns the
// newest timestamp.
func (s *Streamer) read(body io.Reader, src logs.Source, limit *logs.RateLimit, last time.Time) (time.Time, error) {
	scanner := bufio.NewScanner(body)
	scanner.Buffer(make([]byte, 64<<10), maxLineBytes)
	for scanner.Scan() {
		line := scanner.Bytes()
		space := bytes.IndexByte(line, ' ')
		if space < 0 {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, string(line[:space]))
		if err != nil || !ts.After(last) {
			continue
		}
		last = ts
		lineSrc, msg, ship := src.Line(line[space+1:])
		if !ship {
			continue
		}
		msg = append([]byte(nil), msg...)
		if ok, report := limit.Admit(ts, len(msg)); ok {
			s.emitter.Emit(lineSrc.LogEnvelopes(ts, true, msg)...)
		} else if report != "" {
			s.emitter.Emit(src.LogEnvelopes(ts, true, []byte(report))...)
		}
	}
	if err := scanner.Err(); err != nil {
		return last, fmt.Errorf("reading log stream: %w", err)
	}
	return last, nil
}

func (s *Streamer) pod(uid string) (*corev1.Pod, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pod, ok := s.pods[uid]
	return pod, ok
}

// finished reports whether container has terminated and will not restart.
func finished(pod *corev1.Pod, container string) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return true
	}
	for _, status := range append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		if status.Name == container && status.State.Terminated != nil && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			return true
		}
	}
	return false
}
