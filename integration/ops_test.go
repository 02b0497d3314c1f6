package integration_test

import (
	"io"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func opsGet(path string) (int, string) {
	GinkgoHelper()
	return opsGetWith(Default, path)
}

func opsGetWith(g Gomega, path string) (int, string) {
	resp, err := http.Get(irisOpsURL + path)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	return resp.StatusCode, string(body)
}

var _ = Describe("Ops metrics", func() {
	It("counts API requests, reporter queues, NATS messages and Loggregator envelopes", func() {
		code, _ := opsGet("/healthz")
		Expect(code).To(Equal(http.StatusOK))
		code, _ = opsGet("/readyz")
		Expect(code).To(Equal(http.StatusOK))

		runningLRP(1) // an API request, NATS registrations and CELL logs
		Eventually(func(g Gomega) string { _, body := opsGetWith(g, "/metrics"); return body }, 10*time.Second).Should(And(
			MatchRegexp(`iris_api_requests_total\{code="202",listener="plain",method="put"\} [1-9]`),
			ContainSubstring(`iris_api_request_duration_seconds_bucket{listener="plain",method="put"`),
			ContainSubstring(`iris_reporter_queue_depth{reporter="crash"}`),
			ContainSubstring(`iris_callbacks_retried_total{reporter="task"}`),
			ContainSubstring(`iris_callbacks_failed_total{reporter="staging"}`),
			MatchRegexp(`iris_nats_messages_published_total [1-9]`),
			MatchRegexp(`iris_loggregator_envelopes_sent_total [1-9]`),
			ContainSubstring(`iris_loggregator_envelopes_dropped_total 0`),
		))
	})
})
