package actions_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"code.cloudfoundry.org/bbs/models"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/iris-cf/iris/actions"
)

// The upload sidecar as a pod runs it: `iris actions upload-proxy` holds
// the client identity and the recipe; the runner, without any identity,
// uploads through its socket.

type uploadProxy struct {
	session *gexec.Session
	socket  string
}

// startUploadProxy runs the proxy for recipe with the given --tls-* args
// and waits until its socket accepts uploads.
func startUploadProxy(recipe *actions.Recipe, tlsArgs ...string) *uploadProxy {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	data, err := json.Marshal(recipe)
	Expect(err).NotTo(HaveOccurred())
	recipePath := filepath.Join(dir, "recipe.json")
	Expect(os.WriteFile(recipePath, data, 0o600)).To(Succeed())
	socket := filepath.Join(dir, "upload.sock")
	cmd := exec.Command(irisPath, append([]string{"actions", "upload-proxy", "--listen", socket, "--recipe", recipePath}, tlsArgs...)...)
	session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { session.Kill().Wait() })
	Eventually(func(g Gomega) {
		g.Expect(session.ExitCode()).To(Equal(-1), "the proxy exited")
		g.Expect(socket).To(BeAnExistingFile())
	}).WithTimeout(processTimeout).Should(Succeed())
	return &uploadProxy{session: session, socket: socket}
}

var _ = Describe("iris actions upload-proxy (the upload sidecar, as a process)", func() {
	var (
		ca              *testCA
		secure          *blobServer
		caFile          string
		identityArgs    []string
		payload, target string
		upload          *actions.Recipe
	)

	BeforeEach(func() {
		ca = newTestCA()
		// The destination requires a client certificate issued by ca.
		secure = startMTLSBlobServer(ca)
		var certFile, keyFile string
		caFile, certFile, keyFile = ca.writeClientFiles(GinkgoT().TempDir())
		identityArgs = []string{"--tls-ca-file", caFile, "--tls-cert-file", certFile, "--tls-key-file", keyFile}
		payload = filepath.Join(GinkgoT().TempDir(), "droplet.tgz")
		Expect(os.WriteFile(payload, []byte("droplet-bytes"), 0o600)).To(Succeed())
		target = secure.URL + "/v1/droplet/abc?cc-droplet-upload-uri=http%3A%2F%2Fcc%2Fdroplet&timeout=300"
		upload = recipeOf(&models.UploadAction{Artifact: "droplet", From: payload, To: target, User: "vcap"})
	})

	It("relays the runner's upload with the client identity the runner does not have", func() {
		proxy := startUploadProxy(upload, identityArgs...)

		// Without the proxy, the runner (which trusts the server but has
		// no certificate) fails the handshake.
		direct := startRunner(upload, "--tls-ca-file", caFile)
		Expect(direct.waitExit()).To(Equal(1))
		Expect(direct.stderr()).To(ContainElement("CELL| Failed to upload payload for droplet"))
		Expect(direct.session.Err).To(gbytes.Say("certificate"))
		Expect(secure.received("/v1/droplet/abc")).To(BeEmpty())

		r := startRunner(upload, "--upload-proxy", proxy.socket)
		Expect(r.waitExit()).To(Equal(0))
		requests := secure.received("/v1/droplet/abc")
		Expect(requests).To(HaveLen(1))
		Expect(requests[0].Method).To(Equal(http.MethodPost))
		Expect(requests[0].Body).To(Equal([]byte("droplet-bytes")))
		Expect(requests[0].Header.Get("Content-MD5")).NotTo(BeEmpty())
		Expect(requests[0].Header.Get("Content-Digest")).To(HavePrefix("sha-256=:"))
		Expect(requests[0].Header.Get("Content-Type")).To(Equal("application/octet-stream"))
		Expect(requests[0].Header.Get(actions.UploadProxyDestinationHeader)).To(BeEmpty(), "the proxy's own header stays between runner and proxy")
		Expect(r.stdout()).To(ContainElements("CELL| Uploading droplet...", "CELL| Uploaded droplet (13B)"))

		// The proxy's log names the destination's host, never its query.
		Expect(string(proxy.session.Err.Contents())).To(ContainSubstring("relayed"))
		Expect(string(proxy.session.Err.Contents())).NotTo(ContainSubstring("cc-droplet-upload-uri"))
	})

	It("refuses a destination that is not an upload of the recipe, with 403 and a message", func() {
		proxy := startUploadProxy(upload, identityArgs...)

		// The runner of another recipe (tenant code that found the socket
		// could run one) gets Diego's failure and nothing is sent.
		other := recipeOf(&models.UploadAction{Artifact: "droplet", From: payload, To: secure.URL + "/v1/droplet/other", User: "vcap"})
		r := startRunner(other, "--upload-proxy", proxy.socket)
		Expect(r.waitExit()).To(Equal(1))
		Expect(r.result().FailureReason).To(Equal("Upload failed: Status code 403"))
		Expect(r.session.Err).To(gbytes.Say("not an upload of this pod's recipe"))
		Expect(secure.received("/v1/droplet/other")).To(BeEmpty())

		// A request of its own: the same query with another value is another URL.
		client := actions.UploadProxyClient(proxy.socket)
		for _, destination := range []string{secure.URL + "/v1/droplet/abc?cc-droplet-upload-uri=http%3A%2F%2Fevil&timeout=300", "", "not a url"} {
			req, err := http.NewRequest(http.MethodPost, "http://proxy"+actions.UploadProxyPath, bytes.NewReader([]byte("x")))
			Expect(err).NotTo(HaveOccurred())
			req.Header.Set(actions.UploadProxyDestinationHeader, destination)
			resp, err := client.Do(req)
			Expect(err).NotTo(HaveOccurred())
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if destination == "" || destination == "not a url" {
				Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
			} else {
				Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
				Expect(string(body)).To(ContainSubstring("not an upload of this pod's recipe"))
			}
			Expect(resp.Header.Get(actions.UploadProxyErrorHeader)).NotTo(BeEmpty())
		}
		Expect(secure.received("/v1/droplet/abc")).To(BeEmpty())
	})

	It("leaves the retries to the runner: a destination failing once gets the payload again", func() {
		proxy := startUploadProxy(upload, identityArgs...)
		secure.failNext("/v1/droplet/abc", http.StatusInternalServerError)
		r := startRunner(upload, "--upload-proxy", proxy.socket)
		Expect(r.waitExit()).To(Equal(0))
		requests := secure.received("/v1/droplet/abc")
		Expect(requests).To(HaveLen(2))
		for _, req := range requests {
			Expect(req.Body).To(Equal([]byte("droplet-bytes")))
		}
	})

	It("fails the upload with Diego's text after three attempts the destination refused", func() {
		proxy := startUploadProxy(upload, identityArgs...)
		secure.failNext("/v1/droplet/abc", 500, 500, 500)
		r := startRunner(upload, "--upload-proxy", proxy.socket)
		Expect(r.waitExit()).To(Equal(1))
		Expect(secure.received("/v1/droplet/abc")).To(HaveLen(3))
		Expect(r.result().FailureReason).To(Equal("Upload failed: Status code 500"))
	})

	It("uploads a directory (as tgz) through the proxy", func() {
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "f"), []byte("cached"), 0o644)).To(Succeed())
		cache := recipeOf(&models.UploadAction{Artifact: "build artifacts cache", From: dir, To: secure.URL + "/v1/build_artifacts/abc", User: "vcap"})
		proxy := startUploadProxy(cache, identityArgs...)
		r := startRunner(cache, "--upload-proxy", proxy.socket)
		Expect(r.waitExit()).To(Equal(0))
		requests := secure.received("/v1/build_artifacts/abc")
		Expect(requests).To(HaveLen(1))
		Expect(requests[0].Body[:2]).To(Equal([]byte{0x1f, 0x8b}), "gzip")
	})

	It("stops on SIGTERM with exit 0 and removes its socket", func() {
		proxy := startUploadProxy(upload, identityArgs...)
		proxy.session.Signal(syscall.SIGTERM)
		Eventually(proxy.session).WithTimeout(processTimeout).Should(gexec.Exit(0))
		Expect(proxy.socket).NotTo(BeAnExistingFile())
	})

	It("lets an upload in flight finish when it is stopped (SIGTERM), then exits 0", func() {
		arrived, release := make(chan struct{}), make(chan struct{})
		slow := newBlobServer()
		slow.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			close(arrived)
			<-release
			slow.mu.Lock()
			slow.requests = append(slow.requests, recordedRequest{Method: r.Method, Path: r.URL.Path, Body: body})
			slow.mu.Unlock()
			w.WriteHeader(http.StatusCreated)
		})
		slow.TLS = secure.TLS
		slow.StartTLS()
		DeferCleanup(slow.Close)
		// Released on any way out, so the server can close.
		released := false
		DeferCleanup(func() {
			if !released {
				close(release)
			}
		})

		recipe := recipeOf(&models.UploadAction{Artifact: "droplet", From: payload, To: slow.URL + "/v1/droplet/abc", User: "vcap"})
		proxy := startUploadProxy(recipe, identityArgs...)
		r := startRunner(recipe, "--upload-proxy", proxy.socket)
		Eventually(arrived).WithTimeout(processTimeout).Should(BeClosed())

		proxy.session.Signal(syscall.SIGTERM)
		Eventually(proxy.session.Err).WithTimeout(processTimeout).Should(gbytes.Say("stopping"))
		Consistently(proxy.session).WithTimeout(300*time.Millisecond).ShouldNot(gexec.Exit(), "it waits for the upload in flight")
		close(release)
		released = true

		Expect(r.waitExit()).To(Equal(0))
		Expect(slow.received("/v1/droplet/abc")).To(HaveLen(1), "one attempt, answered")
		Eventually(proxy.session).WithTimeout(processTimeout).Should(gexec.Exit(0))
	})

	It("refuses to start without a client identity or a recipe", func() {
		recipePath := filepath.Join(GinkgoT().TempDir(), "recipe.json")
		data, err := json.Marshal(upload)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(recipePath, data, 0o600)).To(Succeed())
		socket := filepath.Join(GinkgoT().TempDir(), "s.sock")
		for _, args := range [][]string{
			{"--listen", socket, "--recipe", recipePath, "--tls-ca-file", caFile},
			{"--listen", socket, "--tls-cert-file", identityArgs[3], "--tls-key-file", identityArgs[5]},
		} {
			session, err := gexec.Start(exec.Command(irisPath, append([]string{"actions", "upload-proxy"}, args...)...), GinkgoWriter, GinkgoWriter)
			Expect(err).NotTo(HaveOccurred())
			Eventually(session).WithTimeout(processTimeout).Should(gexec.Exit(2))
		}
		Expect(socket).NotTo(BeAnExistingFile())
	})
})
