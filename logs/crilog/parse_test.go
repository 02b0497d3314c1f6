package crilog_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/logs/crilog"
)

var _ = Describe("ParseLine", func() {
	It("parses a full stdout line", func() {
		ts, stdout, partial, content, err := crilog.ParseLine([]byte("2016-10-06T00:17:09.669794202Z stdout F hello world\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(ts).To(Equal(time.Date(2016, 10, 6, 0, 17, 9, 669794202, time.UTC)))
		Expect(stdout).To(BeTrue())
		Expect(partial).To(BeFalse())
		Expect(string(content)).To(Equal("hello world"))
	})

	It("parses a partial stderr line, keeping the content's spaces", func() {
		_, stdout, partial, content, err := crilog.ParseLine([]byte("2016-10-06T00:17:09.669794202Z stderr P  two  spaces "))
		Expect(err).NotTo(HaveOccurred())
		Expect(stdout).To(BeFalse())
		Expect(partial).To(BeTrue())
		Expect(string(content)).To(Equal(" two  spaces "))
	})

	It("parses empty content, with or without the space after the tag", func() {
		for _, line := range []string{"2016-10-06T00:17:09Z stdout F \n", "2016-10-06T00:17:09Z stdout F"} {
			_, _, _, content, err := crilog.ParseLine([]byte(line))
			Expect(err).NotTo(HaveOccurred())
			Expect(content).To(BeEmpty())
		}
	})

	It("reads only the first of colon-separated tags, like the kubelet", func() {
		_, _, partial, content, err := crilog.ParseLine([]byte("2016-10-06T00:17:09Z stdout P:future x"))
		Expect(err).NotTo(HaveOccurred())
		Expect(partial).To(BeTrue())
		Expect(string(content)).To(Equal("x"))
	})

	It("parses timestamps exactly as time.Parse does", func() {
		for _, s := range []string{
			"2016-10-06T00:17:09Z",
			"2016-10-06T00:17:09.6Z",
			"2016-10-06T00:17:09.669Z",
			"2016-10-06T00:17:09.669794202Z",
			"2024-02-29T23:59:59.000000001Z",
			"1999-12-31T23:59:59.5Z",
			"2016-10-06T02:17:09.669794202+02:00",
			"2016-10-06T00:17:09,669Z",
		} {
			want, err := time.Parse(time.RFC3339Nano, s)
			Expect(err).NotTo(HaveOccurred(), s)
			ts, _, _, _, err := crilog.ParseLine([]byte(s + " stdout F x"))
			Expect(err).NotTo(HaveOccurred(), s)
			Expect(ts.Equal(want)).To(BeTrue(), s)
			Expect(ts.Location().String()).To(Equal(want.Location().String()), s)
		}
	})

	DescribeTable("rejects malformed lines",
		func(line string) {
			_, _, _, _, err := crilog.ParseLine([]byte(line))
			Expect(err).To(MatchError(crilog.ErrMalformed))
		},
		Entry("empty", ""),
		Entry("no spaces", "garbage"),
		Entry("bad timestamp", "yesterday stdout F x"),
		Entry("impossible date", "2023-02-29T00:00:00Z stdout F x"),
		Entry("hour 24", "2023-02-01T24:00:00Z stdout F x"),
		Entry("unknown stream", "2016-10-06T00:17:09Z stdin F x"),
		Entry("no stream", "2016-10-06T00:17:09Z "),
		Entry("unknown tag", "2016-10-06T00:17:09Z stdout X x"),
		Entry("no tag", "2016-10-06T00:17:09Z stdout "),
		Entry("tag glued to content", "2016-10-06T00:17:09Z stdout Fx"),
		Entry("plain text", "hello world, this is not CRI"),
	)
})
