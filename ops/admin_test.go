package ops_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/tedsuo/ifrit"

	"github.com/iris-cf/iris/integration/testcerts"
	"github.com/iris-cf/iris/ops"
)

// startTLSOps serves ops over TLS with an admin route; clientCA may be nil.
func startTLSOps(t *testing.T, serverCA *testcerts.CA, clientCA *testcerts.CA) string {
	t.Helper()
	dir := t.TempDir()
	leaf, err := serverCA.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := leaf.WriteFiles(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	caFile := ""
	if clientCA != nil {
		caFile = filepath.Join(dir, "client-ca.crt")
		if err := os.WriteFile(caFile, clientCA.PEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	server := ops.NewServer(lagertest.NewTestLogger("ops"), addr)
	if err := server.ServeTLS(certFile, keyFile, caFile); err != nil {
		t.Fatal(err)
	}
	server.HandleAdmin("GET /admin/things", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "admin") }))
	process := ifrit.Invoke(server)
	t.Cleanup(func() { process.Signal(os.Interrupt); <-process.Wait() })
	return "https://" + addr
}

func tlsGet(t *testing.T, url string, roots *testcerts.CA, client *testcerts.Leaf) (int, error) {
	t.Helper()
	config := &tls.Config{RootCAs: roots.Pool()}
	if client != nil {
		cert, err := client.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		config.Certificates = []tls.Certificate{cert}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: config}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}

func TestAdminRoutesNeedAVerifiedClientCertificateWhileProbesNeedNone(t *testing.T) {
	serverCA, _ := testcerts.NewCA("server-ca")
	clientCA, _ := testcerts.NewCA("client-ca")
	otherCA, _ := testcerts.NewCA("other-ca")
	operator, _ := clientCA.Issue("operator")
	stranger, _ := otherCA.Issue("stranger")
	base := startTLSOps(t, serverCA, clientCA)

	if code, err := tlsGet(t, base+"/healthz", serverCA, nil); err != nil || code != http.StatusOK {
		t.Fatalf("healthz without a client certificate: %d %v", code, err)
	}
	if code, err := tlsGet(t, base+"/admin/things", serverCA, nil); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("admin without a client certificate: %d %v, want 401", code, err)
	}
	// Go's client withholds a certificate the server's CA list does not
	// name; either way a stranger's request is never served.
	if code, err := tlsGet(t, base+"/admin/things", serverCA, stranger); err == nil && code != http.StatusUnauthorized {
		t.Fatalf("admin with a certificate from another CA: %d, want 401 or a failed handshake", code)
	}
	if code, err := tlsGet(t, base+"/admin/things", serverCA, operator); err != nil || code != http.StatusOK {
		t.Fatalf("admin with the operator's certificate: %d %v", code, err)
	}
}

func TestNoAdminRoutesWithoutAClientCA(t *testing.T) {
	serverCA, _ := testcerts.NewCA("server-ca")
	clientCA, _ := testcerts.NewCA("client-ca")
	operator, _ := clientCA.Issue("operator")
	base := startTLSOps(t, serverCA, nil)
	if code, err := tlsGet(t, base+"/healthz", serverCA, nil); err != nil || code != http.StatusOK {
		t.Fatalf("healthz: %d %v", code, err)
	}
	if code, err := tlsGet(t, base+"/admin/things", serverCA, operator); err != nil || code != http.StatusNotFound {
		t.Fatalf("admin without ops.client_ca_file: %d %v, want 404", code, err)
	}
}
