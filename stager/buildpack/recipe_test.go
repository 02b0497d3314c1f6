package buildpack_test

import (
	bbsmodels "code.cloudfoundry.org/bbs/models"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/stager/buildpack"
)

// An OPI buildpack staging request as CC (7becaa7144, lib/cloud_controller/
// opi/stager_client.rb) sends it.
func opiStaging() *models.StagingRequest {
	return &models.StagingRequest{
		AppGUID: "app-guid", AppName: "dora", CompletionCallback: "https://cc:9023/internal/v3/staging/sg/build_completed?start=true",
		Environment: []models.EnvironmentVariable{{Name: "VCAP_APPLICATION", Value: `{"name":"dora"}`}, {Name: "LANG", Value: "en_US.UTF-8"}},
		MemoryMB:    1024, DiskMB: 4096, CPUWeight: 50,
		Lifecycle: models.StagingLifecycle{BuildpackLifecycle: &models.StagingBuildpackLifecycle{
			AppBitsDownloadURI: "https://cc:9023/internal/v4/packages/p/download",
			DropletUploadURI:   "http://cc-uploader:9090/v1/droplet/sg?cc-droplet-upload-uri=https://cc/droplets/d/upload",
			Buildpacks: []models.Buildpack{
				{Name: "ruby_buildpack", Key: "ruby-key", URL: "https://cc/buildpacks/ruby.zip", SHA256: "abc"},
				{Name: "custom", Key: "https://github.com/org/bp", URL: "https://github.com/org/bp"},
			},
			BuildpackCacheDownloadURI:       "https://cc/cache/download",
			BuildpackCacheUploadURI:         "http://cc-uploader:9090/v1/build_artifacts/sg",
			BuildpackCacheChecksum:          "def",
			BuildpackCacheChecksumAlgorithm: "sha256",
		}},
	}
}

var opts = buildpack.Options{LifecycleBundleURL: "https://file-server/buildpack_app_lifecycle.tgz", Stack: "cflinuxfs4"}

var _ = Describe("The staging recipe of an OPI buildpack staging", func() {
	It("is CC's staging recipe for Diego: cached lifecycle and buildpacks, downloads, the builder, uploads", func() {
		recipe, err := buildpack.Recipe(opiStaging(), opts)
		Expect(err).NotTo(HaveOccurred())
		Expect(recipe.LogSource).To(Equal("STG"))
		Expect(recipe.ResultFile).To(Equal("/tmp/result.json"))
		Expect(recipe.CachedDependencies).To(Equal([]*bbsmodels.CachedDependency{
			{From: "https://file-server/buildpack_app_lifecycle.tgz", To: "/tmp/lifecycle", CacheKey: "buildpack-cflinuxfs4-lifecycle"},
			// md5("ruby-key") (md5sum); the custom buildpack is the builder's to fetch.
			{Name: "ruby_buildpack", From: "https://cc/buildpacks/ruby.zip", To: "/tmp/buildpacks/fc266d39967b798f012c820d9c9ab0b6",
				CacheKey: "ruby-key", ChecksumAlgorithm: "sha256", ChecksumValue: "abc"},
		}))
		steps := recipe.Action.GetSerialAction().Actions
		Expect(steps).To(HaveLen(3))
		downloads := steps[0].GetParallelAction().Actions
		Expect(downloads[0].GetDownloadAction()).To(Equal(&bbsmodels.DownloadAction{
			Artifact: "app package", From: "https://cc:9023/internal/v4/packages/p/download", To: "/tmp/app", User: "vcap",
		}))
		Expect(downloads[1].GetTryAction().Action.GetDownloadAction()).To(Equal(&bbsmodels.DownloadAction{
			Artifact: "build artifacts cache", From: "https://cc/cache/download", To: "/tmp/cache", User: "vcap",
			ChecksumAlgorithm: "sha256", ChecksumValue: "def",
		}), "a missing or broken cache must not fail staging")
		builder := steps[1].GetRunAction()
		Expect(builder.Path).To(Equal("/tmp/lifecycle/builder"))
		Expect(builder.Args).To(Equal([]string{
			"-buildpackOrder=ruby-key,https://github.com/org/bp", "-skipCertVerify=false", "-skipDetect=false",
			"-buildDir=/tmp/app", "-outputDroplet=/tmp/droplet", "-outputMetadata=/tmp/result.json",
			"-outputBuildArtifactsCache=/tmp/output-cache", "-buildpacksDir=/tmp/buildpacks", "-buildArtifactsCacheDir=/tmp/cache",
		}))
		Expect(builder.Env).To(ContainElement(&bbsmodels.EnvironmentVariable{Name: "VCAP_APPLICATION", Value: `{"name":"dora"}`}))
		progress := steps[2].GetEmitProgressAction()
		Expect(progress.StartMessage).To(Equal("Uploading droplet, build artifacts cache..."))
		uploads := progress.Action.GetParallelAction().Actions
		Expect(uploads[0].GetUploadAction().To).To(Equal("http://cc-uploader:9090/v1/droplet/sg?cc-droplet-upload-uri=https://cc/droplets/d/upload"))
		Expect(uploads[0].GetUploadAction().From).To(Equal("/tmp/droplet"))
		Expect(uploads[1].GetUploadAction().To).To(Equal("http://cc-uploader:9090/v1/build_artifacts/sg"))
		Expect(uploads[1].GetUploadAction().From).To(Equal("/tmp/output-cache"))
	})

	It("puts each buildpack where the builder looks for it: /tmp/buildpacks/<md5 of its key>", func() {
		Expect(buildpack.BuildpackDir("test-buildpack-key")).To(Equal("/tmp/buildpacks/334e1c4bbd971cbe3319d0c7620ce58f"))
	})

	It("skips detection when any buildpack says so, and leaves out what CC did not send", func() {
		req := opiStaging()
		bp := req.Lifecycle.BuildpackLifecycle
		bp.Buildpacks[0].SkipDetect = true
		bp.BuildpackCacheDownloadURI, bp.BuildpackCacheUploadURI = "", ""
		recipe, err := buildpack.Recipe(req, opts)
		Expect(err).NotTo(HaveOccurred())
		steps := recipe.Action.GetSerialAction().Actions
		Expect(steps[0].GetParallelAction().Actions).To(HaveLen(1))
		Expect(steps[1].GetRunAction().Args).To(ContainElement("-skipDetect=true"))
		Expect(steps[2].GetEmitProgressAction().Action.GetParallelAction().Actions).To(HaveLen(1))
	})

	DescribeTable("refuses what it cannot stage",
		func(change func(*models.StagingRequest, *buildpack.Options), message string) {
			req, o := opiStaging(), opts
			change(req, &o)
			_, err := buildpack.Recipe(req, o)
			var invalid *models.InvalidRequestError
			Expect(err).To(BeAssignableToTypeOf(invalid))
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("no lifecycle bundle configured", func(_ *models.StagingRequest, o *buildpack.Options) { o.LifecycleBundleURL = "" }, "staging.lifecycle_bundle_url"),
		Entry("no app bits", func(r *models.StagingRequest, _ *buildpack.Options) {
			r.Lifecycle.BuildpackLifecycle.AppBitsDownloadURI = ""
		}, "app_bits_download_uri"),
		Entry("a buildpack without a key", func(r *models.StagingRequest, _ *buildpack.Options) {
			r.Lifecycle.BuildpackLifecycle.Buildpacks[0].Key = ""
		}, "key"),
	)
})
