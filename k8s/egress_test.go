package k8s_test

import (
	"encoding/json"
	"net/netip"
	"os"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

var _ = Describe("Egress policies from security groups", func() {
	var cfg config.LRP

	BeforeEach(func() {
		cfg = config.Default().LRP
	})

	// rulesFromCC decodes egress_rules as CC puts them on the wire.
	rulesFromCC := func(raw string) []models.SecurityGroupRule {
		GinkgoHelper()
		var rules []models.SecurityGroupRule
		Expect(json.Unmarshal([]byte(raw), &rules)).To(Succeed())
		return rules
	}

	policyFor := func(rules []models.SecurityGroupRule) *networkingv1.NetworkPolicy {
		GinkgoHelper()
		lrp := dockerLRP()
		lrp.EgressRules = rules
		objects, err := k8s.NewBuilder(cfg).Build(bifrost.DesiredLRP(lrp), "ns")
		Expect(err).NotTo(HaveOccurred())
		Expect(objects.EgressPolicy).NotTo(BeNil())
		return objects.EgressPolicy
	}

	buildErr := func(rules []models.SecurityGroupRule) error {
		lrp := dockerLRP()
		lrp.EgressRules = rules
		_, err := k8s.NewBuilder(cfg).Build(bifrost.DesiredLRP(lrp), "ns")
		return err
	}

	port := func(protocol corev1.Protocol, number int32) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: ptr.To(protocol), Port: ptr.To(intstr.FromInt32(number))}
	}
	cidrs := func(rule networkingv1.NetworkPolicyEgressRule) []string {
		var out []string
		for _, peer := range rule.To {
			out = append(out, peer.IPBlock.CIDR)
		}
		return out
	}

	It("selects exactly the LRP's pods, for egress only, named and labelled like its StatefulSet", func() {
		lrp := dockerLRP()
		objects, err := k8s.NewBuilder(cfg).Build(bifrost.DesiredLRP(lrp), "ns")
		Expect(err).NotTo(HaveOccurred())
		policy := objects.EgressPolicy
		Expect(policy.Name).To(Equal(objects.StatefulSet.Name))
		Expect(policy.Namespace).To(Equal("ns"))
		Expect(policy.Labels).To(Equal(objects.StatefulSet.Labels))
		Expect(policy.Spec.PodSelector.MatchLabels).To(Equal(objects.StatefulSet.Spec.Selector.MatchLabels))
		Expect(policy.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeEgress))
	})

	It("allows only cluster DNS when CC sends no rules, as Diego allows only the cell's DNS", func() {
		policy := policyFor(nil)
		Expect(policy.Spec.Egress).To(HaveLen(1))
		dns := policy.Spec.Egress[0]
		Expect(dns.To).To(HaveLen(1))
		Expect(dns.To[0].NamespaceSelector.MatchLabels).To(Equal(map[string]string{"kubernetes.io/metadata.name": "kube-system"}))
		Expect(dns.To[0].PodSelector.MatchLabels).To(Equal(map[string]string{"k8s-app": "kube-dns"}))
		Expect(dns.Ports).To(ConsistOf(port(corev1.ProtocolUDP, 53), port(corev1.ProtocolTCP, 53)))
	})

	It("leaves DNS to the security groups when no DNS namespace is configured", func() {
		cfg.EgressPolicies.DNSNamespace = ""
		Expect(policyFor(nil).Spec.Egress).To(BeEmpty(), "an empty egress list denies all egress")
	})

	It("creates no policy when egress policies are off", func() {
		cfg.EgressPolicies.Enabled = false
		lrp := dockerLRP()
		lrp.EgressRules = rulesFromCC(`[{"protocol":"all","destinations":["0.0.0.0/0"]}]`)
		objects, err := k8s.NewBuilder(cfg).Build(bifrost.DesiredLRP(lrp), "ns")
		Expect(err).NotTo(HaveOccurred())
		Expect(objects.EgressPolicy).To(BeNil())
	})

	It("translates ports, port ranges, protocols and every destination form", func() {
		policy := policyFor(rulesFromCC(`[
			{"protocol":"tcp","destinations":["10.0.0.0/8"],"ports":[80,443]},
			{"protocol":"udp","destinations":["192.168.1.7"],"portRange":{"start":1000,"end":2000}},
			{"protocol":"tcp","destinations":["10.1.2.3/16"],"port_range":{"start":8080,"end":8080}},
			{"protocol":"all","destinations":["10.0.0.1-10.0.0.6"]},
			{"protocol":"UDP","destinations":["2001:db8::/32, 172.16.0.1"]}
		]`))
		egress := policy.Spec.Egress[1:] // [0] is DNS
		Expect(egress).To(HaveLen(5))

		Expect(cidrs(egress[0])).To(Equal([]string{"10.0.0.0/8"}))
		Expect(egress[0].Ports).To(Equal([]networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 80), port(corev1.ProtocolTCP, 443)}))

		Expect(cidrs(egress[1])).To(Equal([]string{"192.168.1.7/32"}))
		Expect(egress[1].Ports).To(HaveLen(1))
		Expect(egress[1].Ports[0].Port).To(Equal(ptr.To(intstr.FromInt32(1000))))
		Expect(egress[1].Ports[0].EndPort).To(HaveValue(BeEquivalentTo(2000)))
		Expect(egress[1].Ports[0].Protocol).To(HaveValue(Equal(corev1.ProtocolUDP)))

		Expect(cidrs(egress[2])).To(Equal([]string{"10.1.0.0/16"}), "host bits are masked off")
		Expect(egress[2].Ports).To(Equal([]networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 8080)}), "a one-port range has no endPort")

		Expect(cidrs(egress[3])).To(Equal([]string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"}))
		Expect(egress[3].Ports).To(BeEmpty(), "protocol all: every protocol and port")

		Expect(cidrs(egress[4])).To(Equal([]string{"2001:db8::/32", "172.16.0.1/32"}))
		Expect(egress[4].Ports).To(Equal([]networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolUDP)}}), "no ports: every port of the protocol")
		Expect(policy.Annotations).NotTo(HaveKey(k8s.AnnotationUnenforcedEgressRules))
	})

	It("leaves ICMP rules out, so ICMP stays denied, and lists them on the policy", func() {
		policy := policyFor(rulesFromCC(`[
			{"protocol":"icmp","destinations":["0.0.0.0/0"],"icmpInfo":{"type":8,"code":0}},
			{"protocol":"tcp","destinations":["0.0.0.0/0"],"ports":[443],"log":true}
		]`))
		Expect(policy.Spec.Egress).To(HaveLen(2))
		Expect(cidrs(policy.Spec.Egress[1])).To(Equal([]string{"0.0.0.0/0"}))

		var unenforced []models.SecurityGroupRule
		Expect(json.Unmarshal([]byte(policy.Annotations[k8s.AnnotationUnenforcedEgressRules]), &unenforced)).To(Succeed())
		Expect(unenforced).To(Equal([]models.SecurityGroupRule{{
			Protocol: "icmp", Destinations: []string{"0.0.0.0/0"}, ICMPInfo: &models.ICMPInfo{Type: 8, Code: 0},
		}}))
	})

	It("renders CF's default public_networks group (the example LRP) to exactly the public addresses", func() {
		data, err := os.ReadFile("../examples/lrp-dora.json")
		Expect(err).NotTo(HaveOccurred())
		var lrp models.DesireLRPRequest
		Expect(json.Unmarshal(data, &lrp)).To(Succeed())
		objects, err := k8s.NewBuilder(cfg).Build(bifrost.DesiredLRP(&lrp), "ns")
		Expect(err).NotTo(HaveOccurred())
		public := objects.EgressPolicy.Spec.Egress[1]
		covered := func(ip string) bool {
			addr := netip.MustParseAddr(ip)
			for _, peer := range public.To {
				if netip.MustParsePrefix(peer.IPBlock.CIDR).Contains(addr) {
					return true
				}
			}
			return false
		}
		for _, ip := range []string{"8.8.8.8", "9.255.255.255", "11.0.0.0", "172.15.255.255", "172.32.0.0", "192.169.0.0", "255.255.255.255"} {
			Expect(covered(ip)).To(BeTrue(), ip)
		}
		for _, ip := range []string{"10.0.0.1", "10.255.255.255", "169.254.169.254", "172.16.0.1", "172.31.255.255", "192.168.1.1"} {
			Expect(covered(ip)).To(BeFalse(), ip)
		}
		Expect(objects.EgressPolicy.Spec.Egress).To(HaveLen(4))
	})

	DescribeTable("rejects rules it would enforce wrongly, with the rule's index",
		func(raw, message string) {
			err := buildErr(rulesFromCC(raw))
			var invalid *models.InvalidRequestError
			Expect(err).To(BeAssignableToTypeOf(invalid))
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("unknown protocol", `[{"protocol":"tcp","destinations":["1.2.3.4"]},{"protocol":"sctp","destinations":["1.2.3.4"]}]`, `egress_rules[1]: protocol "sctp"`),
		Entry("no destinations", `[{"protocol":"all","destinations":[]}]`, "no destinations"),
		Entry("not an address", `[{"protocol":"all","destinations":["example.com"]}]`, `"example.com"`),
		Entry("bad CIDR", `[{"protocol":"all","destinations":["10.0.0.0/33"]}]`, `"10.0.0.0/33"`),
		Entry("reversed range", `[{"protocol":"all","destinations":["10.0.0.9-10.0.0.1"]}]`, "ends before it starts"),
		Entry("mixed families", `[{"protocol":"all","destinations":["10.0.0.1-::1"]}]`, "mixes IPv4 and IPv6"),
		Entry("port zero", `[{"protocol":"tcp","destinations":["1.2.3.4"],"ports":[0]}]`, "port 0 out of range"),
		Entry("port too large", `[{"protocol":"tcp","destinations":["1.2.3.4"],"ports":[70000]}]`, "port 70000 out of range"),
		Entry("reversed port range", `[{"protocol":"udp","destinations":["1.2.3.4"],"portRange":{"start":20,"end":10}}]`, "port range 20-10"),
	)
})
