package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

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

// The upload sidecar for real: CC's staging TaskDefinition over BBS in
// real containers on the real node, with droplet and cache uploaded to a
// cc-uploader stand-in on the node IP that refuses clients without a
// certificate of its client CA. The Iris (a recipes' Iris as in
// real_node_recipes_test.go) has staging.upload_identity_secret_name set,
// so the pod gets the iris-uploader native sidecar: the kubelet runs its
// startup probe, starts the stage container once the socket answers, and
// stops the sidecar after the stage container exited. The stage container
// (buildpack code) must not see the identity.
var _ = Describe("BBS staging with an upload identity in real containers on the real node", Ordered, func() {
	const identitySecret = "iris-upload-identity"

	It("stages CC's staging TaskDefinition with uploads to a cc-uploader that requires mTLS: the sidecar presents the identity, the droplet arrives, build_completed once, the Job completes", func() {
		node, tag := os.Getenv("IRIS_REAL_NODE"), os.Getenv("IRIS_REAL_NODE_PLACEMENT_TAG")
		if node == "" || tag == "" {
			Skip("the cluster has no real node: IRIS_REAL_NODE is not set (scripts/cluster starts one where the machine " +
				"allows it; see IRIS_CLUSTER_REAL_NODE in its header)")
		}
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
		blobs := startBlobStoreOn(net.JoinHostPort(nodeIP, "0"))
		uploader := startMTLSUploaderOn(net.JoinHostPort(nodeIP, "0"))

		ns := createNamespace("iris-upload-identity-")
		// Registered first, so it runs last: after the Iris stopped.
		DeferCleanup(func() {
			err := clientset.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
			if !apierrors.IsNotFound(err) {
				Expect(err).NotTo(HaveOccurred())
			}
		})
		Expect(clientset.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: identitySecret},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": uploader.clientCert, "tls.key": uploader.clientKey, "ca.crt": uploader.serverCA},
		}, metav1.CreateOptions{})).Error().NotTo(HaveOccurred())
		client := newBBSClientTo(startRecipeIris(ns, runner, stack,
			[2]string{"staging:\n", "staging:\n  upload_identity_secret_name: " + identitySecret + "\n"}))
		logger := lagertest.NewTestLogger("real-node-upload-identity")

		bits := zipOf([]archiveEntry{{name: "server", mode: 0o755, body: buildStatic("github.com/iris-cf/iris/integration/testapp")}})
		guid := uuid.NewString()
		def := bbstest.BuildpackStaging(bbstest.Staging{
			Task: bbstest.Task{
				Space:   bbstest.Space{AppName: "dora", SpaceGUID: "space-guid", SpaceName: "dev", OrgGUID: "org-guid", OrgName: "acme"},
				AppGUID: uuid.NewString(), CallbackURL: cc.URL() + "/internal/v3/staging/" + guid + "/build_completed?start=true",
				LifecycleURL: blobs.put("/lifecycle.tgz", testLifecycleBundle()),
			},
			Stack:      testStack,
			PackageURL: blobs.put("/packages/"+guid, bits), PackageSHA256: sha256Of(bits),
			BuildpackURL: blobs.put("/buildpacks/"+guid+".zip", testBuildpack()), BuildpackKey: "test-buildpack-key",
			// As CC builds them: cc-uploader's URLs, CC's own in the query.
			DropletUploadURL: uploader.URL + "/v1/droplet/" + guid + "?cc-droplet-upload-uri=http%3A%2F%2Fcc.internal%2Finternal%2Fv4%2Fdroplets%2F" + guid + "%2Fupload&timeout=900",
			CacheUploadURL:   uploader.URL + "/v1/build_artifacts/" + guid + "?cc-build-artifacts-upload-uri=http%3A%2F%2Fcc.internal%2Fcache&timeout=900",
		})
		def.PlacementTags = []string{tag}
		cc.SetStatus(http.StatusServiceUnavailable)
		DeferCleanup(cc.SetStatus, http.StatusOK)
		Expect(client.DesireTask(logger, "staging", guid, "cf-app-staging", def)).To(Succeed())

		By("the staging pod runs on the real node with the upload sidecar; only the sidecar mounts the identity")
		jobName := k8s.RecipeTaskJobName(guid)
		pod := func(g Gomega) corev1.Pod {
			list, err := clientset.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + jobName})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(list.Items).To(HaveLen(1))
			return list.Items[0]
		}
		DeferCleanup(func() {
			if !CurrentSpecReport().Failed() {
				return
			}
			events, err := clientset.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
			if err == nil {
				for _, e := range events.Items {
					GinkgoWriter.Printf("event %s %s/%s: %s %s\n", e.LastTimestamp, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
				}
			}
		})
		var spec corev1.PodSpec
		Eventually(func(g Gomega) {
			p := pod(g)
			g.Expect(p.Spec.NodeName).To(Equal(node))
			spec = p.Spec
		}, time.Minute, 100*time.Millisecond).Should(Succeed())
		var identityVolumes []string
		for _, v := range spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == identitySecret {
				identityVolumes = append(identityVolumes, v.Name)
			}
		}
		Expect(identityVolumes).To(ConsistOf(k8s.UploadIdentityVolumeName))
		var sidecar *corev1.Container
		for i, c := range spec.InitContainers {
			if c.Name == k8s.UploadProxyContainerName {
				sidecar = &spec.InitContainers[i]
			}
		}
		Expect(sidecar).NotTo(BeNil(), "the upload sidecar: %v", spec.InitContainers)
		Expect(sidecar.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
		Expect(sidecar.StartupProbe).NotTo(BeNil())
		Expect(sidecar.VolumeMounts).To(ContainElement(HaveField("Name", k8s.UploadIdentityVolumeName)))
		Expect(spec.Containers).To(HaveLen(1))
		Expect(spec.Containers[0].VolumeMounts).NotTo(ContainElement(HaveField("Name", k8s.UploadIdentityVolumeName)),
			"the stage container, where buildpacks run, must not see the identity")
		Expect(spec.Containers[0].Command).To(ContainElements("--upload-proxy", k8s.UploadProxySocket))

		By("the kubelet stops the sidecar after the stage container: the pod Succeeded, the Job Complete")
		// CC answers 503 until then, which BBS retries: answered, the task
		// is resolved and its Job deleted, maybe before the kubelet's
		// stop of the sidecar shows.
		lastSeen := ""
		Eventually(func(g Gomega) {
			p := pod(g)
			if seen := fmt.Sprintf("%s deleting=%v init=%+v main=%+v", p.Status.Phase, p.DeletionTimestamp != nil, p.Status.InitContainerStatuses, p.Status.ContainerStatuses); seen != lastSeen {
				GinkgoWriter.Println("pod:", seen)
				lastSeen = seen
			}
			g.Expect(p.Status.Phase).To(Equal(corev1.PodSucceeded))
			g.Expect(p.Status.ContainerStatuses).To(ConsistOf(HaveField("State.Terminated.ExitCode", BeZero())))
			var sidecarStatus *corev1.ContainerStatus
			for i, s := range p.Status.InitContainerStatuses {
				if s.Name == k8s.UploadProxyContainerName {
					sidecarStatus = &p.Status.InitContainerStatuses[i]
				}
			}
			g.Expect(sidecarStatus).NotTo(BeNil())
			g.Expect(sidecarStatus.RestartCount).To(BeZero())
			g.Expect(sidecarStatus.State.Terminated).NotTo(BeNil())
			g.Expect(sidecarStatus.State.Terminated.ExitCode).To(BeZero(), "the sidecar drains and exits 0 on SIGTERM")
			job, err := clientset.BatchV1().Jobs(ns).Get(context.Background(), jobName, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(job.Status.Conditions).To(ContainElement(And(
				HaveField("Type", batchv1.JobComplete), HaveField("Status", corev1.ConditionTrue))))
		}, 3*time.Minute, 250*time.Millisecond).Should(Succeed())
		cc.SetStatus(http.StatusOK)

		By("build_completed reaches CC, accepted once, with the builder's result")
		path := "/internal/v3/staging/" + guid + "/build_completed"
		accepted := func() []ccRequest {
			var out []ccRequest
			for _, r := range ccRequestsTo(path) {
				if r.Status == http.StatusOK {
					out = append(out, r)
				}
			}
			return out
		}
		Eventually(accepted, time.Minute, 250*time.Millisecond).ShouldNot(BeEmpty())
		Consistently(accepted, 2*time.Second).Should(HaveLen(1))
		Expect(ccRequestsTo(path)).To(HaveEach(HaveField("Body", Equal(accepted()[0].Body))), "every attempt told CC the same")
		var body map[string]any
		Expect(json.Unmarshal(accepted()[0].Body, &body)).To(Succeed())
		expectTestBuildpackStaged(body, guid)

		By("droplet and cache reached the cc-uploader over mTLS, each once, every connection with the identity")
		droplets := uploader.received("/v1/droplet/" + guid)
		Expect(droplets).To(HaveLen(1))
		Expect(tgzNames(droplets[0])).To(ContainElements("./app/server", "./profile.d/test.sh", "./staging_info.yml"))
		Expect(uploader.received("/v1/build_artifacts/" + guid)).To(HaveLen(1))
		Expect(uploader.clientNames()).To(ConsistOf("cc-uploader-client"))

		By("answered, the task is resolved: its Job is deleted")
		Eventually(func(g Gomega) {
			_, err := clientset.BatchV1().Jobs(ns).Get(context.Background(), jobName, metav1.GetOptions{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%v", err)
		}, 30*time.Second, 250*time.Millisecond).Should(Succeed())
	})
})
