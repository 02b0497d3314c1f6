package bbs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
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

// streamingDesired hands its LRPs over one at a time, failing with err
// before the failAt-th (never when failAt < 0).
type streamingDesired struct {
	*bbsfakes.FakeDesiredLRPs
	lrps   []*models.DesiredLRP
	failAt int
	err    error
}

func (s *streamingDesired) EachDesiredLRP(_ context.Context, _ lager.Logger, _ models.DesiredLRPFilter, fn func(*models.DesiredLRP) error) error {
	for i, lrp := range s.lrps {
		if i == s.failAt {
			return s.err
		}
		if err := fn(lrp); err != nil {
			return err
		}
	}
	return nil
}

var _ = Describe("The whole-LRP list from a backend that hands LRPs over one at a time", func() {
	var (
		streaming *streamingDesired
		plain     *bbsfakes.FakeDesiredLRPs
		server    *httptest.Server
	)
	// lrps are n LRPs (about 1 KB encoded each), fresh each call: the
	// handler fills in metric tags.
	lrps := func(n int) []*models.DesiredLRP {
		var out []*models.DesiredLRP
		for i := 0; i < n; i++ {
			lrp := ccDesiredLRP(fmt.Sprintf("%s-%04d", processGuid[:36], i))
			if i%2 == 0 {
				lrp.MetricsGuid = "" // filled from the source_id tag
			}
			out = append(out, lrp)
		}
		return out
	}
	serve := func(desired bbs.DesiredLRPs) *httptest.Server {
		logger := lagertest.NewTestLogger("bbs")
		s := httptest.NewServer(bbs.NewHandler(logger, bbs.Backends{
			DesiredLRPs: desired, ActualLRPs: &bbsfakes.FakeActualLRPs{},
			Domains: bbs.NewDomainStore(clocktesting.NewFakeClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))),
		}, bbs.NewEventHub(logger, 0), maxBodyBytes))
		DeferCleanup(s.Close)
		return s
	}
	list := func(s *httptest.Server) (*models.DesiredLRPsResponse, *http.Response) {
		request, err := proto.Marshal(&models.DesiredLRPsRequest{Domain: "cf-apps"})
		Expect(err).NotTo(HaveOccurred())
		answer, err := http.Post(s.URL+"/v1/desired_lrps/list.r3", "application/x-protobuf", bytes.NewReader(request))
		Expect(err).NotTo(HaveOccurred())
		defer answer.Body.Close()
		Expect(answer.StatusCode).To(Equal(http.StatusOK))
		Expect(answer.Header.Get("Content-Type")).To(Equal("application/x-protobuf"))
		body, err := io.ReadAll(answer.Body)
		Expect(err).NotTo(HaveOccurred())
		response := &models.DesiredLRPsResponse{}
		Expect(proto.Unmarshal(body, response)).To(Succeed())
		return response, answer
	}

	BeforeEach(func() {
		streaming = &streamingDesired{FakeDesiredLRPs: &bbsfakes.FakeDesiredLRPs{}, failAt: -1, err: errors.New("record unreadable")}
		plain = &bbsfakes.FakeDesiredLRPs{}
		server = serve(streaming)
	})

	It("answers what the list of decoded LRPs answers, over several chunks", func() {
		streaming.lrps = lrps(300)
		plain.DesiredLRPsReturns(lrps(300), nil)
		want, _ := list(serve(plain))
		Expect(want.DesiredLrps).To(HaveLen(300))
		Expect(want.DesiredLrps[0].MetricsGuid).NotTo(BeEmpty())
		got, answer := list(server)
		Expect(got).To(Equal(want))
		Expect(want.Size()).To(BeNumerically(">", 3*64<<10), "several written chunks")
		Expect(answer.TransferEncoding).To(Equal([]string{"chunked"}))
		Expect(streaming.DesiredLRPsCallCount()).To(BeZero())
	})

	It("answers an empty list as BBS does", func() {
		got, _ := list(server)
		Expect(got).To(Equal(&models.DesiredLRPsResponse{}))
	})

	It("answers a failure before anything went out with the error alone", func() {
		streaming.lrps, streaming.failAt = lrps(5), 3
		got, _ := list(server)
		Expect(got.Error).To(Equal(models.NewError(models.Error_UnknownError, "record unreadable")))
		Expect(got.DesiredLrps).To(BeEmpty())
	})

	It("ends a list that fails after part of it went out with the error, which the bbs client returns", func() {
		streaming.lrps, streaming.failAt = lrps(300), 200
		got, _ := list(server)
		Expect(got.Error).To(Equal(models.NewError(models.Error_UnknownError, "record unreadable")))
		Expect(len(got.DesiredLrps)).To(BeNumerically(">", 0))

		client, err := bbsclient.NewClientWithConfig(bbsclient.ClientConfig{URL: server.URL, RequestTimeout: time.Minute})
		Expect(err).NotTo(HaveOccurred())
		_, err = client.DesiredLRPs(lagertest.NewTestLogger("client"), "", models.DesiredLRPFilter{Domain: "cf-apps"})
		Expect(err).To(MatchError(ContainSubstring("record unreadable")))
	})
})
