// Command certgen writes the PKI of the local test cluster (scripts/cluster):
// a CA, the kube-apiserver serving certificate, client certificates for the
// admin and each control-plane component, and the service-account signing
// key pair. Existing files are left alone, so it is safe to run repeatedly.
//
//	certgen -dir DIR [-sans 127.0.0.1,localhost,...]
//
// Files (PEM): ca.{crt,key}, apiserver.{crt,key}, admin.{crt,key},
// controller-manager.{crt,key}, scheduler.{crt,key}, kwok.{crt,key},
// front-proxy-client.{crt,key}, metrics-server.{crt,key}, sa.key (private), sa.pub (public).
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const validity = 10 * 365 * 24 * time.Hour

// clients are the client certificates to issue: file stem, CN and groups (O).
var clients = []struct {
	name, cn string
	groups   []string
}{
	{"admin", "iris-admin", []string{"system:masters"}},
	{"controller-manager", "system:kube-controller-manager", nil},
	{"scheduler", "system:kube-scheduler", nil},
	// KWOK acts as the kubelet of every node and patches pods, nodes and leases.
	{"kwok", "kwok", []string{"system:masters"}},
	// The apiserver's front-proxy identity (--proxy-client-cert-file); with
	// --requestheader-client-ca-file set, controller-manager and scheduler find
	// the request-header CA they look for in kube-system.
	{"front-proxy-client", "front-proxy-client", nil},
	// metrics-server lists nodes and pods, reads the request-header CA in
	// kube-system and delegates authn/authz (TokenReview, SubjectAccessReview).
	{"metrics-server", "system:metrics-server", []string{"system:masters"}},
	// The apiserver's identity towards the real kubelet (logs, exec,
	// port-forward), which authorizes it with a SubjectAccessReview.
	{"kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}},
	// The real node's kubelet (scripts/cluster-real-node.sh), as the Node
	// authorizer knows nodes.
	{"real-node", "system:node:iris-real-node", []string{"system:nodes"}},
}

func main() {
	dir := flag.String("dir", "", "output directory (required)")
	sans := flag.String("sans", "127.0.0.1,localhost,kubernetes,kubernetes.default,kubernetes.default.svc,kubernetes.default.svc.cluster.local",
		"comma-separated IPs and DNS names for the kube-apiserver serving certificate")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "certgen: -dir is required")
		os.Exit(2)
	}
	if err := run(*dir, strings.Split(*sans, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "certgen:", err)
		os.Exit(1)
	}
}

func run(dir string, sans []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if exists(filepath.Join(dir, "ca.crt")) && exists(filepath.Join(dir, "sa.pub")) {
		return nil // already generated
	}

	caKey, err := newKey()
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "iris-local-cluster-ca"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caCert, err := issue(dir, "ca", caTmpl, caKey, nil, caKey)
	if err != nil {
		return err
	}

	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, s := range sans {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if ip := net.ParseIP(s); ip != nil {
			serving.IPAddresses = append(serving.IPAddresses, ip)
		} else {
			serving.DNSNames = append(serving.DNSNames, s)
		}
	}
	if err := issueNew(dir, "apiserver", serving, caCert, caKey); err != nil {
		return err
	}

	for _, c := range clients {
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: c.cn, Organization: c.groups},
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if err := issueNew(dir, c.name, tmpl, caCert, caKey); err != nil {
			return err
		}
	}

	saKey, err := newKey()
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, "sa.key"), saKey); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, "sa.pub"), "PUBLIC KEY", pub, 0o644)
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func issueNew(dir, name string, tmpl, parent *x509.Certificate, parentKey crypto.Signer) error {
	key, err := newKey()
	if err != nil {
		return err
	}
	_, err = issue(dir, name, tmpl, key, parent, parentKey)
	return err
}

// issue signs tmpl (self-signed when parent is nil) and writes name.crt and name.key.
func issue(dir, name string, tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(validity)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	if err := writeKey(filepath.Join(dir, name+".key"), key); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}
