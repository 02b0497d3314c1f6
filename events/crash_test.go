package events_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/events"
	"github.com/iris-cf/iris/k8s"
)

func appPod(status corev1.ContainerStatus) *corev1.Pod {
	status.Name = k8s.AppContainerName
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "dora-dev-abc-1", UID: "pod-uid",
			Labels:      map[string]string{k8s.PodIndexLabel: "1", k8s.LabelProcessType: "worker"},
			Annotations: map[string]string{k8s.AnnotationProcessGUID: "guid-v1"},
		},
		Spec:   corev1.PodSpec{NodeName: "node-a"},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{status}},
	}
}

var finished = metav1.NewTime(time.Unix(1700000000, 5))

func exited(code int32, reason, id string) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, ContainerID: id, FinishedAt: finished}
}

var _ = Describe("CrashFromPod", func() {
	It("reports a container that exited and has not restarted yet", func() {
		crash, ok := events.CrashFromPod(appPod(corev1.ContainerStatus{
			RestartCount: 2,
			State:        corev1.ContainerState{Terminated: exited(1, "Error", "containerd://c3")},
		}))
		Expect(ok).To(BeTrue())
		Expect(crash.ProcessGUID).To(Equal("guid-v1"))
		Expect(crash.Request.Instance).To(Equal("pod-uid"))
		Expect(crash.Request.Index).To(Equal(1))
		Expect(crash.Request.CellID).To(Equal("node-a"))
		Expect(crash.Request.Reason).To(Equal("CRASHED"))
		Expect(crash.Request.ExitStatus).To(Equal(1))
		Expect(crash.Request.ExitDescription).To(Equal("APP/PROC/WORKER: Exited with status 1"))
		Expect(crash.Request.CrashCount).To(Equal(3))
		Expect(crash.Request.CrashTimestamp).To(Equal(finished.UnixNano()))
	})

	It("keys one exit the same before and after the restart, so it is reported once", func() {
		before, _ := events.CrashFromPod(appPod(corev1.ContainerStatus{
			RestartCount: 0, State: corev1.ContainerState{Terminated: exited(1, "Error", "containerd://c1")},
		}))
		after, ok := events.CrashFromPod(appPod(corev1.ContainerStatus{
			RestartCount: 1, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			LastTerminationState: corev1.ContainerState{Terminated: exited(1, "Error", "containerd://c1")},
		}))
		Expect(ok).To(BeTrue())
		Expect(after.Key).To(Equal(before.Key))
		Expect(after.Request.CrashCount).To(Equal(before.Request.CrashCount))
	})

	It("reports a crash loop through the last termination", func() {
		crash, ok := events.CrashFromPod(appPod(corev1.ContainerStatus{
			RestartCount:         4,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: exited(2, "Error", "containerd://c5")},
		}))
		Expect(ok).To(BeTrue())
		Expect(crash.Request.CrashCount).To(Equal(4))
		Expect(crash.Request.ExitStatus).To(Equal(2))
	})

	It("says out of memory for OOMKilled", func() {
		crash, ok := events.CrashFromPod(appPod(corev1.ContainerStatus{
			State: corev1.ContainerState{Terminated: exited(137, "OOMKilled", "containerd://c1")},
		}))
		Expect(ok).To(BeTrue())
		Expect(crash.Request.ExitDescription).To(Equal("APP/PROC/WORKER: Exited with status 137 (out of memory)"))
	})

	It("counts an exit with status 0 too: an app process must not exit", func() {
		crash, ok := events.CrashFromPod(appPod(corev1.ContainerStatus{
			State: corev1.ContainerState{Terminated: exited(0, "Completed", "containerd://c1")},
		}))
		Expect(ok).To(BeTrue())
		Expect(crash.Request.ExitDescription).To(Equal("APP/PROC/WORKER: Exited with status 0"))
	})

	It("reports an image that cannot be pulled once, whichever pull reason shows", func() {
		pull, ok := events.CrashFromPod(appPod(corev1.ContainerStatus{
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}},
		}))
		Expect(ok).To(BeTrue())
		Expect(pull.Request.ExitDescription).To(Equal("APP/PROC/WORKER: failed to pull image (ErrImagePull): not found"))
		backoff, _ := events.CrashFromPod(appPod(corev1.ContainerStatus{
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}},
		}))
		Expect(backoff.Key).To(Equal(pull.Key))
	})

	It("reports a container that cannot be configured", func() {
		crash, ok := events.CrashFromPod(appPod(corev1.ContainerStatus{
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: "secret missing"}},
		}))
		Expect(ok).To(BeTrue())
		Expect(crash.Request.ExitDescription).To(ContainSubstring("failed to start (CreateContainerConfigError): secret missing"))
	})

	It("ignores healthy, starting and deliberately stopped instances", func() {
		_, ok := events.CrashFromPod(appPod(corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}))
		Expect(ok).To(BeFalse())
		_, ok = events.CrashFromPod(appPod(corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}))
		Expect(ok).To(BeFalse())

		stopping := appPod(corev1.ContainerStatus{State: corev1.ContainerState{Terminated: exited(143, "Error", "containerd://c1")}})
		now := metav1.Now()
		stopping.DeletionTimestamp = &now
		_, ok = events.CrashFromPod(stopping)
		Expect(ok).To(BeFalse())
	})
})
