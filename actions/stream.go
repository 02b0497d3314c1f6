package actions

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// LinePrefix starts every line the runner writes for the app's log stream.
// A line is `@iris[<source type>] <message>`; the source type is the
// Loggregator source_type Diego would have used (the recipe's log_source,
// CELL for apps and tasks and STG for staging, or an action's own
// log_source such as APP/PROC/WEB or HEALTH). `%`, `]`, CR and LF in it are
// percent-encoded.
const LinePrefix = "@iris["

// MaxLineBytes is Loggregator's (and Diego's log streamer's) largest message;
// longer lines are split.
const MaxLineBytes = 61440

// DefaultSource is the source type of lines when the recipe names none.
const DefaultSource = "CELL"

var sourceEscaper = strings.NewReplacer("%", "%25", "]", "%5D", "\r", "%0D", "\n", "%0A")
var sourceUnescaper = strings.NewReplacer("%25", "%", "%5D", "]", "%0D", "\r", "%0A", "\n")

// FormatLine is one tagged line, without its newline.
func FormatLine(source, message string) string {
	return LinePrefix + sourceEscaper.Replace(source) + "] " + message
}

// ParseLine splits a line written by the runner into its source type and
// message. ok is false for lines that are not the runner's (its own
// operational logs), which the log pipeline should not ship as app logs.
func ParseLine(line string) (source, message string, ok bool) {
	rest, found := strings.CutPrefix(line, LinePrefix)
	if !found {
		return "", "", false
	}
	source, message, found = strings.Cut(rest, "] ")
	if !found {
		source, found = strings.CutSuffix(rest, "]")
		if !found {
			return "", "", false
		}
	}
	return sourceUnescaper.Replace(source), message, true
}

// sink receives whole lines.
type sink interface {
	line(stderr bool, source, text string)
}

// prefixSink writes tagged lines to the runner's stdout and stderr. One
// lock for both keeps lines whole when parallel steps write at once.
type prefixSink struct {
	mu     sync.Mutex
	stdout io.Writer
	stderr io.Writer
}

func (s *prefixSink) line(stderr bool, source, text string) {
	w := s.stdout
	if stderr {
		w = s.stderr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.WriteString(w, FormatLine(source, text)+"\n")
}

// bufferSink collects untagged output: the monitor's health checks report
// their output as their failure message (executor's output wrapper).
type bufferSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *bufferSink) line(_ bool, _, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.WriteString(text + "\n")
}

func (s *bufferSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Streamer is where a step's log lines go, with the source type they carry
// (Diego's log_streamer).
type Streamer struct {
	sink   sink
	source string
}

// NewStreamer tags lines with source and writes them to stdout and stderr.
func NewStreamer(stdout, stderr io.Writer, source string) Streamer {
	if source == "" {
		source = DefaultSource
	}
	return Streamer{sink: &prefixSink{stdout: stdout, stderr: stderr}, source: source}
}

// WithSource is the same destination under another source type; an empty
// one keeps the current, as Diego's streamer does.
func (s Streamer) WithSource(source string) Streamer {
	if source == "" {
		return s
	}
	return Streamer{sink: s.sink, source: source}
}

// Source is the source type of this streamer's lines.
func (s Streamer) Source() string { return s.source }

// Out writes a message to stdout; a trailing newline is optional.
func (s Streamer) Out(msg string) { s.message(false, msg) }

// Err writes a message to stderr; a trailing newline is optional.
func (s Streamer) Err(msg string) { s.message(true, msg) }

func (s Streamer) message(stderr bool, msg string) {
	msg = strings.TrimSuffix(msg, "\n")
	for _, l := range strings.Split(msg, "\n") {
		s.emit(stderr, l)
	}
}

func (s Streamer) emit(stderr bool, l string) {
	l = strings.TrimSuffix(l, "\r")
	for len(l) > MaxLineBytes {
		s.sink.line(stderr, s.source, l[:MaxLineBytes])
		l = l[MaxLineBytes:]
	}
	s.sink.line(stderr, s.source, l)
}

// Stdout is a writer for a process's stdout: it emits each complete line
// and, on Close, what remains.
func (s Streamer) Stdout() io.WriteCloser { return &lineWriter{streamer: s} }

// Stderr is Stdout for stderr.
func (s Streamer) Stderr() io.WriteCloser { return &lineWriter{streamer: s, stderr: true} }

type lineWriter struct {
	mu       sync.Mutex
	streamer Streamer
	stderr   bool
	partial  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			for len(w.partial) >= MaxLineBytes {
				w.streamer.sink.line(w.stderr, w.streamer.source, string(w.partial[:MaxLineBytes]))
				w.partial = w.partial[MaxLineBytes:]
			}
			break
		}
		w.partial = append(w.partial, p[:i]...)
		w.streamer.emit(w.stderr, string(w.partial))
		w.partial = w.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.streamer.emit(w.stderr, string(w.partial))
		w.partial = nil
	}
	return nil
}

// bufferStreamer is a streamer whose lines are collected untagged.
func bufferStreamer(source string) (Streamer, *bufferSink) {
	b := &bufferSink{}
	return Streamer{sink: b, source: source}, b
}
