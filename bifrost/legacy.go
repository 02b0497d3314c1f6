package bifrost

import (
	"encoding/json"

	"github.com/iris-cf/iris/models"
)

// Older Cloud Controllers send older bodies; Iris takes them as Eirini did
// and turns them into today's shape before validating, so everything after
// the decode sees one shape. The CC sources are cloud_controller_ng's
// lib/cloud_controller/opi/{apps_client,stager_client}.rb at the commits
// named below.

// vcapApplication is the part of VCAP_APPLICATION Iris reads when an older
// body lacks a field: CC builds it with VCAP::VarsBuilder for every app,
// staging and task environment, in every era.
type vcapApplication struct {
	ApplicationName  string `json:"application_name"`
	ApplicationID    string `json:"application_id"`
	SpaceName        string `json:"space_name"`
	SpaceID          string `json:"space_id"`
	OrganizationName string `json:"organization_name"`
	OrganizationID   string `json:"organization_id"`
	ProcessType      string `json:"process_type"`
	Limits           struct {
		Disk int64 `json:"disk"`
	} `json:"limits"`
}

// parseVCAPApplication reads VCAP_APPLICATION; one Iris cannot read is the
// app's business, not a reason to refuse the request, and reads as empty.
func parseVCAPApplication(value string) vcapApplication {
	var vcap vcapApplication
	if json.Unmarshal([]byte(value), &vcap) != nil {
		return vcapApplication{}
	}
	return vcap
}

// isLegacyDesire reports a desire body of a CC from before 2019-10: no
// lifecycle, the droplet in flat fields (apps_client.rb at 741e5674e1, the
// parent of 9b4539cb42 "Revert "Revert "Add docker support in Eirini""").
func isLegacyDesire(lrp *models.DesireLRPRequest) bool {
	noLifecycle := lrp.Lifecycle.DockerLifecycle == nil && lrp.Lifecycle.BuildpackLifecycle == nil
	return noLifecycle && (lrp.DropletGUID != "" || lrp.DropletHash != "" || lrp.DockerImage != "")
}

// upgradeDesire turns a pre-2019-10 desire body into today's shape:
//   - the flat droplet becomes the lifecycle: droplet_guid and droplet_hash
//     a buildpack droplet with start_command (CC sends docker_image null for
//     those), else docker_image an image run with start_command through a
//     shell, as later CCs send a docker process's command;
//   - that body has no disk_mb, process_type, app, space or org fields
//     (added by 407dd58502, 2019-10-16): they come from VCAP_APPLICATION,
//     whose limits.disk CC sets to the process's disk quota.
//
// Bodies in today's shape are left alone.
func upgradeDesire(lrp *models.DesireLRPRequest) {
	if !isLegacyDesire(lrp) {
		return
	}
	if lrp.DropletGUID != "" || lrp.DropletHash != "" {
		lrp.Lifecycle.BuildpackLifecycle = &models.BuildpackLifecycle{
			DropletGUID: lrp.DropletGUID, DropletHash: lrp.DropletHash, StartCommand: lrp.StartCommand,
		}
	} else {
		command := []string{}
		if lrp.StartCommand != "" {
			command = []string{"/bin/sh", "-c", lrp.StartCommand}
		}
		lrp.Lifecycle.DockerLifecycle = &models.DockerLifecycle{Image: lrp.DockerImage, Command: command}
	}
	vcap := parseVCAPApplication(lrp.Environment["VCAP_APPLICATION"])
	fill(&lrp.AppName, vcap.ApplicationName)
	fill(&lrp.AppGUID, vcap.ApplicationID)
	fill(&lrp.SpaceName, vcap.SpaceName)
	fill(&lrp.SpaceGUID, vcap.SpaceID)
	fill(&lrp.OrganizationName, vcap.OrganizationName)
	fill(&lrp.OrganizationGUID, vcap.OrganizationID)
	fill(&lrp.ProcessType, vcap.ProcessType)
	if lrp.DiskMB == 0 {
		lrp.DiskMB = vcap.Limits.Disk
	}
}

// upgradeStaging turns a pre-2020-02 staging body into today's shape:
//   - lifecycle_data is the buildpack lifecycle (stager_client.rb before
//     2c20558be8; docker stagings never reached OPI then, CC completed them
//     itself);
//   - bodies from before 2020-01 have no memory_mb and disk_mb (added by
//     069469178d, 2020-01-07) and no app_name, org or space (9d49a8a090,
//     2020-01-17): memory comes from the staging environment's
//     MEMORY_LIMIT ("<staging memory>m") and disk from its
//     VCAP_APPLICATION limits.disk (the staging disk), both set by CC's
//     StagingEnvironmentBuilder, and the names from VCAP_APPLICATION.
//
// A body with both lifecycle and lifecycle_data is refused: no CC sends it.
func upgradeStaging(req *models.StagingRequest) error {
	if req.LifecycleData == nil {
		return nil
	}
	if req.Lifecycle.DockerLifecycle != nil || req.Lifecycle.BuildpackLifecycle != nil {
		return models.Invalidf("lifecycle and lifecycle_data: one or the other (CCs before 2020-02 send lifecycle_data, later ones lifecycle), not both")
	}
	req.Lifecycle.BuildpackLifecycle = req.LifecycleData
	req.LifecycleData = nil
	vcapValue, _ := lookupEnv(req.Environment, "VCAP_APPLICATION")
	vcap := parseVCAPApplication(vcapValue)
	fill(&req.AppName, vcap.ApplicationName)
	fill(&req.AppGUID, vcap.ApplicationID)
	fill(&req.SpaceName, vcap.SpaceName)
	fill(&req.SpaceGUID, vcap.SpaceID)
	fill(&req.OrgName, vcap.OrganizationName)
	fill(&req.OrgGUID, vcap.OrganizationID)
	if req.MemoryMB == 0 {
		if value, ok := lookupEnv(req.Environment, "MEMORY_LIMIT"); ok {
			mb, err := parseMemoryLimit(value)
			if err != nil {
				return err
			}
			req.MemoryMB = mb
		}
	}
	if req.DiskMB == 0 {
		req.DiskMB = vcap.Limits.Disk
	}
	return nil
}

// fill sets an empty field to value.
func fill(field *string, value string) {
	if *field == "" {
		*field = value
	}
}
