package crilog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iris-cf/iris/logs/crilog"
)

// BenchmarkFollower reads a pre-written file of 100k lines of about 100
// bytes, a tenth of them split into two partial segments.
func BenchmarkFollower(b *testing.B) {
	const lines = 100_000
	dir := filepath.Join(b.TempDir(), "ns_pod_0c1d", "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "0.log")
	var sb strings.Builder
	filler := strings.Repeat("x", 40)
	for i := range lines {
		ts := epoch.Add(time.Duration(i) * time.Microsecond)
		content := fmt.Sprintf("request %07d served in 12ms %s", i, filler)
		if i%10 == 0 {
			sb.WriteString(criLine(ts, "stdout", "P", content[:20]))
			sb.WriteString(criLine(ts, "stdout", "F", content[20:]))
		} else {
			sb.WriteString(criLine(ts, "stdout", "F", content))
		}
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	b.ReportAllocs()

	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		err := crilog.NewFollower(path, crilog.Position{}, crilog.FollowerConfig{}).Run(ctx, func(crilog.Record, crilog.Position) {
			if n++; n == lines {
				cancel()
			}
		})
		cancel()
		if err != nil || n != lines {
			b.Fatalf("read %d lines: %v", n, err)
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
