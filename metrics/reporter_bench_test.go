package metrics_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	runtimemetrics "runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/tedsuo/ifrit"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/iris-cf/iris/integration/testcerts"
	"github.com/iris-cf/iris/internal/benchenv"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/logs"
	"github.com/iris-cf/iris/logs/ingresstest"
	"github.com/iris-cf/iris/metrics"
)

// BenchmarkReporter250k runs the metrics reporter's passes over 250,000
// instances through a real logs.Sender (config's default buffer) to a real
// Loggregator v2 ingress over mutual TLS, in process, while CELL-like log
// lines go through the same sender at a steady rate. Per pass it prints
// the metrics envelopes delivered and dropped, the log lines delivered and
// dropped, the pass's duration, CPU per instance (including the in-process
// ingress's receiving), peak and live heap, and the load. Run with
//
//	go test ./metrics -run '^$' -bench Reporter250k -benchtime 1x
//
// (IRIS_BENCH_INSTANCES for another count, IRIS_BENCH_INTERVAL for another
// reporter interval than Diego's 15s).
func BenchmarkReporter250k(b *testing.B) {
	total := benchenv.Int(b, "IRIS_BENCH_INSTANCES", 250000)
	interval := 15 * time.Second
	if s := os.Getenv("IRIS_BENCH_INTERVAL"); s != "" {
		var err error
		if interval, err = time.ParseDuration(s); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < b.N; i++ {
		benchmarkReporter(b, total, interval)
	}
}

// logRate is how many log lines per second go through the sender beside
// the metrics: a rolling restart's CELL lines at this scale.
const logRate = 2000

func benchmarkReporter(b *testing.B, total int, interval time.Duration) {
	const ns = "cf-workloads"
	server, ingress := startIngress(b)
	client, conn, err := logs.Dial(ingress)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	sender := logs.NewSender(lagertest.NewTestLogger("sender"), client, logs.SenderConfig{BufferSize: 10000})
	process := ifrit.Invoke(sender)
	defer func() { process.Signal(os.Interrupt); <-process.Wait() }()

	// The pods as the cache holds them, and their usage.
	pods := make(podList, 0, total)
	u := &benchUsage{pods: make([]metricsv1beta1.PodMetrics, 0, total)}
	for i := 0; i < total; i++ {
		lrp, index := i/5, strconv.Itoa(i%5)
		p := appPod(ns, fmt.Sprintf("app-%d-%s", lrp, index), fmt.Sprintf("uid-%d", i), index)
		p.Labels[k8s.LabelGUID] = fmt.Sprintf("process-guid-%d", lrp)
		p.Labels[k8s.LabelAppGUID] = fmt.Sprintf("app-guid-%d", lrp)
		p.ResourceVersion = "1"
		pods = append(pods, p)
		u.pods = append(u.pods, podMetrics(ns, p.Name, "50m", "100Mi"))
	}
	emitter := &switchEmitter{}
	reporter := metrics.NewReporter(lagertest.NewTestLogger("metrics"), u, &pods, emitter, []string{ns}, interval)

	fmt.Printf("metrics reporter, %d instances, interval %s, through logs.Sender (buffer 10000) to a Loggregator ingress over mTLS in process, %d log lines/s beside it:\n",
		total, interval, logRate)
	// The reporter alone first, its envelopes only counted: the CPU the
	// sender and the in-process ingress add is the difference. This pass
	// also builds the reporter's per-pod cache.
	alone := &countingEmitter{}
	emitter.to = alone
	for pass := 1; pass <= 2; pass++ {
		runtime.GC()
		before, cpu, start := liveHeapMiB(), benchenv.ProcessCPU(), time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		reporter.EmitOnce(ctx)
		cancel()
		fmt.Printf("  reporter alone, pass %d: %d envelopes in %s, CPU %s (%.1f µs per instance); live heap %.0f MiB before; load %s\n",
			pass, alone.n.Swap(0), time.Since(start).Round(time.Millisecond), (benchenv.ProcessCPU() - cpu).Round(time.Millisecond),
			float64((benchenv.ProcessCPU()-cpu).Microseconds())/float64(total), before, benchenv.LoadAverage())
	}
	emitter.to = sender
	for pass := 1; pass <= 3; pass++ {
		runtime.GC()
		skipped := reporter.Skipped()
		p := measurePass(b, server, sender, logs.Source{SourceID: "cell-logs", InstanceID: "0", SourceType: "CELL"}, func() {
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			defer cancel()
			reporter.EmitOnce(ctx)
		})
		skipped = reporter.Skipped() - skipped
		fmt.Printf("  pass %d: metrics %d delivered, %d dropped, %d skipped (not taken within the interval) (%.1f%% lost); log lines %d of %d delivered; pass %s, delivered after %s; CPU (log lines too) %s (%.1f µs per instance); heap peak %.0f MiB, live after %.0f MiB; load %s\n",
			pass, p.metricsDelivered, p.dropped-p.logsLost(), skipped, 100*float64(p.dropped-p.logsLost()+skipped)/float64(total), p.logsDelivered, p.logsEmitted,
			p.pass.Round(time.Millisecond), p.delivered.Round(time.Millisecond), p.cpu.Round(time.Millisecond), float64(p.cpu.Microseconds())/float64(total),
			p.peakHeapMiB, liveHeapMiB(), benchenv.LoadAverage())
		// Pass 1 includes the stream's start; the steady passes are what
		// every interval costs.
		benchenv.EmitResult(benchenv.Result{Goal: fmt.Sprintf("250k: metrics lost per pass through the sender, pass %d (Reporter250k, %d instances)", pass, total),
			Value: float64(p.dropped - p.logsLost() + skipped), Unit: "envelopes", Target: 0, Compare: benchenv.AtMost,
			Note: fmt.Sprintf("%d delivered; log lines %d of %d delivered; pass %s; CPU %.1f µs per instance (ingress and log lines too)",
				p.metricsDelivered, p.logsDelivered, p.logsEmitted, p.pass.Round(time.Millisecond), float64(p.cpu.Microseconds())/float64(total))})
		if pass == 3 {
			b.ReportMetric(float64(p.metricsDelivered), "metrics-delivered/pass")
			b.ReportMetric(float64(p.dropped), "dropped/pass")
			b.ReportMetric(float64(p.cpu.Microseconds())/float64(total), "cpu-µs/instance")
			b.ReportMetric(p.peakHeapMiB, "peak-heap-MiB")
		}
	}
}

// passResult is what one pass delivered and cost.
type passResult struct {
	metricsDelivered, logsDelivered, logsEmitted int64
	dropped                                      uint64
	pass, delivered, cpu                         time.Duration
	peakHeapMiB                                  float64
}

// logsLost is how many log lines did not arrive (dropped, since every
// envelope handed to the sender is delivered or counted dropped).
func (p passResult) logsLost() uint64 { return uint64(p.logsEmitted - p.logsDelivered) }

// measurePass runs pass while log lines go through sender at logRate,
// then waits until the sender has delivered or dropped everything.
func measurePass(b *testing.B, server *ingresstest.Server, sender *logs.Sender, src logs.Source, pass func()) passResult {
	count, logCount, dropped := server.Count(), server.LogCount(), sender.Dropped()
	cpu, start := benchenv.ProcessCPU(), time.Now()
	peak := watchHeap()
	stopLogs, logsEmitted := emitLogLines(sender, src)
	pass()
	passTime := time.Since(start)
	// The metrics delivered or dropped (log lines keep arriving), then the
	// last log lines.
	waitSettled(b, func() uint64 { return uint64(server.Count()-server.LogCount()) + sender.Dropped() })
	stopLogs()
	waitSettled(b, func() uint64 { return uint64(server.Count()) + sender.Dropped() })
	delivered := time.Since(start) - 2*settle
	r := passResult{
		logsDelivered: server.LogCount() - logCount,
		logsEmitted:   logsEmitted(),
		dropped:       sender.Dropped() - dropped,
		pass:          passTime,
		delivered:     delivered,
		cpu:           benchenv.ProcessCPU() - cpu,
		peakHeapMiB:   peak(),
	}
	r.metricsDelivered = server.Count() - count - r.logsDelivered
	return r
}

// settle is how long what the ingress received plus what the sender
// dropped must stay still for everything handed to the sender to be
// through (the sender polls every 5 ms).
const settle = 200 * time.Millisecond

func waitSettled(b *testing.B, through func() uint64) {
	last, since := uint64(0), time.Now()
	if err := benchenv.WaitUntil(10*time.Minute, func() bool {
		if now := through(); now != last {
			last, since = now, time.Now()
		}
		return time.Since(since) >= settle
	}); err != nil {
		b.Fatal(err)
	}
}

// emitLogLines emits log lines at logRate until stopped; emitted says how
// many it has.
func emitLogLines(sender *logs.Sender, src logs.Source) (stop func(), emitted func() int64) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var n int64
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			due := int64(time.Since(start).Seconds() * logRate)
			mu.Lock()
			for ; n < due; n++ {
				sender.Emit(src.LogEnvelopes(time.Now(), true, []byte("Cell abc successfully created container for instance "+strconv.FormatInt(n, 10)))...)
			}
			mu.Unlock()
		}
	}()
	return func() { close(done); wg.Wait() }, func() int64 { mu.Lock(); defer mu.Unlock(); return n }
}

// watchHeap samples the heap's objects every 20 ms until peak is called,
// which returns the largest in MiB.
func watchHeap() (peak func() float64) {
	done := make(chan struct{})
	result := make(chan float64)
	sample := []runtimemetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		var max uint64
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			runtimemetrics.Read(sample)
			max = maxU(max, sample[0].Value.Uint64())
			select {
			case <-done:
				result <- float64(max) / (1 << 20)
				return
			case <-tick.C:
			}
		}
	}()
	return func() float64 { close(done); return <-result }
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

func liveHeapMiB() float64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// switchEmitter is the reporter's emitter, switched between passes.
type switchEmitter struct{ to metrics.Emitter }

func (s *switchEmitter) EmitWait(ctx context.Context, e ...*loggregator_v2.Envelope) error {
	return s.to.EmitWait(ctx, e...)
}

type countingEmitter struct{ n atomic.Int64 }

func (c *countingEmitter) EmitWait(_ context.Context, e ...*loggregator_v2.Envelope) error {
	c.n.Add(int64(len(e)))
	return nil
}

type benchUsage struct{ pods []metricsv1beta1.PodMetrics }

func (u *benchUsage) PodMetrics(context.Context, string) ([]metricsv1beta1.PodMetrics, error) {
	return u.pods, nil
}

func (u *benchUsage) StatsSummary(context.Context, string) (*statsv1alpha1.Summary, error) {
	return &statsv1alpha1.Summary{}, nil
}

// startIngress starts a Loggregator ingress that only counts, and returns
// the client's configuration for it.
func startIngress(b *testing.B) (*ingresstest.Server, logs.IngressConfig) {
	ca, err := testcerts.NewCA("loggregator-ca")
	if err != nil {
		b.Fatal(err)
	}
	serverLeaf, err := ca.Issue("metron")
	if err != nil {
		b.Fatal(err)
	}
	cert, err := serverLeaf.TLSCertificate()
	if err != nil {
		b.Fatal(err)
	}
	server, err := ingresstest.Start(ingresstest.Options{Cert: cert, ClientCAs: ca.Pool(), CountOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(server.Stop)
	dir := b.TempDir()
	clientLeaf, err := ca.Issue("iris")
	if err != nil {
		b.Fatal(err)
	}
	certFile, keyFile, err := clientLeaf.WriteFiles(dir, "client")
	if err != nil {
		b.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		b.Fatal(err)
	}
	return server, logs.IngressConfig{Address: server.Addr(), CACertFile: caFile, CertFile: certFile, KeyFile: keyFile, ServerName: "metron"}
}
