package kubernetes_test

import (
	"encoding/json"
	"testing"
	"time"

	"code.cloudfoundry.org/bbs/models"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestKubernetesBackend(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "BBS Kubernetes Backend Suite")
}

const (
	appGUID   = "5fa0a0b4-1d6c-4d0f-a7a4-2f3cbb8a0c11"
	spaceGUID = "b3c8d5a0-0000-4000-8000-000000000002"
	orgGUID   = "b3c8d5a0-0000-4000-8000-000000000003"
)

// ccDockerLRP is a desired LRP as current CC builds one for a docker app:
// docker root_fs with the tag after '#' and registry credentials, the
// docker lifecycle as a cached dependency, the launcher run action (with
// the start command, or "" for the image's own) codependent with
// diego-sshd, a healthcheck monitor under a timeout, a check definition,
// cf-router routes with hostname lists plus empty tcp and internal
// routers, metric tags with the dynamic instance tags, egress rules and
// an isolation segment.
func ccDockerLRP(processGUID, startCommand string) *models.DesiredLRP {
	routes := models.Routes{}
	cfRouter := json.RawMessage(`[{"hostnames":["dora.example.com","www.dora.example.com"],"port":8080,"route_service_url":null,"isolation_segment":null,"protocol":"http1","options":{}}]`)
	tcpRouter, internalRouter := json.RawMessage(`[]`), json.RawMessage(`[]`)
	ssh := json.RawMessage(`{"container_port":2222,"host_fingerprint":"aa:bb","private_key":"k"}`)
	routes["cf-router"] = &cfRouter
	routes["tcp-router"] = &tcpRouter
	routes["internal-router"] = &internalRouter
	routes["diego-ssh"] = &ssh
	return &models.DesiredLRP{
		ProcessGuid:    processGUID,
		Domain:         "cf-apps",
		LogGuid:        appGUID,
		MetricsGuid:    appGUID,
		RootFs:         "docker://registry.example:5000/team/app#1.25",
		ImageUsername:  "robot",
		ImagePassword:  "s3cret",
		Instances:      2,
		MemoryMb:       256,
		DiskMb:         1024,
		MaxPids:        1024,
		CpuWeight:      8,
		LogRateLimit:   &models.LogRateLimit{BytesPerSecond: -1},
		Annotation:     "1764583200.0",
		Ports:          []uint32{8080, 2222},
		StartTimeoutMs: 90000,
		Routes:         &routes,
		LogSource:      "CELL",
		PlacementTags:  []string{"segment-a"},
		MetricTags: map[string]*models.MetricTagValue{
			"source_id":           {Static: appGUID},
			"process_id":          {Static: processGUID[:36]},
			"process_type":        {Static: "web"},
			"app_id":              {Static: appGUID},
			"app_name":            {Static: "dora"},
			"space_id":            {Static: spaceGUID},
			"space_name":          {Static: "dev"},
			"organization_id":     {Static: orgGUID},
			"organization_name":   {Static: "acme"},
			"instance_id":         {Dynamic: models.MetricTagDynamicValueIndex},
			"process_instance_id": {Dynamic: models.MetricTagDynamicValueInstanceGuid},
		},
		CachedDependencies: []*models.CachedDependency{{
			Name: "docker", From: "https://file-server.service.cf.internal:8447/v1/static/docker_app_lifecycle/docker_app_lifecycle.tgz",
			To: "/tmp/lifecycle", CacheKey: "docker-lifecycle",
		}},
		LegacyDownloadUser: "vcap",
		Action: models.WrapAction(models.Codependent(
			&models.RunAction{
				Path: "/tmp/lifecycle/launcher",
				Args: []string{"app", startCommand, `{"cmd":["nginx","-g","daemon off;"],"ports":[{"Port":8080,"Protocol":"tcp"}]}`},
				User: "root",
				Env:  []*models.EnvironmentVariable{{Name: "PORT", Value: "8080"}, {Name: "VCAP_APPLICATION", Value: `{"name":"dora"}`}},
			},
			&models.RunAction{Path: "/tmp/lifecycle/diego-sshd", Args: []string{"-address=0.0.0.0:2222"}, User: "root"},
		)),
		Monitor: models.WrapAction(models.Timeout(models.Parallel(&models.RunAction{
			Path: "/tmp/lifecycle/healthcheck", Args: []string{"-port=8080"}, User: "root", LogSource: "HEALTH",
		}), 10*time.Minute)),
		CheckDefinition: &models.CheckDefinition{
			Checks:          []*models.Check{{TcpCheck: &models.TCPCheck{Port: 8080, ConnectTimeoutMs: 2000}}},
			ReadinessChecks: []*models.Check{{TcpCheck: &models.TCPCheck{Port: 8080, IntervalMs: 5000}}},
			LogSource:       "HEALTH",
		},
		EgressRules: []*models.SecurityGroupRule{
			{Protocol: "tcp", Destinations: []string{"10.0.0.0/8"}, Ports: []uint32{5432}},
			{Protocol: "udp", Destinations: []string{"0.0.0.0-9.255.255.255"}, PortRange: &models.PortRange{Start: 53, End: 54}},
			{Protocol: "icmp", Destinations: []string{"0.0.0.0/0"}, IcmpInfo: &models.ICMPInfo{Type: 0, Code: 0}},
		},
		Network: &models.Network{Properties: map[string]string{
			"policy_group_id": appGUID, "app_id": appGUID, "space_id": spaceGUID, "org_id": orgGUID,
		}},
		CertificateProperties: &models.CertificateProperties{OrganizationalUnit: []string{
			"organization:" + orgGUID, "space:" + spaceGUID, "app:" + appGUID,
		}},
		TrustedSystemCertificatesPath: "/etc/cf-system-certificates",
	}
}

// ccBuildpackLRP is a desired LRP as current CC builds one for a buildpack
// app (cloud_controller_ng lib/cloud_controller/diego/app_recipe_builder.rb
// and buildpack/desired_lrp_builder.rb): preloaded:<stack>, the lifecycle
// bundle as a cached dependency into /tmp/lifecycle, LANG as the global
// environment, a setup downloading the droplet to "." (the vcap user's
// home) with its sha256, the launcher with the start command and the
// execution metadata codependent with diego-sshd, the app's environment on
// the run action, a healthcheck monitor under a 10-minute timeout and the
// check definition mapping the same port check.
func ccBuildpackLRP(processGUID string) *models.DesiredLRP {
	lrp := ccDockerLRP(processGUID, "")
	lrp.RootFs = "preloaded:cflinuxfs4"
	lrp.ImageUsername, lrp.ImagePassword = "", ""
	lrp.PlacementTags = nil
	lrp.EnvironmentVariables = []*models.EnvironmentVariable{{Name: "LANG", Value: "en_US.UTF-8"}}
	lrp.CachedDependencies = []*models.CachedDependency{{
		From:     "https://file-server.service.cf.internal:8447/v1/static/buildpack_app_lifecycle/buildpack_app_lifecycle.tgz",
		To:       "/tmp/lifecycle",
		CacheKey: "buildpack-cflinuxfs4-lifecycle",
	}}
	lrp.Setup = models.WrapAction(models.Serial(&models.DownloadAction{
		From:              "http://cloud-controller-ng.service.cf.internal:9022/internal/v4/droplets/" + processGUID[:36] + "/checksum/download",
		To:                ".",
		CacheKey:          "droplets-" + processGUID,
		User:              "vcap",
		ChecksumAlgorithm: "sha256",
		ChecksumValue:     "4b7c0f8e2d1f6a9b3c5e7d9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b",
	}))
	lrp.Action = models.WrapAction(models.Codependent(
		&models.RunAction{
			Path: "/tmp/lifecycle/launcher",
			Args: []string{"app", "bundle exec rackup config.ru -p $PORT", `{"start_command":"bundle exec rackup config.ru -p $PORT"}`},
			User: "vcap",
			Env: []*models.EnvironmentVariable{
				{Name: "VCAP_APPLICATION", Value: `{"application_name":"dora"}`}, {Name: "VCAP_SERVICES", Value: `{"db":[{"credentials":{"password":"p"}}]}`},
				{Name: "PORT", Value: "8080"}, {Name: "VCAP_APP_PORT", Value: "8080"}, {Name: "VCAP_APP_HOST", Value: "0.0.0.0"},
			},
			ResourceLimits: &models.ResourceLimits{},
			LogSource:      "APP/PROC/WEB",
		},
		&models.RunAction{Path: "/tmp/lifecycle/diego-sshd", Args: []string{"-address=0.0.0.0:2222", "-allowUnauthenticatedClients=false"}, User: "vcap"},
	))
	lrp.Monitor = models.WrapAction(models.Timeout(models.Parallel(&models.RunAction{
		Path: "/tmp/lifecycle/healthcheck", Args: []string{"-port=8080"}, User: "vcap", LogSource: "HEALTH", SuppressLogOutput: true,
	}), 10*time.Minute))
	return lrp
}
