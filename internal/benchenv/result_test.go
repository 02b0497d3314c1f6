package benchenv_test

import (
	"bytes"
	"math"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/internal/benchenv"
)

var _ = Describe("result lines", func() {
	at := time.Date(2026, 12, 2, 6, 30, 15, 0, time.UTC)

	It("round-trips a result through a line, with the time truncated to the second", func() {
		var out bytes.Buffer
		in := benchenv.Result{Goal: "sync: list p99", Value: 731.5, Unit: "ms", Target: 1000, Compare: benchenv.AtMost,
			Note: "100000 infos", Load: "1.00 2.00 3.00", Time: at.Add(400 * time.Millisecond)}
		benchenv.WriteResult(&out, in)
		Expect(out.String()).To(HavePrefix(benchenv.ResultPrefix))
		Expect(out.String()).To(ContainSubstring(`"compare":"<="`))
		Expect(strings.Count(out.String(), "\n")).To(Equal(1))

		got, ok, err := benchenv.ParseResult(out.String())
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeTrue())
		in.Time = at
		Expect(got).To(Equal(in))
	})

	It("fills in the load and the time when the benchmark leaves them out", func() {
		var out bytes.Buffer
		before := time.Now().Truncate(time.Second)
		benchenv.WriteResult(&out, benchenv.Result{Goal: "g", Value: 1})
		got, _, err := benchenv.ParseResult(out.String())
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Load).To(Equal(benchenv.LoadAverage()))
		Expect(got.Time).To(BeTemporally(">=", before))
		Expect(got.Time.Location()).To(Equal(time.UTC))
	})

	It("finds a result after go test's indentation and ignores other lines", func() {
		log := strings.Join([]string{
			"goos: linux",
			"cache heap: 1000 LRPs ...; load 1 2 3",
			`    memory_bench_test.go:175: ` + benchenv.ResultPrefix + `{"goal":"a","value":5,"unit":"B","target":4096,"compare":"<="}`,
			benchenv.ResultPrefix + `{"goal":"b","value":2}`,
			"BenchmarkCacheHeap-2   1   123 ns/op",
		}, "\n")
		results, err := benchenv.ReadResults(strings.NewReader(log))
		Expect(err).NotTo(HaveOccurred())
		Expect(results).To(HaveLen(2))
		Expect(results[0].Goal).To(Equal("a"))
		Expect(results[0].Compare).To(Equal(benchenv.AtMost))
		Expect(results[0].Target).To(Equal(4096.0))
		Expect(results[1].Goal).To(Equal("b"))
		Expect(results[1].Compare).To(Equal(benchenv.Report))
	})

	It("refuses a result line that does not decode or names no goal", func() {
		_, ok, err := benchenv.ParseResult(benchenv.ResultPrefix + `{"goal":`)
		Expect(ok).To(BeTrue())
		Expect(err).To(MatchError(ContainSubstring("result line")))

		_, ok, err = benchenv.ParseResult(benchenv.ResultPrefix + `{"value":3}`)
		Expect(ok).To(BeTrue())
		Expect(err).To(MatchError(ContainSubstring("no goal")))

		_, err = benchenv.ReadResults(strings.NewReader("x\n" + benchenv.ResultPrefix + "not json\n"))
		Expect(err).To(HaveOccurred())
	})

	DescribeTable("verdict and ratio against the target",
		func(r benchenv.Result, verdict string, ratio float64) {
			Expect(r.Verdict()).To(Equal(verdict))
			if math.IsNaN(ratio) {
				Expect(math.IsNaN(r.Ratio())).To(BeTrue())
			} else {
				Expect(r.Ratio()).To(BeNumerically("~", ratio, 1e-9))
			}
		},
		Entry("at most, under", benchenv.Result{Value: 500, Target: 1000, Compare: benchenv.AtMost}, "met", 0.5),
		Entry("at most, equal", benchenv.Result{Value: 1000, Target: 1000, Compare: benchenv.AtMost}, "met", 1.0),
		Entry("at most, over", benchenv.Result{Value: 1500, Target: 1000, Compare: benchenv.AtMost}, "missed", 1.5),
		Entry("at least, over", benchenv.Result{Value: 213900, Target: 12500, Compare: benchenv.AtLeast}, "met", 17.112),
		Entry("at least, under", benchenv.Result{Value: 10, Target: 20, Compare: benchenv.AtLeast}, "missed", 0.5),
		Entry("zero target: met only at zero, no ratio", benchenv.Result{Value: 0, Compare: benchenv.AtMost}, "met", math.NaN()),
		Entry("zero target, above it", benchenv.Result{Value: 0.2, Compare: benchenv.AtMost}, "missed", math.NaN()),
		Entry("no target", benchenv.Result{Value: 3, Target: 5}, "", math.NaN()),
	)
})

var _ = Describe("the table", func() {
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)

	It("keeps the latest result of each goal, in the order goals were first seen", func() {
		results := benchenv.Latest([]benchenv.Result{
			{Goal: "b", Value: 1, Time: t0},
			{Goal: "a", Value: 2, Time: t0},
			{Goal: "b", Value: 3, Time: t0.Add(time.Hour)},
			{Goal: "a", Value: 4, Time: t0.Add(-time.Hour)}, // an older log read later
			{Goal: "c", Value: 5, Time: t0},
		})
		Expect(results).To(HaveLen(3))
		Expect([]string{results[0].Goal, results[1].Goal, results[2].Goal}).To(Equal([]string{"b", "a", "c"}))
		Expect(results[0].Value).To(Equal(3.0))
		Expect(results[1].Value).To(Equal(2.0))
	})

	It("renders target, measured with its note, ratio, verdict, load and date", func() {
		rows := benchenv.TableRows([]benchenv.Result{
			{Goal: "heap per LRP", Value: 6400, Unit: "B", Target: 4096, Compare: benchenv.AtMost, Note: "10k LRPs", Load: "17 18 19", Time: t0},
			{Goal: "start-up, 50k", Value: 188.44, Unit: "s", Load: "1 2 3", Time: t0},
		})
		Expect(rows).To(Equal([][]string{
			{"heap per LRP", "<= 4,096 B", "6,400 B (10k LRPs)", "1.56×", "missed", "17 18 19", "2026-12-02 06:00"},
			{"start-up, 50k", "", "188 s", "", "", "1 2 3", "2026-12-02 06:00"},
		}))
	})

	It("writes a Markdown table with escaped cells and a missed goal in bold, and an aligned text table", func() {
		results := []benchenv.Result{
			{Goal: "a|b", Value: 0.0123, Unit: "s", Load: "1 1 1", Time: t0},
			{Goal: "c", Value: 2, Unit: "s", Target: 1, Compare: benchenv.AtMost, Load: "1 1 1", Time: t0},
		}
		var md, text bytes.Buffer
		benchenv.WriteMarkdownTable(&md, results)
		Expect(strings.Split(strings.TrimSpace(md.String()), "\n")).To(Equal([]string{
			"| goal | target | measured | ratio | verdict | load 1/5/15 | date (UTC) |",
			"|---|---|---|---|---|---|---|",
			`| a\|b |  | 0.012 s |  |  | 1 1 1 | 2026-12-02 06:00 |`,
			`| c | <= 1 s | 2 s | 2.00× | **missed** | 1 1 1 | 2026-12-02 06:00 |`,
		}))
		benchenv.WriteTextTable(&text, results)
		lines := strings.Split(strings.TrimSpace(text.String()), "\n")
		Expect(lines).To(HaveLen(3))
		Expect(len([]rune(lines[0]))).To(Equal(len([]rune(lines[1]))))
		Expect(len([]rune(lines[0]))).To(Equal(len([]rune(lines[2]))))
		Expect(lines[2]).To(ContainSubstring("| missed "))
	})

	DescribeTable("values",
		func(v float64, unit, want string) { Expect(benchenv.FormatValue(v, unit)).To(Equal(want)) },
		Entry("large, grouped", 213900.4, "msg/s", "213,900 msg/s"),
		Entry("whole", 0.0, "req/s", "0 req/s"),
		Entry("tens", 12.345, "s", "12.3 s"),
		Entry("ones", 1.2345, "s", "1.23 s"),
		Entry("fractions", 0.73149, "s", "0.731 s"),
		Entry("negative, grouped", -4100.0, "B", "-4,100 B"),
		Entry("no unit", 5.0, "", "5"),
	)
})
