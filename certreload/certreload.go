// Package certreload keeps TLS identities and CAs read from files current.
// Kubernetes updates mounted Secrets in place when they rotate; Iris picks
// the new files up at the next handshake, without a restart. Files are
// re-read only when their size or modification time changed.
package certreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/tlsconfig"
)

// watched is a file and what it looked like when last read.
type watched struct {
	path    string
	modTime time.Time
	size    int64
}

// changed stats the file (following the symlinks of a Secret mount).
func (w *watched) changed() bool {
	info, err := os.Stat(w.path)
	if err != nil {
		return false // mid-rotation or gone: keep what was loaded
	}
	return !info.ModTime().Equal(w.modTime) || info.Size() != w.size
}

func (w *watched) mark() {
	if info, err := os.Stat(w.path); err == nil {
		w.modTime, w.size = info.ModTime(), info.Size()
	}
}

// KeyPair is a certificate and key from files, reloaded when they change.
// A pair that does not load (the certificate already replaced, the key not
// yet) keeps the previous one until both match.
type KeyPair struct {
	mu       sync.Mutex
	cert     watched
	key      watched
	current  *tls.Certificate
	onReload func(error)
}

// LoadKeyPair reads the pair; onReload (may be nil) hears about every
// reload attempt after the first, with its error.
func LoadKeyPair(certFile, keyFile string, onReload func(error)) (*KeyPair, error) {
	k := &KeyPair{cert: watched{path: certFile}, key: watched{path: keyFile}, onReload: onReload}
	if err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *KeyPair) load() error {
	k.cert.mark()
	k.key.mark()
	pair, err := tls.LoadX509KeyPair(k.cert.path, k.key.path)
	if err != nil {
		return fmt.Errorf("loading key pair %s: %w", k.cert.path, err)
	}
	k.current = &pair
	return nil
}

// Current returns the pair, reloading it if its files changed.
func (k *KeyPair) Current() *tls.Certificate {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert.changed() || k.key.changed() {
		// load replaces the pair only on success.
		err := k.load()
		if k.onReload != nil {
			k.onReload(err)
		}
	}
	return k.current
}

// CAPool is a CA bundle from a file, reloaded when it changes.
type CAPool struct {
	mu       sync.Mutex
	file     watched
	current  *x509.CertPool
	onReload func(error)
}

// LoadCAPool reads the bundle.
func LoadCAPool(file string, onReload func(error)) (*CAPool, error) {
	p := &CAPool{file: watched{path: file}, onReload: onReload}
	if err := p.load(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *CAPool) load() error {
	p.file.mark()
	data, err := os.ReadFile(p.file.path)
	if err != nil {
		return fmt.Errorf("reading CA file %s: %w", p.file.path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return fmt.Errorf("no certificates in CA file %s", p.file.path)
	}
	p.current = pool
	return nil
}

// Current returns the pool, reloading it if its file changed.
func (p *CAPool) Current() *x509.CertPool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.file.changed() {
		// load replaces the pool only on success.
		err := p.load()
		if p.onReload != nil {
			p.onReload(err)
		}
	}
	return p.current
}

// defaults are tlsconfig's internal-service settings (TLS 1.2+, CF's cipher
// suites), built without an identity, plus the ECDSA suites.
func defaults() (*tls.Config, error) {
	return tlsconfig.Build(tlsconfig.WithInternalServiceDefaults(), withECDSASuites).Server()
}

// withECDSASuites adds the ECDHE-ECDSA AEAD suites for TLS 1.2. The
// internal-service defaults allow only ECDHE-RSA suites, so a TLS 1.2 peer
// could not complete a handshake with an ECDSA certificate (cert-manager
// and many CAs issue ECDSA). These are the same forward-secret AEAD suites
// with ECDSA signatures; TLS 1.3 is unaffected (Go picks its own suites).
func withECDSASuites(c *tls.Config) error {
	c.CipherSuites = append(c.CipherSuites,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	)
	return nil
}

// ServerConfig serves pair and requires client certificates signed by a CA
// in clientCAs, both as they are at each handshake.
func ServerConfig(pair *KeyPair, clientCAs *CAPool) (*tls.Config, error) {
	base, err := defaults()
	if err != nil {
		return nil, err
	}
	base.ClientAuth = tls.RequireAndVerifyClientCert
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cfg := base.Clone()
		cfg.GetConfigForClient = nil
		cfg.Certificates = []tls.Certificate{*pair.Current()}
		cfg.ClientCAs = clientCAs.Current()
		return cfg, nil
	}
	return base, nil
}

// ClientConfig presents pair (if not nil) and verifies the server against
// roots (if not nil; else the system roots) for serverName (if empty, the
// name dialled), each as they are at the handshake.
func ClientConfig(pair *KeyPair, roots *CAPool, serverName string) (*tls.Config, error) {
	base, err := defaults()
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: base.MinVersion, CipherSuites: base.CipherSuites, ServerName: serverName}
	if pair != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair.Current(), nil }
	}
	if roots != nil {
		// The standard verification reads a fixed RootCAs; verify against
		// the current pool here instead, with the same checks.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server presented no certificate")
			}
			intermediates := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: roots.Current(), Intermediates: intermediates, DNSName: cs.ServerName,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			return err
		}
	}
	return cfg, nil
}
