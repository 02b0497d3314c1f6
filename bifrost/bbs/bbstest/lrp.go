// Package bbstest holds BBS requests as current Cloud Controller builds
// them, for the integration suite and the benchmarks: one place to keep in
// step with cloud_controller_ng.
package bbstest

import (
	"encoding/json"
	"time"

	"code.cloudfoundry.org/bbs/models"
)

// Space is the org and space an LRP is tagged with.
type Space struct {
	AppName, SpaceGUID, SpaceName, OrgGUID, OrgName string
}

// DockerLRP is a desired LRP as current CC builds one for a docker app
// (the image's own entrypoint, a start command of ""): docker root_fs with
// its tag after '#', the docker lifecycle as a cached dependency, the
// launcher in a codependent action, a healthcheck monitor under a
// 10-minute timeout, a check definition, cf-router routes with a hostname
// list and empty tcp and internal routers, CC's metric tags, one egress
// rule. processGUID is CC's <app guid>-<version>.
func DockerLRP(processGUID string, instances int32, hostname string, space Space) *models.DesiredLRP {
	appGUID := processGUID[:36]
	routes := Routes(hostname)
	return &models.DesiredLRP{
		ProcessGuid:    processGUID,
		Domain:         "cf-apps",
		LogGuid:        appGUID,
		MetricsGuid:    appGUID,
		RootFs:         "docker:///cloudfoundry/dora#latest",
		Instances:      instances,
		MemoryMb:       128,
		DiskMb:         256,
		MaxPids:        1024,
		CpuWeight:      2,
		LogRateLimit:   &models.LogRateLimit{BytesPerSecond: -1},
		Annotation:     "1764583200.0",
		Ports:          []uint32{8080},
		StartTimeoutMs: 60000,
		Routes:         &routes,
		LogSource:      "CELL",
		MetricTags: map[string]*models.MetricTagValue{
			"source_id":           {Static: appGUID},
			"process_type":        {Static: "web"},
			"app_id":              {Static: appGUID},
			"app_name":            {Static: space.AppName},
			"space_id":            {Static: space.SpaceGUID},
			"space_name":          {Static: space.SpaceName},
			"organization_id":     {Static: space.OrgGUID},
			"organization_name":   {Static: space.OrgName},
			"instance_id":         {Dynamic: models.MetricTagDynamicValueIndex},
			"process_instance_id": {Dynamic: models.MetricTagDynamicValueInstanceGuid},
		},
		CachedDependencies: []*models.CachedDependency{{
			Name: "docker", From: "https://file-server.service.cf.internal:8447/v1/static/docker_app_lifecycle/docker_app_lifecycle.tgz",
			To: "/tmp/lifecycle", CacheKey: "docker-lifecycle",
		}},
		Action: models.WrapAction(models.Codependent(
			&models.RunAction{
				Path: "/tmp/lifecycle/launcher",
				Args: []string{"app", "", `{"cmd":["/dora"],"ports":[{"Port":8080,"Protocol":"tcp"}]}`},
				User: "root",
				Env:  []*models.EnvironmentVariable{{Name: "PORT", Value: "8080"}},
			},
		)),
		Monitor: models.WrapAction(models.Timeout(models.Parallel(&models.RunAction{
			Path: "/tmp/lifecycle/healthcheck", Args: []string{"-port=8080"}, User: "root",
		}), 10*time.Minute)),
		CheckDefinition: &models.CheckDefinition{
			Checks:          []*models.Check{{TcpCheck: &models.TCPCheck{Port: 8080}}},
			ReadinessChecks: []*models.Check{{TcpCheck: &models.TCPCheck{Port: 8080}}},
		},
		EgressRules: []*models.SecurityGroupRule{{Protocol: "tcp", Destinations: []string{"10.0.0.0/8"}, Ports: []uint32{5432}}},
	}
}

// Routes are CC's routes for one hostname on port 8080.
func Routes(hostname string) models.Routes {
	cfRouter := json.RawMessage(`[{"hostnames":["` + hostname + `"],"port":8080,"route_service_url":null,"isolation_segment":null,"protocol":"http1","options":{}}]`)
	empty, emptyToo := json.RawMessage(`[]`), json.RawMessage(`[]`)
	return models.Routes{"cf-router": &cfRouter, "tcp-router": &empty, "internal-router": &emptyToo}
}
