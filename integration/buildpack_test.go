package integration_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/k8s"
	irismodels "github.com/iris-cf/iris/models"
)

// The suite's Iris runs buildpack apps with this runner image on this
// stack's image (lrp.runner_image, bbs.stacks). KWOK pulls nothing, so
// neither needs to exist; the runner itself is the suite's iris binary.
const (
	testRunnerImage = "127.0.0.1:5000/cloudfoundry/iris:integration"
	testStack       = "cflinuxfs4"
	testStackImage  = "127.0.0.1:5000/cloudfoundry/cflinuxfs4:integration"
)

// testLifecycleAddr is where a spec serves the buildpack lifecycle the
// suite's Iris gives staging pods (staging.lifecycle_bundle_url), when it
// runs a staging pod's recipe.
var testLifecycleAddr string

func testLifecycleURL() string {
	return "http://" + testLifecycleAddr + "/buildpack_app_lifecycle.tgz"
}

// serveTestLifecycle serves the test lifecycle at testLifecycleURL until
// the spec ends.
func serveTestLifecycle() {
	GinkgoHelper()
	bundle := testLifecycleBundle()
	listener, err := net.Listen("tcp", testLifecycleAddr)
	Expect(err).NotTo(HaveOccurred())
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(bundle)
	}))
	server.Listener.Close()
	server.Listener = listener
	server.Start()
	DeferCleanup(server.Close)
}

// stagingRecipe is the recipe a staging Job's pods run, from its Secret.
func stagingRecipe(job *batchv1.Job) *actions.Recipe {
	GinkgoHelper()
	var name string
	for _, v := range job.Spec.Template.Spec.Volumes {
		if v.Name == k8s.RecipeVolumeName {
			name = v.Secret.SecretName
		}
	}
	Expect(name).NotTo(BeEmpty(), "the Job's pods mount a recipe")
	secret, err := clientset.CoreV1().Secrets(job.Namespace).Get(context.Background(), name, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	recipe, err := actions.DecodeRecipe(secret.Data[k8s.RecipeSecretKey], actions.FormatJSON)
	Expect(err).NotTo(HaveOccurred())
	return recipe
}

// blobStore plays CC's blobstore, the file server and cc-uploader for a
// spec: it serves the blobs it was given and keeps what is uploaded.
type blobStore struct {
	server   *httptest.Server
	mu       sync.Mutex
	blobs    map[string][]byte
	uploaded map[string][]byte
}

func startBlobStore() *blobStore {
	return startBlobStoreOn("127.0.0.1:0")
}

// startBlobStoreOn is startBlobStore listening on listen (host:port), e.g.
// the real node's IP, where its pods reach the host.
func startBlobStoreOn(listen string) *blobStore {
	GinkgoHelper()
	s := &blobStore{blobs: map[string][]byte{}, uploaded: map[string][]byte{}}
	listener, err := net.Listen("tcp", listen)
	Expect(err).NotTo(HaveOccurred())
	s.server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			blob, ok := s.blobs[r.URL.Path]
			if !ok {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write(blob)
		case http.MethodPost, http.MethodPut:
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			s.uploaded[r.URL.Path] = body
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	}))
	s.server.Listener.Close()
	s.server.Listener = listener
	s.server.Start()
	DeferCleanup(s.server.Close)
	return s
}

func (s *blobStore) put(path string, blob []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[path] = blob
	return s.server.URL + path
}

func (s *blobStore) upload(path string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uploaded[path]
}

type archiveEntry struct {
	name string
	mode int64
	body []byte
}

func tgzOf(entries []archiveEntry) []byte {
	GinkgoHelper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		Expect(tw.WriteHeader(&tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg})).To(Succeed())
		_, err := tw.Write(e.body)
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(tw.Close()).To(Succeed())
	Expect(gz.Close()).To(Succeed())
	return buf.Bytes()
}

func zipOf(entries []archiveEntry) []byte {
	GinkgoHelper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		header := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		header.SetMode(os.FileMode(e.mode))
		w, err := zw.CreateHeader(header)
		Expect(err).NotTo(HaveOccurred())
		_, err = w.Write(e.body)
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(zw.Close()).To(Succeed())
	return buf.Bytes()
}

func buildStatic(pkg string) []byte {
	GinkgoHelper()
	path, err := gexec.BuildWithEnvironment(pkg, []string{"CGO_ENABLED=0"}, "-trimpath")
	Expect(err).NotTo(HaveOccurred())
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	return data
}

// testLifecycleBundle is the lifecycle bundle CC's recipes download into
// /tmp/lifecycle: the test builder, launcher and healthcheck (see
// integration/testlifecycle; the real lifecycle is not served by the Go
// module proxy).
func testLifecycleBundle() []byte {
	return tgzOf([]archiveEntry{
		{name: "builder", mode: 0o755, body: buildStatic("github.com/iris-cf/iris/integration/testlifecycle/builder")},
		{name: "launcher", mode: 0o755, body: buildStatic("github.com/iris-cf/iris/integration/testlifecycle/launcher")},
		{name: "healthcheck", mode: 0o755, body: buildStatic("github.com/iris-cf/iris/integration/testlifecycle/healthcheck")},
	})
}

// testBuildpack is a v3 buildpack of shell scripts: it detects an app with
// a ./server, supplies a dependency, finalizes a profile.d script the
// launcher sources, and releases ./server as the web process.
func testBuildpack() []byte {
	return zipOf([]archiveEntry{
		{name: "manifest.yml", mode: 0o644, body: []byte("language: test\n")},
		{name: "bin/detect", mode: 0o755, body: []byte("#!/bin/sh\ntest -x \"$1/server\"\n")},
		{name: "bin/supply", mode: 0o755, body: []byte("#!/bin/sh\nset -e\necho \"-----> test buildpack supplying\"\nmkdir -p \"$3/$4\"\necho supplied > \"$3/$4/marker\"\n")},
		{name: "bin/finalize", mode: 0o755, body: []byte("#!/bin/sh\nset -e\necho \"-----> test buildpack finalizing\"\n" +
			"test -f \"$3/$4/marker\"\n" +
			"printf 'export TEST_BUILDPACK=finalized\\nexport TEST_SUPPLIED=$(cat $DEPS_DIR/%s/marker)\\n' \"$4\" > \"$5/test.sh\"\n")},
		{name: "bin/release", mode: 0o755, body: []byte("#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  web: ./server\\n'\n")},
	})
}

// vcapIsRunnerPasswd is the root file system's passwd in a runner's mount
// namespace: the recipes' "vcap" is the user the runner runs as (root
// here), as in a pod whose uid Iris chose for "vcap".
const vcapIsRunnerPasswd = "root:x:0:0:root:/root:/bin/sh\nvcap:x:0:0::/home/vcap:/bin/sh\n"

// privateRunner runs `iris actions` as a recipe pod's container does, in
// its own mount namespace whose /tmp and /home are empty (a pod's emptyDirs
// at /tmp and /home/vcap) and whose /etc/passwd has vcap: the recipes' absolute paths (/tmp/lifecycle,
// /tmp/app, /tmp/droplet, /home/vcap) are then this run's alone. The
// runner, its recipe, report and state live in dir, seen as /mnt.
type privateRunner struct {
	session *gexec.Session
	dir     string
}

func startPrivateRunner(recipe []byte, env []string, flags ...string) *privateRunner {
	GinkgoHelper()
	if os.Geteuid() != 0 {
		Skip("running a recipe as its pod does needs a private mount namespace (root)")
	}
	dir := GinkgoT().TempDir()
	binary, err := os.ReadFile(irisPath)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(dir, "iris"), binary, 0o755)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(dir, "recipe.json"), recipe, 0o600)).To(Succeed())
	Expect(os.Mkdir(filepath.Join(dir, "state"), 0o755)).To(Succeed(), "the pod's state emptyDir")
	Expect(os.WriteFile(filepath.Join(dir, "passwd"), []byte(vcapIsRunnerPasswd), 0o644)).To(Succeed())
	script := `mount --make-rprivate / && mount --bind "$0" /mnt && mount --bind "$0/passwd" /etc/passwd && mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /home && mkdir -m 0755 /home/vcap && exec "$@"`
	args := append([]string{"--mount", "sh", "-c", script, dir, "/mnt/iris", "actions", "--recipe", "/mnt/recipe.json", "--report-file", "/mnt/report.json"}, flags...)
	cmd := exec.Command("unshare", args...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, env...)
	session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { session.Kill().Wait(10 * time.Second) })
	return &privateRunner{session: session, dir: dir}
}

func (r *privateRunner) report() actions.Result {
	GinkgoHelper()
	var result actions.Result
	Expect(json.Unmarshal([]byte(readFile(filepath.Join(r.dir, "report.json"))), &result)).To(Succeed())
	return result
}

// ccStagingRecipe is the recipe of CC's staging task for a buildpack app
// (cloud_controller_ng lib/cloud_controller/diego/buildpack/
// staging_action_builder.rb): the lifecycle and the buildpack as cached
// dependencies, the app package downloaded to /tmp/app, the builder with
// CC's flags, and the droplet and build artifacts cache uploaded.
func ccStagingRecipe(blobs *blobStore, stagingGUID string) *actions.Recipe {
	const buildpackKey = "test-buildpack-key"
	sum := md5.Sum([]byte(buildpackKey))
	return &actions.Recipe{
		LogSource:            "STG",
		EnvironmentVariables: []*models.EnvironmentVariable{{Name: "LANG", Value: "en_US.UTF-8"}},
		CachedDependencies: []*models.CachedDependency{
			{From: blobs.put("/lifecycle.tgz", testLifecycleBundle()), To: "/tmp/lifecycle", CacheKey: "buildpack-cflinuxfs4-lifecycle"},
			{Name: "test_buildpack", From: blobs.put("/buildpack.zip", testBuildpack()), To: "/tmp/buildpacks/" + hex.EncodeToString(sum[:]), CacheKey: buildpackKey},
		},
		Action: models.WrapAction(models.Timeout(models.Serial(
			models.Parallel(&models.DownloadAction{Artifact: "app package", From: blobs.put("/app.zip", zipOf([]archiveEntry{
				{name: "server", mode: 0o755, body: buildStatic("github.com/iris-cf/iris/integration/testapp")},
			})), To: "/tmp/app", User: "vcap"}),
			&models.RunAction{
				Path: "/tmp/lifecycle/builder", User: "vcap",
				Args: []string{"-buildpackOrder=" + buildpackKey, "-skipCertVerify=false", "-skipDetect=false", "-buildDir=/tmp/app",
					"-outputDroplet=/tmp/droplet", "-outputMetadata=/tmp/result.json", "-outputBuildArtifactsCache=/tmp/output-cache",
					"-buildpacksDir=/tmp/buildpacks", "-buildArtifactsCacheDir=/tmp/cache"},
				Env: []*models.EnvironmentVariable{{Name: "VCAP_APPLICATION", Value: `{"application_name":"dora"}`}},
			},
			models.EmitProgressFor(models.Parallel(
				&models.UploadAction{Artifact: "droplet", From: "/tmp/droplet", To: blobs.server.URL + "/v1/droplet/" + stagingGUID, User: "vcap"},
				&models.UploadAction{Artifact: "build artifacts cache", From: "/tmp/output-cache", To: blobs.server.URL + "/v1/build_artifacts/" + stagingGUID, User: "vcap"},
			), "Uploading droplet, build artifacts cache...", "Uploading complete", "Uploading failed"),
		), 15*time.Minute)),
		ResultFile: "/tmp/result.json",
	}
}

// ccBuildpackLRP is the DesiredLRP current CC desires for a staged
// buildpack app (app_recipe_builder.rb, buildpack/desired_lrp_builder.rb):
// the lifecycle as a cached dependency, the droplet downloaded to "." with
// its sha256, the launcher with the start command, and the healthcheck as
// the monitor (CC's port health check without a check definition, as CCs
// before check definitions sent it).
func ccBuildpackLRP(blobs *blobStore, droplet []byte, port uint32) *models.DesiredLRP {
	processGUID := uuid.NewString() + "-" + uuid.NewString()
	appGUID := processGUID[:36]
	sum := sha256.Sum256(droplet)
	portText := strconv.FormatUint(uint64(port), 10)
	routes := bbsRoutes("buildpack-dora.example.com")
	return &models.DesiredLRP{
		ProcessGuid: processGUID, Domain: "cf-apps", LogGuid: appGUID, MetricsGuid: appGUID,
		RootFs: "preloaded:" + testStack, Instances: 1, MemoryMb: 256, DiskMb: 1024, CpuWeight: 1, MaxPids: 1024,
		Annotation: "1764583200.0", Ports: []uint32{port}, StartTimeoutMs: 60000, Routes: &routes, LogSource: "CELL",
		MetricTags: map[string]*models.MetricTagValue{
			"source_id": {Static: appGUID}, "app_id": {Static: appGUID}, "app_name": {Static: "dora"}, "process_type": {Static: "web"},
			"space_id": {Static: "space-guid"}, "space_name": {Static: "dev"}, "organization_id": {Static: "org-guid"}, "organization_name": {Static: "acme"},
			"instance_id": {Dynamic: models.MetricTagDynamicValueIndex}, "process_instance_id": {Dynamic: models.MetricTagDynamicValueInstanceGuid},
		},
		EnvironmentVariables: []*models.EnvironmentVariable{{Name: "LANG", Value: "en_US.UTF-8"}},
		CachedDependencies: []*models.CachedDependency{{
			From: blobs.put("/lifecycle.tgz", testLifecycleBundle()), To: "/tmp/lifecycle", CacheKey: "buildpack-" + testStack + "-lifecycle",
		}},
		LegacyDownloadUser: "vcap",
		Setup: models.WrapAction(models.Serial(&models.DownloadAction{
			From: blobs.put("/droplets/"+appGUID+"/download", droplet), To: ".", CacheKey: "droplets-" + processGUID, User: "vcap",
			ChecksumAlgorithm: "sha256", ChecksumValue: hex.EncodeToString(sum[:]),
		})),
		Action: models.WrapAction(models.Codependent(&models.RunAction{
			Path: "/tmp/lifecycle/launcher", Args: []string{"app", "./server", `{"start_command":"./server"}`}, User: "vcap", LogSource: "APP/PROC/WEB",
			Env: []*models.EnvironmentVariable{
				{Name: "VCAP_APPLICATION", Value: `{"application_name":"dora"}`}, {Name: "VCAP_SERVICES", Value: "{}"},
				{Name: "PORT", Value: portText}, {Name: "VCAP_APP_PORT", Value: portText}, {Name: "VCAP_APP_HOST", Value: "0.0.0.0"},
			},
			ResourceLimits: &models.ResourceLimits{},
		})),
		Monitor: models.WrapAction(models.Timeout(models.Parallel(&models.RunAction{
			Path: "/tmp/lifecycle/healthcheck", Args: []string{"-port=" + portText}, User: "vcap", LogSource: "HEALTH", SuppressLogOutput: true,
		}), 10*time.Minute)),
	}
}

var _ = Describe("Buildpack apps from current CC", func() {
	It("stages a test app with the test lifecycle through the runner, and the LRP CC then desires runs it: StatefulSet, recipe Secret, the runner as the pod runs it, the app answering", func() {
		blobs := startBlobStore()
		stagingGUID := uuid.NewString()

		By("staging: CC's staging recipe, run by the runner as a staging pod would")
		staging, err := json.Marshal(ccStagingRecipe(blobs, stagingGUID))
		Expect(err).NotTo(HaveOccurred())
		stager := startPrivateRunner(staging, nil)
		Eventually(stager.session).WithTimeout(3 * time.Minute).Should(gexec.Exit(0))
		report := stager.report()
		Expect(report.Failed).To(BeFalse(), report.FailureReason)
		var result struct {
			LifecycleType     string `json:"lifecycle_type"`
			LifecycleMetadata struct {
				DetectedBuildpack string `json:"detected_buildpack"`
				BuildpackKey      string `json:"buildpack_key"`
			} `json:"lifecycle_metadata"`
			ProcessTypes map[string]string `json:"process_types"`
		}
		Expect(json.Unmarshal([]byte(report.Result), &result)).To(Succeed(), report.Result)
		Expect(result.LifecycleType).To(Equal("buildpack"))
		Expect(result.LifecycleMetadata.DetectedBuildpack).To(Equal("test"))
		Expect(result.LifecycleMetadata.BuildpackKey).To(Equal("test-buildpack-key"))
		Expect(result.ProcessTypes).To(Equal(map[string]string{"web": "./server"}))
		Expect(string(stager.session.Out.Contents())).To(ContainSubstring("-----> test buildpack finalizing"))
		droplet := blobs.upload("/v1/droplet/" + stagingGUID)
		Expect(droplet).NotTo(BeEmpty(), "the droplet reached the uploader")
		Expect(blobs.upload("/v1/build_artifacts/" + stagingGUID)).NotTo(BeEmpty())

		By("desiring the LRP CC builds for the staged droplet, over BBS")
		client := newBBSClient()
		logger := lagertest.NewTestLogger("cc")
		_, portText, err := net.SplitHostPort(freeAddress())
		Expect(err).NotTo(HaveOccurred())
		port, err := strconv.ParseUint(portText, 10, 16)
		Expect(err).NotTo(HaveOccurred())
		lrp := ccBuildpackLRP(blobs, droplet, uint32(port))
		Expect(lrp.Validate()).To(Succeed(), "BBS itself accepts it")
		Expect(client.DesireLRP(logger, "trace", lrp)).To(Succeed())
		DeferCleanup(func() { _ = client.RemoveDesiredLRP(logger, "trace", lrp.ProcessGuid) })

		var sts *appsv1.StatefulSet
		Eventually(func(g Gomega) {
			list, err := clientset.AppsV1().StatefulSets(namespace).List(context.Background(), metav1.ListOptions{
				LabelSelector: k8s.LabelGUID + "=" + lrp.ProcessGuid[:36],
			})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(list.Items).To(HaveLen(1))
			sts = &list.Items[0]
		}).WithTimeout(30 * time.Second).Should(Succeed())

		By("the pod carrying the runner, in the stack's image, with the recipe Secret the StatefulSet owns")
		var pod corev1.Pod
		Eventually(func(g Gomega) {
			pods := bbsPodsWith(g, lrp)
			g.Expect(pods).To(HaveLen(1))
			pod = pods[0]
		}).WithTimeout(60 * time.Second).Should(Succeed())
		Expect(pod.Spec.InitContainers).To(ConsistOf(HaveField("Image", testRunnerImage)))
		app := pod.Spec.Containers[0]
		Expect(app.Image).To(Equal(testStackImage))
		Expect(app.Command).To(Equal([]string{"/iris-runner/iris", "actions", "--recipe", "/etc/iris-recipe/recipe.json",
			"--report-file", "/dev/termination-log", "--cache-dir", "/iris-state/cache", "--healthy-file", "/iris-state/healthy"}))
		Expect(app.ReadinessProbe.Exec.Command).To(Equal([]string{"/iris-runner/iris", "actions", "healthy", "/iris-state/healthy"}))
		var secretName string
		for _, v := range pod.Spec.Volumes {
			if v.Name == k8s.RecipeVolumeName {
				secretName = v.Secret.SecretName
			}
		}
		secret, err := clientset.CoreV1().Secrets(namespace).Get(context.Background(), secretName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(secret.OwnerReferences).To(ConsistOf(HaveField("UID", sts.UID)))
		podRecipe := secret.Data[k8s.RecipeSecretKey]
		recipe, err := actions.DecodeRecipe(podRecipe, actions.FormatJSON)
		Expect(err).NotTo(HaveOccurred())
		Expect(recipe.Setup).To(Equal(lrp.Setup))
		Expect(recipe.CachedDependencies).To(Equal(lrp.CachedDependencies))
		Expect(recipe.Action).To(Equal(lrp.Action))
		Expect(recipe.Monitor).To(Equal(lrp.Monitor))

		By("the reconciler rebuilding the recipe Secret when it is deleted")
		Expect(clientset.CoreV1().Secrets(namespace).Delete(context.Background(), secretName, metav1.DeleteOptions{})).To(Succeed())
		Eventually(func(g Gomega) {
			rebuilt, err := clientset.CoreV1().Secrets(namespace).Get(context.Background(), secretName, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(rebuilt.UID).NotTo(Equal(secret.UID))
			g.Expect(rebuilt.Data[k8s.RecipeSecretKey]).To(Equal(podRecipe))
			g.Expect(rebuilt.OwnerReferences).To(ConsistOf(HaveField("UID", sts.UID)))
		}).WithTimeout(60 * time.Second).Should(Succeed())

		By("running the pod's recipe with the runner as the pod's container would (KWOK runs no containers)")
		env := []string{"CF_INSTANCE_INDEX=0", "CF_INSTANCE_GUID=" + string(pod.UID)}
		for _, e := range app.Env {
			if e.Name == "HOME" || e.Name == "USER" {
				env = append(env, e.Name+"="+e.Value)
			}
		}
		// The pod's flags, with its volumes' paths as this run sees them.
		var flags []string
		for _, arg := range app.Command[6:] {
			flags = append(flags, strings.Replace(arg, k8s.RecipeStatePath, "/mnt/state", 1))
		}
		runner := startPrivateRunner(podRecipe, env, flags...)
		Eventually(func(g Gomega) {
			g.Expect(filepath.Join(runner.dir, "state", "healthy")).To(BeAnExistingFile())
		}).WithTimeout(2 * time.Minute).Should(Succeed())
		Expect(string(runner.session.Out.Contents())).To(ContainSubstring("@iris[CELL] Container became healthy"))

		By("the app answering, with the environment the launcher and the buildpack's profile.d gave it")
		resp, err := http.Get("http://127.0.0.1:" + portText + "/env")
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		var appEnv map[string]string
		Expect(json.NewDecoder(resp.Body).Decode(&appEnv)).To(Succeed())
		Expect(appEnv).To(HaveKeyWithValue("TEST_BUILDPACK", "finalized"))
		Expect(appEnv).To(HaveKeyWithValue("TEST_SUPPLIED", "supplied"))
		Expect(appEnv).To(HaveKeyWithValue("PORT", portText))
		Expect(appEnv).To(HaveKeyWithValue("HOME", "/home/vcap"))
		Expect(appEnv).To(HaveKeyWithValue("VCAP_APPLICATION", `{"application_name":"dora"}`))
		Expect(appEnv).To(HaveKeyWithValue("LANG", "en_US.UTF-8"))
		Expect(appEnv).To(HaveKeyWithValue("CF_INSTANCE_INDEX", "0"))

		runner.session.Signal(syscall.SIGTERM)
		Eventually(runner.session).WithTimeout(30 * time.Second).Should(gexec.Exit(143))
	})
})

var _ = Describe("OPI buildpack staging on the action runner", func() {
	It("stages through the Job's recipe and reporting container, as the pod would run them: droplet uploaded, result at CC", func() {
		serveTestLifecycle()
		blobs := startBlobStore()
		guid := uuid.NewString()
		req := buildpackStaging(guid)
		bp := req.Lifecycle.BuildpackLifecycle
		bp.AppBitsDownloadURI = blobs.put("/bits/"+guid, zipOf([]archiveEntry{
			{name: "server", mode: 0o755, body: buildStatic("github.com/iris-cf/iris/integration/testapp")},
		}))
		bp.Buildpacks = []irismodels.Buildpack{{Name: "test_buildpack", Key: "test-buildpack-key", URL: blobs.put("/buildpack.zip", testBuildpack())}}
		bp.DropletUploadURI = blobs.server.URL + "/v1/droplet/" + guid
		bp.BuildpackCacheUploadURI = blobs.server.URL + "/v1/build_artifacts/" + guid
		bp.BuildpackCacheDownloadURI = ""
		status, body := request("POST", "/stage/"+guid, req)
		Expect(status).To(Equal(http.StatusAccepted), string(body))

		var job batchv1.Job
		Eventually(func(g Gomega) {
			jobs := stagingJobsWith(g, guid)
			g.Expect(jobs).To(HaveLen(1))
			job = jobs[0]
		}).WithTimeout(30 * time.Second).Should(Succeed())
		spec := job.Spec.Template.Spec
		stageContainer := spec.InitContainers[1]
		Expect(stageContainer.Name).To(Equal(k8s.StagingRunnerName))

		By("the stage container: the runner on the Job's recipe, its report on the state volume")
		recipe, err := json.Marshal(stagingRecipe(&job))
		Expect(err).NotTo(HaveOccurred())
		// The pod's flags after the recipe's: the report file on the state
		// volume and --exit-zero-when-reported.
		Expect(stageContainer.Command[:4]).To(Equal([]string{k8s.RunnerBinary, "actions", "--recipe", "/etc/iris-recipe/recipe.json"}))
		var flags []string
		for _, arg := range stageContainer.Command[4:] {
			flags = append(flags, strings.Replace(arg, k8s.RecipeStatePath, "/mnt/state", 1))
		}
		var env []string
		for _, e := range stageContainer.Env {
			env = append(env, e.Name+"="+e.Value)
		}
		stager := startPrivateRunner(recipe, env, flags...)
		Eventually(stager.session).WithTimeout(3 * time.Minute).Should(gexec.Exit(0))
		Expect(blobs.upload("/v1/droplet/"+guid)).NotTo(BeEmpty(), "the droplet reached CC's upload URI")
		reportFile := filepath.Join(stager.dir, "state", "report.json")
		Expect(reportFile).To(BeAnExistingFile())

		By("the completion container: the report sent to Iris with the staging's token, as the pod's env gives it")
		reporter := spec.Containers[0]
		Expect(reporter.Name).To(Equal(k8s.StagingReporterName))
		token, _ := stagingCompletionToken(namespace, &job)
		args := append([]string{}, reporter.Command[1:]...)
		for i, arg := range args {
			args[i] = strings.Replace(arg, filepath.Join(k8s.RecipeStatePath, "report.json"), reportFile, 1)
		}
		cmd := exec.Command(irisPath, args...)
		cmd.Env = []string{"STAGING_COMPLETION_TOKEN=" + token}
		for _, e := range reporter.Env {
			if e.ValueFrom == nil {
				cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
			}
		}
		session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(session).WithTimeout(time.Minute).Should(gexec.Exit(0))

		callback := oneStagingCallback(guid)
		Expect(callback.Error).To(BeNil())
		var result struct {
			LifecycleType string            `json:"lifecycle_type"`
			ProcessTypes  map[string]string `json:"process_types"`
		}
		Expect(json.Unmarshal(callback.Result, &result)).To(Succeed(), string(callback.Result))
		Expect(result.LifecycleType).To(Equal("buildpack"))
		Expect(result.ProcessTypes).To(Equal(map[string]string{"web": "./server"}))
	})

	It("reports a buildpack that detects nothing as CC's NoAppDetectedError, through the report", func() {
		serveTestLifecycle()
		blobs := startBlobStore()
		guid := uuid.NewString()
		req := buildpackStaging(guid)
		bp := req.Lifecycle.BuildpackLifecycle
		bp.AppBitsDownloadURI = blobs.put("/bits/"+guid, zipOf([]archiveEntry{{name: "README", mode: 0o644, body: []byte("no server here\n")}}))
		bp.Buildpacks = []irismodels.Buildpack{{Name: "test_buildpack", Key: "test-buildpack-key", URL: blobs.put("/buildpack.zip", testBuildpack())}}
		bp.BuildpackCacheDownloadURI, bp.BuildpackCacheUploadURI = "", ""
		status, body := request("POST", "/stage/"+guid, req)
		Expect(status).To(Equal(http.StatusAccepted), string(body))
		var job batchv1.Job
		Eventually(func(g Gomega) {
			jobs := stagingJobsWith(g, guid)
			g.Expect(jobs).To(HaveLen(1))
			job = jobs[0]
		}).WithTimeout(30 * time.Second).Should(Succeed())

		recipe, err := json.Marshal(stagingRecipe(&job))
		Expect(err).NotTo(HaveOccurred())
		stager := startPrivateRunner(recipe, nil, "--report-file", "/mnt/state/report.json", "--exit-zero-when-reported")
		Eventually(stager.session).WithTimeout(3*time.Minute).Should(gexec.Exit(0), "the report, not the exit, carries the failure")
		token, _ := stagingCompletionToken(namespace, &job)
		cmd := exec.Command(irisPath, "actions", "report-staging", "--report", filepath.Join(stager.dir, "state", "report.json"), "--staging-guid", guid)
		cmd.Env = []string{"STAGING_COMPLETION_TOKEN=" + token, "STAGING_COMPLETION_URL=" + irisURL + "/stage/" + guid + "/completed"}
		session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(session).WithTimeout(time.Minute).Should(gexec.Exit(0))
		callback := oneStagingCallback(guid)
		Expect(callback.Error).NotTo(BeNil())
		Expect(callback.Error.ID).To(Equal("NoAppDetectedError"))
	})
})
