package bifrost

import (
	"maps"
	"slices"

	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/workload"
)

// OPI health check types as CC sends them.
const (
	healthCheckTypePort    = "port"
	healthCheckTypeHTTP    = "http"
	healthCheckTypeProcess = "process"
	healthCheckTypeNone    = "none"
)

// DesiredLRP translates CC's OPI desire request into Iris's front-neutral
// model. It assumes the request passed validateDesire (process guid set).
func DesiredLRP(req *models.DesireLRPRequest) *workload.DesiredLRP {
	lrp := &workload.DesiredLRP{
		ProcessGUID:     req.ProcessGUID,
		GUID:            req.GUID,
		Version:         req.Version,
		ProcessType:     req.ProcessType,
		AppGUID:         req.AppGUID,
		AppName:         req.AppName,
		SpaceGUID:       req.SpaceGUID,
		SpaceName:       req.SpaceName,
		OrgGUID:         req.OrganizationGUID,
		OrgName:         req.OrganizationName,
		Namespace:       req.Namespace,
		Instances:       int32(req.NumInstances()),
		Ports:           slices.Clone(req.Ports),
		Routes:          maps.Clone(req.Routes),
		Env:             maps.Clone(req.Environment),
		HealthChecks:    healthChecks(req),
		EgressRules:     slices.Clone(req.EgressRules),
		PlacementTags:   slices.Clone(req.PlacementTags),
		Annotation:      req.LastUpdated,
		UserAnnotations: maps.Clone(req.UserDefinedAnnotations),
		Resources: workload.Resources{
			MemoryMB:  req.MemoryMB,
			DiskMB:    req.DiskMB,
			CPUWeight: req.CPUWeight,
		},
	}
	for _, m := range req.VolumeMounts {
		lrp.VolumeMounts = append(lrp.VolumeMounts, workload.VolumeMount{VolumeID: m.VolumeID, MountDir: m.MountDir})
	}
	switch {
	case req.Lifecycle.DockerLifecycle != nil:
		d := req.Lifecycle.DockerLifecycle
		lrp.Process = workload.Process{Image: d.Image, Command: slices.Clone(d.Command)}
		if d.RegistryUsername != "" || d.RegistryPassword != "" {
			lrp.RegistryCredentials = &workload.RegistryCredentials{Username: d.RegistryUsername, Password: d.RegistryPassword}
		}
	case req.Lifecycle.BuildpackLifecycle != nil:
		bp := req.Lifecycle.BuildpackLifecycle
		lrp.Process = workload.Process{Droplet: &workload.Droplet{GUID: bp.DropletGUID, Hash: bp.DropletHash, StartCommand: bp.StartCommand}}
	}
	return lrp
}

// healthChecks maps CC's OPI health check: port (and empty, Diego's default)
// is a TCP check of the first port, http a GET of the endpoint on it,
// process and none no check. Its health_check_timeout_ms is the start
// timeout, used when start_timeout_ms is absent.
func healthChecks(req *models.DesireLRPRequest) workload.HealthChecks {
	checks := workload.HealthChecks{StartTimeoutMs: req.StartTimeoutMs}
	if checks.StartTimeoutMs <= 0 {
		checks.StartTimeoutMs = req.HealthCheckTimeoutMs
	}
	switch req.HealthCheckType {
	case healthCheckTypeProcess, healthCheckTypeNone:
	case healthCheckTypeHTTP:
		checks.Liveness = &workload.HealthCheck{Type: workload.CheckHTTP, Path: req.HealthCheckHTTPEndpoint}
	default:
		checks.Liveness = &workload.HealthCheck{Type: workload.CheckTCP}
	}
	return checks
}
