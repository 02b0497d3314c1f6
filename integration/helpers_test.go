package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/google/uuid"
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
	return requestTo(irisURL, method, path, body)
}

// requestTo sends a request to the Iris API at base; a string body is sent
// as it is, anything else as JSON.
func requestTo(base, method, path string, body any) (int, []byte) {
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = bytes.NewBufferString(b)
	default:
		data, err := json.Marshal(b)
		Expect(err).NotTo(HaveOccurred())
		reader = bytes.NewBuffer(data)
	}
	req, err := http.NewRequest(method, base+path, reader)
	Expect(err).NotTo(HaveOccurred())
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
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

func getInstances(lrp *models.DesireLRPRequest) func() []*models.Instance {
	return func() []*models.Instance {
		status, body := request("GET", "/apps/"+lrp.GUID+"/"+lrp.Version+"/instances", nil)
		Expect(status).To(Equal(http.StatusOK), string(body))
		var resp models.GetInstancesResponse
		Expect(json.Unmarshal(body, &resp)).To(Succeed())
		Expect(resp.ProcessGUID).To(Equal(lrp.ProcessGUID))
		return resp.Instances
	}
}

func states(lrp *models.DesireLRPRequest) func() []string {
	return func() []string {
		var out []string
		for _, inst := range getInstances(lrp)() {
			out = append(out, inst.State)
		}
		return out
	}
}

// selectorFor selects the objects of one LRP by its guid and version labels.
func selectorFor(lrp *models.DesireLRPRequest) string {
	return k8s.LabelGUID + "=" + lrp.GUID + "," + k8s.LabelVersion + "=" + lrp.Version
}

func statefulSets(ns string, lrp *models.DesireLRPRequest) []appsv1.StatefulSet {
	list, err := clientset.AppsV1().StatefulSets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selectorFor(lrp)})
	Expect(err).NotTo(HaveOccurred())
	return list.Items
}

func pods(ns string, lrp *models.DesireLRPRequest) []corev1.Pod {
	list, err := clientset.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selectorFor(lrp)})
	Expect(err).NotTo(HaveOccurred())
	return list.Items
}

func runningPods(ns string, lrp *models.DesireLRPRequest) func() int {
	return func() int {
		n := 0
		for _, p := range pods(ns, lrp) {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				n++
			}
		}
		return n
	}
}

func secrets(ns string, lrp *models.DesireLRPRequest) []corev1.Secret {
	list, err := clientset.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selectorFor(lrp)})
	Expect(err).NotTo(HaveOccurred())
	return list.Items
}

func networkPolicies(ns string, lrp *models.DesireLRPRequest) []networkingv1.NetworkPolicy {
	list, err := clientset.NetworkingV1().NetworkPolicies(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selectorFor(lrp)})
	Expect(err).NotTo(HaveOccurred())
	return list.Items
}

func theStatefulSet(lrp *models.DesireLRPRequest) *appsv1.StatefulSet {
	list := statefulSets(namespace, lrp)
	Expect(list).To(HaveLen(1))
	return &list[0]
}
