// Package config is Iris's one configuration struct, read from YAML.
// config/iris.example.yml documents every key.
package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Component names that can be listed under `components`.
const (
	ComponentAPI    = "api"
	ComponentRoute  = "route"
	ComponentEvents = "events"
	// ComponentMetrics emits container metrics to Loggregator.
	ComponentMetrics = "metrics"
	// ComponentPodLogs streams app logs through the pods/log API, for
	// clusters without the log agent DaemonSet. Never on by default.
	ComponentPodLogs = "pod-logs"
)

// defaultComponents are the components Iris runs when none are listed.
func defaultComponents() []string {
	return []string{ComponentAPI, ComponentRoute, ComponentEvents, ComponentMetrics}
}

// knownComponents are all the names `components` accepts.
func knownComponents() []string { return append(defaultComponents(), ComponentPodLogs) }

// Config is the whole of Iris's configuration.
type Config struct {
	// Components to run in this process; empty means all.
	Components []string `json:"components"`
	// LogLevel is one of debug, info, error, fatal.
	LogLevel string `json:"log_level"`
	// Kubeconfig path; empty uses $KUBECONFIG, then the in-cluster config.
	Kubeconfig string `json:"kubeconfig"`
	// KubeAPIQPS and KubeAPIBurst bound Iris's own API-server traffic.
	KubeAPIQPS   float32 `json:"kube_api_qps"`
	KubeAPIBurst int     `json:"kube_api_burst"`
	// WorkloadsNamespaces are the namespaces Iris runs apps in and watches;
	// the first is the default for requests that name none.
	WorkloadsNamespaces []string `json:"workloads_namespaces"`

	API     API     `json:"api"`
	BBS     BBS     `json:"bbs"`
	LRP     LRP     `json:"lrp"`
	Staging Staging `json:"staging"`
	Tasks   Tasks   `json:"tasks"`
	Route   Route   `json:"route"`
	// CC is how Iris reaches Cloud Controller's internal API for callbacks.
	CC             CC             `json:"cc"`
	Events         Events         `json:"events"`
	LeaderElection LeaderElection `json:"leader_election"`
	Loggregator    Loggregator    `json:"loggregator"`
	LogAgent       LogAgent       `json:"log_agent"`
	Metrics        Metrics        `json:"metrics"`
	Ops            Ops            `json:"ops"`
}

// Ops is Iris's own operational listener: /healthz, /readyz, /metrics.
type Ops struct {
	// ListenAddress of the ops listener; empty disables it.
	ListenAddress string `json:"listen_address"`
	// TLSCertFile and TLSKeyFile make the ops listener serve HTTPS, and
	// ClientCAFile then enables the admin routes (/admin/...), served only
	// to clients presenting a certificate it signed. Probes and scrapes
	// need no client certificate (the kubelet presents none), so the
	// listener asks for one without requiring it; without these files the
	// admin routes are not served at all.
	TLSCertFile  string `json:"tls_cert_file"`
	TLSKeyFile   string `json:"tls_key_file"`
	ClientCAFile string `json:"client_ca_file"`
}

// AdminEnabled reports whether the admin routes are served (mutual TLS).
func (o Ops) AdminEnabled() bool { return o.ClientCAFile != "" }

// Loggregator is where app logs, Iris's CELL lifecycle logs and container
// metrics go: a Loggregator v2 ingress (on CF, the forwarder agent's gRPC
// port) over mutual TLS.
type Loggregator struct {
	// IngressAddress host:port; empty sends no logs and no metrics.
	IngressAddress string `json:"ingress_address"`
	CACertFile     string `json:"ca_cert_file"`
	CertFile       string `json:"cert_file"`
	KeyFile        string `json:"key_file"`
	// ServerName expected in the ingress certificate.
	ServerName string `json:"server_name"`
	// BufferSize is how many envelopes wait for a slow or absent ingress
	// before the oldest are dropped (and counted).
	BufferSize int `json:"buffer_size"`
}

// Enabled reports whether logs and metrics are shipped at all.
func (l Loggregator) Enabled() bool { return l.IngressAddress != "" }

// LogAgent configures `iris log-agent`, the node DaemonSet that tails the
// kubelet's container log files.
type LogAgent struct {
	// PodLogDir is the kubelet's pod log directory.
	PodLogDir string `json:"pod_log_dir"`
	// PositionsFile keeps read positions across agent restarts; on a hostPath.
	PositionsFile string `json:"positions_file"`
	// NodeName is the node whose pods are followed; empty: $NODE_NAME.
	NodeName string `json:"node_name"`
	// ScanIntervalMilliseconds between looks for new log files (and saves
	// of positions); PollIntervalMilliseconds between reads of a file at its end.
	ScanIntervalMilliseconds int `json:"scan_interval_milliseconds"`
	PollIntervalMilliseconds int `json:"poll_interval_milliseconds"`
}

// Metrics configures container metrics.
type Metrics struct {
	// IntervalSeconds between two emissions per app instance (Diego: 15).
	IntervalSeconds int `json:"interval_seconds"`
	// DiskFromStatsSummary reads disk usage from each node's kubelet stats
	// summary through the API server's node proxy. That needs get on
	// nodes/proxy, which reaches the whole kubelet API of every node
	// (exec included), so it is off by default and disk is reported as 0.
	DiskFromStatsSummary bool `json:"disk_from_stats_summary"`
}

// CC configures callbacks to Cloud Controller's internal API.
type CC struct {
	// InternalAPIURL, e.g. https://cloud-controller-ng.service.cf.internal:9023.
	InternalAPIURL string `json:"internal_api_url"`
	// CACertFile verifies CC's server certificate; CertFile and KeyFile are
	// the client certificate CC's internal port requires.
	CACertFile     string `json:"ca_cert_file"`
	CertFile       string `json:"cert_file"`
	KeyFile        string `json:"key_file"`
	TimeoutSeconds int    `json:"timeout_seconds"`
}

// Events configures crash and task completion reporting.
type Events struct {
	// MaxRetries of one report while CC is down or answers 5xx (0: forever).
	MaxRetries int `json:"max_retries"`
	// MaxBackoffSeconds caps the exponential backoff between retries.
	MaxBackoffSeconds int `json:"max_backoff_seconds"`
	// TaskJobTTLSeconds keeps a finished task's Job (and its logs) this long
	// after CC accepted its completion callback.
	TaskJobTTLSeconds int `json:"task_job_ttl_seconds"`
}

// LeaderElection makes the reporters run on one replica at a time.
type LeaderElection struct {
	// Namespace of the Lease; empty means the first workloads namespace.
	Namespace string `json:"namespace"`
	// Name is the Lease of the reporters, CELL logs, metrics and pod logs.
	Name string `json:"name"`
	// RouteEmitterName is the route emitter's own Lease, so processes that
	// run only the route component elect among themselves.
	RouteEmitterName string `json:"route_emitter_name"`
	// Timing of the Leases: a successor takes over at most
	// lease_duration_seconds after a leader dies (at once on a clean stop).
	LeaseDurationSeconds int `json:"lease_duration_seconds"`
	RenewDeadlineSeconds int `json:"renew_deadline_seconds"`
	RetryPeriodSeconds   int `json:"retry_period_seconds"`
}

// Tasks configures how CC's tasks become Jobs.
type Tasks struct {
	// DefaultMemoryMB and DefaultDiskMB limit a task when CC passes no
	// limits: its OPI task body has none, and Iris reads memory from the
	// task's MEMORY_LIMIT and disk from VCAP_APPLICATION's limits.disk,
	// falling back to these. A task never runs unlimited. CC's own
	// defaults (default_app_memory, default_app_disk_in_mb) are 1024.
	DefaultMemoryMB int64 `json:"default_memory_mb"`
	DefaultDiskMB   int64 `json:"default_disk_mb"`
}

// Staging configures buildpack and docker staging.
type Staging struct {
	// StackImage is the root file system buildpack staging runs in (the
	// stack, e.g. cflinuxfs4); Iris's action runner (lrp.runner_image) runs
	// CC's staging recipe in it. Empty: buildpack staging is refused.
	StackImage string `json:"stack_image"`
	// LifecycleBundleURL is the buildpack app lifecycle (a tgz with the
	// builder) staging pods download into /tmp/lifecycle, as Diego's file
	// server serves it to cells. Empty: buildpack staging is refused.
	LifecycleBundleURL string `json:"lifecycle_bundle_url"`
	// Removed: the images of the downloader, executor and uploader steps,
	// which were never built anywhere. Staging pods run the action runner
	// in StackImage instead. Setting one is an error naming the
	// replacement, not silently ignored.
	DownloaderImage string `json:"downloader_image,omitempty"`
	ExecutorImage   string `json:"executor_image,omitempty"`
	UploaderImage   string `json:"uploader_image,omitempty"`
	// IrisURL is where staging pods reach Iris's API (the uploader PUTs
	// /stage/{guid}/completed there).
	IrisURL string `json:"iris_url"`
	// IrisCAFile is the PEM staging pods verify Iris's server certificate
	// with when IrisURL is https; empty: api.tls_cert_file, i.e. they trust
	// the certificate Iris serves when the staging starts.
	IrisCAFile string `json:"iris_ca_file"`
	// TimeoutSeconds fails a staging that has not finished (including one
	// that cannot be scheduled) after this long.
	TimeoutSeconds int64 `json:"timeout_seconds"`
	// InsecureRegistries (host or host:port) may be read over plain HTTP or
	// unverified TLS when staging docker images.
	InsecureRegistries []string `json:"insecure_registries"`
	// UploadIdentitySecretName names a Secret, present in every workloads
	// namespace, with the client certificate (tls.crt, tls.key) and CA
	// (ca.crt) recipe pods upload with (a real cc-uploader requires mTLS).
	// Pods whose recipe uploads (staging over BBS and OPI, BBS tasks) get
	// an upload sidecar that alone mounts it. Empty: uploads go directly,
	// without a client certificate.
	UploadIdentitySecretName string `json:"upload_identity_secret_name"`
}

// Route configures the route emitter, which registers app instances with
// gorouter over NATS.
type Route struct {
	// NATSServers are nats:// (or tls://) URLs of the NATS cluster gorouter uses.
	NATSServers  []string `json:"nats_servers"`
	NATSUsername string   `json:"nats_username"`
	NATSPassword string   `json:"nats_password"`
	// NATSPasswordFile, when set, holds the password instead (a mounted
	// Secret), so it never sits in a ConfigMap.
	NATSPasswordFile string `json:"nats_password_file"`
	// NATSCACertFile enables TLS to NATS; cert and key add a client certificate.
	NATSCACertFile string `json:"nats_ca_cert_file"`
	NATSCertFile   string `json:"nats_cert_file"`
	NATSKeyFile    string `json:"nats_key_file"`
	// DefaultRegisterIntervalSeconds applies until a router's greeting says
	// otherwise (gorouter: minimumRegisterIntervalInSeconds, 20).
	DefaultRegisterIntervalSeconds int `json:"default_register_interval_seconds"`
	// TLSPort, when non-zero, is advertised as every instance's tls_port.
	TLSPort uint32 `json:"tls_port"`
}

// API configures bifrost, the HTTP API Cloud Controller calls.
type API struct {
	// ListenAddress serves plain HTTP; empty disables it (the default in production).
	ListenAddress string `json:"listen_address"`
	// TLSListenAddress serves HTTPS and requires a client certificate signed by ClientCAFile.
	TLSListenAddress string `json:"tls_listen_address"`
	TLSCertFile      string `json:"tls_cert_file"`
	TLSKeyFile       string `json:"tls_key_file"`
	ClientCAFile     string `json:"client_ca_file"`
	// MaxRequestBodyBytes rejects larger bodies with 400.
	MaxRequestBodyBytes int64 `json:"max_request_body_bytes"`
	// ShutdownTimeoutSeconds bounds how long SIGTERM waits for in-flight requests.
	ShutdownTimeoutSeconds int `json:"shutdown_timeout_seconds"`
	// ReadTimeoutSeconds bounds reading one whole request, headers and
	// body, so a client that trickles its body cannot hold a connection.
	ReadTimeoutSeconds int `json:"read_timeout_seconds"`
	// IdleTimeoutSeconds closes a keep-alive connection idle this long.
	IdleTimeoutSeconds int `json:"idle_timeout_seconds"`
	// MaxInFlightRequests bounds the requests served at once (both
	// listeners together); more are answered 503 with Retry-After.
	MaxInFlightRequests int `json:"max_in_flight_requests"`
}

// BBS configures the BBS front: Diego's BBS API for current Cloud
// Controllers, tps-watcher, route-emitter and ssh-proxy. Both addresses
// empty (the default) leave it off.
type BBS struct {
	// ListenAddress serves plain HTTP, for local use only; empty disables it.
	ListenAddress string `json:"listen_address"`
	// TLSListenAddress serves HTTPS and requires a client certificate signed by ClientCAFile.
	TLSListenAddress string `json:"tls_listen_address"`
	TLSCertFile      string `json:"tls_cert_file"`
	TLSKeyFile       string `json:"tls_key_file"`
	ClientCAFile     string `json:"client_ca_file"`
	// AllowPrivileged lets LRPs CC desires as privileged run as their
	// image's user (possibly root); otherwise they are refused.
	AllowPrivileged bool `json:"allow_privileged"`
	// Stacks maps a CF stack (a root_fs of preloaded:<stack>) to the image
	// that stands in for its root file system, e.g. cflinuxfs4:
	// registry.example.com/cf/cflinuxfs4:1.200. An LRP on a stack missing
	// here is refused.
	Stacks map[string]string `json:"stacks"`
	// Diego puts the real Diego BBS behind Iris's: spaces run on either.
	Diego Diego `json:"diego"`
}

// Diego is the real Diego BBS that Iris forwards to for the spaces that
// run there. An empty URL leaves it off: every LRP runs on Kubernetes.
type Diego struct {
	// URL of Diego's BBS (https, mutual TLS), e.g.
	// https://bbs.service.cf.internal:8889.
	URL string `json:"url"`
	// CAFile verifies Diego's BBS server certificate; ClientCertFile and
	// ClientKeyFile are Iris's client identity there.
	CAFile         string `json:"ca_file"`
	ClientCertFile string `json:"client_cert_file"`
	ClientKeyFile  string `json:"client_key_file"`
	// PlacementConfigMap names the ConfigMap (in the leader election
	// namespace) holding each space's backend: keys "default",
	// "org.<guid>", "space.<guid>"; values "diego" or "kubernetes".
	PlacementConfigMap string `json:"placement_config_map"`
	// DefaultBackend is the backend of spaces the ConfigMap does not name:
	// "diego" (the default: putting Iris in front of a running Diego moves
	// nothing) or "kubernetes".
	DefaultBackend string `json:"default_backend"`
	// Migration tunes the live migration of spaces whose placement
	// changed (backends/spaces.Migrator, run by the leader only).
	Migration Migration `json:"migration"`
}

// Migration tunes the live migration of spaces between Diego and Kubernetes.
type Migration struct {
	// IntervalSeconds between two passes comparing where LRPs run with
	// their space's placement.
	IntervalSeconds int `json:"interval_seconds"`
	// MaxInFlight bounds the LRPs being moved at once (each runs on both
	// sides while it moves, using memory on both).
	MaxInFlight int `json:"max_in_flight"`
	// LeaseName is the Lease (in the leader election namespace) whose
	// holder migrates.
	LeaseName string `json:"lease_name"`
}

// Enabled reports whether a Diego BBS sits behind Iris's.
func (d Diego) Enabled() bool { return d.URL != "" }

// Enabled reports whether the BBS front serves at all.
func (b BBS) Enabled() bool { return b.ListenAddress != "" || b.TLSListenAddress != "" }

// LRP configures how LRPs become StatefulSets.
type LRP struct {
	// DropletRegistry is the registry (host[:port][/path]) holding droplet
	// images; a buildpack LRP runs DropletRegistry/<droplet_guid>:<droplet_hash>.
	DropletRegistry string `json:"droplet_registry"`
	// DropletRegistrySecretName names a kubernetes.io/dockerconfigjson
	// Secret, present in every workloads namespace, that buildpack app and
	// task pods pull their droplet images with; empty: no credentials.
	DropletRegistrySecretName string `json:"droplet_registry_secret_name"`
	// DropletLauncher is the launcher inside droplet images that runs the start command.
	DropletLauncher string `json:"droplet_launcher"`
	// AppUID is the fixed non-root user every app container runs as.
	AppUID int64 `json:"app_uid"`
	// CPUMillicoresPerWeight converts CC's cpu_weight (1..100) to a CPU request.
	CPUMillicoresPerWeight int64 `json:"cpu_millicores_per_weight"`
	// ServiceAccountName for app pods; its token is never mounted.
	ServiceAccountName string `json:"service_account_name"`
	// TerminationGracePeriodSeconds between SIGTERM and SIGKILL (Diego: 10).
	TerminationGracePeriodSeconds int64 `json:"termination_grace_period_seconds"`
	// DefaultStartTimeoutSeconds applies when CC sends no start timeout (Diego: 60).
	DefaultStartTimeoutSeconds int64 `json:"default_start_timeout_seconds"`
	// MaxInstances bounds an LRP's instance count; a desire or update
	// beyond it is refused with 400. Diego has no bound of its own (CC
	// bounds instances by quota), but one StatefulSet of a billion pods
	// must never be created by a typo or a hostile client.
	MaxInstances int `json:"max_instances"`

	// Hardening of app and task pods (staging gets AppArmor and user
	// namespaces too).
	// AppArmorProfile: runtime/default, localhost/<profile>, unconfined, or
	// empty to leave it to the cluster.
	AppArmorProfile string `json:"apparmor_profile"`
	// ReadOnlyRootFilesystem mounts the container's root read-only, with a
	// writable emptyDir at /tmp. Apps that write elsewhere break.
	ReadOnlyRootFilesystem bool `json:"read_only_root_filesystem"`
	// UserNamespaces runs pods with hostUsers: false, so root in a container
	// is not root on the node; needs Linux user namespace support on nodes.
	UserNamespaces bool `json:"user_namespaces"`
	// AllowRootDockerImages lets docker-lifecycle apps and tasks run as the
	// image's own USER, root included, instead of app_uid.
	AllowRootDockerImages bool `json:"allow_root_docker_images"`
	// RunnerImage is Iris's own image. Pods that run a Diego recipe (BBS
	// tasks, staging, buildpack LRPs) get the `iris actions` runner from it
	// through an init container; empty refuses such recipes.
	RunnerImage string `json:"runner_image"`
	// RunnerImagePullPolicy of that init container: Always, IfNotPresent,
	// Never, or empty for Kubernetes' default.
	RunnerImagePullPolicy string `json:"runner_image_pull_policy"`
	// IsolationSegmentLabel is the node label (and taint key) of isolation
	// segments: an LRP whose placement tag (its space's segment) is S runs
	// only on nodes labelled <label>=S and tolerates a <label>=S taint;
	// an LRP without one only on nodes without the label.
	IsolationSegmentLabel string `json:"isolation_segment_label"`
	// EgressPolicies renders the egress_rules CC sends with each LRP (its
	// space's running application security groups) as a NetworkPolicy.
	EgressPolicies EgressPolicies `json:"egress_policies"`
}

// EgressPolicies controls the per-LRP egress NetworkPolicy. As in Diego, an
// app may open only the connections its security groups allow; an LRP
// without rules gets no egress at all, except cluster DNS.
type EgressPolicies struct {
	// Enabled creates the policies. The cluster's network plugin must
	// enforce NetworkPolicies for them to have any effect.
	Enabled bool `json:"enabled"`
	// DNSNamespace and DNSPodSelector name the cluster DNS pods every app
	// may reach on port 53, as Diego containers always reach the cell's DNS
	// servers. An empty DNSNamespace leaves DNS to the security groups.
	DNSNamespace string `json:"dns_namespace"`
	// DNSPodSelector is an equality-based label selector ("k=v,k2=v2").
	DNSPodSelector string `json:"dns_pod_selector"`
}

// Default returns a Config with every default filled in.
func Default() Config {
	return Config{
		LogLevel:            "info",
		KubeAPIQPS:          100,
		KubeAPIBurst:        200,
		WorkloadsNamespaces: []string{"cf-workloads"},
		API: API{
			MaxRequestBodyBytes:    4 << 20,
			ShutdownTimeoutSeconds: 10,
			ReadTimeoutSeconds:     30,
			IdleTimeoutSeconds:     120,
			MaxInFlightRequests:    100,
		},
		BBS: BBS{Diego: Diego{PlacementConfigMap: "iris-space-backends", DefaultBackend: "diego",
			Migration: Migration{IntervalSeconds: 5, MaxInFlight: 100, LeaseName: "iris-space-migrator"}}},
		CC: CC{TimeoutSeconds: 30},
		Staging: Staging{
			IrisURL:        "http://iris.cf-system.svc.cluster.local:8085",
			TimeoutSeconds: 900,
		},
		Loggregator: Loggregator{ServerName: "metron", BufferSize: 10000},
		LogAgent: LogAgent{
			PodLogDir:                "/var/log/pods",
			PositionsFile:            "/var/lib/iris-log-agent/positions.json",
			ScanIntervalMilliseconds: 1000,
			PollIntervalMilliseconds: 250,
		},
		Metrics: Metrics{IntervalSeconds: 15},
		Events:  Events{MaxRetries: 20, MaxBackoffSeconds: 60, TaskJobTTLSeconds: 300},
		Tasks:   Tasks{DefaultMemoryMB: 1024, DefaultDiskMB: 1024},
		LeaderElection: LeaderElection{
			Name:                 "iris-reporters",
			RouteEmitterName:     "iris-route-emitter",
			LeaseDurationSeconds: 15,
			RenewDeadlineSeconds: 10,
			RetryPeriodSeconds:   2,
		},
		Route: Route{
			NATSServers:                    []string{"nats://127.0.0.1:4222"},
			DefaultRegisterIntervalSeconds: 20,
		},
		LRP: LRP{
			DropletRegistry:               "registry.cf-system.svc.cluster.local:5000/cloudfoundry",
			DropletLauncher:               "/lifecycle/launcher",
			AppUID:                        2000,
			CPUMillicoresPerWeight:        10,
			TerminationGracePeriodSeconds: 10,
			DefaultStartTimeoutSeconds:    60,
			MaxInstances:                  1000,
			AppArmorProfile:               "runtime/default",
			IsolationSegmentLabel:         "cloudfoundry.org/isolation-segment",
			EgressPolicies: EgressPolicies{
				Enabled:        true,
				DNSNamespace:   "kube-system",
				DNSPodSelector: "k8s-app=kube-dns",
			},
		},
	}
}

// Load reads the YAML file at path over the defaults. Unknown keys are an
// error, so a typo never silently falls back to a default.
func Load(path string) (Config, error) {
	cfg, err := parse(path)
	if err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if cfg.Staging.IrisCAFile == "" && strings.HasPrefix(cfg.Staging.IrisURL, "https://") {
		cfg.Staging.IrisCAFile = cfg.API.TLSCertFile
	}
	return cfg, nil
}

// LoadLogAgent reads the same file for `iris log-agent`, which needs only
// the kube, loggregator and log_agent sections; an empty node_name is
// taken from $NODE_NAME (the downward API in the DaemonSet).
func LoadLogAgent(path string) (Config, error) {
	cfg, err := parse(path)
	if err != nil {
		return cfg, err
	}
	if cfg.LogAgent.NodeName == "" {
		cfg.LogAgent.NodeName = os.Getenv("NODE_NAME")
	}
	if err := cfg.ValidateLogAgent(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

func parse(path string) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("reading config: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return cfg, fmt.Errorf("parsing config %s: %w", path, err)
	}
	return cfg, nil
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	for _, name := range c.Components {
		if !slices.Contains(knownComponents(), name) {
			errs = append(errs, fmt.Errorf("unknown component %q (known: %v)", name, knownComponents()))
		}
	}
	for _, name := range []string{ComponentMetrics, ComponentPodLogs} {
		if slices.Contains(c.Components, name) && !c.Loggregator.Enabled() {
			errs = append(errs, fmt.Errorf("component %s needs loggregator.ingress_address", name))
		}
	}
	if c.Loggregator.Enabled() {
		l := c.Loggregator
		if l.CACertFile == "" || l.CertFile == "" || l.KeyFile == "" {
			errs = append(errs, errors.New("loggregator: ingress_address needs ca_cert_file, cert_file and key_file (mutual TLS)"))
		}
		if l.BufferSize <= 0 {
			errs = append(errs, errors.New("loggregator: buffer_size must be positive"))
		}
	}
	if c.Metrics.IntervalSeconds <= 0 {
		errs = append(errs, errors.New("metrics: interval_seconds must be positive"))
	}
	if len(c.WorkloadsNamespaces) == 0 {
		errs = append(errs, errors.New("workloads_namespaces must name at least one namespace"))
	}
	if c.Runs(ComponentAPI) {
		if c.API.ListenAddress == "" && c.API.TLSListenAddress == "" {
			errs = append(errs, errors.New("api: set listen_address and/or tls_listen_address"))
		}
		if c.API.TLSListenAddress != "" && (c.API.TLSCertFile == "" || c.API.TLSKeyFile == "" || c.API.ClientCAFile == "") {
			errs = append(errs, errors.New("api: tls_listen_address needs tls_cert_file, tls_key_file and client_ca_file"))
		}
		if c.API.MaxRequestBodyBytes <= 0 {
			errs = append(errs, errors.New("api: max_request_body_bytes must be positive"))
		}
		if c.API.ReadTimeoutSeconds <= 0 || c.API.IdleTimeoutSeconds <= 0 {
			errs = append(errs, errors.New("api: read_timeout_seconds and idle_timeout_seconds must be positive"))
		}
		if c.API.MaxInFlightRequests <= 0 {
			errs = append(errs, errors.New("api: max_in_flight_requests must be positive"))
		}
		// Replicas are an int32 in Kubernetes.
		if c.LRP.MaxInstances <= 0 || c.LRP.MaxInstances > math.MaxInt32 {
			errs = append(errs, fmt.Errorf("lrp: max_instances must be between 1 and %d", math.MaxInt32))
		}
		// CC's bound on memory_in_mb and disk_in_mb (MAX_DB_INT).
		if c.Tasks.DefaultMemoryMB <= 0 || c.Tasks.DefaultMemoryMB > math.MaxInt32 || c.Tasks.DefaultDiskMB <= 0 || c.Tasks.DefaultDiskMB > math.MaxInt32 {
			errs = append(errs, fmt.Errorf("tasks: default_memory_mb and default_disk_mb must be between 1 and %d (a task never runs unlimited)", math.MaxInt32))
		}
	}
	if (c.Ops.TLSCertFile != "") != (c.Ops.TLSKeyFile != "") || (c.Ops.ClientCAFile != "" && c.Ops.TLSCertFile == "") {
		errs = append(errs, errors.New("ops: tls_cert_file and tls_key_file go together, and client_ca_file (the admin routes) needs them"))
	}
	if c.BBS.TLSListenAddress != "" && (c.BBS.TLSCertFile == "" || c.BBS.TLSKeyFile == "" || c.BBS.ClientCAFile == "") {
		errs = append(errs, errors.New("bbs: tls_listen_address needs tls_cert_file, tls_key_file and client_ca_file"))
	}
	if d := c.BBS.Diego; d.Enabled() {
		if !strings.HasPrefix(d.URL, "https://") || d.CAFile == "" || d.ClientCertFile == "" || d.ClientKeyFile == "" {
			errs = append(errs, errors.New("bbs: diego: url must be https:// with ca_file, client_cert_file and client_key_file (Diego's BBS always requires mutual TLS)"))
		}
		if d.DefaultBackend != "diego" && d.DefaultBackend != "kubernetes" {
			errs = append(errs, fmt.Errorf("bbs: diego: default_backend %q: want diego or kubernetes", d.DefaultBackend))
		}
		if d.PlacementConfigMap == "" {
			errs = append(errs, errors.New("bbs: diego: placement_config_map must name a ConfigMap"))
		}
		if m := d.Migration; m.IntervalSeconds < 1 || m.MaxInFlight < 1 || m.LeaseName == "" {
			errs = append(errs, errors.New("bbs: diego: migration: interval_seconds and max_in_flight must be at least 1, lease_name set"))
		}
		if !c.BBS.Enabled() {
			errs = append(errs, errors.New("bbs: diego needs the BBS front (listen_address or tls_listen_address)"))
		}
	}
	switch c.LRP.RunnerImagePullPolicy {
	case "", "Always", "IfNotPresent", "Never":
	default:
		errs = append(errs, fmt.Errorf("lrp: runner_image_pull_policy: %q: want Always, IfNotPresent or Never", c.LRP.RunnerImagePullPolicy))
	}
	if strings.ContainsAny(c.LRP.RunnerImage, " \t\n") {
		errs = append(errs, fmt.Errorf("lrp: runner_image: %q is not an image reference", c.LRP.RunnerImage))
	}
	for key, value := range map[string]string{"downloader_image": c.Staging.DownloaderImage, "executor_image": c.Staging.ExecutorImage, "uploader_image": c.Staging.UploaderImage} {
		if value != "" {
			errs = append(errs, fmt.Errorf("staging: %s is removed: buildpack staging runs Iris's action runner (lrp.runner_image) in staging.stack_image with the lifecycle from staging.lifecycle_bundle_url; delete the setting", key))
		}
	}
	if strings.ContainsAny(c.Staging.StackImage, " \t\n") {
		errs = append(errs, fmt.Errorf("staging: stack_image: %q is not an image reference", c.Staging.StackImage))
	}
	if name := c.Staging.UploadIdentitySecretName; name != "" {
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			errs = append(errs, fmt.Errorf("staging: upload_identity_secret_name: %q: %s", name, msg))
		}
	}
	if u := c.Staging.LifecycleBundleURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		errs = append(errs, fmt.Errorf("staging: lifecycle_bundle_url: %q: want an http(s) URL", u))
	}
	for stack, image := range c.BBS.Stacks {
		if stack == "" || image == "" || strings.ContainsAny(stack+image, " \t\n") {
			errs = append(errs, fmt.Errorf("bbs: stacks: %q: want a stack name and an image reference", stack))
		}
	}
	if c.Runs(ComponentRoute) {
		if len(c.Route.NATSServers) == 0 {
			errs = append(errs, errors.New("route: nats_servers must name at least one server"))
		}
		if c.Route.DefaultRegisterIntervalSeconds <= 0 {
			errs = append(errs, errors.New("route: default_register_interval_seconds must be positive"))
		}
		if c.Route.NATSPassword != "" && c.Route.NATSPasswordFile != "" {
			errs = append(errs, errors.New("route: set nats_password or nats_password_file, not both"))
		}
		if (c.Route.NATSCertFile == "") != (c.Route.NATSKeyFile == "") {
			errs = append(errs, errors.New("route: nats_cert_file and nats_key_file go together"))
		}
	}
	if c.Runs(ComponentEvents) {
		if c.CC.InternalAPIURL == "" {
			errs = append(errs, errors.New("cc: internal_api_url is required for the events component"))
		}
		if (c.CC.CertFile == "") != (c.CC.KeyFile == "") {
			errs = append(errs, errors.New("cc: cert_file and key_file go together"))
		}
	}
	// Every component but the API runs on the Lease holder only.
	if c.Runs(ComponentEvents) || c.Runs(ComponentMetrics) || c.Runs(ComponentPodLogs) || c.Runs(ComponentRoute) {
		le := c.LeaderElection
		if le.Name == "" || le.RetryPeriodSeconds <= 0 || le.RenewDeadlineSeconds <= le.RetryPeriodSeconds || le.LeaseDurationSeconds <= le.RenewDeadlineSeconds {
			errs = append(errs, errors.New("leader_election: needs a name and lease_duration > renew_deadline > retry_period > 0"))
		}
		if c.Runs(ComponentRoute) && (le.RouteEmitterName == "" || le.RouteEmitterName == le.Name) {
			errs = append(errs, errors.New("leader_election: route_emitter_name must be set and differ from name"))
		}
	}
	if c.LRP.AppUID <= 0 {
		errs = append(errs, errors.New("lrp: app_uid must be a non-root uid (> 0)"))
	}
	if p := c.LRP.AppArmorProfile; p != "" && p != "runtime/default" && p != "unconfined" && !strings.HasPrefix(p, "localhost/") {
		errs = append(errs, fmt.Errorf("lrp: apparmor_profile %q: want runtime/default, localhost/<name>, unconfined or empty", p))
	}
	if c.LRP.CPUMillicoresPerWeight <= 0 {
		errs = append(errs, errors.New("lrp: cpu_millicores_per_weight must be positive"))
	}
	if problems := validation.IsQualifiedName(c.LRP.IsolationSegmentLabel); len(problems) > 0 {
		errs = append(errs, fmt.Errorf("lrp: isolation_segment_label %q is not a label key: %s", c.LRP.IsolationSegmentLabel, strings.Join(problems, "; ")))
	}
	if eg := c.LRP.EgressPolicies; eg.Enabled && eg.DNSNamespace != "" {
		if _, err := labels.ConvertSelectorToLabelsMap(eg.DNSPodSelector); err != nil || eg.DNSPodSelector == "" {
			errs = append(errs, fmt.Errorf("lrp.egress_policies: dns_pod_selector %q: want k=v[,k=v...]", eg.DNSPodSelector))
		}
	}
	return errors.Join(errs...)
}

// Runs reports whether the named component runs in this process.
func (c *Config) Runs(component string) bool {
	if len(c.Components) == 0 {
		return slices.Contains(defaultComponents(), component)
	}
	return slices.Contains(c.Components, component)
}

// NATSPasswordValue is the NATS password, read from nats_password_file
// when that is set.
func (c *Config) NATSPasswordValue() (string, error) {
	if c.Route.NATSPasswordFile == "" {
		return c.Route.NATSPassword, nil
	}
	data, err := os.ReadFile(c.Route.NATSPasswordFile)
	if err != nil {
		return "", fmt.Errorf("route: reading nats_password_file: %w", err)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

// ValidateLogAgent reports what `iris log-agent` needs and is missing.
func (c *Config) ValidateLogAgent() error {
	var errs []error
	if len(c.WorkloadsNamespaces) == 0 {
		errs = append(errs, errors.New("workloads_namespaces must name at least one namespace"))
	}
	if !c.Loggregator.Enabled() {
		errs = append(errs, errors.New("log agent: loggregator.ingress_address is required"))
	} else if l := c.Loggregator; l.CACertFile == "" || l.CertFile == "" || l.KeyFile == "" || l.BufferSize <= 0 {
		errs = append(errs, errors.New("loggregator: ca_cert_file, cert_file, key_file and a positive buffer_size are required"))
	}
	a := c.LogAgent
	if a.PodLogDir == "" || a.PositionsFile == "" {
		errs = append(errs, errors.New("log_agent: pod_log_dir and positions_file are required"))
	}
	if a.NodeName == "" {
		errs = append(errs, errors.New("log_agent: node_name (or $NODE_NAME) is required"))
	}
	if a.ScanIntervalMilliseconds <= 0 || a.PollIntervalMilliseconds <= 0 {
		errs = append(errs, errors.New("log_agent: scan and poll intervals must be positive"))
	}
	return errors.Join(errs...)
}

// DefaultNamespace is where LRPs go when CC names no namespace.
func (c *Config) DefaultNamespace() string {
	return c.WorkloadsNamespaces[0]
}
