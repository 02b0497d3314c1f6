// Package kubernetes is the BBS front's backend on Kubernetes: it carries
// out bifrost/bbs's DesiredLRPs and ActualLRPs over the k8s package's
// builder, LRP client and informer caches, translating BBS's DesiredLRP
// into Iris's front-neutral workload model, and feeds the BBS event hub
// from the informers.
package kubernetes

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"code.cloudfoundry.org/bbs/models"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/workload"
)

const (
	dockerRootFSScheme    = "docker://"
	preloadedRootFSScheme = "preloaded:"
	// preloadedLayerRootFSScheme is CC's root_fs for buildpack apps whose
	// droplet comes as an image layer.
	preloadedLayerRootFSScheme = "preloaded+layer:"
	// launcherPath is where CC's recipes run Diego's app launcher from (the
	// lifecycle bundle CC sends as a cached dependency).
	launcherPath = "/tmp/lifecycle/launcher"
	// healthcheckPath is Diego's health check binary in CC's monitor actions.
	healthcheckPath = "/tmp/lifecycle/healthcheck"
	// sshdPath is diego-sshd, which CC runs next to the app when ssh is on.
	sshdPath = "/tmp/lifecycle/diego-sshd"
)

// Metric tag keys CC sets on every LRP.
const (
	tagAppID       = "app_id"
	tagAppName     = "app_name"
	tagSpaceID     = "space_id"
	tagSpaceName   = "space_name"
	tagOrgID       = "organization_id"
	tagOrgIDShort  = "org_id"
	tagOrgName     = "organization_name"
	tagProcessType = "process_type"
)

// ccProcessGUID is CC's process guid: the process guid (36) and its
// version (36) joined by a dash.
var ccProcessGUID = regexp.MustCompile(`^([0-9a-fA-F-]{36})-([0-9a-fA-F-]{36})$`)

// TranslateOptions are the operator's choices that bound what a BBS LRP may ask for.
type TranslateOptions struct {
	// AllowPrivileged lets privileged LRPs run (as their image's user).
	AllowPrivileged bool
	// MaxInstances bounds instances on desire and update (lrp.max_instances,
	// shared with the OPI front); 0 leaves them unbounded.
	MaxInstances int
	// Stacks maps a stack of preloaded:<stack> to its image (bbs.stacks).
	Stacks map[string]string
}

// checkInstances refuses more instances than the operator allows: a typo
// of a few zeros must not become a StatefulSet of that size.
func (o TranslateOptions) checkInstances(instances int32) error {
	if o.MaxInstances > 0 && int(instances) > o.MaxInstances {
		return invalid("instances: %d is more than this Iris allows (lrp.max_instances %d)", instances, o.MaxInstances)
	}
	return nil
}

// invalid is BBS's InvalidRequest with Iris's reason: CC shows it, and
// nothing is created.
func invalid(format string, args ...any) *models.Error {
	return models.NewError(models.Error_InvalidRequest, fmt.Sprintf(format, args...))
}

// Translate turns a validated BBS DesiredLRP into the workload model.
// A buildpack app (a preloaded stack with Diego's downloads: setup, cached
// dependencies or image layers) becomes a recipe that Iris's action runner
// runs in the stack's image; a docker app runs its image. What Iris cannot
// run (an unknown stack, sidecars of a docker app) or may not run
// (privileged, unless allowed) is an InvalidRequest with a message saying
// why.
func Translate(lrp *models.DesiredLRP, opts TranslateOptions) (*workload.DesiredLRP, error) {
	guid, version, err := splitProcessGUID(lrp.ProcessGuid)
	if err != nil {
		return nil, err
	}
	image, stack, runsRecipe, err := rootFSImage(lrp, opts.Stacks)
	if err != nil {
		return nil, err
	}
	if err := opts.checkInstances(lrp.Instances); err != nil {
		return nil, err
	}
	if lrp.Privileged && !opts.AllowPrivileged {
		return nil, invalid("privileged: privileged containers are not allowed by this Iris (bbs.allow_privileged)")
	}
	tags := staticMetricTags(lrp.MetricTags)
	w := &workload.DesiredLRP{
		ProcessGUID:   lrp.ProcessGuid,
		GUID:          guid,
		Version:       version,
		ProcessType:   tags[tagProcessType],
		AppGUID:       firstNonEmpty(tags[tagAppID], lrp.LogGuid),
		AppName:       tags[tagAppName],
		SpaceGUID:     tags[tagSpaceID],
		SpaceName:     tags[tagSpaceName],
		OrgGUID:       firstNonEmpty(tags[tagOrgID], tags[tagOrgIDShort]),
		OrgName:       tags[tagOrgName],
		Instances:     lrp.Instances,
		Routes:        routes(lrp.Routes),
		Env:           map[string]string{},
		PlacementTags: append([]string(nil), lrp.PlacementTags...),
		MetricTags:    tags,
		Annotation:    lrp.Annotation,
		Privileged:    lrp.Privileged,
		Resources: workload.Resources{
			MemoryMB:  int64(lrp.MemoryMb),
			DiskMB:    int64(lrp.DiskMb),
			CPUWeight: int64(lrp.CpuWeight),
			MaxPids:   int64(lrp.MaxPids),
		},
	}
	if lrp.LogRateLimit != nil && lrp.LogRateLimit.BytesPerSecond >= 0 {
		w.Resources.LogRateLimit = ptr.To(lrp.LogRateLimit.BytesPerSecond)
	}
	for _, p := range lrp.Ports {
		if p < 1 || p > 65535 {
			return nil, invalid("ports: %d is out of range 1-65535", p)
		}
		w.Ports = append(w.Ports, int32(p))
	}
	if lrp.ImageUsername != "" || lrp.ImagePassword != "" {
		w.RegistryCredentials = &workload.RegistryCredentials{Username: lrp.ImageUsername, Password: lrp.ImagePassword}
	}

	run := appRunAction(lrp.Action)
	if run == nil {
		return nil, invalid("action: no run action to start the app with")
	}
	if runsRecipe {
		// The runner runs CC's whole action (the launcher, sidecars and
		// diego-sshd, codependent), with the environment CC put on the
		// recipe; the container's own is only the instance's.
		w.Process = workload.Process{Image: image, Stack: stack, User: run.User, Recipe: actions.RecipeFromDesiredLRP(lrp)}
		w.HealthChecks = checkDefinition(lrp)
	} else {
		// Sidecars are further run actions beside the app's: running the app
		// without a process it relies on would fail in ways CC never reports.
		if n := countRuns(lrp.Action, func(r *models.RunAction) bool { return r.Path != sshdPath }); n > 1 {
			return nil, invalid("action: %d processes (the app and its sidecars); Iris runs the sidecars of buildpack apps only (with the action runner), not of docker apps", n)
		}
		w.Process = process(image, run)
		w.Process.Stack = stack
		for _, e := range lrp.EnvironmentVariables {
			w.Env[e.Name] = e.Value
		}
		for _, e := range run.Env {
			w.Env[e.Name] = e.Value
		}
		w.HealthChecks = healthChecks(lrp)
	}

	for _, r := range lrp.EgressRules {
		w.EgressRules = append(w.EgressRules, egressRule(r))
	}
	for i, m := range lrp.VolumeMounts {
		if m.Shared == nil || m.Shared.VolumeId == "" || m.ContainerDir == "" {
			return nil, invalid("volume_mounts[%d]: only shared volumes with a volume_id and container_dir can be mounted", i)
		}
		w.VolumeMounts = append(w.VolumeMounts, workload.VolumeMount{VolumeID: m.Shared.VolumeId, MountDir: m.ContainerDir})
	}
	if err := w.Validate(); err != nil {
		return nil, invalid("%v", err)
	}
	return w, nil
}

// splitProcessGUID returns the guid and version Iris labels objects with:
// CC's two halves, or for any other guid the part before its last dash and
// the part after.
func splitProcessGUID(processGUID string) (string, string, error) {
	if m := ccProcessGUID.FindStringSubmatch(processGUID); m != nil {
		return m[1], m[2], nil
	}
	i := strings.LastIndex(processGUID, "-")
	if i <= 0 || i == len(processGUID)-1 {
		return "", "", invalid("process_guid %q: Iris needs <guid>-<version>, as Cloud Controller sends it", processGUID)
	}
	return processGUID[:i], processGUID[i+1:], nil
}

// rootFSImage is the image lrp runs in, its stack for a preloaded root_fs,
// and whether it runs as a recipe: a docker root_fs names its image;
// preloaded:<stack> and preloaded+layer:<stack> run the image the operator
// configured for the stack. A stack LRP with Diego's downloads (setup,
// cached dependencies, image layers: a buildpack app's lifecycle and
// droplet) runs as a recipe; one without them runs its run action directly.
func rootFSImage(lrp *models.DesiredLRP, stacks map[string]string) (image, stack string, runsRecipe bool, err error) {
	rootFS := lrp.RootFs
	switch {
	case strings.HasPrefix(rootFS, dockerRootFSScheme):
		image, err = dockerImage(rootFS)
		return image, "", false, err
	case strings.HasPrefix(rootFS, preloadedLayerRootFSScheme):
		var query string
		stack, query, _ = strings.Cut(strings.TrimPrefix(rootFS, preloadedLayerRootFSScheme), "?")
		if query != "" {
			// CC's experimental "oci-phase-1" mode: the droplet as a layer
			// of the root file system, which only Garden's image plugin
			// builds.
			return "", "", false, invalid("root_fs %q: a droplet given as a root file system layer (CC's temporary_oci_buildpack_mode) is not supported; CC's default recipe (setup or image_layers) is", rootFS)
		}
		runsRecipe = true
	case strings.HasPrefix(rootFS, preloadedRootFSScheme):
		stack = strings.TrimPrefix(rootFS, preloadedRootFSScheme)
		runsRecipe = lrp.Setup != nil || len(lrp.ImageLayers) > 0 || len(lrp.CachedDependencies) > 0
	default:
		return "", "", false, invalid("root_fs %q: want docker://<image>, preloaded:<stack> or preloaded+layer:<stack>", rootFS)
	}
	if image = stacks[stack]; stack == "" || image == "" {
		return "", "", false, invalid("root_fs %q: this Iris has no image for stack %q (bbs.stacks)", rootFS, stack)
	}
	return image, stack, runsRecipe, nil
}

// dockerImage reads the image reference out of a docker root_fs:
// docker:///library/busybox (Docker Hub) or docker://host:5000/team/app#1.2,
// the tag after '#'.
func dockerImage(rootFS string) (string, error) {
	ref := strings.TrimPrefix(strings.TrimPrefix(rootFS, dockerRootFSScheme), "/")
	ref, tag, hasTag := strings.Cut(ref, "#")
	if ref == "" || (hasTag && tag == "") {
		return "", invalid("root_fs %q: no image", rootFS)
	}
	if hasTag {
		ref += ":" + tag
	}
	return ref, nil
}

// appRunAction finds the run action that starts the app: the first one in
// CC's codependent action that is not diego-sshd.
func appRunAction(action *models.Action) *models.RunAction {
	if action == nil {
		return nil
	}
	switch a := action.GetValue().(type) {
	case *models.RunAction:
		if a.Path == sshdPath {
			return nil
		}
		return a
	case *models.CodependentAction:
		return firstRunAction(a.Actions)
	case *models.ParallelAction:
		return firstRunAction(a.Actions)
	case *models.SerialAction:
		return firstRunAction(a.Actions)
	case *models.TimeoutAction:
		return appRunAction(a.Action)
	case *models.TryAction:
		return appRunAction(a.Action)
	case *models.EmitProgressAction:
		return appRunAction(a.Action)
	}
	return nil
}

func firstRunAction(actions []*models.Action) *models.RunAction {
	for _, a := range actions {
		if run := appRunAction(a); run != nil {
			return run
		}
	}
	return nil
}

// process reads CC's recipe: its launcher takes the app dir, the start
// command and the execution metadata; Iris runs the start command in the
// image itself (with a shell, as the launcher does), or the image's own
// entrypoint and cmd when the command is empty. Any other run action runs
// as it is.
func process(image string, run *models.RunAction) workload.Process {
	p := workload.Process{Image: image, User: run.User}
	if run.Path != launcherPath {
		p.Command = append([]string{run.Path}, run.Args...)
		p.WorkingDir = run.Dir
		return p
	}
	if len(run.Args) > 1 && strings.TrimSpace(run.Args[1]) != "" {
		p.Command = []string{"/bin/sh", "-c", run.Args[1]}
	}
	return p
}

// checkDefinition maps check_definition alone: a recipe's monitor is run by
// the runner, not by Kubernetes probes.
func checkDefinition(lrp *models.DesiredLRP) workload.HealthChecks {
	if def := lrp.CheckDefinition; def != nil && len(def.Checks) > 0 {
		return healthChecks(lrp)
	}
	return workload.HealthChecks{StartTimeoutMs: lrp.StartTimeoutMs}
}

// healthChecks maps check_definition (liveness and readiness checks; Iris
// probes the first of each) or, without one, CC's monitor action running
// Diego's healthcheck binary. start_timeout_ms bounds the startup probe.
func healthChecks(lrp *models.DesiredLRP) workload.HealthChecks {
	checks := workload.HealthChecks{StartTimeoutMs: lrp.StartTimeoutMs}
	if def := lrp.CheckDefinition; def != nil && (len(def.Checks) > 0 || len(def.ReadinessChecks) > 0) {
		if len(def.Checks) > 0 {
			checks.Liveness = check(def.Checks[0])
		}
		if len(def.ReadinessChecks) > 0 {
			checks.Readiness = check(def.ReadinessChecks[0])
		}
		return checks
	}
	checks.Liveness = monitorCheck(lrp.Monitor)
	return checks
}

func check(c *models.Check) *workload.HealthCheck {
	switch {
	case c.HttpCheck != nil:
		h := c.HttpCheck
		return &workload.HealthCheck{Type: workload.CheckHTTP, Port: int32(h.Port), Path: h.Path,
			IntervalMs: int64(h.IntervalMs), TimeoutMs: int64(h.RequestTimeoutMs)}
	case c.TcpCheck != nil:
		t := c.TcpCheck
		return &workload.HealthCheck{Type: workload.CheckTCP, Port: int32(t.Port),
			IntervalMs: int64(t.IntervalMs), TimeoutMs: int64(t.ConnectTimeoutMs)}
	}
	return nil
}

// monitorCheck reads the first healthcheck run action of a monitor:
// -port=N checks TCP, with -uri=/path an HTTP GET.
func monitorCheck(monitor *models.Action) *workload.HealthCheck {
	run := findRun(monitor, func(r *models.RunAction) bool { return r.Path == healthcheckPath })
	if run == nil {
		return nil
	}
	c := &workload.HealthCheck{Type: workload.CheckTCP}
	for _, arg := range run.Args {
		name, value, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		switch name {
		case "port":
			if port, err := strconv.Atoi(value); err == nil {
				c.Port = int32(port)
			}
		case "uri":
			c.Type, c.Path = workload.CheckHTTP, value
		}
	}
	return c
}

func findRun(action *models.Action, match func(*models.RunAction) bool) *models.RunAction {
	if action == nil {
		return nil
	}
	var children []*models.Action
	switch a := action.GetValue().(type) {
	case *models.RunAction:
		if match(a) {
			return a
		}
	case *models.CodependentAction:
		children = a.Actions
	case *models.ParallelAction:
		children = a.Actions
	case *models.SerialAction:
		children = a.Actions
	case *models.TimeoutAction:
		children = []*models.Action{a.Action}
	case *models.TryAction:
		children = []*models.Action{a.Action}
	case *models.EmitProgressAction:
		children = []*models.Action{a.Action}
	}
	for _, child := range children {
		if run := findRun(child, match); run != nil {
			return run
		}
	}
	return nil
}

// countRuns counts the run actions in action's tree that match.
func countRuns(action *models.Action, match func(*models.RunAction) bool) int {
	n := 0
	findRun(action, func(r *models.RunAction) bool {
		if match(r) {
			n++
		}
		return false // visit them all
	})
	return n
}

func egressRule(r *models.SecurityGroupRule) workload.EgressRule {
	rule := workload.EgressRule{
		Protocol:     r.Protocol,
		Destinations: append([]string(nil), r.Destinations...),
		Ports:        append([]uint32(nil), r.Ports...),
		Log:          r.Log,
		Annotations:  append([]string(nil), r.Annotations...),
	}
	if r.PortRange != nil {
		rule.PortRange = &workload.PortRange{Start: r.PortRange.Start, End: r.PortRange.End}
	}
	if r.IcmpInfo != nil {
		rule.ICMPInfo = &workload.ICMPInfo{Type: r.IcmpInfo.Type, Code: r.IcmpInfo.Code}
	}
	return rule
}

// staticMetricTags keeps the static tags; dynamic ones (index, instance
// guid) are per instance and filled in by whoever emits.
func staticMetricTags(tags map[string]*models.MetricTagValue) map[string]string {
	out := make(map[string]string, len(tags))
	for k, v := range tags {
		if v != nil && v.Static != "" {
			out[k] = v.Static
		}
	}
	return out
}

// routes keeps every router's entries verbatim.
func routes(r *models.Routes) workload.Routes {
	if r == nil {
		return nil
	}
	out := make(workload.Routes, len(*r))
	for k, v := range *r {
		if v != nil {
			out[k] = append(json.RawMessage(nil), (*v)...)
		}
	}
	return out
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
