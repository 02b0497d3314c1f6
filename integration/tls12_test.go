package integration_test

import (
	"crypto/tls"
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("The mTLS API", func() {
	// The suite's server certificate has an ECDSA key (testcerts); only
	// ECDHE-RSA suites for TLS 1.2 made every TLS 1.2 handshake fail.
	It("serves a TLS 1.2-only client against its ECDSA server certificate", func() {
		client := mtlsClient(clientLeaf)
		transport := client.Transport.(*http.Transport)
		transport.TLSClientConfig.MaxVersion = tls.VersionTLS12
		DeferCleanup(transport.CloseIdleConnections)
		resp, err := client.Get(irisTLSURL + "/healthz")
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Expect(resp.TLS.Version).To(Equal(uint16(tls.VersionTLS12)))
	})
})
