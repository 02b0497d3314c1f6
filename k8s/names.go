package k8s

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Label and annotation keys Iris puts on the objects it owns. Everything lives
// under cloudfoundry.org/ so operators can select CF workloads with one prefix.
const (
	LabelGUID        = "cloudfoundry.org/guid"
	LabelVersion     = "cloudfoundry.org/version"
	LabelAppGUID     = "cloudfoundry.org/app_guid"
	LabelProcessType = "cloudfoundry.org/process_type"
	LabelSourceType  = "cloudfoundry.org/source_type"
	LabelOrgGUID     = "cloudfoundry.org/org_guid"
	LabelSpaceGUID   = "cloudfoundry.org/space_guid"

	LabelTaskGUID    = "cloudfoundry.org/task_guid"
	LabelStagingGUID = "cloudfoundry.org/staging_guid"

	AnnotationProcessGUID = "cloudfoundry.org/process_guid"
	// AnnotationBBSDomain marks an LRP desired through the BBS front (its
	// Diego domain), on the StatefulSet and its pods.
	AnnotationBBSDomain   = "cloudfoundry.org/bbs_domain"
	AnnotationAppName     = "cloudfoundry.org/application_name"
	AnnotationOrgName     = "cloudfoundry.org/org_name"
	AnnotationSpaceName   = "cloudfoundry.org/space_name"
	AnnotationLastUpdated = "cloudfoundry.org/last_updated"
	AnnotationRoutes      = "cloudfoundry.org/routes"
	AnnotationPorts       = "cloudfoundry.org/ports"
	// AnnotationIsolationSegment is the LRP's placement tag as CC sent it;
	// the route emitter puts it in registrations for isolated routers.
	AnnotationIsolationSegment = "cloudfoundry.org/isolation_segment"
	AnnotationTaskName         = "cloudfoundry.org/task_name"
	// AnnotationLogRateLimit is an app instance's log rate limit in bytes
	// per second (absent: unlimited), on the pod: the log agent on its
	// node enforces it and the metrics reporter reports it.
	AnnotationLogRateLimit = "cloudfoundry.org/log_rate_limit"
	// AnnotationCompletionCallback is CC's callback URL for a task; kept on
	// the Job so a restarted Iris still knows where to report.
	AnnotationCompletionCallback = "cloudfoundry.org/completion_callback"
	// AnnotationCompletionCallbackSecret names the Secret (key "url") that
	// holds the callback when it carries credentials: CC puts its internal
	// API user and password into a staging's callback URL, so the
	// annotation then shows it without them (CompletionCallbackURL).
	AnnotationCompletionCallbackSecret = "cloudfoundry.org/completion_callback_secret"
	// AnnotationStagingCompletionSecret names the Secret (keys "token" and,
	// when Iris's server is verified with a CA, "ca.crt") a buildpack
	// staging's uploader proves itself with when it reports to Iris.
	AnnotationStagingCompletionSecret = "cloudfoundry.org/staging_completion_secret"
	// AnnotationCancelled marks a task CC cancelled; the Job stays (suspended)
	// until the cancellation is reported.
	AnnotationCancelled = "cloudfoundry.org/cancelled"
	// AnnotationCallbackDelivered records when CC accepted the task's
	// completion callback (RFC 3339); the Job is deleted a TTL later.
	AnnotationCallbackDelivered = "cloudfoundry.org/callback_delivered"
	// AnnotationStagingLifecycle is "docker" or "buildpack".
	AnnotationStagingLifecycle = "cloudfoundry.org/staging_lifecycle"
	// AnnotationStagingImage is the image a docker staging reads.
	AnnotationStagingImage = "cloudfoundry.org/staging_image"
	// AnnotationStagingResult holds the callback body the uploader reported,
	// until CC has accepted it.
	AnnotationStagingResult = "cloudfoundry.org/staging_result"

	// SourceTypeApp marks long-running app instances (Loggregator's APP source type).
	SourceTypeApp = "APP"
	// SourceTypeTask marks task Jobs and pods.
	SourceTypeTask = "TASK"
	// SourceTypeStaging marks staging Jobs and pods.
	SourceTypeStaging = "STG"
	// TaskContainerName is the name of the container that runs a task.
	TaskContainerName = "task"

	// PodIndexLabel is set by the StatefulSet controller on every pod (GA since
	// Kubernetes 1.32); CF_INSTANCE_INDEX reads it through the downward API.
	PodIndexLabel = "apps.kubernetes.io/pod-index"

	// AppContainerName is the name of the container that runs the app.
	AppContainerName = "app"
)

const (
	maxNamePrefix = 40
	nameHashChars = 10
)

// StatefulSetName derives a deterministic, DNS-1123 safe name from the app and
// space names (for humans reading kubectl output) and a hash of the process
// guid (for uniqueness). It stays at 51 characters at most: the StatefulSet
// controller appends "-<10-char hash>" for the controller-revision-hash label,
// which must fit in a 63-character label value.
func StatefulSetName(appName, spaceName, processGUID string) string {
	prefix := sanitizeName(appName + "-" + spaceName)
	if len(prefix) > maxNamePrefix {
		prefix = strings.TrimRight(prefix[:maxNamePrefix], "-")
	}
	if prefix == "" {
		prefix = "app"
	}
	sum := sha256.Sum256([]byte(processGUID))
	return prefix + "-" + hex.EncodeToString(sum[:])[:nameHashChars]
}

// sanitizeName lowercases s and turns every run of characters outside
// [a-z0-9] into a single '-', trimming dashes at both ends.
func sanitizeName(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimRight(b.String(), "-")
}

// sanitizeLabelValue makes s a valid label value: at most 63 characters of
// [A-Za-z0-9._-], starting and ending alphanumeric.
func sanitizeLabelValue(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'), r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	v := b.String()
	if len(v) > 63 {
		v = v[:63]
	}
	return strings.Trim(v, "._-")
}
