package spaces_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/backends/spaces"
	"github.com/iris-cf/iris/bifrost/bbs"
)

// listed makes s list lrps (in this order) for its desired-LRP and
// scheduling-info lists, filtered as a backend filters: by domain, process
// guids and app guids (the app_id tag here).
func (s *side) listed(lrps ...*models.DesiredLRP) {
	selected := func(filter models.DesiredLRPFilter) []*models.DesiredLRP {
		var out []*models.DesiredLRP
		for _, lrp := range lrps {
			if (filter.Domain == "" || lrp.Domain == filter.Domain) &&
				(len(filter.ProcessGuids) == 0 || slices.Contains(filter.ProcessGuids, lrp.ProcessGuid)) &&
				(len(filter.AppGuids) == 0 || slices.Contains(filter.AppGuids, lrp.MetricTags["app_id"].GetStatic())) {
				out = append(out, lrp)
			}
		}
		return out
	}
	s.DesiredLRPsCalls(func(_ context.Context, _ lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRP, error) {
		return selected(filter), nil
	})
	s.DesiredLRPSchedulingInfosCalls(func(_ context.Context, _ lager.Logger, filter models.DesiredLRPFilter) ([]*models.DesiredLRPSchedulingInfo, error) {
		var infos []*models.DesiredLRPSchedulingInfo
		for _, lrp := range selected(filter) {
			info := lrp.DesiredLRPSchedulingInfo()
			infos = append(infos, &info)
		}
		return infos, nil
	})
}

// fastSide is a side offering the Kubernetes backend's fast paths over
// what its lists hold: the scheduling infos encoded, the LRPs streamed.
type fastSide struct {
	*side
	encodedCalls, streamedCalls int
	// streamErr fails the stream after failAfter LRPs went to fn.
	streamErr error
	failAfter int
}

func (f *fastSide) EncodedSchedulingInfos(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter) ([][]byte, error) {
	f.encodedCalls++
	infos, err := f.DesiredLRPSchedulingInfos(ctx, logger, filter)
	if err != nil {
		return nil, err
	}
	encoded := make([][]byte, len(infos))
	for i, info := range infos {
		if encoded[i], err = info.Marshal(); err != nil {
			return nil, err
		}
	}
	return encoded, nil
}

func (f *fastSide) EachDesiredLRP(ctx context.Context, logger lager.Logger, filter models.DesiredLRPFilter, fn func(*models.DesiredLRP) error) error {
	f.streamedCalls++
	lrps, err := f.DesiredLRPs(ctx, logger, filter)
	if err != nil {
		return err
	}
	for i, lrp := range lrps {
		if f.streamErr != nil && i == f.failAfter {
			return f.streamErr
		}
		if err := fn(lrp); err != nil {
			return err
		}
	}
	return nil
}

type ownersMap map[string]spaces.Side

func (o ownersMap) Owner(guid string) (spaces.Side, bool) {
	side, ok := o[guid]
	return side, ok
}

// slowPaths hides the router's fast paths from the BBS front (the alias
// names the embedded field apart from the DesiredLRPs method).
type slowPaths struct{ desiredRoutes }

type desiredRoutes = bbs.DesiredLRPs

func cfLRP(guid, domain string) *models.DesiredLRP {
	return &models.DesiredLRP{ProcessGuid: guid, Domain: domain, Instances: 2, Annotation: "annotation-" + guid, LogGuid: "log-" + guid,
		MetricTags: map[string]*models.MetricTagValue{"app_id": {Static: "app-" + guid}}}
}

var _ = Describe("Router's fast paths for CC's lists", func() {
	const (
		schedulingInfosRoute = "/v1/desired_lrp_scheduling_infos/list"
		desiredLRPsRoute     = "/v1/desired_lrps/list.r3"
	)
	var (
		kube         *fastSide
		diego        *side
		router       *spaces.Router
		fast, slow   http.Handler
		logger       *lagertest.TestLogger
		kubeDown     = errors.New("cache not synced")
		diegoDown    = errors.New("diego bbs list: connection refused")
		newRouter    func(kubernetes spaces.Backend) *spaces.Router
		withHandlers func(*spaces.Router)
	)

	BeforeEach(func() {
		logger = lagertest.NewTestLogger("router")
		kube, diego = &fastSide{side: newSide()}, newSide()
		// Kubernetes lists by guid, Diego in an order of its own. b is on
		// both sides; m1..m4 are being moved, m1 and m2 on both sides.
		kube.listed(cfLRP("a", "cf-apps"), cfLRP("b", "cf-apps"), cfLRP("c", "other"), cfLRP("m1", "cf-apps"), cfLRP("m2", "cf-apps"), cfLRP("m3", "cf-apps"))
		diego.listed(cfLRP("z", "cf-apps"), cfLRP("b", "cf-apps"), cfLRP("m1", "cf-apps"), cfLRP("m2", "cf-apps"), cfLRP("m4", "cf-apps"), cfLRP("d", "other"))
		newRouter = func(kubernetes spaces.Backend) *spaces.Router {
			r := spaces.NewRouter(kubernetes, kube.domains, diego, diego.domains, placementFunc(func(string, string) spaces.Side { return spaces.Diego }))
			r.FollowMoves(ownersMap{"m1": spaces.Diego, "m2": spaces.Kubernetes, "m3": spaces.Diego, "m4": spaces.Kubernetes})
			return r
		}
		withHandlers = func(r *spaces.Router) {
			router = r
			hub := bbs.NewEventHub(logger, 0)
			fast = bbs.NewHandler(logger, bbs.Backends{DesiredLRPs: r, ActualLRPs: r, Domains: r}, hub, 1<<20)
			slow = bbs.NewHandler(logger, bbs.Backends{DesiredLRPs: slowPaths{r}, ActualLRPs: r, Domains: r}, hub, 1<<20)
		}
		withHandlers(newRouter(kube))
	})

	post := func(handler http.Handler, route string, request *models.DesiredLRPsRequest) []byte {
		body, err := request.Marshal()
		Expect(err).NotTo(HaveOccurred())
		recorder := httptest.NewRecorder()
		handler.ServeHTTP(recorder, httptest.NewRequest(http.MethodPost, route, bytes.NewReader(body)))
		Expect(recorder.Code).To(Equal(http.StatusOK))
		return recorder.Body.Bytes()
	}
	schedulingGUIDs := func(body []byte) ([]string, *models.Error) {
		response := &models.DesiredLRPSchedulingInfosResponse{}
		Expect(response.Unmarshal(body)).To(Succeed())
		var guids []string
		for _, info := range response.DesiredLrpSchedulingInfos {
			Expect(info.Annotation).To(Equal("annotation-" + info.ProcessGuid))
			guids = append(guids, info.ProcessGuid)
		}
		return guids, response.Error
	}
	lrpGUIDs := func(body []byte) ([]string, *models.Error) {
		response := &models.DesiredLRPsResponse{}
		Expect(response.Unmarshal(body)).To(Succeed())
		var guids []string
		for _, lrp := range response.DesiredLrps {
			Expect(lrp.LogGuid).To(Equal("log-" + lrp.ProcessGuid))
			guids = append(guids, lrp.ProcessGuid)
		}
		return guids, response.Error
	}

	DescribeTable("answer byte for byte what the slow paths answer: each process once, from the owner while it is moved and listed there, otherwise the first side (Kubernetes); Kubernetes's in its order, then Diego's",
		func(request *models.DesiredLRPsRequest, want []string) {
			fastInfos, slowInfos := post(fast, schedulingInfosRoute, request), post(slow, schedulingInfosRoute, request)
			Expect(kube.encodedCalls).To(Equal(1), "the Kubernetes side's encoded infos were used")
			Expect(fastInfos).To(Equal(slowInfos))
			guids, listErr := schedulingGUIDs(fastInfos)
			Expect(listErr).To(BeNil())
			Expect(guids).To(Equal(want))

			fastLRPs, slowLRPs := post(fast, desiredLRPsRoute, request), post(slow, desiredLRPsRoute, request)
			Expect(kube.streamedCalls).To(Equal(1), "the Kubernetes side's LRPs were streamed")
			Expect(fastLRPs).To(Equal(slowLRPs))
			guids, listErr = lrpGUIDs(fastLRPs)
			Expect(listErr).To(BeNil())
			Expect(guids).To(Equal(want))

			for i := range diego.DesiredLRPSchedulingInfosCallCount() {
				_, _, filter := diego.DesiredLRPSchedulingInfosArgsForCall(i)
				Expect(filter).To(Equal(models.DesiredLRPFilter{Domain: request.Domain, ProcessGuids: request.ProcessGuids, AppGuids: request.AppGuids}))
			}
		},
		Entry("all: a, c, z, d on one side; b on both (Kubernetes's); m1 Diego's, m2 Kubernetes's (owners, both sides); m3, m4 listed by one side, not the owner",
			&models.DesiredLRPsRequest{}, []string{"a", "b", "c", "m2", "m3", "z", "m1", "m4", "d"}),
		Entry("by domain", &models.DesiredLRPsRequest{Domain: "cf-apps"}, []string{"a", "b", "m2", "m3", "z", "m1", "m4"}),
		Entry("by process guids", &models.DesiredLRPsRequest{ProcessGuids: []string{"z", "m1", "b", "nowhere"}}, []string{"b", "z", "m1"}),
		Entry("by app guids", &models.DesiredLRPsRequest{AppGuids: []string{"app-d", "app-m2", "app-a"}}, []string{"a", "m2", "d"}),
		Entry("none", &models.DesiredLRPsRequest{ProcessGuids: []string{"nowhere"}}, nil),
	)

	It("answer the same over a Kubernetes side without fast paths", func() {
		withHandlers(newRouter(kube.side))
		for _, route := range []string{schedulingInfosRoute, desiredLRPsRoute} {
			body := post(fast, route, &models.DesiredLRPsRequest{})
			Expect(body).To(Equal(post(slow, route, &models.DesiredLRPsRequest{})))
			Expect(body).NotTo(BeEmpty())
		}
		Expect(kube.encodedCalls + kube.streamedCalls).To(BeZero())
	})

	DescribeTable("fail as a whole, naming the side, when either side fails",
		func(fail func(), side string) {
			fail()
			for _, route := range []string{schedulingInfosRoute, desiredLRPsRoute} {
				body := post(fast, route, &models.DesiredLRPsRequest{})
				Expect(body).To(Equal(post(slow, route, &models.DesiredLRPsRequest{})), route)
				decode := lrpGUIDs
				if route == schedulingInfosRoute {
					decode = schedulingGUIDs
				}
				guids, listErr := decode(body)
				Expect(guids).To(BeEmpty())
				Expect(listErr).To(HaveOccurred())
				Expect(listErr.Message).To(HavePrefix("listing on " + side + ": "))
			}
		},
		Entry("Kubernetes", func() {
			kube.DesiredLRPSchedulingInfosReturns(nil, kubeDown)
			kube.DesiredLRPsReturns(nil, kubeDown)
		}, "kubernetes"),
		Entry("Diego", func() {
			diego.DesiredLRPSchedulingInfosReturns(nil, diegoDown)
			diego.DesiredLRPsReturns(nil, diegoDown)
		}, "diego"),
	)

	Describe("the streamed LRPs", func() {
		ctx := context.Background()

		It("fail, naming Kubernetes, when its stream fails after part of the list went out (bifrost/bbs then ends the list with the error)", func() {
			kube.streamErr, kube.failAfter = errors.New("decoding the record of c: unexpected EOF"), 2
			var got []string
			err := router.EachDesiredLRP(ctx, logger, models.DesiredLRPFilter{}, func(lrp *models.DesiredLRP) error {
				got = append(got, lrp.ProcessGuid)
				return nil
			})
			Expect(err).To(MatchError("listing on kubernetes: decoding the record of c: unexpected EOF"))
			Expect(got).To(Equal([]string{"a", "b"}), "no Diego LRPs after the failure")

			_, listErr := lrpGUIDs(post(fast, desiredLRPsRoute, &models.DesiredLRPsRequest{}))
			Expect(listErr).To(HaveOccurred())
			Expect(listErr.Message).To(Equal("listing on kubernetes: decoding the record of c: unexpected EOF"))
		})

		It("stop at fn's first error and pass it on as it is", func() {
			gone := errors.New("client went away")
			calls := 0
			err := router.EachDesiredLRP(ctx, logger, models.DesiredLRPFilter{}, func(*models.DesiredLRP) error {
				calls++
				return gone
			})
			Expect(err).To(Equal(gone))
			Expect(calls).To(Equal(1))
		})

		It("hand over Diego's LRPs unchanged, as the slow path does", func() {
			var got []*models.DesiredLRP
			Expect(router.EachDesiredLRP(ctx, logger, models.DesiredLRPFilter{ProcessGuids: []string{"z"}}, func(lrp *models.DesiredLRP) error {
				got = append(got, lrp)
				return nil
			})).To(Succeed())
			want, err := router.DesiredLRPs(ctx, logger, models.DesiredLRPFilter{ProcessGuids: []string{"z"}})
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(want))
		})
	})

	It("fail, naming Kubernetes, on an encoded info whose process guid cannot be read", func() {
		broken := &brokenEncodings{fastSide: kube}
		withHandlers(newRouter(broken))
		_, err := router.EncodedSchedulingInfos(context.Background(), logger, models.DesiredLRPFilter{})
		Expect(err).To(MatchError(HavePrefix("listing on kubernetes: reading the process guid of scheduling info 0: ")))
	})
})

// brokenEncodings answers a truncated encoding.
type brokenEncodings struct{ *fastSide }

func (b *brokenEncodings) EncodedSchedulingInfos(context.Context, lager.Logger, models.DesiredLRPFilter) ([][]byte, error) {
	info := schedulingInfo("a", "a")
	encoded, err := info.Marshal()
	return [][]byte{encoded[:3]}, err
}
