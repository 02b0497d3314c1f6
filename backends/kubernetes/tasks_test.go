package kubernetes_test

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/actions"
	bbsk8s "github.com/iris-cf/iris/backends/kubernetes"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
)

const taskGUID = "0c6a5f4e-3b2a-4d1c-9e8f-7a6b5c4d3e2f"

// ccDockerTask is a TaskDefinition as CC's TaskRecipeBuilder builds a `cf
// run-task` of a docker app: the docker lifecycle as a cached dependency,
// the launcher running the command, CC's metric tags, registry
// credentials and an isolation segment.
func ccDockerTask() *models.TaskDefinition {
	return &models.TaskDefinition{
		RootFs:                "docker://registry.example:5000/team/app#1.25",
		ImageUsername:         "robot",
		ImagePassword:         "s3cret",
		LogGuid:               appGUID,
		LogSource:             "APP/TASK/migrate",
		MemoryMb:              256,
		DiskMb:                1024,
		CpuWeight:             8,
		MaxPids:               1024,
		Annotation:            "1764583200.0",
		CompletionCallbackUrl: "https://cloud-controller-ng.service.cf.internal:9023/internal/v4/tasks/" + taskGUID + "/completed",
		PlacementTags:         []string{"segment-a"},
		EnvironmentVariables:  []*models.EnvironmentVariable{{Name: "VCAP_APPLICATION", Value: `{"name":"dora"}`}},
		MetricTags: map[string]*models.MetricTagValue{
			"source_id":         {Static: appGUID},
			"app_id":            {Static: appGUID},
			"app_name":          {Static: "dora"},
			"space_id":          {Static: spaceGUID},
			"space_name":        {Static: "dev"},
			"organization_id":   {Static: orgGUID},
			"organization_name": {Static: "acme"},
		},
		CachedDependencies: []*models.CachedDependency{{
			Name: "docker", From: "https://file-server.service.cf.internal:8447/v1/static/docker_app_lifecycle/docker_app_lifecycle.tgz",
			To: "/tmp/lifecycle", CacheKey: "docker-lifecycle",
		}},
		Action: models.WrapAction(&models.RunAction{
			Path: "/tmp/lifecycle/launcher", Args: []string{"app", "bin/migrate", "{}"}, User: "root",
			Env: []*models.EnvironmentVariable{{Name: "VCAP_SERVICES", Value: "{}"}},
		}),
	}
}

var _ = Describe("Tasks", func() {
	const ns = "cf-workloads"
	var (
		clientset *fake.Clientset
		tasks     *bbsk8s.Tasks
		clock     *clocktesting.FakeClock
		logger    *lagertest.TestLogger
		ctx       context.Context
		opts      bbsk8s.TranslateOptions
	)

	BeforeEach(func() {
		ctx = context.Background()
		logger = lagertest.NewTestLogger("tasks")
		clientset = fake.NewClientset()
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		process := ifrit.Invoke(ifrit.RunFunc(caches.Run(logger)))
		DeferCleanup(func() {
			process.Signal(os.Interrupt)
			Eventually(process.Wait()).Should(Receive())
		})
		cfg := config.Default().LRP
		cfg.RunnerImage = "registry.example/iris:1.0"
		clock = clocktesting.NewFakeClock(time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC))
		opts = bbsk8s.TranslateOptions{Stacks: map[string]string{"cflinuxfs4": "registry.example/cflinuxfs4:1.200"}}
		tasks = bbsk8s.NewTasks(k8s.NewRecipeTaskClient(clientset, caches, k8s.NewBuilder(cfg), []string{ns}), opts, clock)
	})

	jobName := k8s.RecipeTaskJobName(taskGUID)
	job := func() *batchv1.Job {
		GinkgoHelper()
		j, err := clientset.BatchV1().Jobs(ns).Get(ctx, jobName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		return j
	}
	secret := func(name string) *corev1.Secret {
		GinkgoHelper()
		s, err := clientset.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		return s
	}
	// pod plays the Job controller (and the scheduler, kubelet) creating
	// the task's pod with status.
	pod := func(node string, status corev1.PodStatus) {
		GinkgoHelper()
		j := job()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: jobName + "-abcde", Namespace: ns, Labels: map[string]string{batchv1.JobNameLabel: jobName}, Annotations: j.Spec.Template.Annotations},
			Spec:       j.Spec.Template.Spec,
			Status:     status,
		}
		for k, v := range j.Spec.Template.Labels {
			p.Labels[k] = v
		}
		p.Spec.NodeName = node
		_, err := clientset.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			_, err = clientset.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{})
		}
		Expect(err).NotTo(HaveOccurred())
	}
	terminated := func(exitCode int32, reason, message string) corev1.PodStatus {
		return corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
			Name: k8s.TaskContainerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode, Reason: reason, Message: message}},
		}}}
	}
	get := func(g Gomega) *models.Task {
		task, err := tasks.TaskByGuid(ctx, logger, taskGUID)
		g.Expect(err).NotTo(HaveOccurred())
		return task
	}

	Describe("desire", func() {
		It("makes a Job that runs the recipe once with the runner in the task's image, resources and placement as an LRP's", func() {
			Expect(tasks.DesireTask(ctx, logger, taskGUID, "cf-tasks", ccDockerTask())).To(Succeed())
			j := job()
			Expect(*j.Spec.BackoffLimit).To(BeZero())
			Expect(j.Labels).To(HaveKeyWithValue(k8s.LabelSourceType, k8s.SourceTypeTask))
			Expect(j.Labels).To(HaveKeyWithValue(k8s.LabelAppGUID, appGUID))
			Expect(j.Labels).To(HaveKeyWithValue(k8s.LabelSpaceGUID, spaceGUID))
			Expect(j.Annotations).To(HaveKeyWithValue(k8s.AnnotationRecipeTaskGUID, taskGUID))
			Expect(j.Annotations).To(HaveKeyWithValue(k8s.AnnotationBBSDomain, "cf-tasks"))
			Expect(j.Annotations).To(HaveKeyWithValue(k8s.AnnotationTaskName, "migrate"))
			Expect(j.Annotations).To(HaveKeyWithValue(k8s.AnnotationCompletionCallback, ccDockerTask().CompletionCallbackUrl))
			Expect(j.Annotations[bbsk8s.AnnotationTask]).NotTo(ContainSubstring("s3cret"))
			Expect(j.Annotations[bbsk8s.AnnotationTask]).NotTo(ContainSubstring("VCAP_SERVICES"))

			spec := j.Spec.Template.Spec
			Expect(spec.RestartPolicy).To(Equal(corev1.RestartPolicyNever))
			Expect(spec.InitContainers).To(ConsistOf(HaveField("Image", "registry.example/iris:1.0")))
			Expect(spec.Containers).To(HaveLen(1))
			c := spec.Containers[0]
			Expect(c.Image).To(Equal("registry.example:5000/team/app:1.25"))
			Expect(c.Command).To(Equal([]string{"/iris-runner/iris", "actions", "--recipe", "/etc/iris-recipe/recipe.json", "--report-file", "/dev/termination-log"}))
			Expect(c.Resources.Limits.Memory().Equal(resource.MustParse("256Mi"))).To(BeTrue())
			Expect(c.Resources.Limits.StorageEphemeral().Equal(resource.MustParse("1Gi"))).To(BeTrue())
			Expect(c.Resources.Requests.Cpu().MilliValue()).To(Equal(int64(80)))
			Expect(*c.SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
			Expect(*spec.SecurityContext.RunAsUser).To(Equal(int64(2000)))
			Expect(spec.Tolerations).To(ConsistOf(HaveField("Value", "segment-a")))
			Expect(spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions).To(ConsistOf(
				corev1.NodeSelectorRequirement{Key: "cloudfoundry.org/isolation-segment", Operator: corev1.NodeSelectorOpIn, Values: []string{"segment-a"}}))
			Expect(spec.ImagePullSecrets).To(ConsistOf(corev1.LocalObjectReference{Name: jobName + "-registry"}))
			Expect(c.Env).NotTo(ContainElement(HaveField("Name", "HOME")), "a docker image's user keeps the image's home")
			Expect(c.VolumeMounts).NotTo(ContainElement(HaveField("MountPath", k8s.StackHome)))

			// The recipe, env and credentials included, lives in a Secret the Job owns.
			recipeSecret := secret(jobName + "-recipe")
			Expect(recipeSecret.OwnerReferences).To(ConsistOf(HaveField("Name", jobName)))
			recipe, err := actions.DecodeRecipe(recipeSecret.Data[k8s.RecipeSecretKey], actions.FormatJSON)
			Expect(err).NotTo(HaveOccurred())
			Expect(recipe.Action.RunAction.Args).To(Equal([]string{"app", "bin/migrate", "{}"}))
			Expect(recipe.EnvironmentVariables).To(ConsistOf(HaveField("Name", "VCAP_APPLICATION")))
			Expect(recipe.CachedDependencies).To(HaveLen(1))
			Expect(recipe.LogSource).To(Equal("APP/TASK/migrate"))
			Expect(secret(jobName + "-registry").OwnerReferences).To(ConsistOf(HaveField("Name", jobName)))
		})

		It("runs a preloaded stack in the operator's image for it, and a staging as STG with its result file", func() {
			def := ccDockerTask()
			def.RootFs, def.ImageUsername, def.ImagePassword = "preloaded:cflinuxfs4", "", ""
			def.LogSource, def.ResultFile = "STG", "/tmp/result.json"
			Expect(tasks.DesireTask(ctx, logger, taskGUID, "cf-app-staging", def)).To(Succeed())
			j := job()
			Expect(j.Spec.Template.Spec.Containers[0].Image).To(Equal("registry.example/cflinuxfs4:1.200"))
			Expect(j.Labels).To(HaveKeyWithValue(k8s.LabelSourceType, k8s.SourceTypeStaging))
			// The vcap user's home, writable, as a buildpack app's: the
			// stack image's /home/vcap is not the pod user's, and a
			// buildpack `cf run-task` downloads its droplet to "." there.
			spec := j.Spec.Template.Spec
			Expect(spec.Containers[0].Env).To(ContainElements(
				corev1.EnvVar{Name: "HOME", Value: k8s.StackHome}, corev1.EnvVar{Name: "USER", Value: "vcap"}))
			Expect(spec.Containers[0].VolumeMounts).To(ContainElement(corev1.VolumeMount{Name: "home", MountPath: k8s.StackHome}))
			Expect(spec.Volumes).To(ContainElement(And(HaveField("Name", "home"), HaveField("EmptyDir", Not(BeNil())))))
			recipe, err := actions.DecodeRecipe(secret(jobName + "-recipe").Data[k8s.RecipeSecretKey], actions.FormatJSON)
			Expect(err).NotTo(HaveOccurred())
			Expect(recipe.ResultFile).To(Equal("/tmp/result.json"))
		})

		It("keeps a callback's user and password out of the Job, in a Secret", func() {
			def := ccDockerTask()
			def.CompletionCallbackUrl = "https://internal_user:pa55@cc.example:9023/internal/v3/staging/s/build_completed?start=true"
			Expect(tasks.DesireTask(ctx, logger, taskGUID, "cf-app-staging", def)).To(Succeed())
			j := job()
			Expect(j.Annotations).To(HaveKeyWithValue(k8s.AnnotationCompletionCallback, "https://cc.example:9023/internal/v3/staging/s/build_completed?start=true"))
			Expect(j.Annotations[bbsk8s.AnnotationTask]).NotTo(ContainSubstring("pa55"))
			url, err := k8s.CompletionCallbackURL(ctx, clientset, j)
			Expect(err).NotTo(HaveOccurred())
			Expect(url).To(Equal(def.CompletionCallbackUrl))
		})

		It("answers a taken guid with ResourceExists, also before the caches show the first", func() {
			Expect(tasks.DesireTask(ctx, logger, taskGUID, "cf-tasks", ccDockerTask())).To(Succeed())
			Expect(tasks.DesireTask(ctx, logger, taskGUID, "cf-tasks", ccDockerTask())).To(MatchError(models.ErrResourceExists))
		})

		DescribeTable("refuses what Iris cannot or may not run with InvalidRequest, and creates nothing",
			func(change func(*models.TaskDefinition), message string) {
				def := ccDockerTask()
				change(def)
				err := tasks.DesireTask(ctx, logger, taskGUID, "cf-tasks", def)
				Expect(err).To(And(HaveField("Type", models.Error_InvalidRequest), MatchError(ContainSubstring(message))))
				jobs, _ := clientset.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
				Expect(jobs.Items).To(BeEmpty())
				secrets, _ := clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
				Expect(secrets.Items).To(BeEmpty())
			},
			Entry("a stack without an image", func(d *models.TaskDefinition) { d.RootFs = "preloaded:windows" }, `no image for stack "windows"`),
			Entry("another root fs scheme", func(d *models.TaskDefinition) { d.RootFs = "preloaded+layer:cflinuxfs4?layer=x" }, "want docker://<image> or preloaded:<stack>"),
			Entry("privileged", func(d *models.TaskDefinition) { d.Privileged = true }, "privileged containers are not allowed"),
		)
	})

	Describe("states, from the Job and its pod", func() {
		BeforeEach(func() {
			Expect(tasks.DesireTask(ctx, logger, taskGUID, "cf-tasks", ccDockerTask())).To(Succeed())
		})

		It("is PENDING without a node, RUNNING on one (its cell), COMPLETED with the runner's report", func() {
			task := get(Default)
			Expect(task.State).To(Equal(models.Task_Pending))
			Expect(task.TaskDefinition.ImageUsername).To(BeEmpty())
			// The environment (service credentials) stays in the recipe Secret.
			Expect(task.TaskDefinition.EnvironmentVariables).To(BeEmpty())
			Expect(task.TaskDefinition.Action.RunAction.Env).To(BeEmpty())
			Expect(task.TaskDefinition.Action.RunAction.Args).To(Equal([]string{"app", "bin/migrate", "{}"}))
			Expect(task.TaskDefinition.Annotation).To(Equal("1764583200.0"))
			Expect(task.CreatedAt).To(Equal(clock.Now().UnixNano()))

			pod("node-1", corev1.PodStatus{Phase: corev1.PodRunning})
			Eventually(func(g Gomega) {
				g.Expect(get(g)).To(And(HaveField("State", models.Task_Running), HaveField("CellId", "node-1")))
			}).Should(Succeed())

			clock.Step(time.Minute)
			report := actions.EncodeReport(actions.Result{Result: `{"ok":true}`}, actions.MaxTerminationMessageBytes)
			pod("node-1", corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{
				Name: k8s.TaskContainerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Message: string(report)}},
			}}})
			Eventually(func(g Gomega) {
				task := get(g)
				g.Expect(task.State).To(Equal(models.Task_Completed))
				g.Expect(task.Failed).To(BeFalse())
				g.Expect(task.Result).To(Equal(`{"ok":true}`))
				g.Expect(task.CellId).To(BeEmpty())
				g.Expect(task.FirstCompletedAt).To(Equal(clock.Now().UnixNano()))
			}).Should(Succeed())
		})

		DescribeTable("completes failed with Diego's reasons",
			func(node string, status corev1.PodStatus, reason string) {
				pod(node, status)
				Eventually(func(g Gomega) {
					g.Expect(get(g)).To(And(HaveField("State", models.Task_Completed), HaveField("Failed", true), HaveField("FailureReason", reason)))
				}).Should(Succeed())
			},
			Entry("the runner's reason (a builder's exit status CC maps)", "node-1",
				terminated(1, "Error", string(actions.EncodeReport(actions.Result{Failed: true, FailureReason: "STG: Exited with status 222"}, 4096))), "STG: Exited with status 222"),
			Entry("killed without a report: the exit status, out of memory", "node-1", terminated(137, "OOMKilled", ""), "Exited with status 137 (out of memory)"),
			Entry("a pod no node can place: at once, as Diego's auction fails it", "", corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
				Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient memory.",
			}}}, "insufficient resources: memory"),
			Entry("an image that cannot be pulled", "node-1", corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
				Name: k8s.TaskContainerName, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}},
			}}}, "failed to create container: ErrImagePull: not found"),
		)

		It("keeps the outcome once recorded, whatever becomes of the pod, and is RESOLVING once its callback started", func() {
			j := job()
			Expect(k8s.RecordRecipeTaskOutcome(ctx, clientset, j, &k8s.RecipeTaskOutcome{Failed: true, FailureReason: "Exited with status 3", CompletedAt: 42}, "2026-12-02T01:00:00Z")).To(Succeed())
			Expect(*job().Spec.Suspend).To(BeTrue())
			Eventually(func(g Gomega) {
				g.Expect(get(g)).To(And(HaveField("State", models.Task_Resolving), HaveField("FailureReason", "Exited with status 3"), HaveField("FirstCompletedAt", int64(42))))
			}).Should(Succeed())
		})

		It("is gone for BBS clients once its callback was answered", func() {
			patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{k8s.AnnotationCallbackDelivered: "2026-12-02T01:00:00Z"}}})
			_, err := clientset.BatchV1().Jobs(ns).Patch(ctx, jobName, "application/merge-patch+json", patch, metav1.PatchOptions{})
			Expect(err).NotTo(HaveOccurred())
			Eventually(func(g Gomega) {
				_, err := tasks.TaskByGuid(ctx, logger, taskGUID)
				g.Expect(err).To(MatchError(models.ErrResourceNotFound))
			}).Should(Succeed())
			Expect(tasks.Tasks(ctx, logger, models.TaskFilter{})).To(BeEmpty())
			Expect(tasks.CancelTask(ctx, logger, taskGUID)).To(MatchError(models.ErrResourceNotFound))
		})

		It("lists by domain and by cell", func() {
			other := "1d7b6a5f-4c3b-4e2d-8f9a-0b1c2d3e4f5a"
			Expect(tasks.DesireTask(ctx, logger, other, "cf-app-staging", ccDockerTask())).To(Succeed())
			pod("node-1", corev1.PodStatus{Phase: corev1.PodRunning})
			Eventually(func(g Gomega) {
				all, err := tasks.Tasks(ctx, logger, models.TaskFilter{})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(all).To(HaveLen(2))
				byDomain, err := tasks.Tasks(ctx, logger, models.TaskFilter{Domain: "cf-app-staging"})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(byDomain).To(ConsistOf(HaveField("TaskGuid", other)))
				byCell, err := tasks.Tasks(ctx, logger, models.TaskFilter{CellID: "node-1"})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(byCell).To(ConsistOf(HaveField("TaskGuid", taskGUID)))
			}).Should(Succeed())
		})

		It("cancels a running task: the Job is suspended (its pod stops) and the task completes failed, 'task was cancelled'", func() {
			pod("node-1", corev1.PodStatus{Phase: corev1.PodRunning})
			Eventually(func(g Gomega) { g.Expect(get(g).State).To(Equal(models.Task_Running)) }).Should(Succeed())
			Expect(tasks.CancelTask(ctx, logger, taskGUID)).To(Succeed())
			Expect(*job().Spec.Suspend).To(BeTrue())
			Eventually(func(g Gomega) {
				g.Expect(get(g)).To(And(HaveField("State", models.Task_Completed), HaveField("Failed", true), HaveField("FailureReason", "task was cancelled")))
			}).Should(Succeed())
			Expect(tasks.CancelTask(ctx, logger, taskGUID)).To(MatchError(models.NewError(models.Error_InvalidStateTransition, "Cannot transition from Completed to Completed")))
		})

		It("refuses a second cancel at once, before the caches show the first", func() {
			Expect(tasks.CancelTask(ctx, logger, taskGUID)).To(Succeed())
			Expect(tasks.CancelTask(ctx, logger, taskGUID)).To(MatchError(models.NewError(models.Error_InvalidStateTransition, "Cannot transition from Completed to Completed")))
		})

		It("answers an unknown guid with ResourceNotFound", func() {
			Expect(tasks.CancelTask(ctx, logger, "no-such-task")).To(MatchError(models.ErrResourceNotFound))
			_, err := tasks.TaskByGuid(ctx, logger, "no-such-task")
			Expect(err).To(MatchError(models.ErrResourceNotFound))
		})
	})
})
