package k8s_test

import (
	"errors"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/config"
	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

var _ = Describe("An OPI buildpack staging's pod", func() {
	var (
		cfg config.Config
		req *models.StagingRequest
	)

	BeforeEach(func() {
		cfg = config.Default()
		cfg.LRP.RunnerImage = "registry.example.com/cf/iris:1.2"
		cfg.Staging.StackImage = "registry.example.com/cf/cflinuxfs4:1.200"
		cfg.Staging.LifecycleBundleURL = "https://file-server/buildpack_app_lifecycle.tgz"
		cfg.Staging.IrisURL = "http://iris:8085"
		req = &models.StagingRequest{
			AppGUID: "app-guid", AppName: "dora", CompletionCallback: "https://cc/internal/v3/staging/sg/build_completed",
			MemoryMB: 1024, DiskMB: 4096,
			Lifecycle: models.StagingLifecycle{BuildpackLifecycle: &models.StagingBuildpackLifecycle{
				AppBitsDownloadURI: "https://cc/bits", DropletUploadURI: "https://cc-uploader/v1/droplet/sg",
				Buildpacks: []models.Buildpack{{Name: "ruby_buildpack", Key: "ruby-key", URL: "https://cc/ruby.zip"}},
			}},
		}
	})

	build := func() *k8s.StagingObjects {
		GinkgoHelper()
		completion, err := k8s.NewStagingCompletion("")
		Expect(err).NotTo(HaveOccurred())
		objects, err := k8s.NewBuilder(cfg.LRP).BuildStaging("sg", req, "cf-workloads", cfg.Staging, completion)
		Expect(err).NotTo(HaveOccurred())
		return objects
	}

	It("runs CC's staging recipe with the runner in the stack's image, then reports from a container of Iris's image", func() {
		objects := build()
		spec := objects.Job.Spec.Template.Spec
		Expect(spec.InitContainers).To(HaveLen(2))
		Expect(spec.InitContainers[0].Name).To(Equal(k8s.RunnerInitContainerName))
		stage := spec.InitContainers[1]
		Expect(stage.Name).To(Equal(k8s.StagingRunnerName))
		Expect(stage.Image).To(Equal("registry.example.com/cf/cflinuxfs4:1.200"))
		Expect(stage.Command).To(Equal([]string{"/iris-runner/iris", "actions", "--recipe", "/etc/iris-recipe/recipe.json",
			"--report-file", "/iris-state/report.json", "--exit-zero-when-reported"}))
		Expect(stage.Resources.Limits.Memory().String()).To(Equal("1Gi"))

		reporter := spec.Containers[0]
		Expect(reporter.Name).To(Equal(k8s.StagingReporterName))
		Expect(reporter.Image).To(Equal("registry.example.com/cf/iris:1.2"))
		Expect(reporter.Command).To(Equal([]string{"/usr/local/bin/iris", "actions", "report-staging", "--report", "/iris-state/report.json", "--staging-guid", "sg"}))
		Expect(envByName(reporter)).To(HaveKeyWithValue("STAGING_COMPLETION_URL", HaveField("Value", "http://iris:8085/stage/sg/completed")))
		for _, e := range stage.Env {
			Expect(e.ValueFrom).To(BeNil(), "the stage container, which runs buildpacks, gets no secret in its env")
		}

		Expect(objects.RecipeSecret).NotTo(BeNil())
		Expect(objects.RecipeSecret.Name).To(Equal(objects.Job.Name + "-recipe"))
		recipe, err := actions.DecodeRecipe(objects.RecipeSecret.Data[k8s.RecipeSecretKey], actions.FormatJSON)
		Expect(err).NotTo(HaveOccurred())
		Expect(recipe.Action.GetSerialAction().Actions[1].GetRunAction().Path).To(Equal("/tmp/lifecycle/builder"))
		Expect(recipe.ResultFile).To(Equal("/tmp/result.json"))
	})

	DescribeTable("is refused, with the setting to fix, when Iris cannot run it",
		func(change func(*config.Config), setting string) {
			change(&cfg)
			completion, err := k8s.NewStagingCompletion("")
			Expect(err).NotTo(HaveOccurred())
			_, err = k8s.NewBuilder(cfg.LRP).BuildStaging("sg", req, "cf-workloads", cfg.Staging, completion)
			var invalid *models.InvalidRequestError
			Expect(errors.As(err, &invalid)).To(BeTrue(), "%v", err)
			Expect(err).To(MatchError(ContainSubstring(setting)))
		},
		Entry("no stack image", func(c *config.Config) { c.Staging.StackImage = "" }, "staging.stack_image"),
		Entry("no lifecycle bundle", func(c *config.Config) { c.Staging.LifecycleBundleURL = "" }, "staging.lifecycle_bundle_url"),
		Entry("no runner image", func(c *config.Config) { c.LRP.RunnerImage = "" }, "lrp.runner_image"),
	)
})
