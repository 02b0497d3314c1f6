package events

import (
	"context"
	"os"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"k8s.io/client-go/util/workqueue"
)

// worker drains a rate-limited queue of object keys with one goroutine: a
// handler error is retried with capped exponential backoff until maxRetries
// (0: forever); success forgets the key. One worker keeps CC's load gentle
// and the handlers free of locks.
type worker struct {
	name       string
	logger     lager.Logger
	queue      workqueue.TypedRateLimitingInterface[string]
	maxRetries int
	handle     func(ctx context.Context, logger lager.Logger, key string) error

	retried atomic.Uint64 // handler errors that were retried
	failed  atomic.Uint64 // keys given up after maxRetries
}

// QueueDepth is how many keys wait to be handled.
func (w *worker) QueueDepth() int { return w.queue.Len() }

// Retries is how many times a handler error (e.g. CC down) led to a retry.
func (w *worker) Retries() uint64 { return w.retried.Load() }

// Failures is how many reports were given up after the last retry.
func (w *worker) Failures() uint64 { return w.failed.Load() }

func newWorker(logger lager.Logger, name string, maxRetries int, maxBackoff time.Duration, handle func(context.Context, lager.Logger, string) error) *worker {
	return &worker{
		name:   name,
		logger: logger.Session(name),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, maxBackoff),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: name}),
		maxRetries: maxRetries,
		handle:     handle,
	}
}

// Run is an ifrit runner. The queue fills from informer events whether or
// not the worker runs, so a new leader finds what its predecessor left.
func (w *worker) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for w.processNext(ctx) {
		}
	}()
	close(ready)
	w.logger.Info("started")
	<-signals
	cancel()
	w.queue.ShutDown()
	<-done
	w.logger.Info("stopped")
	return nil
}

func (w *worker) processNext(ctx context.Context) bool {
	key, shutdown := w.queue.Get()
	if shutdown {
		return false
	}
	defer w.queue.Done(key)
	logger := w.logger.Session("handle", lager.Data{"key": key})

	err := w.handle(ctx, logger, key)
	switch {
	case err == nil:
		w.queue.Forget(key)
	case w.maxRetries > 0 && w.queue.NumRequeues(key) >= w.maxRetries:
		logger.Error("giving-up", err, lager.Data{"attempts": w.queue.NumRequeues(key) + 1})
		w.failed.Add(1)
		w.queue.Forget(key)
	default:
		logger.Info("will-retry", lager.Data{"reason": err.Error(), "attempt": w.queue.NumRequeues(key) + 1})
		w.retried.Add(1)
		w.queue.AddRateLimited(key)
	}
	return true
}
