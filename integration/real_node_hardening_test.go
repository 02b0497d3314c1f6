package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/models"
)

// The hardening options that are off in the suite's config, observed from
// inside a real container on the real node: each is desired through a
// second Iris (API only) configured with it.
var _ = Describe("Hardening options observed in real containers on the real node", Ordered, func() {
	var (
		node, tag string
		image     string
	)

	BeforeAll(func() {
		node, tag = os.Getenv("IRIS_REAL_NODE"), os.Getenv("IRIS_REAL_NODE_PLACEMENT_TAG")
		if node == "" || tag == "" {
			Skip("the cluster has no real node: IRIS_REAL_NODE is not set (scripts/cluster starts one where the machine " +
				"allows it; see IRIS_CLUSTER_REAL_NODE in its header)")
		}
		image = pushTestApp()
	})

	// desireThrough desires the test app on the real node through the Iris
	// at base and returns its pod once it has an IP, or the reason its
	// container cannot start.
	desireThrough := func(base string) (corev1.Pod, string) {
		GinkgoHelper()
		lrp := newLRP(1)
		lrp.PlacementTags = []string{tag}
		lrp.Lifecycle = models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{Image: image}}
		lrp.MemoryMB = 64
		status, body := requestTo(base, "PUT", "/apps/"+lrp.ProcessGUID, lrp)
		Expect(status).To(Equal(http.StatusAccepted), string(body))
		DeferCleanup(stopLRP, lrp)
		var pod corev1.Pod
		var failure string
		Eventually(func(g Gomega) {
			ps := podsWith(g, namespace, lrp)
			g.Expect(ps).To(HaveLen(1))
			pod = ps[0]
			g.Expect(pod.Spec.NodeName).To(Equal(node))
			failure = podStartFailure(g, pod)
			if failure != "" {
				return
			}
			g.Expect(isReady(pod)).To(BeTrue())
		}, 2*time.Minute, 250*time.Millisecond).Should(Succeed())
		return pod, failure
	}

	identityOf := func(pod corev1.Pod) map[string]any {
		GinkgoHelper()
		var id map[string]any
		Expect(json.Unmarshal([]byte(appGet(Default, pod, "/identity")), &id)).To(Succeed())
		return id
	}

	It("mounts the root filesystem read-only with lrp.read_only_root_filesystem, /tmp writable", func() {
		base := startExtraAPIIris(func(config string) string {
			return strings.Replace(config, "\nlrp:\n", "\nlrp:\n  read_only_root_filesystem: true\n", 1)
		})
		pod, failure := desireThrough(base)
		Expect(failure).To(BeEmpty())
		id := identityOf(pod)
		Expect(id).To(HaveKeyWithValue("RootMount", "ro"))
		Expect(id).To(HaveKeyWithValue("RootWritable", false))

		By("the suite's Iris (option off) mounts it read-write, so the observation tells the two apart")
		lrp := newLRP(1)
		lrp.PlacementTags = []string{tag}
		lrp.Lifecycle = models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{Image: image}}
		lrp.MemoryMB = 64
		desire(lrp)
		DeferCleanup(stopLRP, lrp)
		Eventually(func(g Gomega) {
			ps := podsWith(g, namespace, lrp)
			g.Expect(ps).To(HaveLen(1))
			g.Expect(isReady(ps[0])).To(BeTrue())
			var id map[string]any
			g.Expect(json.Unmarshal([]byte(appGet(g, ps[0], "/identity")), &id)).To(Succeed())
			g.Expect(id).To(HaveKeyWithValue("RootMount", "rw"))
		}, 2*time.Minute, 250*time.Millisecond).Should(Succeed())
	})

	It("runs the app in its own user namespace with lrp.user_namespaces (hostUsers: false)", func() {
		base := startExtraAPIIris(func(config string) string {
			return strings.Replace(config, "\nlrp:\n", "\nlrp:\n  user_namespaces: true\n", 1)
		})
		pod, failure := desireThrough(base)
		if failure != "" {
			Skip("this node cannot run pods with hostUsers: false (the kernel or runtime lacks what user namespaces need): " + failure)
		}
		Expect(pod.Spec.HostUsers).To(HaveValue(BeFalse()))
		id := identityOf(pod)
		Expect(id).To(HaveKeyWithValue("Uid", "2000\t2000\t2000\t2000"), "the app's uid inside its namespace")
		uidMap := strings.Fields(id["UIDMap"].(string))
		Expect(uidMap).To(HaveLen(3), "one range: %v", uidMap)
		Expect(uidMap[0]).To(Equal("0"))
		Expect(uidMap[2]).To(Equal("65536"), "a pod's range of 65536 ids")
		hostStart, err := strconv.Atoi(uidMap[1])
		Expect(err).NotTo(HaveOccurred())
		Expect(hostStart).To(BeNumerically(">=", 65536), "container root is an unprivileged uid on the node")
	})

	It("confines the app with the runtime's default AppArmor profile where the kernel has AppArmor", func() {
		if _, err := os.Stat("/sys/module/apparmor"); err != nil {
			Skip("the kernel has no AppArmor (/sys/module/apparmor is missing): the kubelet refuses pods that ask for a " +
				"profile there, so the suite sets apparmor_profile to \"\" and nothing confines apps")
		}
		Expect(appArmorProfile()).To(Equal("runtime/default"), "the suite's Iris asks for it where AppArmor is enabled")
		lrp := newLRP(1)
		lrp.PlacementTags = []string{tag}
		lrp.Lifecycle = models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{Image: image}}
		lrp.MemoryMB = 64
		desire(lrp)
		DeferCleanup(stopLRP, lrp)
		Eventually(func(g Gomega) {
			ps := podsWith(g, namespace, lrp)
			g.Expect(ps).To(HaveLen(1))
			g.Expect(isReady(ps[0])).To(BeTrue())
			var id map[string]any
			g.Expect(json.Unmarshal([]byte(appGet(g, ps[0], "/identity")), &id)).To(Succeed())
			g.Expect(id).To(HaveKeyWithValue("AppArmor", "cri-containerd.apparmor.d (enforce)"))
		}, 2*time.Minute, 250*time.Millisecond).Should(Succeed())
	})
})

// podStartFailure is why the pod's sandbox or app container cannot start
// (a CreateContainerError and the like, or a failed sandbox event), or "".
func podStartFailure(g Gomega, pod corev1.Pod) string {
	for _, s := range pod.Status.ContainerStatuses {
		if w := s.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" && w.Reason != "PodInitializing" {
			return w.Reason + ": " + w.Message
		}
	}
	events, err := clientset.CoreV1().Events(pod.Namespace).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + pod.Name + ",reason=FailedCreatePodSandBox",
	})
	g.Expect(err).NotTo(HaveOccurred())
	if len(events.Items) > 0 {
		return events.Items[0].Reason + ": " + events.Items[0].Message
	}
	return ""
}

// startExtraAPIIris runs a second Iris serving the API only (the suite's
// Iris reports, as leader) on a new plain listener, with the suite's config
// changed by edit, until the spec ends; it returns its base URL.
func startExtraAPIIris(edit func(config string) string) string {
	GinkgoHelper()
	return startExtraAPIIrisOn(freeAddress(), edit)
}

// startExtraAPIIrisOn is startExtraAPIIris listening on addr.
func startExtraAPIIrisOn(addr string, edit func(config string) string) string {
	GinkgoHelper()
	base := "http://" + addr
	config := secondIrisConfig("api")
	config = strings.Replace(config, "  listen_address: "+strconv.Quote(strings.TrimPrefix(irisURL, "http://")), "  listen_address: "+strconv.Quote(addr), 1)
	config = strings.Replace(config, "  tls_listen_address: "+strconv.Quote(strings.TrimPrefix(irisTLSURL, "https://")), `  tls_listen_address: ""`, 1)
	edited := edit(config)
	Expect(edited).NotTo(Equal(config), "the edit changed nothing")
	startExtraIris(irisPath, edited)
	Eventually(func(g Gomega) {
		resp, err := http.Get(base + "/healthz")
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed(), fmt.Sprintf("the extra Iris on %s answers", addr))
	return base
}
