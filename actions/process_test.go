package actions_test

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.cloudfoundry.org/bbs/models"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/iris-cf/iris/actions"
)

// The runner as a pod runs it: `iris actions --recipe <file>`.

const processTimeout = 60 * time.Second

type runner struct {
	session *gexec.Session
	dir     string
	report  string
}

// startRunner writes the recipe (a *actions.Recipe or raw bytes) to a file
// and starts `iris actions` on it with a report file and short timings.
func startRunner(recipe any, args ...string) *runner {
	return startRunnerWithEnv(recipe, nil, args...)
}

// startRunnerWithEnv is startRunner with extra environment for the runner
// (the pod spec's env).
func startRunnerWithEnv(recipe any, env []string, args ...string) *runner {
	dir := GinkgoT().TempDir()
	var data []byte
	switch r := recipe.(type) {
	case []byte:
		data = r
	default:
		var err error
		data, err = json.Marshal(r)
		Expect(err).NotTo(HaveOccurred())
	}
	recipePath := filepath.Join(dir, "recipe")
	Expect(os.WriteFile(recipePath, data, 0o600)).To(Succeed())
	report := filepath.Join(dir, "report.json")
	// The recipes' "vcap" is this process's own user, as in a pod built
	// for it; specs that test users pass their own --rootfs after it.
	cmdArgs := append([]string{"actions", "--recipe", recipePath, "--report-file", report,
		"--graceful-shutdown-interval", "2s", "--healthy-interval", "200ms", "--unhealthy-interval", "100ms",
		"--temp-dir", dir, "--rootfs", vcapIsSelf()}, args...)
	cmd := exec.Command(irisPath, cmdArgs...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { session.Kill().Wait() })
	return &runner{session: session, dir: dir, report: report}
}

// vcapIsSelf is a root file system whose vcap is this process's user.
func vcapIsSelf() string {
	return rootFS(fmt.Sprintf("vcap:x:%d:%d::/home/vcap:/bin/sh\n", os.Getuid(), os.Getgid()), "")
}

// rootFS is a root file system with passwd and group (none when "") in
// its etc.
func rootFS(passwd, group string) string {
	root := GinkgoT().TempDir()
	Expect(os.Mkdir(filepath.Join(root, "etc"), 0o755)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte(passwd), 0o644)).To(Succeed())
	if group != "" {
		Expect(os.WriteFile(filepath.Join(root, "etc", "group"), []byte(group), 0o644)).To(Succeed())
	}
	return root
}

func (r *runner) waitExit() int {
	Eventually(func(g Gomega) {
		g.Expect(r.session.ExitCode()).NotTo(Equal(-1))
	}).WithTimeout(processTimeout).WithPolling(20 * time.Millisecond).Should(Succeed())
	return r.session.ExitCode()
}

func (r *runner) result() actions.Result {
	raw, err := os.ReadFile(r.report)
	Expect(err).NotTo(HaveOccurred())
	var result actions.Result
	Expect(json.Unmarshal(raw, &result)).To(Succeed())
	return result
}

// stdout and stderr are the tagged lines as "SOURCE| message".
func (r *runner) stdout() []string { return tagged(r.session.Out.Contents()) }
func (r *runner) stderr() []string { return tagged(r.session.Err.Contents()) }

func tagged(out []byte) []string {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if source, msg, ok := actions.ParseLine(l); ok {
			lines = append(lines, source+"| "+msg)
		}
	}
	return lines
}

func run(path string, args ...string) *models.RunAction {
	return &models.RunAction{Path: path, Args: args, User: "vcap"}
}

func sh(script string) *models.RunAction { return run("/bin/sh", "-c", script) }

func withSource(a *models.RunAction, source string) *models.RunAction {
	a.LogSource = source
	return a
}

func recipeOf(action models.ActionInterface) *actions.Recipe {
	return &actions.Recipe{LogSource: "CELL", Action: models.WrapAction(action)}
}

var _ = Describe("iris actions (as a process)", func() {
	var blobs *blobServer

	BeforeEach(func() {
		blobs = startBlobServer()
	})

	Describe("install", func() {
		It("copies itself to the destination, executable by any user, and the copy runs recipes", func() {
			dir := GinkgoT().TempDir()
			destination := filepath.Join(dir, "iris")
			session, err := gexec.Start(exec.Command(irisPath, "actions", "install", destination), GinkgoWriter, GinkgoWriter)
			Expect(err).NotTo(HaveOccurred())
			Eventually(session).WithTimeout(processTimeout).Should(gexec.Exit(0))
			info, err := os.Stat(destination)
			Expect(err).NotTo(HaveOccurred())
			Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o755)))
			entries, err := os.ReadDir(dir)
			Expect(err).NotTo(HaveOccurred())
			Expect(entries).To(HaveLen(1), "no temporary file left behind")

			recipePath := filepath.Join(dir, "recipe.json")
			data, err := json.Marshal(recipeOf(sh(`echo installed-runner-ran`)))
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(recipePath, data, 0o600)).To(Succeed())
			copied, err := gexec.Start(exec.Command(destination, "actions", "--recipe", recipePath, "--rootfs", vcapIsSelf()), GinkgoWriter, GinkgoWriter)
			Expect(err).NotTo(HaveOccurred())
			Eventually(copied).WithTimeout(processTimeout).Should(gexec.Exit(0))
			Expect(copied.Out).To(gbytes.Say("installed-runner-ran"))
		})

		It("fails with the reason when the destination cannot be written", func() {
			session, err := gexec.Start(exec.Command(irisPath, "actions", "install", "/nonexistent-dir/iris"), GinkgoWriter, GinkgoWriter)
			Expect(err).NotTo(HaveOccurred())
			Eventually(session).WithTimeout(processTimeout).Should(gexec.Exit(1))
			Expect(session.Err).To(gbytes.Say("creating runner"))
		})
	})

	Describe("run", func() {
		It("runs path with args, env and dir, tags its output with its log source and exits 0", func() {
			work := GinkgoT().TempDir()
			action := sh(`echo "$GREETING $NAME from $(pwd)"; echo oops >&2`)
			action.Env = []*models.EnvironmentVariable{{Name: "NAME", Value: "action"}}
			action.Dir = work
			action.LogSource = "APP/PROC/WEB"
			recipe := recipeOf(action)
			recipe.EnvironmentVariables = []*models.EnvironmentVariable{{Name: "GREETING", Value: "hello"}, {Name: "NAME", Value: "recipe"}}
			r := startRunner(recipe)
			Expect(r.waitExit()).To(Equal(0))
			Expect(r.stdout()).To(Equal([]string{
				"APP/PROC/WEB| hello action from " + work,
				"APP/PROC/WEB| Exit status 0",
			}))
			Expect(r.stderr()).To(ContainElement("APP/PROC/WEB| oops"))
			Expect(r.result()).To(Equal(actions.Result{}))
		})

		It("fails with Diego's exit status text and exits 1", func() {
			r := startRunner(recipeOf(withSource(sh("exit 3"), "APP/TASK/migrate")))
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.stdout()).To(ContainElement("APP/TASK/migrate| Exit status 3"))
			Expect(r.result()).To(Equal(actions.Result{Failed: true, FailureReason: "APP/TASK/migrate: Exited with status 3"}))
			Expect(string(r.session.Err.Contents())).To(HaveSuffix("iris actions: failed: APP/TASK/migrate: Exited with status 3\n"))
			Expect(r.stderr()).NotTo(ContainElement(ContainSubstring("failed: APP/TASK/migrate")))
		})

		It("adds Diego's (out of memory) when the container's cgroup counted an OOM kill during the process", func() {
			events := filepath.Join(GinkgoT().TempDir(), "memory.events")
			Expect(os.WriteFile(events, []byte("low 0\noom 0\noom_kill 0\n"), 0o600)).To(Succeed())
			// The "kernel" here is the process itself, bumping the counter.
			r := startRunner(recipeOf(withSource(sh(`printf 'oom 1\noom_kill 1\n' > `+events+`; kill -9 $$`), "APP/PROC/WEB")),
				"--memory-events-file", events)
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.stdout()).To(ContainElement("APP/PROC/WEB| Exit status 137 (out of memory)"))
			Expect(r.result().FailureReason).To(Equal("APP/PROC/WEB: Exited with status 137 (out of memory)"))
		})

		It("writes nothing for suppress_log_output", func() {
			action := sh("echo secret; exit 4")
			action.SuppressLogOutput = true
			r := startRunner(recipeOf(action))
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.stdout()).To(BeEmpty())
			Expect(r.result().FailureReason).To(Equal("CELL: Exited with status 4"))
		})

		It("applies resource_limits.nofile", func() {
			action := sh(`echo "soft=$(ulimit -Sn) hard=$(ulimit -Hn)"`)
			limits := &models.ResourceLimits{}
			limits.SetNofile(256)
			action.ResourceLimits = limits
			r := startRunner(recipeOf(action))
			Expect(r.waitExit()).To(Equal(0))
			// Set before the program started (a trampoline execs it in place).
			Expect(r.stdout()).To(ContainElement("CELL| soft=256 hard=256"))
		})

		It("fails with the process-creation error when the path does not exist", func() {
			r := startRunner(recipeOf(run("/no/such/binary")))
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.result().FailureReason).To(ContainSubstring("/no/such/binary"))
			Expect(r.stdout()).To(ContainElement(HavePrefix("CELL| failed-creating-process: ")))
		})

		It("passes SIGTERM to the process when the runner is stopped and exits 128+15", func() {
			marker := filepath.Join(GinkgoT().TempDir(), "terminated")
			r := startRunner(recipeOf(sh(`trap 'echo term > ` + marker + `; exit 0' TERM; echo started; while true; do sleep 0.05; done`)))
			Eventually(func(g Gomega) { g.Expect(r.stdout()).To(ContainElement("CELL| started")) }).WithTimeout(processTimeout).Should(Succeed())
			r.session.Signal(syscall.SIGTERM)
			Expect(r.waitExit()).To(Equal(143))
			Expect(marker).To(BeAnExistingFile())
			// A cancelled run is "cancelled", whatever its exit status.
			Expect(r.result()).To(Equal(actions.Result{Failed: true, FailureReason: "cancelled"}))
		})

		It("kills a process that ignores SIGTERM after the graceful shutdown interval", func() {
			r := startRunner(recipeOf(models.Timeout(sh(`trap '' TERM; echo started; while true; do sleep 0.05; done`), time.Second)),
				"--graceful-shutdown-interval", "500ms")
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.stdout()).To(ContainElement("CELL| Exit status 137 (exceeded 500ms graceful shutdown interval)"))
			Expect(r.result().FailureReason).To(Equal("exceeded 1s timeout"))
		})
	})

	Describe("run as a user", func() {
		It("runs the process as the runner when the user is the runner's own, by name or uid:gid", func() {
			self := fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
			byNumber := sh(`echo "number $(id -u):$(id -g) $HOME"`)
			byNumber.User = self
			r := startRunnerWithEnv(recipeOf(models.Serial(sh(`echo "name $(id -u):$(id -g) $HOME"`), byNumber)), []string{"HOME=/pod/home"})
			Expect(r.waitExit()).To(Equal(0))
			// Not switched: the pod's own HOME stays.
			Expect(r.stdout()).To(ContainElements("CELL| name "+self+" /pod/home", "CELL| number "+self+" /pod/home"))
		})

		It("fails an action whose user the root file system does not have, with Garden's error, and starts nothing", func() {
			marker := filepath.Join(GinkgoT().TempDir(), "ran")
			action := sh("touch " + marker)
			action.User = "ContainerUser"
			r := startRunner(recipeOf(action))
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.stdout()).To(ContainElement("CELL| failed-creating-process: unable to find user ContainerUser: no matching entries in passwd file"))
			Expect(r.result()).To(Equal(actions.Result{Failed: true, FailureReason: "unable to find user ContainerUser: no matching entries in passwd file"}))
			Expect(marker).NotTo(BeAnExistingFile())
		})

		It("runs an action whose user has another uid as itself when the runner is not root, and logs it", func() {
			if os.Getuid() == 0 {
				Skip("the runner runs as root here: it would switch (see the next specs)")
			}
			action := sh("id -u")
			action.User = "other"
			r := startRunner(recipeOf(action), "--rootfs", rootFS(fmt.Sprintf("other:x:%d:%d::/:/bin/sh\n", os.Getuid()+1, os.Getgid()), ""))
			Expect(r.waitExit()).To(Equal(0))
			Expect(r.stdout()).To(ContainElement(HaveSuffix(strconv.Itoa(os.Getuid()))))
			Expect(string(r.session.Err.Contents())).To(ContainSubstring("user-not-switched"))
		})

		It("refuses a --demote-root-to of root", func() {
			r := startRunner(recipeOf(sh("true")), "--demote-root-to", "0:0")
			Expect(r.waitExit()).To(Equal(2))
			Expect(string(r.session.Err.Contents())).To(ContainSubstring("demote-root-to"))
		})

		Context("when the runner runs as root (a pod built to switch users)", func() {
			BeforeEach(func() {
				if os.Getuid() != 0 {
					Skip("switching users needs a runner running as root")
				}
			})

			It("starts the process with the user's uid, gid, groups, HOME and USER; the recipe's and action's env win", func() {
				root := rootFS("app:x:65534:65533::/home/app:/bin/sh\n", "app:x:65533:\nextra:x:4242:nobody,app\n")
				plain := sh(`echo "plain $(id -u) $(id -g) $(id -G) $HOME $USER"`)
				plain.User, plain.Dir = "app", "/"
				overridden := sh(`echo "overridden $HOME $USER"`)
				overridden.User, overridden.Dir = "app", "/"
				overridden.Env = []*models.EnvironmentVariable{{Name: "HOME", Value: "/from/action"}}
				recipe := recipeOf(models.Serial(plain, overridden))
				recipe.EnvironmentVariables = []*models.EnvironmentVariable{{Name: "USER", Value: "from-recipe"}}
				r := startRunnerWithEnv(recipeOf(plain), []string{"HOME=/root", "USER=root"}, "--rootfs", root)
				Expect(r.waitExit()).To(Equal(0))
				Expect(r.stdout()).To(ContainElement("CELL| plain 65534 65533 65533 4242 /home/app app"))

				r = startRunnerWithEnv(recipe, []string{"HOME=/root", "USER=root"}, "--rootfs", root)
				Expect(r.waitExit()).To(Equal(0))
				Expect(r.stdout()).To(ContainElement("CELL| overridden /from/action from-recipe"))
			})

			It("extracts a download of that user into its home, owned by it, so its process can write there", func() {
				// Where the user can reach its home (a test's TempDir is root's alone).
				parent, err := os.MkdirTemp("", "iris-user-home-")
				Expect(err).NotTo(HaveOccurred())
				DeferCleanup(os.RemoveAll, parent)
				Expect(os.Chmod(parent, 0o755)).To(Succeed())
				home := filepath.Join(parent, "app-home")
				root := rootFS("app:x:65534:65533::"+home+":/bin/sh\n", "")
				url := blobs.put("/droplet", tgzBytes([]archiveFile{{name: "app/", dir: true, mode: 0o755}, {name: "app/start", body: "#!/bin/sh\necho written > \"$HOME/app/out\"\n", mode: 0o755}}))
				start := run("./app/start")
				start.User = "app"
				r := startRunnerWithEnv(recipeOf(models.Serial(&models.DownloadAction{From: url, To: ".", User: "app"}, start)), []string{"HOME=/root"}, "--rootfs", root)
				Expect(r.waitExit()).To(Equal(0))
				for _, name := range []string{"", "app", "app/start", "app/out"} {
					info, err := os.Lstat(filepath.Join(home, name))
					Expect(err).NotTo(HaveOccurred())
					Expect(info.Sys().(*syscall.Stat_t).Uid).To(BeEquivalentTo(65534), name)
					Expect(info.Sys().(*syscall.Stat_t).Gid).To(BeEquivalentTo(65533), name)
				}
			})

			It("runs a root action as --demote-root-to when given, else as root", func() {
				action := sh(`echo "$(id -u):$(id -g)"`)
				action.User, action.Dir = "root", "/"
				root := rootFS("root:x:0:0:root:/root:/bin/sh\n", "")
				r := startRunner(recipeOf(action), "--rootfs", root, "--demote-root-to", "65534:65533")
				Expect(r.waitExit()).To(Equal(0))
				Expect(r.stdout()).To(ContainElement("CELL| 65534:65533"))

				r = startRunner(recipeOf(action), "--rootfs", root)
				Expect(r.waitExit()).To(Equal(0))
				Expect(r.stdout()).To(ContainElement("CELL| 0:0"))
			})
		})
	})

	Describe("timeout", func() {
		It("stops the action and fails with Diego's timeout text", func() {
			r := startRunner(recipeOf(models.Timeout(sh("sleep 30"), 200*time.Millisecond)))
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.result().FailureReason).To(Equal("exceeded 200ms timeout"))
			// SIGTERM ended the sleep: 128+15.
			Expect(r.stdout()).To(ContainElement("CELL| Exit status 143"))
		})

		It("passes an action that ends in time", func() {
			r := startRunner(recipeOf(models.Timeout(sh("echo quick"), 20*time.Second)))
			Expect(r.waitExit()).To(Equal(0))
			Expect(r.stdout()).To(ContainElement("CELL| quick"))
		})
	})

	Describe("try", func() {
		It("swallows the failure and goes on", func() {
			r := startRunner(recipeOf(models.Serial(models.Try(sh("exit 7")), sh("echo after"))))
			Expect(r.waitExit()).To(Equal(0))
			Expect(r.stdout()).To(ContainElement("CELL| Exit status 7"))
			Expect(r.stdout()).To(ContainElement("CELL| after"))
		})
	})

	Describe("serial", func() {
		It("runs in order and stops at the first failure", func() {
			r := startRunner(recipeOf(models.Serial(sh("echo one"), sh("echo two; exit 2"), sh("echo three"))))
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.stdout()).To(Equal([]string{"CELL| one", "CELL| Exit status 0", "CELL| two", "CELL| Exit status 2"}))
			Expect(r.result().FailureReason).To(Equal("CELL: Exited with status 2"))
		})
	})

	Describe("parallel", func() {
		It("runs every member even when one fails, and aggregates the failures", func() {
			marker := filepath.Join(GinkgoT().TempDir(), "slow-member-finished")
			r := startRunner(recipeOf(models.Parallel(
				withSource(sh("exit 1"), "A"),
				withSource(sh("sleep 0.3; touch "+marker), "B"),
				withSource(sh("exit 2"), "C"),
			)))
			Expect(r.waitExit()).To(Equal(1))
			Expect(marker).To(BeAnExistingFile())
			reason := r.result().FailureReason
			Expect(strings.Split(reason, "; ")).To(ConsistOf("A: Exited with status 1", "C: Exited with status 2"))
		})
	})

	Describe("codependent", func() {
		It("stops the others when one member exits, and fails with Codependent step exited", func() {
			r := startRunner(recipeOf(models.Codependent(
				withSource(sh("echo done-early"), "EARLY"),
				withSource(sh("sleep 30"), "LONG"),
			)))
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.stdout()).To(ContainElement("LONG| Exit status 143"))
			// The stopped member's cancellation is not part of the reason.
			Expect(r.result().FailureReason).To(Equal("Codependent step exited"))
		})

		It("stops the others when one fails, with that member's failure as the reason", func() {
			r := startRunner(recipeOf(models.Codependent(withSource(sh("exit 9"), "CRASH"), withSource(sh("sleep 30"), "LONG"))))
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.result().FailureReason).To(Equal("CRASH: Exited with status 9"))
		})
	})

	Describe("emit_progress", func() {
		It("writes the start and success messages", func() {
			r := startRunner(recipeOf(models.EmitProgressFor(sh("true"), "Staging...", "Staging complete", "Staging failed")))
			Expect(r.waitExit()).To(Equal(0))
			Expect(r.stdout()).To(Equal([]string{"CELL| Staging...", "CELL| Exit status 0", "CELL| Staging complete"}))
		})

		It("writes the failure prefix with the emittable error on stderr", func() {
			progress := models.EmitProgressFor(withSource(sh("exit 222"), "STG"), "Staging...", "Staging complete", "Staging failed")
			progress.LogSource = "STG"
			r := startRunner(recipeOf(progress))
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.stderr()).To(ContainElement("STG| Staging failed: STG: Exited with status 222"))
			// CC maps a staging failure by its suffix (222: NoAppDetectedError).
			Expect(r.result().FailureReason).To(HaveSuffix("222"))
		})
	})

	Describe("download", func() {
		files := []archiveFile{
			{name: "app/", dir: true},
			{name: "app/run.sh", body: "#!/bin/sh\necho run\n", mode: 0o755},
			{name: "app/data.txt", body: "data"},
			{name: "app/link", symlink: "data.txt"},
		}

		DescribeTable("extracts the archive into `to` and reports its size",
			func(archive []byte) {
				dest := filepath.Join(GinkgoT().TempDir(), "dest")
				url := blobs.put("/app-bits", archive)
				r := startRunner(recipeOf(models.Serial(
					&models.DownloadAction{Artifact: "app", From: url, To: dest, User: "vcap", ChecksumAlgorithm: "sha256", ChecksumValue: sha256Hex(archive)},
					run(filepath.Join(dest, "app/run.sh")),
				)))
				Expect(r.waitExit()).To(Equal(0))
				Expect(r.stdout()).To(ContainElements("CELL| Downloading app...", MatchRegexp(`^CELL\| Downloaded app \([0-9.]+[BK]\)$`), "CELL| run"))
				Expect(os.ReadFile(filepath.Join(dest, "app/data.txt"))).To(Equal([]byte("data")))
				Expect(os.Readlink(filepath.Join(dest, "app/link"))).To(Equal("data.txt"))
			},
			Entry("tgz", tgzBytes(files)),
			Entry("zip", zipBytes(files)),
			Entry("tar", tarBytes(files)),
		)

		It("takes a relative `to` and a run without `dir` relative to $HOME, as Garden does (CC's droplet goes to \".\")", func() {
			home := GinkgoT().TempDir()
			url := blobs.put("/droplet", tgzBytes(files))
			recipe := recipeOf(models.Serial(
				&models.DownloadAction{Artifact: "droplet", From: url, To: ".", User: "vcap"},
				sh("cat app/data.txt; echo; pwd"),
			))
			recipe.EnvironmentVariables = []*models.EnvironmentVariable{{Name: "HOME", Value: home}}
			r := startRunner(recipe)
			Expect(r.waitExit()).To(Equal(0))
			Expect(filepath.Join(home, "app/data.txt")).To(BeARegularFile())
			Expect(r.stdout()).To(ContainElements("CELL| data", "CELL| "+home))
		})

		It("fails on a checksum mismatch, without retrying, with Diego's texts", func() {
			archive := tgzBytes(files)
			url := blobs.put("/droplet", archive)
			download := &models.DownloadAction{Artifact: "droplet", From: url, To: GinkgoT().TempDir(), User: "vcap", ChecksumAlgorithm: "sha256", ChecksumValue: sha256Hex([]byte("other"))}
			r := startRunner(recipeOf(models.EmitProgressFor(download, "", "", "Failed to download droplet")))
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.stderr()).To(ContainElements("CELL| Downloading droplet failed", "CELL| Failed to download droplet: Downloading droplet failed"))
			Expect(r.result().FailureReason).To(Equal("Downloading droplet failed"))
			Expect(blobs.received("/droplet")).To(HaveLen(1))
		})

		It("retries a failing server, as Diego's downloader does", func() {
			url := blobs.put("/flaky", tgzBytes(files))
			blobs.failNext("/flaky", 500, 503)
			dest := GinkgoT().TempDir()
			r := startRunner(recipeOf(&models.DownloadAction{From: url, To: dest, User: "vcap"}))
			Expect(r.waitExit()).To(Equal(0))
			Expect(blobs.received("/flaky")).To(HaveLen(3))
			Expect(filepath.Join(dest, "app/data.txt")).To(BeARegularFile())
			// No artifact: no progress lines.
			Expect(r.stdout()).To(BeEmpty())
		})

		It("fails on an unknown archive format", func() {
			url := blobs.put("/plain", []byte("just text"))
			r := startRunner(recipeOf(&models.DownloadAction{Artifact: "plain", From: url, To: GinkgoT().TempDir(), User: "vcap"}))
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.result().FailureReason).To(Equal("Downloading plain failed"))
		})

		It("refuses an archive entry that escapes `to`", func() {
			url := blobs.put("/evil", tarBytes([]archiveFile{{name: "../../escaped", body: "x"}}))
			parent := GinkgoT().TempDir()
			dest := filepath.Join(parent, "a", "dest")
			r := startRunner(recipeOf(&models.DownloadAction{Artifact: "evil", From: url, To: dest, User: "vcap"}))
			Expect(r.waitExit()).To(Equal(0))
			// Cleaned to a path inside dest, as Diego's secure join does.
			Expect(filepath.Join(dest, "escaped")).To(BeARegularFile())
			Expect(filepath.Join(parent, "escaped")).NotTo(BeAnExistingFile())
		})

		It("revalidates a cached download (cache_key) and reuses it on 304", func() {
			archive := tgzBytes(files)
			url := blobs.put("/buildpack", archive)
			blobs.withETag("/buildpack", `"v1"`)
			cache := GinkgoT().TempDir()
			download := func(dest string) *actions.Recipe {
				return recipeOf(&models.DownloadAction{Artifact: "buildpack", From: url, To: dest, CacheKey: "buildpack-v1", User: "vcap"})
			}
			first := startRunner(download(GinkgoT().TempDir()), "--cache-dir", cache)
			Expect(first.waitExit()).To(Equal(0))
			Expect(first.stdout()).To(ContainElement(MatchRegexp(`^CELL\| Downloaded buildpack \(.+\)$`)))

			dest := GinkgoT().TempDir()
			second := startRunner(download(dest), "--cache-dir", cache)
			Expect(second.waitExit()).To(Equal(0))
			// Served from the cache: Diego's message without a size.
			Expect(second.stdout()).To(ContainElement("CELL| Downloaded buildpack"))
			requests := blobs.received("/buildpack")
			Expect(requests).To(HaveLen(2))
			Expect(requests[1].Header.Get("If-None-Match")).To(Equal(`"v1"`))
			Expect(filepath.Join(dest, "app/data.txt")).To(BeARegularFile())
		})
	})

	Describe("upload", func() {
		var ca *testCA
		var tlsArgs []string
		var secure *blobServer

		BeforeEach(func() {
			ca = newTestCA()
			secure = startMTLSBlobServer(ca)
			caFile, certFile, keyFile := ca.writeClientFiles(GinkgoT().TempDir())
			tlsArgs = []string{"--tls-ca-file", caFile, "--tls-cert-file", certFile, "--tls-key-file", keyFile}
		})

		It("POSTs a file over mTLS with Diego's headers", func() {
			file := filepath.Join(GinkgoT().TempDir(), "droplet.tgz")
			Expect(os.WriteFile(file, []byte("droplet-bytes"), 0o600)).To(Succeed())
			r := startRunner(recipeOf(&models.UploadAction{Artifact: "droplet", From: file, To: secure.URL + "/droplets/abc", User: "vcap"}), tlsArgs...)
			Expect(r.waitExit()).To(Equal(0))
			requests := secure.received("/droplets/abc")
			Expect(requests).To(HaveLen(1))
			Expect(requests[0].Method).To(Equal("POST"))
			Expect(requests[0].Body).To(Equal([]byte("droplet-bytes")))
			Expect(requests[0].Header.Get("Content-Type")).To(Equal("application/octet-stream"))
			md5sum := md5.Sum([]byte("droplet-bytes"))
			Expect(requests[0].Header.Get("Content-MD5")).To(Equal(base64.StdEncoding.EncodeToString(md5sum[:])))
			Expect(requests[0].Header.Get("Content-Digest")).To(HavePrefix("sha-256=:"))
			Expect(r.stdout()).To(ContainElements("CELL| Uploading droplet...", "CELL| Uploaded droplet (13B)"))
		})

		It("is refused by the mTLS server without a client certificate", func() {
			file := filepath.Join(GinkgoT().TempDir(), "f")
			Expect(os.WriteFile(file, []byte("x"), 0o600)).To(Succeed())
			r := startRunner(recipeOf(&models.UploadAction{Artifact: "droplet", From: file, To: secure.URL + "/droplets/abc", User: "vcap"}), tlsArgs[:2]...)
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.stderr()).To(ContainElement("CELL| Failed to upload payload for droplet"))
			Expect(secure.received("/droplets/abc")).To(BeEmpty())
		})

		It("retries: the server fails twice, then takes it", func() {
			file := filepath.Join(GinkgoT().TempDir(), "f")
			Expect(os.WriteFile(file, []byte("payload"), 0o600)).To(Succeed())
			secure.failNext("/droplets/abc", 500, 502)
			r := startRunner(recipeOf(&models.UploadAction{Artifact: "droplet", From: file, To: secure.URL + "/droplets/abc", User: "vcap"}), tlsArgs...)
			Expect(r.waitExit()).To(Equal(0))
			requests := secure.received("/droplets/abc")
			Expect(requests).To(HaveLen(3))
			for _, req := range requests {
				Expect(req.Body).To(Equal([]byte("payload")))
			}
		})

		It("fails after three attempts with Diego's text", func() {
			file := filepath.Join(GinkgoT().TempDir(), "f")
			Expect(os.WriteFile(file, []byte("payload"), 0o600)).To(Succeed())
			secure.failNext("/droplets/abc", 500, 500, 500, 500)
			r := startRunner(recipeOf(&models.UploadAction{Artifact: "droplet", From: file, To: secure.URL + "/droplets/abc", User: "vcap"}), tlsArgs...)
			Expect(r.waitExit()).To(Equal(1))
			Expect(secure.received("/droplets/abc")).To(HaveLen(3))
			Expect(r.result().FailureReason).To(Equal("Upload failed: Status code 500"))
			Expect(r.stderr()).To(ContainElement("CELL| Failed to upload payload for droplet"))
		})

		It("uploads a directory as a tgz", func() {
			dir := GinkgoT().TempDir()
			Expect(os.MkdirAll(filepath.Join(dir, "cache", "sub"), 0o755)).To(Succeed())
			Expect(os.WriteFile(filepath.Join(dir, "cache", "sub", "f"), []byte("cached"), 0o644)).To(Succeed())
			r := startRunner(recipeOf(&models.UploadAction{Artifact: "build artifacts cache", From: filepath.Join(dir, "cache"), To: blobs.URL + "/cache", User: "vcap"}))
			Expect(r.waitExit()).To(Equal(0))
			requests := blobs.received("/cache")
			Expect(requests).To(HaveLen(1))
			// Round trip through the runner's own download.
			url := blobs.put("/cache-back", requests[0].Body)
			dest := GinkgoT().TempDir()
			back := startRunner(recipeOf(&models.DownloadAction{From: url, To: dest, User: "vcap"}))
			Expect(back.waitExit()).To(Equal(0))
			Expect(os.ReadFile(filepath.Join(dest, "sub", "f"))).To(Equal([]byte("cached")))
		})
	})

	Describe("cached dependencies, image layers and setup", func() {
		It("fetches cached dependencies and layers first, then runs setup, then the action", func() {
			lifecycle := tgzBytes([]archiveFile{{name: "launcher", body: "#!/bin/sh\necho launched \"$@\"\n", mode: 0o755}})
			droplet := tgzBytes([]archiveFile{{name: "app/droplet.txt", body: "droplet\n"}})
			shared := tgzBytes([]archiveFile{{name: "shared.txt", body: "shared\n"}})
			root := GinkgoT().TempDir()
			recipe := &actions.Recipe{
				LogSource: "CELL",
				CachedDependencies: []*models.CachedDependency{{
					Name: "buildpack lifecycle", From: blobs.put("/lifecycle", lifecycle), To: filepath.Join(root, "lifecycle"),
					CacheKey: "lifecycle", ChecksumAlgorithm: "sha256", ChecksumValue: sha256Hex(lifecycle),
				}},
				ImageLayers: []*models.ImageLayer{
					{Name: "shared layer", Url: blobs.put("/shared", shared), DestinationPath: filepath.Join(root, "shared"),
						LayerType: models.LayerTypeShared, MediaType: models.MediaTypeTgz},
					{Name: "droplet", Url: blobs.put("/droplet", droplet), DestinationPath: filepath.Join(root, "home"),
						LayerType: models.LayerTypeExclusive, MediaType: models.MediaTypeTgz,
						DigestAlgorithm: models.DigestAlgorithmSha256, DigestValue: sha256Hex(droplet)},
				},
				LegacyDownloadUser: "vcap",
				Setup:              models.WrapAction(sh("cat " + filepath.Join(root, "home/app/droplet.txt") + " " + filepath.Join(root, "shared/shared.txt"))),
				Action:             models.WrapAction(withSource(run(filepath.Join(root, "lifecycle/launcher"), "app"), "APP/PROC/WEB")),
			}
			r := startRunner(recipe)
			Expect(r.waitExit()).To(Equal(0))
			out := r.stdout()
			Expect(out).To(ContainElements(
				"CELL| Downloading buildpack lifecycle...", MatchRegexp(`^CELL\| Downloaded buildpack lifecycle \(.+\)$`),
				"CELL| Downloading shared layer...",
				"CELL| Downloading droplet...", MatchRegexp(`^CELL\| Downloaded droplet \(.+\)$`),
				"CELL| droplet", "CELL| shared", "APP/PROC/WEB| launched app",
			))
			Expect(indexOf(out, "CELL| Downloading droplet...")).To(BeNumerically(">", indexOf(out, "CELL| Downloading buildpack lifecycle...")))
			Expect(indexOf(out, "APP/PROC/WEB| launched app")).To(BeNumerically(">", indexOf(out, "CELL| droplet")))
		})

		It("fails with Diego's reason when a cached dependency's checksum does not match, before setup", func() {
			marker := filepath.Join(GinkgoT().TempDir(), "setup-ran")
			recipe := &actions.Recipe{
				CachedDependencies: []*models.CachedDependency{{
					Name: "lifecycle", From: blobs.put("/lifecycle", tgzBytes([]archiveFile{{name: "f", body: "x"}})), To: GinkgoT().TempDir(),
					ChecksumAlgorithm: "sha256", ChecksumValue: sha256Hex([]byte("other")),
				}},
				Setup:  models.WrapAction(sh("touch " + marker)),
				Action: models.WrapAction(sh("true")),
			}
			r := startRunner(recipe)
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.result()).To(Equal(actions.Result{Failed: true, FailureReason: "failed to download cached artifacts"}))
			Expect(r.stdout()).To(ContainElement("CELL| Downloading lifecycle failed"))
			Expect(marker).NotTo(BeAnExistingFile())
		})

		DescribeTable("checks image layers' digests",
			func(layerType models.ImageLayer_Type, reason string) {
				layer := tgzBytes([]archiveFile{{name: "f", body: "x"}})
				marker := filepath.Join(GinkgoT().TempDir(), "action-ran")
				recipe := recipeOf(sh("touch " + marker))
				recipe.LegacyDownloadUser = "vcap"
				recipe.ImageLayers = []*models.ImageLayer{{
					Name: "droplet", Url: blobs.put("/layer", layer), DestinationPath: GinkgoT().TempDir(),
					LayerType: layerType, MediaType: models.MediaTypeTgz,
					DigestAlgorithm: models.DigestAlgorithmSha256, DigestValue: sha256Hex([]byte("not the layer")),
				}}
				r := startRunner(recipe)
				Expect(r.waitExit()).To(Equal(1))
				Expect(r.result()).To(Equal(actions.Result{Failed: true, FailureReason: reason}))
				Expect(marker).NotTo(BeAnExistingFile())
			},
			Entry("shared: a cached dependency", models.LayerTypeShared, "failed to download cached artifacts"),
			Entry("exclusive: a download before setup", models.LayerTypeExclusive, "Downloading droplet failed"),
		)

		It("does not run the action when setup fails", func() {
			marker := filepath.Join(GinkgoT().TempDir(), "action-ran")
			recipe := recipeOf(sh("touch " + marker))
			recipe.Setup = models.WrapAction(sh("exit 5"))
			r := startRunner(recipe)
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.result().FailureReason).To(Equal("CELL: Exited with status 5"))
			Expect(marker).NotTo(BeAnExistingFile())
		})
	})

	Describe("monitor", func() {
		It("reports healthy, then fails with the check's output when it becomes unhealthy", func() {
			dir := GinkgoT().TempDir()
			healthy := filepath.Join(dir, "up")
			healthyFile := filepath.Join(dir, "runner-healthy")
			recipe := recipeOf(withSource(sh("touch "+healthy+"; while true; do sleep 0.05; done"), "APP/PROC/WEB"))
			check := withSource(sh("test -f "+healthy+" || { echo 'failed to make TCP connection to port 8080'; exit 1; }"), "HEALTH")
			check.SuppressLogOutput = true
			recipe.Monitor = models.WrapAction(models.Timeout(models.Parallel(check), 10*time.Minute))
			recipe.StartTimeoutMs = 60000
			r := startRunner(recipe, "--healthy-file", healthyFile)
			Eventually(func(g Gomega) {
				g.Expect(r.stdout()).To(ContainElement("CELL| Container became healthy"))
				g.Expect(healthyFile).To(BeAnExistingFile())
			}).WithTimeout(processTimeout).Should(Succeed())
			Expect(os.Remove(healthy)).To(Succeed())
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.stdout()).To(ContainElement("CELL| Starting health monitoring of container"))
			Expect(r.stderr()).To(ContainElement("CELL| Container became unhealthy"))
			Expect(r.result().FailureReason).To(Equal("Instance became unhealthy: failed to make TCP connection to port 8080"))
			// The app was stopped with the monitor.
			Expect(r.stdout()).To(ContainElement("APP/PROC/WEB| Exit status 143"))
		})

		It("fails when the check never passes within start_timeout_ms", func() {
			recipe := recipeOf(sh("while true; do sleep 0.05; done"))
			recipe.Monitor = models.WrapAction(models.Parallel(sh("echo not listening; exit 1")))
			recipe.StartTimeoutMs = 300
			r := startRunner(recipe)
			Expect(r.waitExit()).To(Equal(1))
			Expect(r.result().FailureReason).To(MatchRegexp(`^Instance never healthy after [0-9.]+m?s: not listening$`))
			Expect(r.stderr()).To(ContainElement(MatchRegexp(`^CELL\| Failed after .+: startup health check never passed\.$`)))
		})
	})

	Describe("input", func() {
		It("exits 2 on a recipe that is not valid", func() {
			r := startRunner([]byte(`{"action": {"run": {"path": ""}}}`))
			Expect(r.waitExit()).To(Equal(2))
			Expect(string(r.session.Err.Contents())).To(ContainSubstring("invalid recipe"))
			Expect(r.report).NotTo(BeAnExistingFile())
		})

		It("exits 2 on unknown fields", func() {
			r := startRunner([]byte(`{"action": {"run": {"path": "/bin/true", "user": "vcap"}}, "acton": {}}`))
			Expect(r.waitExit()).To(Equal(2))
			Expect(string(r.session.Err.Contents())).To(ContainSubstring(`unknown field "acton"`))
		})

		It("runs a TaskDefinition given as protobuf and reports its result file", func() {
			resultFile := filepath.Join(GinkgoT().TempDir(), "result.json")
			task := &models.TaskDefinition{
				LogSource:  "CELL",
				ResultFile: resultFile,
				Action:     models.WrapAction(sh(`printf '{"ok":true}' > ` + resultFile)),
			}
			data, err := task.Marshal()
			Expect(err).NotTo(HaveOccurred())
			r := startRunner(data, "--format", actions.FormatTaskDefProto)
			Expect(r.waitExit()).To(Equal(0))
			Expect(r.result()).To(Equal(actions.Result{Result: `{"ok":true}`}))
		})

		It("reads the recipe from IRIS_ACTIONS_RECIPE and keeps IRIS_ACTIONS_* from the processes", func() {
			data, err := json.Marshal(recipeOf(sh(`echo "recipe=${IRIS_ACTIONS_RECIPE:-unset} keep=$KEEP"`)))
			Expect(err).NotTo(HaveOccurred())
			cmd := exec.Command(irisPath, "actions", "--rootfs", vcapIsSelf())
			cmd.Env = append(os.Environ(), "IRIS_ACTIONS_RECIPE="+string(data), "KEEP=yes")
			session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
			Expect(err).NotTo(HaveOccurred())
			r := &runner{session: session}
			Expect(r.waitExit()).To(Equal(0))
			Expect(r.stdout()).To(ContainElement("CELL| recipe=unset keep=yes"))
		})
	})
})

func indexOf(lines []string, line string) int {
	for i, l := range lines {
		if l == line {
			return i
		}
	}
	return -1
}
