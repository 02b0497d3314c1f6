package k8s_test

import (
	"context"
	"os"
	"path/filepath"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/ginkgomon_v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

var _ = Describe("A buildpack staging's completion token", func() {
	const ns = "cf-workloads"
	var (
		ctx       context.Context
		clientset *fake.Clientset
		staging   *k8s.StagingClient
		caFile    string
	)

	BeforeEach(func() {
		ctx = context.Background()
		logger := lagertest.NewTestLogger("k8s")
		clientset = fake.NewClientset()
		caches, err := k8s.NewCaches(clientset, []string{ns})
		Expect(err).NotTo(HaveOccurred())
		process := ifrit.Invoke(ifrit.RunFunc(caches.Run(logger)))
		DeferCleanup(func() { ginkgomon_v2.Interrupt(process) })
		caFile = filepath.Join(GinkgoT().TempDir(), "iris-ca.crt")
		Expect(os.WriteFile(caFile, []byte("-----BEGIN CERTIFICATE-----\nIris's CA\n-----END CERTIFICATE-----\n"), 0o600)).To(Succeed())
		cfg := config.Default()
		cfg.LRP.RunnerImage = "registry.example.com/cf/iris:1.2"
		cfg.Staging.StackImage = "registry.example.com/cf/cflinuxfs4:1.200"
		cfg.Staging.LifecycleBundleURL = "https://file-server/v1/static/buildpack_app_lifecycle/buildpack_app_lifecycle.tgz"
		cfg.Staging.IrisURL = "https://iris.cf-system.svc:8086"
		cfg.Staging.IrisCAFile = caFile
		staging = k8s.NewStagingClient(clientset, caches, k8s.NewBuilder(cfg.LRP), cfg.Staging, []string{ns})
	})

	stage := func(guid string) {
		Expect(staging.Stage(ctx, lagertest.NewTestLogger("k8s"), guid, &models.StagingRequest{
			AppGUID: "app-guid", AppName: "dora", CompletionCallback: "https://cc.internal/internal/v3/staging/" + guid + "/build_completed",
			MemoryMB: 1024, DiskMB: 4096,
			Lifecycle: models.StagingLifecycle{BuildpackLifecycle: &models.StagingBuildpackLifecycle{
				AppBitsDownloadURI: "https://cc/bits", DropletUploadURI: "https://cc/droplet",
			}},
		})).To(Succeed())
	}

	// secretOf is the staging's completion Secret, as the Job names it.
	secretOf := func(guid string) *corev1.Secret {
		list, err := clientset.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: k8s.LabelStagingGUID + "=" + guid})
		Expect(err).NotTo(HaveOccurred())
		Expect(list.Items).To(HaveLen(1))
		name := list.Items[0].Annotations[k8s.AnnotationStagingCompletionSecret]
		Expect(name).NotTo(BeEmpty())
		secret, err := clientset.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		return secret
	}

	It("is random per staging, kept with the CA in a Secret, and given to the reporting container only", func() {
		stage("s1")
		stage("s2")
		one, two := secretOf("s1"), secretOf("s2")
		Expect(one.Data["token"]).To(HaveLen(43)) // 32 random bytes, base64url
		Expect(one.Data["token"]).NotTo(Equal(two.Data["token"]))
		Expect(string(one.Data["ca.crt"])).To(ContainSubstring("Iris's CA"))

		list, err := clientset.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: k8s.LabelStagingGUID + "=s1"})
		Expect(err).NotTo(HaveOccurred())
		spec := list.Items[0].Spec.Template.Spec
		uploader := spec.Containers[0]
		Expect(uploader.Name).To(Equal(k8s.StagingReporterName))
		Expect(uploader.Env).To(ContainElement(corev1.EnvVar{Name: k8s.StagingCompletionTokenEnv, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: one.Name}, Key: "token"},
		}}))
		Expect(uploader.Env).To(ContainElement(corev1.EnvVar{Name: k8s.StagingCompletionCAEnv, Value: "/etc/iris-staging/ca.crt"}))
		Expect(uploader.Env).To(ContainElement(corev1.EnvVar{Name: "STAGING_COMPLETION_URL", Value: "https://iris.cf-system.svc:8086/stage/s1/completed"}))
		for _, c := range spec.InitContainers {
			for _, e := range c.Env {
				Expect(e.ValueFrom).To(BeNil(), "%s gets no secret", c.Name)
			}
			for _, m := range c.VolumeMounts {
				Expect(m.MountPath).NotTo(Equal("/etc/iris-staging"))
			}
		}
		// No token in the Job or its pod template, where Job readers see it.
		Expect(list.Items[0].String()).NotTo(ContainSubstring(string(one.Data["token"])))
	})

	It("verifies a staging's own token only", func() {
		stage("s1")
		stage("s2")
		token := string(secretOf("s1").Data["token"])
		Expect(staging.VerifyCompletionToken(ctx, "s1", token)).To(Succeed())
		Expect(staging.VerifyCompletionToken(ctx, "s2", token)).To(MatchError(models.ErrUnauthorized))
		Expect(staging.VerifyCompletionToken(ctx, "s1", token[:42])).To(MatchError(models.ErrUnauthorized))
		Expect(staging.VerifyCompletionToken(ctx, "s1", "")).To(MatchError(models.ErrUnauthorized))
		Expect(staging.VerifyCompletionToken(ctx, "unknown", token)).To(MatchError(models.ErrUnauthorized))
	})

	It("gives a docker staging, which runs no pod, no token", func() {
		Expect(staging.Stage(ctx, lagertest.NewTestLogger("k8s"), "d1", &models.StagingRequest{
			AppGUID: "app-guid", CompletionCallback: "https://cc.internal/internal/v3/staging/d1/build_completed",
			MemoryMB: 1024, DiskMB: 4096,
			Lifecycle: models.StagingLifecycle{DockerLifecycle: &models.StagingDockerLifecycle{Image: "busybox"}},
		})).To(Succeed())
		secrets, err := clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(secrets.Items).To(BeEmpty())
		Expect(staging.VerifyCompletionToken(ctx, "d1", "anything")).To(MatchError(models.ErrUnauthorized))
	})

	It("fails a staging, creating nothing, when the CA file cannot be read", func() {
		Expect(os.Remove(caFile)).To(Succeed())
		err := staging.Stage(ctx, lagertest.NewTestLogger("k8s"), "s3", &models.StagingRequest{
			AppGUID: "app-guid", CompletionCallback: "https://cc.internal/internal/v3/staging/s3/build_completed",
			MemoryMB: 1024, DiskMB: 4096,
			Lifecycle: models.StagingLifecycle{BuildpackLifecycle: &models.StagingBuildpackLifecycle{AppBitsDownloadURI: "https://cc/bits", DropletUploadURI: "https://cc/droplet"}},
		})
		Expect(err).To(MatchError(ContainSubstring("staging.iris_ca_file")))
		jobs, err := clientset.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(jobs.Items).To(BeEmpty())
	})
})
