package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/ginkgomon_v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/cc"
	"github.com/iris-cf/iris/events"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// fakeCC records what reaches it; while down it answers like an
// unreachable CC (a retryable error).
type fakeCC struct {
	mu        sync.Mutex
	down      bool
	crashes   []models.AppCrashedRequest
	callbacks []string
	bodies    []any
	// answers are returned, in order, to the next PostURL calls.
	answers  []error
	attempts int
}

func (f *fakeCC) Post(_ context.Context, path string, body any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errors.New("connection refused")
	}
	f.crashes = append(f.crashes, body.(models.AppCrashedRequest))
	return nil
}

func (f *fakeCC) PostURL(_ context.Context, url string, body any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	if f.down {
		return errors.New("connection refused")
	}
	if len(f.answers) > 0 {
		err := f.answers[0]
		f.answers = f.answers[1:]
		return err
	}
	f.callbacks = append(f.callbacks, url)
	f.bodies = append(f.bodies, body)
	return nil
}

func (f *fakeCC) posted() []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]any(nil), f.bodies...)
}

func (f *fakeCC) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeCC) reported() ([]models.AppCrashedRequest, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]models.AppCrashedRequest(nil), f.crashes...), append([]string(nil), f.callbacks...)
}

var _ cc.Options // the real client is exercised by the integration suite

const ns = "cf-workloads"

func crashingPod(name string, uid types.UID) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, UID: uid,
			Labels:      map[string]string{k8s.LabelSourceType: k8s.SourceTypeApp, k8s.PodIndexLabel: "0", k8s.LabelProcessType: "web"},
			Annotations: map[string]string{k8s.AnnotationProcessGUID: "guid-v1"},
		},
		Spec: corev1.PodSpec{NodeName: "node-a"},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: k8s.AppContainerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}}},
	}
}

// crashAgain makes the pod show its n-th crash (exit status n), as the
// kubelet does after restarting the container: the newest termination only.
func crashAgain(g Gomega, pod *corev1.Pod, n int) {
	pod.Status.ContainerStatuses[0] = corev1.ContainerStatus{
		Name: k8s.AppContainerName, RestartCount: int32(n),
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: int32(n), Reason: "Error", ContainerID: fmt.Sprintf("containerd://c%d", n),
			FinishedAt: metav1.NewTime(time.Unix(1700000000+int64(n), 0)),
		}},
	}
}

var _ = Describe("Reporters", func() {
	var (
		clientset *fake.Clientset
		caches    *k8s.Caches
		ccServer  *fakeCC
		opts      events.Options
		ctx       context.Context
	)

	BeforeEach(func() {
		ctx = context.Background()
		clientset = fake.NewClientset()
		var err error
		caches, err = k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		ccServer = &fakeCC{}
		opts = events.Options{MaxBackoff: 50 * time.Millisecond, JobTTL: time.Hour}
	})

	startCaches := func() {
		process := ifrit.Invoke(ifrit.RunFunc(caches.Run(lagertest.NewTestLogger("caches"))))
		DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })
	}

	createPod := func(pod *corev1.Pod) {
		_, err := clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
	}

	// updateStatus changes the pod's status on the current object (whose
	// annotations the reporter may have written).
	updateStatus := func(name string, change func(g Gomega, pod *corev1.Pod)) {
		Eventually(func(g Gomega) {
			pod, err := clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			change(g, pod)
			_, err = clientset.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
			g.Expect(err).NotTo(HaveOccurred())
		}).Should(Succeed())
	}

	recordedCrashes := func(g Gomega, name string) []events.Crash {
		pod, err := clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		var crashes []events.Crash
		if raw := pod.Annotations[events.AnnotationUnreportedCrashes]; raw != "" {
			g.Expect(json.Unmarshal([]byte(raw), &crashes)).To(Succeed())
		}
		return crashes
	}

	exitStatuses := func() []int {
		crashes, _ := ccServer.reported()
		var out []int
		for _, c := range crashes {
			out = append(out, c.ExitStatus)
		}
		return out
	}

	Describe("the crash reporter", func() {
		var reporter *events.CrashReporter

		BeforeEach(func() {
			var err error
			reporter, err = events.NewCrashReporter(lagertest.NewTestLogger("crash"), clientset, caches, ccServer, opts)
			Expect(err).NotTo(HaveOccurred())
		})

		run := func(r ifrit.Runner) ifrit.Process {
			process := ifrit.Invoke(r)
			DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })
			return process
		}

		It("reports every crash the pod showed while CC was down, in order, each with its own exit status and count", func() {
			createPod(crashingPod("app-0", "uid-1"))
			startCaches()
			run(reporter)
			ccServer.setDown(true)

			for n := 1; n <= 3; n++ {
				updateStatus("app-0", func(g Gomega, pod *corev1.Pod) { crashAgain(g, pod, n) })
				// Each crash is on the pod before the next one replaces it in
				// the status: that record is what survives a restart.
				Eventually(func(g Gomega) []events.Crash { return recordedCrashes(g, "app-0") }).Should(HaveLen(n))
			}
			Expect(exitStatuses()).To(BeEmpty())

			ccServer.setDown(false)
			Eventually(exitStatuses).Should(Equal([]int{1, 2, 3}))
			crashes, _ := ccServer.reported()
			Expect([]int{crashes[0].CrashCount, crashes[1].CrashCount, crashes[2].CrashCount}).To(Equal([]int{1, 2, 3}))
			Eventually(func(g Gomega) []events.Crash { return recordedCrashes(g, "app-0") }).Should(BeEmpty())
			Consistently(exitStatuses, 300*time.Millisecond).Should(HaveLen(3))
		})

		It("reports what an earlier Iris recorded but did not deliver, then the crash the pod shows now", func() {
			pod := crashingPod("app-0", "uid-1")
			crashAgain(Default, pod, 1)
			first, ok := events.CrashFromPod(pod)
			Expect(ok).To(BeTrue())
			crashAgain(Default, pod, 2)
			list, err := json.Marshal([]events.Crash{first})
			Expect(err).NotTo(HaveOccurred())
			pod.Annotations[events.AnnotationUnreportedCrashes] = string(list)
			createPod(pod)

			startCaches()
			run(reporter)
			Eventually(exitStatuses).Should(Equal([]int{1, 2}))
			Consistently(exitStatuses, 300*time.Millisecond).Should(HaveLen(2))
		})

		It("keeps reporting after any number of lost and won leases", func() {
			createPod(crashingPod("app-0", "uid-1"))
			startCaches()
			for range 4 {
				ginkgomon_v2.Interrupt(ifrit.Invoke(reporter))
			}
			process := run(reporter)
			updateStatus("app-0", func(g Gomega, pod *corev1.Pod) { crashAgain(g, pod, 1) })
			Eventually(exitStatuses).Should(Equal([]int{1}))
			ginkgomon_v2.Interrupt(process)

			// A crash while no replica leads is found by the next leader.
			updateStatus("app-0", func(g Gomega, pod *corev1.Pod) { crashAgain(g, pod, 2) })
			run(reporter)
			Eventually(exitStatuses).Should(Equal([]int{1, 2}))
			Consistently(exitStatuses, 300*time.Millisecond).Should(HaveLen(2))
		})

		It("drops what another replica reported, so a new leader does not report it again", func() {
			createPod(crashingPod("app-0", "uid-1"))
			startCaches()
			// Not leading: the handler sees the crash, nothing is posted.
			updateStatus("app-0", func(g Gomega, pod *corev1.Pod) { crashAgain(g, pod, 1) })
			Eventually(func(g Gomega) int { return reporter.QueueDepth() }).Should(BeZero())
			updateStatus("app-0", func(g Gomega, pod *corev1.Pod) {
				crash, ok := events.CrashFromPod(pod)
				g.Expect(ok).To(BeTrue())
				pod.Annotations[events.AnnotationLastReportedCrash] = crash.Key
			})
			// The leader's record reaches this replica's cache.
			Eventually(func(g Gomega) string {
				return caches.Pod(ns, "app-0").Annotations[events.AnnotationLastReportedCrash]
			}).ShouldNot(BeEmpty())
			run(reporter)
			Consistently(exitStatuses, 300*time.Millisecond).Should(BeEmpty())
		})

		It("leaves the crashes of BBS-desired LRPs to tps-watcher, which reads the BBS event stream", func() {
			pod := crashingPod("app-0", "uid-1")
			pod.Annotations[k8s.AnnotationBBSDomain] = "cf-apps"
			createPod(pod)
			startCaches()
			run(reporter)
			updateStatus("app-0", func(g Gomega, pod *corev1.Pod) { crashAgain(g, pod, 1) })
			Eventually(func(g Gomega) int32 {
				return caches.Pod(ns, "app-0").Status.ContainerStatuses[0].RestartCount
			}).Should(Equal(int32(1)))
			Consistently(exitStatuses, 300*time.Millisecond).Should(BeEmpty())
		})

		It("reports crashes seen before the pod was deleted", func() {
			createPod(crashingPod("app-0", "uid-1"))
			startCaches()
			run(reporter)
			ccServer.setDown(true)
			updateStatus("app-0", func(g Gomega, pod *corev1.Pod) { crashAgain(g, pod, 1) })
			Eventually(func(g Gomega) []events.Crash { return recordedCrashes(g, "app-0") }).Should(HaveLen(1))
			Expect(clientset.CoreV1().Pods(ns).Delete(ctx, "app-0", metav1.DeleteOptions{})).To(Succeed())
			Eventually(func() *corev1.Pod { return caches.Pod(ns, "app-0") }).Should(BeNil())
			ccServer.setDown(false)
			Eventually(exitStatuses).Should(Equal([]int{1}))
		})
	})

	Describe("task and staging reporters under a Lease", func() {
		It("report a crash, a task and a staging once each after several lost and won leases", func() {
			crashes, err := events.NewCrashReporter(lagertest.NewTestLogger("crash"), clientset, caches, ccServer, opts)
			Expect(err).NotTo(HaveOccurred())
			tasks, err := events.NewTaskReporter(lagertest.NewTestLogger("task"), clientset, caches, ccServer, opts)
			Expect(err).NotTo(HaveOccurred())
			staging, err := events.NewStagingReporter(lagertest.NewTestLogger("staging"), clientset, caches, ccServer, nil, opts)
			Expect(err).NotTo(HaveOccurred())
			createPod(crashingPod("app-0", "uid-1"))
			startCaches()

			members := func() ifrit.Runner {
				return ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
					ps := []ifrit.Process{ifrit.Invoke(crashes), ifrit.Invoke(tasks), ifrit.Invoke(staging)}
					close(ready)
					sig := <-signals
					for _, p := range ps {
						p.Signal(sig)
						<-p.Wait()
					}
					return nil
				})
			}
			for range 3 {
				ginkgomon_v2.Interrupt(ifrit.Invoke(members()))
			}
			process := ifrit.Invoke(members())
			DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })

			updateStatus("app-0", func(g Gomega, pod *corev1.Pod) { crashAgain(g, pod, 1) })
			finished := []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
			_, err = clientset.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "task-1", UID: "job-1",
					Labels:      map[string]string{k8s.LabelSourceType: k8s.SourceTypeTask, k8s.LabelTaskGUID: "task-guid"},
					Annotations: map[string]string{k8s.AnnotationCompletionCallback: "https://cc/task-1"}},
				Status: batchv1.JobStatus{Conditions: finished},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			_, err = clientset.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "staging-1", UID: "job-2",
					Labels: map[string]string{k8s.LabelSourceType: k8s.SourceTypeStaging, k8s.LabelStagingGUID: "staging-guid"},
					Annotations: map[string]string{k8s.AnnotationCompletionCallback: "https://cc/staging-1",
						k8s.AnnotationStagingResult: `{"result":{}}`}},
				Status: batchv1.JobStatus{Conditions: finished},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())

			Eventually(func(g Gomega) {
				crashes, callbacks := ccServer.reported()
				g.Expect(crashes).To(HaveLen(1))
				g.Expect(callbacks).To(ConsistOf("https://cc/task-1", "https://cc/staging-1"))
			}).Should(Succeed())
			// The deliveries are recorded on the Jobs, so a later leader
			// does not send them again.
			Eventually(func(g Gomega) {
				for _, name := range []string{"task-1", "staging-1"} {
					job, err := clientset.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(job.Annotations).To(HaveKey(k8s.AnnotationCallbackDelivered))
				}
			}).Should(Succeed())
			ginkgomon_v2.Interrupt(process)
			again := ifrit.Invoke(members())
			DeferCleanup(func() { ginkgomon_v2.Interrupt(again) })
			Consistently(func(g Gomega) {
				crashes, callbacks := ccServer.reported()
				g.Expect(crashes).To(HaveLen(1))
				g.Expect(callbacks).To(HaveLen(2))
			}, 300*time.Millisecond).Should(Succeed())
		})
	})
})

var _ = Describe("Job lifecycle timing", func() {
	It("deletes a reported task Job once its TTL has passed, and not before", func() {
		ctx := context.Background()
		clientset := fake.NewClientset()
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		clock := clocktesting.NewFakeClock(time.Unix(1700000000, 0))
		ccServer := &fakeCC{}
		tasks, err := events.NewTaskReporter(lagertest.NewTestLogger("task"), clientset, caches, ccServer,
			events.Options{MaxBackoff: time.Second, JobTTL: time.Minute, Clock: clock})
		Expect(err).NotTo(HaveOccurred())
		_, err = clientset.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "task-1", UID: "job-1",
				Labels:      map[string]string{k8s.LabelSourceType: k8s.SourceTypeTask, k8s.LabelTaskGUID: "task-guid"},
				Annotations: map[string]string{k8s.AnnotationCompletionCallback: "https://cc/task-1"}},
			Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		for _, r := range []ifrit.Runner{ifrit.RunFunc(caches.Run(lagertest.NewTestLogger("caches"))), tasks} {
			process := ifrit.Invoke(r)
			DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })
		}

		jobExists := func(g Gomega) bool {
			_, err := clientset.BatchV1().Jobs(ns).Get(ctx, "task-1", metav1.GetOptions{})
			return err == nil
		}
		Eventually(func(g Gomega) []string { _, cbs := ccServer.reported(); return cbs }).Should(HaveLen(1))
		Eventually(func(g Gomega) string {
			job, err := clientset.BatchV1().Jobs(ns).Get(ctx, "task-1", metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			return job.Annotations[k8s.AnnotationCallbackDelivered]
		}).Should(Equal(clock.Now().UTC().Format(time.RFC3339)))
		Eventually(clock.HasWaiters).Should(BeTrue())

		clock.Step(59 * time.Second)
		Consistently(jobExists, 200*time.Millisecond).Should(BeTrue())
		clock.Step(time.Second)
		Eventually(jobExists).Should(BeFalse())
	})
})

var _ = Describe("Retry-After", func() {
	It("retries a 429 no sooner than CC's Retry-After, though the backoff would be shorter", func() {
		ctx := context.Background()
		clientset := fake.NewClientset()
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		clock := clocktesting.NewFakeClock(time.Unix(1700000000, 0))
		ccServer := &fakeCC{answers: []error{&cc.StatusError{URL: "https://cc/task-1", StatusCode: http.StatusTooManyRequests, RetryAfter: 2 * time.Minute}}}
		tasks, err := events.NewTaskReporter(lagertest.NewTestLogger("task"), clientset, caches, ccServer,
			events.Options{MaxBackoff: time.Second, JobTTL: time.Hour, Clock: clock})
		Expect(err).NotTo(HaveOccurred())
		_, err = clientset.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "task-1", UID: "job-1",
				Labels:      map[string]string{k8s.LabelSourceType: k8s.SourceTypeTask, k8s.LabelTaskGUID: "task-guid"},
				Annotations: map[string]string{k8s.AnnotationCompletionCallback: "https://cc/task-1"}},
			Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		for _, r := range []ifrit.Runner{ifrit.RunFunc(caches.Run(lagertest.NewTestLogger("caches"))), tasks} {
			process := ifrit.Invoke(r)
			DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })
		}
		attempts := func() int { ccServer.mu.Lock(); defer ccServer.mu.Unlock(); return ccServer.attempts }

		Eventually(attempts).Should(Equal(1))
		Eventually(clock.HasWaiters).Should(BeTrue())
		clock.Step(119 * time.Second) // far beyond the 1 s backoff
		Consistently(attempts, 200*time.Millisecond).Should(Equal(1))
		clock.Step(time.Second)
		Eventually(func(g Gomega) []string { _, cbs := ccServer.reported(); return cbs }).Should(Equal([]string{"https://cc/task-1"}))
		Expect(attempts()).To(Equal(2))
	})
})

var _ = Describe("A completion callback kept in a Secret", func() {
	It("is posted to with the credentials the Secret holds", func() {
		ctx := context.Background()
		clientset := fake.NewClientset()
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		ccServer := &fakeCC{}
		tasks, err := events.NewTaskReporter(lagertest.NewTestLogger("task"), clientset, caches, ccServer,
			events.Options{MaxBackoff: 50 * time.Millisecond, JobTTL: time.Hour})
		Expect(err).NotTo(HaveOccurred())
		_, err = clientset.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "task-1-callback"},
			Data:       map[string][]byte{"url": []byte("https://user:pass@cc/task-1")},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = clientset.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "task-1", UID: "job-1",
				Labels: map[string]string{k8s.LabelSourceType: k8s.SourceTypeTask, k8s.LabelTaskGUID: "task-guid"},
				Annotations: map[string]string{
					k8s.AnnotationCompletionCallback:       "https://cc/task-1",
					k8s.AnnotationCompletionCallbackSecret: "task-1-callback",
				}},
			Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		for _, r := range []ifrit.Runner{ifrit.RunFunc(caches.Run(lagertest.NewTestLogger("caches"))), tasks} {
			process := ifrit.Invoke(r)
			DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })
		}
		Eventually(func(g Gomega) []string { _, cbs := ccServer.reported(); return cbs }).Should(Equal([]string{"https://user:pass@cc/task-1"}))
	})
})

var _ = Describe("An unschedulable buildpack staging", func() {
	DescribeTable("fails at once with CC's placement error id, once, and its Job is stopped",
		func(message string, want models.StagingError) {
			ctx := context.Background()
			clientset := fake.NewClientset()
			caches, err := k8s.NewCaches(clientset, []string{ns})
			Expect(err).NotTo(HaveOccurred())
			ccServer := &fakeCC{}
			staging, err := events.NewStagingReporter(lagertest.NewTestLogger("staging"), clientset, caches, ccServer, nil,
				events.Options{MaxBackoff: 50 * time.Millisecond, JobTTL: time.Hour})
			Expect(err).NotTo(HaveOccurred())
			_, err = clientset.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "staging-1", UID: "job-1",
					Labels: map[string]string{k8s.LabelSourceType: k8s.SourceTypeStaging, k8s.LabelStagingGUID: "staging-guid"},
					Annotations: map[string]string{k8s.AnnotationCompletionCallback: "https://cc/staging-1",
						k8s.AnnotationStagingLifecycle: k8s.StagingLifecycleBuildpack}},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "staging-1-abcde",
					Labels: map[string]string{k8s.LabelSourceType: k8s.SourceTypeStaging, batchv1.JobNameLabel: "staging-1"}},
				Status: corev1.PodStatus{Phase: corev1.PodPending},
			}
			_, err = clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			for _, r := range []ifrit.Runner{ifrit.RunFunc(caches.Run(lagertest.NewTestLogger("caches"))), staging} {
				process := ifrit.Invoke(r)
				DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })
			}
			// Pending, not yet tried by the scheduler: nothing to report.
			Consistently(ccServer.posted, 200*time.Millisecond).Should(BeEmpty())

			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: message}}
			_, err = clientset.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
			Expect(err).NotTo(HaveOccurred())

			Eventually(ccServer.posted).Should(HaveLen(1))
			Expect(ccServer.posted()[0]).To(Equal(models.StagingCallback{Error: &want}))
			job, err := clientset.BatchV1().Jobs(ns).Get(ctx, "staging-1", metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(job.Spec.Suspend).To(HaveValue(BeTrue()))
			Expect(job.Annotations[k8s.AnnotationStagingResult]).To(MatchJSON(`{"error":{"id":"` + want.ID + `","message":"` + want.Message + `"}}`))

			// The scheduler keeps saying so; CC heard it once.
			pod.Status.Conditions[0].Message += " "
			_, err = clientset.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
			Expect(err).NotTo(HaveOccurred())
			Consistently(ccServer.posted, 300*time.Millisecond).Should(HaveLen(1))
		},
		Entry("no node with the memory", "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found.",
			models.StagingError{ID: "InsufficientResources", Message: "insufficient resources: memory"}),
		Entry("no node it may run on", "0/3 nodes are available: 3 node(s) had untolerated taint {node.kubernetes.io/unreachable: }.",
			models.StagingError{ID: "NoCompatibleCell", Message: "found no compatible cell"}),
	)
})
