package certreload_test

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iris-cf/iris/certreload"
	"github.com/iris-cf/iris/integration/testcerts"
)

type env struct {
	t   *testing.T
	dir string
}

func (e env) writeLeaf(ca *testcerts.CA, cn, name string) *testcerts.Leaf {
	e.t.Helper()
	leaf, err := ca.Issue(cn)
	if err != nil {
		e.t.Fatal(err)
	}
	// A rotation changes the files' mtime; make sure the clock moved.
	time.Sleep(10 * time.Millisecond)
	if _, _, err := leaf.WriteFiles(e.dir, name); err != nil {
		e.t.Fatal(err)
	}
	return leaf
}

func (e env) writeCA(ca *testcerts.CA, name string) string {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(path, ca.PEM, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// handshake connects client to a server using serverCfg and returns the
// serial numbers each side saw of the other, or the handshake error.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (serverSerial, clientSerial string, err error) {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	seen := make(chan string, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			seen <- ""
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if tc.Handshake() != nil || len(tc.ConnectionState().PeerCertificates) == 0 {
			seen <- ""
			return
		}
		seen <- tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", l.Addr().String(), clientCfg)
	if err != nil {
		<-seen
		return "", "", err
	}
	defer conn.Close()
	if err := conn.Handshake(); err != nil {
		return "", "", err
	}
	// TLS 1.3 reports a client certificate rejection on the first read.
	_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, readErr := conn.Read(make([]byte, 1))
	if ne, ok := readErr.(net.Error); readErr != nil && !(ok && ne.Timeout()) && readErr.Error() != "EOF" {
		return "", "", readErr
	}
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), <-seen, nil
}

func TestRotatedFilesAreUsedWithoutRestart(t *testing.T) {
	e := env{t: t, dir: t.TempDir()}
	serverCA, _ := testcerts.NewCA("server-ca")
	clientCA, _ := testcerts.NewCA("client-ca")
	e.writeLeaf(serverCA, "server", "server")
	e.writeLeaf(clientCA, "client", "client")
	clientCAFile := e.writeCA(clientCA, "client-ca.crt")
	serverCAFile := e.writeCA(serverCA, "server-ca.crt")

	reloads := 0
	count := func(err error) {
		if err != nil {
			t.Errorf("reload failed: %v", err)
		}
		reloads++
	}
	serverPair, err := certreload.LoadKeyPair(filepath.Join(e.dir, "server.crt"), filepath.Join(e.dir, "server.key"), count)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs, err := certreload.LoadCAPool(clientCAFile, count)
	if err != nil {
		t.Fatal(err)
	}
	serverCfg, err := certreload.ServerConfig(serverPair, clientCAs)
	if err != nil {
		t.Fatal(err)
	}
	clientPair, err := certreload.LoadKeyPair(filepath.Join(e.dir, "client.crt"), filepath.Join(e.dir, "client.key"), count)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := certreload.LoadCAPool(serverCAFile, count)
	if err != nil {
		t.Fatal(err)
	}
	clientCfg, err := certreload.ClientConfig(clientPair, roots, "server")
	if err != nil {
		t.Fatal(err)
	}

	first, firstClient, err := handshake(t, serverCfg, clientCfg)
	if err != nil {
		t.Fatalf("first handshake: %v", err)
	}

	// Both sides' certificates rotate (same CAs): the next handshake uses them.
	e.writeLeaf(serverCA, "server", "server")
	e.writeLeaf(clientCA, "client", "client")
	second, secondClient, err := handshake(t, serverCfg, clientCfg)
	if err != nil {
		t.Fatalf("handshake after rotation: %v", err)
	}
	if first == second || firstClient == secondClient {
		t.Fatalf("certificates not reloaded: server %s→%s, client %s→%s", first, second, firstClient, secondClient)
	}

	// The server's client CA changes: the old client certificate is refused,
	// one from the new CA accepted.
	newClientCA, _ := testcerts.NewCA("client-ca-2")
	e.writeCA(newClientCA, "client-ca.crt")
	if _, _, err := handshake(t, serverCfg, clientCfg); err == nil {
		t.Fatal("a client certificate from the replaced CA was accepted")
	}
	e.writeLeaf(newClientCA, "client", "client")
	if _, _, err := handshake(t, serverCfg, clientCfg); err != nil {
		t.Fatalf("client certificate from the new CA: %v", err)
	}

	// The client's roots change: the server signed by the old CA is refused.
	otherServerCA, _ := testcerts.NewCA("server-ca-2")
	e.writeCA(otherServerCA, "server-ca.crt")
	if _, _, err := handshake(t, serverCfg, clientCfg); err == nil {
		t.Fatal("a server certificate from the replaced CA was accepted")
	}
	if reloads < 5 {
		t.Fatalf("only %d reloads observed", reloads)
	}
}

func TestHalfRotatedPairKeepsThePreviousOne(t *testing.T) {
	e := env{t: t, dir: t.TempDir()}
	ca, _ := testcerts.NewCA("ca")
	e.writeLeaf(ca, "a", "pair")
	var lastErr error
	pair, err := certreload.LoadKeyPair(filepath.Join(e.dir, "pair.crt"), filepath.Join(e.dir, "pair.key"), func(err error) { lastErr = err })
	if err != nil {
		t.Fatal(err)
	}
	before := pair.Current()
	// Only the certificate is replaced so far.
	other, _ := ca.Issue("b")
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(filepath.Join(e.dir, "pair.crt"), other.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := pair.Current(); got != before || lastErr == nil {
		t.Fatalf("a mismatched pair replaced the working one (err %v)", lastErr)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "pair.key"), other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := pair.Current(); got == before || lastErr != nil {
		t.Fatalf("the complete new pair was not loaded (err %v)", lastErr)
	}
}

// A TLS 1.2-only peer must be able to use an ECDSA certificate, on either
// side: the suites allowed for TLS 1.2 include ECDHE-ECDSA ones.
func TestTLS12WithECDSACertificates(t *testing.T) {
	e := env{t: t, dir: t.TempDir()}
	serverCA, _ := testcerts.NewCA("server-ca") // testcerts issues ECDSA P-256 keys
	clientCA, _ := testcerts.NewCA("client-ca")
	e.writeLeaf(serverCA, "server", "server")
	e.writeLeaf(clientCA, "client", "client")
	serverPair, err := certreload.LoadKeyPair(filepath.Join(e.dir, "server.crt"), filepath.Join(e.dir, "server.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	clientPair, err := certreload.LoadKeyPair(filepath.Join(e.dir, "client.crt"), filepath.Join(e.dir, "client.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs, err := certreload.LoadCAPool(e.writeCA(clientCA, "client-ca.crt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := certreload.LoadCAPool(e.writeCA(serverCA, "server-ca.crt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	serverCfg, err := certreload.ServerConfig(serverPair, clientCAs)
	if err != nil {
		t.Fatal(err)
	}

	// A plain TLS 1.2 client (Go's default suites), as an older CC would be.
	plain := &tls.Config{MaxVersion: tls.VersionTLS12, ServerName: "server", RootCAs: serverCA.Pool(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return clientPair.Current(), nil }}
	if _, _, err := handshake(t, serverCfg, plain); err != nil {
		t.Fatalf("TLS 1.2 client against an ECDSA server certificate: %v", err)
	}

	// Iris's own client config limited to TLS 1.2 (as against a TLS 1.2-only
	// CC or NATS), with its ECDSA client certificate.
	clientCfg, err := certreload.ClientConfig(clientPair, roots, "server")
	if err != nil {
		t.Fatal(err)
	}
	clientCfg.MaxVersion = tls.VersionTLS12
	if _, _, err := handshake(t, serverCfg, clientCfg); err != nil {
		t.Fatalf("Iris's TLS 1.2 client with an ECDSA client certificate: %v", err)
	}
}
