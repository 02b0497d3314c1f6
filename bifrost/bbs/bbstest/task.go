package bbstest

import (
	"crypto/md5"
	"encoding/hex"
	"time"

	"code.cloudfoundry.org/bbs/models"
)

// Task is what a TaskDefinition is built from: the app it belongs to and
// where CC's assets are served (CC's file server and cc-uploader, or
// stand-ins for them).
type Task struct {
	Space
	AppGUID string
	// Name is the `cf run-task` name.
	Name string
	// CallbackURL is CC's completion callback for the task.
	CallbackURL string
	// LifecycleURL serves the lifecycle bundle (launcher, or builder).
	LifecycleURL string
}

func (t Task) metricTags() map[string]*models.MetricTagValue {
	return map[string]*models.MetricTagValue{
		"source_id":         {Static: t.AppGUID},
		"app_id":            {Static: t.AppGUID},
		"app_name":          {Static: t.AppName},
		"space_id":          {Static: t.SpaceGUID},
		"space_name":        {Static: t.SpaceName},
		"organization_id":   {Static: t.OrgGUID},
		"organization_name": {Static: t.OrgName},
	}
}

// DockerRunTask is a `cf run-task` of a docker app as current CC's
// TaskRecipeBuilder and docker TaskActionBuilder build it (cloud_
// controller_ng lib/cloud_controller/diego/task_recipe_builder.rb,
// docker/task_action_builder.rb): domain cf-tasks, the docker lifecycle as
// a cached dependency in /tmp/lifecycle, the launcher running the command
// with log source APP/TASK/<name>, the task's env on the run action, CC's
// metric tags and the completion callback /internal/v4/tasks/<guid>/completed.
func DockerRunTask(t Task, image, command string) *models.TaskDefinition {
	env := []*models.EnvironmentVariable{
		{Name: "VCAP_APPLICATION", Value: `{"application_name":"` + t.AppName + `","limits":{"mem":256,"disk":1024,"fds":16384}}`},
		{Name: "MEMORY_LIMIT", Value: "256m"},
		{Name: "VCAP_SERVICES", Value: "{}"},
	}
	return &models.TaskDefinition{
		RootFs:                        "docker://" + image,
		LogGuid:                       t.AppGUID,
		LogSource:                     "APP/TASK/" + t.Name,
		MemoryMb:                      256,
		DiskMb:                        1024,
		CpuWeight:                     1,
		MaxPids:                       1024,
		LogRateLimit:                  &models.LogRateLimit{BytesPerSecond: -1},
		CompletionCallbackUrl:         t.CallbackURL,
		Privileged:                    false,
		TrustedSystemCertificatesPath: "/etc/cf-system-certificates",
		MetricTags:                    t.metricTags(),
		EgressRules:                   []*models.SecurityGroupRule{{Protocol: "all", Destinations: []string{"0.0.0.0-255.255.255.255"}}},
		Network:                       &models.Network{Properties: map[string]string{"policy_group_id": t.AppGUID, "app_id": t.AppGUID, "space_id": t.SpaceGUID, "org_id": t.OrgGUID, "container_workload": "task"}},
		CachedDependencies: []*models.CachedDependency{{
			From: t.LifecycleURL, To: "/tmp/lifecycle", CacheKey: "docker-lifecycle",
		}},
		LegacyDownloadUser: "vcap",
		Action: models.WrapAction(&models.RunAction{
			Path:           "/tmp/lifecycle/launcher",
			Args:           []string{"app", command, "{}"},
			User:           "root",
			LogSource:      "APP/TASK/" + t.Name,
			ResourceLimits: &models.ResourceLimits{},
			Env:            env,
		}),
	}
}

// Staging is where a staging's inputs come from and its outputs go.
type Staging struct {
	Task
	// Stack is the app's stack (root_fs preloaded:<stack>).
	Stack string
	// PackageURL serves the app bits (zip), with their sha256.
	PackageURL, PackageSHA256 string
	// BuildpackURL serves the buildpack (zip) under BuildpackKey.
	BuildpackURL, BuildpackKey string
	// DropletUploadURL and CacheUploadURL are cc-uploader's.
	DropletUploadURL, CacheUploadURL string
}

// BuildpackDir is where CC's staging recipe puts the buildpack of key
// (staging_action_builder.rb buildpack_path): /tmp/buildpacks/<md5 of key>,
// where the builder looks for each key of -buildpackOrder.
func BuildpackDir(key string) string {
	sum := md5.Sum([]byte(key))
	return "/tmp/buildpacks/" + hex.EncodeToString(sum[:])
}

// BuildpackStaging is a buildpack staging as current CC's TaskRecipeBuilder
// and buildpack StagingActionBuilder build it (lib/cloud_controller/diego/
// buildpack/staging_action_builder.rb): domain cf-app-staging, log source
// STG, root_fs preloaded:<stack>, the lifecycle and the buildpack as
// cached dependencies, then under the staging timeout: the app package
// download (in a parallel action), the builder run, and the droplet and build cache uploads to
// cc-uploader inside emit_progress; result_file /tmp/result.json, and the
// callback /internal/v3/staging/<guid>/build_completed?start=<bool>.
func BuildpackStaging(s Staging) *models.TaskDefinition {
	env := []*models.EnvironmentVariable{
		{Name: "VCAP_APPLICATION", Value: `{"application_name":"` + s.AppName + `"}`},
		{Name: "MEMORY_LIMIT", Value: "1024m"},
		{Name: "VCAP_SERVICES", Value: "{}"},
		{Name: "CF_STACK", Value: s.Stack},
	}
	return &models.TaskDefinition{
		RootFs:                        "preloaded:" + s.Stack,
		LogGuid:                       s.AppGUID,
		LogSource:                     "STG",
		MemoryMb:                      1024,
		DiskMb:                        4096,
		CpuWeight:                     50,
		MaxPids:                       1024,
		LogRateLimit:                  &models.LogRateLimit{BytesPerSecond: -1},
		CompletionCallbackUrl:         s.CallbackURL,
		ResultFile:                    "/tmp/result.json",
		Privileged:                    false,
		TrustedSystemCertificatesPath: "/etc/cf-system-certificates",
		MetricTags:                    s.metricTags(),
		EgressRules:                   []*models.SecurityGroupRule{{Protocol: "all", Destinations: []string{"0.0.0.0-255.255.255.255"}}},
		EnvironmentVariables:          env,
		LegacyDownloadUser:            "vcap",
		CachedDependencies: []*models.CachedDependency{
			{From: s.LifecycleURL, To: "/tmp/lifecycle", CacheKey: "buildpack-" + s.Stack + "-lifecycle"},
			{Name: "test-buildpack", From: s.BuildpackURL, To: BuildpackDir(s.BuildpackKey), CacheKey: s.BuildpackKey, LogSource: "STG"},
		},
		Action: models.WrapAction(models.Timeout(models.Serial(
			models.Parallel(&models.DownloadAction{Artifact: "app package", From: s.PackageURL, To: "/tmp/app", User: "vcap",
				ChecksumAlgorithm: "sha256", ChecksumValue: s.PackageSHA256}),
			&models.RunAction{
				Path: "/tmp/lifecycle/builder", User: "vcap", LogSource: "STG",
				Args: []string{
					"-buildpackOrder=" + s.BuildpackKey, "-skipCertVerify=false", "-skipDetect=false",
					"-buildDir=/tmp/app", "-outputDroplet=/tmp/droplet", "-outputMetadata=/tmp/result.json",
					"-outputBuildArtifactsCache=/tmp/output-cache", "-buildpacksDir=/tmp/buildpacks",
					"-buildArtifactsCacheDir=/tmp/cache",
				},
				ResourceLimits: &models.ResourceLimits{},
				Env:            env,
			},
			models.EmitProgressFor(models.Parallel(
				&models.UploadAction{Artifact: "droplet", From: "/tmp/droplet", To: s.DropletUploadURL, User: "vcap"},
				&models.UploadAction{Artifact: "build artifacts cache", From: "/tmp/output-cache", To: s.CacheUploadURL, User: "vcap"},
			), "Uploading droplet, build artifacts cache...", "Uploading complete", "Uploading failed"),
		), 15*time.Minute)),
	}
}

// BuildpackRunTask is a `cf run-task` of a buildpack app as current CC's
// TaskRecipeBuilder and buildpack TaskActionBuilder build it (cloud_
// controller_ng lib/cloud_controller/diego/buildpack/task_action_builder.rb,
// without declarative asset downloads): domain cf-tasks, root_fs
// preloaded:<stack>, the lifecycle as a cached dependency in
// /tmp/lifecycle, then serially the droplet downloaded to "." (the vcap
// user's home) with its sha256 and the launcher running the command in
// "app" with log source APP/TASK/<name>.
func BuildpackRunTask(t Task, stack, dropletURL, dropletSHA256, command string) *models.TaskDefinition {
	def := DockerRunTask(t, "", command)
	def.RootFs = "preloaded:" + stack
	def.CachedDependencies = []*models.CachedDependency{{
		From: t.LifecycleURL, To: "/tmp/lifecycle", CacheKey: "buildpack-" + stack + "-lifecycle",
	}}
	run := def.Action.RunAction
	run.User, run.Args = "vcap", []string{"app", command, ""}
	def.Action = models.WrapAction(models.Serial(
		&models.DownloadAction{From: dropletURL, To: ".", CacheKey: "", User: "vcap",
			ChecksumAlgorithm: "sha256", ChecksumValue: dropletSHA256},
		run,
	))
	return def
}
