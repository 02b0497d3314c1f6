package integration_test

import (
	"fmt"
	"os"
	"path/filepath"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/logs/ingresstest"
)

// loggregator is the suite's Loggregator v2 ingress: a real gRPC server
// with mutual TLS that records every envelope Iris sends.
type loggregator struct {
	*ingresstest.Server
	// Files for Iris's config.
	caFile, certFile, keyFile string
}

func startLoggregator(dir string) *loggregator {
	ca := newCA("loggregator-ca")
	serverLeaf, err := ca.Issue("metron")
	Expect(err).NotTo(HaveOccurred())
	cert, err := serverLeaf.TLSCertificate()
	Expect(err).NotTo(HaveOccurred())
	server, err := ingresstest.Start(ingresstest.Options{Cert: cert, ClientCAs: ca.Pool()})
	Expect(err).NotTo(HaveOccurred())

	clientLeaf, err := ca.Issue("iris")
	Expect(err).NotTo(HaveOccurred())
	certFile, keyFile, err := clientLeaf.WriteFiles(dir, "loggregator-client")
	Expect(err).NotTo(HaveOccurred())
	caFile := filepath.Join(dir, "loggregator-ca.crt")
	Expect(os.WriteFile(caFile, ca.PEM, 0o600)).To(Succeed())
	return &loggregator{Server: server, caFile: caFile, certFile: certFile, keyFile: keyFile}
}

// baseConfig is the YAML every extra Iris process in the suite starts
// from: the cluster, the suite's namespace and this ingress.
func (l *loggregator) baseConfig() string {
	return fmt.Sprintf(`
log_level: debug
kubeconfig: %q
workloads_namespaces: [%q]
loggregator:
  ingress_address: %q
  ca_cert_file: %q
  cert_file: %q
  key_file: %q
`, os.Getenv("KUBECONFIG"), namespace, l.Addr(), l.caFile, l.certFile, l.keyFile)
}

// logs returns the log envelopes of sourceID with the given source type,
// in arrival order.
func (l *loggregator) logs(sourceID, sourceType string) []*loggregator_v2.Envelope {
	var out []*loggregator_v2.Envelope
	for _, e := range l.Envelopes() {
		if e.GetLog() != nil && e.SourceId == sourceID && e.Tags["source_type"] == sourceType {
			out = append(out, e)
		}
	}
	return out
}

// payloads returns the log payloads of sourceID with sourceType.
func (l *loggregator) payloads(sourceID, sourceType string) []string {
	var out []string
	for _, e := range l.logs(sourceID, sourceType) {
		out = append(out, string(e.GetLog().GetPayload()))
	}
	return out
}

// gauges returns the gauge envelopes of sourceID.
func (l *loggregator) gauges(sourceID string) []*loggregator_v2.Envelope {
	var out []*loggregator_v2.Envelope
	for _, e := range l.Envelopes() {
		if e.GetGauge() != nil && e.SourceId == sourceID {
			out = append(out, e)
		}
	}
	return out
}
