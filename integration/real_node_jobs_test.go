package integration_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// Tasks and stagings run to completion in real containers on the real node,
// and CC hears the exit status the kernel gave the process. OPI task and
// staging bodies carry no placement: they land on the real node because the
// app's LRP is in its isolation segment.
var _ = Describe("Tasks and stagings in real containers on the real node", Ordered, func() {
	var (
		node, tag string
		app       string // the test app's image
	)

	BeforeAll(func() {
		node, tag = os.Getenv("IRIS_REAL_NODE"), os.Getenv("IRIS_REAL_NODE_PLACEMENT_TAG")
		if node == "" || tag == "" {
			Skip("the cluster has no real node: IRIS_REAL_NODE is not set (scripts/cluster starts one where the machine " +
				"allows it; see IRIS_CLUSTER_REAL_NODE in its header)")
		}
		app = pushTestAppImage(buildTestApp(), "iris-testapp:latest", "/testapp")
	})

	// isolatedApp desires an LRP of a new app in the real node's isolation
	// segment, with no instances (a stopped app still has its LRP): the
	// segment its tasks and stagings are placed by.
	isolatedApp := func() *models.DesireLRPRequest {
		GinkgoHelper()
		lrp := newLRP(0)
		lrp.PlacementTags = []string{tag}
		lrp.Lifecycle = models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{Image: app}}
		desire(lrp)
		DeferCleanup(stopLRP, lrp)
		return lrp
	}

	// jobPodNode waits for the pod of the Job labelled selector and returns
	// the node it was scheduled to.
	jobPodNode := func(selector string) string {
		GinkgoHelper()
		var nodeName string
		Eventually(func(g Gomega) {
			pods, err := clientset.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pods.Items).NotTo(BeEmpty())
			nodeName = pods.Items[0].Spec.NodeName
			g.Expect(nodeName).NotTo(BeEmpty())
		}, time.Minute, 50*time.Millisecond).Should(Succeed())
		return nodeName
	}

	It("runs an app's tasks in its isolation segment, and CC hears exit 0 as success and exit 3 as failure", func() {
		lrp := isolatedApp()
		task := func(code int) *models.TaskRequest {
			t := newTask()
			t.AppGUID = lrp.AppGUID
			t.Lifecycle = models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{Image: app, Command: []string{"/testapp", "exit", strconv.Itoa(code)}}}
			return t
		}
		succeeds, fails := task(0), task(3)
		desireTask(succeeds)
		desireTask(fails)
		Expect(jobPodNode(k8s.LabelTaskGUID + "=" + succeeds.GUID)).To(Equal(node))
		Expect(jobPodNode(k8s.LabelTaskGUID + "=" + fails.GUID)).To(Equal(node))

		Eventually(func(g Gomega) {
			g.Expect(cc.taskCallbacks(succeeds.GUID, true)).To(ConsistOf(
				models.TaskCompletedRequest{TaskGUID: succeeds.GUID, Failed: false, FailureReason: ""}))
		}, 2*time.Minute).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(cc.taskCallbacks(fails.GUID, true)).To(ConsistOf(
				models.TaskCompletedRequest{TaskGUID: fails.GUID, Failed: true, FailureReason: "Exited with status 3"}))
		}, 2*time.Minute).Should(Succeed())
		By("each reported once, and its Job removed")
		Eventually(func(g Gomega) {
			g.Expect(taskJobsWith(g, succeeds)).To(BeEmpty())
			g.Expect(taskJobsWith(g, fails)).To(BeEmpty())
		}, 30*time.Second).Should(Succeed())
		Expect(cc.taskCallbacks(succeeds.GUID, false)).To(HaveLen(1))
		Expect(cc.taskCallbacks(fails.GUID, false)).To(HaveLen(1))
	})

	It("runs a task whose app has no isolated LRP on the nodes of no segment, never on the real node", func() {
		task := newTask()
		task.Lifecycle = models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{Image: app, Command: []string{"/testapp", "exit", "0"}}}
		desireTask(task)
		DeferCleanup(func() { request("DELETE", "/tasks/"+task.GUID, nil) })
		Expect(jobPodNode(k8s.LabelTaskGUID + "=" + task.GUID)).NotTo(Equal(node))
	})

	Describe("buildpack stagings on Iris's action runner, in a busybox stack", Ordered, func() {
		var (
			base  string     // the second Iris, on the node IP
			blobs *blobStore // CC's blobstore and cc-uploader, on the node IP
		)

		// A second Iris serving the API (the suite's reports, as leader)
		// whose staging pods run for real: Iris's own image (scripts/image)
		// installs the runner and reports, a busybox stack runs the recipe.
		// It and the blobstore listen on the node IP (the host's end of the
		// real node's veth), the only host address the pods reach.
		BeforeAll(func() {
			stack := pushBusyboxStack("iris-test-busybox-stack:" + uuid.NewString()[:8])
			runner := pushIrisImage("real-node")
			n, err := clientset.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			var nodeIP string
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					nodeIP = a.Address
				}
			}
			Expect(nodeIP).NotTo(BeEmpty())
			blobs = startBlobStoreOn(net.JoinHostPort(nodeIP, "0"))
			lifecycle := blobs.put("/lifecycle.tgz", testLifecycleBundle())
			_, port, err := net.SplitHostPort(freeAddress())
			Expect(err).NotTo(HaveOccurred())
			addr := net.JoinHostPort(nodeIP, port)
			base = startExtraAPIIrisOn(addr, func(config string) string {
				for _, r := range [][2]string{
					{"  runner_image: " + strconv.Quote(testRunnerImage), "  runner_image: " + strconv.Quote(runner)},
					{"  iris_url: " + strconv.Quote(irisURL), "  iris_url: " + strconv.Quote("http://"+addr)},
					{"  stack_image: " + strconv.Quote(testStackImage), "  stack_image: " + strconv.Quote(stack)},
					{"  lifecycle_bundle_url: " + strconv.Quote(testLifecycleURL()), "  lifecycle_bundle_url: " + strconv.Quote(lifecycle)},
				} {
					Expect(config).To(ContainSubstring(r[0]))
					config = strings.Replace(config, r[0], r[1], 1)
				}
				return config
			})
		})

		// stageOnRealNode asks the second Iris to stage the test app (a
		// ./server) with buildpack, as an app of the real node's isolation
		// segment, and waits for its pod there.
		stageOnRealNode := func(buildpack []byte) string {
			GinkgoHelper()
			guid := uuid.NewString()
			req := buildpackStaging(guid)
			req.AppGUID = isolatedApp().AppGUID
			// The runner and the builder download, unpack and tar for real.
			req.MemoryMB, req.DiskMB = 256, 1024
			bp := req.Lifecycle.BuildpackLifecycle
			bp.AppBitsDownloadURI = blobs.put("/bits/"+guid, zipOf([]archiveEntry{
				{name: "server", mode: 0o755, body: buildStatic("github.com/iris-cf/iris/integration/testapp")},
			}))
			bp.Buildpacks = []models.Buildpack{{Name: "test_buildpack", Key: "test-buildpack-key", URL: blobs.put("/buildpacks/"+guid+".zip", buildpack)}}
			bp.DropletUploadURI = blobs.server.URL + "/v1/droplet/" + guid
			bp.BuildpackCacheUploadURI = blobs.server.URL + "/v1/build_artifacts/" + guid
			bp.BuildpackCacheDownloadURI, bp.BuildpackCacheChecksum = "", ""
			status, body := requestTo(base, "POST", "/stage/"+guid, req)
			Expect(status).To(Equal(http.StatusAccepted), string(body))
			Expect(jobPodNode(k8s.LabelStagingGUID + "=" + guid)).To(Equal(node))
			return guid
		}

		It("stages the app: the builder's droplet reaches CC's upload URI, and CC gets the builder's result once", func() {
			guid := stageOnRealNode(testBuildpack())
			var callback models.StagingCallback
			Eventually(func(g Gomega) {
				callbacks := cc.stagingCallbacks(guid, true)
				g.Expect(callbacks).To(HaveLen(1))
				callback = callbacks[0]
			}, 3*time.Minute).Should(Succeed())
			Expect(callback.Error).To(BeNil())
			var result struct {
				LifecycleType     string `json:"lifecycle_type"`
				LifecycleMetadata struct {
					DetectedBuildpack string `json:"detected_buildpack"`
					BuildpackKey      string `json:"buildpack_key"`
				} `json:"lifecycle_metadata"`
				ProcessTypes map[string]string `json:"process_types"`
			}
			Expect(json.Unmarshal(callback.Result, &result)).To(Succeed(), string(callback.Result))
			Expect(result.LifecycleType).To(Equal("buildpack"))
			Expect(result.LifecycleMetadata.DetectedBuildpack).To(Equal("test"), "the buildpack's manifest language, as the builder found it")
			Expect(result.LifecycleMetadata.BuildpackKey).To(Equal("test-buildpack-key"))
			Expect(result.ProcessTypes).To(Equal(map[string]string{"web": "./server"}), "the buildpack's bin/release, run by busybox sh")

			By("the droplet the stage container uploaded holds the app and the buildpack's profile.d script")
			Expect(tgzNames(blobs.upload("/v1/droplet/" + guid))).To(ContainElements("./app/server", "./profile.d/test.sh", "./staging_info.yml"))

			By("its Job removed, and CC told once")
			Eventually(func(g Gomega) { g.Expect(stagingJobsWith(g, guid)).To(BeEmpty()) }, time.Minute).Should(Succeed())
			Expect(cc.stagingCallbacks(guid, false)).To(HaveLen(1))
		})

		It("tells CC the compile failed when the buildpack's supply fails (the builder exits 223)", func() {
			guid := stageOnRealNode(failingBuildpack())
			Eventually(func(g Gomega) {
				g.Expect(cc.stagingCallbacks(guid, true)).To(ConsistOf(
					HaveField("Error", HaveField("ID", "BuildpackCompileFailed"))))
			}, 3*time.Minute).Should(Succeed())
			Expect(blobs.upload("/v1/droplet/"+guid)).To(BeEmpty(), "no droplet from a failed compile")
		})
	})
})

// failingBuildpack is testBuildpack whose bin/supply fails after
// detecting the app: the builder's compile failure.
func failingBuildpack() []byte {
	return zipOf([]archiveEntry{
		{name: "manifest.yml", mode: 0o644, body: []byte("language: failing\n")},
		{name: "bin/detect", mode: 0o755, body: []byte("#!/bin/sh\ntest -x \"$1/server\"\n")},
		{name: "bin/supply", mode: 0o755, body: []byte("#!/bin/sh\necho \"-----> test buildpack failing\" >&2\nexit 1\n")},
		{name: "bin/finalize", mode: 0o755, body: []byte("#!/bin/sh\nexit 0\n")},
		{name: "bin/release", mode: 0o755, body: []byte("#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  web: ./server\\n'\n")},
	})
}

// tgzNames lists the entries of a gzipped tar.
func tgzNames(data []byte) []string {
	GinkgoHelper()
	gz, err := gzip.NewReader(bytes.NewReader(data))
	Expect(err).NotTo(HaveOccurred())
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		Expect(err).NotTo(HaveOccurred())
		names = append(names, h.Name)
	}
}

// busyboxPath is Debian's busybox-static (scripts/cluster installs it).
const busyboxPath = "/bin/busybox"

// pushBusyboxStack pushes a stack image to the suite's registry as
// repoAndTag and returns its reference: a statically linked busybox with
// the applets the test buildpack's scripts use, so that the builder and
// the buildpack run as in a real stack without pulling one. It skips the
// spec when the host has no static busybox.
func pushBusyboxStack(repoAndTag string) string {
	GinkgoHelper()
	f, err := elf.Open(busyboxPath)
	if err != nil {
		Skip(fmt.Sprintf("the busybox stack needs a static busybox at %s (Debian's busybox-static package): %v", busyboxPath, err))
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			f.Close()
			Skip(fmt.Sprintf("%s is dynamically linked (Debian's busybox, not busybox-static): the stack image has no libc for it", busyboxPath))
		}
	}
	f.Close()
	data, err := os.ReadFile(busyboxPath)
	Expect(err).NotTo(HaveOccurred())
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, dir := range []string{"bin/", "usr/", "usr/bin/", "etc/", "home/", "home/vcap/"} {
		Expect(tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir})).To(Succeed())
	}
	Expect(tw.WriteHeader(&tar.Header{Name: "tmp/", Mode: 0o1777, Typeflag: tar.TypeDir})).To(Succeed())
	Expect(tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg})).To(Succeed())
	_, err = tw.Write(data)
	Expect(err).NotTo(HaveOccurred())
	for _, applet := range []string{"sh", "cat", "cp", "echo", "env", "ls", "mkdir", "mv", "printf", "rm", "sleep", "tar", "test", "["} {
		Expect(tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777, Typeflag: tar.TypeSymlink})).To(Succeed())
	}
	// The lifecycle's launcher runs the start command with bash, which
	// CF stacks have and busybox has not: busybox's sh stands in for it.
	bash := []byte("#!/bin/sh\nexec /bin/sh \"$@\"\n")
	Expect(tw.WriteHeader(&tar.Header{Name: "bin/bash", Mode: 0o755, Size: int64(len(bash)), Typeflag: tar.TypeReg})).To(Succeed())
	_, err = tw.Write(bash)
	Expect(err).NotTo(HaveOccurred())
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\nvcap:x:2000:2000::/home/vcap:/bin/sh\n")
	Expect(tw.WriteHeader(&tar.Header{Name: "etc/passwd", Mode: 0o644, Size: int64(len(passwd)), Typeflag: tar.TypeReg})).To(Succeed())
	_, err = tw.Write(passwd)
	Expect(err).NotTo(HaveOccurred())
	Expect(tw.Close()).To(Succeed())
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil })
	Expect(err).NotTo(HaveOccurred())
	img, err := mutate.AppendLayers(empty.Image, l)
	Expect(err).NotTo(HaveOccurred())
	cfg, err := img.ConfigFile()
	Expect(err).NotTo(HaveOccurred())
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Config = v1.Config{Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}, User: "2000"}
	img, err = mutate.ConfigFile(img, cfg)
	Expect(err).NotTo(HaveOccurred())
	ref, err := name.ParseReference(oci.Host()+"/"+repoAndTag, name.Insecure)
	Expect(err).NotTo(HaveOccurred())
	Expect(remote.Write(ref, img)).To(Succeed())
	return ref.String()
}
