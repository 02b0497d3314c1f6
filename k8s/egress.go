package k8s

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/models"
)

// AnnotationUnenforcedEgressRules lists, as JSON, the security group rules
// a NetworkPolicy cannot express (ICMP): they are left out, so that
// traffic stays denied, and recorded here for operators.
const AnnotationUnenforcedEgressRules = "cloudfoundry.org/unenforced_egress_rules"

// namespaceNameLabel is set by Kubernetes on every namespace.
const namespaceNameLabel = "kubernetes.io/metadata.name"

const dnsPort = 53

// egressPolicy returns the NetworkPolicy that limits the egress of the pods
// matched by selector to what rules allow (plus cluster DNS), or nil when
// the operator turned egress policies off. Rules CC could not have sent
// (unknown protocol, unparsable destination, port out of range) are an
// InvalidRequestError, so nothing is created for a request Iris would
// enforce wrongly.
func (b *Builder) egressPolicy(name, namespace string, objectLabels, selector map[string]string, rules []models.SecurityGroupRule) (*networkingv1.NetworkPolicy, error) {
	cfg := b.cfg.EgressPolicies
	if !cfg.Enabled {
		return nil, nil
	}
	egress := []networkingv1.NetworkPolicyEgressRule{}
	if cfg.DNSNamespace != "" {
		dnsPods, err := labels.ConvertSelectorToLabelsMap(cfg.DNSPodSelector)
		if err != nil {
			return nil, fmt.Errorf("lrp.egress_policies.dns_pod_selector: %w", err)
		}
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{
			To: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{namespaceNameLabel: cfg.DNSNamespace}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: dnsPods},
			}},
			Ports: []networkingv1.NetworkPolicyPort{
				{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(dnsPort))},
				{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(dnsPort))},
			},
		})
	}

	var unenforced []models.SecurityGroupRule
	for i, rule := range rules {
		translated, enforceable, err := egressRule(rule)
		if err != nil {
			return nil, models.Invalidf("egress_rules[%d]: %v", i, err)
		}
		if !enforceable {
			unenforced = append(unenforced, rule)
			continue
		}
		egress = append(egress, translated)
	}

	policy := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: objectLabels},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selector},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      egress,
		},
	}
	if len(unenforced) > 0 {
		listed, err := json.Marshal(unenforced)
		if err != nil {
			return nil, fmt.Errorf("recording unenforced egress rules: %w", err)
		}
		policy.Annotations = map[string]string{AnnotationUnenforcedEgressRules: string(listed)}
	}
	return policy, nil
}

// egressRule translates one security group rule. enforceable is false for
// ICMP, which a NetworkPolicy cannot select: allowing it would need allowing
// every protocol to those destinations.
func egressRule(rule models.SecurityGroupRule) (translated networkingv1.NetworkPolicyEgressRule, enforceable bool, err error) {
	peers, err := egressPeers(rule.Destinations)
	if err != nil {
		return translated, false, err
	}
	translated.To = peers
	switch protocol := strings.ToLower(rule.Protocol); protocol {
	case "all":
		// No ports: every protocol and port to these destinations.
	case "tcp", "udp":
		translated.Ports, err = egressPorts(corev1.Protocol(strings.ToUpper(protocol)), rule)
		if err != nil {
			return translated, false, err
		}
	case "icmp", "icmpv6":
		return translated, false, nil
	default:
		return translated, false, fmt.Errorf("protocol %q: want tcp, udp, icmp or all", rule.Protocol)
	}
	return translated, true, nil
}

// egressPeers turns destinations (addresses, CIDRs, "first-last" ranges,
// possibly several joined by commas) into ipBlocks.
func egressPeers(destinations []string) ([]networkingv1.NetworkPolicyPeer, error) {
	var peers []networkingv1.NetworkPolicyPeer
	for _, joined := range destinations {
		for _, destination := range strings.Split(joined, ",") {
			prefixes, err := destinationPrefixes(strings.TrimSpace(destination))
			if err != nil {
				return nil, err
			}
			for _, prefix := range prefixes {
				peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: prefix.String()}})
			}
		}
	}
	if len(peers) == 0 {
		return nil, fmt.Errorf("no destinations")
	}
	return peers, nil
}

func destinationPrefixes(destination string) ([]netip.Prefix, error) {
	if first, last, isRange := strings.Cut(destination, "-"); isRange {
		from, errFrom := netip.ParseAddr(strings.TrimSpace(first))
		to, errTo := netip.ParseAddr(strings.TrimSpace(last))
		if errFrom != nil || errTo != nil {
			return nil, fmt.Errorf("destination %q: not an address range", destination)
		}
		ipRange := netipx.IPRangeFrom(from.Unmap(), to.Unmap())
		if !ipRange.IsValid() {
			return nil, fmt.Errorf("destination %q: range ends before it starts or mixes IPv4 and IPv6", destination)
		}
		return ipRange.Prefixes(), nil
	}
	if strings.Contains(destination, "/") {
		prefix, err := netip.ParsePrefix(destination)
		if err != nil {
			return nil, fmt.Errorf("destination %q: %w", destination, err)
		}
		// CF accepts host bits in a CIDR (10.0.0.1/8); Kubernetes wants the
		// network address.
		return []netip.Prefix{prefix.Masked()}, nil
	}
	addr, err := netip.ParseAddr(destination)
	if err != nil {
		return nil, fmt.Errorf("destination %q: not an address, CIDR or range", destination)
	}
	addr = addr.Unmap()
	return []netip.Prefix{netip.PrefixFrom(addr, addr.BitLen())}, nil
}

// egressPorts returns the ports of a tcp or udp rule: its list of ports,
// its port range, or, with neither, every port of the protocol.
func egressPorts(protocol corev1.Protocol, rule models.SecurityGroupRule) ([]networkingv1.NetworkPolicyPort, error) {
	var ports []networkingv1.NetworkPolicyPort
	for _, port := range rule.Ports {
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("port %d out of range 1-65535", port)
		}
		ports = append(ports, networkingv1.NetworkPolicyPort{Protocol: ptr.To(protocol), Port: ptr.To(intstr.FromInt32(int32(port)))})
	}
	if r := rule.PortRange; r != nil {
		if r.Start < 1 || r.End > 65535 || r.Start > r.End {
			return nil, fmt.Errorf("port range %d-%d: want 1 <= start <= end <= 65535", r.Start, r.End)
		}
		port := networkingv1.NetworkPolicyPort{Protocol: ptr.To(protocol), Port: ptr.To(intstr.FromInt32(int32(r.Start)))}
		if r.End > r.Start {
			port.EndPort = ptr.To(int32(r.End))
		}
		ports = append(ports, port)
	}
	if len(ports) == 0 {
		ports = []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(protocol)}}
	}
	return ports, nil
}
