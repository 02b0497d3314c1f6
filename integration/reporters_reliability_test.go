package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/events"
	"github.com/iris-cf/iris/models"
)

// crashLoop plays the kubelet restarting instance 0 after its n-th crash
// (exit status n): the pod shows only that newest termination.
func crashLoop(lrp *models.DesireLRPRequest, n int) {
	setAppStatus(lrp, "0", func(s *corev1.ContainerStatus) {
		s.Ready = false
		s.RestartCount = int32(n)
		s.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
		s.LastTerminationState = terminated(int32(n), "Error", "containerd://"+uuid.NewString())
	})
}

// unreportedOnPod is the number of crashes Iris recorded on instance 0 as
// not yet accepted by CC.
func unreportedOnPod(lrp *models.DesireLRPRequest) func(g Gomega) int {
	return func(g Gomega) int {
		pod, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), theStatefulSet(lrp).Name+"-0", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		var crashes []events.Crash
		if raw := pod.Annotations[events.AnnotationUnreportedCrashes]; raw != "" {
			g.Expect(json.Unmarshal([]byte(raw), &crashes)).To(Succeed())
		}
		return len(crashes)
	}
}

// stealLease makes another identity hold the reporters' Lease for a few
// seconds, as a replica that won it during an API-server partition would.
func stealLease(name string) {
	Eventually(func(g Gomega) {
		lease, err := clientset.CoordinationV1().Leases(namespace).Get(context.Background(), name, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		now := metav1.NewMicroTime(time.Now())
		lease.Spec.HolderIdentity = ptr.To("thief-" + uuid.NewString())
		lease.Spec.AcquireTime, lease.Spec.RenewTime = &now, &now
		lease.Spec.LeaseDurationSeconds = ptr.To(int32(3))
		_, err = clientset.CoordinationV1().Leases(namespace).Update(context.Background(), lease, metav1.UpdateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
	}, 10*time.Second).Should(Succeed())
}

var _ = Describe("Reports that must not be lost", Ordered, Serial, func() {
	AfterEach(func() { cc.SetStatus(http.StatusOK) })

	It("reports every crash the pod showed across a CC outage and an Iris restart, once, in order, each with its own exit status and count", func() {
		lrp := runningLRP(1)
		cc.SetStatus(http.StatusServiceUnavailable)
		for n := 1; n <= 2; n++ {
			crashLoop(lrp, n)
			// On the pod before the next crash replaces it in the status.
			Eventually(unreportedOnPod(lrp), 15*time.Second).Should(Equal(n))
		}
		stopIris()
		crashLoop(lrp, 3) // while no Iris runs
		startIris()
		Eventually(unreportedOnPod(lrp), 15*time.Second).Should(Equal(3))
		Expect(cc.crashes(lrp.ProcessGUID, true)).To(BeEmpty())

		cc.SetStatus(http.StatusOK)
		Eventually(func() []models.AppCrashedRequest { return cc.crashes(lrp.ProcessGUID, true) }, 20*time.Second).Should(HaveLen(3))
		Consistently(func() []models.AppCrashedRequest { return cc.crashes(lrp.ProcessGUID, true) }, 3*time.Second).Should(HaveLen(3))
		accepted := cc.crashes(lrp.ProcessGUID, true)
		for i, crash := range accepted {
			Expect(crash.ExitStatus).To(Equal(i+1), "crash %d in order", i+1)
			Expect(crash.CrashCount).To(Equal(i + 1))
			Expect(crash.ExitDescription).To(Equal(fmt.Sprintf("APP/PROC/WEB: Exited with status %d", i+1)))
		}
		Eventually(unreportedOnPod(lrp), 10*time.Second).Should(BeZero())
	})

	It("reports a crash, a task and a staging once each after several lost and won leases", func() {
		lostLease := regexp.QuoteMeta(`"lease":"` + namespace + `/iris-reporters"`)
		for range 3 {
			stealLease("iris-reporters")
			Eventually(irisSession, 20*time.Second).Should(gbytes.Say(`lost-lease.*` + lostLease))
			Eventually(irisSession, 20*time.Second).Should(gbytes.Say(`leader.leading.*` + lostLease))
		}

		lrp := runningLRP(1)
		setAppStatus(lrp, "0", func(s *corev1.ContainerStatus) { s.State = terminated(7, "Error", "containerd://"+uuid.NewString()) })
		task := newTask()
		desireTask(task)
		finishTask(task, 0)
		guid := uuid.NewString()
		stage(guid, buildpackStaging(guid))
		status, body := request("PUT", "/stage/"+guid+"/completed", models.StagingCompletedRequest{TaskGUID: guid, Result: `{"lifecycle_type":"buildpack"}`})
		Expect(status).To(Equal(http.StatusOK), string(body))

		Eventually(func(g Gomega) {
			g.Expect(cc.crashes(lrp.ProcessGUID, true)).To(HaveLen(1))
			g.Expect(cc.taskCallbacks(task.GUID, true)).To(HaveLen(1))
			g.Expect(cc.stagingCallbacks(guid, true)).To(HaveLen(1))
		}, 30*time.Second).Should(Succeed())
		Consistently(func(g Gomega) {
			g.Expect(cc.crashes(lrp.ProcessGUID, false)).To(HaveLen(1))
			g.Expect(cc.taskCallbacks(task.GUID, false)).To(HaveLen(1))
			g.Expect(cc.stagingCallbacks(guid, false)).To(HaveLen(1))
		}, 3*time.Second).Should(Succeed())
	})
})
