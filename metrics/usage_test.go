package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/iris-cf/iris/metrics"
)

var _ = Describe("KubeUsage stats summaries", func() {
	var (
		clientset kubernetes.Interface
		proxied   atomic.Int32
	)

	BeforeEach(func() {
		proxied.Store(0)
		// Stands in for the API server's node proxy to the kubelet.
		apiServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/api/v1/nodes/node-a/proxy/stats/summary" {
				http.NotFound(w, r)
				return
			}
			proxied.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"node":{"nodeName":"node-a"},"pods":[{"podRef":{"name":"p","namespace":"ns","uid":"u1"},"ephemeral-storage":{"usedBytes":4096}}]}`))
		}))
		DeferCleanup(apiServer.Close)
		var err error
		clientset, err = kubernetes.NewForConfig(&rest.Config{Host: apiServer.URL})
		Expect(err).NotTo(HaveOccurred())
	})

	It("never reaches the node proxy when disk from the stats summary is off (the default)", func() {
		summary, err := metrics.NewKubeUsage(clientset, nil, false).StatsSummary(context.Background(), "node-a")
		Expect(err).NotTo(HaveOccurred())
		Expect(summary.Pods).To(BeEmpty())
		Expect(proxied.Load()).To(BeZero())
	})

	It("reads the kubelet's stats summary through the node proxy when enabled", func() {
		summary, err := metrics.NewKubeUsage(clientset, nil, true).StatsSummary(context.Background(), "node-a")
		Expect(err).NotTo(HaveOccurred())
		Expect(summary.Pods).To(HaveLen(1))
		Expect(*summary.Pods[0].EphemeralStorage.UsedBytes).To(BeEquivalentTo(4096))
		Expect(proxied.Load()).To(BeEquivalentTo(1))
	})
})
