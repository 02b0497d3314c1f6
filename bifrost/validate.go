package bifrost

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/iris-cf/iris/cc"
	"github.com/iris-cf/iris/models"
)

// Bounds that follow from what runs the request, not from operator choice.
const (
	// maxResourceMB is CC's own bound on memory_in_mb and disk_in_mb
	// (MAX_DB_INT); it also keeps MB*1024*1024 far from int64 overflow.
	maxResourceMB = math.MaxInt32
	// maxCPUWeight is Diego's bound (BBS rejects cpu_weight > 100); CC
	// derives it from memory and never sends more.
	maxCPUWeight = 100
	// maxEnvVarBytes bounds one "NAME=value" string: execve(2) refuses any
	// single environment string longer than MAX_ARG_STRLEN (32 pages,
	// 131072 bytes with its NUL), so the container could never start.
	maxEnvVarBytes = 128*1024 - 1
	// maxEnvTotalBytes bounds all of a request's variables together. The
	// environment is stored in the StatefulSet (or Job) and again in its
	// ControllerRevision and each pod, and etcd refuses objects beyond
	// about 1.5 MiB: 1 MiB leaves room for the rest of the object, and
	// the API server is never asked to store what it would refuse.
	maxEnvTotalBytes = 1 << 20
)

// validateGUID checks a guid that Iris puts into label values, object
// lookups and URL paths: 1 to 63 of [A-Za-z0-9._-], starting and ending with
// a letter or digit (a Kubernetes label value, so it is stored unchanged and
// never collides with another guid), and no "..", so it is always one plain
// path segment. CC's guids are UUIDs.
func validateGUID(field, guid string) error {
	if guid == "" {
		return models.Invalidf("%s is required", field)
	}
	if problems := validation.IsValidLabelValue(guid); len(problems) > 0 || strings.Contains(guid, "..") {
		return models.Invalidf("%s %q: want 1-63 characters of [A-Za-z0-9._-], starting and ending with a letter or digit, without \"..\"", field, guid)
	}
	return nil
}

// validateResources checks memory_mb and disk_mb (required: Iris never runs
// a container without limits, and CC always sends both, its own validation
// requiring them to be positive; Diego's 0 would mean unlimited) and
// cpu_weight (0 means no CPU request, as in Diego).
func validateResources(memoryMB, diskMB, cpuWeight int64) error {
	if memoryMB <= 0 || memoryMB > maxResourceMB {
		return models.Invalidf("memory_mb must be between 1 and %d, got %d (Iris never runs a container without a memory limit)", maxResourceMB, memoryMB)
	}
	if diskMB <= 0 || diskMB > maxResourceMB {
		return models.Invalidf("disk_mb must be between 1 and %d, got %d (Iris never runs a container without a disk limit)", maxResourceMB, diskMB)
	}
	if cpuWeight < 0 || cpuWeight > maxCPUWeight {
		return models.Invalidf("cpu_weight must be between 0 and %d, got %d", maxCPUWeight, cpuWeight)
	}
	return nil
}

// validateInstances checks an instance count before it is narrowed to the
// StatefulSet's int32 replicas. The JSON decoder already refuses a number
// that does not fit an int, so nothing wraps before this check.
func validateInstances(instances, maxInstances int) error {
	if instances < 0 {
		return models.Invalidf("instances must not be negative, got %d", instances)
	}
	if instances > maxInstances {
		return models.Invalidf("instances must be at most %d (lrp.max_instances), got %d", maxInstances, instances)
	}
	return nil
}

// validateEnvironment checks every variable so that the container can start
// and its object can be stored.
func validateEnvironment(vars []models.EnvironmentVariable) error {
	total := 0
	for _, v := range vars {
		if v.Name == "" {
			return models.Invalidf("environment: variable names must not be empty")
		}
		if strings.ContainsRune(v.Name, 0) {
			return models.Invalidf("environment: variable name %q contains a NUL byte", v.Name)
		}
		if strings.ContainsRune(v.Value, 0) {
			return models.Invalidf("environment: the value of %s contains a NUL byte", v.Name)
		}
		size := len(v.Name) + 1 + len(v.Value)
		if size > maxEnvVarBytes {
			return models.Invalidf("environment: %s is %d bytes, more than the %d a process environment string may have", v.Name, size, maxEnvVarBytes)
		}
		total += size
	}
	if total > maxEnvTotalBytes {
		return models.Invalidf("environment: %d bytes in all, more than the %d Iris stores in one object", total, maxEnvTotalBytes)
	}
	return nil
}

// environmentList is an LRP's environment map in a stable order, so the
// first problem reported is always the same.
func environmentList(env map[string]string) []models.EnvironmentVariable {
	vars := make([]models.EnvironmentVariable, 0, len(env))
	for name, value := range env {
		vars = append(vars, models.EnvironmentVariable{Name: name, Value: value})
	}
	sort.Slice(vars, func(i, j int) bool { return vars[i].Name < vars[j].Name })
	return vars
}

// validateImage checks a docker image reference as the kubelet (and the
// docker stager) will parse it.
func validateImage(image string) error {
	if image == "" {
		return models.Invalidf("lifecycle: docker_lifecycle.image is required")
	}
	if _, err := name.ParseReference(image); err != nil {
		return models.Invalidf("lifecycle: docker_lifecycle.image %q is not an image reference: %v", image, err)
	}
	return nil
}

// validateDroplet checks that droplet_guid and droplet_hash form an image
// reference (<droplet registry>/<guid>:<hash>); the registry part is the
// operator's and checked with the config.
func validateDroplet(b *models.BuildpackLifecycle) error {
	if b.DropletGUID == "" || b.DropletHash == "" {
		return models.Invalidf("lifecycle: buildpack_lifecycle.droplet_guid and droplet_hash are required")
	}
	if _, err := name.NewTag(fmt.Sprintf("droplets.invalid/%s:%s", b.DropletGUID, b.DropletHash)); err != nil {
		return models.Invalidf("lifecycle: buildpack_lifecycle droplet_guid %q and droplet_hash %q do not form an image reference: %v", b.DropletGUID, b.DropletHash, err)
	}
	return nil
}

// validateDesire rejects what CC would never send and Kubernetes could not
// run, before anything is created. pathGUID is the {process_guid} segment.
func validateDesire(pathGUID string, lrp *models.DesireLRPRequest, limits Limits) error {
	if lrp.GUID == "" || lrp.Version == "" {
		return models.Invalidf("guid and version are required")
	}
	if err := validateGUID("guid", lrp.GUID); err != nil {
		return err
	}
	if err := validateGUID("version", lrp.Version); err != nil {
		return err
	}
	processGUID := lrp.GUID + "-" + lrp.Version
	if lrp.ProcessGUID == "" {
		lrp.ProcessGUID = processGUID
	}
	if lrp.ProcessGUID != processGUID {
		return models.Invalidf("process_guid %q does not match guid-version %q", lrp.ProcessGUID, processGUID)
	}
	if pathGUID != processGUID {
		return models.Invalidf("path process guid %q does not match guid-version %q", pathGUID, processGUID)
	}
	if err := validateInstances(lrp.NumInstances(), limits.MaxInstances); err != nil {
		return err
	}
	if err := validateResources(lrp.MemoryMB, lrp.DiskMB, lrp.CPUWeight); err != nil {
		return err
	}
	if lrp.HealthCheckTimeoutMs < 0 || lrp.StartTimeoutMs < 0 {
		return models.Invalidf("health_check_timeout_ms and start_timeout_ms must not be negative")
	}
	for _, p := range lrp.Ports {
		if p < 1 || p > 65535 {
			return models.Invalidf("port %d is out of range 1-65535", p)
		}
	}
	switch lrp.HealthCheckType {
	case "", "port", "http", "process", "none":
	default:
		return models.Invalidf("health_check_type %q is not one of port, http, process", lrp.HealthCheckType)
	}
	// CC sends the space's isolation segment as the only placement tag.
	if len(lrp.PlacementTags) > 1 {
		return models.Invalidf("placement_tags: Iris places by one tag (the isolation segment), got %d", len(lrp.PlacementTags))
	}
	if len(lrp.PlacementTags) == 1 && lrp.PlacementTags[0] == "" {
		return models.Invalidf("placement_tags: the tag must not be empty")
	}
	if err := lrp.Routes.ValidatePorts(lrp.ExposedPorts()); err != nil {
		return err
	}
	if err := validateEnvironment(environmentList(lrp.Environment)); err != nil {
		return err
	}
	for _, m := range lrp.VolumeMounts {
		if m.VolumeID == "" || m.MountDir == "" {
			return models.Invalidf("volume_mounts: volume_id and mount_dir are required")
		}
	}
	return validateLifecycle(lrp.Lifecycle)
}

func validateLifecycle(l models.Lifecycle) error {
	docker, buildpack := l.DockerLifecycle, l.BuildpackLifecycle
	switch {
	case docker != nil && buildpack != nil:
		return models.Invalidf("lifecycle: exactly one of docker_lifecycle and buildpack_lifecycle, not both")
	case docker != nil:
		if err := validateImage(docker.Image); err != nil {
			return err
		}
		if (docker.RegistryUsername == "") != (docker.RegistryPassword == "") {
			return models.Invalidf("lifecycle: docker_lifecycle needs both registry_username and registry_password, or neither")
		}
	case buildpack != nil:
		return validateDroplet(buildpack)
	default:
		return models.Invalidf("lifecycle: one of docker_lifecycle or buildpack_lifecycle is required")
	}
	return nil
}

// validateUpdate checks an update against the {process_guid} path segment.
// Route ports are checked by the backend, which knows the LRP's ports.
func validateUpdate(pathGUID string, req *models.UpdateDesiredLRPRequest, limits Limits) error {
	if req.GUID == "" || req.Version == "" {
		return models.Invalidf("guid and version are required")
	}
	if pathGUID != req.GUID+"-"+req.Version {
		return models.Invalidf("path process guid %q does not match guid-version %q", pathGUID, req.GUID+"-"+req.Version)
	}
	if req.Update.Instances != nil {
		if err := validateInstances(*req.Update.Instances, limits.MaxInstances); err != nil {
			return err
		}
	}
	return req.Update.Routes.Validate()
}

// validateTask checks a task request against the {guid} path segment and
// gives it its limits (taskResources).
func validateTask(pathGUID string, task *models.TaskRequest, limits Limits) error {
	if task.GUID == "" {
		task.GUID = pathGUID
	}
	if task.GUID != pathGUID {
		return models.Invalidf("task guid %q does not match the path %q", task.GUID, pathGUID)
	}
	if err := validateGUID("task guid", task.GUID); err != nil {
		return err
	}
	if err := validateCallback(task.CompletionCallback); err != nil {
		return err
	}
	if err := validateEnvironment(task.Environment); err != nil {
		return err
	}
	if err := taskResources(task, limits); err != nil {
		return err
	}
	if err := validateResources(task.MemoryMB, task.DiskMB, task.CPUWeight); err != nil {
		return err
	}
	return validateLifecycle(task.Lifecycle)
}

// taskResources fills in the memory and disk a task runs with when the
// request leaves them out (0 or absent), which CC's OPI task client always
// does: its body carries no memory_mb, disk_mb or cpu_weight. Iris never
// runs a task without limits, so it takes what CC does pass:
//   - memory: MEMORY_LIMIT in the task's environment, which CC's
//     TaskEnvironment sets to "<task.memory_in_mb>m";
//   - disk: VCAP_APPLICATION's limits.disk, which CC sets to its
//     default_app_disk_in_mb (the task's own disk_in_mb is not passed);
//
// and the operator's defaults (tasks.default_memory_mb, default_disk_mb)
// where those are missing. Values the request does carry are kept and
// validated as for apps. cpu_weight 0 stays: no CPU request, as in Diego.
func taskResources(task *models.TaskRequest, limits Limits) error {
	if task.MemoryMB == 0 {
		task.MemoryMB = limits.DefaultTaskMemoryMB
		if value, ok := lookupEnv(task.Environment, "MEMORY_LIMIT"); ok {
			mb, err := parseMemoryLimit(value)
			if err != nil {
				return err
			}
			task.MemoryMB = mb
		}
	}
	if task.DiskMB == 0 {
		task.DiskMB = limits.DefaultTaskDiskMB
		if value, ok := lookupEnv(task.Environment, "VCAP_APPLICATION"); ok {
			// VCAP_APPLICATION is the app's to read; one Iris cannot use
			// for its disk is no reason to refuse the task.
			var vcap struct {
				Limits struct {
					Disk int64 `json:"disk"`
				} `json:"limits"`
			}
			if json.Unmarshal([]byte(value), &vcap) == nil && vcap.Limits.Disk > 0 {
				task.DiskMB = vcap.Limits.Disk
			}
		}
	}
	return nil
}

// lookupEnv returns the last value of name, the one a process would see.
func lookupEnv(vars []models.EnvironmentVariable, name string) (string, bool) {
	value, found := "", false
	for _, v := range vars {
		if v.Name == name {
			value, found = v.Value, true
		}
	}
	return value, found
}

// parseMemoryLimit reads CC's MEMORY_LIMIT ("1024m"; CC always writes
// megabytes with a lowercase m) in MB. G is accepted too, as the buildpacks
// reading the variable accept it.
func parseMemoryLimit(value string) (int64, error) {
	// A bare number is refused: bytes or megabytes, nobody can tell.
	digits, multiplier := strings.TrimSpace(value), int64(0)
	switch {
	case strings.HasSuffix(strings.ToLower(digits), "mb"):
		digits, multiplier = digits[:len(digits)-2], 1
	case strings.HasSuffix(strings.ToLower(digits), "m"):
		digits, multiplier = digits[:len(digits)-1], 1
	case strings.HasSuffix(strings.ToLower(digits), "gb"):
		digits, multiplier = digits[:len(digits)-2], 1024
	case strings.HasSuffix(strings.ToLower(digits), "g"):
		digits, multiplier = digits[:len(digits)-1], 1024
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if multiplier == 0 || err != nil || n <= 0 || n > maxResourceMB/multiplier {
		return 0, models.Invalidf("environment: MEMORY_LIMIT %q is not a memory limit CC sends (like \"1024m\", at most %dm)", value, maxResourceMB)
	}
	return n * multiplier, nil
}

func validateCallback(callback string) error {
	if callback == "" {
		return models.Invalidf("completion_callback is required")
	}
	if u, err := url.Parse(callback); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Quoted without user and password: the message is logged and
		// answered.
		return models.Invalidf("completion_callback %q is not an http(s) URL", cc.RedactURL(callback))
	}
	return nil
}

// validateStaging rejects a staging request that cannot be carried out.
func validateStaging(pathGUID string, req *models.StagingRequest) error {
	if err := validateGUID("staging guid", pathGUID); err != nil {
		return err
	}
	if err := validateCallback(req.CompletionCallback); err != nil {
		return err
	}
	if err := validateResources(req.MemoryMB, req.DiskMB, req.CPUWeight); err != nil {
		return err
	}
	if err := validateEnvironment(req.Environment); err != nil {
		return err
	}
	docker, buildpack := req.Lifecycle.DockerLifecycle, req.Lifecycle.BuildpackLifecycle
	switch {
	case docker != nil && buildpack != nil:
		return models.Invalidf("lifecycle: exactly one of docker_lifecycle and buildpack_lifecycle, not both")
	case docker != nil:
		return validateImage(docker.Image)
	case buildpack != nil:
		if buildpack.AppBitsDownloadURI == "" || buildpack.DropletUploadURI == "" {
			return models.Invalidf("lifecycle: buildpack_lifecycle.app_bits_download_uri and droplet_upload_uri are required")
		}
	default:
		return models.Invalidf("lifecycle: one of docker_lifecycle or buildpack_lifecycle is required")
	}
	return nil
}
