package events

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/iris-cf/iris/cc"
)

// Options are the settings every reporter shares.
type Options struct {
	// MaxRetries bounds the attempts per report; 0 retries forever.
	MaxRetries int
	// MaxBackoff caps the exponential backoff between attempts.
	MaxBackoff time.Duration
	// JobTTL is how long a reported task or staging Job is kept.
	JobTTL time.Duration
	// Clock drives backoff and TTLs; a fake clock in tests.
	Clock clock.WithTicker
}

func (o Options) clock() clock.WithTicker {
	if o.Clock == nil {
		return clock.RealClock{}
	}
	return o.Clock
}

// worker drains a rate-limited queue of object keys with one goroutine: a
// handler error is retried with capped exponential backoff until maxRetries
// (0: forever); success forgets the key. One worker keeps CC's load gentle
// and the handlers free of locks.
//
// Reporters run under a Lease, so Run may start and stop any number of
// times in one process. A workqueue cannot be restarted once shut down, so
// every Run makes a queue of its own and fills it from the caches (resync):
// the work is level-triggered, so whatever was lost while not leading is
// found again. Events arriving while the worker is stopped are dropped for
// the same reason.
type worker struct {
	name       string
	logger     lager.Logger
	clock      clock.WithTicker
	maxRetries int
	maxBackoff time.Duration
	handle     func(ctx context.Context, logger lager.Logger, key string) error
	// resync adds every key that may have work; set by the reporter.
	resync func(add func(key string))

	mu      sync.Mutex
	queue   workqueue.TypedRateLimitingInterface[string] // nil while stopped
	limiter *retryAfterLimiter                           // the queue's

	retried atomic.Uint64 // handler errors that were retried
	failed  atomic.Uint64 // keys given up after maxRetries
}

func newWorker(logger lager.Logger, name string, opts Options, handle func(context.Context, lager.Logger, string) error) *worker {
	return &worker{
		name:       name,
		logger:     logger.Session(name),
		clock:      opts.clock(),
		maxRetries: opts.MaxRetries,
		maxBackoff: opts.MaxBackoff,
		handle:     handle,
		resync:     func(func(string)) {},
	}
}

// QueueDepth is how many keys wait to be handled.
func (w *worker) QueueDepth() int {
	if q := w.current(); q != nil {
		return q.Len()
	}
	return 0
}

// Retries is how many times a handler error (e.g. CC down) led to a retry.
func (w *worker) Retries() uint64 { return w.retried.Load() }

// Failures is how many reports were given up after the last retry.
func (w *worker) Failures() uint64 { return w.failed.Load() }

func (w *worker) current() workqueue.TypedRateLimitingInterface[string] {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queue
}

// add queues key if the worker runs; a stopped worker finds it on resync.
func (w *worker) add(key string) {
	if q := w.current(); q != nil {
		q.Add(key)
	}
}

// addAfter queues key after d if the worker runs.
func (w *worker) addAfter(key string, d time.Duration) {
	if q := w.current(); q != nil {
		q.AddAfter(key, d)
	}
}

// Run is an ifrit runner; it can run again after it was stopped.
func (w *worker) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	limiter := &retryAfterLimiter{
		TypedRateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, w.maxBackoff),
		floor:            map[string]time.Duration{},
	}
	queue := workqueue.NewTypedRateLimitingQueueWithConfig[string](limiter,
		workqueue.TypedRateLimitingQueueConfig[string]{Name: w.name, Clock: w.clock})
	w.mu.Lock()
	w.queue, w.limiter = queue, limiter
	w.mu.Unlock()
	w.resync(queue.Add)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for w.processNext(ctx, queue) {
		}
	}()
	close(ready)
	w.logger.Info("started")
	<-signals
	w.mu.Lock()
	w.queue = nil
	w.mu.Unlock()
	cancel()
	queue.ShutDown()
	<-done
	w.logger.Info("stopped")
	return nil
}

func (w *worker) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string]) bool {
	key, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(key)
	logger := w.logger.Session("handle", lager.Data{"key": key})

	err := w.handle(ctx, logger, key)
	switch {
	case err == nil:
		queue.Forget(key)
	case ctx.Err() != nil:
		// Stopping: the next Run resyncs this key.
	case w.maxRetries > 0 && queue.NumRequeues(key) >= w.maxRetries:
		logger.Error("giving-up", err, lager.Data{"attempts": queue.NumRequeues(key) + 1})
		w.failed.Add(1)
		queue.Forget(key)
	default:
		data := lager.Data{"reason": err.Error(), "attempt": queue.NumRequeues(key) + 1}
		if after, ok := cc.RetryAfter(err); ok {
			// CC (429, 503) said when to come back: not sooner.
			data["retry_after"] = after.String()
			w.limiterOf(queue).atLeast(key, after)
		}
		logger.Info("will-retry", data)
		w.retried.Add(1)
		queue.AddRateLimited(key)
	}
	return true
}

// limiterOf returns the limiter of queue; nil (no floor) after a Lease was
// lost and the worker restarted with another queue.
func (w *worker) limiterOf(queue workqueue.TypedRateLimitingInterface[string]) *retryAfterLimiter {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.queue != queue {
		return nil
	}
	return w.limiter
}

// retryAfterLimiter is the exponential backoff, but never shorter than the
// Retry-After CC gave for the key's last attempt.
type retryAfterLimiter struct {
	workqueue.TypedRateLimiter[string]
	mu    sync.Mutex
	floor map[string]time.Duration
}

// atLeast makes the key's next delay at least d.
func (l *retryAfterLimiter) atLeast(key string, d time.Duration) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.floor[key] = d
}

func (l *retryAfterLimiter) When(key string) time.Duration {
	backoff := l.TypedRateLimiter.When(key)
	l.mu.Lock()
	defer l.mu.Unlock()
	floor := l.floor[key]
	delete(l.floor, key)
	return max(backoff, floor)
}

func (l *retryAfterLimiter) Forget(key string) {
	l.TypedRateLimiter.Forget(key)
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.floor, key)
}
