package ops_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/tedsuo/ifrit"

	"github.com/iris-cf/iris/ops"
)

func TestKubeAPIRequestsAreCountedByVerbAndResource(t *testing.T) {
	apiServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer apiServer.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	server := ops.NewServer(lagertest.NewTestLogger("ops"), addr)
	client := &http.Client{Transport: server.CountKubeAPIRequests()(http.DefaultTransport)}
	process := ifrit.Invoke(server)
	defer func() { process.Signal(os.Interrupt); <-process.Wait() }()

	send := func(method, path, contentType string) {
		req, err := http.NewRequest(method, apiServer.URL+path, strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	send(http.MethodGet, "/apis/apps/v1/namespaces/cf-workloads/statefulsets?labelSelector=x&watch=true", "")
	send(http.MethodGet, "/apis/apps/v1/namespaces/cf-workloads/statefulsets?labelSelector=x", "")
	send(http.MethodGet, "/apis/apps/v1/namespaces/cf-workloads/statefulsets/dora", "")
	send(http.MethodPatch, "/apis/apps/v1/namespaces/cf-workloads/statefulsets/dora?fieldManager=iris", "application/apply-patch+yaml")
	send(http.MethodPatch, "/api/v1/namespaces/cf-workloads/pods/dora-0", "application/merge-patch+json")
	send(http.MethodPut, "/apis/apps/v1/namespaces/cf-workloads/statefulsets/dora/status", "application/json")
	send(http.MethodPost, "/apis/networking.k8s.io/v1/namespaces/cf-workloads/networkpolicies", "application/json")
	send(http.MethodPost, "/apis/networking.k8s.io/v1/namespaces/cf-workloads/networkpolicies", "application/json")
	send(http.MethodDelete, "/api/v1/namespaces/cf-workloads/pods/dora-0", "")
	send(http.MethodGet, "/api/v1/nodes", "")
	send(http.MethodGet, "/version", "")

	_, metrics := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`iris_kube_api_requests_total{resource="statefulsets",verb="watch"} 1`,
		`iris_kube_api_requests_total{resource="statefulsets",verb="list"} 1`,
		`iris_kube_api_requests_total{resource="statefulsets",verb="get"} 1`,
		`iris_kube_api_requests_total{resource="statefulsets",verb="apply"} 1`,
		`iris_kube_api_requests_total{resource="pods",verb="patch"} 1`,
		`iris_kube_api_requests_total{resource="statefulsets/status",verb="update"} 1`,
		`iris_kube_api_requests_total{resource="networkpolicies",verb="create"} 2`,
		`iris_kube_api_requests_total{resource="pods",verb="delete"} 1`,
		`iris_kube_api_requests_total{resource="nodes",verb="list"} 1`,
		`iris_kube_api_requests_total{resource="other",verb="get"} 1`,
		"go_gc_heap_live_bytes",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
