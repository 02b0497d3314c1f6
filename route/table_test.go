package route_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	gtypes "github.com/onsi/gomega/types"

	"github.com/iris-cf/iris/route"
)

func lrp(routes ...route.Route) route.LRP {
	return route.LRP{
		AppGUID: "app", AppName: "dora", GUID: "app", ProcessGUID: "app-v1", ProcessType: "web",
		OrgGUID: "org", OrgName: "acme", SpaceGUID: "space", SpaceName: "dev", Routes: routes,
	}
}

func reg(host string, port uint32, uri string) gtypes.GomegaMatcher {
	return And(HaveField("Host", host), HaveField("Port", port), HaveField("URIs", Equal([]string{uri})))
}

var _ = Describe("Table", func() {
	var table *route.Table
	web := route.Route{Hostname: "dora.example.com", Port: 8080}
	admin := route.Route{Hostname: "admin.example.com", Port: 9090}
	ep0 := route.Endpoint{InstanceGUID: "uid-0", Index: 0, IP: "10.0.0.1", ReadySinceNs: 1}
	ep1 := route.Endpoint{InstanceGUID: "uid-1", Index: 1, IP: "10.0.0.2", ReadySinceNs: 2}

	BeforeEach(func() { table = route.NewTable(0) })

	It("registers nothing until both the LRP and a ready endpoint are known", func() {
		Expect(table.SetEndpoint("app-v1", "pod-0", ep0).Empty()).To(BeTrue())
		changes := table.SetLRP(lrp(web))
		Expect(changes.Unregistrations).To(BeEmpty())
		Expect(changes.Registrations).To(ConsistOf(reg("10.0.0.1", 8080, "dora.example.com")))
	})

	It("builds messages in gorouter's shape", func() {
		table.SetLRP(lrp(web))
		m := table.SetEndpoint("app-v1", "pod-1", ep1).Registrations[0]
		Expect(m).To(Equal(route.RegistryMessage{
			Host: "10.0.0.2", Port: 8080, URIs: []string{"dora.example.com"}, App: "app",
			PrivateInstanceID: "uid-1", PrivateInstanceIndex: "1", ServerCertDomainSAN: "uid-1",
			EndpointUpdatedAtNs: 2,
			Tags: map[string]string{
				"component": "route-emitter", "app_id": "app", "app_name": "dora", "source_id": "app",
				// CC's metric tags: the unversioned process guid (CC's
				// process guid is the app guid for web) and the instance guid.
				"process_id": "app", "process_instance_id": "uid-1", "process_type": "web", "instance_id": "1",
				"organization_id": "org", "organization_name": "acme", "space_id": "space", "space_name": "dev",
			},
		}))
	})

	It("advertises the configured TLS port", func() {
		table = route.NewTable(61001)
		table.SetLRP(lrp(web))
		Expect(table.SetEndpoint("app-v1", "pod-0", ep0).Registrations[0].TLSPort).To(Equal(uint32(61001)))
	})

	It("sends each route to its own port", func() {
		table.SetLRP(lrp(web, admin))
		changes := table.SetEndpoint("app-v1", "pod-0", ep0)
		Expect(changes.Registrations).To(ConsistOf(
			reg("10.0.0.1", 8080, "dora.example.com"),
			reg("10.0.0.1", 9090, "admin.example.com"),
		))
	})

	It("unregisters an endpoint that stops being ready", func() {
		table.SetLRP(lrp(web))
		table.SetEndpoint("app-v1", "pod-0", ep0)
		table.SetEndpoint("app-v1", "pod-1", ep1)
		changes := table.RemoveEndpoint("app-v1", "pod-1")
		Expect(changes.Registrations).To(BeEmpty())
		Expect(changes.Unregistrations).To(ConsistOf(reg("10.0.0.2", 8080, "dora.example.com")))
		Expect(table.Len()).To(Equal(1))
	})

	It("on a route change unregisters removed routes and registers new ones only", func() {
		table.SetLRP(lrp(web, admin))
		table.SetEndpoint("app-v1", "pod-0", ep0)
		changes := table.SetLRP(lrp(web, route.Route{Hostname: "new.example.com", Port: 8080}))
		Expect(changes.Registrations).To(ConsistOf(reg("10.0.0.1", 8080, "new.example.com")))
		Expect(changes.Unregistrations).To(ConsistOf(reg("10.0.0.1", 9090, "admin.example.com")))
	})

	It("re-registers an endpoint whose pod was replaced at the same address", func() {
		table.SetLRP(lrp(web))
		table.SetEndpoint("app-v1", "pod-0", ep0)
		replaced := ep0
		replaced.InstanceGUID, replaced.ReadySinceNs = "uid-0b", 5
		changes := table.SetEndpoint("app-v1", "pod-0", replaced)
		Expect(changes.Unregistrations).To(BeEmpty())
		Expect(changes.Registrations).To(ConsistOf(HaveField("PrivateInstanceID", "uid-0b")))
	})

	It("sends nothing when nothing changed", func() {
		table.SetLRP(lrp(web))
		table.SetEndpoint("app-v1", "pod-0", ep0)
		Expect(table.SetEndpoint("app-v1", "pod-0", ep0).Empty()).To(BeTrue())
		Expect(table.SetLRP(lrp(web)).Empty()).To(BeTrue())
	})

	It("unregisters everything when the LRP goes, and forgets it", func() {
		table.SetLRP(lrp(web))
		table.SetEndpoint("app-v1", "pod-0", ep0)
		table.SetEndpoint("app-v1", "pod-1", ep1)
		Expect(table.RemoveLRP("app-v1").Unregistrations).To(HaveLen(2))
		table.RemoveEndpoint("app-v1", "pod-0")
		table.RemoveEndpoint("app-v1", "pod-1")
		Expect(table.Len()).To(BeZero())
		count := 0
		table.Each(func(route.RegistryMessage) { count++ })
		Expect(count).To(BeZero())
	})

	It("yields every registration for the re-emit", func() {
		table.SetLRP(lrp(web, admin))
		table.SetEndpoint("app-v1", "pod-0", ep0)
		table.SetEndpoint("app-v1", "pod-1", ep1)
		var all []route.RegistryMessage
		table.Each(func(m route.RegistryMessage) { all = append(all, m) })
		Expect(all).To(HaveLen(4))
		Expect(table.Len()).To(Equal(4))
	})
})
