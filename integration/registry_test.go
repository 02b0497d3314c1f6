package integration_test

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	. "github.com/onsi/gomega"
)

// ociRegistry is a real OCI distribution registry on loopback; repositories
// under private/ need basic auth (bob / hunter2).
type ociRegistry struct {
	server *httptest.Server
}

func startRegistry() *ociRegistry {
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2/private/") {
			if user, pass, ok := r.BasicAuth(); !ok || user != "bob" || pass != "hunter2" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		inner.ServeHTTP(w, r)
	})
	return &ociRegistry{server: httptest.NewServer(handler)}
}

func (r *ociRegistry) Host() string { return strings.TrimPrefix(r.server.URL, "http://") }

// push stores an image with the given config as host/repo.
func (r *ociRegistry) push(repo string, cfg v1.Config) string {
	img, err := random.Image(128, 1)
	Expect(err).NotTo(HaveOccurred())
	img, err = mutate.Config(img, cfg)
	Expect(err).NotTo(HaveOccurred())
	ref, err := name.ParseReference(r.Host()+"/"+repo, name.Insecure)
	Expect(err).NotTo(HaveOccurred())
	Expect(remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "bob", Password: "hunter2"}))).To(Succeed())
	return ref.String()
}
