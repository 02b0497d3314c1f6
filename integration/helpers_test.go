package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// newLRP returns a desire request shaped like CC's, with fresh guids.
func newLRP(instances int) *models.DesireLRPRequest {
	guid, version := uuid.NewString(), uuid.NewString()
	return &models.DesireLRPRequest{
		GUID: guid, Version: version, ProcessGUID: guid + "-" + version, ProcessType: "web",
		AppGUID: guid, AppName: "dora", SpaceGUID: "space-guid", SpaceName: "dev",
		OrganizationGUID: "org-guid", OrganizationName: "acme",
		Ports:       []int32{8080},
		Routes:      models.Routes{"cf-router": json.RawMessage(`[{"hostname":"dora.example.com","port":8080}]`)},
		Environment: map[string]string{"VCAP_APPLICATION": `{"application_name":"dora"}`, "MEMORY_LIMIT": "128m"},
		Instances:   ptr.To(instances), LastUpdated: "1700000000.0",
		HealthCheckType: "port", HealthCheckTimeoutMs: 60000,
		MemoryMB: 128, DiskMB: 256, CPUWeight: 2,
		Lifecycle: models.Lifecycle{DockerLifecycle: &models.DockerLifecycle{Image: "cloudfoundry/dora:latest", Command: []string{}}},
	}
}

// request sends a request to the suite's Iris (plain HTTP).
func request(method, path string, body any) (int, []byte) {
	GinkgoHelper()
	return requestTo(irisURL, method, path, body)
}

// requestTo sends a request to the Iris API at base; a string body is sent
// as it is, anything else as JSON.
func requestTo(base, method, path string, body any) (int, []byte) {
	GinkgoHelper()
	return requestWith(Default, base, method, path, body)
}

// requestWith is requestTo asserting with g: in a polled function, pass the
// poll's Gomega so a failed request is retried, not fatal.
func requestWith(g Gomega, base, method, path string, body any) (int, []byte) {
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = bytes.NewBufferString(b)
	default:
		data, err := json.Marshal(b)
		g.Expect(err).NotTo(HaveOccurred())
		reader = bytes.NewBuffer(data)
	}
	req, err := http.NewRequest(method, base+path, reader)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	return resp.StatusCode, data
}

func desire(lrp *models.DesireLRPRequest) {
	status, body := request("PUT", "/apps/"+lrp.ProcessGUID, lrp)
	Expect(status).To(Equal(http.StatusAccepted), string(body))
}

func update(lrp *models.DesireLRPRequest, u models.DesiredLRPUpdate) {
	status, body := request("POST", "/apps/"+lrp.ProcessGUID, models.UpdateDesiredLRPRequest{GUID: lrp.GUID, Version: lrp.Version, Update: u})
	Expect(status).To(Equal(http.StatusOK), string(body))
}

// getInstances polls the LRP's instances through Iris's API.
func getInstances(lrp *models.DesireLRPRequest) func(Gomega) []*models.Instance {
	return func(g Gomega) []*models.Instance {
		status, body := requestWith(g, irisURL, "GET", "/apps/"+lrp.GUID+"/"+lrp.Version+"/instances", nil)
		g.Expect(status).To(Equal(http.StatusOK), string(body))
		var resp models.GetInstancesResponse
		g.Expect(json.Unmarshal(body, &resp)).To(Succeed())
		g.Expect(resp.ProcessGUID).To(Equal(lrp.ProcessGUID))
		return resp.Instances
	}
}

// states polls the states of the LRP's instances.
func states(lrp *models.DesireLRPRequest) func(Gomega) []string {
	return func(g Gomega) []string {
		var out []string
		for _, inst := range getInstances(lrp)(g) {
			out = append(out, inst.State)
		}
		return out
	}
}

// selectorFor selects the objects of one LRP by its guid and version labels.
func selectorFor(lrp *models.DesireLRPRequest) string {
	return k8s.LabelGUID + "=" + lrp.GUID + "," + k8s.LabelVersion + "=" + lrp.Version
}

// The listing helpers below assert that the API server answered; each has
// a ...With form that asserts with the Gomega of a polled function.

func statefulSets(ns string, lrp *models.DesireLRPRequest) []appsv1.StatefulSet {
	GinkgoHelper()
	return statefulSetsWith(Default, ns, lrp)
}

func statefulSetsWith(g Gomega, ns string, lrp *models.DesireLRPRequest) []appsv1.StatefulSet {
	list, err := clientset.AppsV1().StatefulSets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selectorFor(lrp)})
	g.Expect(err).NotTo(HaveOccurred())
	return list.Items
}

func pods(ns string, lrp *models.DesireLRPRequest) []corev1.Pod {
	GinkgoHelper()
	return podsWith(Default, ns, lrp)
}

func podsWith(g Gomega, ns string, lrp *models.DesireLRPRequest) []corev1.Pod {
	list, err := clientset.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selectorFor(lrp)})
	g.Expect(err).NotTo(HaveOccurred())
	return list.Items
}

// runningPods polls how many of the LRP's pods run and are not being deleted.
func runningPods(ns string, lrp *models.DesireLRPRequest) func(Gomega) int {
	return func(g Gomega) int {
		n := 0
		for _, p := range podsWith(g, ns, lrp) {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				n++
			}
		}
		return n
	}
}

func secrets(ns string, lrp *models.DesireLRPRequest) []corev1.Secret {
	GinkgoHelper()
	return secretsWith(Default, ns, lrp)
}

func secretsWith(g Gomega, ns string, lrp *models.DesireLRPRequest) []corev1.Secret {
	list, err := clientset.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selectorFor(lrp)})
	g.Expect(err).NotTo(HaveOccurred())
	return list.Items
}

func networkPolicies(ns string, lrp *models.DesireLRPRequest) []networkingv1.NetworkPolicy {
	GinkgoHelper()
	return networkPoliciesWith(Default, ns, lrp)
}

func networkPoliciesWith(g Gomega, ns string, lrp *models.DesireLRPRequest) []networkingv1.NetworkPolicy {
	list, err := clientset.NetworkingV1().NetworkPolicies(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selectorFor(lrp)})
	g.Expect(err).NotTo(HaveOccurred())
	return list.Items
}

func theStatefulSet(lrp *models.DesireLRPRequest) *appsv1.StatefulSet {
	GinkgoHelper()
	return theStatefulSetWith(Default, lrp)
}

func theStatefulSetWith(g Gomega, lrp *models.DesireLRPRequest) *appsv1.StatefulSet {
	list := statefulSetsWith(g, namespace, lrp)
	g.Expect(list).To(HaveLen(1))
	return &list[0]
}
