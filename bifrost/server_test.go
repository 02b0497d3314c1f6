package bifrost_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"

	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/integration/testcerts"
)

var _ = Describe("Server", func() {
	const readTimeout, idleTimeout = 500 * time.Millisecond, 500 * time.Millisecond
	var (
		address  string
		bodyErrs chan error
	)

	BeforeEach(func() {
		bodyErrs = make(chan error, 1)
		// Reads the whole body, as every API handler does.
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, err := io.ReadAll(r.Body)
			bodyErrs <- err
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
		server := bifrost.NewServer(lagertest.NewTestLogger("test"), "127.0.0.1:0", handler,
			bifrost.Timeouts{Read: readTimeout, Idle: idleTimeout, Shutdown: time.Second})
		process := ifrit.Invoke(server)
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive(BeNil()))
		})
		address = server.Address()
		Expect(address).NotTo(BeEmpty())
	})

	It("cuts off a client that sends a small body byte by byte after the read timeout", func() {
		conn, err := net.Dial("tcp", address)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		const bodySize = 200
		_, err = fmt.Fprintf(conn, "PUT /apps/g-v HTTP/1.1\r\nHost: iris\r\nContent-Length: %d\r\n\r\n", bodySize)
		Expect(err).NotTo(HaveOccurred())

		// One byte every 50 ms: the whole body would take 10 s, twenty
		// read timeouts. The drip stops at the first failed write or when
		// the spec ends.
		stop := make(chan struct{})
		DeferCleanup(func() { close(stop) })
		go func() {
			ticker := time.NewTicker(50 * time.Millisecond)
			defer ticker.Stop()
			for range bodySize {
				select {
				case <-stop:
					return
				case <-ticker.C:
				}
				if _, err := conn.Write([]byte("x")); err != nil {
					return
				}
			}
		}()

		start := time.Now()
		// The handler sees its body read fail with a timeout...
		var bodyErr error
		Eventually(bodyErrs, 3*time.Second).Should(Receive(&bodyErr))
		Expect(bodyErr).To(MatchError(ContainSubstring("timeout")))
		// ...and the connection is closed long before the body could end.
		Expect(conn.SetReadDeadline(time.Now().Add(3 * time.Second))).To(Succeed())
		_, err = io.Copy(io.Discard, conn)
		// Closed (EOF), or reset because the drip's last bytes were unread;
		// never our own read deadline.
		if err != nil {
			Expect(errors.Is(err, syscall.ECONNRESET)).To(BeTrue(), "the server must close the connection, not leave it open: %v", err)
		}
		Expect(time.Since(start)).To(BeNumerically("<", 4*time.Second))
	})

	It("serves a body sent in time", func() {
		resp, err := http.Post("http://"+address+"/apps/g-v", "application/json", bufio.NewReader(io.LimitReader(neverEnding('x'), 1000)))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Expect(<-bodyErrs).NotTo(HaveOccurred())
	})

	It("closes a keep-alive connection idle longer than the idle timeout", func() {
		conn, err := net.Dial("tcp", address)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		_, err = fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: iris\r\n\r\n")
		Expect(err).NotTo(HaveOccurred())
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Expect(resp.Close).To(BeFalse(), "the connection stays open for the next request")
		start := time.Now()

		Expect(conn.SetReadDeadline(time.Now().Add(3 * time.Second))).To(Succeed())
		_, err = conn.Read(make([]byte, 1))
		Expect(err).To(MatchError(io.EOF), "the server closes the idle connection before the client's deadline")
		Expect(time.Since(start)).To(BeNumerically(">=", idleTimeout/2))
	})
})

// neverEnding is an endless stream of one byte.
type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

var _ = Describe("A mutual TLS server that accepts staging pods", func() {
	var (
		address          string
		serverCA, client *testcerts.CA
	)

	BeforeEach(func() {
		var err error
		serverCA, err = testcerts.NewCA("server-ca")
		Expect(err).NotTo(HaveOccurred())
		client, err = testcerts.NewCA("client-ca")
		Expect(err).NotTo(HaveOccurred())
		leaf, err := serverCA.Issue("127.0.0.1")
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()
		certFile, keyFile, err := leaf.WriteFiles(dir, "server")
		Expect(err).NotTo(HaveOccurred())
		clientCAFile := filepath.Join(dir, "client-ca.crt")
		Expect(os.WriteFile(clientCAFile, client.PEM, 0o600)).To(Succeed())

		answer := func(who string) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, who) })
		}
		server, err := bifrost.NewMutualTLSServer(lagertest.NewTestLogger("test"), "127.0.0.1:0", answer("handler"),
			bifrost.Timeouts{Read: time.Second, Idle: time.Second, Shutdown: time.Second}, certFile, keyFile, clientCAFile)
		Expect(err).NotTo(HaveOccurred())
		server.AcceptWithoutClientCertificate(answer("anonymous"))
		process := ifrit.Invoke(server)
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive(BeNil()))
		})
		address = server.Address()
	})

	get := func(cert *testcerts.Leaf) (string, error) {
		cfg := &tls.Config{RootCAs: serverCA.Pool(), MinVersion: tls.VersionTLS12}
		if cert != nil {
			pair, err := cert.TLSCertificate()
			Expect(err).NotTo(HaveOccurred())
			// Presented whatever CAs the server asks for.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get("https://" + address + "/apps")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}

	It("serves clients with a valid certificate with its handler, and clients without one only with the anonymous handler", func() {
		leaf, err := client.Issue("cloud-controller")
		Expect(err).NotTo(HaveOccurred())
		Expect(get(leaf)).To(Equal("handler"))
		Expect(get(nil)).To(Equal("anonymous"))
	})

	It("still refuses a certificate it cannot verify", func() {
		stranger, err := testcerts.NewCA("stranger")
		Expect(err).NotTo(HaveOccurred())
		leaf, err := stranger.Issue("cloud-controller")
		Expect(err).NotTo(HaveOccurred())
		_, err = get(leaf)
		Expect(err).To(HaveOccurred())
	})
})
