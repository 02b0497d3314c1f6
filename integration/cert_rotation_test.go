package integration_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("Certificate rotation", func() {
	It("serves a rotated server certificate on the next connection, without a restart", func() {
		leaf, err := serverCA.Issue("iris.local")
		Expect(err).NotTo(HaveOccurred())
		block, _ := pem.Decode(leaf.CertPEM)
		rotated, err := x509.ParseCertificate(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		client, err := clientLeaf.TLSCertificate()
		Expect(err).NotTo(HaveOccurred())

		served := func(g Gomega) string {
			conn, err := tls.Dial("tcp", strings.TrimPrefix(irisTLSURL, "https://"), &tls.Config{
				RootCAs: serverCA.Pool(), ServerName: "iris.local", Certificates: []tls.Certificate{client},
			})
			g.Expect(err).NotTo(HaveOccurred())
			defer conn.Close()
			return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
		}
		Expect(served(Default)).NotTo(Equal(rotated.SerialNumber.String()))

		// As the kubelet updates a mounted Secret.
		_, _, err = leaf.WriteFiles(serverCertDir, "server")
		Expect(err).NotTo(HaveOccurred())
		Eventually(served, 5*time.Second).Should(Equal(rotated.SerialNumber.String()))

		// CC's requests keep working over the new certificate.
		resp, err := mtlsClient(clientLeaf).Get(irisTLSURL + "/apps")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(200))
	})
})
