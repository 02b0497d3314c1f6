package k8s_test

import (
	"context"
	"encoding/json"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/ginkgomon_v2"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// The task and staging clients against the fake clientset, with real
// informer caches on top of it.
var _ = Describe("TaskClient and StagingClient", func() {
	const ns = "cf-workloads"
	var (
		ctx       context.Context
		clientset *fake.Clientset
		caches    *k8s.Caches
		tasks     *k8s.TaskClient
		staging   *k8s.StagingClient
		logger    *lagertest.TestLogger
	)

	BeforeEach(func() {
		ctx = context.Background()
		logger = lagertest.NewTestLogger("k8s")
		clientset = fake.NewClientset()
		var err error
		caches, err = k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		process := ifrit.Invoke(ifrit.RunFunc(caches.Run(logger)))
		DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })
		cfg := config.Default()
		// Buildpack staging runs the action runner in a stack.
		cfg.LRP.RunnerImage, cfg.Staging.StackImage = "registry.example.com/cf/iris:1", "registry.example.com/cf/cflinuxfs4:1"
		cfg.Staging.LifecycleBundleURL = "https://file-server/buildpack_app_lifecycle.tgz"
		builder := k8s.NewBuilder(cfg.LRP)
		tasks = k8s.NewTaskClient(clientset, caches, builder, []string{ns})
		staging = k8s.NewStagingClient(clientset, caches, builder, cfg.Staging, []string{ns})
	})

	jobs := func(g Gomega) []batchv1.Job {
		list, err := clientset.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		return list.Items
	}

	dockerTask := func() *models.TaskRequest {
		return &models.TaskRequest{
			GUID: "task-guid", Name: "migrate", AppGUID: "app-guid", AppName: "dora",
			CompletionCallback: "https://cc.internal/internal/v4/tasks/task-guid/completed",
			Command:            "bin/migrate", MemoryMB: 64, DiskMB: 128, CPUWeight: 1,
			Lifecycle: models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{
				Image: "registry.example.com/team/app:1", RegistryUsername: "user", RegistryPassword: "secret",
			}},
		}
	}

	It("creates one Job (and its registry Secret, owned by it) however often a task is desired", func() {
		Expect(tasks.Desire(ctx, logger, dockerTask())).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(caches.JobsByTaskGUID("task-guid")).To(HaveLen(1)) }).Should(Succeed())
		Expect(tasks.Desire(ctx, logger, dockerTask())).To(Succeed())
		Expect(jobs(Default)).To(HaveLen(1))

		secrets, err := clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(secrets.Items).To(HaveLen(1))
		Expect(secrets.Items[0].Type).To(Equal(corev1.SecretTypeDockerConfigJson))
		Expect(secrets.Items[0].OwnerReferences).To(ConsistOf(HaveField("Kind", "Job")))
	})

	It("answers not found for an unknown task, from the cache and the API alike", func() {
		_, err := tasks.Get(ctx, "no-such-task")
		Expect(err).To(MatchError(models.ErrNotFound))
		Expect(tasks.Cancel(ctx, logger, "no-such-task")).To(MatchError(models.ErrNotFound))
	})

	It("finds a task the cache has not seen yet through the API", func() {
		Expect(tasks.Desire(ctx, logger, dockerTask())).To(Succeed())
		task, err := tasks.Get(ctx, "task-guid")
		Expect(err).NotTo(HaveOccurred())
		Expect(task.GUID).To(Equal("task-guid"))
	})

	It("cancels a running task by marking and suspending its Job, and leaves a finished one alone", func() {
		Expect(tasks.Desire(ctx, logger, dockerTask())).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(caches.JobsByTaskGUID("task-guid")).To(HaveLen(1)) }).Should(Succeed())
		Expect(tasks.Cancel(ctx, logger, "task-guid")).To(Succeed())
		job := jobs(Default)[0]
		Expect(job.Annotations).To(HaveKey(k8s.AnnotationCancelled))
		Expect(*job.Spec.Suspend).To(BeTrue())

		finished := dockerTask()
		finished.GUID = "finished-guid"
		Expect(tasks.Desire(ctx, logger, finished)).To(Succeed())
		Eventually(func(g Gomega) {
			list := caches.JobsByTaskGUID("finished-guid")
			g.Expect(list).To(HaveLen(1))
			done := list[0].DeepCopy()
			done.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
			_, err := clientset.BatchV1().Jobs(ns).UpdateStatus(ctx, done, metav1.UpdateOptions{})
			g.Expect(err).NotTo(HaveOccurred())
		}).Should(Succeed())
		Eventually(func(g Gomega) string {
			task, err := tasks.Get(ctx, "finished-guid")
			g.Expect(err).NotTo(HaveOccurred())
			return task.State
		}).Should(Equal("SUCCEEDED"))
		Expect(tasks.Cancel(ctx, logger, "finished-guid")).To(Succeed())
		finishedJob, err := clientset.BatchV1().Jobs(ns).Get(ctx, caches.JobsByTaskGUID("finished-guid")[0].Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(finishedJob.Annotations).NotTo(HaveKey(k8s.AnnotationCancelled))
	})

	Describe("placement", func() {
		segmentOf := func(g Gomega, guid string) (corev1.NodeSelectorRequirement, []corev1.Toleration) {
			list := caches.JobsByTaskGUID(guid)
			g.Expect(list).To(HaveLen(1))
			spec := list[0].Spec.Template.Spec
			g.Expect(spec.Affinity).NotTo(BeNil())
			terms := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
			g.Expect(terms).To(HaveLen(1))
			g.Expect(terms[0].MatchExpressions).To(HaveLen(1))
			return terms[0].MatchExpressions[0], spec.Tolerations
		}
		buildpackStaging := &models.StagingRequest{
			AppGUID: "app-guid", CompletionCallback: "https://cc.internal/internal/v3/staging/staging-guid/build_completed",
			MemoryMB: 1024, DiskMB: 4096,
			Lifecycle: models.StagingLifecycle{BuildpackLifecycle: &models.StagingBuildpackLifecycle{AppBitsDownloadURI: "https://cc/bits", DropletUploadURI: "https://cc/droplet"}},
		}

		It("runs tasks and stagings of an app in its LRPs' isolation segment", func() {
			_, err := clientset.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{
				Name: "dora-web", Namespace: ns,
				Labels:      map[string]string{k8s.LabelSourceType: k8s.SourceTypeApp, k8s.LabelAppGUID: "app-guid"},
				Annotations: map[string]string{k8s.AnnotationIsolationSegment: "segment-a"},
			}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			Eventually(func(g Gomega) { g.Expect(caches.IsolatedStatefulSetsByAppGUID("app-guid")).To(HaveLen(1)) }).Should(Succeed())
			// An app's LRP without a segment is not indexed: its tasks run on the shared nodes.
			_, err = clientset.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{
				Name: "plain-web", Namespace: ns,
				Labels: map[string]string{k8s.LabelSourceType: k8s.SourceTypeApp, k8s.LabelAppGUID: "plain-app-guid"},
			}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			Eventually(func(g Gomega) { g.Expect(caches.StatefulSet(ns, "plain-web")).NotTo(BeNil()) }).Should(Succeed())
			Expect(caches.IsolatedStatefulSetsByAppGUID("plain-app-guid")).To(BeEmpty())
			Expect(k8s.IsolationSegmentOfApp(caches, "plain-app-guid")).To(BeEmpty())

			Expect(tasks.Desire(ctx, logger, dockerTask())).To(Succeed())
			Expect(staging.Stage(ctx, logger, "staging-guid", buildpackStaging)).To(Succeed())
			for _, guid := range []string{"task-guid", "staging-guid"} {
				Eventually(func(g Gomega) {
					requirement, tolerations := segmentOf(g, guid)
					g.Expect(requirement).To(Equal(corev1.NodeSelectorRequirement{
						Key: "cloudfoundry.org/isolation-segment", Operator: corev1.NodeSelectorOpIn, Values: []string{"segment-a"},
					}))
					g.Expect(tolerations).To(ConsistOf(corev1.Toleration{
						Key: "cloudfoundry.org/isolation-segment", Operator: corev1.TolerationOpEqual, Value: "segment-a",
					}))
				}).Should(Succeed(), guid)
			}
		})

		It("runs those of an app without an isolated LRP on the nodes of no segment, and a request's own segment wins", func() {
			Expect(staging.Stage(ctx, logger, "staging-guid", buildpackStaging)).To(Succeed())
			Eventually(func(g Gomega) {
				requirement, tolerations := segmentOf(g, "staging-guid")
				g.Expect(requirement).To(Equal(corev1.NodeSelectorRequirement{Key: "cloudfoundry.org/isolation-segment", Operator: corev1.NodeSelectorOpDoesNotExist}))
				g.Expect(tolerations).To(BeEmpty())
			}).Should(Succeed())

			task := dockerTask()
			task.IsolationSegment = "segment-b"
			Expect(tasks.Desire(ctx, logger, task)).To(Succeed())
			Eventually(func(g Gomega) {
				requirement, tolerations := segmentOf(g, "task-guid")
				g.Expect(requirement.Values).To(Equal([]string{"segment-b"}))
				g.Expect(tolerations).To(ConsistOf(HaveField("Value", "segment-b")))
			}).Should(Succeed())
		})
	})

	It("lists the tasks it runs, not stagings", func() {
		Expect(tasks.Desire(ctx, logger, dockerTask())).To(Succeed())
		Expect(staging.Stage(ctx, logger, "staging-guid", &models.StagingRequest{
			AppGUID: "app-guid", CompletionCallback: "https://cc.internal/internal/v3/staging/staging-guid/build_completed",
			MemoryMB: 1024, DiskMB: 4096,
			Lifecycle: models.StagingLifecycle{DockerLifecycle: &models.StagingDockerLifecycle{Image: "registry.example.com/team/app:1"}},
		})).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(tasks.List()).To(ConsistOf(HaveField("GUID", "task-guid"))) }).Should(Succeed())
	})

	Describe("a staging callback with CC's credentials in it", func() {
		const callback = "https://internal_user:s3cr3t-pa55@cc.internal:9023/internal/v3/staging/staging-guid/build_completed?start=true"
		stage := func(lifecycle models.StagingLifecycle) {
			Expect(staging.Stage(ctx, logger, "staging-guid", &models.StagingRequest{
				AppGUID: "app-guid", AppName: "dora", CompletionCallback: callback, MemoryMB: 1024, DiskMB: 4096, Lifecycle: lifecycle,
			})).To(Succeed())
		}
		lifecycles := []models.StagingLifecycle{
			{DockerLifecycle: &models.StagingDockerLifecycle{Image: "registry.example.com/team/app:1"}},
			{BuildpackLifecycle: &models.StagingBuildpackLifecycle{AppBitsDownloadURI: "https://cc/bits", DropletUploadURI: "https://cc/droplet"}},
		}

		It("keeps them out of the Job and its pods, in a Secret owned by the Job that the reporter reads", func() {
			for _, lifecycle := range lifecycles {
				stage(lifecycle)
				job := jobs(Default)[0]
				// Nothing a reader of Jobs or pods sees carries them.
				data, err := json.Marshal(job)
				Expect(err).NotTo(HaveOccurred())
				Expect(string(data)).NotTo(ContainSubstring("s3cr3t-pa55"))
				Expect(string(data)).NotTo(ContainSubstring("internal_user"))
				Expect(job.Annotations).To(HaveKeyWithValue(k8s.AnnotationCompletionCallback, "https://cc.internal:9023/internal/v3/staging/staging-guid/build_completed?start=true"))
				Expect(job.Spec.Template.Annotations).To(HaveKeyWithValue(k8s.AnnotationCompletionCallback, "https://cc.internal:9023/internal/v3/staging/staging-guid/build_completed?start=true"))

				secret, err := clientset.CoreV1().Secrets(ns).Get(ctx, job.Annotations[k8s.AnnotationCompletionCallbackSecret], metav1.GetOptions{})
				Expect(err).NotTo(HaveOccurred())
				Expect(secret.OwnerReferences).To(ConsistOf(HaveField("UID", job.UID)))
				Expect(k8s.CompletionCallbackURL(ctx, clientset, &job)).To(Equal(callback))

				Expect(clientset.BatchV1().Jobs(ns).Delete(ctx, job.Name, metav1.DeleteOptions{})).To(Succeed())
				Expect(clientset.CoreV1().Secrets(ns).Delete(ctx, secret.Name, metav1.DeleteOptions{})).To(Succeed())
				Eventually(func(g Gomega) { g.Expect(caches.JobsByTaskGUID("staging-guid")).To(BeEmpty()) }).Should(Succeed())
			}
		})

		It("says which Secret is missing, never the callback, when it is gone", func() {
			stage(lifecycles[0])
			job := jobs(Default)[0]
			Expect(clientset.CoreV1().Secrets(ns).Delete(ctx, job.Annotations[k8s.AnnotationCompletionCallbackSecret], metav1.DeleteOptions{})).To(Succeed())
			_, err := k8s.CompletionCallbackURL(ctx, clientset, &job)
			Expect(err).To(MatchError(ContainSubstring("-callback")))
			Expect(err.Error()).NotTo(ContainSubstring("s3cr3t-pa55"))
		})

		It("keeps a callback without credentials on the Job, with no Secret", func() {
			Expect(tasks.Desire(ctx, logger, dockerTask())).To(Succeed())
			job := jobs(Default)[0]
			Expect(job.Annotations).NotTo(HaveKey(k8s.AnnotationCompletionCallbackSecret))
			Expect(k8s.CompletionCallbackURL(ctx, clientset, &job)).To(Equal("https://cc.internal/internal/v4/tasks/task-guid/completed"))
		})
	})

	Describe("staging completion", func() {
		BeforeEach(func() {
			Expect(staging.Stage(ctx, logger, "staging-guid", &models.StagingRequest{
				AppGUID: "app-guid", CompletionCallback: "https://cc.internal/internal/v3/staging/staging-guid/build_completed",
				MemoryMB: 1024, DiskMB: 4096,
				Lifecycle: models.StagingLifecycle{DockerLifecycle: &models.StagingDockerLifecycle{Image: "registry.example.com/team/app:1"}},
			})).To(Succeed())
		})

		It("records the uploader's result on the Job for the reporter, and a later cancel changes nothing", func() {
			Expect(staging.Complete(ctx, logger, "staging-guid", &models.StagingCompletedRequest{Result: `{"lifecycle_type":"docker"}`})).To(Succeed())
			job := jobs(Default)[0]
			Expect(job.Annotations[k8s.AnnotationStagingResult]).To(MatchJSON(`{"result":{"lifecycle_type":"docker"}}`))
			Eventually(func(g Gomega) string {
				list := caches.JobsByTaskGUID("staging-guid")
				g.Expect(list).To(HaveLen(1))
				return list[0].Annotations[k8s.AnnotationStagingResult]
			}).ShouldNot(BeEmpty())
			Expect(staging.Cancel(ctx, logger, "staging-guid")).To(Succeed())
			Expect(jobs(Default)[0].Annotations).NotTo(HaveKey(k8s.AnnotationCancelled))
		})

		DescribeTable("records a failure with the error id CC's sanitizer would give it",
			func(reason, callback string) {
				Expect(staging.Complete(ctx, logger, "staging-guid", &models.StagingCompletedRequest{Failed: true, FailureReason: reason})).To(Succeed())
				Expect(jobs(Default)[0].Annotations[k8s.AnnotationStagingResult]).To(MatchJSON(callback))
			},
			Entry("detect failed", "Exited with status 222", `{"error":{"id":"NoAppDetectedError","message":"staging failed"}}`),
			Entry("compile failed", "builder exited 223", `{"error":{"id":"BuildpackCompileFailed","message":"staging failed"}}`),
			Entry("release failed", "builder exited 224", `{"error":{"id":"BuildpackReleaseFailed","message":"staging failed"}}`),
			Entry("no room", "insufficient resources: memory", `{"error":{"id":"InsufficientResources","message":"insufficient resources: memory"}}`),
			Entry("no cell", "found no compatible cell", `{"error":{"id":"NoCompatibleCell","message":"found no compatible cell"}}`),
			Entry("anything else", "downloading app bits: 404", `{"error":{"id":"StagingError","message":"downloading app bits: 404"}}`),
			Entry("an exit code only in the middle", "exit 222 while uploading", `{"error":{"id":"StagingError","message":"exit 222 while uploading"}}`),
		)

		It("refuses a result that is not JSON and records nothing", func() {
			err := staging.Complete(ctx, logger, "staging-guid", &models.StagingCompletedRequest{Result: "not json"})
			Expect(models.IsInvalid(err)).To(BeTrue(), "%v", err)
			Expect(jobs(Default)[0].Annotations).NotTo(HaveKey(k8s.AnnotationStagingResult))
		})
	})
})

var _ = Describe("BuildTask", func() {
	It("limits the task's container to the memory and disk it was given, and requests them", func() {
		objects, err := k8s.NewBuilder(config.Default().LRP).BuildTask(&models.TaskRequest{
			GUID: "t", Name: "migrate", AppGUID: "a", MemoryMB: 256, DiskMB: 1024,
			Lifecycle: models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{Image: "busybox"}},
		}, "ns")
		Expect(err).NotTo(HaveOccurred())
		resources := objects.Job.Spec.Template.Spec.Containers[0].Resources
		Expect(resources.Limits.Memory().Value()).To(BeEquivalentTo(256 << 20))
		Expect(resources.Limits.StorageEphemeral().Value()).To(BeEquivalentTo(1024 << 20))
		Expect(resources.Requests.Memory().Value()).To(BeEquivalentTo(256 << 20))
		Expect(resources.Requests.StorageEphemeral().Value()).To(BeEquivalentTo(1024 << 20))
	})
})
