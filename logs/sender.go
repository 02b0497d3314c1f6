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
	// BulkBufferSize is how many envelopes of bulk producers (EmitWait: the
	// metrics reporter) wait at most; when it is full they wait instead.
	BulkBufferSize int
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
	if c.BulkBufferSize <= 0 {
		// Ten batches: enough that the send loop never waits for the
		// producer, small enough not to matter in memory.
		c.BulkBufferSize = 10 * c.BatchSize
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
// It is an ifrit runner; on a signal it flushes what is buffered (within
// DrainTimeout) and closes the stream.
//
// It has two queues. Log lines (Emit) never block their reader: they go to a
// ring buffer that drops its oldest when full. Bulk producers (EmitWait)
// hand over a whole pass at once, far more than any buffer: at 250,000
// instances one metrics pass is 250,000 envelopes, which through the ring
// would drop most of the pass and push every log line out with it. So they
// get a small queue of their own and wait while it is full: the pass goes
// out at the pace Loggregator takes it, in bounded memory. Log lines go
// first in every batch, because a dropped log line is lost for good while
// a metric is replaced by the next pass.
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
	bulk    chan *loggregator_v2.Envelope

	dropped atomic.Uint64
	sent    atomic.Uint64
	failed  atomic.Uint64
}

// NewSender returns a sender writing to ingress.
func NewSender(logger lager.Logger, ingress Ingress, cfg SenderConfig) *Sender {
	s := &Sender{logger: logger.Session("loggregator-sender"), ingress: ingress, cfg: cfg.withDefaults()}
	s.bulk = make(chan *loggregator_v2.Envelope, s.cfg.BulkBufferSize)
	s.buffer = diodes.NewManyToOne(s.cfg.BufferSize, diodes.AlertFunc(func(missed int) {
		s.dropped.Add(uint64(missed))
	}))
	return s
}

// Emit queues log envelopes for sending; it never blocks.
func (s *Sender) Emit(envelopes ...*loggregator_v2.Envelope) {
	for _, e := range envelopes {
		s.buffer.Set(diodes.GenericDataType(unsafe.Pointer(e)))
	}
}

// EmitWait queues envelopes of a bulk producer, in order, waiting while its
// queue is full, until ctx ends; then what it did not queue is dropped
// (and counted) and the error says so.
func (s *Sender) EmitWait(ctx context.Context, envelopes ...*loggregator_v2.Envelope) error {
	for i, e := range envelopes {
		select {
		case s.bulk <- e:
		case <-ctx.Done():
			s.dropped.Add(uint64(len(envelopes) - i))
			return fmt.Errorf("waiting for loggregator, %d envelopes dropped: %w", len(envelopes)-i, ctx.Err())
		}
	}
	return nil
}

// Dropped is how many envelopes were lost because the log buffer
// overflowed or a bulk producer gave up waiting. go-diodes counts a slot
// that colliding writers skipped as a drop too, so under heavy contention
// it can run a little high, never low.
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
	poll := time.NewTimer(pollInterval)
	poll.Stop()
	backoff := 100 * time.Millisecond
	for {
		first := s.next(ctx, poll)
		if first == nil {
			return st // cancelled
		}
		batch := s.fill([]*loggregator_v2.Envelope{first})
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

// pollInterval is how often an idle sender looks at the log buffer, which
// has no way to wake a reader (go-diodes' poller does the same).
const pollInterval = 5 * time.Millisecond

// next waits for the next envelope, a log line first, and returns nil when
// ctx is cancelled. poll is a stopped or fired timer it reuses.
func (s *Sender) next(ctx context.Context, poll *time.Timer) *loggregator_v2.Envelope {
	for {
		if e, ok := s.buffer.TryNext(); ok {
			return (*loggregator_v2.Envelope)(e)
		}
		poll.Reset(pollInterval)
		select {
		case e := <-s.bulk:
			poll.Stop()
			return e
		case <-poll.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// fill adds whatever else is queued right now, up to BatchSize, log lines
// before bulk envelopes: batches grow under load and stay small (low
// latency) when lines trickle in.
func (s *Sender) fill(batch []*loggregator_v2.Envelope) []*loggregator_v2.Envelope {
	batch = s.fillLogs(batch)
	for len(batch) < s.cfg.BatchSize {
		select {
		case e := <-s.bulk:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// fillLogs adds buffered log lines, up to BatchSize.
func (s *Sender) fillLogs(batch []*loggregator_v2.Envelope) []*loggregator_v2.Envelope {
	for len(batch) < s.cfg.BatchSize {
		next, ok := s.buffer.TryNext()
		if !ok {
			break
		}
		batch = append(batch, (*loggregator_v2.Envelope)(next))
	}
	return batch
}

// requeue puts a batch that could not be sent back in front of the
// buffered log lines, for drain; bulk envelopes stay in their own queue.
func (s *Sender) requeue(batch []*loggregator_v2.Envelope) {
	rest := s.fillLogs(nil)
	for len(rest) > 0 {
		batch = append(batch, rest...)
		rest = s.fillLogs(nil)
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
