package k8s

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/iris-cf/iris/workload"
)

// ActualInstance reads one app pod as the front-neutral instance: its
// index, incarnation (pod uid), cell (node), address (pod IP), state as
// InstanceFromPod derives it, crash count (container restarts) and the
// last crash's reason, and routability (pod Ready). ok is false for a pod
// without an index label.
func ActualInstance(pod *corev1.Pod) (inst workload.Instance, ok bool) {
	index, err := strconv.Atoi(pod.Labels[PodIndexLabel])
	if err != nil {
		return workload.Instance{}, false
	}
	// As InstanceFromPod reads it, without its allocation: CC asks for the
	// instances of a thousand LRPs at once.
	state, placementError := podState(pod)
	inst = workload.Instance{
		ProcessGUID:    pod.Annotations[AnnotationProcessGUID],
		Index:          int32(index),
		InstanceGUID:   string(pod.UID),
		CellID:         pod.Spec.NodeName,
		Address:        pod.Status.PodIP,
		State:          state,
		Since:          since(pod),
		PlacementError: placementError,
	}
	if c := PodCondition(pod, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue && pod.DeletionTimestamp == nil {
		inst.Routable = true
	}
	for _, c := range pod.Spec.Containers {
		if c.Name != AppContainerName {
			continue
		}
		for _, p := range c.Ports {
			inst.Ports = append(inst.Ports, p.ContainerPort)
		}
	}
	if status := AppContainerStatus(pod); status != nil {
		inst.CrashCount = status.RestartCount
		last := status.LastTerminationState.Terminated
		if t := status.State.Terminated; t != nil {
			last = t
		}
		if last != nil {
			inst.CrashReason = fmt.Sprintf("%s: Exited with status %d", AppSourceType(pod), last.ExitCode)
			if last.Reason == "OOMKilled" {
				inst.CrashReason += " (out of memory)"
			}
			// A recipe pod's container is the runner, whose exit status is
			// its own: its report holds Diego's reason for the app's exit.
			if reason, ok := RunnerFailureReason(last); ok {
				inst.CrashReason = reason
			}
		}
	}
	return inst, true
}
