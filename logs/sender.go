package logs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"code.cloudfoundry.org/go-diodes"
	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3"
	"google.golang.org/grpc"
)

// Ingress is the part of Loggregator's v2 gRPC ingress client the sender
// uses: one long-lived client stream of envelope batches.
type Ingress interface {
	BatchSender(ctx context.Context, opts ...grpc.CallOption) (loggregator_v2.Ingress_BatchSenderClient, error)
}

// SenderConfig bounds the sender's memory and retries.
type SenderConfig struct {
	// BufferSize is how many envelopes wait for Loggregator at most; when it
	// is full the oldest are dropped (and counted), so a slow or absent
	// Loggregator never blocks a log reader nor grows memory without limit.
	BufferSize int
	// BatchSize is the most envelopes sent in one message.
	BatchSize int
	// MaxBackoff caps the wait between reconnects while Loggregator is down.
	MaxBackoff time.Duration
	// DrainTimeout bounds how long a stopping sender tries to flush.
	DrainTimeout time.Duration
}

func (c SenderConfig) withDefaults() SenderConfig {
	if c.BufferSize <= 0 {
		c.BufferSize = 10000
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 5 * time.Second
	}
	return c
}

// Sender ships envelopes to Loggregator in order, in batches, on one stream.
// Emit never blocks. It is an ifrit runner; on a signal it flushes what is
// buffered (within DrainTimeout) and closes the stream.
//
// It drives go-loggregator's gRPC ingress stub itself instead of
// loggregator.IngressClient because that client blocks EmitLog when the
// server is slow and drops a whole batch, uncounted, when a send fails;
// here a failed batch is retried and only buffer overflow loses envelopes,
// each of them counted.
type Sender struct {
	logger  lager.Logger
	ingress Ingress
	cfg     SenderConfig
	buffer  *diodes.ManyToOne

	dropped atomic.Uint64
	sent    atomic.Uint64
	failed  atomic.Uint64
}

// NewSender returns a sender writing to ingress.
func NewSender(logger lager.Logger, ingress Ingress, cfg SenderConfig) *Sender {
	s := &Sender{logger: logger.Session("loggregator-sender"), ingress: ingress, cfg: cfg.withDefaults()}
	s.buffer = diodes.NewManyToOne(s.cfg.BufferSize, diodes.AlertFunc(func(missed int) {
		s.dropped.Add(uint64(missed))
	}))
	return s
}

// Emit queues envelopes for sending; it never blocks.
func (s *Sender) Emit(envelopes ...*loggregator_v2.Envelope) {
	for _, e := range envelopes {
		s.buffer.Set(diodes.GenericDataType(unsafe.Pointer(e)))
	}
}

// Dropped is how many envelopes were lost because the buffer overflowed.
// go-diodes counts a slot that colliding writers skipped as a drop too, so
// under heavy contention it can run a little high, never low.
func (s *Sender) Dropped() uint64 { return s.dropped.Load() }

// Sent is how many envelopes Loggregator's stream accepted.
func (s *Sender) Sent() uint64 { return s.sent.Load() }

// SendFailures is how many batch sends failed (and were retried).
func (s *Sender) SendFailures() uint64 { return s.failed.Load() }

// Run sends until signalled, then drains.
func (s *Sender) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Streams get their own context: stopping must not discard batches gRPC
	// accepted but has not written yet; only a drain timeout kills them.
	streamCtx, killStreams := context.WithCancel(context.Background())
	defer killStreams()
	done := make(chan *stream, 1)
	go func() { done <- s.loop(ctx, &stream{parent: streamCtx}) }()
	close(ready)

	// Drops are counted; say so in the log (at most every 30 s) until the
	// Prometheus endpoint exists.
	report := time.NewTicker(30 * time.Second)
	defer report.Stop()
	var reported uint64
	for running := true; running; {
		select {
		case <-signals:
			running = false
		case <-report.C:
			if dropped := s.Dropped(); dropped > reported {
				s.logger.Error("envelopes-dropped", errors.New("loggregator too slow or unreachable"),
					lager.Data{"since_last_report": dropped - reported, "total": dropped})
				reported = dropped
			}
		}
	}
	cancel()
	return s.drain(<-done, killStreams)
}

// stream is one BatchSender stream, reopened after a failure.
type stream struct {
	parent context.Context
	client loggregator_v2.Ingress_BatchSenderClient
	cancel context.CancelFunc
}

// loop sends until ctx is cancelled and returns the stream it has open.
func (s *Sender) loop(ctx context.Context, st *stream) *stream {
	poller := diodes.NewPoller(s.buffer, diodes.WithPollingInterval(5*time.Millisecond), diodes.WithPollingContext(ctx))
	backoff := 100 * time.Millisecond
	for {
		first := poller.Next()
		if first == nil {
			return st // cancelled
		}
		batch := s.fill([]*loggregator_v2.Envelope{(*loggregator_v2.Envelope)(first)})
		for {
			err := s.send(st, batch)
			if err == nil {
				backoff = 100 * time.Millisecond
				break
			}
			s.failed.Add(1)
			s.logger.Error("send-failed", err, lager.Data{"batch": len(batch), "retry_in": backoff.String()})
			select {
			case <-ctx.Done():
				// Put the batch back in front of what is buffered for drain.
				s.requeue(batch)
				return st
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, s.cfg.MaxBackoff)
		}
	}
}

// fill adds whatever else is buffered right now, up to BatchSize: batches
// grow under load and stay small (low latency) when lines trickle in.
func (s *Sender) fill(batch []*loggregator_v2.Envelope) []*loggregator_v2.Envelope {
	for len(batch) < s.cfg.BatchSize {
		next, ok := s.buffer.TryNext()
		if !ok {
			break
		}
		batch = append(batch, (*loggregator_v2.Envelope)(next))
	}
	return batch
}

func (s *Sender) requeue(batch []*loggregator_v2.Envelope) {
	rest := s.fill(nil)
	for len(rest) > 0 {
		batch = append(batch, rest...)
		rest = s.fill(nil)
	}
	s.Emit(batch...)
}

// send writes one batch, opening a stream first if none is open.
func (s *Sender) send(st *stream, batch []*loggregator_v2.Envelope) error {
	if st.client == nil {
		streamCtx, cancel := context.WithCancel(st.parent)
		client, err := s.ingress.BatchSender(streamCtx)
		if err != nil {
			cancel()
			return fmt.Errorf("opening batch stream: %w", err)
		}
		st.client, st.cancel = client, cancel
	}
	if err := st.client.Send(&loggregator_v2.EnvelopeBatch{Batch: batch}); err != nil {
		st.close()
		return fmt.Errorf("sending batch: %w", err)
	}
	s.sent.Add(uint64(len(batch)))
	return nil
}

func (st *stream) close() {
	if st.cancel != nil {
		st.cancel()
	}
	st.client, st.cancel = nil, nil
}

// drain flushes the buffer on st (or a new stream) and closes it cleanly,
// so the server has received everything before the process exits.
// killStreams cancels every stream, bounding CloseAndRecv by the timeout too.
func (s *Sender) drain(st *stream, killStreams context.CancelFunc) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	defer st.close()
	stop := context.AfterFunc(ctx, killStreams)
	defer stop()
	for {
		batch := s.fill(nil)
		if len(batch) == 0 {
			break
		}
		for {
			err := s.send(st, batch)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				lost := len(batch)
				for rest := s.fill(nil); len(rest) > 0; rest = s.fill(nil) {
					lost += len(rest)
				}
				s.dropped.Add(uint64(lost))
				return fmt.Errorf("draining log buffer: %w", errors.Join(err, ctx.Err()))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if st.client == nil {
		return nil
	}
	if _, err := st.client.CloseAndRecv(); err != nil {
		return fmt.Errorf("closing batch stream: %w", err)
	}
	return nil
}
