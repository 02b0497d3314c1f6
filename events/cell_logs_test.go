package events_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/events"
	"github.com/iris-cf/iris/k8s"
)

var _ = Describe("CellMessages", func() {
	base := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "dora-0", UID: "uid-1", Labels: map[string]string{k8s.PodIndexLabel: "0"}},
		}
	}
	scheduled := func(p *corev1.Pod) *corev1.Pod { p.Spec.NodeName = "node-a"; return p }
	running := func(p *corev1.Pod) *corev1.Pod {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: k8s.AppContainerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		return p
	}
	ready := func(p *corev1.Pod, ok bool) *corev1.Pod {
		status := corev1.ConditionFalse
		if ok {
			status = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
		return p
	}

	It("follows an instance from scheduling to healthy", func() {
		pending := base()
		onCell := scheduled(base())
		Expect(events.CellMessages(pending, onCell)).To(Equal([]string{"Cell node-a creating container for instance uid-1"}))

		up := running(scheduled(base()))
		Expect(events.CellMessages(onCell, up)).To(Equal([]string{
			"Cell node-a successfully created container for instance uid-1",
			"Starting health monitoring of container",
		}))
		Expect(events.CellMessages(up, ready(running(scheduled(base())), true))).To(Equal([]string{"Container became healthy"}))
		Expect(events.CellMessages(ready(running(scheduled(base())), true), ready(running(scheduled(base())), false))).
			To(Equal([]string{"Container became unhealthy"}))
	})

	It("does not replay the history of a running instance seen for the first time", func() {
		Expect(events.CellMessages(nil, ready(running(scheduled(base())), true))).To(BeEmpty())
		Expect(events.CellMessages(nil, scheduled(base()))).To(Equal([]string{"Cell node-a creating container for instance uid-1"}))
	})

	It("tells each exit once", func() {
		up := running(scheduled(base()))
		crashed := scheduled(base())
		crashed.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: k8s.AppContainerName, RestartCount: 1, ContainerID: "c1",
			State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", ContainerID: "c0"}},
		}}
		Expect(events.CellMessages(up, crashed)).To(Equal([]string{"APP/PROC/WEB: Exited with status 137 (out of memory)"}))
		Expect(events.CellMessages(crashed, crashed.DeepCopy())).To(BeEmpty())
	})

	It("says when an instance is being stopped", func() {
		up := running(scheduled(base()))
		stopping := up.DeepCopy()
		stopping.DeletionTimestamp = &metav1.Time{}
		Expect(events.CellMessages(up, stopping)).To(Equal([]string{"Cell node-a stopping instance uid-1"}))
		Expect(events.CellMessages(stopping, stopping.DeepCopy())).To(BeEmpty())
	})
})

var _ = Describe("CellMessages for an update that schedules and starts at once", func() {
	It("tells both the creation and the start", func() {
		pending := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u"}}
		up := pending.DeepCopy()
		up.Spec.NodeName = "n"
		up.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: k8s.AppContainerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		Expect(events.CellMessages(pending, up)).To(Equal([]string{
			"Cell n creating container for instance u",
			"Cell n successfully created container for instance u",
			"Starting health monitoring of container",
		}))
	})
})
