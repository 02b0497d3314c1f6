package integration_test

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/gogo/protobuf/proto"
	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"

	"github.com/iris-cf/iris/bifrost/bbs/bbstest"
)

// The oracle: the real Diego BBS v1.12.0 that scripts/cluster runs beside
// Kubernetes (no cells, no auctioneer) gets the same request as the suite's
// Iris, and both answers must match: HTTP status, content type, and the
// decoded protobuf response with its error type and message, after blanking
// only what legitimately differs (each entry says what and why).
//
// Requests go as raw protobuf POSTs, byte for byte what the Go client
// sends, so the wire is compared rather than what the client makes of it;
// the fixtures are created with the real Go client.
//
// Known differences that are deliberately not entries:
//   - Iris refuses a preloaded root_fs whose stack has no image
//     (bbs.stacks), a buildpack LRP when lrp.runner_image is not set, a
//     privileged one (unless allowed) and more than one placement tag with
//     InvalidRequest; the real BBS accepts them (bbs_test.go covers Iris's
//     refusals).
//   - An update request without an update of an existing LRP: the real
//     BBS dereferences it and the connection drops; Iris answers
//     InvalidRequest "Invalid field: update" (of an unknown guid both
//     answer ResourceNotFound: an entry).
//   - A process guid that is not <guid>-<version> (CC always sends that
//     form): Iris answers InvalidRequest, the real BBS accepts it.
//   - Bodies over api max_request_body_bytes: Iris answers InvalidRequest,
//     the real BBS reads any size.
//   - The real BBS serves the cell, evacuation and ActualLRPGroup routes,
//     the rep's task routes (start, complete, fail, reject) and resolving
//     and delete; Iris answers them as unknown routes.
//   - Iris refuses a task whose root_fs is neither docker:// nor a
//     preloaded stack it has an image for, and a privileged one (unless
//     allowed), with InvalidRequest; the real BBS accepts them.
//   - A task's image credentials and environment are not answered by get
//     or list (they live in Secrets only); the callback URL without its
//     password.

// bbsEndpoint is one BBS server the oracle talks to.
type bbsEndpoint struct {
	name   string
	url    string
	http   *http.Client
	client bbsclient.InternalClient
}

// wireAnswer is what a BBS answered, comparable between servers.
type wireAnswer struct {
	Status      int
	ContentType string
	// Text is the body of a non-protobuf answer (a 404, a 405).
	Text string
	// Response is the decoded, normalized protobuf response as JSON, so a
	// mismatch shows readably.
	Response string
}

// bbsCall is one request to a BBS route and how its answer is read.
type bbsCall struct {
	method string // POST unless set
	path   string
	// irisPath, when set, is the path Iris is asked instead (an unserved
	// route compared with an unknown one).
	irisPath string
	body     func(o *oracleLRP) []byte
	// response is the route's empty response message; nil when the answer
	// is not protobuf.
	response func() proto.Message
	// normalize blanks what legitimately differs between the two servers.
	normalize func(o *oracleLRP, m proto.Message)
}

// oracleCase is one table entry.
type oracleCase struct {
	// given creates the same fixtures in both servers.
	given func(o *oracleLRP)
	call  bbsCall
	// want is what the real BBS's (normalized) answer must be, so an entry
	// cannot pass by both servers answering the same wrong thing.
	want types.GomegaMatcher
	// status is the HTTP status the real BBS must answer (200 unless set).
	status int
	// then, when set, is a read right after the call whose answers must
	// match as well.
	then *bbsCall
}

// oracleLRP is an entry's fixture: one LRP as CC builds it, with fresh
// guids, and the names an entry derives from it.
type oracleLRP struct {
	lrp *models.DesiredLRP
	// domain is a domain name of this entry's own.
	domain string
	// task is a `cf run-task` as CC builds it (no callback: the real BBS
	// would post it), under taskGUID.
	task     *models.TaskDefinition
	taskGUID string
}

func (o *oracleLRP) guid() string { return o.lrp.ProcessGuid }

// unknownGUID is a process guid neither server knows.
func (o *oracleLRP) unknownGUID() string { return uuid.NewString() + "-" + uuid.NewString() }

var _ = Describe("The BBS front against the real BBS (oracle)", Label("bbs-oracle"), func() {
	var (
		oracle, iris *bbsEndpoint
		logger       *lagertest.TestLogger
	)

	BeforeEach(func() {
		if os.Getenv("IRIS_CLUSTER_BBS") == "false" {
			Skip("the cluster runs without the real BBS (IRIS_CLUSTER_BBS=false)")
		}
		logger = lagertest.NewTestLogger("bbs-oracle")
		oracle = realBBSEndpoint()
		iris = irisBBSEndpoint()
	})

	// desire creates o's LRP in both servers, removed again when the spec
	// ends, and waits until Iris's caches show it.
	desire := func(o *oracleLRP) {
		GinkgoHelper()
		for _, e := range []*bbsEndpoint{oracle, iris} {
			Expect(e.client.DesireLRP(logger, "oracle", o.lrp)).To(Succeed(), e.name)
			DeferCleanup(func() { _ = e.client.RemoveDesiredLRP(logger, "oracle", o.guid()) })
		}
		Eventually(func() error {
			_, err := iris.client.DesiredLRPByProcessGuid(logger, "oracle", o.guid())
			return err
		}, 10*time.Second).Should(Succeed())
	}
	// desireAtOnce creates o's LRP in both servers and does not wait: what
	// follows is what CC does right after a desire.
	desireAtOnce := func(o *oracleLRP) {
		GinkgoHelper()
		for _, e := range []*bbsEndpoint{oracle, iris} {
			Expect(e.client.DesireLRP(logger, "oracle", o.lrp)).To(Succeed(), e.name)
			DeferCleanup(func() { _ = e.client.RemoveDesiredLRP(logger, "oracle", o.guid()) })
		}
	}
	// desireWithPods also waits until every instance has its pod in Iris's
	// caches (a pod's instance guid is set from CLAIMED on).
	desireWithPods := func(o *oracleLRP) {
		GinkgoHelper()
		desire(o)
		Eventually(func(g Gomega) {
			actual, err := iris.client.ActualLRPs(logger, "oracle", models.ActualLRPFilter{ProcessGuid: o.guid()})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(actual).To(HaveLen(int(o.lrp.Instances)))
			g.Expect(actual).To(HaveEach(HaveField("ActualLRPInstanceKey.InstanceGuid", Not(BeEmpty()))))
		}, 60*time.Second).Should(Succeed())
	}
	// desireTask creates o's task in both servers; it is cancelled when
	// the spec ends (neither server deletes a task without a callback for
	// two minutes after it completed).
	desireTask := func(o *oracleLRP) {
		GinkgoHelper()
		for _, e := range []*bbsEndpoint{oracle, iris} {
			Expect(e.client.DesireTask(logger, "oracle", o.taskGUID, "cf-tasks", o.task)).To(Succeed(), e.name)
			DeferCleanup(func() { _ = e.client.CancelTask(logger, "oracle", o.taskGUID) })
		}
	}
	cancelTask := func(o *oracleLRP) {
		GinkgoHelper()
		desireTask(o)
		for _, e := range []*bbsEndpoint{oracle, iris} {
			Expect(e.client.CancelTask(logger, "oracle", o.taskGUID)).To(Succeed(), e.name)
		}
	}
	upsertDomains := func(o *oracleLRP) {
		GinkgoHelper()
		for _, e := range []*bbsEndpoint{oracle, iris} {
			Expect(e.client.UpsertDomain(logger, "oracle", o.domain+"-a", 0)).To(Succeed(), e.name)
			Expect(e.client.UpsertDomain(logger, "oracle", o.domain+"-b", 120*time.Second)).To(Succeed(), e.name)
		}
	}

	DescribeTable("answers CC's, tps-watcher's and route-emitter's calls as the real BBS does",
		func(c oracleCase) {
			lrp := bbsDockerLRP(2, "dora-oracle.example.com")
			o := &oracleLRP{lrp: lrp, domain: "oracle-" + lrp.ProcessGuid[:8], taskGUID: uuid.NewString()}
			o.task = bbstest.DockerRunTask(bbstest.Task{
				Space:        bbstest.Space{AppName: "dora", SpaceGUID: "space-guid", SpaceName: "dev", OrgGUID: "org-guid", OrgName: "acme"},
				AppGUID:      lrp.ProcessGuid[:36],
				Name:         "oracle",
				LifecycleURL: "https://file-server.service.cf.internal:8447/v1/static/docker_app_lifecycle/docker_app_lifecycle.tgz",
			}, "cloudfoundry/dora#latest", "echo oracle")
			if c.given != nil {
				c.given(o)
			}
			want, decoded := oracle.ask(c.call, o)
			Expect(want.Status).To(Equal(cmp.Or(c.status, http.StatusOK)), "the real BBS's status: %+v", want)
			Expect(decoded).To(c.want, "the real BBS answered otherwise than the entry expects: %+v", want)
			got, _ := iris.ask(c.call, o)
			Expect(got).To(Equal(want), "Iris answered otherwise than the real BBS")
			if c.then == nil {
				return
			}
			// At once, as CC reads right after it writes: Iris must read
			// its own writes although its lists come from informer caches.
			want, _ = oracle.ask(*c.then, o)
			got, _ = iris.ask(*c.then, o)
			Expect(got).To(Equal(want), "Iris's answer to the read right after the call differs from the real BBS's")
		},

		// Ping and routing.
		Entry("ping: available", oracleCase{
			call: bbsCall{path: "/v1/ping", body: noBody, response: func() proto.Message { return &models.PingResponse{} }},
			want: Equal(&models.PingResponse{Available: true}),
		}),
		Entry("an unknown route: a plain-text 404 (the Go client's EndpointNotFound)", oracleCase{
			call:   bbsCall{path: "/v1/no_such_route", body: noBody},
			want:   BeNil(),
			status: http.StatusNotFound,
		}),
		Entry("a route with a trailing slash: 404", oracleCase{
			call:   bbsCall{path: "/v1/ping/", body: noBody},
			want:   BeNil(),
			status: http.StatusNotFound,
		}),
		Entry("a GET on a POST route: 405", oracleCase{
			call:   bbsCall{method: http.MethodGet, path: "/v1/ping", body: noBody},
			want:   BeNil(),
			status: http.StatusMethodNotAllowed,
		}),
		Entry("a JSON body: InvalidRequest, the request received is invalid", oracleCase{
			call: bbsCall{path: "/v1/desired_lrp/desire.r2", body: func(*oracleLRP) []byte { return []byte(`{"desired_lrp":{"process_guid":"x"}}`) },
				response: lifecycleResponse},
			want: haveBBSError(models.ErrBadRequest),
		}),

		// Domains.
		Entry("domains/upsert", oracleCase{
			call: bbsCall{path: "/v1/domains/upsert", body: func(o *oracleLRP) []byte {
				return marshal(&models.UpsertDomainRequest{Domain: o.domain, Ttl: 120})
			}, response: func() proto.Message { return &models.UpsertDomainResponse{} }},
			want: Equal(&models.UpsertDomainResponse{}),
			then: &domainsList,
		}),
		Entry("domains/upsert without a domain: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/domains/upsert", body: func(o *oracleLRP) []byte {
				return marshal(&models.UpsertDomainRequest{Ttl: 120})
			}, response: func() proto.Message { return &models.UpsertDomainResponse{} }},
			want: haveBBSErrorType(models.Error_InvalidRequest),
		}),
		Entry("domains/list: fresh domains, with and without TTL (only this entry's compared: both servers are shared)", oracleCase{
			given: upsertDomains,
			call:  domainsList,
			want:  HaveField("Domains", HaveLen(2)),
		}),

		// desire.r2.
		Entry("desire.r2: success, then get_by_process_guid.r2 answers the LRP", oracleCase{
			given: func(o *oracleLRP) {
				for _, e := range []*bbsEndpoint{oracle, iris} {
					DeferCleanup(func() { _ = e.client.RemoveDesiredLRP(logger, "oracle", o.guid()) })
				}
			},
			call: bbsCall{path: "/v1/desired_lrp/desire.r2", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesireLRPRequest{DesiredLrp: o.lrp})
			}, response: lifecycleResponse},
			want: Equal(&models.DesiredLRPLifecycleResponse{}),
			then: &getR2,
		}),
		Entry("desire.r2 of a taken process guid: ResourceExists", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/desired_lrp/desire.r2", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesireLRPRequest{DesiredLrp: o.lrp})
			}, response: lifecycleResponse},
			want: haveBBSError(models.ErrResourceExists),
		}),
		Entry("desire.r2 of a process guid desired a moment ago: ResourceExists", oracleCase{
			given: desireAtOnce,
			call: bbsCall{path: "/v1/desired_lrp/desire.r2", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesireLRPRequest{DesiredLrp: o.lrp})
			}, response: lifecycleResponse},
			want: haveBBSError(models.ErrResourceExists),
		}),
		Entry("desire.r2 of an LRP with every field CC sets, image credentials included; get_by_process_guid.r2 (credentials blanked: Iris keeps them in a pull Secret only)", oracleCase{
			given: func(o *oracleLRP) {
				ccFullLRP(o.lrp)
				for _, e := range []*bbsEndpoint{oracle, iris} {
					DeferCleanup(func() { _ = e.client.RemoveDesiredLRP(logger, "oracle", o.guid()) })
				}
			},
			call: bbsCall{path: "/v1/desired_lrp/desire.r2", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesireLRPRequest{DesiredLrp: o.lrp})
			}, response: lifecycleResponse},
			want: Equal(&models.DesiredLRPLifecycleResponse{}),
			then: &bbsCall{path: "/v1/desired_lrps/get_by_process_guid.r2", body: byGUID, response: desiredLRPResponse,
				normalize: func(o *oracleLRP, m proto.Message) {
					blankEpochs(o, m)
					if lrp := m.(*models.DesiredLRPResponse).DesiredLrp; lrp != nil {
						lrp.ImageUsername, lrp.ImagePassword = "", ""
					}
				}},
		}),
		Entry("desire.r2 without a process guid: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/desired_lrp/desire.r2", body: func(o *oracleLRP) []byte {
				o.lrp.ProcessGuid = ""
				return marshal(&models.DesireLRPRequest{DesiredLrp: o.lrp})
			}, response: lifecycleResponse},
			want: haveBBSErrorType(models.Error_InvalidRequest),
		}),
		Entry("desire.r2 without metric tags: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/desired_lrp/desire.r2", body: func(o *oracleLRP) []byte {
				o.lrp.MetricTags = nil
				return marshal(&models.DesireLRPRequest{DesiredLrp: o.lrp})
			}, response: lifecycleResponse},
			want: haveBBSErrorType(models.Error_InvalidRequest),
		}),
		Entry("desire.r2 with several invalid fields: InvalidRequest listing them in BBS's order", oracleCase{
			call: bbsCall{path: "/v1/desired_lrp/desire.r2", body: func(o *oracleLRP) []byte {
				o.lrp.Domain, o.lrp.RootFs, o.lrp.Instances, o.lrp.CpuWeight = "", "", -1, 101
				return marshal(&models.DesireLRPRequest{DesiredLrp: o.lrp})
			}, response: lifecycleResponse},
			want: haveBBSErrorType(models.Error_InvalidRequest),
		}),
		Entry("desire.r2 without an LRP: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/desired_lrp/desire.r2", body: noBody, response: lifecycleResponse},
			want: haveBBSErrorType(models.Error_InvalidRequest),
		}),

		// update.
		Entry("update: instances, routes, annotation, metric tags; then get_by_process_guid.r2 shows them", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/desired_lrp/update", body: func(o *oracleLRP) []byte {
				routes := bbsRoutes("dora-oracle-2.example.com")
				update := &models.DesiredLRPUpdate{Routes: &routes, MetricTags: o.lrp.MetricTags}
				update.MetricTags["app_name"] = &models.MetricTagValue{Static: "dora-renamed"}
				update.SetInstances(3)
				update.SetAnnotation("1764583300.0")
				return marshal(&models.UpdateDesiredLRPRequest{ProcessGuid: o.guid(), Update: update})
			}, response: lifecycleResponse},
			want: Equal(&models.DesiredLRPLifecycleResponse{}),
			then: &getR2,
		}),
		Entry("update right after desire.r2; then get_by_process_guid.r2", oracleCase{
			given: desireAtOnce,
			call: bbsCall{path: "/v1/desired_lrp/update", body: func(o *oracleLRP) []byte {
				update := &models.DesiredLRPUpdate{}
				update.SetInstances(1)
				update.SetAnnotation("1764583400.0")
				return marshal(&models.UpdateDesiredLRPRequest{ProcessGuid: o.guid(), Update: update})
			}, response: lifecycleResponse},
			want: Equal(&models.DesiredLRPLifecycleResponse{}),
			then: &getR2,
		}),
		Entry("remove right after desire.r2; then get_by_process_guid.r2", oracleCase{
			given: desireAtOnce,
			call: bbsCall{path: "/v1/desired_lrp/remove", body: func(o *oracleLRP) []byte {
				return marshal(&models.RemoveDesiredLRPRequest{ProcessGuid: o.guid()})
			}, response: lifecycleResponse},
			want: Equal(&models.DesiredLRPLifecycleResponse{}),
			then: &getR2,
		}),
		Entry("update of an unknown guid: ResourceNotFound", oracleCase{
			call: bbsCall{path: "/v1/desired_lrp/update", body: func(o *oracleLRP) []byte {
				update := &models.DesiredLRPUpdate{}
				update.SetInstances(2)
				return marshal(&models.UpdateDesiredLRPRequest{ProcessGuid: o.unknownGUID(), Update: update})
			}, response: lifecycleResponse},
			want: haveBBSError(models.ErrResourceNotFound),
		}),
		Entry("update without an update, of an unknown guid: ResourceNotFound (BBS looks the LRP up first)", oracleCase{
			call: bbsCall{path: "/v1/desired_lrp/update", body: func(o *oracleLRP) []byte {
				return marshal(&models.UpdateDesiredLRPRequest{ProcessGuid: o.unknownGUID()})
			}, response: lifecycleResponse},
			want: haveBBSError(models.ErrResourceNotFound),
		}),
		Entry("update to negative instances: InvalidRequest", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/desired_lrp/update", body: func(o *oracleLRP) []byte {
				update := &models.DesiredLRPUpdate{}
				update.SetInstances(-1)
				return marshal(&models.UpdateDesiredLRPRequest{ProcessGuid: o.guid(), Update: update})
			}, response: lifecycleResponse},
			want: haveBBSErrorType(models.Error_InvalidRequest),
			then: &getR2,
		}),
		Entry("update without a process guid: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/desired_lrp/update", body: func(o *oracleLRP) []byte {
				update := &models.DesiredLRPUpdate{}
				update.SetInstances(2)
				return marshal(&models.UpdateDesiredLRPRequest{Update: update})
			}, response: lifecycleResponse},
			want: haveBBSErrorType(models.Error_InvalidRequest),
		}),

		// remove.
		Entry("remove: success, then get_by_process_guid.r2 answers ResourceNotFound", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/desired_lrp/remove", body: func(o *oracleLRP) []byte {
				return marshal(&models.RemoveDesiredLRPRequest{ProcessGuid: o.guid()})
			}, response: lifecycleResponse},
			want: Equal(&models.DesiredLRPLifecycleResponse{}),
			then: &getR2,
		}),
		Entry("desire.r2 right after remove of the same process guid: success", oracleCase{
			given: func(o *oracleLRP) {
				desire(o)
				for _, e := range []*bbsEndpoint{oracle, iris} {
					Expect(e.client.RemoveDesiredLRP(logger, "oracle", o.guid())).To(Succeed(), e.name)
				}
			},
			call: bbsCall{path: "/v1/desired_lrp/desire.r2", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesireLRPRequest{DesiredLrp: o.lrp})
			}, response: lifecycleResponse},
			want: Equal(&models.DesiredLRPLifecycleResponse{}),
			then: &getR2,
		}),
		Entry("remove of an unknown guid: ResourceNotFound", oracleCase{
			call: bbsCall{path: "/v1/desired_lrp/remove", body: func(o *oracleLRP) []byte {
				return marshal(&models.RemoveDesiredLRPRequest{ProcessGuid: o.unknownGUID()})
			}, response: lifecycleResponse},
			want: haveBBSError(models.ErrResourceNotFound),
		}),
		Entry("remove without a process guid: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/desired_lrp/remove", body: noBody, response: lifecycleResponse},
			want: haveBBSErrorType(models.Error_InvalidRequest),
		}),

		// Desired LRP reads.
		Entry("get_by_process_guid.r2: the LRP in V2 form (modification tag epoch blanked: a fresh guid on each server)", oracleCase{
			given: desire,
			call:  getR2,
			want:  HaveField("DesiredLrp.ProcessGuid", Not(BeEmpty())),
		}),
		Entry("get_by_process_guid.r2 of an LRP with image layers: the V2 downgrade turns the shared one into a cached dependency, the exclusive one into a setup download", oracleCase{
			given: func(o *oracleLRP) {
				withImageLayers(o.lrp)
				desire(o)
			},
			call: getR2,
			want: HaveField("DesiredLrp", And(
				HaveField("ImageLayers", BeEmpty()),
				HaveField("CachedDependencies", HaveLen(1)),
				HaveField("Setup", Not(BeNil())),
			)),
		}),
		Entry("get_by_process_guid.r3 of an LRP with image layers: kept as layers", oracleCase{
			given: func(o *oracleLRP) {
				withImageLayers(o.lrp)
				desire(o)
			},
			call: bbsCall{path: "/v1/desired_lrps/get_by_process_guid.r3", body: byGUID, response: desiredLRPResponse, normalize: blankEpochs},
			want: HaveField("DesiredLrp.ImageLayers", HaveLen(2)),
		}),
		Entry("get_by_process_guid.r2 of an unknown guid: ResourceNotFound", oracleCase{
			call: bbsCall{path: "/v1/desired_lrps/get_by_process_guid.r2", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesiredLRPByProcessGuidRequest{ProcessGuid: o.unknownGUID()})
			}, response: desiredLRPResponse},
			want: haveBBSError(models.ErrResourceNotFound),
		}),
		Entry("get_by_process_guid.r2 without a guid: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/desired_lrps/get_by_process_guid.r2", body: noBody, response: desiredLRPResponse},
			want: haveBBSErrorType(models.Error_InvalidRequest),
		}),
		Entry("get_by_process_guid.r3: the LRP in V3 form (epoch blanked)", oracleCase{
			given: desire,
			call:  bbsCall{path: "/v1/desired_lrps/get_by_process_guid.r3", body: byGUID, response: desiredLRPResponse, normalize: blankEpochs},
			want:  HaveField("DesiredLrp.ProcessGuid", Not(BeEmpty())),
		}),
		Entry("get_by_process_guid.r3 of an unknown guid: ResourceNotFound", oracleCase{
			call: bbsCall{path: "/v1/desired_lrps/get_by_process_guid.r3", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesiredLRPByProcessGuidRequest{ProcessGuid: o.unknownGUID()})
			}, response: desiredLRPResponse},
			want: haveBBSError(models.ErrResourceNotFound),
		}),
		Entry("desired_lrp_scheduling_infos/list, CC's sync by domain cf-apps (restricted to this LRP and an unknown guid: both servers are shared; epoch blanked)", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/desired_lrp_scheduling_infos/list", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesiredLRPsRequest{Domain: "cf-apps", ProcessGuids: []string{o.guid(), o.unknownGUID()}})
			}, response: func() proto.Message { return &models.DesiredLRPSchedulingInfosResponse{} }, normalize: blankEpochs},
			want: HaveField("DesiredLrpSchedulingInfos", HaveLen(1)),
		}),
		Entry("desired_lrp_scheduling_infos/list of another domain: none", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/desired_lrp_scheduling_infos/list", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesiredLRPsRequest{Domain: o.domain, ProcessGuids: []string{o.guid()}})
			}, response: func() proto.Message { return &models.DesiredLRPSchedulingInfosResponse{} }},
			want: Equal(&models.DesiredLRPSchedulingInfosResponse{}),
		}),
		Entry("desired_lrp_routing_infos/list (this LRP; epoch blanked)", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/desired_lrp_routing_infos/list", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesiredLRPsRequest{ProcessGuids: []string{o.guid()}})
			}, response: desiredLRPsResponse, normalize: blankEpochs},
			want: HaveField("DesiredLrps", HaveLen(1)),
		}),
		Entry("desired_lrps/list.r3 by domain and guid (epoch blanked)", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/desired_lrps/list.r3", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesiredLRPsRequest{Domain: "cf-apps", ProcessGuids: []string{o.guid()}})
			}, response: desiredLRPsResponse, normalize: blankEpochs},
			want: HaveField("DesiredLrps", HaveLen(1)),
		}),
		Entry("desired_lrps/list.r3 by app guid (epoch blanked)", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/desired_lrps/list.r3", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesiredLRPsRequest{AppGuids: []string{o.guid()[:36]}})
			}, response: desiredLRPsResponse, normalize: blankEpochs},
			want: HaveField("DesiredLrps", HaveLen(1)),
		}),

		// Actual LRPs. The real BBS has no cells: its instances stay
		// UNCLAIMED, while Iris's run on KWOK nodes. Compared: which
		// instances are listed (process guid, index, domain), in which
		// order, and their presence; blanked: state, instance key, net
		// info, since, crash fields, modification tag, routable.
		Entry("actual_lrps/list by process guid: one instance per index (state etc. blanked: no cells on the real BBS)", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/actual_lrps/list", body: func(o *oracleLRP) []byte {
				return marshal(&models.ActualLRPsRequest{ProcessGuid: o.guid()})
			}, response: actualLRPsResponse, normalize: blankInstanceState},
			want: HaveField("ActualLrps", HaveLen(2)),
		}),
		Entry("actual_lrps/list right after desire.r2: one instance per index (state etc. blanked)", oracleCase{
			given: desireAtOnce,
			call: bbsCall{path: "/v1/actual_lrps/list", body: func(o *oracleLRP) []byte {
				return marshal(&models.ActualLRPsRequest{ProcessGuid: o.guid()})
			}, response: actualLRPsResponse, normalize: blankInstanceState},
			want: HaveField("ActualLrps", HaveLen(2)),
		}),
		Entry("actual_lrps/list of an LRP no node can place: UNCLAIMED on both, compared whole but for since, modification tag and placement error (the real BBS has no auctioneer to set one)", oracleCase{
			given: func(o *oracleLRP) {
				o.lrp.MemoryMb = 4 * 1024 * 1024 // 4 TiB: more than any KWOK node has
				desire(o)
				Eventually(func(g Gomega) {
					actual, err := iris.client.ActualLRPs(logger, "oracle", models.ActualLRPFilter{ProcessGuid: o.guid()})
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(actual).To(HaveLen(2))
					g.Expect(actual).To(HaveEach(HaveField("PlacementError", Not(BeEmpty()))))
				}, 2*time.Minute).Should(Succeed(), "the StatefulSet controller and the scheduler are slow on a loaded cluster")
			},
			call: bbsCall{path: "/v1/actual_lrps/list", body: func(o *oracleLRP) []byte {
				return marshal(&models.ActualLRPsRequest{ProcessGuid: o.guid()})
			}, response: actualLRPsResponse, normalize: func(_ *oracleLRP, m proto.Message) {
				lrps := m.(*models.ActualLRPsResponse).ActualLrps
				for _, a := range lrps {
					a.Since, a.ModificationTag, a.PlacementError = 0, models.ModificationTag{}, ""
				}
				sortActualLRPs(lrps)
			}},
			want: HaveField("ActualLrps", HaveEach(HaveField("State", models.ActualLRPStateUnclaimed))),
		}),
		Entry("actual_lrps/list of an LRP desired with 0 instances: none", oracleCase{
			given: func(o *oracleLRP) {
				o.lrp.Instances = 0
				desire(o)
			},
			call: bbsCall{path: "/v1/actual_lrps/list", body: func(o *oracleLRP) []byte {
				return marshal(&models.ActualLRPsRequest{ProcessGuid: o.guid()})
			}, response: actualLRPsResponse},
			want: Equal(&models.ActualLRPsResponse{}),
		}),
		Entry("actual_lrps/list by process guid and index (state etc. blanked)", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/actual_lrps/list", body: func(o *oracleLRP) []byte {
				request := &models.ActualLRPsRequest{ProcessGuid: o.guid()}
				request.SetIndex(1)
				return marshal(request)
			}, response: actualLRPsResponse, normalize: blankInstanceState},
			want: HaveField("ActualLrps", ConsistOf(HaveField("ActualLRPKey.Index", BeEquivalentTo(1)))),
		}),
		Entry("actual_lrps/list by process guid and index 0, which differs from no index", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/actual_lrps/list", body: func(o *oracleLRP) []byte {
				request := &models.ActualLRPsRequest{ProcessGuid: o.guid()}
				request.SetIndex(0)
				return marshal(request)
			}, response: actualLRPsResponse, normalize: blankInstanceState},
			want: HaveField("ActualLrps", HaveLen(1)),
		}),
		Entry("actual_lrps/list by an index the LRP does not have: none", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/actual_lrps/list", body: func(o *oracleLRP) []byte {
				request := &models.ActualLRPsRequest{ProcessGuid: o.guid()}
				request.SetIndex(7)
				return marshal(request)
			}, response: actualLRPsResponse},
			want: Equal(&models.ActualLRPsResponse{}),
		}),
		Entry("actual_lrps/list of an unknown guid: none, no error", oracleCase{
			call: bbsCall{path: "/v1/actual_lrps/list", body: func(o *oracleLRP) []byte {
				return marshal(&models.ActualLRPsRequest{ProcessGuid: o.unknownGUID()})
			}, response: actualLRPsResponse},
			want: Equal(&models.ActualLRPsResponse{}),
		}),
		Entry("actual_lrps/list by an unknown cell id: none (by a known cell: the real BBS has none to compare)", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/actual_lrps/list", body: func(o *oracleLRP) []byte {
				return marshal(&models.ActualLRPsRequest{CellId: "cell-" + o.domain})
			}, response: actualLRPsResponse},
			want: Equal(&models.ActualLRPsResponse{}),
		}),
		Entry("actual_lrps/list by guid in another domain: none", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/actual_lrps/list", body: func(o *oracleLRP) []byte {
				return marshal(&models.ActualLRPsRequest{ProcessGuid: o.guid(), Domain: o.domain})
			}, response: actualLRPsResponse},
			want: Equal(&models.ActualLRPsResponse{}),
		}),
		Entry("actual_lrps/list_by_process_guids, one known and one unknown guid (state etc. blanked)", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/actual_lrps/list_by_process_guids", body: func(o *oracleLRP) []byte {
				return marshal(&models.ActualLRPsByProcessGuidsRequest{ProcessGuids: []string{o.unknownGUID(), o.guid()}})
			}, response: func() proto.Message { return &models.ActualLRPsByProcessGuidsResponse{} }, normalize: blankInstanceState},
			want: HaveField("ActualLrps", HaveLen(2)),
		}),
		Entry("actual_lrps/list_by_process_guids without guids: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/actual_lrps/list_by_process_guids", body: noBody,
				response: func() proto.Message { return &models.ActualLRPsByProcessGuidsResponse{} }},
			want: haveBBSErrorType(models.Error_InvalidRequest),
		}),

		// retire.
		Entry("actual_lrps/retire of an instance: success (the real BBS removes its UNCLAIMED one, Iris deletes the pod)", oracleCase{
			given: desireWithPods,
			call: bbsCall{path: "/v1/actual_lrps/retire", body: func(o *oracleLRP) []byte {
				key := models.NewActualLRPKey(o.guid(), 1, "cf-apps")
				return marshal(&models.RetireActualLRPRequest{ActualLrpKey: &key})
			}, response: func() proto.Message { return &models.ActualLRPLifecycleResponse{} }},
			want: Equal(&models.ActualLRPLifecycleResponse{}),
		}),
		Entry("actual_lrps/retire right after desire.r2, before Iris has a pod for it: success (the real BBS removes the UNCLAIMED instance)", oracleCase{
			given: desireAtOnce,
			call: bbsCall{path: "/v1/actual_lrps/retire", body: func(o *oracleLRP) []byte {
				key := models.NewActualLRPKey(o.guid(), 1, "cf-apps")
				return marshal(&models.RetireActualLRPRequest{ActualLrpKey: &key})
			}, response: func() proto.Message { return &models.ActualLRPLifecycleResponse{} }},
			want: Equal(&models.ActualLRPLifecycleResponse{}),
		}),
		Entry("actual_lrps/retire of an unknown guid: ResourceNotFound", oracleCase{
			call: bbsCall{path: "/v1/actual_lrps/retire", body: func(o *oracleLRP) []byte {
				key := models.NewActualLRPKey(o.unknownGUID(), 0, "cf-apps")
				return marshal(&models.RetireActualLRPRequest{ActualLrpKey: &key})
			}, response: func() proto.Message { return &models.ActualLRPLifecycleResponse{} }},
			want: haveBBSError(models.ErrResourceNotFound),
		}),
		Entry("actual_lrps/retire of an index the LRP does not have: ResourceNotFound", oracleCase{
			given: desire,
			call: bbsCall{path: "/v1/actual_lrps/retire", body: func(o *oracleLRP) []byte {
				key := models.NewActualLRPKey(o.guid(), 7, "cf-apps")
				return marshal(&models.RetireActualLRPRequest{ActualLrpKey: &key})
			}, response: func() proto.Message { return &models.ActualLRPLifecycleResponse{} }},
			want: haveBBSError(models.ErrResourceNotFound),
		}),
		Entry("actual_lrps/retire without a key: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/actual_lrps/retire", body: noBody,
				response: func() proto.Message { return &models.ActualLRPLifecycleResponse{} }},
			want: haveBBSErrorType(models.Error_InvalidRequest),
		}),

		// Tasks (CC's run-task and staging; the real BBS has no cells, so
		// its tasks stay PENDING while Iris's run on KWOK nodes: state, cell
		// and times are blanked where they differ for that reason).
		Entry("tasks/desire.r2: success, then get_by_task_guid.r2 answers the task in V2 form", oracleCase{
			given: func(o *oracleLRP) {
				for _, e := range []*bbsEndpoint{oracle, iris} {
					DeferCleanup(func() { _ = e.client.CancelTask(logger, "oracle", o.taskGUID) })
				}
			},
			call: bbsCall{path: "/v1/tasks/desire.r2", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesireTaskRequest{TaskGuid: o.taskGUID, Domain: "cf-tasks", TaskDefinition: o.task})
			}, response: taskLifecycleResponse},
			want: Equal(&models.TaskLifecycleResponse{}),
			then: &getTaskR2,
		}),
		Entry("tasks/desire.r2 of a taken task guid: ResourceExists", oracleCase{
			given: desireTask,
			call: bbsCall{path: "/v1/tasks/desire.r2", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesireTaskRequest{TaskGuid: o.taskGUID, Domain: "cf-tasks", TaskDefinition: o.task})
			}, response: taskLifecycleResponse},
			want: haveBBSError(models.ErrResourceExists),
		}),
		Entry("tasks/desire.r2 with a task guid BBS does not accept: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/tasks/desire.r2", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesireTaskRequest{TaskGuid: "a/b", Domain: "cf-tasks", TaskDefinition: o.task})
			}, response: taskLifecycleResponse},
			want: haveBBSError(models.NewError(models.Error_InvalidRequest, "Invalid field: task_guid")),
		}),
		Entry("tasks/desire.r2 with several invalid fields: InvalidRequest listing them in BBS's order", oracleCase{
			call: bbsCall{path: "/v1/tasks/desire.r2", body: func(o *oracleLRP) []byte {
				o.task.RootFs, o.task.MemoryMb, o.task.ImagePassword = "", -1, "secret"
				return marshal(&models.DesireTaskRequest{TaskGuid: o.taskGUID, TaskDefinition: o.task})
			}, response: taskLifecycleResponse},
			want: haveBBSErrorType(models.Error_InvalidRequest),
		}),
		Entry("tasks/desire.r2 without a definition: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/tasks/desire.r2", body: func(o *oracleLRP) []byte {
				return marshal(&models.DesireTaskRequest{TaskGuid: o.taskGUID, Domain: "cf-tasks"})
			}, response: taskLifecycleResponse},
			want: haveBBSError(models.NewError(models.Error_InvalidRequest, "Invalid field: task_definition")),
		}),
		Entry("get_by_task_guid.r3: the task in V3 form", oracleCase{
			given: desireTask,
			call:  bbsCall{path: "/v1/tasks/get_by_task_guid.r3", body: byTaskGUID, response: taskResponse, normalize: blankTaskPlacement},
			want:  HaveField("Task.TaskGuid", Not(BeEmpty())),
		}),
		Entry("get_by_task_guid.r2 of an unknown guid: ResourceNotFound", oracleCase{
			call: bbsCall{path: "/v1/tasks/get_by_task_guid.r2", body: func(*oracleLRP) []byte {
				return marshal(&models.TaskByGuidRequest{TaskGuid: uuid.NewString()})
			}, response: taskResponse},
			want: haveBBSError(models.ErrResourceNotFound),
		}),
		Entry("get_by_task_guid.r2 without a guid: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/tasks/get_by_task_guid.r2", body: noBody, response: taskResponse},
			want: haveBBSError(models.NewError(models.Error_InvalidRequest, "Invalid field: task_guid")),
		}),
		Entry("tasks/list.r2 by domain cf-tasks, CC's task sync (restricted to this task: both servers are shared)", oracleCase{
			given: desireTask,
			call:  tasksList("cf-tasks"),
			want:  HaveField("Tasks", HaveLen(1)),
		}),
		Entry("tasks/list.r2 of another domain: not this task", oracleCase{
			given: desireTask,
			call:  tasksList("cf-app-staging"),
			want:  HaveField("Tasks", BeEmpty()),
		}),
		Entry("tasks/cancel: success, then get_by_task_guid.r2 answers it COMPLETED, failed, 'task was cancelled'", oracleCase{
			given: desireTask,
			call:  bbsCall{path: "/v1/tasks/cancel", body: taskGUIDRequest, response: taskLifecycleResponse},
			want:  Equal(&models.TaskLifecycleResponse{}),
			then:  &getTaskR2,
		}),
		Entry("tasks/cancel of a cancelled task: InvalidStateTransition", oracleCase{
			given: cancelTask,
			call:  bbsCall{path: "/v1/tasks/cancel", body: taskGUIDRequest, response: taskLifecycleResponse},
			want:  haveBBSError(models.NewError(models.Error_InvalidStateTransition, "Cannot transition from Completed to Completed")),
		}),
		Entry("tasks/cancel of an unknown guid: ResourceNotFound", oracleCase{
			call: bbsCall{path: "/v1/tasks/cancel", body: func(*oracleLRP) []byte {
				return marshal(&models.TaskGuidRequest{TaskGuid: uuid.NewString()})
			}, response: taskLifecycleResponse},
			want: haveBBSError(models.ErrResourceNotFound),
		}),
		Entry("tasks/cancel without a guid: InvalidRequest", oracleCase{
			call: bbsCall{path: "/v1/tasks/cancel", body: noBody, response: taskLifecycleResponse},
			want: haveBBSError(models.NewError(models.Error_InvalidRequest, "Invalid field: task_guid")),
		}),
	)

	It("gives the Go client the same errors from both servers", func() {
		unknown := uuid.NewString() + "-" + uuid.NewString()
		update := &models.DesiredLRPUpdate{}
		update.SetInstances(2)
		key := models.NewActualLRPKey(unknown, 0, "cf-apps")
		calls := map[string]func(c bbsclient.InternalClient) error{
			"get": func(c bbsclient.InternalClient) error {
				_, err := c.DesiredLRPByProcessGuid(logger, "oracle", unknown)
				return err
			},
			"update": func(c bbsclient.InternalClient) error { return c.UpdateDesiredLRP(logger, "oracle", unknown, update) },
			"remove": func(c bbsclient.InternalClient) error { return c.RemoveDesiredLRP(logger, "oracle", unknown) },
			"retire": func(c bbsclient.InternalClient) error { return c.RetireActualLRP(logger, "oracle", &key) },
			"desire invalid": func(c bbsclient.InternalClient) error {
				return c.DesireLRP(logger, "oracle", &models.DesiredLRP{Domain: "cf-apps"})
			},
		}
		for name, call := range calls {
			realErr, irisErr := call(oracle.client), call(iris.client)
			Expect(realErr).To(HaveOccurred(), name)
			Expect(irisErr).To(Equal(realErr), name)
		}
		Expect(oracle.client.Ping(logger, "oracle")).To(BeTrue())
		Expect(iris.client.Ping(logger, "oracle")).To(BeTrue())
		taskCalls := map[string]func(c bbsclient.InternalClient) error{
			"task by guid": func(c bbsclient.InternalClient) error { _, err := c.TaskByGuid(logger, "oracle", unknown); return err },
			"cancel task":  func(c bbsclient.InternalClient) error { return c.CancelTask(logger, "oracle", unknown) },
			"desire invalid task": func(c bbsclient.InternalClient) error {
				return c.DesireTask(logger, "oracle", "a/b", "cf-tasks", &models.TaskDefinition{})
			},
		}
		for name, call := range taskCalls {
			realErr, irisErr := call(oracle.client), call(iris.client)
			Expect(realErr).To(HaveOccurred(), name)
			Expect(irisErr).To(Equal(realErr), name)
		}
	})
})

var (
	lifecycleResponse     = func() proto.Message { return &models.DesiredLRPLifecycleResponse{} }
	desiredLRPResponse    = func() proto.Message { return &models.DesiredLRPResponse{} }
	desiredLRPsResponse   = func() proto.Message { return &models.DesiredLRPsResponse{} }
	actualLRPsResponse    = func() proto.Message { return &models.ActualLRPsResponse{} }
	noBody                = func(*oracleLRP) []byte { return nil }
	taskLifecycleResponse = func() proto.Message { return &models.TaskLifecycleResponse{} }
	taskResponse          = func() proto.Message { return &models.TaskResponse{} }
	byTaskGUID            = func(o *oracleLRP) []byte { return marshal(&models.TaskByGuidRequest{TaskGuid: o.taskGUID}) }
	taskGUIDRequest       = func(o *oracleLRP) []byte { return marshal(&models.TaskGuidRequest{TaskGuid: o.taskGUID}) }
	// getTaskR2 is CC's read of a task (its task sync).
	getTaskR2 = bbsCall{path: "/v1/tasks/get_by_task_guid.r2", body: byTaskGUID, response: taskResponse, normalize: blankTaskPlacement}
	byGUID    = func(o *oracleLRP) []byte {
		return marshal(&models.DesiredLRPByProcessGuidRequest{ProcessGuid: o.guid()})
	}
	// getR2 is CC's read of a desired LRP.
	getR2 = bbsCall{path: "/v1/desired_lrps/get_by_process_guid.r2", body: byGUID, response: desiredLRPResponse, normalize: blankEpochs}
	// domainsList lists the fresh domains, keeping only the entry's own.
	domainsList = bbsCall{path: "/v1/domains/list", body: noBody,
		response: func() proto.Message { return &models.DomainsResponse{} },
		normalize: func(o *oracleLRP, m proto.Message) {
			r := m.(*models.DomainsResponse)
			r.Domains = slices.DeleteFunc(r.Domains, func(d string) bool { return !strings.HasPrefix(d, o.domain) })
			// BBS lists in its database's order, which is not defined;
			// route-emitter reads the list as a set.
			slices.Sort(r.Domains)
		}}
)

// blankEpochs blanks desired LRPs' modification tag epochs: each server
// draws its own guid. The index must match.
func blankEpochs(_ *oracleLRP, m proto.Message) {
	blank := func(tag *models.ModificationTag) {
		if tag != nil && tag.Epoch != "" {
			tag.Epoch = "<epoch>"
		}
	}
	switch r := m.(type) {
	case *models.DesiredLRPResponse:
		if r.DesiredLrp != nil {
			blank(r.DesiredLrp.ModificationTag)
		}
	case *models.DesiredLRPsResponse:
		for _, lrp := range r.DesiredLrps {
			blank(lrp.ModificationTag)
		}
	case *models.DesiredLRPSchedulingInfosResponse:
		for _, info := range r.DesiredLrpSchedulingInfos {
			blank(&info.ModificationTag)
		}
	}
}

// blankInstanceState blanks what depends on where an instance runs: the
// real BBS has no cells (UNCLAIMED, no instance key or address), Iris runs
// pods on KWOK nodes.
func blankInstanceState(_ *oracleLRP, m proto.Message) {
	var lrps []*models.ActualLRP
	switch r := m.(type) {
	case *models.ActualLRPsResponse:
		lrps = r.ActualLrps
	case *models.ActualLRPsByProcessGuidsResponse:
		lrps = r.ActualLrps
	}
	for _, a := range lrps {
		*a = models.ActualLRP{ActualLRPKey: a.ActualLRPKey, Presence: a.Presence}
	}
	sortActualLRPs(lrps)
}

// sortActualLRPs orders instances by guid and index: BBS lists in its
// database's order, which is not defined (index 1 before 0 happens), and
// no client relies on it.
func sortActualLRPs(lrps []*models.ActualLRP) {
	slices.SortFunc(lrps, func(a, b *models.ActualLRP) int {
		return cmp.Or(cmp.Compare(a.ProcessGuid, b.ProcessGuid), cmp.Compare(a.Index, b.Index))
	})
}

// withImageLayers gives lrp its lifecycle and droplet as image layers (a
// shared tgz and an exclusive sha256 layer) instead of a cached
// dependency, as CC builds buildpack LRPs, to exercise the V2 downgrade on
// an LRP Iris runs.
func withImageLayers(lrp *models.DesiredLRP) {
	lrp.CachedDependencies = nil
	lrp.LegacyDownloadUser = "vcap" // exclusive layers need it
	lrp.ImageLayers = []*models.ImageLayer{
		{
			Name: "docker-lifecycle", Url: "https://file-server.service.cf.internal:8447/v1/static/docker_app_lifecycle/docker_app_lifecycle.tgz",
			DestinationPath: "/tmp/lifecycle", LayerType: models.LayerTypeShared, MediaType: models.MediaTypeTgz,
		},
		{
			Name: "droplet", Url: "https://cc-uploader.service.cf.internal:9091/v1/static/droplet.tgz", DestinationPath: "/home/vcap",
			LayerType: models.LayerTypeExclusive, MediaType: models.MediaTypeTgz,
			DigestAlgorithm: models.DigestAlgorithmSha256, DigestValue: "0b2b1f8f3e0a0e5c3a0f3b1e6a4c1d2e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c",
		},
	}
}

// ccFullLRP adds to lrp what else current CC sets on a docker LRP: image
// credentials, diego-sshd beside the launcher with its port and route,
// network properties, certificate OUs, an isolation segment, the
// trusted certificates path, the legacy download user, a check log source.
func ccFullLRP(lrp *models.DesiredLRP) {
	appGUID := lrp.ProcessGuid[:36]
	lrp.ImageUsername, lrp.ImagePassword = "robot", "s3cret"
	lrp.Ports = []uint32{8080, 2222}
	ssh := json.RawMessage(`{"container_port":2222,"host_fingerprint":"aa:bb","private_key":"k"}`)
	(*lrp.Routes)["diego-ssh"] = &ssh
	lrp.Action = models.WrapAction(models.Codependent(
		lrp.Action.CodependentAction.Actions[0].RunAction,
		&models.RunAction{Path: "/tmp/lifecycle/diego-sshd", Args: []string{"-address=0.0.0.0:2222"}, User: "root"},
	))
	lrp.Network = &models.Network{Properties: map[string]string{
		"policy_group_id": appGUID, "app_id": appGUID, "space_id": "space-guid", "org_id": "org-guid", "ports": "8080", "container_workload": "app",
	}}
	lrp.CertificateProperties = &models.CertificateProperties{OrganizationalUnit: []string{
		"organization:org-guid", "space:space-guid", "app:" + appGUID,
	}}
	lrp.PlacementTags = []string{"segment-a"}
	lrp.TrustedSystemCertificatesPath = "/etc/cf-system-certificates"
	lrp.LegacyDownloadUser = "vcap"
	lrp.CheckDefinition.LogSource = "HEALTH"
	lrp.MetricTags["process_id"] = &models.MetricTagValue{Static: appGUID}
}

func haveBBSError(err *models.Error) types.GomegaMatcher {
	return HaveField("Error", Equal(err))
}

func haveBBSErrorType(t models.Error_Type) types.GomegaMatcher {
	return HaveField("Error", And(HaveField("Type", t), HaveField("Message", Not(BeEmpty()))))
}

func marshal(m proto.Message) []byte {
	GinkgoHelper()
	data, err := proto.Marshal(m)
	Expect(err).NotTo(HaveOccurred())
	return data
}

// ask sends call to e as the Go client sends requests and reads the
// answer; a protobuf answer is also returned decoded and normalized.
func (e *bbsEndpoint) ask(call bbsCall, o *oracleLRP) (wireAnswer, proto.Message) {
	GinkgoHelper()
	method, path := call.method, call.path
	if method == "" {
		method = http.MethodPost
	}
	if e.name == "iris" && call.irisPath != "" {
		path = call.irisPath
	}
	request, err := http.NewRequest(method, e.url+path, bytes.NewReader(call.body(o)))
	Expect(err).NotTo(HaveOccurred())
	request.Header.Set("Content-Type", "application/x-protobuf")
	request.Header.Set("X-Vcap-Request-Id", "oracle-"+uuid.NewString())
	response, err := e.http.Do(request)
	Expect(err).NotTo(HaveOccurred(), e.name)
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	Expect(err).NotTo(HaveOccurred(), e.name)
	answer := wireAnswer{Status: response.StatusCode, ContentType: response.Header.Get("Content-Type")}
	if call.response == nil || response.StatusCode != http.StatusOK || answer.ContentType != "application/x-protobuf" {
		answer.Text = string(body)
		return answer, nil
	}
	decoded := call.response()
	Expect(proto.Unmarshal(body, decoded)).To(Succeed(), e.name)
	if call.normalize != nil {
		call.normalize(o, decoded)
	}
	text, err := json.MarshalIndent(decoded, "", " ")
	Expect(err).NotTo(HaveOccurred())
	answer.Response = string(text)
	return answer, decoded
}

// realBBSEndpoint is the real BBS scripts/cluster runs (its env exports
// the URL and one client certificate).
func realBBSEndpoint() *bbsEndpoint {
	GinkgoHelper()
	url, caFile := os.Getenv("IRIS_BBS_URL"), os.Getenv("IRIS_BBS_CA_FILE")
	certFile, keyFile := os.Getenv("IRIS_BBS_CLIENT_CERT_FILE"), os.Getenv("IRIS_BBS_CLIENT_KEY_FILE")
	if url == "" {
		Fail("IRIS_BBS_URL is not set: run with the env of `scripts/cluster env` (the cluster starts the real BBS unless IRIS_CLUSTER_BBS=false)")
	}
	client, err := bbsclient.NewClient(url, caFile, certFile, keyFile, 0, 0)
	Expect(err).NotTo(HaveOccurred())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM([]byte(readFile(caFile)))).To(BeTrue())
	return &bbsEndpoint{name: "real bbs", url: url, client: client, http: mutualTLSClient(pool, cert)}
}

// irisBBSEndpoint is the suite's Iris's BBS front.
func irisBBSEndpoint() *bbsEndpoint {
	GinkgoHelper()
	cert, err := clientLeaf.TLSCertificate()
	Expect(err).NotTo(HaveOccurred())
	return &bbsEndpoint{name: "iris", url: bbsURL, client: newBBSClient(), http: mutualTLSClient(serverCA.Pool(), cert)}
}

func mutualTLSClient(pool *x509.CertPool, cert tls.Certificate) *http.Client {
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	DeferCleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: 30 * time.Second}
}

// tasksList is CC's task sync by domain, keeping only the entry's task.
func tasksList(domain string) bbsCall {
	return bbsCall{path: "/v1/tasks/list.r2",
		body:     func(*oracleLRP) []byte { return marshal(&models.TasksRequest{Domain: domain}) },
		response: func() proto.Message { return &models.TasksResponse{} },
		normalize: func(o *oracleLRP, m proto.Message) {
			r := m.(*models.TasksResponse)
			r.Tasks = slices.DeleteFunc(r.Tasks, func(t *models.Task) bool { return t.TaskGuid != o.taskGUID })
			blankTaskPlacement(o, m)
		}}
}

// blankTaskPlacement blanks what depends on where a task runs and when:
// the real BBS has no cells (its tasks stay PENDING without a cell), Iris
// runs them on KWOK nodes (PENDING, then RUNNING on a node). Times are
// kept as set or not. Completed tasks are compared whole.
func blankTaskPlacement(_ *oracleLRP, m proto.Message) {
	var tasks []*models.Task
	switch r := m.(type) {
	case *models.TaskResponse:
		if r.Task != nil {
			tasks = append(tasks, r.Task)
		}
	case *models.TasksResponse:
		tasks = r.Tasks
	}
	set := func(t int64) int64 {
		if t != 0 {
			return 1
		}
		return 0
	}
	for _, t := range tasks {
		// Iris keeps the environment (service credentials) in the recipe
		// Secret only (a known difference).
		if d := t.TaskDefinition; d != nil {
			d.EnvironmentVariables = nil
			if d.Action != nil && d.Action.RunAction != nil {
				d.Action.RunAction.Env = nil
			}
		}
		if t.State == models.Task_Running {
			t.State = models.Task_Pending
		}
		t.CellId = ""
		t.CreatedAt, t.UpdatedAt, t.FirstCompletedAt = set(t.CreatedAt), set(t.UpdatedAt), set(t.FirstCompletedAt)
	}
}
