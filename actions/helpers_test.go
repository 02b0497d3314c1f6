package actions_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// archiveFile is one entry of a test archive.
type archiveFile struct {
	name    string
	body    string
	mode    int64
	dir     bool
	symlink string
}

func tarBytes(files []archiveFile) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg}
		switch {
		case f.dir:
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		case f.symlink != "":
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeSymlink, f.symlink, 0
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		Expect(tw.WriteHeader(hdr)).To(Succeed())
		if hdr.Typeflag == tar.TypeReg {
			_, err := tw.Write([]byte(f.body))
			Expect(err).NotTo(HaveOccurred())
		}
	}
	Expect(tw.Close()).To(Succeed())
	return buf.Bytes()
}

func tgzBytes(files []archiveFile) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	_, err := gz.Write(tarBytes(files))
	Expect(err).NotTo(HaveOccurred())
	Expect(gz.Close()).To(Succeed())
	return buf.Bytes()
}

func zipBytes(files []archiveFile) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		hdr := &zip.FileHeader{Name: f.name, Method: zip.Deflate}
		mode := os.FileMode(f.mode)
		if mode == 0 {
			mode = 0o644
		}
		switch {
		case f.dir:
			hdr.Name += "/"
			hdr.SetMode(os.ModeDir | 0o755)
		case f.symlink != "":
			hdr.SetMode(os.ModeSymlink | 0o777)
		default:
			hdr.SetMode(mode)
		}
		w, err := zw.CreateHeader(hdr)
		Expect(err).NotTo(HaveOccurred())
		if f.symlink != "" {
			_, err = w.Write([]byte(f.symlink))
		} else if !f.dir {
			_, err = w.Write([]byte(f.body))
		}
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(zw.Close()).To(Succeed())
	return buf.Bytes()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// recordedRequest is what a test server saw.
type recordedRequest struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// blobServer serves blobs and takes uploads; each path answers with the
// queued statuses first (e.g. two 500s), then normally.
type blobServer struct {
	*httptest.Server
	mu       sync.Mutex
	blobs    map[string][]byte
	etags    map[string]string
	failures map[string][]int
	requests []recordedRequest
}

func newBlobServer() *blobServer {
	s := &blobServer{blobs: map[string][]byte{}, etags: map[string]string{}, failures: map[string][]int{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.handle))
	// Refused handshakes are expected in some specs; keep them in the
	// spec's own output.
	s.Config.ErrorLog = log.New(GinkgoWriter, "blob-server: ", 0)
	return s
}

func startBlobServer() *blobServer {
	s := newBlobServer()
	s.Start()
	DeferCleanup(s.Close)
	return s
}

// startMTLSBlobServer requires a client certificate issued by ca.
func startMTLSBlobServer(ca *testCA) *blobServer {
	s := newBlobServer()
	s.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.issue("server", true)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool(),
		MinVersion:   tls.VersionTLS12,
	}
	s.StartTLS()
	DeferCleanup(s.Close)
	return s
}

func (s *blobServer) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.requests = append(s.requests, recordedRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	if queued := s.failures[r.URL.Path]; len(queued) > 0 {
		s.failures[r.URL.Path] = queued[1:]
		s.mu.Unlock()
		w.WriteHeader(queued[0])
		return
	}
	blob, ok := s.blobs[r.URL.Path]
	etag := s.etags[r.URL.Path]
	s.mu.Unlock()
	switch r.Method {
	case http.MethodPost, http.MethodPut:
		w.WriteHeader(http.StatusCreated)
	case http.MethodGet:
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if etag != "" {
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", etag)
		}
		_, _ = w.Write(blob)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (s *blobServer) put(path string, blob []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[path] = blob
	return s.URL + path
}

func (s *blobServer) withETag(path, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.etags[path] = etag
}

func (s *blobServer) failNext(path string, statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[path] = append(s.failures[path], statuses...)
}

func (s *blobServer) received(path string) []recordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []recordedRequest
	for _, r := range s.requests {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// testCA issues certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

func newTestCA() *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "iris-actions-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	cert, err := x509.ParseCertificate(der)
	Expect(err).NotTo(HaveOccurred())
	return &testCA{cert: cert, key: key, der: der}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

var serial int64 = 1
var serialMu sync.Mutex

func (ca *testCA) issue(cn string, server bool) tls.Certificate {
	certPEM, keyPEM := ca.issuePEM(cn, server)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	Expect(err).NotTo(HaveOccurred())
	return pair
}

func (ca *testCA) issuePEM(cn string, server bool) ([]byte, []byte) {
	serialMu.Lock()
	serial++
	n := serial
	serialMu.Unlock()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(n),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	Expect(err).NotTo(HaveOccurred())
	keyDER, err := x509.MarshalECPrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// writeFiles writes the CA and a client identity into dir for the runner's
// --tls-* flags.
func (ca *testCA) writeClientFiles(dir string) (caFile, certFile, keyFile string) {
	caFile = filepath.Join(dir, "ca.crt")
	certFile = filepath.Join(dir, "client.crt")
	keyFile = filepath.Join(dir, "client.key")
	certPEM, keyPEM := ca.issuePEM("client", false)
	Expect(os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der}), 0o600)).To(Succeed())
	Expect(os.WriteFile(certFile, certPEM, 0o600)).To(Succeed())
	Expect(os.WriteFile(keyFile, keyPEM, 0o600)).To(Succeed())
	return caFile, certFile, keyFile
}
