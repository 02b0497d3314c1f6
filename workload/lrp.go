// Package workload is Iris's front-neutral model of what Cloud Controller
// asks to run: both fronts (OPI in bifrost, BBS in bifrost/bbs) translate
// their wire types into it, and the k8s package builds Kubernetes objects
// from it only. It validates itself, as bbs's models do, so that a request
// either front accepts is one the builder can represent.
package workload

import (
	"encoding/json"
	"fmt"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/models"
)

// DesiredLRP is one long-running process as Iris runs it.
type DesiredLRP struct {
	// ProcessGUID is CC's process guid, <app guid>-<version>; GUID and
	// Version are its two halves, the identity the objects are labelled and
	// selected by.
	ProcessGUID string
	GUID        string
	Version     string
	ProcessType string

	AppGUID   string
	AppName   string
	SpaceGUID string
	SpaceName string
	OrgGUID   string
	OrgName   string
	// Namespace to run in; empty: the first workloads namespace.
	Namespace string

	Instances int32
	// Ports the app listens on; empty: 8080, as Diego's default.
	Ports []int32
	// Routes are kept verbatim per router key (cf-router, tcp-router,
	// internal-router, diego-ssh): routers Iris does not read survive.
	Routes Routes
	// Env is the app's environment as CC sent it.
	Env map[string]string

	Process Process
	// RegistryCredentials pull the image; nil for public images.
	RegistryCredentials *RegistryCredentials

	HealthChecks HealthChecks
	Resources    Resources

	EgressRules   []EgressRule
	PlacementTags []string
	// MetricTags are the static tags the app's logs and metrics carry
	// (source_id, space_id, org_id, app_id, names...).
	MetricTags map[string]string
	// Annotation is CC's opaque freshness marker (updated_at), returned
	// verbatim for the periodic sync.
	Annotation string

	VolumeMounts []VolumeMount
	// UserAnnotations are CC's user-defined annotations, put on the objects.
	UserAnnotations map[string]string
	// FrontAnnotations are a front's own bookkeeping on the StatefulSet and
	// its pods; they are on the pod template, so they must not change over
	// the LRP's life.
	FrontAnnotations map[string]string
	// FrontState is a front's own mutable state, kept on the StatefulSet
	// only (an update of it never restarts instances), so that a restarted
	// Iris loses nothing.
	FrontState map[string]string
	// Privileged asks for a container whose user may be root (Garden's
	// privileged container); a front lets it through only where the
	// operator allows it.
	Privileged bool
}

// Process is what the app container runs: a docker image, or a staged
// droplet (which the builder turns into an image and its launcher).
type Process struct {
	// Image is a docker image reference, or the image of Stack; empty
	// when Droplet is set.
	Image   string
	Droplet *Droplet
	// Stack names the CF stack (BBS's preloaded:<stack> root_fs) whose
	// operator-configured image is Image: trusted like a droplet, it runs
	// as the app user, never as its image's user.
	Stack string
	// Command replaces the image's entrypoint; empty runs the image's own
	// entrypoint and cmd.
	Command    []string
	Args       []string
	WorkingDir string
	// User is the user the front asked for ("vcap", "root"); informative
	// only: the pod's user comes from the operator's settings.
	User string
	// Recipe, when set, is Diego's recipe (cached dependencies, image
	// layers, setup, action, monitor) that Iris's action runner runs in
	// the Stack's image: a buildpack app as current CC desires it, which
	// downloads the lifecycle and its droplet before it starts. Command
	// and Args are then empty: the runner is the container's command.
	Recipe *actions.Recipe
}

// Droplet is a buildpack app's staged droplet.
type Droplet struct {
	GUID         string
	Hash         string
	StartCommand string
}

// RegistryCredentials authenticate image pulls.
type RegistryCredentials struct {
	Username string
	Password string
}

// CheckType is how a health check probes the app.
type CheckType string

// Health check types.
const (
	CheckTCP  CheckType = "tcp"
	CheckHTTP CheckType = "http"
)

// HealthCheck is one check of the app.
type HealthCheck struct {
	Type CheckType
	// Port checked; 0: the first port.
	Port int32
	// Path of an HTTP check.
	Path string
	// IntervalMs between checks and TimeoutMs of one check; 0: the
	// builder's defaults (Diego's).
	IntervalMs int64
	TimeoutMs  int64
}

// HealthChecks are the app's checks. No liveness and no readiness check
// means none at all (CC's "process" health check type).
type HealthChecks struct {
	Liveness *HealthCheck
	// Readiness decides routability; nil: the liveness check.
	Readiness *HealthCheck
	// StartTimeoutMs is how long the app may take to pass its first check
	// (the startup probe); 0: the configured default.
	StartTimeoutMs int64
}

// Resources are the app's limits. Zero means unlimited (or the default).
type Resources struct {
	MemoryMB  int64
	DiskMB    int64
	CPUWeight int64
	MaxPids   int64
	// LogRateLimit is the instance's log rate limit in bytes per second:
	// nil or negative is unlimited (CC sends -1), 0 ships no app log line,
	// as Diego's executor does.
	LogRateLimit *int64
}

// VolumeMount binds a volume service's claim into the container.
type VolumeMount struct {
	VolumeID string
	MountDir string
}

// EgressRule is one rule of the space's running application security
// groups; the shape is Diego's SecurityGroupRule.
type EgressRule = models.SecurityGroupRule

// PortRange and ICMPInfo are parts of an EgressRule.
type (
	PortRange = models.PortRange
	ICMPInfo  = models.ICMPInfo
)

// Routes maps a router key to its raw route list.
type Routes = models.Routes

// IsDocker reports whether the process runs a user-provided image.
func (l *DesiredLRP) IsDocker() bool { return l.Process.Droplet == nil && l.Process.Stack == "" }

// IsolationSegment is the LRP's placement tag, "" for the shared segment.
func (l *DesiredLRP) IsolationSegment() string {
	if len(l.PlacementTags) == 0 {
		return ""
	}
	return l.PlacementTags[0]
}

// Validate reports, as a models.InvalidRequestError (answered 400 by OPI
// and InvalidRequest by BBS), input Iris cannot run as asked.
func (l *DesiredLRP) Validate() error {
	if l.ProcessGUID == "" {
		return models.Invalidf("process_guid is required")
	}
	if l.GUID == "" || l.Version == "" {
		return models.Invalidf("guid and version are required")
	}
	if l.Instances < 0 {
		return models.Invalidf("instances must not be negative, got %d", l.Instances)
	}
	r := l.Resources
	if r.MemoryMB < 0 || r.DiskMB < 0 || r.CPUWeight < 0 || r.MaxPids < 0 {
		return models.Invalidf("memory_mb, disk_mb, cpu_weight and max_pids must not be negative")
	}
	if l.HealthChecks.StartTimeoutMs < 0 {
		return models.Invalidf("start timeout must not be negative")
	}
	for _, p := range l.Ports {
		if p < 1 || p > 65535 {
			return models.Invalidf("port %d is out of range 1-65535", p)
		}
	}
	for name, check := range map[string]*HealthCheck{"liveness": l.HealthChecks.Liveness, "readiness": l.HealthChecks.Readiness} {
		if err := check.validate(); err != nil {
			return models.Invalidf("%s check: %v", name, err)
		}
	}
	// CC sends the space's isolation segment as the only placement tag.
	if len(l.PlacementTags) > 1 {
		return models.Invalidf("placement_tags: Iris places by one tag (the isolation segment), got %d", len(l.PlacementTags))
	}
	if len(l.PlacementTags) == 1 && l.PlacementTags[0] == "" {
		return models.Invalidf("placement_tags: the tag must not be empty")
	}
	if err := l.Routes.Validate(); err != nil {
		return err
	}
	for name := range l.Env {
		if name == "" {
			return models.Invalidf("environment: variable names must not be empty")
		}
	}
	for _, m := range l.VolumeMounts {
		if m.VolumeID == "" || m.MountDir == "" {
			return models.Invalidf("volume_mounts: volume_id and mount_dir are required")
		}
	}
	return l.validateProcess()
}

func (l *DesiredLRP) validateProcess() error {
	p := l.Process
	switch {
	case p.Droplet != nil && p.Image != "":
		return models.Invalidf("lifecycle: exactly one of docker_lifecycle and buildpack_lifecycle, not both")
	case p.Droplet != nil:
		if p.Droplet.GUID == "" || p.Droplet.Hash == "" {
			return models.Invalidf("lifecycle: buildpack_lifecycle.droplet_guid and droplet_hash are required")
		}
	case p.Image == "":
		return models.Invalidf("lifecycle: an image or a droplet is required")
	}
	if p.Recipe != nil {
		if p.Stack == "" {
			return models.Invalidf("root_fs: a recipe runs in a stack's image, and none was named")
		}
		if len(p.Command) > 0 || len(p.Args) > 0 {
			return models.Invalidf("action: a recipe's processes are started by the runner, not by a command")
		}
		if err := p.Recipe.Validate(); err != nil {
			return models.Invalidf("%v", err)
		}
	}
	if c := l.RegistryCredentials; c != nil && (c.Username == "") != (c.Password == "") {
		return models.Invalidf("lifecycle: registry credentials need both a username and a password, or neither")
	}
	return nil
}

func (c *HealthCheck) validate() error {
	if c == nil {
		return nil
	}
	switch c.Type {
	case CheckTCP, CheckHTTP:
	default:
		return fmt.Errorf("type %q is not tcp or http", c.Type)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("port %d is out of range 1-65535", c.Port)
	}
	if c.IntervalMs < 0 || c.TimeoutMs < 0 {
		return fmt.Errorf("interval and timeout must not be negative")
	}
	return nil
}

// MarshalRoutes is the routes' JSON as kept on the StatefulSet: every key
// verbatim, {} for none.
func MarshalRoutes(routes Routes) (string, error) {
	if err := routes.Validate(); err != nil {
		return "", err
	}
	if routes == nil {
		routes = Routes{}
	}
	data, err := json.Marshal(routes)
	if err != nil {
		return "", models.Invalidf("routes: %v", err)
	}
	return string(data), nil
}
