package k8s

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/iris-cf/iris/models"
)

// crashedWaitingReason reports whether the kubelet will not get a container
// waiting for this reason running without a change: CC sees such instances
// as crashed, as Diego reports an instance whose container could not be made.
func crashedWaitingReason(reason string) bool {
	switch reason {
	case "CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
		"CreateContainerConfigError", "CreateContainerError", "RunContainerError":
		return true
	}
	return false
}

// InstanceFromPod derives the Diego-style state of one instance:
//   - RUNNING: the app container runs and is ready;
//   - CLAIMED: placed on a node and starting (not yet running or not ready);
//   - UNCLAIMED: not placed yet, with a placement error when the scheduler
//     found no room;
//   - CRASHED: the container cannot run or has exited;
//   - UNKNOWN: the node stopped reporting.
func InstanceFromPod(pod *corev1.Pod, index int) *models.Instance {
	inst := &models.Instance{Index: index, Since: since(pod)}
	inst.State, inst.PlacementError = podState(pod)
	return inst
}

func podState(pod *corev1.Pod) (string, string) {
	switch pod.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
		// An app process must never exit; either way the instance is gone.
		return models.InstanceCrashed, ""
	case corev1.PodUnknown:
		return models.InstanceUnknown, ""
	}

	if scheduled := PodCondition(pod, corev1.PodScheduled); scheduled == nil || scheduled.Status != corev1.ConditionTrue {
		if scheduled != nil && scheduled.Reason == corev1.PodReasonUnschedulable {
			return models.InstanceUnclaimed, PlacementError(scheduled.Message)
		}
		return models.InstanceUnclaimed, ""
	}

	status := AppContainerStatus(pod)
	if status == nil {
		return models.InstanceClaimed, ""
	}
	if w := status.State.Waiting; w != nil && crashedWaitingReason(w.Reason) {
		return models.InstanceCrashed, ""
	}
	if status.State.Terminated != nil {
		return models.InstanceCrashed, ""
	}
	if status.State.Running != nil && status.Ready {
		return models.InstanceRunning, ""
	}
	return models.InstanceClaimed, ""
}

// PlacementError turns the scheduler's message ("0/3 nodes are available: 3
// Insufficient memory. ...") into Diego's wording, which CC shows users as
// the instance's details and which its staging failure ids are matched on
// (failure_reason_sanitizer.rb: "insufficient resources" →
// InsufficientResources, "found no compatible cell" → NoCompatibleCell):
// the auctioneer's "insufficient resources: " and its problems sorted and
// joined with ", " (Kubernetes adds cpu, which Diego does not place by).
func PlacementError(message string) string {
	var problems []string
	for _, r := range []struct{ needle, problem string }{
		{"Insufficient cpu", "cpu"},
		{"Insufficient ephemeral-storage", "disk"},
		{"Insufficient memory", "memory"},
	} {
		if strings.Contains(message, r.needle) {
			problems = append(problems, r.problem)
		}
	}
	if len(problems) > 0 {
		return InsufficientResourcesMessage + ": " + strings.Join(problems, ", ")
	}
	return NoCompatibleCellMessage
}

// Diego's placement error wording (rep and auctioneer).
const (
	InsufficientResourcesMessage = "insufficient resources"
	NoCompatibleCellMessage      = "found no compatible cell"
)

// PodCondition returns the pod's condition of type t, or nil.
func PodCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// AppContainerStatus returns the status of an app pod's app container, or nil.
func AppContainerStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == AppContainerName {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// since is when the instance entered its current incarnation, in Unix
// nanoseconds: the container's start if it runs, else the pod's creation.
func since(pod *corev1.Pod) int64 {
	if status := AppContainerStatus(pod); status != nil && status.State.Running != nil {
		return status.State.Running.StartedAt.UnixNano()
	}
	return pod.CreationTimestamp.UnixNano()
}

// unclaimedSince is the since of an instance that has no pod yet (0 would
// read as 1970 in CC): when it was asked for, which is at latest the last
// change of the StatefulSet's spec (a scale, a new desire; its managed
// fields' newest time outside the status), else the StatefulSet's creation.
func unclaimedSince(sts *appsv1.StatefulSet) int64 {
	since := sts.CreationTimestamp.Time
	for _, f := range sts.ManagedFields {
		if f.Time != nil && f.Subresource == "" && f.Time.After(since) {
			since = f.Time.Time
		}
	}
	if since.IsZero() {
		return 0
	}
	return since.UnixNano()
}

// ContainerStarted reports whether the container ever ran (it runs, ran
// and ended, or ran before its last restart).
func ContainerStarted(status corev1.ContainerStatus) bool {
	return status.State.Running != nil || status.State.Terminated != nil || status.LastTerminationState.Terminated != nil
}

// AppSourceType is Loggregator's source type of an app pod's output,
// APP/PROC/<PROCESS TYPE> (web when unlabelled).
func AppSourceType(pod *corev1.Pod) string {
	processType := pod.Labels[LabelProcessType]
	if processType == "" {
		processType = "web"
	}
	return "APP/PROC/" + strings.ToUpper(processType)
}
