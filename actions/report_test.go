package actions_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/actions"
)

var _ = Describe("the runner's report (a pod's termination message)", func() {
	const limit = actions.MaxTerminationMessageBytes

	roundTrip := func(r actions.Result) (actions.Result, []byte) {
		data := actions.EncodeReport(r, limit)
		Expect(len(data)).To(BeNumerically("<=", limit))
		back, err := actions.DecodeReport(data)
		Expect(err).NotTo(HaveOccurred())
		return back, data
	}

	It("is plain JSON when it fits", func() {
		r := actions.Result{Result: `{"process_types":{"web":"./start"}}`}
		back, data := roundTrip(r)
		Expect(back).To(Equal(r))
		Expect(string(data)).To(Equal(`{"failed":false,"failure_reason":"","result":"{\"process_types\":{\"web\":\"./start\"}}"}`))
	})

	It("carries a result of up to 10 KiB (what BBS keeps) compressed, and gives it back unchanged", func() {
		var b strings.Builder
		b.WriteString(`{"lifecycle_metadata":{"buildpacks":[`)
		for i := 0; b.Len() < actions.MaxResultBytes-200; i++ {
			fmt.Fprintf(&b, `{"key":"buildpack-%d","name":"buildpack_%d","version":"1.%d.0"},`, i, i, i)
		}
		b.WriteString(`{}]},"process_types":{"web":"bundle exec rackup"}}`)
		r := actions.Result{Result: b.String()}
		Expect(len(r.Result)).To(BeNumerically(">", limit))
		back, data := roundTrip(r)
		Expect(back).To(Equal(r))
		Expect(string(data)).To(ContainSubstring(`"result_gzip":`))
	})

	It("fails a run whose result does not fit even compressed, saying why, rather than truncating it", func() {
		random := make([]byte, 4000)
		_, err := rand.Read(random)
		Expect(err).NotTo(HaveOccurred())
		back, _ := roundTrip(actions.Result{Result: hex.EncodeToString(random)})
		Expect(back.Failed).To(BeTrue())
		Expect(back.FailureReason).To(MatchRegexp(`^result file too large to report from a pod: 8000 bytes, \d+ compressed \(at most 4096 bytes of report\)$`))
		Expect(back.Result).To(BeEmpty())
	})

	It("shortens a failure reason that does not fit, keeping its start", func() {
		reason := "Exited with status 1: " + strings.Repeat("é\"", 3000)
		back, data := roundTrip(actions.Result{Failed: true, FailureReason: reason})
		Expect(back.Failed).To(BeTrue())
		Expect(back.FailureReason).To(HavePrefix("Exited with status 1: é\""))
		Expect(back.FailureReason).To(HaveSuffix("..."))
		Expect(json.Valid(data)).To(BeTrue())
	})

	It("refuses what is not a report", func() {
		_, err := actions.DecodeReport([]byte("Error: exec format error"))
		Expect(err).To(HaveOccurred())
	})
})
