package integration_test

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/logs"
)

var _ = Describe("CELL lifecycle logs", func() {
	It("tells the app's log stream when an instance is created, healthy, stopped and destroyed", func() {
		lrp := runningLRP(1)
		uid := podUIDs(lrp)[0]
		cellLines := func() []string { return ingress.payloads(lrp.AppGUID, logs.SourceTypeCell) }
		// 30 s: this may be the suite's first spec, its Iris just started
		// (the reporters' Lease, the Loggregator connection).
		Eventually(cellLines, 30*time.Second).Should(ContainElements(
			HavePrefix("Cell "), // creating container for instance <uid>
			ContainSubstring("successfully created container for instance "+uid),
			"Starting health monitoring of container",
			"Container became healthy",
		))
		envelope := ingress.logs(lrp.AppGUID, logs.SourceTypeCell)[0]
		Expect(envelope.InstanceId).To(Equal("0"))
		Expect(envelope.Tags).To(HaveKeyWithValue("app_name", "dora"))
		Expect(envelope.Tags).To(HaveKeyWithValue("process_id", lrp.GUID))

		status, body := request("PUT", "/apps/"+lrp.GUID+"/"+lrp.Version+"/stop", nil)
		Expect(status).To(Equal(http.StatusOK), string(body))
		Eventually(cellLines, 20*time.Second).Should(ContainElements(
			ContainSubstring("stopping instance "+uid),
			ContainSubstring("successfully destroyed container for instance "+uid),
		))
	})
})
