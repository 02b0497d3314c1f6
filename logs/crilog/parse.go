// Package crilog reads the container log files the kubelet and the container
// runtime keep on a node (the CRI logging format), for a node log agent that
// must neither lose nor repeat lines across log rotation and agent restarts.
package crilog

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Record is one log line as the container wrote it, partials joined.
type Record struct {
	Timestamp time.Time
	Stdout    bool   // false = stderr
	Line      []byte // without the trailing newline; owned by the receiver
}

// Position identifies how far a file was read: the file's identity and the
// byte offset after the last record handled.
//
// Offset is usually the start of a line. It points inside a line only after
// a record that was cut because it exceeded MaxLineBytes; a follower started
// there re-reads that line's header and goes on with the rest of its content.
type Position struct {
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// ErrMalformed is wrapped by every error ParseLine returns.
var ErrMalformed = errors.New("malformed CRI log line")

// Static so that skipping a malformed line allocates nothing.
var (
	errNoTimestamp = fmt.Errorf("%w: no timestamp", ErrMalformed)
	errStream      = fmt.Errorf("%w: stream is neither stdout nor stderr", ErrMalformed)
	errTag         = fmt.Errorf("%w: tag is neither P nor F", ErrMalformed)
)

// ParseLine parses one CRI log line,
// `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>`, with or without
// its trailing newline. content aliases b. Like the kubelet, it reads only
// the first of colon-separated tags ("F:x" is F), so tags the runtime may
// add later do not make lines unreadable.
func ParseLine(b []byte) (ts time.Time, stdout bool, partial bool, content []byte, err error) {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	ts, stdout, partial, start, err := parseHeader(b)
	if err != nil {
		return time.Time{}, false, false, nil, err
	}
	return ts, stdout, partial, b[start:], nil
}

// parseHeader parses everything before a line's content and returns where
// the content starts. A tag ending the line (no space after it) is an empty
// content: lenient, and nothing is lost by accepting it.
func parseHeader(b []byte) (ts time.Time, stdout, partial bool, contentStart int, err error) {
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return time.Time{}, false, false, 0, errNoTimestamp
	}
	if ts, err = parseTimestamp(b[:i]); err != nil {
		return time.Time{}, false, false, 0, err
	}
	rest := b[i+1:]
	const streamLen = len("stdout ")
	switch {
	case len(rest) >= streamLen && string(rest[:streamLen]) == "stdout ":
		stdout = true
	case len(rest) >= streamLen && string(rest[:streamLen]) == "stderr ":
	default:
		return time.Time{}, false, false, 0, errStream
	}
	contentStart = i + 1 + streamLen
	tag := b[contentStart:]
	if j := bytes.IndexByte(tag, ' '); j >= 0 {
		tag = tag[:j]
		contentStart += j + 1
	} else {
		contentStart = len(b)
	}
	if j := bytes.IndexByte(tag, ':'); j >= 0 {
		tag = tag[:j]
	}
	switch string(tag) {
	case "P":
		partial = true
	case "F":
	default:
		return time.Time{}, false, false, 0, errTag
	}
	return ts, stdout, partial, contentStart, nil
}

func parseTimestamp(b []byte) (time.Time, error) {
	if t, ok := parseUTC(b); ok {
		return t, nil
	}
	// Offsets other than Z, commas, odd digit counts: rare, let the standard
	// library decide (it allocates, the fast path does not).
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return t, nil
}

// parseUTC parses what runtimes write, 2006-01-02T15:04:05.999999999Z, without
// allocating. It accepts a subset of what time.Parse accepts and gives the
// same result; ok is false for anything else.
func parseUTC(b []byte) (t time.Time, ok bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	year, ok1 := atoi(b[0:4])
	month, ok2 := atoi(b[5:7])
	day, ok3 := atoi(b[8:10])
	hour, ok4 := atoi(b[11:13])
	minute, ok5 := atoi(b[14:16])
	sec, ok6 := atoi(b[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
		return time.Time{}, false
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		var ok bool
		if nsec, ok = atoi(frac[1:]); !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			nsec *= 10
		}
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func atoi(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
