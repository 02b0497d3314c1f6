package k8s_test

import (
	"context"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/bifrost/bbs/bbstest"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	irismodels "github.com/iris-cf/iris/models"
)

// mountsOf are the volume names a container mounts.
func mountsOf(c corev1.Container) []string {
	var names []string
	for _, m := range c.VolumeMounts {
		names = append(names, m.Name)
	}
	return names
}

func containerNames(cs []corev1.Container) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

var _ = Describe("The upload sidecar of recipe pods", func() {
	const identity = "cc-uploader-client"
	var lrpCfg config.LRP

	BeforeEach(func() {
		lrpCfg = config.Default().LRP
		lrpCfg.RunnerImage, lrpCfg.RunnerImagePullPolicy = "registry.example.com/cf/iris:1.2", "IfNotPresent"
	})

	stagingTask := func() *k8s.RecipeTask {
		def := bbstest.BuildpackStaging(bbstest.Staging{
			Task: bbstest.Task{Space: bbstest.Space{AppName: "dora", SpaceGUID: "space-guid", SpaceName: "dev", OrgGUID: "org-guid", OrgName: "acme"},
				AppGUID: "app-guid", CallbackURL: "https://cc/internal/v3/staging/sg/build_completed?start=true",
				LifecycleURL: "http://file-server/buildpack_app_lifecycle.tgz"},
			Stack:      "cflinuxfs4",
			PackageURL: "https://blobstore/package.zip", PackageSHA256: "abc",
			BuildpackURL: "https://blobstore/ruby.zip", BuildpackKey: "ruby-key",
			DropletUploadURL: "https://cc-uploader.service.cf.internal:9091/v1/droplet/sg?cc-droplet-upload-uri=x",
			CacheUploadURL:   "https://cc-uploader.service.cf.internal:9091/v1/build_artifacts/sg",
		})
		return &k8s.RecipeTask{
			GUID: "sg", Domain: "cf-app-staging", SourceType: k8s.SourceTypeStaging, AppGUID: "app-guid",
			Image: "registry.example.com/cf/cflinuxfs4:1.200", Recipe: actions.RecipeFromTaskDefinition(def),
			MemoryMB: 1024, DiskMB: 4096, CPUWeight: 50, CompletionCallback: def.CompletionCallbackUrl,
		}
	}
	buildTask := func(task *k8s.RecipeTask, opts ...k8s.BuilderOption) corev1.PodSpec {
		GinkgoHelper()
		objects, err := k8s.NewBuilder(lrpCfg, opts...).BuildRecipeTask(task, "cf-workloads")
		Expect(err).NotTo(HaveOccurred())
		return objects.Job.Spec.Template.Spec
	}

	It("relays a BBS staging's uploads: only the sidecar mounts the identity; the stack's container gets the socket and the flag", func() {
		spec := buildTask(stagingTask(), k8s.WithUploadIdentity(identity))

		Expect(containerNames(spec.InitContainers)).To(Equal([]string{k8s.RunnerInitContainerName, k8s.UploadProxyContainerName}))
		sidecar := spec.InitContainers[1]
		Expect(sidecar.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)), "a native sidecar")
		Expect(sidecar.Image).To(Equal("registry.example.com/cf/iris:1.2"))
		Expect(sidecar.ImagePullPolicy).To(Equal(corev1.PullIfNotPresent))
		Expect(sidecar.Command).To(Equal([]string{"/usr/local/bin/iris", "actions", "upload-proxy",
			"--listen", "/iris-upload/upload.sock", "--recipe", "/etc/iris-recipe/recipe.json",
			"--tls-ca-file", "/etc/iris-upload-identity/ca.crt",
			"--tls-cert-file", "/etc/iris-upload-identity/tls.crt",
			"--tls-key-file", "/etc/iris-upload-identity/tls.key"}))
		Expect(sidecar.VolumeMounts).To(ConsistOf(
			corev1.VolumeMount{Name: k8s.UploadProxyVolumeName, MountPath: "/iris-upload"},
			corev1.VolumeMount{Name: k8s.RecipeVolumeName, MountPath: "/etc/iris-recipe", ReadOnly: true},
			corev1.VolumeMount{Name: k8s.UploadIdentityVolumeName, MountPath: "/etc/iris-upload-identity", ReadOnly: true},
		))
		Expect(sidecar.StartupProbe.Exec.Command).To(Equal([]string{"/usr/local/bin/iris", "actions", "healthy", "/iris-upload/upload.sock"}))
		Expect(sidecar.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
		Expect(sidecar.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))

		var identityVolume, socketVolume *corev1.Volume
		for i, v := range spec.Volumes {
			switch v.Name {
			case k8s.UploadIdentityVolumeName:
				identityVolume = &spec.Volumes[i]
			case k8s.UploadProxyVolumeName:
				socketVolume = &spec.Volumes[i]
			}
		}
		Expect(identityVolume).NotTo(BeNil())
		Expect(identityVolume.Secret.SecretName).To(Equal(identity))
		Expect(socketVolume).NotTo(BeNil())
		Expect(socketVolume.EmptyDir).NotTo(BeNil())

		Expect(spec.Containers).To(HaveLen(1))
		task := spec.Containers[0]
		Expect(task.Name).To(Equal(k8s.TaskContainerName))
		Expect(task.Image).To(Equal("registry.example.com/cf/cflinuxfs4:1.200"))
		Expect(mountsOf(task)).NotTo(ContainElement(k8s.UploadIdentityVolumeName), "buildpack and app code run here")
		Expect(mountsOf(task)).To(ContainElement(k8s.UploadProxyVolumeName))
		Expect(task.Command).To(Equal([]string{"/iris-runner/iris", "actions", "--recipe", "/etc/iris-recipe/recipe.json",
			"--report-file", "/dev/termination-log", "--upload-proxy", "/iris-upload/upload.sock"}))
		for _, e := range task.Env {
			if e.ValueFrom != nil {
				Expect(e.ValueFrom.SecretKeyRef).To(BeNil())
			}
		}
		Expect(mountsOf(spec.InitContainers[0])).NotTo(ContainElement(k8s.UploadIdentityVolumeName))
		// The tenant's processes cannot reach the sidecar's files through /proc.
		Expect(spec.ShareProcessNamespace).To(Or(BeNil(), HaveValue(BeFalse())))
	})

	It("leaves a BBS task's pod as it is without an identity configured, or when its recipe uploads nothing", func() {
		spec := buildTask(stagingTask())
		Expect(containerNames(spec.InitContainers)).To(Equal([]string{k8s.RunnerInitContainerName}))
		Expect(spec.Containers[0].Command).To(Equal([]string{"/iris-runner/iris", "actions", "--recipe", "/etc/iris-recipe/recipe.json",
			"--report-file", "/dev/termination-log"}))
		Expect(mountsOf(spec.Containers[0])).NotTo(ContainElement(k8s.UploadProxyVolumeName))
		for _, v := range spec.Volumes {
			Expect(v.Name).NotTo(BeElementOf(k8s.UploadProxyVolumeName, k8s.UploadIdentityVolumeName))
		}

		runTask := stagingTask()
		runTask.Recipe = &actions.Recipe{Action: models.WrapAction(&models.RunAction{Path: "/tmp/lifecycle/launcher", User: "vcap"})}
		Expect(buildTask(runTask, k8s.WithUploadIdentity(identity))).To(Equal(buildTask(runTask)))
	})

	Describe("in an OPI buildpack staging", func() {
		var cfg config.Config
		var req *irismodels.StagingRequest

		BeforeEach(func() {
			cfg = config.Default()
			cfg.LRP = lrpCfg
			cfg.Staging.StackImage = "registry.example.com/cf/cflinuxfs4:1.200"
			cfg.Staging.LifecycleBundleURL = "https://file-server/buildpack_app_lifecycle.tgz"
			cfg.Staging.IrisURL = "http://iris:8085"
			req = &irismodels.StagingRequest{
				AppGUID: "app-guid", AppName: "dora", CompletionCallback: "https://cc/internal/v3/staging/sg/build_completed",
				MemoryMB: 1024, DiskMB: 4096,
				Lifecycle: irismodels.StagingLifecycle{BuildpackLifecycle: &irismodels.StagingBuildpackLifecycle{
					AppBitsDownloadURI: "https://cc/bits", DropletUploadURI: "https://cc-uploader/v1/droplet/sg",
					Buildpacks: []irismodels.Buildpack{{Name: "ruby_buildpack", Key: "ruby-key", URL: "https://cc/ruby.zip"}},
				}},
			}
		})
		build := func(opts ...k8s.BuilderOption) corev1.PodSpec {
			GinkgoHelper()
			completion, err := k8s.NewStagingCompletion("")
			Expect(err).NotTo(HaveOccurred())
			objects, err := k8s.NewBuilder(cfg.LRP, opts...).BuildStaging("sg", req, "cf-workloads", cfg.Staging, completion)
			Expect(err).NotTo(HaveOccurred())
			return objects.Job.Spec.Template.Spec
		}

		It("starts the sidecar before the stage container, which gets the socket but not the identity", func() {
			spec := build(k8s.WithUploadIdentity(identity))
			Expect(containerNames(spec.InitContainers)).To(Equal([]string{k8s.RunnerInitContainerName, k8s.UploadProxyContainerName, k8s.StagingRunnerName}))
			Expect(spec.InitContainers[1].RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
			Expect(mountsOf(spec.InitContainers[1])).To(ContainElements(k8s.UploadIdentityVolumeName, k8s.RecipeVolumeName, k8s.UploadProxyVolumeName))
			stage := spec.InitContainers[2]
			Expect(stage.Command).To(Equal([]string{"/iris-runner/iris", "actions", "--recipe", "/etc/iris-recipe/recipe.json",
				"--report-file", "/iris-state/report.json", "--exit-zero-when-reported", "--upload-proxy", "/iris-upload/upload.sock"}))
			Expect(mountsOf(stage)).To(ContainElement(k8s.UploadProxyVolumeName))
			Expect(mountsOf(stage)).NotTo(ContainElement(k8s.UploadIdentityVolumeName))
			Expect(mountsOf(spec.Containers[0])).NotTo(ContainElements(k8s.UploadIdentityVolumeName, k8s.UploadProxyVolumeName))
		})

		It("is unchanged without an identity configured", func() {
			spec := build()
			Expect(containerNames(spec.InitContainers)).To(Equal([]string{k8s.RunnerInitContainerName, k8s.StagingRunnerName}))
			Expect(spec.InitContainers[1].Command).NotTo(ContainElement("--upload-proxy"))
		})
	})

	Describe("creating a BBS staging task", func() {
		const ns = "cf-workloads"
		var (
			ctx       context.Context
			clientset *fake.Clientset
			client    *k8s.RecipeTaskClient
		)

		BeforeEach(func() {
			ctx = context.Background()
			clientset = fake.NewClientset()
			caches, err := k8s.NewCaches(clientset, []string{ns})
			Expect(err).NotTo(HaveOccurred())
			client = k8s.NewRecipeTaskClient(clientset, caches, k8s.NewBuilder(lrpCfg, k8s.WithUploadIdentity(identity)), []string{ns})
		})

		It("is refused, naming the Secret, and writes nothing when the namespace lacks the upload identity", func() {
			err := client.Create(ctx, lagertest.NewTestLogger("create"), stagingTask())
			Expect(err).To(MatchError(k8s.ErrNoUploadIdentity))
			Expect(err).To(MatchError(ContainSubstring("Secret cf-workloads/cc-uploader-client")))
			jobs, err := clientset.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(jobs.Items).To(BeEmpty())
			secrets, err := clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(secrets.Items).To(BeEmpty(), "no recipe or callback Secret left behind")
		})

		It("creates the Job when the namespace has it", func() {
			_, err := clientset.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: identity, Namespace: ns}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(client.Create(ctx, lagertest.NewTestLogger("create"), stagingTask())).To(Succeed())
			jobs, err := clientset.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(jobs.Items).To(HaveLen(1))
		})
	})
})
