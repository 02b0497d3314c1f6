package bifrost_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/bifrost"
	"github.com/iris-cf/iris/bifrost/bifrostfakes"
	"github.com/iris-cf/iris/models"
)

var _ = Describe("The handler of clients without a client certificate", func() {
	const token = "s3cr3t-t0ken-of-s1"
	var (
		staging *bifrostfakes.FakeStagingBackend
		logger  *lagertest.TestLogger
		server  *httptest.Server
	)

	BeforeEach(func() {
		staging = &bifrostfakes.FakeStagingBackend{}
		staging.VerifyCompletionTokenStub = func(_ context.Context, guid, presented string) error {
			if guid == "s1" && presented == token {
				return nil
			}
			return models.ErrUnauthorized
		}
		logger = lagertest.NewTestLogger("test")
		server = httptest.NewServer(bifrost.NewStagingTokenHandler(logger, staging,
			bifrost.Limits{MaxRequestBodyBytes: 1024, MaxInstances: 10, MaxInFlightRequests: 2}))
		DeferCleanup(server.Close)
	})

	do := func(method, path, authorization, body string) (int, string) {
		req, err := http.NewRequest(method, server.URL+path, strings.NewReader(body))
		Expect(err).NotTo(HaveOccurred())
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		Expect(err).NotTo(HaveOccurred())
		return resp.StatusCode, string(data)
	}

	const completed = `{"task_guid":"s1","failed":false,"result":"{\"lifecycle_type\":\"buildpack\"}"}`

	It("takes a staging's completion with that staging's token", func() {
		status, body := do("PUT", "/stage/s1/completed", "Bearer "+token, completed)
		Expect(status).To(Equal(http.StatusOK), body)
		Expect(staging.CompleteCallCount()).To(Equal(1))
		_, _, guid, done := staging.CompleteArgsForCall(0)
		Expect(guid).To(Equal("s1"))
		Expect(done.Result).To(Equal(`{"lifecycle_type":"buildpack"}`))
	})

	DescribeTable("refuses with 401, and a message, anything else",
		func(method, path, authorization string) {
			status, body := do(method, path, authorization, completed)
			Expect(status).To(Equal(http.StatusUnauthorized), body)
			// In the shape the route's CC client would read, had CC called it.
			Expect(body).To(ContainSubstring(`"message":"unauthorized: `))
			Expect(staging.CompleteCallCount()).To(BeZero())
			Expect(staging.StageCallCount()).To(BeZero())
			Expect(staging.CancelCallCount()).To(BeZero())
		},
		Entry("no token", "PUT", "/stage/s1/completed", ""),
		Entry("not a bearer token", "PUT", "/stage/s1/completed", "Basic "+token),
		Entry("another staging's token", "PUT", "/stage/s1/completed", "Bearer another-token"),
		Entry("its token for another staging", "PUT", "/stage/s2/completed", "Bearer "+token),
		Entry("staging with a token", "POST", "/stage/s1", "Bearer "+token),
		Entry("cancelling with a token", "DELETE", "/stage/s1", "Bearer "+token),
		Entry("the completion route with another method", "POST", "/stage/s1/completed", "Bearer "+token),
		Entry("an LRP route", "PUT", "/apps/g-v", "Bearer "+token),
		Entry("the listing", "GET", "/apps", "Bearer "+token),
		Entry("tasks", "POST", "/tasks/t1", "Bearer "+token),
		Entry("a path that only starts like the route", "PUT", "/stage/s1/completed/x", "Bearer "+token),
	)

	It("never logs the token", func() {
		do("PUT", "/stage/s1/completed", "Bearer "+token, completed)
		do("PUT", "/stage/s2/completed", "Bearer "+token, completed)
		do("GET", "/apps", "Bearer "+token, "")
		Expect(logger.Buffer().Contents()).NotTo(BeEmpty())
		Expect(string(logger.Buffer().Contents())).NotTo(ContainSubstring(token))
	})
})
