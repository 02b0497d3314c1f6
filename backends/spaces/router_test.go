package spaces_test

import (
	"context"
	"errors"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/backends/spaces"
	"github.com/iris-cf/iris/bifrost/bbs/bbsfakes"
)

// side is one fake backend: desired and actual LRP fakes together.
type side struct {
	*bbsfakes.FakeDesiredLRPs
	*bbsfakes.FakeActualLRPs
	domains *bbsfakes.FakeDomains
}

func newSide() *side {
	return &side{&bbsfakes.FakeDesiredLRPs{}, &bbsfakes.FakeActualLRPs{}, &bbsfakes.FakeDomains{}}
}

// hasGUIDs makes the side know exactly guids.
func (s *side) hasGUIDs(guids ...string) {
	s.DesiredLRPByProcessGuidCalls(func(_ context.Context, _ lager.Logger, guid string) (*models.DesiredLRP, error) {
		for _, g := range guids {
			if g == guid {
				return &models.DesiredLRP{ProcessGuid: guid}, nil
			}
		}
		return nil, models.ErrResourceNotFound
	})
}

type placementFunc func(org, space string) spaces.Side

func (f placementFunc) SideFor(org, space string) spaces.Side { return f(org, space) }

func schedulingInfo(guid, annotation string) *models.DesiredLRPSchedulingInfo {
	return &models.DesiredLRPSchedulingInfo{DesiredLRPKey: models.DesiredLRPKey{ProcessGuid: guid}, Annotation: annotation}
}

func taggedLRP(guid, org, space string) *models.DesiredLRP {
	return &models.DesiredLRP{ProcessGuid: guid, MetricTags: map[string]*models.MetricTagValue{
		"organization_id": {Static: org}, "space_id": {Static: space},
	}}
}

var _ = Describe("Router", func() {
	var (
		kube, diego *side
		router      *spaces.Router
		ctx         context.Context
		logger      *lagertest.TestLogger
		diegoDown   = errors.New("diego bbs list: connection refused")
	)

	BeforeEach(func() {
		kube, diego = newSide(), newSide()
		kube.hasGUIDs()
		diego.hasGUIDs()
		router = spaces.NewRouter(kube, kube.domains, diego, diego.domains, placementFunc(func(org, space string) spaces.Side {
			if space == "k8s-space" || org == "k8s-org" {
				return spaces.Kubernetes
			}
			return spaces.Diego
		}))
		ctx = context.Background()
		logger = lagertest.NewTestLogger("router")
	})

	Describe("desire", func() {
		It("goes to the side placed for the LRP's space or org", func() {
			Expect(router.DesireLRP(ctx, logger, taggedLRP("a", "org", "k8s-space"))).To(Succeed())
			Expect(router.DesireLRP(ctx, logger, taggedLRP("b", "k8s-org", "space"))).To(Succeed())
			Expect(router.DesireLRP(ctx, logger, taggedLRP("c", "org", "space"))).To(Succeed())
			Expect(kube.DesireLRPCallCount()).To(Equal(2))
			Expect(diego.FakeDesiredLRPs.DesireLRPCallCount()).To(Equal(1))
			_, _, lrp := diego.FakeDesiredLRPs.DesireLRPArgsForCall(0)
			Expect(lrp.ProcessGuid).To(Equal("c"))
		})

		It("refuses a guid the other side runs with ResourceExists, creating nothing", func() {
			diego.hasGUIDs("a")
			err := router.DesireLRP(ctx, logger, taggedLRP("a", "org", "k8s-space"))
			Expect(err).To(Equal(models.ErrResourceExists))
			Expect(kube.DesireLRPCallCount()).To(BeZero())
		})

		It("fails, creating nothing, when it cannot tell whether the other side runs the guid", func() {
			diego.DesiredLRPByProcessGuidReturns(nil, diegoDown)
			err := router.DesireLRP(ctx, logger, taggedLRP("a", "org", "k8s-space"))
			Expect(err).To(MatchError(ContainSubstring("connection refused")))
			Expect(kube.DesireLRPCallCount()).To(BeZero())
		})
	})

	Describe("calls that carry only a guid", func() {
		BeforeEach(func() {
			kube.hasGUIDs("on-k8s")
		})

		It("go to Kubernetes when its caches have the guid, to Diego otherwise", func() {
			update := &models.DesiredLRPUpdate{}
			Expect(router.UpdateDesiredLRP(ctx, logger, "on-k8s", update)).To(Succeed())
			Expect(router.UpdateDesiredLRP(ctx, logger, "on-diego", update)).To(Succeed())
			Expect(kube.UpdateDesiredLRPCallCount()).To(Equal(1))
			Expect(diego.UpdateDesiredLRPCallCount()).To(Equal(1))
			_, _, guid, _ := diego.UpdateDesiredLRPArgsForCall(0)
			Expect(guid).To(Equal("on-diego"))

			Expect(router.RemoveDesiredLRP(ctx, logger, "on-diego")).To(Succeed())
			Expect(diego.RemoveDesiredLRPCallCount()).To(Equal(1))
			Expect(kube.RemoveDesiredLRPCallCount()).To(BeZero())

			Expect(router.RetireActualLRP(ctx, logger, &models.ActualLRPKey{ProcessGuid: "on-k8s", Index: 1})).To(Succeed())
			Expect(kube.RetireActualLRPCallCount()).To(Equal(1))
			Expect(diego.RetireActualLRPCallCount()).To(BeZero())

			_, err := router.ActualLRPs(ctx, logger, models.ActualLRPFilter{ProcessGuid: "on-diego"})
			Expect(err).NotTo(HaveOccurred())
			Expect(diego.ActualLRPsCallCount()).To(Equal(1))
			Expect(kube.ActualLRPsCallCount()).To(BeZero())
		})

		It("answer Diego's ResourceNotFound for a guid neither side has", func() {
			diego.RemoveDesiredLRPReturns(models.ErrResourceNotFound)
			Expect(router.RemoveDesiredLRP(ctx, logger, "nowhere")).To(Equal(models.ErrResourceNotFound))
			_, err := router.DesiredLRPByProcessGuid(ctx, logger, "nowhere")
			Expect(err).To(Equal(models.ErrResourceNotFound))
		})

		It("reads an LRP from the side that has it", func() {
			diego.hasGUIDs("on-diego")
			lrp, err := router.DesiredLRPByProcessGuid(ctx, logger, "on-diego")
			Expect(err).NotTo(HaveOccurred())
			Expect(lrp.ProcessGuid).To(Equal("on-diego"))
		})
	})

	Describe("lists", func() {
		BeforeEach(func() {
			kube.DesiredLRPSchedulingInfosReturns([]*models.DesiredLRPSchedulingInfo{schedulingInfo("k", "k")}, nil)
			diego.DesiredLRPSchedulingInfosReturns([]*models.DesiredLRPSchedulingInfo{schedulingInfo("d1", "d1"), schedulingInfo("d2", "d2")}, nil)
			kube.ActualLRPsByProcessGuidsReturns([]*models.ActualLRP{{ActualLRPKey: models.ActualLRPKey{ProcessGuid: "k"}}}, nil)
			diego.ActualLRPsByProcessGuidsReturns([]*models.ActualLRP{{ActualLRPKey: models.ActualLRPKey{ProcessGuid: "d"}}}, nil)
		})

		It("are the union of both sides, with the filter passed to each", func() {
			infos, err := router.DesiredLRPSchedulingInfos(ctx, logger, models.DesiredLRPFilter{Domain: "cf-apps"})
			Expect(err).NotTo(HaveOccurred())
			Expect(infos).To(HaveLen(3))
			_, _, filter := diego.DesiredLRPSchedulingInfosArgsForCall(0)
			Expect(filter.Domain).To(Equal("cf-apps"))
			actual, err := router.ActualLRPsByProcessGuids(ctx, logger, models.ActualLRPsByProcessGuidsFilter{ProcessGuids: []string{"k", "d"}})
			Expect(err).NotTo(HaveOccurred())
			Expect(actual).To(HaveLen(2))
		})

		It("fail as a whole when either side fails: a partial list would make CC delete or re-desire", func() {
			diego.DesiredLRPSchedulingInfosReturns(nil, diegoDown)
			infos, err := router.DesiredLRPSchedulingInfos(ctx, logger, models.DesiredLRPFilter{})
			Expect(err).To(MatchError(ContainSubstring("listing on diego")))
			Expect(infos).To(BeNil())
			kube.DesiredLRPsReturns(nil, errors.New("cache not synced"))
			_, err = router.DesiredLRPs(ctx, logger, models.DesiredLRPFilter{})
			Expect(err).To(MatchError(ContainSubstring("listing on kubernetes")))
			diego.ActualLRPsReturns(nil, diegoDown)
			_, err = router.ActualLRPs(ctx, logger, models.ActualLRPFilter{CellID: "cell-1"})
			Expect(err).To(HaveOccurred())
		})

		It("keep a BBS error's type when a side refuses", func() {
			diego.DesiredLRPRoutingInfosReturns(nil, models.ErrBadRequest)
			_, err := router.DesiredLRPRoutingInfos(ctx, logger, models.DesiredLRPFilter{})
			Expect(models.ConvertError(errors.Unwrap(err))).To(Equal(models.ErrBadRequest))
		})
	})

	Describe("domains", func() {
		It("are upserted to both sides and listed from both, each once", func() {
			Expect(router.UpsertDomain(ctx, logger, "cf-apps", 120)).To(Succeed())
			Expect(kube.domains.UpsertDomainCallCount()).To(Equal(1))
			Expect(diego.domains.UpsertDomainCallCount()).To(Equal(1))
			_, _, domain, ttl := diego.domains.UpsertDomainArgsForCall(0)
			Expect(domain).To(Equal("cf-apps"))
			Expect(ttl).To(BeEquivalentTo(120))

			kube.domains.FreshDomainsReturns([]string{"cf-apps"}, nil)
			diego.domains.FreshDomainsReturns([]string{"cf-apps", "cf-tasks"}, nil)
			Expect(router.FreshDomains(ctx, logger)).To(Equal([]string{"cf-apps", "cf-tasks"}))
		})

		It("fail when Diego cannot be reached", func() {
			diego.domains.UpsertDomainReturns(diegoDown)
			Expect(router.UpsertDomain(ctx, logger, "cf-apps", 120)).To(MatchError(ContainSubstring("upserting domain on diego")))
			diego.domains.FreshDomainsReturns(nil, diegoDown)
			_, err := router.FreshDomains(ctx, logger)
			Expect(err).To(HaveOccurred())
		})
	})
})

// cachingSide is a Kubernetes side that tells what its caches hold.
type cachingSide struct {
	*side
	cached map[string]bool
}

func (c cachingSide) HasCached(guid string) bool { return c.cached[guid] }

var _ = Describe("Router with the Kubernetes side's caches", func() {
	It("asks Diego first for a guid Kubernetes's caches lack, and Kubernetes (API lookup) only when Diego does not know it", func() {
		kube, diego := newSide(), newSide()
		kube.hasGUIDs("on-k8s", "just-desired")
		diego.hasGUIDs("on-diego")
		k := cachingSide{side: kube, cached: map[string]bool{"on-k8s": true}}
		router := spaces.NewRouter(k, kube.domains, diego, diego.domains, placementFunc(func(string, string) spaces.Side { return spaces.Diego }))
		ctx, logger := context.Background(), lagertest.NewTestLogger("router")
		update := &models.DesiredLRPUpdate{}

		Expect(router.UpdateDesiredLRP(ctx, logger, "on-diego", update)).To(Succeed())
		Expect(kube.DesiredLRPByProcessGuidCallCount()).To(BeZero(), "no API lookup for Diego's LRP")
		Expect(diego.UpdateDesiredLRPCallCount()).To(Equal(1))

		Expect(router.UpdateDesiredLRP(ctx, logger, "on-k8s", update)).To(Succeed())
		Expect(kube.UpdateDesiredLRPCallCount()).To(Equal(1))

		Expect(router.UpdateDesiredLRP(ctx, logger, "just-desired", update)).To(Succeed())
		Expect(kube.UpdateDesiredLRPCallCount()).To(Equal(2), "not yet cached, unknown to Diego: Kubernetes")

		lrp, err := router.DesiredLRPByProcessGuid(ctx, logger, "on-diego")
		Expect(err).NotTo(HaveOccurred())
		Expect(lrp.ProcessGuid).To(Equal("on-diego"))
		Expect(kube.DesiredLRPByProcessGuidCallCount()).To(Equal(2), "on-k8s (answered from the cache by the real backend) and just-desired; none for on-diego")
	})
})
