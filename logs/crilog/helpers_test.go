package crilog_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/logs/crilog"
)

var epoch = time.Date(2016, 10, 6, 0, 17, 9, 669794202, time.UTC)

// criLine formats one line as a container runtime writes it.
func criLine(ts time.Time, stream, tag, content string) string {
	return fmt.Sprintf("%s %s %s %s\n", ts.Format(time.RFC3339Nano), stream, tag, content)
}

func full(content string) string    { return criLine(epoch, "stdout", "F", content) }
func partial(content string) string { return criLine(epoch, "stdout", "P", content) }

// appendTo appends s to the file at path, creating it.
func appendTo(path string, s string) {
	GinkgoHelper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	Expect(err).NotTo(HaveOccurred())
	_, err = f.WriteString(s)
	Expect(err).NotTo(HaveOccurred())
	Expect(f.Close()).To(Succeed())
}

// write writes s to f, as the runtime writes to the file it holds open.
func write(f *os.File, s string) {
	GinkgoHelper()
	_, err := f.WriteString(s)
	Expect(err).NotTo(HaveOccurred())
}

func create(path string) *os.File {
	GinkgoHelper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(f.Close)
	return f
}

func inodeOf(path string) uint64 {
	GinkgoHelper()
	st, err := os.Stat(path)
	Expect(err).NotTo(HaveOccurred())
	return st.Sys().(*syscall.Stat_t).Ino
}

func sizeOf(path string) int64 {
	GinkgoHelper()
	st, err := os.Stat(path)
	Expect(err).NotTo(HaveOccurred())
	return st.Size()
}

// collector keeps what a follower hands on.
type collector struct {
	mu        sync.Mutex
	records   []crilog.Record
	positions []crilog.Position
}

func (c *collector) handle(rec crilog.Record, pos crilog.Position) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, rec)
	c.positions = append(c.positions, pos)
}

func (c *collector) Lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := make([]string, len(c.records))
	for i, r := range c.records {
		lines[i] = string(r.Line)
	}
	return lines
}

func (c *collector) Records() []crilog.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]crilog.Record(nil), c.records...)
}

func (c *collector) Positions() []crilog.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]crilog.Position(nil), c.positions...)
}

func (c *collector) Last() crilog.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.positions) == 0 {
		return crilog.Position{}
	}
	return c.positions[len(c.positions)-1]
}

// running is a follower running in the background.
type running struct {
	*collector
	follower *crilog.Follower
	cancel   context.CancelFunc
	done     chan error
}

const poll = 5 * time.Millisecond

func follow(path string, start crilog.Position, cfg crilog.FollowerConfig) *running {
	if cfg.PollInterval == 0 {
		cfg.PollInterval = poll
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{collector: &collector{}, follower: crilog.NewFollower(path, start, cfg), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.follower.Run(ctx, r.handle) }()
	DeferCleanup(func() {
		cancel()
		Eventually(r.done).Should(Receive())
	})
	return r
}

// stop cancels the follower and waits for Run to return nil.
func (r *running) stop() {
	GinkgoHelper()
	r.cancel()
	var err error
	Eventually(r.done).Should(Receive(&err))
	Expect(err).NotTo(HaveOccurred())
	r.done <- nil // for the cleanup
}
