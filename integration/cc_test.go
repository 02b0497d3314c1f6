package integration_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/integration/testcerts"
	"github.com/iris-cf/iris/models"
)

// fakeCC is a real HTTP server playing Cloud Controller's internal API. It
// records every request and answers with a status the test can change.
type fakeCC struct {
	server *httptest.Server

	mu       sync.Mutex
	status   int
	requests []ccRequest
}

type ccRequest struct {
	Path   string
	Status int
	Body   []byte
	// Auth is the request's basic auth "user:password", "" without.
	Auth        string
	ContentType string
}

// startFakeCC serves CC's internal API over TLS and, like CC's nginx
// (ssl_verify_client on), accepts only clients with a certificate from
// clientCA: every callback in the suite proves Iris's mTLS client.
func startFakeCC(serverLeaf *testcerts.Leaf, clientCA *testcerts.CA) *fakeCC {
	f := &fakeCC{status: http.StatusOK}
	f.server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		status := f.status
		auth := ""
		if user, pass, ok := r.BasicAuth(); ok {
			auth = user + ":" + pass
		}
		f.requests = append(f.requests, ccRequest{Path: r.URL.Path, Status: status, Body: body, Auth: auth, ContentType: r.Header.Get("Content-Type")})
		f.mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write([]byte("{}"))
	}))
	cert, err := serverLeaf.TLSCertificate()
	Expect(err).NotTo(HaveOccurred())
	f.server.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
	f.server.StartTLS()
	return f
}

func (f *fakeCC) URL() string { return f.server.URL }

func (f *fakeCC) SetStatus(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = status
}

// crashes returns the crash reports for processGUID that CC accepted (ok)
// or all that reached it.
func (f *fakeCC) crashes(processGUID string, acceptedOnly bool) []models.AppCrashedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []models.AppCrashedRequest
	for _, r := range f.requests {
		if r.Path != "/internal/v4/apps/"+processGUID+"/crashed" || (acceptedOnly && r.Status != http.StatusOK) {
			continue
		}
		var c models.AppCrashedRequest
		if json.Unmarshal(r.Body, &c) == nil {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeCC) requestsTo(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if strings.HasPrefix(r.Path, prefix) {
			n++
		}
	}
	return n
}

// taskCallbacks returns the completion callbacks for taskGUID (accepted only, or all).
func (f *fakeCC) taskCallbacks(taskGUID string, acceptedOnly bool) []models.TaskCompletedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []models.TaskCompletedRequest
	for _, r := range f.requests {
		if r.Path != "/internal/v4/tasks/"+taskGUID+"/completed" || (acceptedOnly && r.Status != http.StatusOK) {
			continue
		}
		var c models.TaskCompletedRequest
		if json.Unmarshal(r.Body, &c) == nil {
			out = append(out, c)
		}
	}
	return out
}

// stagingCallbacks returns the staging completion callbacks for stagingGUID.
func (f *fakeCC) stagingCallbacks(stagingGUID string, acceptedOnly bool) []models.StagingCallback {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []models.StagingCallback
	for _, r := range f.requests {
		if r.Path != "/internal/v3/staging/"+stagingGUID+"/build_completed" || (acceptedOnly && r.Status != http.StatusOK) {
			continue
		}
		var c models.StagingCallback
		if json.Unmarshal(r.Body, &c) == nil {
			out = append(out, c)
		}
	}
	return out
}

// stagingCallbackAuths returns the basic auth of each staging completion
// callback for stagingGUID.
func (f *fakeCC) stagingCallbackAuths(stagingGUID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		if r.Path == "/internal/v3/staging/"+stagingGUID+"/build_completed" {
			out = append(out, r.Auth)
		}
	}
	return out
}

var _ = Describe("Callbacks to CC", func() {
	It("go over mTLS: CC's internal API refuses a client without Iris's certificate", func() {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		_, err := client.Post(cc.URL()+"/internal/v4/tasks/x/completed", "application/json", strings.NewReader("{}"))
		Expect(err).To(HaveOccurred())
		Expect(cc.requestsTo("/internal/v4/tasks/x/")).To(BeZero())
	})
})
