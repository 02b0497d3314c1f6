// Command table runs the scale benchmarks of issue 16 part by part and
// prints one table of their goals: target, measured, ratio, verdict, the
// machine's load and the date of each figure. Each part is an existing
// benchmark (scripts/bench/run on a cluster of its own, or go test -bench
// in process) that prints result lines (internal/benchenv) beside its human
// output; every part's whole output is kept in a log, and a table can be
// rebuilt from logs of earlier runs (-from), the latest figure of each goal
// winning. Never part of `make test`.
//
//	go run ./scripts/bench/table                          # every part
//	go run ./scripts/bench/table -parts memory,250k       # some
//	go run ./scripts/bench/table -parts none -from 'logs/*.log' -markdown
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/iris-cf/iris/internal/benchenv"
)

// part is one benchmark the table runs: its commands, in order.
type part struct {
	name, what string
	commands   [][]string
}

// parts are the goals, each measured by the benchmark that covers
// it. The cluster parts bring up and take down a cluster of their own
// (scripts/bench/run), never the shared one.
func parts(scaleSizes, bbsLRPs string) []part {
	goBench := func(pkg, bench string, extra ...string) []string {
		return append([]string{"go", "test", pkg, "-run", "^$", "-bench", bench, "-benchtime", "1x", "-timeout", "90m"}, extra...)
	}
	return []part{
		// Start-up and the idle requests are the startup part's (at 50k).
		{"desire", "desire.r2 against the bare writes, egress order, lists on the cluster (scripts/bench/run -bbs)",
			[][]string{{"scripts/bench/run", "-bbs", "-bbs-lrps", bbsLRPs, "-bbs-desires", "100", "-bbs-event-seconds", "0", "-bbs-restart=false"}}},
		{"memory", "heap per cached LRP and instance in process (CacheHeap)",
			[][]string{goBench("./backends/kubernetes", "^BenchmarkCacheHeap$")}},
		{"sync", "CC's sync calls over 100k LRPs and 250k instances in process (CCSyncAtScale); the lists in Diego mixed mode (RouterLists)",
			[][]string{goBench("./backends/kubernetes", "^BenchmarkCCSyncAtScale$"), goBench("./backends/kubernetes", "^BenchmarkRouterLists$")}},
		{"250k", "250,000 instances' events through the handlers; route re-emit; a metrics pass through the Loggregator sender (Instances250k, ReEmit250k, Reporter250k)",
			[][]string{goBench("./cmd/iris", "^BenchmarkInstances250k$"), goBench("./route", "^BenchmarkReEmit250k$", "-cpu", "1"), goBench("./metrics", "^BenchmarkReporter250k$")}},
		{"startup", "start-up, heap and RSS by size, idle API requests (scripts/bench/run -scale " + scaleSizes + ")",
			[][]string{{"scripts/bench/run", "-scale", scaleSizes}}},
	}
}

func main() {
	names := flag.String("parts", "desire,memory,sync,250k,startup", "comma-separated parts to run (none: only -from)")
	scaleSizes := flag.String("scale-sizes", "1000,10000,50000", "LRP totals of the startup part")
	bbsLRPs := flag.String("bbs-lrps", "1000", "LRP totals the desire part lists on the cluster (the 100k list goal is the sync part's, in process)")
	logDir := flag.String("logs", "", "directory for the parts' logs and the table (default: a new one under $TMPDIR)")
	from := flag.String("from", "", "comma-separated logs (globs) of earlier runs whose results join the table; this run's win per goal when newer")
	markdown := flag.Bool("markdown", false, "print the table as Markdown (the README's) instead of aligned text")
	flag.Parse()
	if err := run(parts(*scaleSizes, *bbsLRPs), *names, *logDir, *from, *markdown); err != nil {
		fmt.Fprintf(os.Stderr, "table: %v\n", err)
		os.Exit(1)
	}
}

func run(all []part, names, logDir, from string, markdown bool) error {
	selected, err := selectParts(all, names)
	if err != nil {
		return err
	}
	if logDir == "" {
		if logDir, err = os.MkdirTemp("", "iris-bench-table-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	logs, err := expand(from)
	if err != nil {
		return err
	}
	var failed []string
	for _, p := range selected {
		path := filepath.Join(logDir, p.name+".log")
		fmt.Printf("== %s: %s (log %s; load %s)\n", p.name, p.what, path, benchenv.LoadAverage())
		if err := runPart(p, path); err != nil {
			// The other parts still run; what this one printed still counts.
			fmt.Printf("== %s failed: %v\n", p.name, err)
			failed = append(failed, p.name)
		}
		logs = append(logs, path)
	}
	var results []benchenv.Result
	for _, path := range logs {
		r, err := readLog(path)
		if err != nil {
			return err
		}
		results = append(results, r...)
	}
	results = benchenv.Latest(results)
	benchenv.SortByGoal(results)
	fmt.Println()
	if markdown {
		benchenv.WriteMarkdownTable(os.Stdout, results)
	} else {
		benchenv.WriteTextTable(os.Stdout, results)
	}
	if f, err := os.Create(filepath.Join(logDir, "table.md")); err == nil {
		benchenv.WriteMarkdownTable(f, results)
		_ = f.Close()
		fmt.Printf("\nlogs and table.md in %s; load now %s\n", logDir, benchenv.LoadAverage())
	}
	if len(failed) > 0 {
		return fmt.Errorf("parts failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// selectParts picks the named parts, in the table's order.
func selectParts(all []part, names string) ([]part, error) {
	want := map[string]bool{}
	for _, n := range strings.Split(names, ",") {
		if n = strings.TrimSpace(n); n != "" && n != "none" {
			want[n] = true
		}
	}
	var out []part
	for _, p := range all {
		if want[p.name] {
			out = append(out, p)
			delete(want, p.name)
		}
	}
	for n := range want {
		var known []string
		for _, p := range all {
			known = append(known, p.name)
		}
		return nil, fmt.Errorf("unknown part %q (parts: %s)", n, strings.Join(known, ", "))
	}
	return out, nil
}

// runPart runs the part's commands one after another, their output to the
// terminal and to the log.
func runPart(p part, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	out := io.MultiWriter(os.Stdout, f)
	for _, c := range p.commands {
		start := time.Now()
		fmt.Fprintf(out, "$ %s\n", strings.Join(c, " "))
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(c, " "), err)
		}
		fmt.Fprintf(out, "(%s in %s; load %s)\n", c[0], time.Since(start).Round(time.Second), benchenv.LoadAverage())
	}
	return nil
}

func expand(globs string) ([]string, error) {
	var out []string
	for _, g := range strings.Split(globs, ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		matches, err := filepath.Glob(g)
		if err != nil {
			return nil, err
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("-from %s: no such file", g)
		}
		out = append(out, matches...)
	}
	return out, nil
}

func readLog(path string) ([]benchenv.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	results, err := benchenv.ReadResults(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return results, nil
}
