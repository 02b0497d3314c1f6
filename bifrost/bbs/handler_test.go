package bbs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/bifrost/bbs"
)

const processGuid = "5d1dc1c4-8b5f-4e1d-9c4a-2b9e3f1a7c60-0f3b9c1e-2d4a-4b6c-8e0f-1a2b3c4d5e6f"

var _ = Describe("Handler, driven by the real BBS Go client over mTLS", func() {
	var f *fixture

	BeforeEach(func() {
		f = newFixture(0)
	})

	It("answers ping", func() {
		Expect(f.client.Ping(f.logger, "trace")).To(BeTrue())
	})

	Describe("domains", func() {
		It("keeps an upserted domain fresh for its TTL, as BBS does", func() {
			Expect(f.client.UpsertDomain(f.logger, "", "cf-apps", 120*time.Second)).To(Succeed())
			Expect(f.client.UpsertDomain(f.logger, "", "cf-tasks", 0)).To(Succeed())
			Expect(f.client.Domains(f.logger, "")).To(Equal([]string{"cf-apps", "cf-tasks"}))

			f.clock.Step(121 * time.Second)
			Expect(f.client.Domains(f.logger, "")).To(Equal([]string{"cf-tasks"}))
		})

		It("refuses a domain without a name with BBS's message", func() {
			err := f.client.UpsertDomain(f.logger, "", "", time.Minute)
			Expect(err).To(MatchError(models.NewError(models.Error_InvalidRequest, "Invalid field: domain")))
		})
	})

	Describe("desire.r2", func() {
		It("hands the desired LRP to the backend, with the request id in the context", func() {
			lrp := ccDesiredLRP(processGuid)
			Expect(f.client.DesireLRP(f.logger, "request-1", lrp)).To(Succeed())

			Expect(f.desired.DesireLRPCallCount()).To(Equal(1))
			ctx, _, got := f.desired.DesireLRPArgsForCall(0)
			Expect(got).To(Equal(lrp))
			Expect(bbs.RequestID(ctx)).To(Equal("request-1"))
		})

		It("answers a duplicate with ResourceExists and BBS's exact message", func() {
			f.desired.DesireLRPReturns(models.ErrResourceExists)
			err := f.client.DesireLRP(f.logger, "", ccDesiredLRP(processGuid))
			Expect(err).To(MatchError(models.ErrResourceExists))
			Expect(err.Error()).To(Equal("the requested resource already exists"))
		})

		It("refuses an invalid LRP with the models' message and calls no backend", func() {
			lrp := ccDesiredLRP(processGuid)
			lrp.ProcessGuid = ""
			err := f.client.DesireLRP(f.logger, "", lrp)
			Expect(err).To(MatchError(models.NewError(models.Error_InvalidRequest, "Invalid field: process_guid")))
			Expect(f.desired.DesireLRPCallCount()).To(Equal(0))
		})

		It("answers a JSON body with 200 and 'the request received is invalid', as BBS does", func() {
			answer := f.post("/v1/desired_lrp/desire.r2", "application/json", []byte(`{"desired_lrp":{"process_guid":"x"}}`))
			Expect(answer.StatusCode).To(Equal(http.StatusOK))
			Expect(answer.Header.Get("Content-Type")).To(Equal("application/x-protobuf"))
			body, err := io.ReadAll(answer.Body)
			Expect(err).NotTo(HaveOccurred())
			response := &models.DesiredLRPLifecycleResponse{}
			Expect(response.Unmarshal(body)).To(Succeed())
			Expect(response.Error).To(Equal(models.ErrBadRequest))
			Expect(response.Error.Message).To(Equal("the request received is invalid"))
			Expect(f.desired.DesireLRPCallCount()).To(Equal(0))
		})

		It("refuses a body over the size limit without reading on", func() {
			lrp := ccDesiredLRP(processGuid)
			lrp.EnvironmentVariables = []*models.EnvironmentVariable{{Name: "BIG", Value: strings.Repeat("x", maxBodyBytes)}}
			err := f.client.DesireLRP(f.logger, "", lrp)
			Expect(err).To(MatchError(models.NewError(models.Error_InvalidRequest, fmt.Sprintf("the request body exceeds %d bytes", maxBodyBytes))))
			Expect(f.desired.DesireLRPCallCount()).To(Equal(0))
		})

		It("passes a backend's BBS error through context wrapping, and other errors as UnknownError", func() {
			f.desired.DesireLRPReturns(fmt.Errorf("desiring %s: %w", processGuid, models.ErrResourceExists))
			Expect(f.client.DesireLRP(f.logger, "", ccDesiredLRP(processGuid))).To(MatchError(models.ErrResourceExists))

			f.desired.DesireLRPReturns(errors.New("statefulsets is forbidden"))
			err := f.client.DesireLRP(f.logger, "", ccDesiredLRP(processGuid))
			Expect(err).To(MatchError(models.NewError(models.Error_UnknownError, "statefulsets is forbidden")))
		})
	})

	Describe("update and remove", func() {
		It("hands an update to the backend", func() {
			update := &models.DesiredLRPUpdate{}
			update.SetInstances(3)
			update.SetAnnotation("1764583230.0")
			Expect(f.client.UpdateDesiredLRP(f.logger, "", processGuid, update)).To(Succeed())

			Expect(f.desired.UpdateDesiredLRPCallCount()).To(Equal(1))
			_, _, guid, got := f.desired.UpdateDesiredLRPArgsForCall(0)
			Expect(guid).To(Equal(processGuid))
			Expect(got.GetInstances()).To(Equal(int32(3)))
			Expect(got.GetAnnotation()).To(Equal("1764583230.0"))
			Expect(got.Routes).To(BeNil())
		})

		It("answers an unknown guid with ResourceNotFound and BBS's exact message", func() {
			f.desired.UpdateDesiredLRPReturns(models.ErrResourceNotFound)
			err := f.client.UpdateDesiredLRP(f.logger, "", processGuid, &models.DesiredLRPUpdate{})
			Expect(err).To(MatchError(models.ErrResourceNotFound))
			Expect(err.Error()).To(Equal("the requested resource could not be found"))

			f.desired.RemoveDesiredLRPReturns(models.ErrResourceNotFound)
			Expect(f.client.RemoveDesiredLRP(f.logger, "", processGuid)).To(MatchError(models.ErrResourceNotFound))
		})

		It("refuses an update without a guid, or without an update", func() {
			err := f.client.UpdateDesiredLRP(f.logger, "", "", &models.DesiredLRPUpdate{})
			Expect(err).To(MatchError(models.NewError(models.Error_InvalidRequest, "Invalid field: process_guid")))
			f.desired.DesiredLRPByProcessGuidReturns(ccDesiredLRP(processGuid), nil)
			err = f.client.UpdateDesiredLRP(f.logger, "", processGuid, nil)
			Expect(err).To(MatchError(models.NewError(models.Error_InvalidRequest, "Invalid field: update")))
			Expect(f.desired.UpdateDesiredLRPCallCount()).To(Equal(0))
		})

		It("answers an update without an update of an unknown guid with ResourceNotFound, as BBS looks the LRP up first", func() {
			f.desired.DesiredLRPByProcessGuidReturns(nil, models.ErrResourceNotFound)
			err := f.client.UpdateDesiredLRP(f.logger, "", processGuid, nil)
			Expect(err).To(MatchError(models.ErrResourceNotFound))
			Expect(f.desired.UpdateDesiredLRPCallCount()).To(Equal(0))
		})

		It("hands a removal to the backend", func() {
			Expect(f.client.RemoveDesiredLRP(f.logger, "", processGuid)).To(Succeed())
			Expect(f.desired.RemoveDesiredLRPCallCount()).To(Equal(1))
			_, _, guid := f.desired.RemoveDesiredLRPArgsForCall(0)
			Expect(guid).To(Equal(processGuid))

			Expect(f.client.RemoveDesiredLRP(f.logger, "", "")).To(MatchError(models.NewError(models.Error_InvalidRequest, "Invalid field: process_guid")))
			Expect(f.desired.RemoveDesiredLRPCallCount()).To(Equal(1))
		})
	})

	Describe("reading desired LRPs", func() {
		var stored *models.DesiredLRP

		BeforeEach(func() {
			stored = ccDesiredLRP(processGuid)
			stored.MetricsGuid = "" // filled from the source_id tag on the way out, as BBS does
			f.desired.DesiredLRPByProcessGuidReturns(stored, nil)
		})

		It("serves get_by_process_guid.r3 in the current form", func() {
			got, err := f.client.DesiredLRPByProcessGuid(f.logger, "", processGuid)
			Expect(err).NotTo(HaveOccurred())
			_, _, guid := f.desired.DesiredLRPByProcessGuidArgsForCall(0)
			Expect(guid).To(Equal(processGuid))
			Expect(got.ImageLayers).To(HaveLen(2))
			Expect(got.CachedDependencies).To(BeEmpty())
			Expect(got.Setup).To(BeNil())
			Expect(got.MetricsGuid).To(Equal(processGuid[:36]))
			Expect(got.Annotation).To(Equal("1764583200.0"))
		})

		It("serves get_by_process_guid.r2 downgraded as BBS serves CC: layers become cached dependencies and downloads", func() {
			response := &models.DesiredLRPResponse{}
			f.postProto("/v1/desired_lrps/get_by_process_guid.r2", &models.DesiredLRPByProcessGuidRequest{ProcessGuid: processGuid}, response)
			Expect(response.Error).To(BeNil())
			got := response.DesiredLrp
			Expect(got.ImageLayers).To(BeEmpty())
			Expect(got.CachedDependencies).To(ConsistOf(HaveField("From", stored.ImageLayers[0].Url)))
			Expect(got.CachedDependencies[0].To).To(Equal("/tmp/lifecycle"))
			Expect(got.Setup).NotTo(BeNil())
			download := got.Setup.GetParallelAction().GetActions()[0].GetDownloadAction()
			Expect(download.From).To(Equal(stored.ImageLayers[1].Url))
			Expect(download.ChecksumAlgorithm).To(Equal("sha256"))
			Expect(download.User).To(Equal("vcap"))
			Expect(got.MetricsGuid).To(Equal(processGuid[:36]))
			// The backend's copy is left as it was.
			Expect(stored.ImageLayers).To(HaveLen(2))
		})

		It("answers an unknown guid with ResourceNotFound on both versions", func() {
			f.desired.DesiredLRPByProcessGuidReturns(nil, models.ErrResourceNotFound)
			_, err := f.client.DesiredLRPByProcessGuid(f.logger, "", processGuid)
			Expect(err).To(MatchError(models.ErrResourceNotFound))

			response := &models.DesiredLRPResponse{}
			f.postProto("/v1/desired_lrps/get_by_process_guid.r2", &models.DesiredLRPByProcessGuidRequest{ProcessGuid: processGuid}, response)
			Expect(response.Error).To(Equal(models.ErrResourceNotFound))
			Expect(response.DesiredLrp).To(BeNil())
		})

		It("serves list.r3 with the filter, metrics guids filled, and no empty cached-dependency list", func() {
			other := ccDesiredLRP(strings.Replace(processGuid, "5d1d", "6e2e", 1))
			other.ImageLayers = nil
			other.CachedDependencies = []*models.CachedDependency{}
			f.desired.DesiredLRPsReturns([]*models.DesiredLRP{stored, other}, nil)

			filter := models.DesiredLRPFilter{Domain: "cf-apps", ProcessGuids: []string{processGuid}, AppGuids: []string{"app"}}
			got, err := f.client.DesiredLRPs(f.logger, "", filter)
			Expect(err).NotTo(HaveOccurred())
			_, _, gotFilter := f.desired.DesiredLRPsArgsForCall(0)
			Expect(gotFilter).To(Equal(filter))
			Expect(got).To(HaveLen(2))
			Expect(got[0].ProcessGuid).To(Equal(processGuid))
			Expect(got[0].MetricsGuid).To(Equal(processGuid[:36]))
			Expect(got[0].ImageLayers).To(HaveLen(2))
			Expect(got[1].CachedDependencies).To(BeNil())
		})

		It("serves scheduling infos with CC's annotation verbatim", func() {
			info := stored.DesiredLRPSchedulingInfo()
			f.desired.DesiredLRPSchedulingInfosReturns([]*models.DesiredLRPSchedulingInfo{&info}, nil)

			got, err := f.client.DesiredLRPSchedulingInfos(f.logger, "", models.DesiredLRPFilter{Domain: "cf-apps"})
			Expect(err).NotTo(HaveOccurred())
			_, _, filter := f.desired.DesiredLRPSchedulingInfosArgsForCall(0)
			Expect(filter).To(Equal(models.DesiredLRPFilter{Domain: "cf-apps"}))
			Expect(got).To(HaveLen(1))
			Expect(got[0].Annotation).To(Equal("1764583200.0"))
			Expect(got[0].ProcessGuid).To(Equal(processGuid))
			Expect(got[0].Instances).To(Equal(int32(2)))
		})

		It("fails the scheduling infos rather than answering partly", func() {
			f.desired.DesiredLRPSchedulingInfosReturns(nil, errors.New("cache not synced"))
			_, err := f.client.DesiredLRPSchedulingInfos(f.logger, "", models.DesiredLRPFilter{Domain: "cf-apps"})
			Expect(err).To(MatchError(models.NewError(models.Error_UnknownError, "cache not synced")))
		})

		It("serves routing infos filtered by domain and guids only, as BBS does", func() {
			routing := stored.DesiredLRPRoutingInfo()
			f.desired.DesiredLRPRoutingInfosReturns([]*models.DesiredLRP{&routing}, nil)

			got, err := f.client.DesiredLRPRoutingInfos(f.logger, "", models.DesiredLRPFilter{Domain: "cf-apps", ProcessGuids: []string{processGuid}, AppGuids: []string{"ignored"}})
			Expect(err).NotTo(HaveOccurred())
			_, _, filter := f.desired.DesiredLRPRoutingInfosArgsForCall(0)
			Expect(filter).To(Equal(models.DesiredLRPFilter{Domain: "cf-apps", ProcessGuids: []string{processGuid}}))
			Expect(got).To(HaveLen(1))
			Expect(got[0].Routes).To(Equal(stored.Routes))
		})
	})

	Describe("actual LRPs", func() {
		var instance *models.ActualLRP

		BeforeEach(func() {
			instance = &models.ActualLRP{
				ActualLRPKey:         models.NewActualLRPKey(processGuid, 1, "cf-apps"),
				ActualLRPInstanceKey: models.NewActualLRPInstanceKey("instance-guid-1", "node-a"),
				ActualLRPNetInfo:     models.NewActualLRPNetInfo("10.0.0.7", "10.0.0.7", models.ActualLRPNetInfo_PreferredAddressInstance, models.NewPortMapping(8080, 8080)),
				State:                models.ActualLRPStateRunning,
				Since:                1764583200000000000,
				ModificationTag:      models.ModificationTag{Epoch: "epoch", Index: 1},
			}
			instance.SetRoutable(true)
		})

		It("passes every filter, telling index 0 from no index", func() {
			f.actual.ActualLRPsReturns([]*models.ActualLRP{instance}, nil)
			zero := int32(0)
			filters := []models.ActualLRPFilter{
				{ProcessGuid: processGuid},
				{ProcessGuid: processGuid, Index: &zero},
				{CellID: "node-a"},
				{Domain: "cf-apps"},
			}
			for i, filter := range filters {
				got, err := f.client.ActualLRPs(f.logger, "", filter)
				Expect(err).NotTo(HaveOccurred())
				Expect(got).To(Equal([]*models.ActualLRP{instance}))
				_, _, gotFilter := f.actual.ActualLRPsArgsForCall(i)
				Expect(gotFilter).To(Equal(filter))
			}
		})

		It("lists by process guids", func() {
			f.actual.ActualLRPsByProcessGuidsReturns([]*models.ActualLRP{instance}, nil)
			got, err := f.client.ActualLRPsByProcessGuids(f.logger, "", []string{processGuid, "other"})
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal([]*models.ActualLRP{instance}))
			_, _, filter := f.actual.ActualLRPsByProcessGuidsArgsForCall(0)
			Expect(filter.ProcessGuids).To(Equal([]string{processGuid, "other"}))

			_, err = f.client.ActualLRPsByProcessGuids(f.logger, "", nil)
			Expect(err).To(MatchError(models.NewError(models.Error_InvalidRequest, "process_guids must not be empty")))
			Expect(f.actual.ActualLRPsByProcessGuidsCallCount()).To(Equal(1))
		})

		It("retires an instance by its key", func() {
			key := models.NewActualLRPKey(processGuid, 1, "cf-apps")
			Expect(f.client.RetireActualLRP(f.logger, "", &key)).To(Succeed())
			_, _, got := f.actual.RetireActualLRPArgsForCall(0)
			Expect(*got).To(Equal(key))

			f.actual.RetireActualLRPReturns(models.ErrResourceNotFound)
			Expect(f.client.RetireActualLRP(f.logger, "", &key)).To(MatchError(models.ErrResourceNotFound))

			Expect(f.client.RetireActualLRP(f.logger, "", nil)).To(MatchError(models.NewError(models.Error_InvalidRequest, "Invalid field: actual_lrp_key")))
			Expect(f.actual.RetireActualLRPCallCount()).To(Equal(2))
		})
	})

	Describe("routes Iris does not serve", func() {
		It("answers task routes like an unknown route, which the client calls EndpointNotFound", func() {
			_, err := f.client.Tasks(f.logger, "")
			Expect(err).To(Equal(bbsclient.EndpointNotFoundErr))
			_, err = f.client.Cells(f.logger, "")
			Expect(err).To(Equal(bbsclient.EndpointNotFoundErr))
		})

		It("answers an unknown path with BBS's plain-text 404", func() {
			answer := f.post("/v1/tasks/desire.r2", "application/x-protobuf", nil)
			Expect(answer.StatusCode).To(Equal(http.StatusNotFound))
			Expect(answer.Header.Get("Content-Type")).To(Equal("text/plain; charset=utf-8"))
			body, err := io.ReadAll(answer.Body)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(body)).To(Equal("404 page not found\n"))
		})
	})

	It("refuses a client whose certificate Iris's client CA did not sign", func() {
		client := rawClient(suiteCerts.strangerCertFile, suiteCerts.strangerKeyFile)
		_, err := client.Post(f.server.URL+"/v1/ping", "application/x-protobuf", nil)
		Expect(err).To(HaveOccurred())
	})
})

// Compile-time checks that the in-memory store is what the handler wants.
var _ bbs.Domains = (*bbs.DomainStore)(nil)

var _ = Describe("DomainStore", func() {
	It("lists fresh domains sorted, and a re-upsert extends the TTL", func() {
		clock := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
		store := bbs.NewDomainStore(clock)
		ctx, logger := context.Background(), lager.NewLogger("test")
		Expect(store.UpsertDomain(ctx, logger, "cf-tasks", 120)).To(Succeed())
		Expect(store.UpsertDomain(ctx, logger, "cf-apps", 120)).To(Succeed())
		Expect(store.FreshDomains(ctx, logger)).To(Equal([]string{"cf-apps", "cf-tasks"}))

		clock.Step(100 * time.Second)
		Expect(store.UpsertDomain(ctx, logger, "cf-apps", 120)).To(Succeed())
		clock.Step(30 * time.Second)
		Expect(store.FreshDomains(ctx, logger)).To(Equal([]string{"cf-apps"}))

		clock.Step(91 * time.Second)
		Expect(store.FreshDomains(ctx, logger)).To(BeEmpty())
	})
})
