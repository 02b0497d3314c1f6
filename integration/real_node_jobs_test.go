package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

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
		exitImage string // runs `testapp exit` ($TESTAPP_EXIT_CODE, else 0)
		uploader  string // runs `testapp upload`
	)

	BeforeAll(func() {
		node, tag = os.Getenv("IRIS_REAL_NODE"), os.Getenv("IRIS_REAL_NODE_PLACEMENT_TAG")
		if node == "" || tag == "" {
			Skip("the cluster has no real node: IRIS_REAL_NODE is not set (scripts/cluster starts one where the machine " +
				"allows it; see IRIS_CLUSTER_REAL_NODE in its header)")
		}
		binary := buildTestApp()
		app = pushTestAppImage(binary, "iris-testapp:latest", "/testapp")
		exitImage = pushTestAppImage(binary, "iris-testapp-command:exit", "/testapp", "exit")
		uploader = pushTestAppImage(binary, "iris-testapp-command:upload", "/testapp", "upload")
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

		Eventually(func() []models.TaskCompletedRequest { return cc.taskCallbacks(succeeds.GUID, true) }, 2*time.Minute).Should(ConsistOf(
			models.TaskCompletedRequest{TaskGUID: succeeds.GUID, Failed: false, FailureReason: ""}))
		Eventually(func() []models.TaskCompletedRequest { return cc.taskCallbacks(fails.GUID, true) }, 2*time.Minute).Should(ConsistOf(
			models.TaskCompletedRequest{TaskGUID: fails.GUID, Failed: true, FailureReason: "Exited with status 3"}))
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

	Describe("buildpack stagings, with the test app playing the staging images", Ordered, func() {
		var base string

		// A second Iris serving the API (the suite's reports, as leader),
		// whose staging pods are the test app; it listens on the node IP
		// (the host's end of the real node's veth), so the uploader in a pod
		// reaches it.
		BeforeAll(func() {
			n, err := clientset.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			var nodeIP string
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					nodeIP = a.Address
				}
			}
			Expect(nodeIP).NotTo(BeEmpty())
			_, port, err := net.SplitHostPort(freeAddress())
			Expect(err).NotTo(HaveOccurred())
			addr := net.JoinHostPort(nodeIP, port)
			base = startExtraAPIIrisOn(addr, func(config string) string {
				return strings.Replace(config, "  iris_url: "+strconv.Quote(irisURL), fmt.Sprintf("  iris_url: %q\n  downloader_image: %q\n  executor_image: %q\n  uploader_image: %q",
					"http://"+addr, exitImage, exitImage, uploader), 1)
			})
		})

		stageOnRealNode := func(exitCode string) (string, *models.StagingRequest) {
			GinkgoHelper()
			guid := uuid.NewString()
			req := buildpackStaging(guid)
			req.AppGUID = isolatedApp().AppGUID
			req.MemoryMB, req.DiskMB = 64, 256
			// The executor gets the app's environment: its exit status.
			req.Environment = append(req.Environment, models.EnvironmentVariable{Name: "TESTAPP_EXIT_CODE", Value: exitCode})
			status, body := requestTo(base, "POST", "/stage/"+guid, req)
			Expect(status).To(Equal(http.StatusAccepted), string(body))
			Expect(jobPodNode(k8s.LabelStagingGUID + "=" + guid)).To(Equal(node))
			return guid, req
		}

		It("runs downloader, executor and uploader, and CC gets the result the uploader reported", func() {
			guid, _ := stageOnRealNode("0")
			var callback models.StagingCallback
			Eventually(func(g Gomega) {
				callbacks := cc.stagingCallbacks(guid, true)
				g.Expect(callbacks).To(HaveLen(1))
				callback = callbacks[0]
			}, 2*time.Minute).Should(Succeed())
			Expect(callback.Error).To(BeNil())
			var result map[string]any
			Expect(json.Unmarshal(callback.Result, &result)).To(Succeed())
			Expect(result).To(HaveKeyWithValue("execution_metadata", guid), "reported by the uploader of this staging, from its environment")
			Expect(result).To(HaveKeyWithValue("process_types", HaveKeyWithValue("web", "/testapp")))
			Eventually(func(g Gomega) { g.Expect(stagingJobsWith(g, guid)).To(BeEmpty()) }, 30*time.Second).Should(Succeed())
			Expect(cc.stagingCallbacks(guid, false)).To(HaveLen(1))
		})

		It("tells CC the compile failed when the executor exits 223", func() {
			guid, _ := stageOnRealNode("223")
			Eventually(func() []models.StagingCallback { return cc.stagingCallbacks(guid, true) }, 2*time.Minute).Should(ConsistOf(
				HaveField("Error", And(
					HaveField("ID", "BuildpackCompileFailed"),
					HaveField("Message", "staging executor exited with status 223"),
				))))
		})
	})
})
