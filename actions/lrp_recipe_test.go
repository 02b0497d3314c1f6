package actions_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"code.cloudfoundry.org/bbs/models"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/iris-cf/iris/actions"
)

// A buildpack DesiredLRP shaped as CC's AppRecipeBuilder builds it
// (cloud_controller_ng lib/cloud_controller/diego/app_recipe_builder.rb):
// the lifecycle as a cached dependency, the droplet downloaded to "." in
// setup, a codependent launcher action and a monitor of health checks under
// a 10-minute timeout, given to the runner as protobuf.
var _ = Describe("a buildpack DesiredLRP as CC builds it", func() {
	It("becomes healthy, and stops the app on SIGTERM", func() {
		blobs := startBlobServer()
		home := GinkgoT().TempDir()
		lifecycleDir := filepath.Join(GinkgoT().TempDir(), "lifecycle")
		ready := filepath.Join(home, "listening")
		lifecycle := tgzBytes([]archiveFile{
			{name: "launcher", mode: 0o755, body: "#!/bin/sh\ncd \"$1\"\nexec \"$2\"\n"},
			{name: "healthcheck", mode: 0o755, body: "#!/bin/sh\ntest -f " + ready + " || { echo \"failed to make TCP connection to port 8080: connection refused\"; exit 1; }\n"},
		})
		droplet := tgzBytes([]archiveFile{{name: "app/start", mode: 0o755,
			body: "#!/bin/sh\ntrap 'echo stopping; exit 0' TERM\necho \"instance $CF_INSTANCE_INDEX up\"\ntouch " + ready + "\nwhile true; do sleep 0.05; done\n"}})
		healthcheck := &models.RunAction{Path: filepath.Join(lifecycleDir, "healthcheck"), Args: []string{"-port=8080"}, User: "vcap", LogSource: "HEALTH", SuppressLogOutput: true}
		lrp := &models.DesiredLRP{
			ProcessGuid:          "app-guid-version",
			LogSource:            "CELL",
			StartTimeoutMs:       60000,
			EnvironmentVariables: []*models.EnvironmentVariable{{Name: "HOME", Value: home}},
			CachedDependencies:   []*models.CachedDependency{{Name: "buildpack lifecycle", From: blobs.put("/lifecycle", lifecycle), To: lifecycleDir, CacheKey: "buildpack-cflinuxfs4-lifecycle"}},
			Setup: models.WrapAction(models.Serial(&models.DownloadAction{Artifact: "droplet", From: blobs.put("/droplet", droplet), To: ".", User: "vcap",
				ChecksumAlgorithm: "sha256", ChecksumValue: sha256Hex(droplet)})),
			Action: models.WrapAction(models.Codependent(&models.RunAction{
				Path: filepath.Join(lifecycleDir, "launcher"), Args: []string{"app", "./start", ""}, User: "vcap", LogSource: "APP/PROC/WEB",
			})),
			Monitor: models.WrapAction(models.Timeout(models.Parallel(healthcheck), 10*time.Minute)),
		}
		data, err := lrp.Marshal()
		Expect(err).NotTo(HaveOccurred())
		r := startRunnerWithEnv(data, []string{"CF_INSTANCE_INDEX=2"}, "--format", actions.FormatDesiredLRPProto,
			"--healthy-file", filepath.Join(home, "runner-healthy"))

		Eventually(func(g Gomega) {
			g.Expect(r.stdout()).To(ContainElements(
				"CELL| Downloading buildpack lifecycle...",
				"CELL| Downloading droplet...",
				"APP/PROC/WEB| instance 2 up",
				"CELL| Starting health monitoring of container",
				"CELL| Container became healthy",
			))
			g.Expect(filepath.Join(home, "runner-healthy")).To(BeAnExistingFile())
		}).WithTimeout(processTimeout).Should(Succeed())

		Expect(healthyProbe(filepath.Join(home, "runner-healthy"))).To(Equal(0), "the pod's readiness probe passes")

		r.session.Signal(syscall.SIGTERM)
		Expect(r.waitExit()).To(Equal(143))
		Expect(r.stdout()).To(ContainElements("APP/PROC/WEB| stopping", "APP/PROC/WEB| Exit status 0"))
	})
})

// healthyProbe runs the readiness probe of recipe pods with a monitor,
// `iris actions healthy FILE`, and returns its exit code.
func healthyProbe(file string) int {
	session, err := gexec.Start(exec.Command(irisPath, "actions", "healthy", file), GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	Eventually(session).WithTimeout(processTimeout).Should(gexec.Exit())
	return session.ExitCode()
}

var _ = Describe("a restarted recipe container (its healthy file on a volume)", func() {
	It("is not ready on the last container's word: the runner removes the old healthy file until its own monitor passes", func() {
		dir := GinkgoT().TempDir()
		healthy := filepath.Join(dir, "healthy")
		passing := filepath.Join(dir, "passing")
		Expect(os.WriteFile(healthy, nil, 0o644)).To(Succeed())
		recipe := &actions.Recipe{
			Action:  models.WrapAction(sh("while true; do sleep 0.05; done")),
			Monitor: models.WrapAction(sh("test -f " + passing)),
		}
		r := startRunner(recipe, "--healthy-file", healthy)
		Eventually(func(g Gomega) {
			g.Expect(healthy).NotTo(BeAnExistingFile())
		}).WithTimeout(processTimeout).Should(Succeed())
		Expect(healthyProbe(healthy)).To(Equal(1))

		Expect(os.WriteFile(passing, nil, 0o644)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(healthy).To(BeAnExistingFile())
		}).WithTimeout(processTimeout).Should(Succeed())
		Expect(healthyProbe(healthy)).To(Equal(0))
		r.session.Signal(syscall.SIGTERM)
		Expect(r.waitExit()).To(Equal(143))
	})
})
