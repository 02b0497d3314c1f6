package actions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
)

// A recipe pod's uploads may need a client certificate (a real
// cc-uploader requires mTLS), but the runner shares its container with
// buildpack and app code: a certificate mounted there would be the
// tenant's. So the certificate lives in a sidecar of its own, the upload
// proxy, which the runner reaches through a unix socket on a volume shared
// with that one container. The runner streams each payload to the proxy
// (POST UploadProxyPath, the destination in UploadProxyDestinationHeader)
// and keeps Diego's retries itself; the proxy streams it on with its
// client certificate and answers with the destination's status. It sends
// only to the upload destinations of the pod's own recipe, so tenant code
// that finds the socket can do no more than the recipe's own upload steps
// do, as with Diego's executor, which uploads from outside the container.
const (
	// UploadProxyPath is the proxy's one route.
	UploadProxyPath = "/v1/upload"
	// UploadProxyDestinationHeader carries the upload's URL (a header,
	// not the proxy's own URL, so the destination reaches the proxy
	// exactly and never appears in an access path).
	UploadProxyDestinationHeader = "X-Iris-Upload-Destination"
	// UploadProxyErrorHeader explains an answer the proxy gave itself
	// (refused, or the destination unreachable) rather than the
	// destination's.
	UploadProxyErrorHeader = "X-Iris-Upload-Proxy-Error"
)

// uploadProxyHost names the proxy in requests; the socket is what is dialled.
const uploadProxyHost = "iris-upload-proxy"

// maxRelayedResponseBytes bounds the destination's answer the proxy relays
// (cc-uploader answers with a small JSON or nothing).
const maxRelayedResponseBytes = 64 << 10

// UploadDestinations are the URLs of every upload action in the recipe's
// setup, action and monitor, as the proxy compares them (normalised by
// url.ParseRequestURI, as the upload step parses them). Unparseable ones
// are left out: the upload step fails on them before it sends anything.
func (r *Recipe) UploadDestinations() []string {
	var out []string
	r.EachAction(func(action *models.Action) {
		if a := action.GetUploadAction(); a != nil {
			if to, err := url.ParseRequestURI(a.To); err == nil {
				out = append(out, to.String())
			}
		}
	})
	return out
}

// EachAction calls fn with every action of the recipe's setup, action and
// monitor, members after the action holding them, in order.
func (r *Recipe) EachAction(fn func(*models.Action)) {
	for _, action := range []*models.Action{r.Setup, r.Action, r.Monitor} {
		eachAction(action, fn)
	}
}

func eachAction(action *models.Action, fn func(*models.Action)) {
	if action == nil {
		return
	}
	fn(action)
	switch a := action.GetValue().(type) {
	case *models.TryAction:
		eachAction(a.Action, fn)
	case *models.EmitProgressAction:
		eachAction(a.Action, fn)
	case *models.TimeoutAction:
		eachAction(a.Action, fn)
	case *models.ParallelAction:
		for _, m := range a.Actions {
			eachAction(m, fn)
		}
	case *models.SerialAction:
		for _, m := range a.Actions {
			eachAction(m, fn)
		}
	case *models.CodependentAction:
		for _, m := range a.Actions {
			eachAction(m, fn)
		}
	}
}

// UploadProxyClient is the runner's client for the proxy listening on
// socket: every request goes to that socket, whatever its URL says.
func UploadProxyClient(socket string) *http.Client {
	var dialer net.Dialer
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socket)
		},
		// One upload at a time per connection; idle ones are not worth keeping.
		DisableKeepAlives: true,
	}}
}

// UploadProxy is the proxy's handler: it relays an upload to one of the
// recipe's upload destinations with client, which carries the pod's
// upload identity.
type UploadProxy struct {
	allowed map[string]bool
	client  *http.Client
	logger  lager.Logger
}

// NewUploadProxy relays uploads to recipe's upload destinations only.
func NewUploadProxy(logger lager.Logger, recipe *Recipe, client *http.Client) *UploadProxy {
	allowed := map[string]bool{}
	for _, to := range recipe.UploadDestinations() {
		allowed[to] = true
	}
	return &UploadProxy{allowed: allowed, client: client, logger: logger.Session("upload-proxy")}
}

// Destinations is how many distinct destinations the proxy serves.
func (p *UploadProxy) Destinations() int { return len(p.allowed) }

func (p *UploadProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != UploadProxyPath {
		p.refuse(w, http.StatusNotFound, "the upload proxy serves "+UploadProxyPath+" only")
		return
	}
	if r.Method != http.MethodPost {
		p.refuse(w, http.StatusMethodNotAllowed, "uploads are POSTed")
		return
	}
	to, err := url.ParseRequestURI(r.Header.Get(UploadProxyDestinationHeader))
	if err != nil {
		p.refuse(w, http.StatusBadRequest, "missing or invalid "+UploadProxyDestinationHeader)
		return
	}
	// The log names the destination's host only: the path and query of
	// an upload URL may be signed.
	logger := p.logger.Session("upload", lager.Data{"host": to.Host})
	if !p.allowed[to.String()] {
		logger.Info("refused-destination-not-in-recipe")
		p.refuse(w, http.StatusForbidden, "the destination is not an upload of this pod's recipe")
		return
	}

	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, to.String(), r.Body)
	if err != nil {
		p.refuse(w, http.StatusBadRequest, "invalid destination")
		return
	}
	req.ContentLength = r.ContentLength
	for _, h := range []string{"Content-Type", "Content-MD5", "Content-Digest"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	logger.Info("relaying", lager.Data{"bytes": r.ContentLength})
	resp, err := p.client.Do(req)
	if err != nil {
		// Without the URL the client's error carries (it may be signed).
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		logger.Error("failed-relaying", err)
		p.refuse(w, http.StatusBadGateway, fmt.Sprintf("the destination cannot be reached: %v", err))
		return
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, maxRelayedResponseBytes))
	logger.Info("relayed", lager.Data{"status": resp.StatusCode})
}

func (p *UploadProxy) refuse(w http.ResponseWriter, status int, message string) {
	w.Header().Set(UploadProxyErrorHeader, message)
	http.Error(w, message, status)
}
