package benchenv

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// ResultPrefix starts a machine-readable result line. The benchmarks print
// one beside their human output (go test's -v output and b.Logf's
// indentation may precede it), and scripts/bench/table collects them into
// one table of the scale issue's goals.
const ResultPrefix = "IRIS-BENCH-RESULT "

// Compare says which way a result meets its target.
type Compare string

const (
	// AtMost: met when the value is no more than the target (latency, bytes).
	AtMost Compare = "<="
	// AtLeast: met when the value is at least the target (throughput).
	AtLeast Compare = ">="
	// Report: no target; the figure is printed for the record.
	Report Compare = ""
)

// Result is one measured figure against one goal.
type Result struct {
	// Goal names what is measured; results with the same goal replace
	// each other in a table (the latest wins).
	Goal string `json:"goal"`
	// Value is in Unit (ms, s, B, LRPs/s, ...).
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Target and Compare: the goal's bound; Compare is Report for none.
	Target  float64 `json:"target,omitempty"`
	Compare Compare `json:"compare,omitempty"`
	// Note is context: sizes, CPU, what the figure includes.
	Note string `json:"note,omitempty"`
	// Load is the machine's 1/5/15-minute load when it was measured.
	Load string    `json:"load"`
	Time time.Time `json:"time"`
}

// Verdict is "met" or "missed" against the target, or "" for a figure
// without one.
func (r Result) Verdict() string {
	switch r.Compare {
	case AtMost:
		if r.Value <= r.Target {
			return "met"
		}
		return "missed"
	case AtLeast:
		if r.Value >= r.Target {
			return "met"
		}
		return "missed"
	}
	return ""
}

// Ratio is the value over the target, or NaN without a usable target.
func (r Result) Ratio() float64 {
	if r.Compare == Report || r.Target == 0 {
		return math.NaN()
	}
	return r.Value / r.Target
}

// EmitResult prints r as a result line on stdout, with the load and time
// filled in when unset.
func EmitResult(r Result) {
	WriteResult(os.Stdout, r)
}

// WriteResult writes r as one result line to w.
func WriteResult(w io.Writer, r Result) {
	if r.Load == "" {
		r.Load = LoadAverage()
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC().Truncate(time.Second)
	var data bytes.Buffer
	encoder := json.NewEncoder(&data)
	encoder.SetEscapeHTML(false)              // "<=" stays readable in the logs
	if err := encoder.Encode(r); err != nil { // NaN or an infinity is the one way to fail
		fmt.Fprintf(w, "%s{\"goal\":%q,\"note\":%q}\n", ResultPrefix, r.Goal, "unencodable: "+err.Error())
		return
	}
	fmt.Fprintf(w, "%s%s", ResultPrefix, data.Bytes()) // Encode ends the line
}

// ParseResult finds a result line's JSON anywhere in line (after go test's
// indentation or a log prefix). ok is false for other lines; err is set
// for a result line that does not decode.
func ParseResult(line string) (r Result, ok bool, err error) {
	i := strings.Index(line, ResultPrefix)
	if i < 0 {
		return Result{}, false, nil
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(line[i+len(ResultPrefix):])), &r); err != nil {
		return Result{}, true, fmt.Errorf("result line %q: %w", line, err)
	}
	if r.Goal == "" {
		return Result{}, true, fmt.Errorf("result line %q has no goal", line)
	}
	return r, true, nil
}

// ReadResults collects the result lines of r, in order; lines that are not
// results are skipped, a malformed result line is an error.
func ReadResults(r io.Reader) ([]Result, error) {
	var out []Result
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for scanner.Scan() {
		res, ok, err := ParseResult(scanner.Text())
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, res)
		}
	}
	return out, scanner.Err()
}
