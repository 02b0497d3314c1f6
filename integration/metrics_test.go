package integration_test

import (
	"context"
	"time"

	"code.cloudfoundry.org/go-loggregator/v9/rpc/loggregator_v2"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Usage comes from the local cluster's real metrics-server, which scrapes
// KWOK's emulated kubelet; KWOK reports what the pod's usage annotations say.
var _ = Describe("Container metrics", func() {
	It("emits cpu, memory and quotas per instance under the process guid, from metrics.k8s.io", func() {
		lrp := runningLRP(1)
		pod := pods(namespace, lrp)[0]
		_, err := clientset.CoreV1().Pods(namespace).Patch(context.Background(), pod.Name, types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"kwok.x-k8s.io/usage-cpu":"250m","kwok.x-k8s.io/usage-memory":"64Mi"}}}`),
			metav1.PatchOptions{})
		Expect(err).NotTo(HaveOccurred())

		// metrics-server needs two scrapes (10 s apart) of a new pod.
		var latest *loggregator_v2.Envelope
		Eventually(func() float64 {
			gauges := ingress.gauges(lrp.GUID)
			if len(gauges) == 0 {
				return 0
			}
			latest = gauges[len(gauges)-1]
			return latest.GetGauge().GetMetrics()["memory"].GetValue()
		}, 60*time.Second, time.Second).Should(BeEquivalentTo(64 << 20))

		Expect(latest.InstanceId).To(Equal("0"))
		Expect(latest.Tags).To(HaveKeyWithValue("app_id", lrp.AppGUID))
		Expect(latest.Tags).To(HaveKeyWithValue("process_instance_id", string(pod.UID)))
		m := latest.GetGauge().GetMetrics()
		// metrics-server derives CPU from the growth of KWOK's emulated
		// cumulative usage between two scrapes, whose timing jitters: 250m
		// comes back as 24.9 to 25.1 percent or so on a busy machine.
		Expect(m["cpu"].GetValue()).To(BeNumerically("~", 25, 0.5))
		Expect(m["cpu"].GetUnit()).To(Equal("percentage"))
		Expect(m["memory_quota"].GetValue()).To(BeEquivalentTo(lrp.MemoryMB << 20))
		Expect(m["disk_quota"].GetValue()).To(BeEquivalentTo(lrp.DiskMB << 20))
		Expect(m).To(HaveKey("cpu_entitlement"))
		// metrics.disk_from_stats_summary is off (the default; KWOK serves no
		// kubelet stats summary either), so disk usage reads 0 here.
		Expect(m).To(HaveKey("disk"))
	})
})
