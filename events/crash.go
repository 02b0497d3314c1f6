// Package events reports app instance crashes to Cloud Controller, from pod
// state, exactly as Diego's tps-watcher did.
package events

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// AnnotationLastReportedCrash holds the key of the last crash reported for a
// pod. Kept on the pod, it survives Iris restarts and leader changes, so a
// crash is neither dropped nor reported twice.
const AnnotationLastReportedCrash = "cloudfoundry.org/last-reported-crash"

// Crash is one crash of an instance and the key that identifies it.
type Crash struct {
	Key         string                   `json:"key"`
	ProcessGUID string                   `json:"process_guid"`
	Request     models.AppCrashedRequest `json:"request"`
}

// CrashFromPod returns the pod's most recent crash, if it shows one. Every
// exit of an app container counts (an LRP must never exit), as do containers
// that cannot start. A pod being deleted is being stopped on purpose: its
// exits are not crashes.
func CrashFromPod(pod *corev1.Pod) (Crash, bool) {
	if pod.DeletionTimestamp != nil {
		return Crash{}, false
	}
	status := k8s.AppContainerStatus(pod)
	if status == nil {
		return Crash{}, false
	}
	index, err := strconv.Atoi(pod.Labels[k8s.PodIndexLabel])
	if err != nil {
		return Crash{}, false
	}
	crash := Crash{
		ProcessGUID: pod.Annotations[k8s.AnnotationProcessGUID],
		Request: models.AppCrashedRequest{
			Instance: string(pod.UID),
			Index:    index,
			CellID:   pod.Spec.NodeName,
			Reason:   "CRASHED",
		},
	}
	source := k8s.AppSourceType(pod)

	// The current termination is the newest; after the restart it moves to
	// LastTerminationState with the same container id, so the key stays.
	terminated, count := status.State.Terminated, int(status.RestartCount)+1
	if terminated == nil {
		terminated, count = status.LastTerminationState.Terminated, int(status.RestartCount)
	}
	if terminated != nil {
		crash.Key = terminationKey(pod, terminated)
		crash.Request.ExitStatus = int(terminated.ExitCode)
		crash.Request.ExitDescription = exitDescription(source, terminated)
		crash.Request.CrashCount = count
		crash.Request.CrashTimestamp = terminated.FinishedAt.UnixNano()
		if crash.Request.CrashTimestamp <= 0 {
			crash.Request.CrashTimestamp = pod.CreationTimestamp.UnixNano()
		}
		// A newer start failure still wins below: it is what the user sees now.
		if w := status.State.Waiting; w == nil || !startFailure(w.Reason) {
			return crash, true
		}
	}

	if w := status.State.Waiting; w != nil && startFailure(w.Reason) {
		crash.Key = fmt.Sprintf("%s/start-failure/%s/%d", pod.UID, failureKind(w.Reason), status.RestartCount)
		crash.Request.ExitStatus = 0
		crash.Request.ExitDescription = startFailureDescription(source, w)
		crash.Request.CrashCount = int(status.RestartCount) + 1
		crash.Request.CrashTimestamp = latestTransition(pod)
		return crash, true
	}
	return Crash{}, false
}

// terminationKey identifies one termination: the dead container's id, or
// when the runtime gave none, its finish time.
func terminationKey(pod *corev1.Pod, t *corev1.ContainerStateTerminated) string {
	if t.ContainerID != "" {
		return fmt.Sprintf("%s/exit/%s", pod.UID, t.ContainerID)
	}
	return fmt.Sprintf("%s/exit/%d", pod.UID, t.FinishedAt.UnixNano())
}

func exitDescription(source string, t *corev1.ContainerStateTerminated) string {
	desc := fmt.Sprintf("%s: Exited with status %d", source, t.ExitCode)
	if t.Reason == "OOMKilled" {
		desc += " (out of memory)"
	}
	return desc
}

// startFailure reasons keep a container from ever running.
func startFailure(reason string) bool {
	switch reason {
	case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
		"CreateContainerConfigError", "CreateContainerError", "RunContainerError":
		return true
	}
	return false
}

// failureKind folds reasons the kubelet alternates between (ErrImagePull and
// ImagePullBackOff) into one, so one failure is one report.
func failureKind(reason string) string {
	switch reason {
	case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull":
		return "image-pull"
	}
	return reason
}

func startFailureDescription(source string, w *corev1.ContainerStateWaiting) string {
	what := "failed to start"
	if failureKind(w.Reason) == "image-pull" {
		what = "failed to pull image"
	}
	desc := fmt.Sprintf("%s: %s (%s)", source, what, w.Reason)
	if w.Message != "" {
		desc += ": " + w.Message
	}
	return desc
}

func latestTransition(pod *corev1.Pod) int64 {
	var latest int64
	for _, c := range pod.Status.Conditions {
		if ts := c.LastTransitionTime.UnixNano(); ts > latest {
			latest = ts
		}
	}
	if latest <= 0 {
		latest = pod.CreationTimestamp.UnixNano()
	}
	return latest
}
