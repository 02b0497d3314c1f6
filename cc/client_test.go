package cc_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/cc"
	"github.com/iris-cf/iris/integration/testcerts"
)

// received is one request as the fake CC saw it.
type received struct {
	Method, Path, ContentType, User, Password string
	Body                                      map[string]any
	ClientCN                                  string
}

// fakeCC is CC's internal API over mutual TLS, as CC's nginx serves it
// (ssl_verify_client on): it answers with status and records requests.
type fakeCC struct {
	server *httptest.Server

	// released ends every delay: closed when the test ends, so no answer
	// comes late (not even when a client gives up and hangs up).
	released chan struct{}

	mu       sync.Mutex
	status   int
	delay    time.Duration
	requests []received
}

func (f *fakeCC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	data, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(data, &body)
	user, password, _ := r.BasicAuth()
	req := received{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), User: user, Password: password, Body: body}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		req.ClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	status, delay := f.status, f.delay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-f.released:
			return
		}
	}
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"description":"answered %d"}`, status)
}

func (f *fakeCC) answer(status int, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.delay = status, delay
}

func (f *fakeCC) received() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]received(nil), f.requests...)
}

func issue(ca *testcerts.CA, cn, dir string) (certFile, keyFile string, leaf *testcerts.Leaf) {
	GinkgoHelper()
	leaf, err := ca.Issue(cn)
	Expect(err).NotTo(HaveOccurred())
	certFile, keyFile, err = leaf.WriteFiles(dir, cn)
	Expect(err).NotTo(HaveOccurred())
	return certFile, keyFile, leaf
}

func newCA(cn string) *testcerts.CA {
	GinkgoHelper()
	ca, err := testcerts.NewCA(cn)
	Expect(err).NotTo(HaveOccurred())
	return ca
}

func writeCA(ca *testcerts.CA, dir, name string) string {
	GinkgoHelper()
	file := filepath.Join(dir, name+".crt")
	Expect(os.WriteFile(file, ca.PEM, 0o600)).To(Succeed())
	return file
}

var _ = Describe("Client", func() {
	var (
		dir            string
		fake           *fakeCC
		ccCA, irisCA   *testcerts.CA
		caFile         string
		certFile, keyF string
		opts           cc.Options
	)

	// startCC serves CC's internal API with a certificate from serverCA,
	// accepting clients with a certificate from irisCA only.
	startCC := func(serverCA *testcerts.CA) {
		GinkgoHelper()
		_, _, leaf := issue(serverCA, "cloud-controller-ng.service.cf.internal", dir)
		cert, err := leaf.TLSCertificate()
		Expect(err).NotTo(HaveOccurred())
		fake.server = httptest.NewUnstartedServer(fake)
		fake.server.TLS = &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    irisCA.Pool(),
			MinVersion:   tls.VersionTLS12,
		}
		fake.server.StartTLS()
		DeferCleanup(fake.server.Close)
		DeferCleanup(func() { close(fake.released) }) // runs first
		opts.InternalAPIURL = fake.server.URL
	}

	newClient := func() *cc.Client {
		GinkgoHelper()
		client, err := cc.NewClient(opts)
		Expect(err).NotTo(HaveOccurred())
		return client
	}

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		fake = &fakeCC{status: http.StatusOK, released: make(chan struct{})}
		ccCA, irisCA = newCA("cc-ca"), newCA("iris-ca")
		caFile = writeCA(ccCA, dir, "cc-ca")
		certFile, keyF, _ = issue(irisCA, "iris", dir)
		opts = cc.Options{CACertFile: caFile, CertFile: certFile, KeyFile: keyF, Timeout: 5 * time.Second}
	})

	Describe("over mutual TLS", func() {
		It("posts JSON with Iris's client certificate to a CC it verifies", func() {
			startCC(ccCA)
			err := newClient().Post(context.Background(), "/internal/v4/apps/pg/crashed", map[string]any{"index": 1})
			Expect(err).NotTo(HaveOccurred())
			Expect(fake.received()).To(ConsistOf(And(
				HaveField("Method", http.MethodPost),
				HaveField("Path", "/internal/v4/apps/pg/crashed"),
				HaveField("ContentType", "application/json"),
				HaveField("Body", HaveKeyWithValue("index", BeNumerically("==", 1))),
				HaveField("ClientCN", "iris"),
			)))
		})

		It("refuses a CC whose certificate another CA signed, and retries it", func() {
			startCC(newCA("impostor-ca"))
			err := newClient().Post(context.Background(), "/internal/v4/apps/pg/crashed", map[string]any{})
			Expect(err).To(MatchError(ContainSubstring("certificate")))
			Expect(cc.IsFinal(err)).To(BeFalse(), "a certificate can be fixed or rotated")
			Expect(fake.received()).To(BeEmpty())
		})

		It("is refused by CC without a client certificate", func() {
			startCC(ccCA)
			opts.CertFile, opts.KeyFile = "", ""
			err := newClient().Post(context.Background(), "/internal/v4/apps/pg/crashed", map[string]any{})
			Expect(err).To(HaveOccurred())
			Expect(cc.IsFinal(err)).To(BeFalse())
			Expect(fake.received()).To(BeEmpty())
		})

		It("is refused by CC with a client certificate from another CA", func() {
			startCC(ccCA)
			opts.CertFile, opts.KeyFile, _ = issue(newCA("stranger-ca"), "mallory", dir)
			err := newClient().Post(context.Background(), "/internal/v4/apps/pg/crashed", map[string]any{})
			Expect(err).To(HaveOccurred())
			Expect(fake.received()).To(BeEmpty())
		})

		It("presents a rotated client certificate without a restart", func() {
			startCC(ccCA)
			client := newClient()
			Expect(client.Post(context.Background(), "/first", map[string]any{})).To(Succeed())

			rotated, err := irisCA.Issue("iris-rotated")
			Expect(err).NotTo(HaveOccurred())
			// As the kubelet updates a mounted Secret: both files change.
			Expect(os.WriteFile(certFile, rotated.CertPEM, 0o600)).To(Succeed())
			Expect(os.WriteFile(keyF, rotated.KeyPEM, 0o600)).To(Succeed())
			// The certificate is presented at a handshake: CC drops the kept-alive
			// connection (a post racing that is retried).
			fake.server.CloseClientConnections()
			Eventually(func(g Gomega) string {
				g.Expect(client.Post(context.Background(), "/second", map[string]any{})).To(Succeed())
				requests := fake.received()
				return requests[len(requests)-1].ClientCN
			}, 5*time.Second).Should(Equal("iris-rotated"))
		})

		It("fails to build with unreadable certificate files", func() {
			opts.CertFile = filepath.Join(dir, "missing.crt")
			_, err := cc.NewClient(opts)
			Expect(err).To(MatchError(ContainSubstring("CC client certificate")))

			opts.CertFile, opts.CACertFile = certFile, filepath.Join(dir, "missing-ca.crt")
			_, err = cc.NewClient(opts)
			Expect(err).To(MatchError(ContainSubstring("CC CA")))
		})
	})

	Describe("answers and their finality", func() {
		BeforeEach(func() { startCC(ccCA) })

		DescribeTable("classifies CC's status",
			func(status int, final bool) {
				fake.answer(status, 0)
				err := newClient().Post(context.Background(), "/internal/v4/tasks/t/completed", map[string]any{"task_guid": "t"})
				if status >= 200 && status < 300 {
					Expect(err).NotTo(HaveOccurred())
					return
				}
				var statusErr *cc.StatusError
				Expect(errors.As(err, &statusErr)).To(BeTrue(), "%v", err)
				Expect(statusErr.StatusCode).To(Equal(status))
				Expect(statusErr.Body).To(ContainSubstring(fmt.Sprintf("answered %d", status)))
				Expect(cc.IsFinal(err)).To(Equal(final))
			},
			Entry("200 taken", http.StatusOK, false),
			Entry("204 taken", http.StatusNoContent, false),
			Entry("400 final: CC will never take it", http.StatusBadRequest, true),
			Entry("404 ProcessNotFound final", http.StatusNotFound, true),
			Entry("422 final", http.StatusUnprocessableEntity, true),
			Entry("408 retried: come back later", http.StatusRequestTimeout, false),
			Entry("429 retried: come back later", http.StatusTooManyRequests, false),
			Entry("500 retried", http.StatusInternalServerError, false),
			Entry("502 retried", http.StatusBadGateway, false),
			Entry("503 retried", http.StatusServiceUnavailable, false),
			Entry("301 retried: not taken, and not a statement about the request", http.StatusMovedPermanently, false),
		)

		It("classifies errors that are not CC's answers", func() {
			Expect(cc.IsFinal(nil)).To(BeFalse())
			Expect(cc.IsFinal(errors.New("connection refused"))).To(BeFalse())
			Expect(cc.IsFinal(fmt.Errorf("reporting: %w", &cc.StatusError{StatusCode: 404}))).To(BeTrue(), "wrapped")
			Expect(cc.IsFinal(fmt.Errorf("reporting: %w", &cc.StatusError{StatusCode: 503}))).To(BeFalse())
		})

		It("takes a body that cannot be encoded as final, and sends nothing", func() {
			err := newClient().Post(context.Background(), "/x", map[string]any{"f": func() {}})
			Expect(err).To(MatchError(cc.ErrUnsendable))
			Expect(cc.IsFinal(err)).To(BeTrue())
			Expect(fake.received()).To(BeEmpty())
		})

		It("retries when CC cannot be reached", func() {
			fake.server.Close()
			err := newClient().Post(context.Background(), "/x", map[string]any{})
			Expect(err).To(HaveOccurred())
			Expect(cc.IsFinal(err)).To(BeFalse())
		})
	})

	Describe("timeouts", func() {
		BeforeEach(func() { startCC(ccCA) })

		It("gives up on a CC that does not answer within the timeout, as retryable", func() {
			fake.answer(http.StatusOK, time.Minute)
			opts.Timeout = 200 * time.Millisecond
			started := time.Now()
			err := newClient().Post(context.Background(), "/slow", map[string]any{})
			Expect(err).To(MatchError(ContainSubstring("Client.Timeout")))
			Expect(time.Since(started)).To(BeNumerically("<", 10*time.Second))
			Expect(cc.IsFinal(err)).To(BeFalse())
		})

		It("stops waiting when the caller's context ends, as retryable", func() {
			fake.answer(http.StatusOK, time.Minute)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			err := newClient().Post(ctx, "/slow", map[string]any{})
			Expect(err).To(MatchError(context.DeadlineExceeded))
			Expect(cc.IsFinal(err)).To(BeFalse())
		})

		It("waits 30 seconds by default", func() {
			// Not waited out here: a CC slower than a second still answers.
			fake.answer(http.StatusOK, 1500*time.Millisecond)
			opts.Timeout = 0
			Expect(newClient().Post(context.Background(), "/slow", map[string]any{})).To(Succeed())
		})
	})

	Describe("callback URLs", func() {
		BeforeEach(func() { startCC(ccCA) })

		It("posts to the absolute URL CC gave, with its credentials as basic auth", func() {
			callback := strings.Replace(fake.server.URL, "https://", "https://internal_user:s3cret-pw@", 1) +
				"/internal/v3/staging/sg/build_completed?start=true"
			Expect(newClient().PostURL(context.Background(), callback, map[string]any{"result": "{}"})).To(Succeed())
			Expect(fake.received()).To(ConsistOf(And(
				HaveField("Path", "/internal/v3/staging/sg/build_completed"),
				HaveField("User", "internal_user"),
				HaveField("Password", "s3cret-pw"),
			)))
		})

		It("never puts the URL's password in an error, which is logged", func() {
			withPassword := func(base string) string {
				return strings.Replace(base, "https://", "https://internal_user:s3cret-pw@", 1) + "/internal/v3/staging/sg/build_completed"
			}
			fake.answer(http.StatusInternalServerError, 0)
			err := newClient().PostURL(context.Background(), withPassword(fake.server.URL), map[string]any{})
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring("internal_user"))
			Expect(err.Error()).NotTo(ContainSubstring("s3cret-pw"))

			fake.answer(http.StatusOK, time.Minute)
			opts.Timeout = 100 * time.Millisecond
			err = newClient().PostURL(context.Background(), withPassword(fake.server.URL), map[string]any{})
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).NotTo(ContainSubstring("s3cret-pw"))

			// A CC that is gone (not the fake: closing it would wait out the
			// answer it still holds back).
			gone := httptest.NewServer(http.NotFoundHandler())
			gone.Close()
			err = newClient().PostURL(context.Background(), withPassword(gone.URL), map[string]any{})
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).NotTo(ContainSubstring("s3cret-pw"))

			err = newClient().PostURL(context.Background(), "https://internal_user:s3cret-pw@cc:port/x", map[string]any{})
			Expect(err).To(MatchError(cc.ErrUnsendable))
			Expect(cc.IsFinal(err)).To(BeTrue(), "a URL that does not parse never will")
			Expect(err.Error()).NotTo(ContainSubstring("s3cret-pw"))
		})
	})
})
