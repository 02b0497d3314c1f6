package logs_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"

	"github.com/iris-cf/iris/integration/testcerts"
	"github.com/iris-cf/iris/logs"
	"github.com/iris-cf/iris/logs/ingresstest"
)

var _ = Describe("Sender", func() {
	var (
		ca        *testcerts.CA
		serverOpt ingresstest.Options
		server    *ingresstest.Server
		ingress   logs.IngressConfig
		conn      *grpc.ClientConn
		client    loggregator_v2.IngressClient
	)

	BeforeEach(func() {
		var err error
		ca, err = testcerts.NewCA("loggregator-ca")
		Expect(err).NotTo(HaveOccurred())
		serverLeaf, err := ca.Issue("metron")
		Expect(err).NotTo(HaveOccurred())
		cert, err := serverLeaf.TLSCertificate()
		Expect(err).NotTo(HaveOccurred())
		serverOpt = ingresstest.Options{Cert: cert, ClientCAs: ca.Pool()}
		server, err = ingresstest.Start(serverOpt)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { server.Stop() })

		dir := GinkgoT().TempDir()
		clientLeaf, err := ca.Issue("iris")
		Expect(err).NotTo(HaveOccurred())
		certFile, keyFile, err := clientLeaf.WriteFiles(dir, "client")
		Expect(err).NotTo(HaveOccurred())
		caFile := filepath.Join(dir, "ca.crt")
		Expect(os.WriteFile(caFile, ca.PEM, 0o600)).To(Succeed())
		ingress = logs.IngressConfig{Address: server.Addr(), CACertFile: caFile, CertFile: certFile, KeyFile: keyFile, ServerName: "metron"}
	})

	dial := func() {
		var err error
		client, conn, err = logs.Dial(ingress)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
	}

	start := func(cfg logs.SenderConfig) (*logs.Sender, ifrit.Process) {
		sender := logs.NewSender(lagertest.NewTestLogger("sender"), client, cfg)
		process := ifrit.Invoke(sender)
		DeferCleanup(func() { process.Signal(os.Interrupt); Eventually(process.Wait(), "10s").Should(Receive()) })
		return sender, process
	}

	src := logs.Source{SourceID: "app", InstanceID: "0", SourceType: "APP/PROC/WEB"}
	emit := func(sender *logs.Sender, from, to int) {
		for i := from; i < to; i++ {
			sender.Emit(src.LogEnvelopes(time.Now(), true, []byte(strconv.Itoa(i)))...)
		}
	}
	// payloads are the log lines received, in order.
	payloads := func() []string {
		var out []string
		for _, e := range server.Envelopes() {
			if e.GetLog() != nil {
				out = append(out, string(e.GetLog().GetPayload()))
			}
		}
		return out
	}
	sequence := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, strconv.Itoa(i))
		}
		return out
	}

	It("delivers envelopes in order over mutual TLS", func() {
		dial()
		sender, _ := start(logs.SenderConfig{})
		emit(sender, 0, 1000)
		Eventually(payloads).Should(Equal(sequence(0, 1000)))
		Expect(sender.Sent()).To(BeEquivalentTo(1000))
		Expect(sender.Dropped()).To(BeZero())
	})

	It("is refused by an ingress that does not trust its certificate", func() {
		other, err := testcerts.NewCA("other")
		Expect(err).NotTo(HaveOccurred())
		leaf, err := other.Issue("iris")
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()
		ingress.CertFile, ingress.KeyFile, err = leaf.WriteFiles(dir, "untrusted")
		Expect(err).NotTo(HaveOccurred())
		dial()
		sender, _ := start(logs.SenderConfig{MaxBackoff: 50 * time.Millisecond, DrainTimeout: 200 * time.Millisecond})
		emit(sender, 0, 5)
		Eventually(sender.SendFailures).Should(BeNumerically(">", 1))
		Consistently(server.Count, "300ms").Should(BeZero())
	})

	It("never blocks while the ingress is stuck, and counts what it had to drop", func() {
		dial()
		sender, _ := start(logs.SenderConfig{BufferSize: 64, BatchSize: 10})
		server.Pause()
		done := make(chan struct{})
		big := make([]byte, 16<<10) // fills gRPC's flow-control windows quickly
		go func() {
			defer close(done)
			for i := 0; i < 5000; i++ {
				sender.Emit(src.LogEnvelopes(time.Now(), true, big)...)
			}
		}()
		Eventually(done, "5s").Should(BeClosed())
		Eventually(sender.Dropped).Should(BeNumerically(">", 0))

		server.Resume()
		// Every envelope is either delivered or counted as dropped. The
		// diode may count a slot a colliding writer skipped as a drop, so
		// the sum can exceed what was emitted by a few, never fall short.
		Eventually(func() uint64 { return sender.Sent() + sender.Dropped() }).Should(BeNumerically(">=", 5000))
		Expect(sender.Sent() + sender.Dropped()).To(BeNumerically("<", 5000+50))
		Eventually(server.Count).Should(BeEquivalentTo(sender.Sent()))
		Expect(sender.Sent()).To(BeNumerically("<", 5000))
	})

	Context("with a bulk producer (metrics) larger than every buffer", func() {
		// Large enough that a stuck ingress's flow-control windows fill
		// quickly and push back (after some 60 of them).
		padding := map[string]string{"padding": strings.Repeat("x", 4<<10)}
		gauge := func(i int) *loggregator_v2.Envelope {
			return &loggregator_v2.Envelope{SourceId: "metrics", InstanceId: strconv.Itoa(i), Tags: padding, Message: &loggregator_v2.Envelope_Gauge{Gauge: &loggregator_v2.Gauge{
				Metrics: map[string]*loggregator_v2.GaugeValue{"memory": {Unit: "bytes", Value: float64(i)}},
			}}}
		}
		// emitBulk hands n gauges to EmitWait in batches, as the metrics
		// reporter does, from its own goroutine; done closes with its error.
		emitBulk := func(ctx context.Context, sender *logs.Sender, n int) (done chan error) {
			done = make(chan error, 1)
			go func() {
				defer GinkgoRecover()
				for i := 0; i < n; i += 256 {
					var batch []*loggregator_v2.Envelope
					for j := i; j < min(i+256, n); j++ {
						batch = append(batch, gauge(j))
					}
					if err := sender.EmitWait(ctx, batch...); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			return done
		}
		gauges := func() (ids []string) {
			for _, e := range server.Envelopes() {
				if e.GetGauge() != nil {
					ids = append(ids, e.InstanceId)
				}
			}
			return ids
		}

		It("waits for a slow ingress and delivers every envelope, in order", func() {
			dial()
			sender, _ := start(logs.SenderConfig{BufferSize: 64, BulkBufferSize: 16, BatchSize: 10})
			server.Pause()
			done := emitBulk(context.Background(), sender, 1000)
			Consistently(done, "300ms").ShouldNot(Receive(), "the producer waits while the ingress is stuck")

			server.Resume()
			Eventually(done, "10s").Should(Receive(BeNil()))
			Eventually(gauges, "10s").Should(Equal(sequence(0, 1000)))
			Expect(sender.Dropped()).To(BeZero())
		})

		It("does not push out log lines emitted while it is backlogged, and sends them first", func() {
			dial()
			sender, _ := start(logs.SenderConfig{BufferSize: 100, BulkBufferSize: 16, BatchSize: 10})
			server.Pause()
			emit(sender, 0, 50) // lines before the pass, then during it: the log buffer exactly
			done := emitBulk(context.Background(), sender, 1000)
			Consistently(done, "300ms").ShouldNot(Receive())
			emit(sender, 50, 100)

			server.Resume()
			Eventually(done, "10s").Should(Receive(BeNil()))
			Eventually(server.Count, "10s").Should(BeEquivalentTo(1100))
			Expect(payloads()).To(Equal(sequence(0, 100)))
			Expect(sender.Dropped()).To(BeZero())
			// Only what was already queued or in flight when the lines
			// came went before them: the bulk queue, a batch, what gRPC
			// had buffered; not the rest of the pass.
			lastLine := slices.IndexFunc(server.Envelopes(), func(e *loggregator_v2.Envelope) bool { return e.GetLog() != nil && string(e.GetLog().Payload) == "99" })
			Expect(lastLine).To(BeNumerically("<", 200))
		})

		It("gives up when the producer's context ends and counts what it did not queue as dropped", func() {
			dial()
			sender, _ := start(logs.SenderConfig{BulkBufferSize: 16, BatchSize: 10})
			server.Pause()
			ctx, cancel := context.WithCancel(context.Background())
			done := emitBulk(ctx, sender, 1000)
			Consistently(done, "300ms").ShouldNot(Receive())
			cancel()
			Eventually(done).Should(Receive(MatchError(context.Canceled)))
			Expect(sender.Dropped()).To(BeNumerically(">", 0))

			// Every envelope of the batches it began is delivered or
			// counted: whole batches of 256.
			server.Resume()
			Eventually(func(g Gomega) {
				g.Expect(server.Count()).To(BeEquivalentTo(sender.Sent()))
				through := sender.Sent() + sender.Dropped()
				g.Expect(through).To(BeNumerically(">=", 256))
				g.Expect(through % 256).To(BeZero())
			}, "10s").Should(Succeed())
			Expect(sender.Sent()).To(BeNumerically("<", 1000))
		})
	})

	It("keeps the batch and retries until the ingress comes back", func() {
		addr := server.Addr()
		server.Stop()
		dial()
		sender, _ := start(logs.SenderConfig{MaxBackoff: 100 * time.Millisecond})
		emit(sender, 0, 50)
		Eventually(sender.SendFailures).Should(BeNumerically(">", 0))

		serverOpt.Address = addr
		var err error
		server, err = ingresstest.Start(serverOpt)
		Expect(err).NotTo(HaveOccurred())
		Eventually(payloads, "10s").Should(Equal(sequence(0, 50)))
		Expect(sender.Dropped()).To(BeZero())
	})

	It("flushes everything buffered when it is stopped", func() {
		dial()
		sender, process := start(logs.SenderConfig{})
		emit(sender, 0, 2000)
		process.Signal(os.Interrupt)
		Eventually(process.Wait(), "10s").Should(Receive(BeNil()))
		Expect(payloads()).To(Equal(sequence(0, 2000)), fmt.Sprintf("sent %d dropped %d", sender.Sent(), sender.Dropped()))
	})
})
