package docker_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/stager/docker"
)

const (
	user     = "bob"
	password = "hunter2"
)

var pusher = &authn.Basic{Username: user, Password: password}

// withBasicAuth guards repositories under /v2/private/ with basic auth the way
// a private registry does; everything else is anonymous.
func withBasicAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2/private/") {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="test-registry"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func newRegistryHandler() http.Handler {
	return withBasicAuth(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
}

func hostOf(server *httptest.Server) string {
	return strings.TrimPrefix(strings.TrimPrefix(server.URL, "http://"), "https://")
}

func appImage(cfg v1.Config) v1.Image {
	img, err := random.Image(256, 1)
	Expect(err).NotTo(HaveOccurred())
	img, err = mutate.Config(img, cfg)
	Expect(err).NotTo(HaveOccurred())
	return img
}

func push(ref string, img v1.Image, opts ...remote.Option) {
	r, err := name.ParseReference(ref, name.Insecure)
	Expect(err).NotTo(HaveOccurred())
	Expect(remote.Write(r, img, append([]remote.Option{remote.WithAuth(pusher)}, opts...)...)).To(Succeed())
}

func pushIndex(ref string, idx v1.ImageIndex) {
	r, err := name.ParseReference(ref, name.Insecure)
	Expect(err).NotTo(HaveOccurred())
	Expect(remote.WriteIndex(r, idx, remote.WithAuth(pusher))).To(Succeed())
}

// closedAddress is a loopback address nobody listens on.
func closedAddress() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	addr := l.Addr().String()
	Expect(l.Close()).To(Succeed())
	return addr
}

func stageError(err error) *docker.Error {
	var stageErr *docker.Error
	ExpectWithOffset(1, errors.As(err, &stageErr)).To(BeTrue(), "expected *docker.Error, got %T: %v", err, err)
	return stageErr
}

var appConfig = v1.Config{
	Entrypoint:   []string{"/bin/app"},
	Cmd:          []string{"--listen", ":8080"},
	User:         "vcap",
	WorkingDir:   "/home/vcap/app",
	ExposedPorts: map[string]struct{}{"9000/tcp": {}, "8080/tcp": {}},
	Env:          []string{"PATH=/bin"},
}

var _ = Describe("Stager", func() {
	var (
		server *httptest.Server
		host   string
		stager *docker.Stager
		ctx    context.Context
	)

	BeforeEach(func() {
		ctx = context.Background()
		server = httptest.NewServer(newRegistryHandler())
		DeferCleanup(server.Close)
		host = hostOf(server)
		stager = docker.NewStager(docker.Options{
			Timeout:            5 * time.Second,
			InsecureRegistries: []string{host},
		})
		push(host+"/team/app:v1", appImage(appConfig))
		push(host+"/private/app:v1", appImage(appConfig))
	})

	Describe("a public image", func() {
		It("returns CC's docker staging result with Diego's execution metadata", func() {
			image := host + "/team/app:v1"
			result, err := stager.Stage(ctx, image, "", "")
			Expect(err).NotTo(HaveOccurred())

			body, err := json.Marshal(result)
			Expect(err).NotTo(HaveOccurred())
			Expect(body).To(MatchJSON(`{
				"lifecycle_type": "docker",
				"lifecycle_metadata": {"docker_image": "` + image + `"},
				"process_types": {"web": "/bin/app --listen :8080"},
				"execution_metadata": ` + string(mustJSON(result.ExecutionMetadata)) + `
			}`))

			Expect(result.ExecutionMetadata).To(MatchJSON(`{
				"cmd": ["--listen", ":8080"],
				"entrypoint": ["/bin/app"],
				"workdir": "/home/vcap/app",
				"user": "vcap",
				"ports": [{"Port": 8080, "Protocol": "tcp"}, {"Port": 9000, "Protocol": "tcp"}]
			}`))
		})

		It("accepts a digest reference", func() {
			img := appImage(appConfig)
			push(host+"/team/app:pinned", img)
			digest, err := img.Digest()
			Expect(err).NotTo(HaveOccurred())

			result, err := stager.Stage(ctx, host+"/team/app@"+digest.String(), "", "")
			Expect(err).NotTo(HaveOccurred())
			Expect(result.ExecutionMetadata).To(ContainSubstring(`"user":"vcap"`))
		})

		It("omits ports and every empty field when the image exposes nothing", func() {
			push(host+"/team/bare:latest", appImage(v1.Config{Cmd: []string{"/serve"}}))

			result, err := stager.Stage(ctx, host+"/team/bare", "", "")
			Expect(err).NotTo(HaveOccurred())
			// CC then opens 8080 for the web process (ProcessModel::DEFAULT_HTTP_PORT).
			Expect(result.ExecutionMetadata).To(MatchJSON(`{"cmd": ["/serve"]}`))
			Expect(result.ProcessTypes).To(Equal(map[string]string{"web": "/serve"}))
		})

		It("sorts ports by number, tcp first, and defaults a bare port to tcp", func() {
			push(host+"/team/ports:v1", appImage(v1.Config{
				Cmd:          []string{"/serve"},
				ExposedPorts: map[string]struct{}{"8081/udp": {}, "8081/tcp": {}, "8079": {}, "8078/udp": {}},
			}))

			result, err := stager.Stage(ctx, host+"/team/ports:v1", "", "")
			Expect(err).NotTo(HaveOccurred())
			var meta docker.ExecutionMetadata
			Expect(json.Unmarshal([]byte(result.ExecutionMetadata), &meta)).To(Succeed())
			Expect(meta.ExposedPorts).To(Equal([]docker.Port{
				{Port: 8078, Protocol: "udp"},
				{Port: 8079, Protocol: "tcp"},
				{Port: 8081, Protocol: "tcp"},
				{Port: 8081, Protocol: "udp"},
			}))
		})
	})

	Describe("a multi-arch image", func() {
		It("uses the linux/amd64 config", func() {
			arm := appImage(v1.Config{Cmd: []string{"/arm"}})
			amd := appImage(v1.Config{Cmd: []string{"/amd"}, ExposedPorts: map[string]struct{}{"7000/tcp": {}}})
			// arm64 first, so taking the first manifest would be wrong.
			idx := mutate.AppendManifests(empty.Index,
				mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
				mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
			)
			pushIndex(host+"/team/multi:v1", idx)

			result, err := stager.Stage(ctx, host+"/team/multi:v1", "", "")
			Expect(err).NotTo(HaveOccurred())
			Expect(result.ExecutionMetadata).To(MatchJSON(`{"cmd": ["/amd"], "ports": [{"Port": 7000, "Protocol": "tcp"}]}`))
		})
	})

	Describe("a private image", func() {
		var image string
		BeforeEach(func() { image = host + "/private/app:v1" })

		It("is read with the right credentials", func() {
			result, err := stager.Stage(ctx, image, user, password)
			Expect(err).NotTo(HaveOccurred())
			Expect(result.LifecycleMetadata.DockerImage).To(Equal(image))
			Expect(result.ExecutionMetadata).To(ContainSubstring(`"user":"vcap"`))
		})

		DescribeTable("fails as unauthorized",
			func(username, pass string) {
				_, err := stager.Stage(ctx, image, username, pass)
				Expect(err).To(HaveOccurred())
				Expect(stageError(err).Reason).To(Equal(docker.ReasonUnauthorized))

				failure := docker.FailureFor(err)
				Expect(failure.ID).To(Equal("StagingError"))
				Expect(failure.Message).To(HavePrefix("unauthorized to read docker image " + image + ": check registry_username/registry_password"))
				Expect(failure.Message).NotTo(ContainSubstring(password))
			},
			Entry("with a wrong password", user, "wrong"),
			Entry("without credentials", "", ""),
		)
	})

	Describe("failures", func() {
		It("reports a missing tag as not found, in CC's failure shape", func() {
			image := host + "/team/app:nope"
			_, stageErr := stager.Stage(ctx, image, "", "")
			Expect(stageError(stageErr).Reason).To(Equal(docker.ReasonNotFound))
			Expect(stageErr.Error()).To(HavePrefix("docker image not found: " + image + ": "))
			Expect(stageErr.Error()).To(ContainSubstring("MANIFEST_UNKNOWN"))

			body := mustJSON(map[string]docker.Failure{"error": docker.FailureFor(stageErr)})
			Expect(body).To(MatchJSON(`{"error": {"id": "StagingError", "message": ` + string(mustJSON(stageErr.Error())) + `}}`))
		})

		It("reports a missing repository as not found", func() {
			_, err := stager.Stage(ctx, host+"/team/nothing-here:v1", "", "")
			Expect(stageError(err).Reason).To(Equal(docker.ReasonNotFound))
			Expect(err.Error()).To(HavePrefix("docker image not found: "))
		})

		It("reports a registry nobody listens on as unreachable, quickly", func() {
			addr := closedAddress()
			stager = docker.NewStager(docker.Options{Timeout: 2 * time.Second, InsecureRegistries: []string{addr}})

			start := time.Now()
			_, err := stager.Stage(ctx, addr+"/team/app:v1", "", "")
			Expect(time.Since(start)).To(BeNumerically("<", 2*time.Second))
			Expect(stageError(err).Reason).To(Equal(docker.ReasonUnreachable))
			Expect(err.Error()).To(HavePrefix("docker registry unreachable: " + addr + ": "))
			Expect(err.Error()).To(ContainSubstring("connection refused"))
		})

		It("gives up on a registry that does not answer within the timeout", func() {
			hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			}))
			DeferCleanup(hung.Close)
			addr := hostOf(hung)
			stager = docker.NewStager(docker.Options{Timeout: 300 * time.Millisecond, InsecureRegistries: []string{addr}})

			start := time.Now()
			_, err := stager.Stage(ctx, addr+"/team/app:v1", "", "")
			Expect(time.Since(start)).To(BeNumerically("<", 2*time.Second))
			Expect(stageError(err).Reason).To(Equal(docker.ReasonUnreachable))
			Expect(err.Error()).To(ContainSubstring("no answer within 300ms"))
		})

		It("refuses plain HTTP to a registry that is not listed as insecure", func() {
			stager = docker.NewStager(docker.Options{Timeout: 2 * time.Second})

			_, err := stager.Stage(ctx, host+"/team/app:v1", "", "")
			Expect(stageError(err).Reason).To(Equal(docker.ReasonUnreachable))
			Expect(err.Error()).To(ContainSubstring("refusing plain HTTP to " + host))
		})

		It("reports an invalid reference without contacting anyone", func() {
			_, err := stager.Stage(ctx, "UPPER/Case::bad", "", "")
			Expect(stageError(err).Reason).To(Equal(docker.ReasonInvalidReference))
			failure := docker.FailureFor(err)
			Expect(failure.ID).To(Equal("StagingError"))
			Expect(failure.Message).To(HavePrefix(`invalid docker image reference "UPPER/Case::bad": `))
		})
	})

	Describe("an HTTPS registry", func() {
		It("is verified with the injected transport and needs no insecure listing", func() {
			tlsServer := httptest.NewTLSServer(newRegistryHandler())
			DeferCleanup(tlsServer.Close)
			tlsHost := hostOf(tlsServer)
			push(tlsHost+"/team/app:v1", appImage(appConfig), remote.WithTransport(tlsServer.Client().Transport))

			stager = docker.NewStager(docker.Options{Transport: tlsServer.Client().Transport})
			result, err := stager.Stage(ctx, tlsHost+"/team/app:v1", "", "")
			Expect(err).NotTo(HaveOccurred())
			Expect(result.ExecutionMetadata).To(ContainSubstring(`"workdir":"/home/vcap/app"`))
		})
	})
})

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	Expect(err).NotTo(HaveOccurred())
	return b
}
