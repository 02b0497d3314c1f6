package actions_test

import (
	"fmt"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/bbs/models"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/actions"
)

// A staging TaskDefinition shaped as CC's buildpack StagingActionBuilder
// and TaskRecipeBuilder build it (cloud_controller_ng lib/cloud_controller/
// diego/staging_action_builder.rb), given to the runner as protobuf. Paths
// under a temp root stand in for /tmp/app, /tmp/lifecycle and friends.
var _ = Describe("a staging recipe as CC builds it (nesting)", func() {
	var (
		blobs      *blobServer
		ccUploader *blobServer
		tlsArgs    []string
		root       string
	)

	BeforeEach(func() {
		blobs = startBlobServer()
		ca := newTestCA()
		ccUploader = startMTLSBlobServer(ca)
		caFile, certFile, keyFile := ca.writeClientFiles(GinkgoT().TempDir())
		tlsArgs = []string{"--tls-ca-file", caFile, "--tls-cert-file", certFile, "--tls-key-file", keyFile}
		root = GinkgoT().TempDir()
	})

	// builder is a stand-in for the lifecycle's builder: it runs the
	// buildpack's detect, then writes droplet, cache and result.json.
	builder := func(exitCode int) []byte {
		script := fmt.Sprintf(`#!/bin/sh
set -e
for arg in "$@"; do case "$arg" in
  -buildDir=*) build="${arg#-buildDir=}" ;;
  -outputDroplet=*) droplet="${arg#-outputDroplet=}" ;;
  -outputMetadata=*) metadata="${arg#-outputMetadata=}" ;;
  -outputBuildArtifactsCache=*) cache="${arg#-outputBuildArtifactsCache=}" ;;
  -buildpacksDir=*) buildpacks="${arg#-buildpacksDir=}" ;;
esac; done
echo "-----> Detecting with $("$buildpacks"/bp/bin/detect "$build")"
[ %d -eq 0 ] || exit %d
tar -czf "$droplet" -C "$build" .
echo cache > "$cache"
printf '{"process_types":{"web":"./start"},"lifecycle_type":"buildpack"}' > "$metadata"
echo "-----> Staged with LANG=$LANG"
`, exitCode, exitCode)
		return tgzBytes([]archiveFile{{name: "builder", body: script, mode: 0o755}})
	}

	stagingTask := func(builderExit int) *models.TaskDefinition {
		lifecycle := builder(builderExit)
		buildpack := zipBytes([]archiveFile{{name: "bin/detect", body: "#!/bin/sh\necho test-buildpack\n", mode: 0o755}})
		appBits := zipBytes([]archiveFile{{name: "start", body: "#!/bin/sh\necho app\n", mode: 0o755}})
		cacheBlob := zipBytes([]archiveFile{{name: "old-cache", body: "stale"}})
		path := func(p string) string { return filepath.Join(root, p) }
		return &models.TaskDefinition{
			LogSource:            "STG",
			ResultFile:           path("result.json"),
			LegacyDownloadUser:   "vcap",
			EnvironmentVariables: []*models.EnvironmentVariable{{Name: "LANG", Value: "en_US.UTF-8"}},
			CachedDependencies: []*models.CachedDependency{
				{From: blobs.put("/lifecycle", lifecycle), To: path("lifecycle"), CacheKey: "buildpack-cflinuxfs4-lifecycle"},
				{Name: "test-buildpack", From: blobs.put("/buildpack", buildpack), To: path("buildpacks/bp"), CacheKey: "bp-key",
					ChecksumAlgorithm: "sha256", ChecksumValue: sha256Hex(buildpack)},
			},
			Action: models.WrapAction(models.Timeout(models.Serial(
				models.Parallel(
					&models.DownloadAction{Artifact: "app package", From: blobs.put("/app", appBits), To: path("app"), User: "vcap",
						ChecksumAlgorithm: "sha256", ChecksumValue: sha256Hex(appBits)},
					// The cache changed since CC recorded its checksum: not fatal.
					models.Try(&models.DownloadAction{Artifact: "build artifacts cache", From: blobs.put("/cache", cacheBlob), To: path("cache"), User: "vcap",
						ChecksumAlgorithm: "sha256", ChecksumValue: sha256Hex([]byte("old"))}),
				),
				&models.RunAction{Path: path("lifecycle/builder"), User: "vcap", Args: []string{
					"-buildpackOrder=bp", "-skipDetect=false", "-buildDir=" + path("app"), "-outputDroplet=" + path("droplet"),
					"-outputMetadata=" + path("result.json"), "-outputBuildArtifactsCache=" + path("output-cache"),
					"-buildpacksDir=" + path("buildpacks"), "-buildArtifactsCacheDir=" + path("cache"),
				}},
				models.EmitProgressFor(models.Parallel(
					&models.UploadAction{Artifact: "droplet", From: path("droplet"), To: ccUploader.URL + "/v1/droplet/guid?cc-droplet-upload-uri=x", User: "vcap"},
					&models.UploadAction{Artifact: "build artifacts cache", From: path("output-cache"), To: ccUploader.URL + "/v1/build_artifacts/guid", User: "vcap"},
				), "Uploading droplet, build artifacts cache...", "Uploading complete", "Uploading failed"),
			), 15*time.Minute)),
		}
	}

	It("downloads, builds, uploads droplet and cache over mTLS, and reports the result file", func() {
		data, err := stagingTask(0).Marshal()
		Expect(err).NotTo(HaveOccurred())
		r := startRunner(data, append([]string{"--format", actions.FormatTaskDefProto}, tlsArgs...)...)
		Expect(r.waitExit()).To(Equal(0))

		Expect(r.result()).To(Equal(actions.Result{Result: `{"process_types":{"web":"./start"},"lifecycle_type":"buildpack"}`}))
		Expect(r.stdout()).To(ContainElements(
			"STG| Downloading test-buildpack...",
			"STG| Downloading app package...",
			MatchRegexp(`^STG\| Downloaded app package \(.+\)$`),
			"STG| -----> Detecting with test-buildpack",
			"STG| -----> Staged with LANG=en_US.UTF-8",
			"STG| Uploading droplet, build artifacts cache...",
			"STG| Uploading droplet...",
			MatchRegexp(`^STG\| Uploaded droplet \(.+\)$`),
			"STG| Uploading complete",
		))
		Expect(r.stderr()).To(ContainElement("STG| Downloading build artifacts cache failed"))

		droplets := ccUploader.received("/v1/droplet/guid")
		Expect(droplets).To(HaveLen(1))
		// The uploaded droplet unpacks to the app as built.
		dest := GinkgoT().TempDir()
		back := startRunner(recipeOf(&models.DownloadAction{From: blobs.put("/droplet-back", droplets[0].Body), To: dest, User: "vcap"}))
		Expect(back.waitExit()).To(Equal(0))
		Expect(filepath.Join(dest, "start")).To(BeARegularFile())
		Expect(ccUploader.received("/v1/build_artifacts/guid")).To(HaveLen(1))
	})

	It("fails with the builder's exit status as the reason, which CC maps (222: NoAppDetectedError), and uploads nothing", func() {
		data, err := stagingTask(222).Marshal()
		Expect(err).NotTo(HaveOccurred())
		r := startRunner(data, append([]string{"--format", actions.FormatTaskDefProto}, tlsArgs...)...)
		Expect(r.waitExit()).To(Equal(1))
		Expect(r.result()).To(Equal(actions.Result{Failed: true, FailureReason: "STG: Exited with status 222"}))
		Expect(ccUploader.received("/v1/droplet/guid")).To(BeEmpty())
		Expect(r.stdout()).NotTo(ContainElement("STG| Uploading droplet, build artifacts cache..."))
		Expect(filepath.Join(root, "result.json")).NotTo(BeAnExistingFile())
	})
})
