package logs_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"

	"github.com/iris-cf/iris/logs"
)

var _ = Describe("RateLimit", func() {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

	It("admits a second's worth at once, then reports one overage and mutes the rest of that second", func() {
		limit := logs.NewRateLimit(ptr.To[int64](100))
		Expect(limit.Admit(t0, 60)).To(BeTrue())
		Expect(limit.Admit(t0, 40)).To(BeTrue())
		ok, report := limit.Admit(t0.Add(10*time.Millisecond), 10)
		Expect(ok).To(BeFalse())
		Expect(report).To(Equal("app instance exceeded log rate limit (100 bytes/sec)"))
		ok, report = limit.Admit(t0.Add(900*time.Millisecond), 1)
		Expect(ok).To(BeFalse(), "muted for a second after the overage, though tokens refilled")
		Expect(report).To(BeEmpty(), "reported once per overage")
		ok, _ = limit.Admit(t0.Add(1100*time.Millisecond), 50)
		Expect(ok).To(BeTrue())
	})

	It("never admits a line longer than the limit itself", func() {
		ok, report := logs.NewRateLimit(ptr.To[int64](10)).Admit(t0, 11)
		Expect(ok).To(BeFalse())
		Expect(report).NotTo(BeEmpty())
	})

	It("admits nothing at 0 and reports nothing; admits everything without a limit", func() {
		ok, report := logs.NewRateLimit(ptr.To[int64](0)).Admit(t0, 1)
		Expect(ok).To(BeFalse())
		Expect(report).To(BeEmpty())
		for _, unlimited := range []*int64{nil, ptr.To[int64](-1)} {
			ok, _ := logs.NewRateLimit(unlimited).Admit(t0, 1<<30)
			Expect(ok).To(BeTrue())
		}
	})
})
