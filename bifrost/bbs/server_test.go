package bbs_test

import (
	"io"
	"net"
	"os"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"

	"github.com/iris-cf/iris/bifrost/bbs"
	"github.com/iris-cf/iris/bifrost/bbs/bbsfakes"
	"github.com/iris-cf/iris/config"
)

func freeAddress() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

var _ = Describe("Server", func() {
	var (
		cfg    config.BBS
		hub    *bbs.EventHub
		logger *lagertest.TestLogger
	)

	BeforeEach(func() {
		logger = lagertest.NewTestLogger("server")
		hub = bbs.NewEventHub(logger, 0)
		cfg = config.BBS{
			ListenAddress:    freeAddress(),
			TLSListenAddress: freeAddress(),
			TLSCertFile:      suiteCerts.serverCertFile,
			TLSKeyFile:       suiteCerts.serverKeyFile,
			ClientCAFile:     suiteCerts.clientCAFile,
		}
	})

	start := func() ifrit.Process {
		handler := bbs.NewHandler(logger, bbs.Backends{
			DesiredLRPs: &bbsfakes.FakeDesiredLRPs{},
			ActualLRPs:  &bbsfakes.FakeActualLRPs{},
			Domains:     &bbsfakes.FakeDomains{},
		}, hub, maxBodyBytes)
		// A long drain timeout: the spec shows open streams do not use it.
		server, err := bbs.NewServer(logger, cfg, handler, hub, time.Minute)
		Expect(err).NotTo(HaveOccurred())
		process := ifrit.Invoke(server)
		DeferCleanup(func() {
			process.Signal(os.Kill)
			Eventually(process.Wait()).Should(Receive())
		})
		return process
	}

	It("serves mTLS and plain HTTP, and on a signal ends the event streams and stops promptly", func() {
		process := start()

		tlsClient, err := bbsclient.NewClient("https://"+cfg.TLSListenAddress, suiteCerts.serverCAFile, suiteCerts.clientCertFile, suiteCerts.clientKeyFile, 0, 0)
		Expect(err).NotTo(HaveOccurred())
		Expect(tlsClient.Ping(logger, "")).To(BeTrue())
		plainClient, err := bbsclient.NewClientWithConfig(bbsclient.ClientConfig{URL: "http://" + cfg.ListenAddress})
		Expect(err).NotTo(HaveOccurred())
		Expect(plainClient.Ping(logger, "")).To(BeTrue())

		overTLS, err := tlsClient.SubscribeToInstanceEvents(logger)
		Expect(err).NotTo(HaveOccurred())
		streamTLS := drain(overTLS)
		plain, err := plainClient.SubscribeToInstanceEventsByCellID(logger, "cell-1")
		Expect(err).NotTo(HaveOccurred())
		streamPlain := drain(plain)
		Eventually(hub.Subscribers).Should(Equal(2))

		process.Signal(os.Interrupt)
		Eventually(streamTLS.err).Should(Receive(MatchError(io.EOF)))
		Eventually(streamPlain.err).Should(Receive(MatchError(io.EOF)))
		Eventually(process.Wait(), 10*time.Second).Should(Receive(BeNil()))
	})

	It("fails to start when a listener cannot listen", func() {
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(taken.Close)
		cfg.ListenAddress = taken.Addr().String()

		handler := bbs.NewHandler(logger, bbs.Backends{}, hub, maxBodyBytes)
		server, err := bbs.NewServer(logger, cfg, handler, hub, time.Second)
		Expect(err).NotTo(HaveOccurred())
		Expect(<-ifrit.Invoke(server).Wait()).To(MatchError(ContainSubstring("address already in use")))
		_, err = hub.Subscribe("")
		Expect(err).To(MatchError(bbs.ErrHubClosed))
	})

	It("refuses a configuration without listeners, or with unreadable certificates", func() {
		_, err := bbs.NewServer(logger, config.BBS{}, nil, hub, time.Second)
		Expect(err).To(MatchError(ContainSubstring("no listen_address")))

		cfg.TLSCertFile = "/does/not/exist.crt"
		_, err = bbs.NewServer(logger, cfg, nil, hub, time.Second)
		Expect(err).To(MatchError(ContainSubstring("bbs tls listener")))
	})
})
