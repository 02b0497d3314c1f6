package k8s_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/iris-cf/iris/k8s"
)

// Recording a recipe task's outcome suspends its Job only where the pod
// would not finish by itself: on a real kubelet the upload sidecar is
// still running when the task's container has exited, and a suspended
// Job deletes that pod instead of completing.
var _ = Describe("RecordRecipeTaskOutcome", func() {
	const ns = "cf-workloads"

	record := func(pod *corev1.Pod) *batchv1.Job {
		GinkgoHelper()
		ctx := context.Background()
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bbs-task-1"}}
		clientset := fake.NewClientset(job)
		status := k8s.RecipeTaskStatusOf(job, []*corev1.Pod{pod}, 42)
		Expect(status.Outcome).NotTo(BeNil())
		Expect(k8s.RecordRecipeTaskOutcome(ctx, clientset, job, status.Outcome, "2026-12-02T01:00:00Z")).To(Succeed())
		recorded, err := clientset.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(recorded.Annotations).To(HaveKey(k8s.AnnotationRecipeTaskOutcome))
		return recorded
	}

	It("leaves the Job running when the task's container exited while the upload sidecar still runs", func() {
		job := record(&corev1.Pod{
			Spec: corev1.PodSpec{NodeName: "node-1"},
			Status: corev1.PodStatus{
				Phase: corev1.PodRunning,
				InitContainerStatuses: []corev1.ContainerStatus{{Name: k8s.UploadProxyContainerName,
					State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
				ContainerStatuses: []corev1.ContainerStatus{{Name: k8s.TaskContainerName,
					State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}},
			},
		})
		Expect(job.Spec.Suspend).To(BeNil(), "the kubelet stops the sidecar and the Job completes")
	})

	It("suspends the Job of a pod the scheduler cannot place", func() {
		job := record(&corev1.Pod{
			Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
				Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
				Message: "0/3 nodes are available: 3 Insufficient memory.",
			}}},
		})
		Expect(job.Spec.Suspend).To(HaveValue(BeTrue()), "it must not run after its task was reported failed")
	})
})
