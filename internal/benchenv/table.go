package benchenv

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Latest keeps one result per goal: the one measured last (by Time; on a
// tie, the later in the input). Goals stay in the order they were first
// seen, so a table reads in the order the benchmarks ran.
func Latest(results []Result) []Result {
	index := map[string]int{}
	var out []Result
	for _, r := range results {
		i, seen := index[r.Goal]
		if !seen {
			index[r.Goal] = len(out)
			out = append(out, r)
			continue
		}
		if !r.Time.Before(out[i].Time) {
			out[i] = r
		}
	}
	return out
}

// SortByGoal orders results by goal name (the "memory: ", "start-up: ",
// "sync: " ... prefixes group them).
func SortByGoal(results []Result) {
	sort.SliceStable(results, func(i, j int) bool { return results[i].Goal < results[j].Goal })
}

// TableHeader is the table's columns.
var TableHeader = []string{"goal", "target", "measured", "ratio", "verdict", "load 1/5/15", "date (UTC)"}

// TableRows renders results as cells under TableHeader.
func TableRows(results []Result) [][]string {
	rows := make([][]string, 0, len(results))
	for _, r := range results {
		target := ""
		if r.Compare != Report {
			target = fmt.Sprintf("%s %s", r.Compare, FormatValue(r.Target, r.Unit))
		}
		measured := FormatValue(r.Value, r.Unit)
		if r.Note != "" {
			measured += " (" + r.Note + ")"
		}
		ratio := ""
		if x := r.Ratio(); !math.IsNaN(x) && !math.IsInf(x, 0) {
			ratio = fmt.Sprintf("%.2f×", x)
		}
		verdict := r.Verdict()
		date := ""
		if !r.Time.IsZero() {
			date = r.Time.UTC().Format("2006-01-02 15:04")
		}
		rows = append(rows, []string{r.Goal, target, measured, ratio, verdict, r.Load, date})
	}
	return rows
}

// FormatValue prints v with three significant digits at most (no
// exponent), thousands separated, and its unit.
func FormatValue(v float64, unit string) string {
	var s string
	switch a := math.Abs(v); {
	case a >= 100 || v == math.Trunc(v):
		s = groupThousands(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
	case a >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	default:
		s = strconv.FormatFloat(v, 'f', 3, 64)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

func groupThousands(digits string) string {
	sign := ""
	if strings.HasPrefix(digits, "-") {
		sign, digits = "-", digits[1:]
	}
	var b strings.Builder
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return sign + b.String()
}

// WriteMarkdownTable writes results as a Markdown table (the README's).
func WriteMarkdownTable(w io.Writer, results []Result) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(TableHeader, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(TableHeader)))
	for _, row := range TableRows(results) {
		for i := range row {
			row[i] = strings.ReplaceAll(row[i], "|", `\|`)
		}
		if row[4] == "missed" {
			row[4] = "**missed**"
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

// WriteTextTable writes results as an aligned plain-text table.
func WriteTextTable(w io.Writer, results []Result) {
	rows := append([][]string{TableHeader}, TableRows(results)...)
	width := make([]int, len(TableHeader))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, c := range row {
			fmt.Fprintf(&b, "| %s%s ", c, strings.Repeat(" ", width[i]-len([]rune(c))))
		}
		fmt.Fprintln(w, b.String()+"|")
	}
}
