// Package docker stages docker apps for Cloud Controller: it reads an image's
// config from its registry and turns it into the result CC expects from a
// docker staging task, as Diego's dockerapplifecycle builder does. Nothing is
// pulled but the manifest and the config blob.
package docker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// DefaultTimeout bounds one Stage call when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Options configure a Stager.
type Options struct {
	// Timeout bounds each Stage call, retries included; zero means
	// DefaultTimeout.
	Timeout time.Duration

	// Transport carries the registry requests; nil means a clone of
	// http.DefaultTransport. Give one for custom CAs or in tests. Skipping
	// TLS verification for InsecureRegistries only applies to the default.
	Transport http.RoundTripper

	// InsecureRegistries are registry hosts ("host" or "host:port", as
	// written in image references) that may be reached over plain HTTP and
	// whose TLS certificates are not verified, like Diego's
	// insecure_docker_registry_list. Every other registry must speak
	// verified HTTPS, loopback and private addresses included.
	InsecureRegistries []string
}

// Stager reads image configs from registries. It is safe for concurrent use.
type Stager struct {
	timeout   time.Duration
	insecure  map[string]bool
	transport http.RoundTripper
}

// NewStager builds a Stager.
func NewStager(opts Options) *Stager {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	insecure := make(map[string]bool, len(opts.InsecureRegistries))
	for _, host := range opts.InsecureRegistries {
		insecure[strings.ToLower(strings.TrimSpace(host))] = true
	}
	verified, unverified := opts.Transport, opts.Transport
	if opts.Transport == nil {
		base := http.DefaultTransport.(*http.Transport).Clone()
		verified = base
		skip := base.Clone()
		skip.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for operator-listed insecure registries
		unverified = skip
	}
	return &Stager{
		timeout:   timeout,
		insecure:  insecure,
		transport: &httpGuard{insecure: insecure, verified: verified, unverified: unverified},
	}
}

// Stage reads image's config (from its linux/amd64 manifest when image is a
// multi-arch index) and returns CC's staging result. username and password
// are the package's registry credentials; empty means anonymous. Errors are
// *Error, classified by Reason; FailureFor turns them into CC's failure.
func (s *Stager) Stage(ctx context.Context, image, username, password string) (Result, error) {
	ref, err := s.parse(image)
	if err != nil {
		return Result{}, classify(image, "", err)
	}
	registry := ref.Context().RegistryStr()

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	var auth authn.Authenticator = authn.Anonymous
	if username != "" || password != "" {
		auth = &authn.Basic{Username: username, Password: password}
	}
	img, err := remote.Image(ref,
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithTransport(s.transport),
		// Iris runs apps on linux/amd64 nodes, as Diego cells are.
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}),
	)
	if err == nil {
		var cfg *v1.ConfigFile
		if cfg, err = img.ConfigFile(); err == nil {
			var result Result
			if result, err = newResult(image, cfg.Config); err == nil {
				return result, nil
			}
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("no answer within %s: %w", s.timeout, err)
	}
	return Result{}, classify(image, registry, err)
}

// parse parses image as docker does (default registry Docker Hub, default
// tag latest), marking listed registries insecure so that the registry
// client also tries plain HTTP for them.
func (s *Stager) parse(image string) (name.Reference, error) {
	ref, err := name.ParseReference(image)
	if err != nil || !s.insecure[strings.ToLower(ref.Context().RegistryStr())] {
		return ref, err
	}
	return name.ParseReference(image, name.Insecure)
}

// httpGuard routes registry requests and refuses plain HTTP to registries
// that are not listed as insecure. go-containerregistry falls back to HTTP
// on its own for loopback and RFC 1918 addresses, which would send
// credentials in the clear; Diego only does that for listed registries.
type httpGuard struct {
	insecure   map[string]bool
	verified   http.RoundTripper
	unverified http.RoundTripper
}

func (g *httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	host := strings.ToLower(req.URL.Host)
	if g.insecure[host] {
		return g.unverified.RoundTrip(req)
	}
	if req.URL.Scheme != "https" {
		return nil, fmt.Errorf("refusing plain HTTP to %s: it is not an insecure registry", req.URL.Host)
	}
	return g.verified.RoundTrip(req)
}
