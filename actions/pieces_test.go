package actions

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"
)

// testStreamer collects tagged lines.
func testStreamer(source string) (Streamer, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut syncBuffer
	return NewStreamer(&out, &errOut, source), &out.buf, &errOut.buf
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// fakeStep returns err, or blocks until cancelled when block is set.
type fakeStep struct {
	mu      sync.Mutex
	err     error
	block   bool
	ran     int
	stopped bool
	onRun   func()
}

func (s *fakeStep) Run(ctx context.Context) error {
	s.mu.Lock()
	s.ran++
	s.mu.Unlock()
	if s.onRun != nil {
		s.onRun()
	}
	if s.block {
		<-ctx.Done()
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		return new(CancelledError)
	}
	return s.err
}

func (s *fakeStep) runs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ran
}

func (s *fakeStep) wasStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

var _ = Describe("log lines", func() {
	It("round-trips sources with the characters the format escapes", func() {
		for _, source := range []string{"CELL", "APP/TASK/my task", "weird]source", "100%", "a\nb"} {
			got, msg, ok := ParseLine(FormatLine(source, "hello] world"))
			Expect(ok).To(BeTrue())
			Expect(got).To(Equal(source))
			Expect(msg).To(Equal("hello] world"))
		}
	})

	It("does not take lines that are not the runner's", func() {
		_, _, ok := ParseLine(`{"timestamp":"1","message":"iris-actions.run"}`)
		Expect(ok).To(BeFalse())
	})

	It("emits whole lines from a process's writes, the rest on Close, and splits long lines", func() {
		streamer, out, _ := testStreamer("APP/PROC/WEB")
		w := streamer.Stdout()
		_, _ = w.Write([]byte("hel"))
		_, _ = w.Write([]byte("lo\nwor"))
		Expect(out.String()).To(Equal("@iris[APP/PROC/WEB] hello\n"))
		_ = w.Close()
		Expect(out.String()).To(Equal("@iris[APP/PROC/WEB] hello\n@iris[APP/PROC/WEB] wor\n"))

		out.Reset()
		long := streamer.Stdout()
		_, _ = long.Write([]byte(strings.Repeat("x", MaxLineBytes+10) + "\n"))
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		Expect(lines).To(HaveLen(2))
		Expect(lines[1]).To(Equal("@iris[APP/PROC/WEB] xxxxxxxxxx"))
	})

	It("keeps the parent's source for an empty log_source", func() {
		streamer, out, errOut := testStreamer("")
		streamer.WithSource("").Out("a")
		streamer.WithSource("STG").Err("b\n")
		Expect(out.String()).To(Equal("@iris[CELL] a\n"))
		Expect(errOut.String()).To(Equal("@iris[STG] b\n"))
	})
})

var _ = Describe("AggregateError", func() {
	It("joins displayable errors as Diego's multierror format does", func() {
		err := &AggregateError{Errors: []error{errors.New("a"), new(CancelledError), new(ExceededGracefulShutdownIntervalError), errors.New("b")}}
		Expect(err.Error()).To(Equal("a; b"))
	})

	It("is empty when every member was cancelled", func() {
		Expect((&AggregateError{Errors: []error{new(CancelledError)}}).Error()).To(Equal(""))
	})

	It("shows an emittable error that wraps a cancellation (a timeout)", func() {
		err := &AggregateError{Errors: []error{NewEmittableError(new(CancelledError), "exceeded 1s timeout")}}
		Expect(err.Error()).To(Equal("exceeded 1s timeout"))
	})

	It("skips an empty first message", func() {
		err := &AggregateError{Errors: []error{NewEmittableError(nil, ""), errors.New("b")}}
		Expect(err.Error()).To(Equal("b"))
	})
})

var _ = Describe("checksum", func() {
	DescribeTable("verifies each algorithm",
		func(algorithm, value string) {
			c, err := newChecksum(algorithm)
			Expect(err).NotTo(HaveOccurred())
			_, _ = c.Write([]byte("hello"))
			Expect(c.verify(value)).To(Succeed())
			Expect(c.verify(`"` + value + `"`)).To(Succeed())
		},
		Entry("md5", "md5", "5d41402abc4b2a76b9719d911017c592"),
		Entry("sha1", "sha1", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
		Entry("sha256", "sha256", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
		Entry("sha512", "sha512", "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043"),
	)

	It("reports a mismatch with Diego's text", func() {
		c, _ := newChecksum("md5")
		_, _ = c.Write([]byte("hello"))
		Expect(c.verify("00000000000000000000000000000000")).To(MatchError(
			`Checksum failed: 'checksum mismatch', expected '00000000000000000000000000000000', got '"5d41402abc4b2a76b9719d911017c592"'`))
	})

	It("refuses a value of the wrong length and an unknown algorithm", func() {
		c, _ := newChecksum("sha256")
		Expect(c.verify("abc")).To(MatchError("Checksum failed: 'checksum missing or invalid', expected 'a valid checksum', got 'abc'"))
		_, err := newChecksum("crc32")
		Expect(err).To(MatchError("Checksum failed: 'algorithm invalid', expected '[md5, sha1, sha256]', got 'crc32'"))
	})
})

var _ = DescribeTable("byteSize renders sizes as Diego's messages do",
	func(n uint64, want string) { Expect(byteSize(n)).To(Equal(want)) },
	Entry(nil, uint64(0), "0B"),
	Entry(nil, uint64(13), "13B"),
	Entry(nil, uint64(1024), "1K"),
	Entry(nil, uint64(1536), "1.5K"),
	Entry(nil, uint64(52*1024*1024+300*1024), "52.3M"),
	Entry(nil, uint64(3)<<30, "3G"),
)

var _ = Describe("composite steps", func() {
	var ctx context.Context
	var cancel context.CancelFunc

	BeforeEach(func() {
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(func() { cancel() })
	})

	It("serial stops at the first failure", func() {
		first, second, third := &fakeStep{}, &fakeStep{err: errors.New("boom")}, &fakeStep{}
		Expect((&serialStep{steps: []Step{first, second, third}}).Run(ctx)).To(MatchError("boom"))
		Expect([]int{first.runs(), second.runs(), third.runs()}).To(Equal([]int{1, 1, 0}))
	})

	It("serial does not start the next member once cancelled", func() {
		next := &fakeStep{}
		stopper := &fakeStep{onRun: cancel}
		Expect((&serialStep{steps: []Step{stopper, next}}).Run(ctx)).To(Succeed())
		Expect(next.runs()).To(Equal(0))
	})

	It("parallel waits for all and aggregates in member order", func() {
		a, b, c := &fakeStep{err: errors.New("a")}, &fakeStep{}, &fakeStep{err: errors.New("c")}
		Expect((&parallelStep{steps: []Step{a, b, c}}).Run(ctx)).To(MatchError("a; c"))
		Expect(b.runs()).To(Equal(1))
	})

	It("codependent cancels the others on a successful exit when errorOnExit", func() {
		long := &fakeStep{block: true}
		err := (&codependentStep{steps: []Step{&fakeStep{}, long}, errorOnExit: true}).Run(ctx)
		Expect(err).To(MatchError("Codependent step exited"))
		Expect(long.wasStopped()).To(BeTrue())
	})

	It("codependent without errorOnExit lets the others run on after a success, and stops them on a failure", func() {
		long := &fakeStep{block: true}
		done := make(chan error, 1)
		go func() { done <- (&codependentStep{steps: []Step{&fakeStep{}, long}}).Run(ctx) }()
		Consistently(func(g Gomega) { g.Expect(done).NotTo(Receive()) }).WithTimeout(100 * time.Millisecond).Should(Succeed())
		cancel()
		Eventually(func(g Gomega) { g.Expect(done).To(Receive(MatchError(""))) }).Should(Succeed())

		failing := &fakeStep{err: errors.New("crash")}
		other := &fakeStep{block: true}
		Expect((&codependentStep{steps: []Step{failing, other}}).Run(context.Background())).To(MatchError("crash"))
		Expect(other.wasStopped()).To(BeTrue())
	})

	It("try swallows a failure", func() {
		Expect((&tryStep{step: &fakeStep{err: errors.New("x")}, logger: lagertest.NewTestLogger("try")}).Run(ctx)).To(Succeed())
	})

	It("timeout cancels its member when the (fake) clock runs out, adding an emittable message", func() {
		clk := clocktesting.NewFakeClock(time.Now())
		member := stepFunc(func(ctx context.Context) error {
			<-ctx.Done()
			return NewEmittableError(nil, "inner stopped")
		})
		done := make(chan error, 1)
		go func() {
			done <- (&timeoutStep{step: member, timeout: 90 * time.Second, clock: clk, logger: lagertest.NewTestLogger("t")}).Run(ctx)
		}()
		awaitTimer(clk)
		clk.Step(89 * time.Second)
		Consistently(func(g Gomega) { g.Expect(done).NotTo(Receive()) }).WithTimeout(50 * time.Millisecond).Should(Succeed())
		clk.Step(time.Second)
		Eventually(func(g Gomega) { g.Expect(done).To(Receive(MatchError("exceeded 1m30s timeout; inner stopped"))) }).Should(Succeed())
	})

	It("emit_progress writes start and success, or failure with an emittable message", func() {
		streamer, out, errOut := testStreamer("CELL")
		ok := &emitProgressStep{step: &fakeStep{}, streamer: streamer, startMessage: "go", successMessage: "ok", failurePrefix: "bad"}
		Expect(ok.Run(ctx)).To(Succeed())
		Expect(out.String()).To(Equal("@iris[CELL] go\n@iris[CELL] ok\n"))

		out.Reset()
		raw := &emitProgressStep{step: &fakeStep{err: errors.New("secret url")}, streamer: streamer, failurePrefix: "bad"}
		Expect(raw.Run(ctx)).To(MatchError("secret url"))
		emittable := &emitProgressStep{step: &fakeStep{err: NewEmittableError(nil, "why")}, streamer: streamer, failurePrefix: "bad"}
		Expect(emittable.Run(ctx)).To(HaveOccurred())
		Expect(errOut.String()).To(Equal("@iris[CELL] bad\n@iris[CELL] bad: why\n"))
		Expect(out.String()).To(BeEmpty())
	})
})

var _ = Describe("monitor", func() {
	var clk *clocktesting.FakeClock
	var streamer Streamer
	var out, errOut *bytes.Buffer
	var healthy chan struct{}
	var check *switchableCheck

	BeforeEach(func() {
		clk = clocktesting.NewFakeClock(time.Now())
		streamer, out, errOut = testStreamer("CELL")
		healthy = make(chan struct{}, 1)
		check = &switchableCheck{}
	})

	monitor := func(startTimeout time.Duration) *monitorStep {
		return &monitorStep{
			newCheck:          func() Step { return check },
			streamer:          streamer,
			clock:             clk,
			startTimeout:      startTimeout,
			healthyInterval:   30 * time.Second,
			unhealthyInterval: 500 * time.Millisecond,
			onHealthy:         func() { healthy <- struct{}{} },
		}
	}

	It("checks every unhealthy interval until healthy, then every healthy interval until it fails", func() {
		check.set(NewEmittableError(nil, "not yet"))
		done := make(chan error, 1)
		go func() { done <- monitor(time.Minute).Run(context.Background()) }()
		for range 3 {
			awaitTimer(clk)
			clk.Step(500 * time.Millisecond)
		}
		Eventually(func(g Gomega) { g.Expect(check.count()).To(Equal(3)) }).Should(Succeed())
		check.set(nil)
		awaitTimer(clk)
		clk.Step(500 * time.Millisecond)
		Eventually(func(g Gomega) { g.Expect(healthy).To(Receive()) }).Should(Succeed())
		Expect(out.String()).To(ContainSubstring("@iris[CELL] Container became healthy\n"))

		check.set(NewEmittableError(nil, "connection refused"))
		awaitTimer(clk)
		clk.Step(29 * time.Second)
		Consistently(func(g Gomega) { g.Expect(done).NotTo(Receive()) }).WithTimeout(50 * time.Millisecond).Should(Succeed())
		clk.Step(time.Second)
		Eventually(func(g Gomega) {
			g.Expect(done).To(Receive(MatchError("Instance became unhealthy: connection refused")))
		}).Should(Succeed())
		Expect(errOut.String()).To(Equal("@iris[CELL] connection refused\n@iris[CELL] Container became unhealthy\n"))
	})

	It("gives up after the start timeout with Diego's crash reason", func() {
		check.set(NewEmittableError(nil, "refused"))
		done := make(chan error, 1)
		go func() { done <- monitor(time.Second).Run(context.Background()) }()
		for range 3 {
			awaitTimer(clk)
			clk.Step(500 * time.Millisecond)
		}
		Eventually(func(g Gomega) { g.Expect(done).To(Receive(MatchError("Instance never healthy after 1.5s: refused"))) }).Should(Succeed())
		Expect(errOut.String()).To(ContainSubstring("@iris[CELL] Failed after 1.5s: startup health check never passed.\n"))
		Expect(healthy).NotTo(Receive())
	})

	It("turns a check's output into its failure message (output wrapper)", func() {
		buffered, sink := bufferStreamer("HEALTH")
		wrapped := &outputWrapperStep{step: stepFunc(func(context.Context) error {
			buffered.Out("failed to make TCP connection to port 8080: connection refused")
			return NewEmittableError(nil, "HEALTH: Exited with status 1")
		}), output: sink}
		Expect(wrapped.Run(context.Background())).To(MatchError("failed to make TCP connection to port 8080: connection refused"))

		silent, silentSink := bufferStreamer("HEALTH")
		_ = silent
		quiet := &outputWrapperStep{step: &fakeStep{err: errors.New("exec failed")}, output: silentSink}
		Expect(quiet.Run(context.Background())).To(MatchError("Failed to invoke process: exec failed"))
	})
})

// switchableCheck is a health check whose outcome the spec sets.
type switchableCheck struct {
	mu     sync.Mutex
	err    error
	checks int
}

func (c *switchableCheck) set(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
}

func (c *switchableCheck) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checks
}

func (c *switchableCheck) Run(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checks++
	return c.err
}

// awaitTimer waits until a step is waiting on the fake clock.
func awaitTimer(clk *clocktesting.FakeClock) {
	GinkgoHelper()
	Eventually(func(g Gomega) { g.Expect(clk.HasWaiters()).To(BeTrue()) }).Should(Succeed())
}
