package k8s_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

func pod(phase corev1.PodPhase, scheduled *corev1.PodCondition, status *corev1.ContainerStatus) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(time.Unix(100, 0))},
		Status:     corev1.PodStatus{Phase: phase},
	}
	if scheduled != nil {
		p.Status.Conditions = []corev1.PodCondition{*scheduled}
	}
	if status != nil {
		status.Name = k8s.AppContainerName
		p.Status.ContainerStatuses = []corev1.ContainerStatus{*status}
	}
	return p
}

var (
	isScheduled = &corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}
	startedAt   = metav1.NewTime(time.Unix(200, 0))
)

func unschedulable(message string) *corev1.PodCondition {
	return &corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: message}
}

func waiting(reason string) *corev1.ContainerStatus {
	return &corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
}

var _ = Describe("InstanceFromPod", func() {
	DescribeTable("derives Diego's state",
		func(p *corev1.Pod, state, placementError string) {
			inst := k8s.InstanceFromPod(p, 4)
			Expect(inst.Index).To(Equal(4))
			Expect(inst.State).To(Equal(state))
			Expect(inst.PlacementError).To(Equal(placementError))
		},
		Entry("running and ready", pod(corev1.PodRunning, isScheduled, &corev1.ContainerStatus{Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}}), models.InstanceRunning, ""),
		Entry("running, not ready yet", pod(corev1.PodRunning, isScheduled, &corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}), models.InstanceClaimed, ""),
		Entry("scheduled, container creating", pod(corev1.PodPending, isScheduled, waiting("ContainerCreating")), models.InstanceClaimed, ""),
		Entry("scheduled, no status yet", pod(corev1.PodPending, isScheduled, nil), models.InstanceClaimed, ""),
		Entry("not scheduled yet", pod(corev1.PodPending, nil, nil), models.InstanceUnclaimed, ""),
		Entry("no room for memory", pod(corev1.PodPending, unschedulable("0/3 nodes are available: 3 Insufficient memory. preemption: ..."), nil), models.InstanceUnclaimed, "insufficient resources: memory"),
		Entry("no room for cpu", pod(corev1.PodPending, unschedulable("0/3 nodes are available: 3 Insufficient cpu."), nil), models.InstanceUnclaimed, "insufficient resources: cpu"),
		Entry("no room for memory or disk, in Diego's sorted list", pod(corev1.PodPending, unschedulable("0/3 nodes are available: 2 Insufficient memory, 3 Insufficient ephemeral-storage."), nil), models.InstanceUnclaimed, "insufficient resources: disk, memory"),
		Entry("no matching node", pod(corev1.PodPending, unschedulable("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."), nil), models.InstanceUnclaimed, "found no compatible cell"),
		Entry("crash loop", pod(corev1.PodRunning, isScheduled, waiting("CrashLoopBackOff")), models.InstanceCrashed, ""),
		Entry("image pull failure", pod(corev1.PodPending, isScheduled, waiting("ImagePullBackOff")), models.InstanceCrashed, ""),
		Entry("bad container config", pod(corev1.PodPending, isScheduled, waiting("CreateContainerConfigError")), models.InstanceCrashed, ""),
		Entry("exited", pod(corev1.PodRunning, isScheduled, &corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}), models.InstanceCrashed, ""),
		Entry("pod failed", pod(corev1.PodFailed, isScheduled, nil), models.InstanceCrashed, ""),
		Entry("node lost", pod(corev1.PodUnknown, isScheduled, nil), models.InstanceUnknown, ""),
	)

	It("reports since as the container start, in nanoseconds", func() {
		p := pod(corev1.PodRunning, isScheduled, &corev1.ContainerStatus{Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}})
		Expect(k8s.InstanceFromPod(p, 0).Since).To(Equal(int64(200_000_000_000)))
	})

	It("falls back to the pod's creation for since", func() {
		Expect(k8s.InstanceFromPod(pod(corev1.PodPending, nil, nil), 0).Since).To(Equal(int64(100_000_000_000)))
	})
})

var _ = Describe("the since of an instance without a pod", func() {
	created := metav1.NewTime(time.Unix(100, 0))
	scaled := metav1.NewTime(time.Unix(300, 0))
	statusAt := metav1.NewTime(time.Unix(900, 0))

	It("is the StatefulSet's creation when its spec never changed, not 1970", func() {
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: created}}
		Expect(k8s.UnclaimedSince(sts)).To(Equal(int64(100_000_000_000)))
	})

	It("is the last change of its spec (a scale), not of its status", func() {
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: created, ManagedFields: []metav1.ManagedFieldsEntry{
			{Manager: "iris", Operation: metav1.ManagedFieldsOperationApply, Time: &scaled},
			{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "status", Time: &statusAt},
		}}}
		Expect(k8s.UnclaimedSince(sts)).To(Equal(int64(300_000_000_000)))
	})
})
