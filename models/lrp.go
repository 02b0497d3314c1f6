// Package models holds the JSON wire types Cloud Controller's OPI client sends
// to and reads from Iris. Field names and shapes are the wire contract: they
// must stay exactly as CC serialises them (cloud_controller_ng lib/cloud_controller/opi).
package models

import "encoding/json"

// DesireLRPRequest is the body of PUT /apps/{process_guid}.
type DesireLRPRequest struct {
	GUID             string   `json:"guid"`
	Version          string   `json:"version"`
	ProcessGUID      string   `json:"process_guid"`
	ProcessType      string   `json:"process_type"`
	AppGUID          string   `json:"app_guid"`
	AppName          string   `json:"app_name"`
	SpaceGUID        string   `json:"space_guid"`
	SpaceName        string   `json:"space_name"`
	OrganizationGUID string   `json:"organization_guid"`
	OrganizationName string   `json:"organization_name"`
	Namespace        string   `json:"namespace"`
	PlacementTags    []string `json:"placement_tags"`
	Ports            []int32  `json:"ports"`
	// Routes is keyed by router ("cf-router", "tcp-router", ...). Values are kept
	// raw so that router kinds Iris does not interpret yet survive a round trip.
	Routes                  Routes              `json:"routes"`
	Environment             map[string]string   `json:"environment"`
	EgressRules             []SecurityGroupRule `json:"egress_rules"`
	Instances               *int                `json:"instances"`
	LastUpdated             string              `json:"last_updated"`
	HealthCheckType         string              `json:"health_check_type"`
	HealthCheckHTTPEndpoint string              `json:"health_check_http_endpoint"`
	// HealthCheckTimeoutMs is, as CC fills it, the process's start timeout
	// (health_check_timeout seconds * 1000), not the timeout of one check.
	HealthCheckTimeoutMs   int64             `json:"health_check_timeout_ms"`
	StartTimeoutMs         int64             `json:"start_timeout_ms"`
	MemoryMB               int64             `json:"memory_mb"`
	DiskMB                 int64             `json:"disk_mb"`
	CPUWeight              int64             `json:"cpu_weight"`
	VolumeMounts           []VolumeMount     `json:"volume_mounts"`
	Lifecycle              Lifecycle         `json:"lifecycle"`
	UserDefinedAnnotations map[string]string `json:"user_defined_annotations"`

	// The droplet as CCs before 2019-10 sent it, flat, with no lifecycle
	// (cloud_controller_ng lib/cloud_controller/opi/apps_client.rb before
	// 9b4539cb42, "Add docker support in Eirini"): docker_image is null
	// for a buildpack droplet. Only read when Lifecycle is empty.
	DockerImage  string `json:"docker_image,omitempty"`
	DropletHash  string `json:"droplet_hash,omitempty"`
	DropletGUID  string `json:"droplet_guid,omitempty"`
	StartCommand string `json:"start_command,omitempty"`
}

// NumInstances is the desired instance count; CC always sends it, an absent
// value means one instance as in Diego.
func (r *DesireLRPRequest) NumInstances() int {
	if r.Instances == nil {
		return 1
	}
	return *r.Instances
}

// DefaultPort is the one port an LRP exposes when CC sends none (Diego's
// and CC's default app port).
const DefaultPort int32 = 8080

// ExposedPorts are the container ports the LRP's instances listen on.
func (r *DesireLRPRequest) ExposedPorts() []int32 {
	if len(r.Ports) == 0 {
		return []int32{DefaultPort}
	}
	return r.Ports
}

// Routes maps a router name to its raw route list.
type Routes map[string]json.RawMessage

// CFRouterKey is the routes key under which CC sends HTTP routes;
// TCPRouterKey the one of TCP routes (as in Diego's DesiredLRP routes).
const (
	CFRouterKey  = "cf-router"
	TCPRouterKey = "tcp-router"
)

// TCPRoute is one entry of the "tcp-router" route list.
type TCPRoute struct {
	RouterGroupGUID string `json:"router_group_guid"`
	ExternalPort    uint32 `json:"external_port"`
	ContainerPort   uint32 `json:"container_port"`
}

// HTTPRoute is one entry of the "cf-router" route list.
type HTTPRoute struct {
	Hostname string `json:"hostname"`
	// Hostnames is the BBS form of the entry (CC's cf-router routes for
	// Diego list every hostname of one port); OPI sends Hostname.
	Hostnames []string `json:"hostnames,omitempty"`
	Port      int32    `json:"port"`
}

// AllHostnames are the entry's hostnames in either form.
func (r HTTPRoute) AllHostnames() []string {
	if r.Hostname == "" {
		return r.Hostnames
	}
	return append([]string{r.Hostname}, r.Hostnames...)
}

// HTTPRoutes decodes the "cf-router" list; a missing key is no routes.
func (r Routes) HTTPRoutes() ([]HTTPRoute, error) {
	raw, ok := r[CFRouterKey]
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var routes []HTTPRoute
	if err := json.Unmarshal(raw, &routes); err != nil {
		return nil, err
	}
	return routes, nil
}

// TCPRoutes decodes the "tcp-router" list; a missing key is no routes.
func (r Routes) TCPRoutes() ([]TCPRoute, error) {
	raw, ok := r[TCPRouterKey]
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var routes []TCPRoute
	if err := json.Unmarshal(raw, &routes); err != nil {
		return nil, err
	}
	return routes, nil
}

// Validate reports, as an InvalidRequestError, a "cf-router" or
// "tcp-router" value that is not a list of routes.
func (r Routes) Validate() error {
	if _, err := r.HTTPRoutes(); err != nil {
		return Invalidf("routes: %q must be a list of {hostname, port}: %v", CFRouterKey, err)
	}
	if _, err := r.TCPRoutes(); err != nil {
		return Invalidf("routes: %q must be a list of {router_group_guid, external_port, container_port}: %v", TCPRouterKey, err)
	}
	return nil
}

// ValidatePorts reports, as an InvalidRequestError, a route to a port the
// LRP does not expose: it could be registered but never answer.
func (r Routes) ValidatePorts(exposed []int32) error {
	if err := r.Validate(); err != nil {
		return err
	}
	isExposed := func(port int64) bool {
		for _, p := range exposed {
			if int64(p) == port {
				return true
			}
		}
		return false
	}
	httpRoutes, _ := r.HTTPRoutes()
	for _, route := range httpRoutes {
		if !isExposed(int64(route.Port)) {
			return Invalidf("routes: %q route %q goes to port %d, which the app does not expose (ports %v)", CFRouterKey, route.Hostname, route.Port, exposed)
		}
	}
	tcpRoutes, _ := r.TCPRoutes()
	for _, route := range tcpRoutes {
		if !isExposed(int64(route.ContainerPort)) {
			return Invalidf("routes: %q route from external port %d goes to container port %d, which the app does not expose (ports %v)", TCPRouterKey, route.ExternalPort, route.ContainerPort, exposed)
		}
	}
	return nil
}

// VolumeMount binds a volume service's claim into the container.
type VolumeMount struct {
	VolumeID string `json:"volume_id"`
	MountDir string `json:"mount_dir"`
}

// Lifecycle carries exactly one of the lifecycles.
type Lifecycle struct {
	DockerLifecycle    *DockerLifecycle    `json:"docker_lifecycle,omitempty"`
	BuildpackLifecycle *BuildpackLifecycle `json:"buildpack_lifecycle,omitempty"`
}

// DockerLifecycle runs a user-provided image.
type DockerLifecycle struct {
	Image            string   `json:"image"`
	Command          []string `json:"command"`
	RegistryUsername string   `json:"registry_username"`
	RegistryPassword string   `json:"registry_password"`
}

// BuildpackLifecycle runs a staged droplet.
type BuildpackLifecycle struct {
	DropletHash  string `json:"droplet_hash"`
	DropletGUID  string `json:"droplet_guid"`
	StartCommand string `json:"start_command"`
}

// UpdateDesiredLRPRequest is the body of POST /apps/{process_guid}.
type UpdateDesiredLRPRequest struct {
	GUID    string           `json:"guid"`
	Version string           `json:"version"`
	Update  DesiredLRPUpdate `json:"update"`
}

// DesiredLRPUpdate is what CC may change on a running LRP.
type DesiredLRPUpdate struct {
	Instances  *int   `json:"instances"`
	Routes     Routes `json:"routes"`
	Annotation string `json:"annotation"`
}

// DesiredLRPKey identifies an LRP in the bulk listing.
type DesiredLRPKey struct {
	ProcessGUID string `json:"process_guid"`
}

// DesiredLRPSchedulingInfo is one entry of GET /apps; CC compares Annotation
// with the process's updated_at to decide whether to send an update.
type DesiredLRPSchedulingInfo struct {
	DesiredLRPKey DesiredLRPKey `json:"desired_lrp_key"`
	GUID          string        `json:"guid"`
	Version       string        `json:"version"`
	Annotation    string        `json:"annotation"`
}

// DesiredLRPSchedulingInfosResponse is the body of GET /apps.
type DesiredLRPSchedulingInfosResponse struct {
	DesiredLRPSchedulingInfos []DesiredLRPSchedulingInfo `json:"desired_lrp_scheduling_infos"`
}

// DesiredLRP is the state CC reads back for one LRP.
type DesiredLRP struct {
	ProcessGUID string `json:"process_guid"`
	Instances   int32  `json:"instances"`
	Routes      Routes `json:"routes,omitempty"`
	Annotation  string `json:"annotation"`
}

// DesiredLRPResponse is the body of GET /apps/{guid}/{version}.
type DesiredLRPResponse struct {
	DesiredLRP DesiredLRP `json:"desired_lrp"`
}

// Instance states as CC's instances reporter understands them.
const (
	InstanceRunning   = "RUNNING"
	InstanceClaimed   = "CLAIMED"
	InstanceUnclaimed = "UNCLAIMED"
	InstanceCrashed   = "CRASHED"
	InstanceUnknown   = "UNKNOWN"
)

// Instance is one actual LRP. Since is in Unix nanoseconds, as Diego reports it.
type Instance struct {
	Index          int    `json:"index"`
	Since          int64  `json:"since"`
	State          string `json:"state"`
	PlacementError string `json:"placement_error,omitempty"`
}

// GetInstancesResponse is the body of GET /apps/{guid}/{version}/instances.
// CC treats a non-empty Error as "no running instances" and retries.
type GetInstancesResponse struct {
	Error       string      `json:"error,omitempty"`
	ProcessGUID string      `json:"process_guid"`
	Instances   []*Instance `json:"instances"`
}

// ErrorResponse is the error body CC parses from the LRP endpoints.
type ErrorResponse struct {
	Error Error `json:"error"`
}

// Error carries a human-readable message.
type Error struct {
	Message string `json:"message"`
}

// MessageResponse is the error body CC's stager and task clients read: a
// top-level message (only the LRP update reads ErrorResponse's nesting).
type MessageResponse struct {
	Message string `json:"message"`
}
