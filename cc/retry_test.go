package cc_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/cc"
)

var _ = Describe("Retry classification", func() {
	var (
		status     int
		retryAfter string
		server     *httptest.Server
		client     *cc.Client
	)

	BeforeEach(func() {
		status, retryAfter = http.StatusOK, ""
		server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(status)
			fmt.Fprint(w, `{"description":"nope"}`)
		}))
		DeferCleanup(server.Close)
		var err error
		client, err = cc.NewClient(cc.Options{InternalAPIURL: server.URL, Timeout: 5 * time.Second})
		Expect(err).NotTo(HaveOccurred())
	})

	Describe("RedactURL", func() {
		It("RedactURL drops user and password and keeps the rest", func() {
			Expect(cc.RedactURL("https://internal_user:s3cr3t@cc.internal:9023/internal/v3/staging/sg/build_completed?start=true")).
				To(Equal("https://cc.internal:9023/internal/v3/staging/sg/build_completed?start=true"))
			Expect(cc.RedactURL("https://cc.internal:9023/internal/v4/tasks/t/completed")).To(Equal("https://cc.internal:9023/internal/v4/tasks/t/completed"))
			Expect(cc.RedactURL("http://u:p@cc/%zz")).To(Equal("<unparseable URL>"))
		})
	})

	DescribeTable("which answers are final and which are retried",
		func(code int, final bool) {
			status = code
			err := client.Post(context.Background(), "/internal/v4/tasks/t/completed", struct{}{})
			Expect(err).To(HaveOccurred())
			Expect(cc.IsFinal(err)).To(Equal(final))
		},
		Entry("400", http.StatusBadRequest, true),
		Entry("403", http.StatusForbidden, true),
		Entry("404 ProcessNotFound", http.StatusNotFound, true),
		Entry("409", http.StatusConflict, true),
		Entry("422", http.StatusUnprocessableEntity, true),
		Entry("401 (a proxy's, or a rotated credential)", http.StatusUnauthorized, false),
		Entry("408", http.StatusRequestTimeout, false),
		Entry("429", http.StatusTooManyRequests, false),
		Entry("500", http.StatusInternalServerError, false),
		Entry("502", http.StatusBadGateway, false),
		Entry("503", http.StatusServiceUnavailable, false),
	)

	It("treats a network error as worth retrying", func() {
		Expect(cc.IsFinal(errors.New("connection refused"))).To(BeFalse())
		_, ok := cc.RetryAfter(errors.New("connection refused"))
		Expect(ok).To(BeFalse())
	})

	DescribeTable("reads Retry-After",
		func(header func() string, want time.Duration, tolerance time.Duration) {
			status, retryAfter = http.StatusTooManyRequests, header()
			err := client.Post(context.Background(), "/x", struct{}{})
			d, ok := cc.RetryAfter(err)
			Expect(ok).To(Equal(want > 0))
			Expect(d).To(BeNumerically("~", want, tolerance))
		},
		Entry("in seconds", func() string { return "7" }, 7*time.Second, time.Duration(0)),
		Entry("as an HTTP date", func() string { return time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat) }, 30*time.Second, 2*time.Second),
		Entry("absent", func() string { return "" }, time.Duration(0), time.Duration(0)),
		Entry("unparseable", func() string { return "soon" }, time.Duration(0), time.Duration(0)),
		Entry("capped at 15 minutes", func() string { return "86400" }, 15*time.Minute, time.Duration(0)),
	)
})
