package bbs_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/gogo/protobuf/proto"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/bifrost/bbs"
	"github.com/iris-cf/iris/bifrost/bbs/bbsfakes"
	"github.com/iris-cf/iris/integration/testcerts"
)

func TestBBS(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "BBS Front Suite")
}

// certs are the suite's throwaway PKI: Iris's server identity, and a client
// identity signed by the CA Iris trusts for clients, as files the BBS
// client reads.
type certs struct {
	serverCAFile, serverCertFile, serverKeyFile string
	clientCAFile, clientCertFile, clientKeyFile string
	// strangerCertFile, strangerKeyFile are signed by a CA Iris does not trust.
	strangerCertFile, strangerKeyFile string
}

var suiteCerts certs

var _ = BeforeSuite(func() {
	dir := GinkgoT().TempDir()
	writeCA := func(name string) *testcerts.CA {
		ca, err := testcerts.NewCA(name)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(dir, name+".crt"), ca.PEM, 0o600)).To(Succeed())
		return ca
	}
	issue := func(ca *testcerts.CA, name string) (string, string) {
		leaf, err := ca.Issue(name)
		Expect(err).NotTo(HaveOccurred())
		certFile, keyFile, err := leaf.WriteFiles(dir, name)
		Expect(err).NotTo(HaveOccurred())
		return certFile, keyFile
	}
	serverCA, clientCA, strangerCA := writeCA("server-ca"), writeCA("client-ca"), writeCA("stranger-ca")
	suiteCerts.serverCAFile = filepath.Join(dir, "server-ca.crt")
	suiteCerts.clientCAFile = filepath.Join(dir, "client-ca.crt")
	suiteCerts.serverCertFile, suiteCerts.serverKeyFile = issue(serverCA, "iris")
	suiteCerts.clientCertFile, suiteCerts.clientKeyFile = issue(clientCA, "cloud-controller")
	suiteCerts.strangerCertFile, suiteCerts.strangerKeyFile = issue(strangerCA, "stranger")
})

// fixture is the BBS front behind an httptest mTLS server, with fakes
// behind its interfaces, a real domain store on a fake clock, and the
// real BBS Go client in front.
type fixture struct {
	desired *bbsfakes.FakeDesiredLRPs
	actual  *bbsfakes.FakeActualLRPs
	tasks   *bbsfakes.FakeTasks
	clock   *clocktesting.FakeClock
	hub     *bbs.EventHub
	server  *httptest.Server
	client  bbsclient.InternalClient
	logger  *lagertest.TestLogger
}

const maxBodyBytes = 1 << 20

func newFixture(subscriberBuffer int) *fixture {
	return newFixtureWith(subscriberBuffer, nil)
}

// newFixtureWith serves the task routes too when tasks is not nil.
func newFixtureWith(subscriberBuffer int, tasks *bbsfakes.FakeTasks) *fixture {
	f := &fixture{
		tasks:   tasks,
		desired: &bbsfakes.FakeDesiredLRPs{},
		actual:  &bbsfakes.FakeActualLRPs{},
		clock:   clocktesting.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)),
		logger:  lagertest.NewTestLogger("bbs-front"),
	}
	f.hub = bbs.NewEventHub(f.logger, subscriberBuffer)
	backends := bbs.Backends{
		DesiredLRPs: f.desired,
		ActualLRPs:  f.actual,
		Domains:     bbs.NewDomainStore(f.clock),
	}
	if tasks != nil {
		backends.Tasks = tasks
	}
	handler := bbs.NewHandler(f.logger, backends, f.hub, maxBodyBytes)

	f.server = httptest.NewUnstartedServer(handler)
	f.server.TLS = serverTLSConfig()
	f.server.StartTLS()
	// Cleanups run last-in first-out: the hub closes first, ending the
	// event streams, so the server's Close does not wait on them.
	DeferCleanup(f.server.Close)
	DeferCleanup(f.hub.Close)

	client, err := bbsclient.NewClient(f.server.URL, suiteCerts.serverCAFile, suiteCerts.clientCertFile, suiteCerts.clientKeyFile, 0, 0)
	Expect(err).NotTo(HaveOccurred())
	f.client = client
	return f
}

// serverTLSConfig requires a client certificate from the client CA, as
// Iris's mTLS listener does.
func serverTLSConfig() *tls.Config {
	pair, err := tls.LoadX509KeyPair(suiteCerts.serverCertFile, suiteCerts.serverKeyFile)
	Expect(err).NotTo(HaveOccurred())
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    caPool(suiteCerts.clientCAFile),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

// rawClient is an mTLS HTTP client for what the Go client cannot send:
// the .r2 read CC makes, JSON bodies, unknown paths, raw event streams.
func rawClient(certFile, keyFile string) *http.Client {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	Expect(err).NotTo(HaveOccurred())
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:      caPool(suiteCerts.serverCAFile),
		Certificates: []tls.Certificate{pair},
		MinVersion:   tls.VersionTLS12,
	}}}
}

func (f *fixture) post(path, contentType string, body []byte) *http.Response {
	client := rawClient(suiteCerts.clientCertFile, suiteCerts.clientKeyFile)
	response, err := client.Post(f.server.URL+path, contentType, bytes.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(response.Body.Close)
	return response
}

// postProto posts request as BBS clients do and decodes the 200 answer
// into response.
func (f *fixture) postProto(path string, request, response proto.Message) {
	body, err := proto.Marshal(request)
	Expect(err).NotTo(HaveOccurred())
	answer := f.post(path, "application/x-protobuf", body)
	Expect(answer.StatusCode).To(Equal(http.StatusOK))
	Expect(answer.Header.Get("Content-Type")).To(Equal("application/x-protobuf"))
	data, err := io.ReadAll(answer.Body)
	Expect(err).NotTo(HaveOccurred())
	Expect(proto.Unmarshal(data, response)).To(Succeed())
}

// ccDesiredLRP is a desired LRP as current CC builds one for a buildpack
// app: preloaded root fs, the lifecycle as a shared image layer and the
// droplet as an exclusive one, launcher run action, cf-router routes,
// metric tags with the dynamic instance tags.
func ccDesiredLRP(processGuid string) *models.DesiredLRP {
	appGuid := processGuid[:36]
	routes := models.Routes{}
	cfRouter := json.RawMessage(`[{"hostnames":["dora.example.com"],"port":8080,"route_service_url":null,"isolation_segment":null,"protocol":"http1","options":{}}]`)
	tcpRouter, internalRouter := json.RawMessage(`[]`), json.RawMessage(`[]`)
	routes["cf-router"] = &cfRouter
	routes["tcp-router"] = &tcpRouter
	routes["internal-router"] = &internalRouter
	return &models.DesiredLRP{
		ProcessGuid:    processGuid,
		Domain:         "cf-apps",
		LogGuid:        appGuid,
		MetricsGuid:    appGuid,
		RootFs:         "preloaded:cflinuxfs4",
		Instances:      2,
		MemoryMb:       256,
		DiskMb:         1024,
		MaxPids:        1024,
		CpuWeight:      1,
		Annotation:     "1764583200.0",
		Ports:          []uint32{8080},
		StartTimeoutMs: 60000,
		Routes:         &routes,
		LogSource:      "CELL",
		MetricTags: map[string]*models.MetricTagValue{
			"source_id":           {Static: appGuid},
			"app_id":              {Static: appGuid},
			"space_id":            {Static: "b3c8d5a0-0000-4000-8000-000000000002"},
			"organization_id":     {Static: "b3c8d5a0-0000-4000-8000-000000000003"},
			"instance_id":         {Dynamic: models.MetricTagDynamicValueIndex},
			"process_instance_id": {Dynamic: models.MetricTagDynamicValueInstanceGuid},
		},
		ImageLayers: []*models.ImageLayer{
			{
				Name: "cflinuxfs4-lifecycle", Url: "https://file-server.service.cf.internal:8447/v1/static/buildpack_app_lifecycle/buildpack_app_lifecycle.tgz",
				DestinationPath: "/tmp/lifecycle", LayerType: models.LayerTypeShared, MediaType: models.MediaTypeTgz,
			},
			{
				Name: "droplet", Url: "https://cc-uploader.service.cf.internal:9091/v1/static/droplet.tgz",
				DestinationPath: "/home/vcap", LayerType: models.LayerTypeExclusive, MediaType: models.MediaTypeTgz,
				DigestAlgorithm: models.DigestAlgorithmSha256, DigestValue: "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4",
			},
		},
		LegacyDownloadUser: "vcap",
		Action: models.WrapAction(models.Codependent(&models.RunAction{
			Path: "/tmp/lifecycle/launcher",
			Args: []string{"app", "bundle exec rackup", `{"start_command":"bundle exec rackup"}`},
			User: "vcap",
			Env:  []*models.EnvironmentVariable{{Name: "PORT", Value: "8080"}},
		})),
	}
}

func caPool(file string) *x509.CertPool {
	pem, err := os.ReadFile(file)
	Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(pem)).To(BeTrue())
	return pool
}
