package route

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	"k8s.io/utils/clock"

	"github.com/iris-cf/iris/internal/benchenv"
)

// countingBus discards messages, counting them and their bytes.
type countingBus struct{ messages, bytes int }

func (b *countingBus) Publish(_ string, data []byte) error {
	b.messages++
	b.bytes += len(data)
	return nil
}
func (b *countingBus) Subscribe(string, func([]byte)) (func(), error) { return func() {}, nil }
func (b *countingBus) Greet(func([]byte)) (func(), error)             { return func() {}, nil }
func (b *countingBus) OnReconnect(func())                             {}

// fillTable builds lrps LRPs of instances instances with one route each.
func fillTable(lrps, instances int) *Table {
	t := NewTable(0)
	for l := 0; l < lrps; l++ {
		guid := fmt.Sprintf("%08d-0000-4000-8000-000000000000-%08d-0000-4000-8000-000000000000", l, l)
		t.SetLRP(LRP{
			AppGUID: guid[:36], AppName: "app", ProcessGUID: guid, ProcessType: "web",
			OrgGUID: "org-guid", OrgName: "org", SpaceGUID: "space-guid", SpaceName: "space",
			Routes: []Route{{Hostname: fmt.Sprintf("app-%d.apps.example.com", l), Port: 8080}},
		})
		for i := 0; i < instances; i++ {
			t.SetEndpoint(guid, fmt.Sprintf("pod-%d-%d", l, i), Endpoint{
				InstanceGUID: fmt.Sprintf("%08d-%04d-4000-8000-000000000000", l, i), Index: i,
				IP: fmt.Sprintf("10.%d.%d.%d", l>>16&255, l>>8&255, l&255), ReadySinceNs: time.Now().UnixNano(),
			})
		}
	}
	return t
}

// BenchmarkReEmit250k measures one full re-emit pass over 250,000 instances
// (25,000 LRPs x 10 instances): marshalling and handing every message to
// NATS. Run on one core: go test ./route -run - -bench ReEmit -cpu 1
// Target: >= 12,500 messages/s (250k every 20 s).
func BenchmarkReEmit250k(b *testing.B) {
	const lrps, instances = 25_000, 10
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	table := fillTable(lrps, instances)
	runtime.GC()
	runtime.ReadMemStats(&after)
	bytesPerInstance := float64(after.HeapAlloc-before.HeapAlloc) / float64(lrps*instances)

	bus := &countingBus{}
	e := &Emitter{logger: lagertest.NewTestLogger("bench"), bus: bus, table: table, active: true, clock: clock.RealClock{}}
	b.ResetTimer()
	start, cpu := time.Now(), benchenv.ProcessCPU()
	for i := 0; i < b.N; i++ {
		e.emitAll(0, nil)
	}
	elapsed, cpu := time.Since(start), benchenv.ProcessCPU()-cpu
	b.StopTimer()

	b.ReportMetric(float64(bus.messages)/elapsed.Seconds(), "messages/s")
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/pass")
	b.ReportMetric(bytesPerInstance, "table-bytes/instance")
	b.ReportMetric(float64(bus.bytes)/float64(bus.messages), "bytes/message")
	// Per CPU second: on a shared machine the wall time is mostly waiting.
	benchenv.EmitResult(benchenv.Result{Goal: "250k: route re-emit of 250,000 instances per CPU second (ReEmit250k)", Value: float64(bus.messages) / cpu.Seconds(), Unit: "msg/s",
		Target: 12500, Compare: benchenv.AtLeast, Note: fmt.Sprintf("%.2f s CPU and %.2f s wall per pass (%.0f msg/s wall), GOMAXPROCS %d", cpu.Seconds()/float64(b.N), elapsed.Seconds()/float64(b.N), float64(bus.messages)/elapsed.Seconds(), runtime.GOMAXPROCS(0))})
	runtime.KeepAlive(table)
}
