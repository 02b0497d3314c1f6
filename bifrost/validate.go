package bifrost

import (
	"net/url"

	"github.com/iris-cf/iris/models"
)

// validateDesire rejects what CC would never send and Kubernetes could not
// run, before anything is created. pathGUID is the {process_guid} segment.
func validateDesire(pathGUID string, lrp *models.DesireLRPRequest) error {
	if lrp.GUID == "" || lrp.Version == "" {
		return models.Invalidf("guid and version are required")
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
	if lrp.NumInstances() < 0 {
		return models.Invalidf("instances must not be negative, got %d", lrp.NumInstances())
	}
	if lrp.MemoryMB < 0 || lrp.DiskMB < 0 || lrp.CPUWeight < 0 {
		return models.Invalidf("memory_mb, disk_mb and cpu_weight must not be negative")
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
	if err := lrp.Routes.Validate(); err != nil {
		return err
	}
	for name := range lrp.Environment {
		if name == "" {
			return models.Invalidf("environment: variable names must not be empty")
		}
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
		if docker.Image == "" {
			return models.Invalidf("lifecycle: docker_lifecycle.image is required")
		}
		if (docker.RegistryUsername == "") != (docker.RegistryPassword == "") {
			return models.Invalidf("lifecycle: docker_lifecycle needs both registry_username and registry_password, or neither")
		}
	case buildpack != nil:
		if buildpack.DropletGUID == "" || buildpack.DropletHash == "" {
			return models.Invalidf("lifecycle: buildpack_lifecycle.droplet_guid and droplet_hash are required")
		}
	default:
		return models.Invalidf("lifecycle: one of docker_lifecycle or buildpack_lifecycle is required")
	}
	return nil
}

// validateUpdate checks an update against the {process_guid} path segment.
func validateUpdate(pathGUID string, req *models.UpdateDesiredLRPRequest) error {
	if req.GUID == "" || req.Version == "" {
		return models.Invalidf("guid and version are required")
	}
	if pathGUID != req.GUID+"-"+req.Version {
		return models.Invalidf("path process guid %q does not match guid-version %q", pathGUID, req.GUID+"-"+req.Version)
	}
	if req.Update.Instances != nil && *req.Update.Instances < 0 {
		return models.Invalidf("instances must not be negative, got %d", *req.Update.Instances)
	}
	return req.Update.Routes.Validate()
}

// validateTask checks a task request against the {guid} path segment.
func validateTask(pathGUID string, task *models.TaskRequest) error {
	if task.GUID == "" {
		task.GUID = pathGUID
	}
	if task.GUID != pathGUID {
		return models.Invalidf("task guid %q does not match the path %q", task.GUID, pathGUID)
	}
	if err := validateCallback(task.CompletionCallback); err != nil {
		return err
	}
	if task.MemoryMB < 0 || task.DiskMB < 0 || task.CPUWeight < 0 {
		return models.Invalidf("memory_mb, disk_mb and cpu_weight must not be negative")
	}
	for _, e := range task.Environment {
		if e.Name == "" {
			return models.Invalidf("environment: variable names must not be empty")
		}
	}
	return validateLifecycle(task.Lifecycle)
}

func validateCallback(callback string) error {
	if callback == "" {
		return models.Invalidf("completion_callback is required")
	}
	if u, err := url.Parse(callback); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return models.Invalidf("completion_callback %q is not an http(s) URL", callback)
	}
	return nil
}

// validateStaging rejects a staging request that cannot be carried out.
func validateStaging(req *models.StagingRequest) error {
	if err := validateCallback(req.CompletionCallback); err != nil {
		return err
	}
	if req.MemoryMB < 0 || req.DiskMB < 0 || req.CPUWeight < 0 {
		return models.Invalidf("memory_mb, disk_mb and cpu_weight must not be negative")
	}
	docker, buildpack := req.Lifecycle.DockerLifecycle, req.Lifecycle.BuildpackLifecycle
	switch {
	case docker != nil && buildpack != nil:
		return models.Invalidf("lifecycle: exactly one of docker_lifecycle and buildpack_lifecycle, not both")
	case docker != nil:
		if docker.Image == "" {
			return models.Invalidf("lifecycle: docker_lifecycle.image is required")
		}
	case buildpack != nil:
		if buildpack.AppBitsDownloadURI == "" || buildpack.DropletUploadURI == "" {
			return models.Invalidf("lifecycle: buildpack_lifecycle.app_bits_download_uri and droplet_upload_uri are required")
		}
	default:
		return models.Invalidf("lifecycle: one of docker_lifecycle or buildpack_lifecycle is required")
	}
	return nil
}
