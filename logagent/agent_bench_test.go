package logagent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"k8s.io/apimachinery/pkg/types"

	"github.com/iris-cf/iris/integration/testcerts"
	"github.com/iris-cf/iris/logagent"
	"github.com/iris-cf/iris/logs"
	"github.com/iris-cf/iris/logs/crilog"
	"github.com/iris-cf/iris/logs/ingresstest"
)

type oneSource struct{ src logs.Source }

func (o oneSource) Lookup(types.UID) (logs.Source, bool) { return o.src, true }
func (o oneSource) Prune(time.Time)                      {}

// BenchmarkAgentToIngress measures lines per second from a CRI log file
// through the agent (follower, envelopes, sender) to a real Loggregator v2
// ingress over mutual TLS, and the heap it needs. Run it on one core:
//
//	go test -run '^$' -bench AgentToIngress -cpu 1 ./logagent/
//
// The agent, the gRPC client and the ingress server share that core, so the
// number is a floor for the agent alone. The writer keeps at most 5,000
// lines ahead of the ingress (a busy app, not a backlog), so nothing is
// dropped and the number is sustained throughput.
func BenchmarkAgentToIngress(b *testing.B) {
	const lines = 200_000
	const maxAhead = 5_000
	dir := b.TempDir()
	ca, err := testcerts.NewCA("bench-ca")
	if err != nil {
		b.Fatal(err)
	}
	serverLeaf, _ := ca.Issue("metron")
	cert, _ := serverLeaf.TLSCertificate()
	server, err := ingresstest.Start(ingresstest.Options{Cert: cert, ClientCAs: ca.Pool(), CountOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer server.Stop()
	clientLeaf, _ := ca.Issue("iris")
	certFile, keyFile, _ := clientLeaf.WriteFiles(dir, "client")
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		b.Fatal(err)
	}
	client, conn, err := logs.Dial(logs.IngressConfig{Address: server.Addr(), CACertFile: caFile, CertFile: certFile, KeyFile: keyFile, ServerName: "metron"})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()

	logger := lager.NewLogger("bench")
	sender := logs.NewSender(logger, client, logs.SenderConfig{})
	senderProcess := ifrit.Invoke(sender)
	defer func() { senderProcess.Signal(os.Interrupt); <-senderProcess.Wait() }()

	podDir := filepath.Join(dir, "pods", "ns_app-0_uid-1", "app")
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		b.Fatal(err)
	}
	src := logs.Source{SourceID: "app-guid", InstanceID: "0", SourceType: "APP/PROC/WEB", Tags: map[string]string{
		"app_id": "app-guid", "app_name": "dora", "space_name": "dev", "organization_name": "acme", "process_type": "web",
	}}
	agent := logagent.New(logger, logagent.Config{
		PodLogDir:      filepath.Join(dir, "pods"),
		CheckpointFile: filepath.Join(dir, "positions.json"),
		Namespaces:     []string{"ns"},
		ScanInterval:   time.Second,
		Follower:       crilog.FollowerConfig{PollInterval: 10 * time.Millisecond},
	}, oneSource{src}, sender)
	agentProcess := ifrit.Invoke(agent)
	defer func() { agentProcess.Signal(os.Interrupt); <-agentProcess.Wait() }()

	f, err := os.OpenFile(filepath.Join(podDir, "0.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	payload := strings.Repeat("x", 60)
	chunk := func(from, n int) []byte {
		var sb strings.Builder
		ts := time.Now().UTC().Format(time.RFC3339Nano)
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&sb, "%s stdout F line %08d %s\n", ts, i, payload)
		}
		return []byte(sb.String())
	}

	var peakHeap uint64
	var mem runtime.MemStats
	b.ResetTimer()
	start := time.Now()
	total := 0
	for range b.N {
		written := 0
		base := server.Count()
		for written < lines {
			if int64(written)-(server.Count()-base) >= maxAhead {
				time.Sleep(time.Millisecond)
				continue
			}
			if _, err := f.Write(chunk(total+written, 500)); err != nil {
				b.Fatal(err)
			}
			written += 500
		}
		for server.Count()-base < lines {
			time.Sleep(time.Millisecond)
		}
		total += lines
		runtime.ReadMemStats(&mem)
		peakHeap = max(peakHeap, mem.HeapInuse)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(total)/elapsed.Seconds(), "lines/s")
	b.ReportMetric(float64(peakHeap)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(mem.Sys)/(1<<20), "sys-MiB")
	b.ReportMetric(float64(sender.Dropped()), "dropped")
}
