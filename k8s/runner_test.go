package k8s_test

import (
	"code.cloudfoundry.org/bbs/models"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
)

var _ = Describe("The action runner in a pod", func() {
	runnerCfg := func() config.LRP {
		cfg := config.Default().LRP
		cfg.RunnerImage, cfg.RunnerImagePullPolicy = "registry.example.com/cf/iris:1.2", "IfNotPresent"
		return cfg
	}
	recipe := func() *actions.Recipe {
		return &actions.Recipe{Action: models.WrapAction(&models.RunAction{Path: "/bin/true", User: "vcap"}), ResultFile: "/tmp/result.json"}
	}

	It("installs the runner from Iris's image and starts the container as `iris actions` on the mounted recipe", func() {
		spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "stack:cflinuxfs4", Command: []string{"/old"}, Args: []string{"x"}}}}
		Expect(k8s.NewBuilder(runnerCfg()).AddRunner(&spec, &spec.Containers[0], "task-recipe", "--healthy-file", "/tmp/healthy")).To(Succeed())

		Expect(spec.InitContainers).To(HaveLen(1))
		install := spec.InitContainers[0]
		Expect(install.Image).To(Equal("registry.example.com/cf/iris:1.2"))
		Expect(install.ImagePullPolicy).To(Equal(corev1.PullIfNotPresent))
		Expect(install.Command).To(Equal([]string{"/usr/local/bin/iris", "actions", "install", "/iris-runner/iris"}))
		Expect(install.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
		Expect(install.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
		Expect(install.Resources.Limits.Memory().String()).To(Equal("256Mi"))

		app := spec.Containers[0]
		Expect(app.Image).To(Equal("stack:cflinuxfs4"), "the recipe runs in the stack's root file system")
		Expect(app.Command).To(Equal([]string{"/iris-runner/iris", "actions", "--recipe", "/etc/iris-recipe/recipe.json", "--report-file", "/dev/termination-log", "--healthy-file", "/tmp/healthy"}))
		Expect(app.Args).To(BeEmpty())
		Expect(app.TerminationMessagePath).To(Equal("/dev/termination-log"))
		Expect(app.TerminationMessagePolicy).To(Equal(corev1.TerminationMessageReadFile))
		Expect(app.VolumeMounts).To(ConsistOf(
			corev1.VolumeMount{Name: "iris-runner", MountPath: "/iris-runner", ReadOnly: true},
			corev1.VolumeMount{Name: "iris-recipe", MountPath: "/etc/iris-recipe", ReadOnly: true},
		))
		Expect(spec.Volumes).To(HaveLen(2))
		Expect(spec.Volumes[0].EmptyDir).NotTo(BeNil())
		Expect(spec.Volumes[1].Secret.SecretName).To(Equal("task-recipe"))
	})

	It("refuses, changing nothing, when Iris was not told its own image", func() {
		spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}
		Expect(k8s.NewBuilder(config.Default().LRP).AddRunner(&spec, &spec.Containers[0], "r")).To(MatchError(k8s.ErrNoRunnerImage))
		Expect(spec.InitContainers).To(BeEmpty())
		Expect(spec.Volumes).To(BeEmpty())
		Expect(spec.Containers[0].Command).To(BeEmpty())
	})

	It("carries the recipe as JSON the runner decodes back, and refuses one BBS would refuse", func() {
		secret, err := k8s.RecipeSecret("t1-recipe", "ns", map[string]string{"a": "b"}, recipe())
		Expect(err).NotTo(HaveOccurred())
		Expect(secret.Namespace).To(Equal("ns"))
		Expect(secret.Labels).To(HaveKeyWithValue("a", "b"))
		decoded, err := actions.DecodeRecipe(secret.Data[k8s.RecipeSecretKey], actions.FormatJSON)
		Expect(err).NotTo(HaveOccurred())
		Expect(decoded.Action.GetRunAction().Path).To(Equal("/bin/true"))
		Expect(decoded.ResultFile).To(Equal("/tmp/result.json"))

		_, err = k8s.RecipeSecret("bad", "ns", nil, &actions.Recipe{})
		Expect(err).To(MatchError(ContainSubstring("action")))
	})
})
