package bbswire_test

import (
	"encoding/json"

	"code.cloudfoundry.org/bbs/models"
	"github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/internal/bbswire"
)

var _ = ginkgo.Describe("reading the process guid of an encoded scheduling info", func() {
	encode := func(info *models.DesiredLRPSchedulingInfo) []byte {
		encoded, err := info.Marshal()
		Expect(err).NotTo(HaveOccurred())
		return encoded
	}
	// decoded is what a decoder reads as the process guid.
	decoded := func(encoded []byte) string {
		info := &models.DesiredLRPSchedulingInfo{}
		Expect(info.Unmarshal(encoded)).To(Succeed())
		return info.ProcessGuid
	}

	ginkgo.DescribeTable("reads what a decoder reads",
		func(encoded []byte, want string) {
			Expect(decoded(encoded)).To(Equal(want))
			guid, err := bbswire.SchedulingInfoProcessGUID(encoded)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(guid)).To(Equal(want))
		},
		ginkgo.Entry("a full info", encode(&models.DesiredLRPSchedulingInfo{
			DesiredLRPKey: models.DesiredLRPKey{ProcessGuid: "pg-1", Domain: "cf-apps", LogGuid: "log-1"},
			Annotation:    "pg-2", Instances: 3, DesiredLRPResource: models.DesiredLRPResource{MemoryMb: 256, RootFs: "docker:///pg-3"},
			PlacementTags: []string{"pg-4"},
		}), "pg-1"),
		ginkgo.Entry("no process guid", encode(&models.DesiredLRPSchedulingInfo{Annotation: "pg-2"}), ""),
		ginkgo.Entry("a key repeated (embedded messages merge, the last guid wins)",
			append(encode(&models.DesiredLRPSchedulingInfo{DesiredLRPKey: models.DesiredLRPKey{ProcessGuid: "first", Domain: "cf-apps"}}),
				encode(&models.DesiredLRPSchedulingInfo{DesiredLRPKey: models.DesiredLRPKey{ProcessGuid: "last"}})...), "last"),
		ginkgo.Entry("a key repeated without a guid", append(encode(&models.DesiredLRPSchedulingInfo{DesiredLRPKey: models.DesiredLRPKey{ProcessGuid: "first"}}),
			encode(&models.DesiredLRPSchedulingInfo{DesiredLRPKey: models.DesiredLRPKey{Domain: "cf-apps"}})...), "first"),
	)

	ginkgo.It("fails on a truncated encoding", func() {
		encoded := encode(&models.DesiredLRPSchedulingInfo{DesiredLRPKey: models.DesiredLRPKey{ProcessGuid: "pg-1"}, Annotation: "x"})
		for _, cut := range []int{1, 3, len(encoded) - 1} {
			_, err := bbswire.SchedulingInfoProcessGUID(encoded[:cut])
			Expect(err).To(HaveOccurred(), "cut at %d", cut)
		}
	})

	ginkgo.It("reads the routes a decoder reads, without decoding the rest", func() {
		web := json.RawMessage(`[{"hostnames":["dora.example.com"],"port":8080}]`)
		tcp := json.RawMessage(`[{"router_group_guid":"g","external_port":1024,"container_port":8080}]`)
		for _, info := range []*models.DesiredLRPSchedulingInfo{
			{DesiredLRPKey: models.DesiredLRPKey{ProcessGuid: "pg-1"}, Routes: models.Routes{"cf-router": &web, "tcp-router": &tcp}, Instances: 2},
			{DesiredLRPKey: models.DesiredLRPKey{ProcessGuid: "pg-1"}, Routes: models.Routes{}},
			{DesiredLRPKey: models.DesiredLRPKey{ProcessGuid: "pg-1"}},
		} {
			encoded := encode(info)
			decodedInfo := &models.DesiredLRPSchedulingInfo{}
			Expect(decodedInfo.Unmarshal(encoded)).To(Succeed())
			routes, err := bbswire.SchedulingInfoRoutes(encoded)
			Expect(err).NotTo(HaveOccurred())
			if len(decodedInfo.Routes) == 0 {
				Expect(routes).To(BeEmpty())
				continue
			}
			Expect(routes).To(Equal(decodedInfo.Routes))
		}
		_, err := bbswire.SchedulingInfoRoutes(encode(&models.DesiredLRPSchedulingInfo{Routes: models.Routes{"cf-router": &web}})[:5])
		Expect(err).To(HaveOccurred())
	})
})
