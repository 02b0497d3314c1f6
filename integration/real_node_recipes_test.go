package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/bifrost/bbs/bbstest"
	"github.com/iris-cf/iris/k8s"
)

// CC's Diego recipes desired through Iris's BBS front, run for real on the
// real node: a `cf run-task`, a buildpack staging and the buildpack app's
// DesiredLRP. Their pods pull Iris's own image (scripts/image) to install
// the action runner and run the recipe in a busybox stand-in for the
// cflinuxfs4 stack; lifecycle, buildpack, app bits and droplets come from
// a blobstore on the node IP, the host address the pods reach.
//
// The recipes run in an Iris of their own (BBS front, API and reporters),
// configured with the pushed runner image and the busybox stack, watching
// a namespace of its own: the suite's Iris names a runner image no node can
// pull, and as nothing of the suite's Iris watches that namespace, the two
// never act on each other's objects.
var _ = Describe("BBS recipes in real containers on the real node", Ordered, func() {
	var (
		node, tag, nodeIP string
		ns                string // the recipes' Iris's workloads namespace
		blobs             *blobStore
		lifecycleURL      string
		client            bbsclient.InternalClient
		logger            *lagertest.TestLogger
		// droplet is the one the staging spec's builder uploaded.
		droplet []byte
	)
	space := bbstest.Space{AppName: "dora", SpaceGUID: "space-guid", SpaceName: "dev", OrgGUID: "org-guid", OrgName: "acme"}

	BeforeAll(func() {
		node, tag = os.Getenv("IRIS_REAL_NODE"), os.Getenv("IRIS_REAL_NODE_PLACEMENT_TAG")
		if node == "" || tag == "" {
			Skip("the cluster has no real node: IRIS_REAL_NODE is not set (scripts/cluster starts one where the machine " +
				"allows it; see IRIS_CLUSTER_REAL_NODE in its header)")
		}
		stack := pushBusyboxStack("iris-test-busybox-stack:" + uuid.NewString()[:8])
		runner := pushIrisImage("real-node")
		n, err := clientset.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				nodeIP = a.Address
			}
		}
		Expect(nodeIP).NotTo(BeEmpty())
		blobs = startBlobStoreOn(net.JoinHostPort(nodeIP, "0"))
		lifecycleURL = blobs.put("/lifecycle.tgz", testLifecycleBundle())

		ns = createNamespace("iris-recipes-")
		// Registered first, so it runs last: after the Iris stopped.
		DeferCleanup(func() {
			err := clientset.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
			if !apierrors.IsNotFound(err) {
				Expect(err).NotTo(HaveOccurred())
			}
		})
		client = newBBSClientTo(startRecipeIris(ns, runner, stack))
		logger = lagertest.NewTestLogger("real-node-recipes")
	})

	// jobPods are the pods of a recipe task's Job.
	jobPods := func(g Gomega, guid string) []corev1.Pod {
		list, err := clientset.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{
			LabelSelector: batchv1.JobNameLabel + "=" + k8s.RecipeTaskJobName(guid),
		})
		g.Expect(err).NotTo(HaveOccurred())
		return list.Items
	}

	// callbacks are the completion callbacks the test CC got on path,
	// decoded.
	callbacks := func(path string) []map[string]any {
		var out []map[string]any
		for _, r := range ccRequestsTo(path) {
			var body map[string]any
			Expect(json.Unmarshal(r.Body, &body)).To(Succeed(), string(r.Body))
			Expect(r.ContentType).To(Equal("application/json"))
			out = append(out, body)
		}
		return out
	}

	// oneCallback waits for the task's callback on path, and then makes
	// sure it stays the only one.
	oneCallback := func(path string) map[string]any {
		GinkgoHelper()
		Eventually(func(g Gomega) { g.Expect(ccRequestsTo(path)).NotTo(BeEmpty()) }, 4*time.Minute, 250*time.Millisecond).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(ccRequestsTo(path)).To(HaveLen(1)) }, 2*time.Second).Should(Succeed())
		return callbacks(path)[0]
	}

	// runTask desires CC's `cf run-task` of command for a buildpack app
	// whose droplet is a prepared one (an app dir with a script, and a
	// profile.d script the launcher sources), on the real node.
	runTask := func(name, command string, resultFile string) string {
		GinkgoHelper()
		droplet := tgzOf([]archiveEntry{
			{name: "app/hello.sh", mode: 0o755, body: []byte("#!/bin/sh\necho \"hello from $1\"\n")},
			{name: "profile.d/task.sh", mode: 0o644, body: []byte("export FROM_PROFILE=sourced\n")},
			{name: "staging_info.yml", mode: 0o644, body: []byte("detected_buildpack: test\nstart_command: ./hello.sh web\n")},
		})
		guid := uuid.NewString()
		def := bbstest.BuildpackRunTask(bbstest.Task{Space: space, AppGUID: uuid.NewString(), Name: name,
			CallbackURL: cc.URL() + "/internal/v4/tasks/" + guid + "/completed", LifecycleURL: lifecycleURL},
			testStack, blobs.put("/droplets/"+guid+".tgz", droplet), sha256Of(droplet), command)
		def.PlacementTags = []string{tag}
		def.ResultFile = resultFile
		def.Annotation = "1764583200.5"
		Expect(client.DesireTask(logger, "run-task", guid, "cf-tasks", def)).To(Succeed())
		return guid
	}

	It("runs CC's `cf run-task` of a buildpack app in a real container: the result file's contents on success, Diego's reason on failure, one callback each", func() {
		ok := runTask("answer", `./hello.sh task && printf '{"profile":"%s","memory_limit":"%s","pwd":"%s"}' "$FROM_PROFILE" "$MEMORY_LIMIT" "$PWD" > /tmp/result.json`, "/tmp/result.json")
		states := watchTaskStates(client, logger, ok)
		failing := runTask("fail", `echo "failing on purpose" >&2; exit 3`, "")

		By("the tasks' pods run on the real node")
		for _, guid := range []string{ok, failing} {
			Eventually(func(g Gomega) {
				pods := jobPods(g, guid)
				g.Expect(pods).To(HaveLen(1))
				g.Expect(pods[0].Spec.NodeName).To(Equal(node))
			}, time.Minute, 100*time.Millisecond).Should(Succeed())
		}

		body := oneCallback("/internal/v4/tasks/" + ok + "/completed")
		Expect(body).To(HaveKeyWithValue("task_guid", ok))
		Expect(body).To(HaveKeyWithValue("failed", false), fmt.Sprint(body["failure_reason"]))
		Expect(body).To(HaveKeyWithValue("failure_reason", ""))
		Expect(body).To(HaveKeyWithValue("annotation", "1764583200.5"))
		var result map[string]string
		Expect(json.Unmarshal([]byte(body["result"].(string)), &result)).To(Succeed(), "the result file: %v", body["result"])
		Expect(result).To(Equal(map[string]string{
			"profile":      "sourced", // the launcher sourced the droplet's profile.d
			"memory_limit": "256m",    // the run action's env
			"pwd":          k8s.StackHome + "/app",
		}))

		okResult := body["result"]
		body = oneCallback("/internal/v4/tasks/" + failing + "/completed")
		Expect(body).To(HaveKeyWithValue("task_guid", failing))
		Expect(body).To(HaveKeyWithValue("failed", true))
		Expect(body).To(HaveKeyWithValue("result", ""))
		Expect(body).To(HaveKeyWithValue("failure_reason", "APP/TASK/fail: Exited with status 3"), "Diego's run step failure, with the run action's log source")

		By("get_by_task_guid.r2 saw the task on the real node, RUNNING, then completed; answered, it is gone")
		for _, guid := range []string{ok, failing} {
			Eventually(func(g Gomega) {
				_, err := client.TaskByGuid(logger, "run-task", guid)
				g.Expect(err).To(MatchError(models.ErrResourceNotFound))
			}, 30*time.Second).Should(Succeed())
		}
		seen := states()
		GinkgoWriter.Printf("task %s as get_by_task_guid.r2 saw it: %+v\n", ok, seen)
		Expect(seen).To(ContainElement(taskSeen{State: models.Task_Running, CellID: node}))
		// COMPLETED and RESOLVING last only as long as the callback takes
		// (the test CC answers at once), often less than a poll: where
		// they were seen, they carry the result and no cell.
		for i, reading := range seen {
			Expect(reading.State).To(BeElementOf(models.Task_Pending, models.Task_Running, models.Task_Completed, models.Task_Resolving))
			if i > 0 {
				Expect(reading.State).To(BeNumerically(">=", seen[i-1].State), "states in BBS's order: %v", seen)
			}
			if reading.State >= models.Task_Completed {
				Expect(reading.Result).To(Equal(okResult))
				Expect(reading.CellID).To(BeEmpty())
			}
		}
	})

	It("cancels a running task: its real container stops, and CC hears 'task was cancelled' once", func() {
		guid := runTask("forever", `echo "started"; exec sleep 3600`, "")
		By("the task's process runs in its container on the real node")
		Eventually(func(g Gomega) {
			pods := jobPods(g, guid)
			g.Expect(pods).To(HaveLen(1))
			g.Expect(pods[0].Spec.NodeName).To(Equal(node))
			g.Expect(pods[0].Status.ContainerStatuses).To(ConsistOf(HaveField("State.Running", Not(BeNil()))))
			task, err := client.TaskByGuid(logger, "cancel", guid)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(task.State).To(Equal(models.Task_Running))
		}, 2*time.Minute, 250*time.Millisecond).Should(Succeed())

		Expect(client.CancelTask(logger, "cancel", guid)).To(Succeed())
		body := oneCallback("/internal/v4/tasks/" + guid + "/completed")
		Expect(body).To(HaveKeyWithValue("failed", true))
		Expect(body).To(HaveKeyWithValue("failure_reason", "task was cancelled"))
		By("the kubelet stopped the container: the pod is gone")
		Eventually(func(g Gomega) { g.Expect(jobPods(g, guid)).To(BeEmpty()) }, time.Minute, 250*time.Millisecond).Should(Succeed())
		Expect(client.CancelTask(logger, "cancel", guid)).To(MatchError(models.ErrResourceNotFound))
	})

	It("stages a buildpack app from CC's staging TaskDefinition: bits, buildpack and lifecycle downloaded, the builder run, the droplet uploaded, the builder's result to build_completed; a failing compile as exit 223", func() {
		bits := zipOf([]archiveEntry{{name: "server", mode: 0o755, body: buildStatic("github.com/iris-cf/iris/integration/testapp")}})
		stage := func(buildpack []byte) string {
			guid := uuid.NewString()
			def := bbstest.BuildpackStaging(bbstest.Staging{
				Task: bbstest.Task{Space: space, AppGUID: uuid.NewString(),
					CallbackURL:  cc.URL() + "/internal/v3/staging/" + guid + "/build_completed?start=true",
					LifecycleURL: lifecycleURL},
				Stack:      testStack,
				PackageURL: blobs.put("/packages/"+guid, bits), PackageSHA256: sha256Of(bits),
				BuildpackURL: blobs.put("/buildpacks/"+guid+".zip", buildpack), BuildpackKey: "test-buildpack-key",
				DropletUploadURL: blobs.server.URL + "/v1/droplet/" + guid + "?cc-droplet-upload-uri=x",
				CacheUploadURL:   blobs.server.URL + "/v1/build_artifacts/" + guid,
			})
			def.PlacementTags = []string{tag}
			Expect(client.DesireTask(logger, "staging", guid, "cf-app-staging", def)).To(Succeed())
			return guid
		}
		guid, failing := stage(testBuildpack()), stage(failingBuildpack())
		for _, g := range []string{guid, failing} {
			Eventually(func(g2 Gomega) {
				pods := jobPods(g2, g)
				g2.Expect(pods).To(HaveLen(1))
				g2.Expect(pods[0].Spec.NodeName).To(Equal(node))
			}, time.Minute, 100*time.Millisecond).Should(Succeed())
		}

		body := oneCallback("/internal/v3/staging/" + guid + "/build_completed")
		expectTestBuildpackStaged(body, guid)

		By("the droplet the builder wrote reached the blobstore, with the build artifacts cache")
		droplet = blobs.upload("/v1/droplet/" + guid)
		Expect(tgzNames(droplet)).To(ContainElements("./app/server", "./profile.d/test.sh", "./staging_info.yml"))
		Expect(blobs.upload("/v1/build_artifacts/" + guid)).NotTo(BeEmpty())

		By("the failing buildpack's staging: the builder's exit status where CC's sanitizer maps it, no droplet")
		body = oneCallback("/internal/v3/staging/" + failing + "/build_completed")
		Expect(body).To(HaveKeyWithValue("failed", true))
		Expect(body).To(HaveKeyWithValue("failure_reason", "STG: Exited with status 223"), "CC's sanitizer maps a reason ending in 223 to BuildpackCompileFailed")
		Expect(blobs.upload("/v1/droplet/" + failing)).To(BeEmpty())
	})

	It("runs the staged droplet as CC's buildpack DesiredLRPs, with a monitor and with a check definition: the pods Ready, the actual LRPs RUNNING on the real node, the app answering on the instance address", func() {
		Expect(droplet).NotTo(BeEmpty(), "the staging spec's droplet")
		const port = 8080
		// CCs before check definitions sent the monitor alone; current CC
		// sends a check definition beside it, which becomes the pod's
		// probes (the kubelet's, here for real) instead of the runner's monitor.
		monitored, checked := ccBuildpackLRP(blobs, droplet, port), ccBuildpackLRP(blobs, droplet, port)
		checked.CheckDefinition = &models.CheckDefinition{
			Checks:          []*models.Check{{HttpCheck: &models.HTTPCheck{Port: port, Path: "/health", RequestTimeoutMs: 1000}}},
			ReadinessChecks: []*models.Check{{TcpCheck: &models.TCPCheck{Port: port}}},
		}
		lrpPods := func(g Gomega, lrp *models.DesiredLRP) []corev1.Pod {
			pods, err := clientset.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: k8s.LabelGUID + "=" + lrp.ProcessGuid[:36]})
			g.Expect(err).NotTo(HaveOccurred())
			return pods.Items
		}
		for _, lrp := range []*models.DesiredLRP{monitored, checked} {
			lrp.PlacementTags = []string{tag}
			Expect(lrp.Validate()).To(Succeed(), "BBS itself accepts it")
			Expect(client.DesireLRP(logger, "lrp", lrp)).To(Succeed())
			DeferCleanup(func() {
				Expect(client.RemoveDesiredLRP(logger, "lrp", lrp.ProcessGuid)).To(Succeed())
				Eventually(func(g Gomega) { g.Expect(lrpPods(g, lrp)).To(BeEmpty()) }, time.Minute).Should(Succeed())
			})
		}

		for _, lrp := range []*models.DesiredLRP{monitored, checked} {
			By("the pod runs on the real node and is Ready: " + map[bool]string{true: "the kubelet's probes", false: "the monitor's healthy file"}[lrp == checked])
			var pod corev1.Pod
			Eventually(func(g Gomega) {
				pods := lrpPods(g, lrp)
				g.Expect(pods).To(HaveLen(1))
				pod = pods[0]
				g.Expect(pod.Spec.NodeName).To(Equal(node))
				g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
				g.Expect(isReady(pod)).To(BeTrue())
			}, 3*time.Minute, 250*time.Millisecond).Should(Succeed())
			Expect(pod.Status.ContainerStatuses).To(ConsistOf(HaveField("RestartCount", BeZero())))
			app := pod.Spec.Containers[0]
			if lrp == checked {
				Expect(app.LivenessProbe).NotTo(BeNil())
				Expect(app.LivenessProbe.HTTPGet).To(HaveField("Path", "/health"))
				Expect(app.Command).NotTo(ContainElement("--healthy-file"), "no monitor in the recipe")
			} else {
				Expect(app.Command).To(ContainElement("--healthy-file"))
			}

			var actual *models.ActualLRP
			Eventually(func(g Gomega) {
				lrps, err := client.ActualLRPs(logger, "lrp", models.ActualLRPFilter{ProcessGuid: lrp.ProcessGuid})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(lrps).To(HaveLen(1))
				g.Expect(lrps[0].State).To(Equal(models.ActualLRPStateRunning))
				actual = lrps[0]
			}, 30*time.Second, 250*time.Millisecond).Should(Succeed())
			Expect(actual.CellId).To(Equal(node))
			Expect(actual.InstanceAddress).To(Equal(pod.Status.PodIP))
			Expect(actual.Ports).To(ContainElement(HaveField("ContainerPort", uint32(port))))

			By("the app, started by the launcher with CC's start command, answers on the instance address")
			address := "http://" + net.JoinHostPort(actual.InstanceAddress, strconv.Itoa(port))
			Expect(httpGet(Default, address+"/")).To(Equal("testapp 0\n"))
			var env map[string]string
			Expect(json.Unmarshal([]byte(httpGet(Default, address+"/env")), &env)).To(Succeed())
			Expect(env).To(HaveKeyWithValue("TEST_BUILDPACK", "finalized"), "the droplet's profile.d, sourced by the launcher")
			Expect(env).To(HaveKeyWithValue("TEST_SUPPLIED", "supplied"))
			Expect(env).To(HaveKeyWithValue("PORT", strconv.Itoa(port)))
			Expect(env).To(HaveKeyWithValue("HOME", k8s.StackHome))
			Expect(env).To(HaveKeyWithValue("CF_INSTANCE_GUID", actual.InstanceGuid))
			Expect(env).To(HaveKeyWithValue("CF_INSTANCE_INDEX", "0"))
			Expect(env).To(HaveKeyWithValue("VCAP_APPLICATION", `{"application_name":"dora"}`))
		}
	})
})

// startRecipeIris runs an Iris beside the suite's with its BBS front, API
// and reporters (components api and events), whose recipe pods run on the
// real node: runner is Iris's pushed image, stack the image of the suite's
// stack. It watches only ns (its Leases live there too), serves no ops
// listener, and returns its BBS URL once the BBS front answers. Each of
// extra replaces its first string in the config with its second.
func startRecipeIris(ns, runner, stack string, extra ...[2]string) string {
	GinkgoHelper()
	config := readFile(irisConfigFile)
	bbsAddr := freeAddress()
	for _, r := range append([][2]string{
		{"log_level: debug", "log_level: debug\ncomponents: [api, events]"},
		{fmt.Sprintf("workloads_namespaces: [%q, %q]", namespace, otherNamespace), fmt.Sprintf("workloads_namespaces: [%q]", ns)},
		{"  listen_address: " + strconv.Quote(strings.TrimPrefix(irisURL, "http://")), "  listen_address: " + strconv.Quote(freeAddress())},
		{"  tls_listen_address: " + strconv.Quote(strings.TrimPrefix(irisTLSURL, "https://")), `  tls_listen_address: ""`},
		{"  listen_address: " + strconv.Quote(strings.TrimPrefix(irisOpsURL, "http://")), `  listen_address: ""`},
		{"  runner_image: " + strconv.Quote(testRunnerImage), "  runner_image: " + strconv.Quote(runner)},
		{"  tls_listen_address: " + strconv.Quote(strings.TrimPrefix(bbsURL, "https://")), "  tls_listen_address: " + strconv.Quote(bbsAddr)},
		{"    " + testStack + ": " + strconv.Quote(testStackImage), "    " + testStack + ": " + strconv.Quote(stack)},
	}, extra...) {
		Expect(config).To(ContainSubstring(r[0]))
		config = strings.Replace(config, r[0], r[1], 1)
	}
	startExtraIris(irisPath, config)
	url := "https://" + bbsAddr
	client := newBBSClientTo(url)
	Eventually(func(g Gomega) {
		_, err := client.Domains(lagertest.NewTestLogger("recipe-iris"), "ready")
		g.Expect(err).NotTo(HaveOccurred())
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed(), "the recipes' Iris serves BBS on "+bbsAddr)
	return url
}

// taskSeen is one reading of a task through get_by_task_guid.r2.
type taskSeen struct {
	State  models.Task_State
	CellID string
	Result string
}

// watchTaskStates reads the task every 50 ms until BBS no longer knows
// it (or the spec ends), and returns what it saw so far, each change once.
func watchTaskStates(client bbsclient.InternalClient, logger *lagertest.TestLogger, guid string) func() []taskSeen {
	var (
		mu   sync.Mutex
		seen []taskSeen
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ticker := time.NewTicker(50 * time.Millisecond)
		defer ticker.Stop()
		for {
			task, err := client.TaskByGuid(logger, "watch", guid)
			if err == nil {
				reading := taskSeen{State: task.State, CellID: task.CellId, Result: task.Result}
				mu.Lock()
				if len(seen) == 0 || seen[len(seen)-1] != reading {
					seen = append(seen, reading)
				}
				mu.Unlock()
			} else if models.ConvertError(err).Equal(models.ErrResourceNotFound) && len(seen) > 0 {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
	}()
	DeferCleanup(func() {
		cancel()
		<-done
	})
	return func() []taskSeen {
		mu.Lock()
		defer mu.Unlock()
		return append([]taskSeen(nil), seen...)
	}
}

// expectTestBuildpackStaged checks a staging callback body: the staging
// guid succeeded with the result.json the test lifecycle's builder writes
// for testBuildpack.
func expectTestBuildpackStaged(body map[string]any, guid string) {
	GinkgoHelper()
	Expect(body).To(HaveKeyWithValue("task_guid", guid))
	Expect(body).To(HaveKeyWithValue("failed", false), fmt.Sprint(body["failure_reason"]))
	var result struct {
		LifecycleType     string `json:"lifecycle_type"`
		LifecycleMetadata struct {
			DetectedBuildpack string `json:"detected_buildpack"`
			BuildpackKey      string `json:"buildpack_key"`
		} `json:"lifecycle_metadata"`
		ProcessTypes map[string]string `json:"process_types"`
	}
	Expect(json.Unmarshal([]byte(body["result"].(string)), &result)).To(Succeed(), "the builder's result.json: %v", body["result"])
	Expect(result.LifecycleType).To(Equal("buildpack"))
	Expect(result.LifecycleMetadata.DetectedBuildpack).To(Equal("test"), "the buildpack's manifest language, as the builder found it")
	Expect(result.LifecycleMetadata.BuildpackKey).To(Equal("test-buildpack-key"))
	Expect(result.ProcessTypes).To(Equal(map[string]string{"web": "./server"}), "the buildpack's bin/release, run by the stack's sh")
}
