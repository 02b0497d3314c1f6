package models

import (
	"encoding/json"
	"strings"
)

// StagingRequest is the body of POST /stage/{staging_guid}.
type StagingRequest struct {
	AppGUID            string                `json:"app_guid"`
	AppName            string                `json:"app_name"`
	OrgGUID            string                `json:"org_guid"`
	OrgName            string                `json:"org_name"`
	SpaceGUID          string                `json:"space_guid"`
	SpaceName          string                `json:"space_name"`
	Namespace          string                `json:"namespace"`
	CompletionCallback string                `json:"completion_callback"`
	Environment        []EnvironmentVariable `json:"environment"`
	Lifecycle          StagingLifecycle      `json:"lifecycle"`
	// LifecycleData is the buildpack lifecycle as CCs before 2020-02 sent
	// it (cloud_controller_ng lib/cloud_controller/opi/stager_client.rb
	// before 2c20558be8, "Stage docker apps in Eirini"): droplet_upload_uri,
	// app_bits_download_uri and buildpacks. Only read when Lifecycle is empty.
	LifecycleData *StagingBuildpackLifecycle `json:"lifecycle_data,omitempty"`
	MemoryMB      int64                      `json:"memory_mb"`
	DiskMB        int64                      `json:"disk_mb"`
	CPUWeight     int64                      `json:"cpu_weight"`
	// IsolationSegment is where the staging runs ("": the shared nodes).
	// CC's OPI body carries none, so Iris fills it from the app's LRPs
	// (k8s.IsolationSegmentOfApp).
	IsolationSegment string `json:"-"`
}

// StagingLifecycle carries exactly one staging lifecycle.
type StagingLifecycle struct {
	DockerLifecycle    *StagingDockerLifecycle    `json:"docker_lifecycle,omitempty"`
	BuildpackLifecycle *StagingBuildpackLifecycle `json:"buildpack_lifecycle,omitempty"`
}

// StagingDockerLifecycle names the image whose config becomes the droplet.
type StagingDockerLifecycle struct {
	Image            string `json:"image"`
	RegistryUsername string `json:"registry_username"`
	RegistryPassword string `json:"registry_password"`
}

// StagingBuildpackLifecycle is what the buildpack stager downloads, runs and uploads.
type StagingBuildpackLifecycle struct {
	AppBitsDownloadURI              string      `json:"app_bits_download_uri"`
	DropletUploadURI                string      `json:"droplet_upload_uri"`
	Buildpacks                      []Buildpack `json:"buildpacks"`
	BuildpackCacheDownloadURI       string      `json:"buildpack_cache_download_uri"`
	BuildpackCacheUploadURI         string      `json:"buildpack_cache_upload_uri"`
	BuildpackCacheChecksum          string      `json:"buildpack_cache_checksum"`
	BuildpackCacheChecksumAlgorithm string      `json:"buildpack_cache_checksum_algorithm"`
}

// Buildpack is one buildpack to try, in order.
type Buildpack struct {
	Name       string `json:"name"`
	Key        string `json:"key"`
	URL        string `json:"url"`
	SHA256     string `json:"sha256,omitempty"`
	SkipDetect bool   `json:"skip_detect"`
}

// StagingCompletedRequest is what the uploader PUTs to
// /stage/{staging_guid}/completed: the staging's outcome, Result being CC's
// staging result as a JSON string.
type StagingCompletedRequest struct {
	TaskGUID      string `json:"task_guid"`
	Failed        bool   `json:"failed"`
	FailureReason string `json:"failure_reason"`
	Result        string `json:"result"`
	Annotation    string `json:"annotation,omitempty"`
}

// StagingCallback is the body Iris posts to CC's staging completion callback:
// either a result or an error.
type StagingCallback struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *StagingError   `json:"error,omitempty"`
}

// StagingError is CC's staging failure; ID is one of CC's error ids
// (StagingError, InsufficientResources, NoCompatibleCell, ...).
type StagingError struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

// CC's staging error ids (cloud_controller_ng
// lib/cloud_controller/diego/failure_reason_sanitizer.rb, CCMessages).
const (
	StagingErrorID          = "StagingError"
	InsufficientResourcesID = "InsufficientResources"
	NoCompatibleCellID      = "NoCompatibleCell"
	NoAppDetectedID         = "NoAppDetectedError"
	BuildpackCompileFailed  = "BuildpackCompileFailed"
	BuildpackReleaseFailed  = "BuildpackReleaseFailed"
)

// StagingFailure classifies a staging's failure reason as CC's
// FailureReasonSanitizer classifies Diego's: a reason ending in the
// buildpack builder's exit code 222, 223 or 224 is NoAppDetectedError,
// BuildpackCompileFailed or BuildpackReleaseFailed ("staging failed", as
// CC words them); one starting with Diego's "insufficient resources" or
// "found no compatible cell" is InsufficientResources or NoCompatibleCell;
// anything else a StagingError with the reason. Iris posts the classified
// form ({"error":{"id","message"}}), which CC takes as it is.
func StagingFailure(reason string) *StagingError {
	switch {
	case strings.HasSuffix(reason, "222"):
		return &StagingError{ID: NoAppDetectedID, Message: "staging failed"}
	case strings.HasSuffix(reason, "223"):
		return &StagingError{ID: BuildpackCompileFailed, Message: "staging failed"}
	case strings.HasSuffix(reason, "224"):
		return &StagingError{ID: BuildpackReleaseFailed, Message: "staging failed"}
	case strings.HasPrefix(reason, "insufficient resources"):
		return &StagingError{ID: InsufficientResourcesID, Message: reason}
	case strings.HasPrefix(reason, "found no compatible cell"):
		return &StagingError{ID: NoCompatibleCellID, Message: reason}
	}
	return &StagingError{ID: StagingErrorID, Message: reason}
}
