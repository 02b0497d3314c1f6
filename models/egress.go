package models

import "encoding/json"

// SecurityGroupRule is one entry of a desire request's egress_rules: a rule
// of the space's running application security groups, serialised by CC from
// Diego's SecurityGroupRule protobuf. Fields left at their zero value may be
// absent on the wire.
type SecurityGroupRule struct {
	// Protocol is "tcp", "udp", "icmp" or "all".
	Protocol string `json:"protocol"`
	// Destinations are IP addresses, CIDRs or "first-last" address ranges.
	Destinations []string   `json:"destinations"`
	Ports        []uint32   `json:"ports,omitempty"`
	PortRange    *PortRange `json:"portRange,omitempty"`
	ICMPInfo     *ICMPInfo  `json:"icmpInfo,omitempty"`
	// Log asks the cell to log new connections matching the rule.
	Log         bool     `json:"log,omitempty"`
	Annotations []string `json:"annotations,omitempty"`
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	Start uint32 `json:"start"`
	End   uint32 `json:"end"`
}

// ICMPInfo selects ICMP messages by type and code.
type ICMPInfo struct {
	Type int32 `json:"type"`
	Code int32 `json:"code"`
}

// UnmarshalJSON accepts both the protobuf JSON names (portRange, icmpInfo)
// and the snake_case ones (port_range, icmp_info): CC releases serialised
// the protobuf message with either, depending on the protobuf library.
func (r *SecurityGroupRule) UnmarshalJSON(data []byte) error {
	type plain SecurityGroupRule
	var wire struct {
		plain
		PortRangeSnake *PortRange `json:"port_range"`
		ICMPInfoSnake  *ICMPInfo  `json:"icmp_info"`
	}
	if err := json.Unmarshal(data, &wire); err != nil {
		return err
	}
	*r = SecurityGroupRule(wire.plain)
	if r.PortRange == nil {
		r.PortRange = wire.PortRangeSnake
	}
	if r.ICMPInfo == nil {
		r.ICMPInfo = wire.ICMPInfoSnake
	}
	return nil
}
