// Package benchenv is what Iris's benchmarks print beside their figures and
// how they wait, in one place: the machines they run on are shared and
// noisy, so every figure goes out with the load and the process's own CPU.
package benchenv

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// LoadAverage is the machine's 1-, 5- and 15-minute load, or "unknown".
func LoadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return "unknown"
	}
	return strings.Join(fields[:3], " ")
}

// ProcessCPU is the CPU time (user and system) this process has used.
func ProcessCPU() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// WaitUntil polls done every 20 ms until it is true, or fails after
// timeout (caches catching up with what a benchmark fed them).
func WaitUntil(timeout time.Duration, done func() bool) error {
	return wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return done(), nil
	})
}

// Int is the integer the environment variable name sets (a benchmark's
// size, IRIS_BENCH_*), fallback when unset; a value that is not one fails
// tb.
func Int(tb testing.TB, name string, fallback int) int {
	s := os.Getenv(name)
	if s == "" {
		return fallback
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return n
}
