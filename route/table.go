// Package route tells gorouter where every ready app instance listens, over
// NATS, in the messages Diego's route-emitter sends.
package route

import (
	"maps"
	"strconv"
)

// RegistryMessage is the body of router.register and router.unregister.
type RegistryMessage struct {
	Host                 string            `json:"host"`
	Port                 uint32            `json:"port"`
	TLSPort              uint32            `json:"tls_port,omitempty"`
	URIs                 []string          `json:"uris"`
	App                  string            `json:"app,omitempty"`
	PrivateInstanceID    string            `json:"private_instance_id,omitempty"`
	PrivateInstanceIndex string            `json:"private_instance_index,omitempty"`
	ServerCertDomainSAN  string            `json:"server_cert_domain_san,omitempty"`
	IsolationSegment     string            `json:"isolation_segment,omitempty"`
	EndpointUpdatedAtNs  int64             `json:"endpoint_updated_at_ns,omitempty"`
	Tags                 map[string]string `json:"tags,omitempty"`
}

// LRP is what the table needs to know of a StatefulSet.
type LRP struct {
	AppGUID string
	AppName string
	// GUID is CC's process guid; ProcessGUID is GUID-version.
	GUID             string
	ProcessGUID      string
	ProcessType      string
	OrgGUID          string
	OrgName          string
	SpaceGUID        string
	SpaceName        string
	IsolationSegment string
	Routes           []Route
}

// Route is one hostname served by one container port.
type Route struct {
	Hostname string
	Port     uint32
}

// Endpoint is one ready instance.
type Endpoint struct {
	InstanceGUID string
	Index        int
	IP           string
	// ReadySinceNs lets gorouter prefer the newest registration of an address.
	ReadySinceNs int64
}

// Changes are the messages a table update calls for.
type Changes struct {
	Registrations   []RegistryMessage
	Unregistrations []RegistryMessage
}

// Empty reports whether there is nothing to send.
func (c Changes) Empty() bool { return len(c.Registrations) == 0 && len(c.Unregistrations) == 0 }

type entry struct {
	lrp       *LRP
	endpoints map[string]Endpoint // by pod name
}

// Table holds the routes of every LRP and its ready endpoints, and says what
// to register and unregister as either changes. It is not safe for concurrent
// use; the emitter serialises access.
type Table struct {
	entries map[string]*entry // by process guid
	tlsPort uint32
}

// NewTable returns an empty table. A non-zero tlsPort is advertised as every
// endpoint's tls_port (an instance-side TLS proxy listening there).
func NewTable(tlsPort uint32) *Table {
	return &Table{entries: map[string]*entry{}, tlsPort: tlsPort}
}

// SetLRP records the LRP's routes (new, or changed by an update).
func (t *Table) SetLRP(lrp LRP) Changes {
	return t.change(lrp.ProcessGUID, func(e *entry) { e.lrp = &lrp })
}

// RemoveLRP forgets the LRP and unregisters all its routes.
func (t *Table) RemoveLRP(processGUID string) Changes {
	return t.change(processGUID, func(e *entry) { e.lrp = nil })
}

// SetEndpoint records a ready instance, keyed by its pod name.
func (t *Table) SetEndpoint(processGUID, podName string, ep Endpoint) Changes {
	return t.change(processGUID, func(e *entry) { e.endpoints[podName] = ep })
}

// RemoveEndpoint forgets an instance that is no longer ready or was deleted.
func (t *Table) RemoveEndpoint(processGUID, podName string) Changes {
	return t.change(processGUID, func(e *entry) { delete(e.endpoints, podName) })
}

// Len is the number of registrations the table holds.
func (t *Table) Len() int {
	n := 0
	for _, e := range t.entries {
		if e.lrp != nil {
			n += len(e.lrp.Routes) * len(e.endpoints)
		}
	}
	return n
}

// Each calls fn with every current registration.
func (t *Table) Each(fn func(RegistryMessage)) {
	for _, e := range t.entries {
		t.messages(e, fn)
	}
}

// ProcessGUIDs lists the LRPs the table knows, so a re-emit can walk the
// table in slices instead of holding it still for a whole pass.
func (t *Table) ProcessGUIDs() []string {
	guids := make([]string, 0, len(t.entries))
	for guid := range t.entries {
		guids = append(guids, guid)
	}
	return guids
}

// EachOf calls fn with the current registrations of one LRP.
func (t *Table) EachOf(processGUID string, fn func(RegistryMessage)) {
	if e, ok := t.entries[processGUID]; ok {
		t.messages(e, fn)
	}
}

// change applies mutate to one LRP's entry and diffs its registrations.
func (t *Table) change(processGUID string, mutate func(*entry)) Changes {
	e, ok := t.entries[processGUID]
	if !ok {
		e = &entry{endpoints: map[string]Endpoint{}}
		t.entries[processGUID] = e
	}
	before := map[messageKey]RegistryMessage{}
	t.messages(e, func(m RegistryMessage) { before[keyOf(m)] = m })

	mutate(e)

	var changes Changes
	t.messages(e, func(m RegistryMessage) {
		key := keyOf(m)
		old, existed := before[key]
		delete(before, key)
		if !existed || !sameMessage(old, m) {
			changes.Registrations = append(changes.Registrations, m)
		}
	})
	for _, m := range before {
		changes.Unregistrations = append(changes.Unregistrations, m)
	}
	if e.lrp == nil && len(e.endpoints) == 0 {
		delete(t.entries, processGUID)
	}
	return changes
}

// messageKey is what gorouter identifies a registration by.
type messageKey struct {
	host string
	port uint32
	uri  string
}

func keyOf(m RegistryMessage) messageKey {
	return messageKey{host: m.Host, port: m.Port, uri: m.URIs[0]}
}

func sameMessage(a, b RegistryMessage) bool {
	return a.PrivateInstanceID == b.PrivateInstanceID && a.PrivateInstanceIndex == b.PrivateInstanceIndex &&
		a.App == b.App && a.IsolationSegment == b.IsolationSegment && a.TLSPort == b.TLSPort &&
		a.EndpointUpdatedAtNs == b.EndpointUpdatedAtNs && maps.Equal(a.Tags, b.Tags)
}

// messages yields one message per route per endpoint, as route-emitter does.
func (t *Table) messages(e *entry, fn func(RegistryMessage)) {
	if e.lrp == nil {
		return
	}
	lrp := e.lrp
	for _, ep := range e.endpoints {
		index := strconv.Itoa(ep.Index)
		tags := map[string]string{
			"component": "route-emitter",
			"app_id":    lrp.AppGUID,
			"app_name":  lrp.AppName,
			"source_id": lrp.AppGUID,
			// As CC's metric tags, which Diego's route-emitter passes
			// through: the unversioned process guid and the instance guid.
			"process_id":          lrp.GUID,
			"process_instance_id": ep.InstanceGUID,
			"process_type":        lrp.ProcessType,
			"instance_id":         index,
			"organization_id":     lrp.OrgGUID,
			"organization_name":   lrp.OrgName,
			"space_id":            lrp.SpaceGUID,
			"space_name":          lrp.SpaceName,
		}
		for _, r := range lrp.Routes {
			fn(RegistryMessage{
				Host:                 ep.IP,
				Port:                 r.Port,
				TLSPort:              t.tlsPort,
				URIs:                 []string{r.Hostname},
				App:                  lrp.AppGUID,
				PrivateInstanceID:    ep.InstanceGUID,
				PrivateInstanceIndex: index,
				ServerCertDomainSAN:  ep.InstanceGUID,
				IsolationSegment:     lrp.IsolationSegment,
				EndpointUpdatedAtNs:  ep.ReadySinceNs,
				Tags:                 tags,
			})
		}
	}
}
