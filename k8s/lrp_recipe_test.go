package k8s_test

import (
	"context"
	"errors"
	"time"

	bbsmodels "code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/workload"
)

// buildpackRecipe is the runner's part of a buildpack LRP as CC desires it:
// the lifecycle as a cached dependency, the droplet downloaded to "." in
// setup, the launcher with the start command, and a healthcheck monitor.
func buildpackRecipe() *actions.Recipe {
	return &actions.Recipe{
		LogSource:            "CELL",
		EnvironmentVariables: []*bbsmodels.EnvironmentVariable{{Name: "LANG", Value: "en_US.UTF-8"}},
		CachedDependencies: []*bbsmodels.CachedDependency{{
			From: "https://file-server:8447/v1/static/buildpack_app_lifecycle/buildpack_app_lifecycle.tgz", To: "/tmp/lifecycle", CacheKey: "buildpack-cflinuxfs4-lifecycle",
		}},
		Setup: bbsmodels.WrapAction(bbsmodels.Serial(&bbsmodels.DownloadAction{
			From: "http://cc:9022/internal/v4/droplets/d/c/download", To: ".", CacheKey: "droplets-app-guid-v1", User: "vcap",
			ChecksumAlgorithm: "sha256", ChecksumValue: "abc",
		})),
		Action: bbsmodels.WrapAction(bbsmodels.Codependent(&bbsmodels.RunAction{
			Path: "/tmp/lifecycle/launcher", Args: []string{"app", "./server", "{}"}, User: "vcap",
			Env: []*bbsmodels.EnvironmentVariable{{Name: "VCAP_SERVICES", Value: `{"db":[{"credentials":{"password":"p"}}]}`}},
		})),
		Monitor: bbsmodels.WrapAction(bbsmodels.Timeout(bbsmodels.Parallel(&bbsmodels.RunAction{
			Path: "/tmp/lifecycle/healthcheck", Args: []string{"-port=8080"}, User: "vcap",
		}), 10*time.Minute)),
		StartTimeoutMs: 60000,
	}
}

func buildpackWorkload() *workload.DesiredLRP {
	return &workload.DesiredLRP{
		ProcessGUID: "app-guid-v1", GUID: "app-guid", Version: "v1", ProcessType: "web",
		AppGUID: "the-app", AppName: "dora", SpaceGUID: "space-guid", SpaceName: "dev", OrgGUID: "org-guid",
		Instances: 2, Ports: []int32{8080}, Env: map[string]string{},
		Resources: workload.Resources{MemoryMB: 256, DiskMB: 1024},
		Process: workload.Process{
			Image: "registry.example.com/cf/cflinuxfs4:1.200", Stack: "cflinuxfs4", User: "vcap",
			Recipe: buildpackRecipe(),
		},
		HealthChecks: workload.HealthChecks{StartTimeoutMs: 60000},
	}
}

func runnerConfig() config.LRP {
	cfg := config.Default().LRP
	cfg.RunnerImage = "registry.example.com/cf/iris:1.2"
	return cfg
}

func volumeNamed(spec corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

func mountPaths(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, vm := range c.VolumeMounts {
		m[vm.MountPath] = vm.Name
	}
	return m
}

// sourceOf is a recipe source that knows one StatefulSet's recipe.
func sourceOf(name string, recipe *actions.Recipe) k8s.RecipeSource {
	return func(sts *appsv1.StatefulSet) (*actions.Recipe, bool, error) {
		if sts.Name != name {
			return nil, false, nil
		}
		return recipe, true, nil
	}
}

var _ = Describe("A buildpack LRP's recipe", func() {
	const ns = "cf-workloads"
	var (
		cfg     config.LRP
		lrp     *workload.DesiredLRP
		objects *k8s.LRPObjects
		app     corev1.Container
		spec    corev1.PodSpec
	)

	BeforeEach(func() {
		cfg = runnerConfig()
		lrp = buildpackWorkload()
	})

	JustBeforeEach(func() {
		var err error
		objects, err = k8s.NewBuilder(cfg).Build(lrp, ns)
		Expect(err).NotTo(HaveOccurred())
		spec = objects.StatefulSet.Spec.Template.Spec
		Expect(spec.Containers).To(HaveLen(1))
		app = spec.Containers[0]
	})

	It("runs in the stack's image, started by the runner on the recipe Secret", func() {
		Expect(app.Image).To(Equal("registry.example.com/cf/cflinuxfs4:1.200"))
		Expect(app.Command).To(Equal([]string{"/iris-runner/iris", "actions",
			"--recipe", "/etc/iris-recipe/recipe.json", "--report-file", "/dev/termination-log",
			"--cache-dir", "/iris-state/cache", "--healthy-file", "/iris-state/healthy"}))
		Expect(spec.InitContainers).To(HaveLen(1))
		Expect(spec.InitContainers[0].Image).To(Equal("registry.example.com/cf/iris:1.2"))
		Expect(volumeNamed(spec, "iris-recipe").Secret.SecretName).To(Equal(objects.StatefulSet.Name + "-recipe"))
	})

	It("carries the recipe in a Secret labelled as the LRP, with its digest, and not CC's environment in the pod spec", func() {
		secret := objects.RecipeSecret
		Expect(secret).NotTo(BeNil())
		Expect(secret.Name).To(Equal(objects.StatefulSet.Name + "-recipe"))
		Expect(secret.Namespace).To(Equal(ns))
		Expect(secret.Labels).To(Equal(objects.StatefulSet.Labels), "the reconciler watches Secrets labelled as LRPs")
		Expect(secret.Annotations).To(HaveKeyWithValue(k8s.AnnotationRecipeSHA256, MatchRegexp(`^[0-9a-f]{64}$`)))
		decoded, err := actions.DecodeRecipe(secret.Data[k8s.RecipeSecretKey], actions.FormatJSON)
		Expect(err).NotTo(HaveOccurred())
		Expect(decoded).To(Equal(lrp.Process.Recipe))

		env := envByName(app)
		Expect(env).NotTo(HaveKey("VCAP_SERVICES"))
		Expect(env).To(HaveKeyWithValue("HOME", corev1.EnvVar{Name: "HOME", Value: "/home/vcap"}))
		Expect(env).To(HaveKey("CF_INSTANCE_INDEX"), "the instance's own variables come from the pod")
	})

	It("keeps the download cache on an emptyDir beside the runner, and the droplet's home on another", func() {
		Expect(volumeNamed(spec, k8s.RecipeStateVolumeName).EmptyDir).NotTo(BeNil())
		Expect(volumeNamed(spec, "home").EmptyDir).NotTo(BeNil())
		Expect(mountPaths(app)).To(HaveKeyWithValue("/iris-state", k8s.RecipeStateVolumeName))
		Expect(mountPaths(app)).To(HaveKeyWithValue("/home/vcap", "home"))
	})

	It("is ready once the runner's monitor passed, and leaves liveness and the start timeout to the runner", func() {
		Expect(app.ReadinessProbe).NotTo(BeNil())
		Expect(app.ReadinessProbe.Exec.Command).To(Equal([]string{"/iris-runner/iris", "actions", "healthy", "/iris-state/healthy"}))
		Expect(app.LivenessProbe).To(BeNil())
		Expect(app.StartupProbe).To(BeNil())
	})

	Context("with a check definition (the monitor left out of the recipe)", func() {
		BeforeEach(func() {
			lrp.Process.Recipe.Monitor = nil
			lrp.HealthChecks.Liveness = &workload.HealthCheck{Type: workload.CheckTCP, Port: 8080}
		})

		It("probes the checks and passes no healthy file", func() {
			Expect(app.Command).NotTo(ContainElement("--healthy-file"))
			Expect(app.LivenessProbe.TCPSocket.Port.IntValue()).To(Equal(8080))
			Expect(app.ReadinessProbe.TCPSocket.Port.IntValue()).To(Equal(8080))
			Expect(app.StartupProbe).NotTo(BeNil())
		})
	})

	Context("with a read-only root file system", func() {
		BeforeEach(func() { cfg.ReadOnlyRootFilesystem = true })

		It("still has every path the recipe writes writable", func() {
			Expect(app.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
			mounts := mountPaths(app)
			Expect(mounts).To(HaveKey("/tmp"), "the lifecycle goes to /tmp/lifecycle, downloads in flight to /tmp")
			Expect(mounts).To(HaveKey("/home/vcap"), "the droplet")
			Expect(mounts).To(HaveKey("/iris-state"), "the cache and the healthy file")
		})
	})

	It("is refused, with the setting to fix, when Iris was not told its own image", func() {
		_, err := k8s.NewBuilder(config.Default().LRP).Build(buildpackWorkload(), ns)
		var invalid *models.InvalidRequestError
		Expect(errors.As(err, &invalid)).To(BeTrue(), "%v", err)
		Expect(err).To(MatchError(ContainSubstring("lrp.runner_image")))
	})

	Describe("as owned by the StatefulSet", func() {
		var sts *appsv1.StatefulSet

		JustBeforeEach(func() {
			sts = objects.StatefulSet.DeepCopy()
			sts.UID = "sts-uid"
		})

		It("is rebuilt from the StatefulSet with the recipe source, owned, with the same digest", func() {
			owned, err := k8s.NewBuilder(cfg, k8s.WithRecipeSource(sourceOf(sts.Name, buildpackRecipe()))).OwnedObjects(sts)
			Expect(err).NotTo(HaveOccurred())
			Expect(owned.RecipeSecretName).To(Equal(sts.Name + "-recipe"))
			Expect(owned.RecipeSecret.OwnerReferences).To(Equal([]metav1.OwnerReference{k8s.OwnerReference(sts)}))
			Expect(owned.RecipeSecret.Data).To(Equal(objects.RecipeSecret.Data))
			Expect(owned.RecipeSecret.Annotations).To(Equal(objects.RecipeSecret.Annotations))
			Expect(k8s.StatefulSetNameOfOwned(owned.RecipeSecret)).To(Equal(sts.Name))
		})

		It("is only named (to be adopted) without a source", func() {
			owned, err := k8s.NewBuilder(cfg).OwnedObjects(sts)
			Expect(err).NotTo(HaveOccurred())
			Expect(owned.RecipeSecretName).To(Equal(sts.Name + "-recipe"))
			Expect(owned.RecipeSecret).To(BeNil())
		})

		It("fails the rebuild when the source cannot read the record", func() {
			broken := func(*appsv1.StatefulSet) (*actions.Recipe, bool, error) {
				return nil, false, errors.New("bad annotation")
			}
			_, err := k8s.NewBuilder(cfg, k8s.WithRecipeSource(broken)).OwnedObjects(sts)
			Expect(err).To(MatchError(ContainSubstring("bad annotation")))
		})
	})
})

var _ = Describe("LRPClient.Desire of a recipe LRP", func() {
	const ns = "cf-workloads"
	var (
		ctx       context.Context
		clientset *fake.Clientset
		client    *k8s.LRPClient
		name      string
	)

	BeforeEach(func() {
		ctx = context.Background()
		clientset = fake.NewClientset()
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		builder := k8s.NewBuilder(runnerConfig())
		client = k8s.NewLRPClient(clientset, caches, builder, []string{ns}, clocktesting.NewFakePassiveClock(time.Now()))
		objects, err := builder.Build(buildpackWorkload(), ns)
		Expect(err).NotTo(HaveOccurred())
		name = objects.StatefulSet.Name
	})

	It("writes the recipe Secret before the StatefulSet, then makes the StatefulSet own it", func() {
		Expect(client.Desire(ctx, lagertest.NewTestLogger("desire"), buildpackWorkload())).To(Succeed())
		var order []string
		for _, a := range clientset.Actions() {
			if a.GetVerb() == "patch" {
				order = append(order, a.GetResource().Resource)
			}
		}
		Expect(order[0]).To(Equal("secrets"), "no instance may start without its recipe")
		Expect(order).To(ContainElement("statefulsets"))
		sts, err := clientset.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		secret, err := clientset.CoreV1().Secrets(ns).Get(ctx, name+"-recipe", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(secret.OwnerReferences).To(Equal([]metav1.OwnerReference{k8s.OwnerReference(sts)}))
		Expect(secret.Annotations).NotTo(HaveKey(k8s.AnnotationDesiredAt), "owned: no longer a desire in progress")
		Expect(secret.Annotations).To(HaveKey(k8s.AnnotationRecipeSHA256))
		Expect(secret.Data).To(HaveKey(k8s.RecipeSecretKey))
	})

	It("removes the recipe Secret again when the StatefulSet cannot be written", func() {
		clientset.PrependReactor("patch", "statefulsets", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("connection reset")
		})
		Expect(client.Desire(ctx, lagertest.NewTestLogger("desire"), buildpackWorkload())).NotTo(Succeed())
		secrets, err := clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(secrets.Items).To(BeEmpty())
	})
})

var _ = Describe("A recipe pod's crash reason", func() {
	pod := func(message string, exitCode int32) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{k8s.PodIndexLabel: "0", k8s.LabelSourceType: "APP"}},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
				Name: k8s.AppContainerName, RestartCount: 1,
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode, Message: message}},
			}}},
		}
	}

	It("is the runner's report (Diego's reason for the app's exit), not the runner's own exit status", func() {
		inst, ok := k8s.ActualInstance(pod(`{"failed":true,"failure_reason":"APP/PROC/WEB: Exited with status 2"}`, 1))
		Expect(ok).To(BeTrue())
		Expect(inst.CrashReason).To(Equal("APP/PROC/WEB: Exited with status 2"))
	})

	It("is the exit status when there is no report (not a recipe pod, or the runner was killed)", func() {
		inst, _ := k8s.ActualInstance(pod("", 137))
		Expect(inst.CrashReason).To(HaveSuffix("Exited with status 137"))
		inst, _ = k8s.ActualInstance(pod("panic: something", 2))
		Expect(inst.CrashReason).To(HaveSuffix("Exited with status 2"))
	})
})
