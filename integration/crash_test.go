package integration_test

import (
	"context"
	"net/http"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/events"
	"github.com/iris-cf/iris/models"
)

// setAppStatus plays the kubelet: it rewrites the app container's status of
// instance index and returns the pod.
func setAppStatus(lrp *models.DesireLRPRequest, index string, mutate func(*corev1.ContainerStatus)) *corev1.Pod {
	var updated *corev1.Pod
	Eventually(func(g Gomega) {
		pod, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), theStatefulSetWith(g, lrp).Name+"-"+index, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		mutate(&pod.Status.ContainerStatuses[0])
		updated, err = clientset.CoreV1().Pods(namespace).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
	}, 10*time.Second).Should(Succeed())
	return updated
}

func terminated(code int32, reason, containerID string) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: reason, ContainerID: containerID,
		StartedAt: metav1.NewTime(time.Now().Add(-time.Minute)), FinishedAt: metav1.Now(),
	}}
}

func runningLRP(instances int) *models.DesireLRPRequest {
	lrp := newLRP(instances)
	desire(lrp)
	Eventually(runningPods(namespace, lrp), 30*time.Second).Should(Equal(instances))
	return lrp
}

// Crash reports go to the suite's fake CC, whose answers some specs change,
// and one spec restarts Iris: run in order, alone.
var _ = Describe("Crash events to CC", Ordered, Serial, func() {
	AfterEach(func() { cc.SetStatus(http.StatusOK) })

	It("reports a non-zero exit once, with Diego's fields, and records it on the pod", func() {
		lrp := runningLRP(2)
		pod := setAppStatus(lrp, "1", func(s *corev1.ContainerStatus) {
			s.Ready = false
			s.State = terminated(3, "Error", "containerd://exit-3")
		})

		Eventually(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, true)).To(HaveLen(1)) }, 15*time.Second).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, false)).To(HaveLen(1)) }, 2*time.Second).Should(Succeed())
		crash := cc.crashes(lrp.ProcessGUID, true)[0]
		Expect(crash.Instance).To(Equal(string(pod.UID)))
		Expect(crash.Index).To(Equal(1))
		Expect(crash.CellID).To(Equal(pod.Spec.NodeName))
		Expect(crash.Reason).To(Equal("CRASHED"))
		Expect(crash.ExitStatus).To(Equal(3))
		Expect(crash.ExitDescription).To(Equal("APP/PROC/WEB: Exited with status 3"))
		Expect(crash.CrashCount).To(Equal(1))
		Expect(crash.CrashTimestamp).To(BeNumerically(">", time.Now().Add(-time.Minute).UnixNano()))

		Eventually(func(g Gomega) string {
			p, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			return p.Annotations[events.AnnotationLastReportedCrash]
		}, 10*time.Second).ShouldNot(BeEmpty())

		By("the same exit seen again after the restart is not reported twice")
		setAppStatus(lrp, "1", func(s *corev1.ContainerStatus) {
			s.RestartCount = 1
			s.LastTerminationState = s.State
			s.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
		})
		Consistently(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, false)).To(HaveLen(1)) }, 2*time.Second).Should(Succeed())
	})

	It("reports an out-of-memory kill", func() {
		lrp := runningLRP(1)
		setAppStatus(lrp, "0", func(s *corev1.ContainerStatus) { s.State = terminated(137, "OOMKilled", "containerd://oom") })
		Eventually(func() []models.AppCrashedRequest { return cc.crashes(lrp.ProcessGUID, true) }, 15*time.Second).Should(ConsistOf(
			HaveField("ExitDescription", "APP/PROC/WEB: Exited with status 137 (out of memory)")))
	})

	It("reports each crash of a crash loop with its count", func() {
		lrp := runningLRP(1)
		for i, id := range []string{"containerd://loop-1", "containerd://loop-2"} {
			setAppStatus(lrp, "0", func(s *corev1.ContainerStatus) {
				s.RestartCount = int32(i + 1)
				s.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
				s.LastTerminationState = terminated(1, "Error", id)
			})
			Eventually(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, true)).To(HaveLen(i + 1)) }, 15*time.Second).Should(Succeed())
		}
		Expect(cc.crashes(lrp.ProcessGUID, true)).To(ConsistOf(HaveField("CrashCount", 1), HaveField("CrashCount", 2)))
	})

	It("reports an image that cannot be pulled once", func() {
		lrp := runningLRP(1)
		pullFails := func(reason string) {
			setAppStatus(lrp, "0", func(s *corev1.ContainerStatus) {
				s.Ready = false
				s.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "manifest unknown"}}
			})
		}
		pullFails("ErrImagePull")
		Eventually(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, true)).To(HaveLen(1)) }, 15*time.Second).Should(Succeed())
		// The kubelet alternates between these while it backs off: still
		// the one failure already reported.
		for _, reason := range []string{"ImagePullBackOff", "ErrImagePull"} {
			pullFails(reason)
			Consistently(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, false)).To(HaveLen(1)) }, 2*time.Second).Should(Succeed())
		}
		Expect(cc.crashes(lrp.ProcessGUID, true)[0].ExitDescription).To(ContainSubstring("failed to pull image"))
	})

	It("retries through a CC outage and reports once it ends", func() {
		lrp := runningLRP(1)
		cc.SetStatus(http.StatusServiceUnavailable)
		setAppStatus(lrp, "0", func(s *corev1.ContainerStatus) { s.State = terminated(1, "Error", "containerd://outage") })
		Eventually(func(g Gomega) {
			g.Expect(len(cc.crashes(lrp.ProcessGUID, false))).To(BeNumerically(">=", 2), "retried")
		}, 15*time.Second).Should(Succeed())
		Expect(cc.crashes(lrp.ProcessGUID, true)).To(BeEmpty())

		cc.SetStatus(http.StatusOK)
		Eventually(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, true)).To(HaveLen(1)) }, 15*time.Second).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, true)).To(HaveLen(1)) }, 3*time.Second).Should(Succeed())
	})

	It("takes CC's 4xx as final", func() {
		lrp := runningLRP(1)
		cc.SetStatus(http.StatusNotFound)
		setAppStatus(lrp, "0", func(s *corev1.ContainerStatus) { s.State = terminated(1, "Error", "containerd://gone") })
		Eventually(func(g Gomega) { g.Expect(len(cc.crashes(lrp.ProcessGUID, false))).To(Equal(1)) }, 15*time.Second).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(len(cc.crashes(lrp.ProcessGUID, false))).To(Equal(1)) }, 3*time.Second).Should(Succeed())
	})

	It("neither repeats nor drops reports across an Iris restart", func() {
		reported := runningLRP(1)
		setAppStatus(reported, "0", func(s *corev1.ContainerStatus) { s.State = terminated(1, "Error", "containerd://before-restart") })
		Eventually(func(g Gomega) { g.Expect(len(cc.crashes(reported.ProcessGUID, true))).To(Equal(1)) }, 15*time.Second).Should(Succeed())

		unseen := runningLRP(1)
		stopIris()
		// This crash happens while no Iris runs.
		setAppStatus(unseen, "0", func(s *corev1.ContainerStatus) { s.State = terminated(9, "Error", "containerd://while-down") })
		startIris()

		Eventually(func(g Gomega) { g.Expect(len(cc.crashes(unseen.ProcessGUID, true))).To(Equal(1)) }, 30*time.Second).Should(Succeed())
		Consistently(func() int {
			return len(cc.crashes(reported.ProcessGUID, false)) + len(cc.crashes(unseen.ProcessGUID, false))
		}, 3*time.Second).Should(Equal(2))
	})

	It("fails over to a standby replica without losing a report", func() {
		// A second Iris running only the reporter waits for the Lease.
		standby := startExtraIris(irisPath, secondIrisConfig("events"))
		Eventually(standby, 10*time.Second).Should(gbytes.Say("campaigning"))

		lrp := runningLRP(1)
		stopIris() // the leader releases the Lease on its way out
		setAppStatus(lrp, "0", func(s *corev1.ContainerStatus) { s.State = terminated(4, "Error", "containerd://failover") })
		Eventually(standby, 15*time.Second).Should(gbytes.Say("leading"))
		Eventually(func(g Gomega) { g.Expect(cc.crashes(lrp.ProcessGUID, true)).To(HaveLen(1)) }, 15*time.Second).Should(Succeed())

		startIris()
		Consistently(func(g Gomega) { g.Expect(len(cc.crashes(lrp.ProcessGUID, false))).To(Equal(1)) }, 3*time.Second).Should(Succeed())
	})
})

func readFile(path string) string {
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	return string(data)
}
