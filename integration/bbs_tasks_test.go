package integration_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/bifrost/bbs/bbstest"
	"github.com/iris-cf/iris/k8s"
)

// The BBS front's tasks on the KWOK cluster: CC's TaskDefinitions become
// Jobs whose pods carry Iris's runner. KWOK runs no containers, so the
// spec plays the kubelet: it takes the pod's recipe Secret and command,
// runs the iris binary under test as the container would (in a mount
// namespace of its own whose /tmp is private, so CC's absolute /tmp paths
// work and nothing of the host's /tmp is touched), and writes the outcome
// into the pod's status as the kubelet does (terminated, exit code,
// /dev/termination-log as the message). Iris then posts the completion
// callback to the test CC over mTLS.
var _ = Describe("BBS tasks and staging", Serial, Label("bbs-tasks"), func() {
	var logger *lagertest.TestLogger

	BeforeEach(func() {
		logger = lagertest.NewTestLogger("bbs-tasks")
		cc.SetStatus(http.StatusOK)
		DeferCleanup(cc.SetStatus, http.StatusOK)
	})

	space := bbstest.Space{AppName: "dora", SpaceGUID: "space-guid", SpaceName: "dev", OrgGUID: "org-guid", OrgName: "acme"}

	It("runs a `cf run-task` TaskDefinition as CC builds it with the runner, and reports success and failure to CC as BBS does", func() {
		requireMountNamespaces()
		assets := startAssetServer()
		assets.put("/docker_app_lifecycle.tgz", tgz(map[string]string{
			// A stand-in for the docker lifecycle's launcher: app dir,
			// command, execution metadata.
			"launcher": "#!/bin/sh\nexec /bin/sh -c \"$2\"\n",
		}))
		client := newBBSClient()
		run := func(command string) (string, *models.TaskDefinition) {
			guid := uuid.NewString()
			def := bbstest.DockerRunTask(bbstest.Task{Space: space, AppGUID: uuid.NewString(), Name: "migrate",
				CallbackURL: cc.URL() + "/internal/v4/tasks/" + guid + "/completed", LifecycleURL: assets.URL + "/docker_app_lifecycle.tgz"},
				"cloudfoundry/dora#latest", command)
			def.Annotation = "1764583200.5"
			Expect(client.DesireTask(logger, "run-task", guid, "cf-tasks", def)).To(Succeed())
			Expect(client.DesireTask(logger, "run-task", guid, "cf-tasks", def)).To(MatchError(models.ErrResourceExists))
			return guid, def
		}
		ok, _ := run(`echo "hello from $VCAP_SERVICES"; test "$MEMORY_LIMIT" = 256m`)
		failing, _ := run("exit 3")

		for _, guid := range []string{ok, failing} {
			Eventually(func(g Gomega) {
				task, err := client.TaskByGuid(logger, "run-task", guid)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(task.State).To(Equal(models.Task_Running))
				g.Expect(task.CellId).NotTo(BeEmpty())
			}, 30*time.Second).Should(Succeed())
		}
		Expect(client.TasksByDomain(logger, "run-task", "cf-tasks")).To(ContainElements(HaveField("TaskGuid", ok), HaveField("TaskGuid", failing)))

		Expect(runRecipePod(ok)).To(Equal(0))
		Expect(runRecipePod(failing)).To(Equal(1))

		callback := func(guid string) map[string]any {
			var body map[string]any
			Eventually(func(g Gomega) {
				requests := ccRequestsTo("/internal/v4/tasks/" + guid + "/completed")
				g.Expect(requests).To(HaveLen(1))
				g.Expect(requests[0].ContentType).To(Equal("application/json"))
				g.Expect(json.Unmarshal(requests[0].Body, &body)).To(Succeed())
			}, 30*time.Second).Should(Succeed())
			return body
		}
		body := callback(ok)
		Expect(body).To(HaveKeyWithValue("task_guid", ok))
		Expect(body).To(HaveKeyWithValue("failed", false))
		Expect(body).To(HaveKeyWithValue("failure_reason", ""))
		Expect(body).To(HaveKeyWithValue("result", ""))
		Expect(body).To(HaveKeyWithValue("annotation", "1764583200.5"))
		Expect(body["created_at"]).To(BeNumerically(">", float64(time.Now().Add(-5*time.Minute).UnixNano())))
		body = callback(failing)
		Expect(body).To(HaveKeyWithValue("failed", true))
		Expect(body["failure_reason"]).To(HaveSuffix("Exited with status 3"))

		// Answered: gone as BBS deletes it, and the Job follows a TTL later.
		for _, guid := range []string{ok, failing} {
			Eventually(func(g Gomega) {
				_, err := client.TaskByGuid(logger, "run-task", guid)
				g.Expect(err).To(MatchError(models.ErrResourceNotFound))
			}, 10*time.Second).Should(Succeed())
			Eventually(func(g Gomega) { g.Expect(recipeJobGone(guid)).To(BeTrue()) }, 30*time.Second).Should(Succeed())
		}
		Consistently(func(g Gomega) { g.Expect(len(ccRequestsTo("/internal/v4/tasks/" + ok + "/completed"))).To(Equal(1)) }, 2*time.Second).Should(Succeed())
	})

	It("cancels a running task: its pod stops and CC hears 'task was cancelled' once", func() {
		client := newBBSClient()
		guid := uuid.NewString()
		def := bbstest.DockerRunTask(bbstest.Task{Space: space, AppGUID: uuid.NewString(), Name: "forever",
			CallbackURL: cc.URL() + "/internal/v4/tasks/" + guid + "/completed", LifecycleURL: "http://127.0.0.1:1/lifecycle.tgz"},
			"cloudfoundry/dora#latest", "sleep 3600")
		Expect(client.DesireTask(logger, "cancel", guid, "cf-tasks", def)).To(Succeed())
		Eventually(func(g Gomega) {
			task, err := client.TaskByGuid(logger, "cancel", guid)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(task.State).To(Equal(models.Task_Running))
		}, 30*time.Second).Should(Succeed())

		Expect(client.CancelTask(logger, "cancel", guid)).To(Succeed())
		Eventually(func(g Gomega) {
			requests := ccRequestsTo("/internal/v4/tasks/" + guid + "/completed")
			g.Expect(requests).To(HaveLen(1))
			var body map[string]any
			g.Expect(json.Unmarshal(requests[0].Body, &body)).To(Succeed())
			g.Expect(body).To(HaveKeyWithValue("failed", true))
			g.Expect(body).To(HaveKeyWithValue("failure_reason", "task was cancelled"))
		}, 30*time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(recipePods(g, guid)).To(BeEmpty())
		}, 30*time.Second).Should(Succeed())
		Expect(client.CancelTask(logger, "cancel", guid)).To(MatchError(models.ErrResourceNotFound))
		Expect(client.CancelTask(logger, "cancel", uuid.NewString())).To(MatchError(models.ErrResourceNotFound))
	})

	It("posts a completion once across an Iris killed while CC answered 503, and a large result whole", func() {
		client := newBBSClient()
		guid := uuid.NewString()
		def := bbstest.DockerRunTask(bbstest.Task{Space: space, AppGUID: uuid.NewString(), Name: "report",
			CallbackURL: cc.URL() + "/internal/v4/tasks/" + guid + "/completed", LifecycleURL: "http://127.0.0.1:1/lifecycle.tgz"},
			"cloudfoundry/dora#latest", "report")
		Expect(client.DesireTask(logger, "restart", guid, "cf-tasks", def)).To(Succeed())
		var pod corev1.Pod
		Eventually(func(g Gomega) {
			pods := recipePods(g, guid)
			g.Expect(pods).To(HaveLen(1))
			g.Expect(pods[0].Status.Phase).To(Equal(corev1.PodRunning))
			pod = pods[0]
		}, 30*time.Second).Should(Succeed())

		// A result of 8 KiB, more than a termination message holds as it is.
		result := `{"rows":[` + strings.Repeat(`{"name":"row","value":12345},`, 280) + `{}]}`
		Expect(len(result)).To(BeNumerically(">", 4096))
		cc.SetStatus(http.StatusServiceUnavailable)
		terminateRecipePod(pod.Name, guid, pod.Spec.Containers[0].Image, 0,
			actions.EncodeReport(actions.Result{Result: result}, actions.MaxTerminationMessageBytes))
		path := "/internal/v4/tasks/" + guid + "/completed"
		Eventually(func(g Gomega) { g.Expect(len(ccRequestsTo(path))).To(BeNumerically(">=", 1)) }, 30*time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			task, err := client.TaskByGuid(logger, "restart", guid)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(task.State).To(Equal(models.Task_Resolving))
		}, 10*time.Second).Should(Succeed())

		killIris()
		cc.SetStatus(http.StatusOK)
		startIris()
		accepted := func() []ccRequest {
			var out []ccRequest
			for _, r := range ccRequestsTo(path) {
				if r.Status == http.StatusOK {
					out = append(out, r)
				}
			}
			return out
		}
		Eventually(accepted, 60*time.Second).Should(HaveLen(1))
		var body map[string]any
		Expect(json.Unmarshal(accepted()[0].Body, &body)).To(Succeed())
		Expect(body).To(HaveKeyWithValue("result", result))
		Eventually(func(g Gomega) { g.Expect(recipeJobGone(guid)).To(BeTrue()) }, 30*time.Second).Should(Succeed())
		Expect(accepted()).To(HaveLen(1))
	})

	It("stages an app from a staging TaskDefinition as CC builds it: bits downloaded, builder run, droplet uploaded, result to CC's build_completed", func() {
		requireMountNamespaces()
		assets := startAssetServer()
		builder := func(exit int) []byte {
			return tgz(map[string]string{"builder": `#!/bin/sh
set -e
for arg in "$@"; do case "$arg" in
  -buildDir=*) build="${arg#-buildDir=}" ;;
  -outputDroplet=*) droplet="${arg#-outputDroplet=}" ;;
  -outputMetadata=*) metadata="${arg#-outputMetadata=}" ;;
  -outputBuildArtifactsCache=*) cache="${arg#-outputBuildArtifactsCache=}" ;;
  -buildpacksDir=*) buildpacks="${arg#-buildpacksDir=}" ;;
  -buildpackOrder=*) order="${arg#-buildpackOrder=}" ;;
esac; done
# CC puts each buildpack at <buildpacksDir>/<md5 of its key>.
echo "-----> $("$buildpacks/$(printf %s "$order" | md5sum | cut -d' ' -f1)/bin/detect" "$build")"
[ ` + strconv.Itoa(exit) + ` -eq 0 ] || exit ` + strconv.Itoa(exit) + `
tar -czf "$droplet" -C "$build" .
echo cache > "$cache"
printf '{"lifecycle_type":"buildpack","lifecycle_metadata":{"detected_buildpack":"test","buildpack_key":"%s"},"process_types":{"web":"./start"},"execution_metadata":""}' "$order" > "$metadata"
`})
		}
		bits := zipBytes(map[string]string{"start": "#!/bin/sh\necho app\n"})
		assets.put("/package.zip", bits)
		assets.put("/buildpack.zip", zipBytes(map[string]string{"bin/detect": "#!/bin/sh\necho test-buildpack\n"}))
		client := newBBSClient()
		stage := func(builderExit int) string {
			guid := uuid.NewString()
			lifecycle := "/lifecycle-" + guid + ".tgz"
			assets.put(lifecycle, builder(builderExit))
			def := bbstest.BuildpackStaging(bbstest.Staging{
				Task: bbstest.Task{Space: space, AppGUID: uuid.NewString(),
					CallbackURL:  cc.URL() + "/internal/v3/staging/" + guid + "/build_completed?start=true",
					LifecycleURL: assets.URL + lifecycle},
				Stack:      "cflinuxfs4-test",
				PackageURL: assets.URL + "/package.zip", PackageSHA256: sha256Of(bits),
				BuildpackURL: assets.URL + "/buildpack.zip", BuildpackKey: "test-buildpack-key",
				DropletUploadURL: assets.URL + "/v1/droplet/" + guid + "?cc-droplet-upload-uri=x",
				CacheUploadURL:   assets.URL + "/v1/build_artifacts/" + guid,
			})
			Expect(client.DesireTask(logger, "staging", guid, "cf-app-staging", def)).To(Succeed())
			return guid
		}
		staged, undetected := stage(0), stage(222)

		job := recipeJob(Default, staged)
		Expect(job.Labels).To(HaveKeyWithValue(k8s.LabelSourceType, k8s.SourceTypeStaging))
		Expect(job.Spec.Template.Spec.Containers[0].Image).To(Equal("iris-test/cflinuxfs4:1.0"))

		Expect(runRecipePod(staged)).To(Equal(0))
		Expect(runRecipePod(undetected)).To(Equal(1))

		droplets := assets.received("/v1/droplet/" + staged)
		Expect(droplets).To(HaveLen(1))
		Expect(assets.received("/v1/build_artifacts/" + staged)).To(HaveLen(1))
		Expect(assets.received("/v1/droplet/" + undetected)).To(BeEmpty())

		callback := func(guid string) map[string]any {
			var body map[string]any
			Eventually(func(g Gomega) {
				requests := ccRequestsTo("/internal/v3/staging/" + guid + "/build_completed")
				g.Expect(requests).To(HaveLen(1))
				g.Expect(json.Unmarshal(requests[0].Body, &body)).To(Succeed())
			}, 30*time.Second).Should(Succeed())
			return body
		}
		body := callback(staged)
		Expect(body).To(HaveKeyWithValue("failed", false))
		var result map[string]any
		Expect(json.Unmarshal([]byte(body["result"].(string)), &result)).To(Succeed())
		Expect(result).To(HaveKeyWithValue("process_types", map[string]any{"web": "./start"}))
		Expect(result).To(HaveKeyWithValue("lifecycle_metadata", HaveKeyWithValue("buildpack_key", "test-buildpack-key")))
		body = callback(undetected)
		Expect(body).To(HaveKeyWithValue("failed", true))
		// CC's FailureReasonSanitizer maps a reason ending in 222 to NoAppDetectedError.
		Expect(body["failure_reason"]).To(HaveSuffix("Exited with status 222"))
	})
})

// requireMountNamespaces skips where the spec cannot run the runner in a
// mount namespace with a private /tmp (it needs root, as the cluster's
// real node does).
func requireMountNamespaces() {
	GinkgoHelper()
	if err := exec.Command("unshare", "-m", "--propagation", "private", "true").Run(); err != nil {
		Skip("running the action runner as the pod would needs `unshare -m` (root): " + err.Error())
	}
}

// recipeJob is the Job of a BBS task.
func recipeJob(g Gomega, guid string) *batchv1.Job {
	job, err := clientset.BatchV1().Jobs(namespace).Get(context.Background(), k8s.RecipeTaskJobName(guid), metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	return job
}

func recipeJobGone(guid string) bool {
	_, err := clientset.BatchV1().Jobs(namespace).Get(context.Background(), k8s.RecipeTaskJobName(guid), metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

func recipePods(g Gomega, guid string) []corev1.Pod {
	list, err := clientset.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + k8s.RecipeTaskJobName(guid)})
	g.Expect(err).NotTo(HaveOccurred())
	return list.Items
}

// runRecipePod plays the kubelet for a BBS task's pod: once KWOK runs it,
// the pod's recipe Secret and its task container's command (Iris's runner)
// run here with the iris binary under test, and the outcome goes into the
// pod's status as the kubelet writes it. It returns the runner's exit code.
func runRecipePod(guid string) int {
	GinkgoHelper()
	var pod corev1.Pod
	Eventually(func(g Gomega) {
		pods := recipePods(g, guid)
		g.Expect(pods).To(HaveLen(1))
		g.Expect(pods[0].Status.Phase).To(Equal(corev1.PodRunning))
		pod = pods[0]
	}, 30*time.Second).Should(Succeed())

	Expect(pod.Spec.InitContainers).To(ConsistOf(And(
		HaveField("Image", testRunnerImage),
		HaveField("Command", []string{"/usr/local/bin/iris", "actions", "install", "/iris-runner/iris"}),
	)))
	container := pod.Spec.Containers[0]
	Expect(container.Name).To(Equal(k8s.TaskContainerName))
	Expect(container.TerminationMessagePath).To(Equal("/dev/termination-log"))
	var secretName string
	for _, v := range pod.Spec.Volumes {
		if v.Name == k8s.RecipeVolumeName {
			secretName = v.Secret.SecretName
		}
	}
	secret, err := clientset.CoreV1().Secrets(namespace).Get(context.Background(), secretName, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())

	// Outside /tmp: the runner's namespace mounts a fresh /tmp.
	dir, err := os.MkdirTemp("/var/tmp", "iris-bbs-task-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	Expect(os.WriteFile(filepath.Join(dir, k8s.RecipeSecretKey), secret.Data[k8s.RecipeSecretKey], 0o600)).To(Succeed())
	binary := filepath.Join(dir, "iris")
	Expect(os.WriteFile(binary, []byte(readFile(irisPath)), 0o755)).To(Succeed())
	report := filepath.Join(dir, "termination-log")
	args := make([]string, len(container.Command))
	for i, arg := range container.Command {
		switch arg {
		case k8s.RunnerBinary:
			arg = binary
		case filepath.Join(k8s.RecipeMountPath, k8s.RecipeSecretKey):
			arg = filepath.Join(dir, k8s.RecipeSecretKey)
		case k8s.RunnerReportFile:
			arg = report
		}
		args[i] = arg
	}
	passwd := filepath.Join(dir, "passwd")
	Expect(os.WriteFile(passwd, []byte(vcapIsRunnerPasswd), 0o644)).To(Succeed())
	cmd := exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", `mount -t tmpfs tmpfs /tmp && mount --bind "$0" /etc/passwd && exec "$@"`, passwd}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "CF_INSTANCE_GUID=" + string(pod.UID), "CF_INSTANCE_INTERNAL_IP=" + pod.Status.PodIP}
	session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	Eventually(session, 2*time.Minute).Should(gexec.Exit())
	message, err := os.ReadFile(report)
	Expect(err).NotTo(HaveOccurred())
	if len(message) > 4096 { // what the kubelet keeps
		message = message[:4096]
	}

	terminateRecipePod(pod.Name, guid, container.Image, session.ExitCode(), message)
	return session.ExitCode()
}

// terminateRecipePod writes into the pod's status what the kubelet
// writes when its task container exits: phase, exit code, and the
// termination message (the runner's report).
func terminateRecipePod(podName, guid, image string, exitCode int, message []byte) {
	GinkgoHelper()
	phase, reason := corev1.PodSucceeded, "Completed"
	if exitCode != 0 {
		phase, reason = corev1.PodFailed, "Error"
	}
	Eventually(func(g Gomega) {
		current, err := clientset.CoreV1().Pods(namespace).Get(context.Background(), podName, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		now := metav1.Now()
		current.Status.Phase = phase
		for i := range current.Status.Conditions {
			if current.Status.Conditions[i].Type == corev1.PodReady || current.Status.Conditions[i].Type == corev1.ContainersReady {
				current.Status.Conditions[i].Status = corev1.ConditionFalse
			}
		}
		current.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: k8s.TaskContainerName, Image: image, ContainerID: "containerd://" + guid,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: int32(exitCode), Reason: reason, Message: string(message),
				StartedAt: now, FinishedAt: now, ContainerID: "containerd://" + guid,
			}},
		}}
		_, err = clientset.CoreV1().Pods(namespace).UpdateStatus(context.Background(), current, metav1.UpdateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
	}, 10*time.Second).Should(Succeed())
}

// ccRequestsTo are the requests the test CC got on path.
func ccRequestsTo(path string) []ccRequest {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var out []ccRequest
	for _, r := range cc.requests {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// assetServer stands in for CC's file server (lifecycles, buildpacks, app
// packages) and cc-uploader (droplet and cache uploads, recorded).
type assetServer struct {
	*httptest.Server
	mu       sync.Mutex
	blobs    map[string][]byte
	uploaded map[string][][]byte
}

func startAssetServer() *assetServer {
	s := &assetServer{blobs: map[string][]byte{}, uploaded: map[string][][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			s.uploaded[r.URL.Path] = append(s.uploaded[r.URL.Path], body)
			w.WriteHeader(http.StatusCreated)
			return
		}
		blob, ok := s.blobs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(blob)
	}))
	DeferCleanup(s.Close)
	return s
}

func (s *assetServer) put(path string, blob []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[path] = blob
}

func (s *assetServer) received(path string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uploaded[path]
}

// tgz packs executable files.
func tgz(files map[string]string) []byte {
	GinkgoHelper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		Expect(tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg})).To(Succeed())
		_, err := tw.Write([]byte(body))
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(tw.Close()).To(Succeed())
	Expect(gz.Close()).To(Succeed())
	return buf.Bytes()
}

// zipBytes packs executable files as CC's blobstore serves packages and buildpacks.
func zipBytes(files map[string]string) []byte {
	GinkgoHelper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		header := &zip.FileHeader{Name: name, Method: zip.Deflate}
		header.SetMode(0o755)
		w, err := zw.CreateHeader(header)
		Expect(err).NotTo(HaveOccurred())
		_, err = w.Write([]byte(body))
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(zw.Close()).To(Succeed())
	return buf.Bytes()
}

func sha256Of(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
