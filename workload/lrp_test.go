package workload_test

import (
	"encoding/json"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/workload"
)

func validLRP() *workload.DesiredLRP {
	return &workload.DesiredLRP{
		ProcessGUID: "g-v", GUID: "g", Version: "v", Instances: 1,
		Ports:   []int32{8080},
		Routes:  workload.Routes{"cf-router": json.RawMessage(`[{"hostnames":["a.example.com"],"port":8080}]`)},
		Process: workload.Process{Image: "busybox"},
		HealthChecks: workload.HealthChecks{
			Liveness: &workload.HealthCheck{Type: workload.CheckTCP},
		},
	}
}

var _ = Describe("DesiredLRP.Validate", func() {
	It("accepts a complete LRP", func() {
		Expect(validLRP().Validate()).To(Succeed())
	})

	DescribeTable("refuses what cannot run, as an invalid request",
		func(change func(*workload.DesiredLRP), message string) {
			lrp := validLRP()
			change(lrp)
			err := lrp.Validate()
			Expect(models.IsInvalid(err)).To(BeTrue())
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("no process guid", func(l *workload.DesiredLRP) { l.ProcessGUID = "" }, "process_guid is required"),
		Entry("no version", func(l *workload.DesiredLRP) { l.Version = "" }, "guid and version are required"),
		Entry("negative instances", func(l *workload.DesiredLRP) { l.Instances = -1 }, "instances must not be negative"),
		Entry("negative memory", func(l *workload.DesiredLRP) { l.Resources.MemoryMB = -1 }, "must not be negative"),
		Entry("port 0", func(l *workload.DesiredLRP) { l.Ports = []int32{0} }, "out of range"),
		Entry("an unknown check type", func(l *workload.DesiredLRP) { l.HealthChecks.Readiness = &workload.HealthCheck{Type: "grpc"} }, "readiness check"),
		Entry("two placement tags", func(l *workload.DesiredLRP) { l.PlacementTags = []string{"a", "b"} }, "placement_tags"),
		Entry("an empty placement tag", func(l *workload.DesiredLRP) { l.PlacementTags = []string{""} }, "must not be empty"),
		Entry("cf-router routes that are not a list", func(l *workload.DesiredLRP) {
			l.Routes["cf-router"] = json.RawMessage(`{"port":1}`)
		}, "cf-router"),
		Entry("an unnamed variable", func(l *workload.DesiredLRP) { l.Env = map[string]string{"": "x"} }, "variable names"),
		Entry("a volume mount without a dir", func(l *workload.DesiredLRP) { l.VolumeMounts = []workload.VolumeMount{{VolumeID: "v"}} }, "volume_mounts"),
		Entry("neither image nor droplet", func(l *workload.DesiredLRP) { l.Process.Image = "" }, "an image or a droplet is required"),
		Entry("both image and droplet", func(l *workload.DesiredLRP) { l.Process.Droplet = &workload.Droplet{GUID: "d", Hash: "h"} }, "not both"),
		Entry("a droplet without a hash", func(l *workload.DesiredLRP) {
			l.Process = workload.Process{Droplet: &workload.Droplet{GUID: "d"}}
		}, "droplet_guid and droplet_hash"),
		Entry("a username without a password", func(l *workload.DesiredLRP) {
			l.RegistryCredentials = &workload.RegistryCredentials{Username: "u"}
		}, "both a username and a password"),
	)

	It("keeps routes of every router verbatim when marshalled", func() {
		routes := workload.Routes{
			"cf-router":  json.RawMessage(`[{"hostnames":["a.example.com"],"port":8080,"options":{}}]`),
			"tcp-router": json.RawMessage(`[]`),
			"diego-ssh":  json.RawMessage(`{"container_port":2222}`),
		}
		marshalled, err := workload.MarshalRoutes(routes)
		Expect(err).NotTo(HaveOccurred())
		Expect(marshalled).To(MatchJSON(`{"cf-router":[{"hostnames":["a.example.com"],"port":8080,"options":{}}],"tcp-router":[],"diego-ssh":{"container_port":2222}}`))
		Expect(workload.MarshalRoutes(nil)).To(Equal("{}"))
	})
})
