package events_test

import (
	"context"
	"errors"
	"net/http"
	"time"

	bbsmodels "code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/ginkgomon_v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/actions"
	bbsk8s "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/cc"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/events"
	"github.com/iris-cf/iris/k8s"
)

var _ = Describe("The BBS task reporter", func() {
	const guid = "3f9e8d7c-6b5a-4c3d-8e1f-0a9b8c7d6e5f"
	var (
		ctx       context.Context
		clientset *fake.Clientset
		caches    *k8s.Caches
		clock     *clocktesting.FakeClock
		ccServer  *fakeCC
		tasks     *bbsk8s.Tasks
		jobName   string
	)

	BeforeEach(func() {
		ctx = context.Background()
		clientset = fake.NewClientset()
		var err error
		caches, err = k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		clock = clocktesting.NewFakeClock(time.Unix(1700000000, 0))
		ccServer = &fakeCC{}
		cfg := config.Default().LRP
		cfg.RunnerImage = "iris:test"
		tasks = bbsk8s.NewTasks(k8s.NewRecipeTaskClient(clientset, caches, k8s.NewBuilder(cfg), []string{ns}), bbsk8s.TranslateOptions{}, clock)
		jobName = k8s.RecipeTaskJobName(guid)
	})

	// start runs the caches and, as Iris does, the OPI task and staging
	// reporters beside the BBS one (they must leave recipe tasks alone).
	start := func() {
		logger := lagertest.NewTestLogger("reporters")
		opts := events.Options{MaxBackoff: time.Second, JobTTL: time.Minute, Clock: clock}
		recipe, err := events.NewRecipeTaskReporter(logger, clientset, caches, ccServer, opts)
		Expect(err).NotTo(HaveOccurred())
		opi, err := events.NewTaskReporter(logger, clientset, caches, ccServer, opts)
		Expect(err).NotTo(HaveOccurred())
		staging, err := events.NewStagingReporter(logger, clientset, caches, ccServer, nil, opts)
		Expect(err).NotTo(HaveOccurred())
		for _, r := range []ifrit.Runner{ifrit.RunFunc(caches.Run(logger)), recipe, opi, staging} {
			process := ifrit.Invoke(r)
			DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })
		}
	}
	desire := func(domain, callback string) {
		GinkgoHelper()
		def := &bbsmodels.TaskDefinition{
			RootFs: "docker:///busybox", LogGuid: "app-guid", Annotation: "1764583200.5",
			CompletionCallbackUrl: callback,
			Action:                bbsmodels.WrapAction(&bbsmodels.RunAction{Path: "/bin/true", User: "vcap"}),
		}
		Expect(tasks.DesireTask(ctx, lagertest.NewTestLogger("desire"), guid, domain, def)).To(Succeed())
	}
	// finish plays the Job controller and kubelet: the task's pod exited
	// with the runner's report as its termination message.
	finish := func(result actions.Result) {
		GinkgoHelper()
		job, err := clientset.BatchV1().Jobs(ns).Get(ctx, jobName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		labels := map[string]string{"batch.kubernetes.io/job-name": jobName}
		for k, v := range job.Spec.Template.Labels {
			labels[k] = v
		}
		exit := int32(0)
		if result.Failed {
			exit = 1
		}
		_, err = clientset.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: jobName + "-x1", Labels: labels, Annotations: job.Spec.Template.Annotations},
			Spec:       corev1.PodSpec{NodeName: "node-a"},
			Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{
				Name: k8s.TaskContainerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: exit, Message: string(actions.EncodeReport(result, actions.MaxTerminationMessageBytes)),
				}},
			}}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
	}
	job := func(g Gomega) map[string]string {
		j, err := clientset.BatchV1().Jobs(ns).Get(ctx, jobName, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		return j.Annotations
	}
	jobExists := func() bool {
		_, err := clientset.BatchV1().Jobs(ns).Get(ctx, jobName, metav1.GetOptions{})
		return err == nil
	}
	attempts := func() int { ccServer.mu.Lock(); defer ccServer.mu.Unlock(); return ccServer.attempts }

	It("posts BBS's callback body once, retrying 503, 504 and transport errors, and the task is then gone and its Job deleted a TTL later", func() {
		callback := "https://cc.example:9023/internal/v4/tasks/" + guid + "/completed"
		ccServer.answers = []error{
			&cc.StatusError{StatusCode: http.StatusServiceUnavailable},
			&cc.StatusError{StatusCode: http.StatusGatewayTimeout},
			errors.New("POST to CC: dial tcp: connection refused"),
		}
		desire("cf-tasks", callback)
		start()
		finish(actions.Result{Result: `{"ok":true}`})

		// RESOLVING, with the outcome recorded, from the first attempt on.
		Eventually(func(g Gomega) {
			annotations := job(g)
			g.Expect(annotations).To(HaveKey(k8s.AnnotationRecipeTaskResolving))
			g.Expect(annotations[k8s.AnnotationRecipeTaskOutcome]).To(ContainSubstring(`"result":"{\"ok\":true}"`))
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			clock.Step(time.Second) // the backoff between attempts
			g.Expect(ccServer.posted()).To(HaveLen(1))
		}).Should(Succeed())
		Expect(attempts()).To(Equal(4))
		Expect(ccServer.posted()[0]).To(Equal(&bbsmodels.TaskCallbackResponse{
			TaskGuid: guid, Result: `{"ok":true}`, Annotation: "1764583200.5", CreatedAt: time.Unix(1700000000, 0).UnixNano(),
		}))
		_, urls := ccServer.reported()
		Expect(urls).To(Equal([]string{callback}))

		Eventually(func(g Gomega) { g.Expect(job(g)).To(HaveKey(k8s.AnnotationCallbackDelivered)) }).Should(Succeed())
		Eventually(func(g Gomega) {
			_, err := tasks.TaskByGuid(ctx, lagertest.NewTestLogger("get"), guid)
			g.Expect(err).To(MatchError(bbsmodels.ErrResourceNotFound))
		}).Should(Succeed())
		Eventually(func(g Gomega) { clock.Step(10 * time.Second); g.Expect(jobExists()).To(BeFalse()) }).Should(Succeed())
		Expect(attempts()).To(Equal(4))
	})

	It("takes any other answer, a 500 or a 4xx, as the end, as BBS does (no retry)", func() {
		ccServer.answers = []error{&cc.StatusError{StatusCode: http.StatusInternalServerError}}
		desire("cf-app-staging", "https://cc.example:9023/internal/v3/staging/"+guid+"/build_completed?start=true")
		start()
		finish(actions.Result{Failed: true, FailureReason: "STG: Exited with status 223"})
		Eventually(func(g Gomega) { g.Expect(job(g)).To(HaveKey(k8s.AnnotationCallbackDelivered)) }).Should(Succeed())
		Consistently(attempts, 300*time.Millisecond).Should(Equal(1))
	})

	It("posts nothing for a task whose delivery an earlier Iris recorded", func() {
		desire("cf-tasks", "https://cc.example/internal/v4/tasks/"+guid+"/completed")
		finish(actions.Result{})
		j, err := clientset.BatchV1().Jobs(ns).Get(ctx, jobName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		j.Annotations[k8s.AnnotationCallbackDelivered] = clock.Now().UTC().Format(time.RFC3339)
		_, err = clientset.BatchV1().Jobs(ns).Update(ctx, j, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		start()
		Eventually(func(g Gomega) { clock.Step(10 * time.Second); g.Expect(jobExists()).To(BeFalse()) }).Should(Succeed())
		Expect(attempts()).To(BeZero())
	})

	It("keeps a completed task without a callback COMPLETED for BBS's 2 minutes, then removes it unreported", func() {
		desire("cf-tasks", "")
		start()
		finish(actions.Result{Failed: true, FailureReason: "Exited with status 3"})
		Eventually(func(g Gomega) { g.Expect(job(g)).To(HaveKey(k8s.AnnotationRecipeTaskOutcome)) }).Should(Succeed())
		Expect(job(Default)).NotTo(HaveKey(k8s.AnnotationRecipeTaskResolving))
		task, err := tasks.TaskByGuid(ctx, lagertest.NewTestLogger("get"), guid)
		Expect(err).NotTo(HaveOccurred())
		Expect(task.State).To(Equal(bbsmodels.Task_Completed))

		Eventually(clock.HasWaiters).Should(BeTrue())
		clock.Step(119 * time.Second)
		Consistently(func(g Gomega) { g.Expect(job(g)).NotTo(HaveKey(k8s.AnnotationCallbackDelivered)) }, 200*time.Millisecond).Should(Succeed())
		clock.Step(time.Second)
		Eventually(func(g Gomega) { g.Expect(job(g)).To(HaveKey(k8s.AnnotationCallbackDelivered)) }).Should(Succeed())
		Expect(attempts()).To(BeZero())
	})
})
