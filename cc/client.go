// Package cc posts callbacks to Cloud Controller's internal API (crash
// events, and later staging and task completion), over mTLS when configured.
package cc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/iris-cf/iris/certreload"
)

// StatusError is a non-2xx answer from CC.
type StatusError struct {
	URL        string // without its password
	StatusCode int
	Body       string
	// RetryAfter is CC's Retry-After, 0 when it sent none.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("POST %s: %d %s", e.URL, e.StatusCode, e.Body)
}

// ErrUnsendable marks a request that cannot be sent at all (a body that
// does not encode, a callback URL that does not parse): final, like a 4xx.
var ErrUnsendable = errors.New("request cannot be sent")

// IsFinal reports whether retrying err cannot help: CC answered one of the
// 4xx codes that mean "never" (400 bad request, 403, 404 e.g.
// ProcessNotFound, 409, 422), so the request itself is wrong or moot, or
// the request could not even be built. Everything else is retried: network
// errors, timeouts, 5xx, 408 Request Timeout and 429 Too Many Requests
// (which ask the client to come back later), and any other status, which a
// proxy in front of CC may answer for a request that would succeed later.
func IsFinal(err error) bool {
	if errors.Is(err, ErrUnsendable) {
		return true
	}
	var status *StatusError
	if !errors.As(err, &status) {
		return false
	}
	switch status.StatusCode {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// maxRetryAfter bounds how long a Retry-After may hold a report back.
const maxRetryAfter = 15 * time.Minute

// RetryAfter is how long CC asked Iris to wait before retrying err (its
// Retry-After header, in seconds or as an HTTP date), at most 15 minutes.
func RetryAfter(err error) (time.Duration, bool) {
	var status *StatusError
	if !errors.As(err, &status) || status.RetryAfter <= 0 {
		return 0, false
	}
	return min(status.RetryAfter, maxRetryAfter), true
}

func parseRetryAfter(value string, now time.Time) time.Duration {
	if value == "" {
		return 0
	}
	if seconds, err := strconv.Atoi(value); err == nil {
		return time.Duration(max(seconds, 0)) * time.Second
	}
	if at, err := http.ParseTime(value); err == nil {
		return max(at.Sub(now), 0)
	}
	return 0
}

// RedactURL returns rawURL without its user information, for objects and
// messages others read: a staging's completion callback carries CC's
// internal API user and password.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's own error would quote the URL: say nothing of it.
		return "<unparseable URL>"
	}
	u.User = nil
	return u.String()
}

// Options configure the client. CACertFile (CC's server CA) and a client
// certificate are needed for CC's internal TLS port, which verifies clients.
type Options struct {
	InternalAPIURL string
	CACertFile     string
	CertFile       string
	KeyFile        string
	Timeout        time.Duration
}

// Client posts JSON to CC.
type Client struct {
	baseURL string
	http    *http.Client
}

// NewClient builds a client; TLS is used when a CA or certificate is given.
func NewClient(o Options) (*Client, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if o.CACertFile != "" || o.CertFile != "" {
		// Certificate and CA are re-read when their files change.
		var pair *certreload.KeyPair
		var roots *certreload.CAPool
		var err error
		if o.CertFile != "" {
			if pair, err = certreload.LoadKeyPair(o.CertFile, o.KeyFile, nil); err != nil {
				return nil, fmt.Errorf("CC client certificate: %w", err)
			}
		}
		if o.CACertFile != "" {
			if roots, err = certreload.LoadCAPool(o.CACertFile, nil); err != nil {
				return nil, fmt.Errorf("CC CA: %w", err)
			}
		}
		tlsConfig, err := certreload.ClientConfig(pair, roots, "")
		if err != nil {
			return nil, fmt.Errorf("building CC client TLS config: %w", err)
		}
		transport.TLSClientConfig = tlsConfig
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	return &Client{baseURL: o.InternalAPIURL, http: &http.Client{Transport: transport, Timeout: timeout}}, nil
}

// Post sends body as JSON to path (relative to the internal API URL) and
// returns a *StatusError for any non-2xx answer.
func (c *Client) Post(ctx context.Context, path string, body any) error {
	return c.PostURL(ctx, c.baseURL+path, body)
}

// PostURL sends body as JSON to an absolute URL, such as the completion
// callback CC put in a task or staging request. A password in the URL (CC's
// staging callbacks carry one) is sent as basic auth and never appears in
// an error, since errors are logged.
func (c *Client) PostURL(ctx context.Context, rawURL string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encoding CC request: %w: %w", ErrUnsendable, err)
	}
	target, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's error quotes the whole URL, password included.
		var parseErr *url.Error
		if errors.As(err, &parseErr) {
			err = parseErr.Err
		}
		return fmt.Errorf("parsing CC URL: %w: %w", ErrUnsendable, err)
	}
	redacted := target.Redacted()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("building CC request to %s: %w: %w", redacted, ErrUnsendable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		// net/http's own error names the URL without its password.
		return fmt.Errorf("POST to CC: %w", err)
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &StatusError{URL: redacted, StatusCode: resp.StatusCode, Body: string(respBody),
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	return nil
}
