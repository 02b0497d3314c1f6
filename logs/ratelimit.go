package logs

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// overageMute is how long an instance's lines are dropped after it went
// over its limit: Diego's executor drops for a second and reports the
// overage once for that second.
const overageMute = time.Second

// RateLimit is one app instance's log rate limit (CC's log_rate_limit,
// bytes per second), shared by all of the instance's log files as Diego's
// executor shares one limiter between stdout and stderr. Lines are measured
// at the time the container wrote them, not when they are read, so a
// shipper catching up after a restart does not drop what the app logged
// within its limit. Safe for concurrent use.
type RateLimit struct {
	bytesPerSecond int64

	mu         sync.Mutex
	limiter    *rate.Limiter
	mutedUntil time.Time
}

// NewRateLimit returns the limit, or nil for an unlimited instance (no
// limit or a negative one).
func NewRateLimit(limit *int64) *RateLimit {
	if limit == nil || *limit < 0 {
		return nil
	}
	bytesPerSecond := *limit
	return &RateLimit{
		bytesPerSecond: bytesPerSecond,
		// A burst of one second's worth, as Diego's executor allows.
		limiter: rate.NewLimiter(rate.Limit(bytesPerSecond), int(min(bytesPerSecond, int64(^uint32(0)>>1)))),
	}
}

// Admit reports whether a line of n bytes written at t is shipped. When it
// is not and it starts an overage, report is Diego's message for the app's
// log stream ("app instance exceeded log rate limit (N bytes/sec)");
// further lines of the same second are dropped without a report. A limit
// of 0 ships nothing and reports nothing, as Diego does. A nil limit
// admits everything.
func (l *RateLimit) Admit(t time.Time, n int) (ok bool, report string) {
	if l == nil {
		return true, ""
	}
	if l.bytesPerSecond == 0 {
		return false, ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.Before(l.mutedUntil) {
		return false, ""
	}
	if !l.limiter.AllowN(t, n) {
		l.mutedUntil = t.Add(overageMute)
		return false, fmt.Sprintf("app instance exceeded log rate limit (%d bytes/sec)", l.bytesPerSecond)
	}
	return true, ""
}
