package bbs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/gogo/protobuf/proto"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/bifrost/bbs"
	"github.com/iris-cf/iris/bifrost/bbs/bbsfakes"
)

// encodingDesired is a backend that offers its scheduling infos encoded.
type encodingDesired struct {
	*bbsfakes.FakeDesiredLRPs
	infos  [][]byte
	err    error
	filter models.DesiredLRPFilter
}

func (e *encodingDesired) EncodedSchedulingInfos(_ context.Context, _ lager.Logger, filter models.DesiredLRPFilter) ([][]byte, error) {
	e.filter = filter
	return e.infos, e.err
}

var _ = Describe("Scheduling infos from a backend that keeps them encoded", func() {
	var (
		backend *encodingDesired
		handler *bbs.Handler
		infos   []*models.DesiredLRPSchedulingInfo
	)

	BeforeEach(func() {
		logger := lagertest.NewTestLogger("bbs")
		backend = &encodingDesired{FakeDesiredLRPs: &bbsfakes.FakeDesiredLRPs{}}
		handler = bbs.NewHandler(logger, bbs.Backends{
			DesiredLRPs: backend, ActualLRPs: &bbsfakes.FakeActualLRPs{},
			Domains: bbs.NewDomainStore(clocktesting.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))),
		}, bbs.NewEventHub(logger, 0), maxBodyBytes)
		for _, guid := range []string{processGuid, processGuid[:37] + "second-version"} {
			info := ccDesiredLRP(guid).DesiredLRPSchedulingInfo()
			infos = append(infos, &info)
			encoded, err := info.Marshal()
			Expect(err).NotTo(HaveOccurred())
			backend.infos = append(backend.infos, encoded)
		}
	})

	list := func() *httptest.ResponseRecorder {
		request, err := proto.Marshal(&models.DesiredLRPsRequest{Domain: "cf-apps"})
		Expect(err).NotTo(HaveOccurred())
		recorder := httptest.NewRecorder()
		handler.ServeHTTP(recorder, httptest.NewRequest(http.MethodPost, "/v1/desired_lrp_scheduling_infos/list", bytes.NewReader(request)))
		Expect(recorder.Code).To(Equal(http.StatusOK))
		return recorder
	}

	It("answers what encoding the list would, without asking for the decoded list", func() {
		// gogo encodes map entries (routes) in map order, so two encodings
		// of one list may differ in bytes: compare them decoded.
		encoded, err := proto.Marshal(&models.DesiredLRPSchedulingInfosResponse{DesiredLrpSchedulingInfos: infos})
		Expect(err).NotTo(HaveOccurred())
		want, got := &models.DesiredLRPSchedulingInfosResponse{}, &models.DesiredLRPSchedulingInfosResponse{}
		Expect(proto.Unmarshal(encoded, want)).To(Succeed())
		recorder := list()
		Expect(proto.Unmarshal(recorder.Body.Bytes(), got)).To(Succeed())
		Expect(got).To(Equal(want))
		Expect(got.DesiredLrpSchedulingInfos).To(HaveLen(2))
		Expect(got.DesiredLrpSchedulingInfos[1].ProcessGuid).To(HaveSuffix("second-version"))
		Expect(len(recorder.Body.Bytes())).To(Equal(len(encoded)))
		Expect(recorder.Header().Get("Content-Type")).To(Equal("application/x-protobuf"))
		Expect(backend.filter).To(Equal(models.DesiredLRPFilter{Domain: "cf-apps"}))
		Expect(backend.DesiredLRPSchedulingInfosCallCount()).To(BeZero())
	})

	It("writes a long list, in chunks, byte for byte as proto.Marshal encodes it", func() {
		// Infos without routes (gogo encodes a map in map order) and with
		// annotations of lengths that make one-, two- and three-byte
		// varints, one larger than a written chunk.
		infos = nil
		backend.infos = nil
		for i := 0; i < 3000; i++ {
			info := &models.DesiredLRPSchedulingInfo{
				DesiredLRPKey: models.NewDesiredLRPKey(fmt.Sprintf("%036d-v%d", i, i), "cf-apps", "log-guid"),
				Annotation:    strings.Repeat("a", []int{0, 10, 120, 300, 20000}[i%5]),
				Instances:     int32(i % 7),
			}
			if i == 1500 {
				info.Annotation = strings.Repeat("b", 100<<10)
			}
			infos = append(infos, info)
			encoded, err := info.Marshal()
			Expect(err).NotTo(HaveOccurred())
			backend.infos = append(backend.infos, encoded)
		}
		want, err := proto.Marshal(&models.DesiredLRPSchedulingInfosResponse{DesiredLrpSchedulingInfos: infos})
		Expect(err).NotTo(HaveOccurred())
		recorder := list()
		Expect(recorder.Body.Bytes()).To(Equal(want))
		Expect(recorder.Header().Get("Content-Length")).To(Equal(strconv.Itoa(len(want))))
		Expect(recorder.Header().Get("Content-Type")).To(Equal("application/x-protobuf"))
	})

	It("answers an empty list and a failure as BBS does", func() {
		backend.infos = nil
		Expect(list().Body.Bytes()).To(BeEmpty(), "an empty response encodes to nothing")

		backend.err = errors.New("cache not synced")
		response := &models.DesiredLRPSchedulingInfosResponse{}
		Expect(proto.Unmarshal(list().Body.Bytes(), response)).To(Succeed())
		Expect(response.Error).To(Equal(models.NewError(models.Error_UnknownError, "cache not synced")))
		Expect(response.DesiredLrpSchedulingInfos).To(BeEmpty())
	})
})
