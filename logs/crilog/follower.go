package crilog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

const (
	defaultPollInterval    = 250 * time.Millisecond
	defaultMaxLineBytes    = 1 << 20
	defaultReadBufferBytes = 256 << 10
	// A buffer must hold a line's header for a longer line to be read in
	// pieces; headers are about 45 bytes.
	minReadBufferBytes = 128
	// maxSwitchPolls bounds how long a replaced file that is still being
	// written to keeps Run from reading its successor.
	maxSwitchPolls = 20
)

// FollowerConfig tunes a Follower; zero values mean the defaults.
type FollowerConfig struct {
	// PollInterval is how long Run waits at the end of the file before it
	// looks for appends, rotation and removal again. Default 250ms.
	PollInterval time.Duration
	// MaxLineBytes bounds Record.Line: a line longer than this (joined
	// partials or one huge physical line) is handed on in pieces of at most
	// this size, so one runaway line cannot exhaust memory. Default 1 MiB.
	MaxLineBytes int
	// ReadBufferBytes is the size of the read buffer. Lines longer than it
	// are still read, streamed through it. Default 256 KiB, at least 128.
	ReadBufferBytes int
}

func (c FollowerConfig) withDefaults() FollowerConfig {
	if c.PollInterval <= 0 {
		c.PollInterval = defaultPollInterval
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = defaultMaxLineBytes
	}
	if c.ReadBufferBytes <= 0 {
		c.ReadBufferBytes = defaultReadBufferBytes
	}
	c.ReadBufferBytes = max(c.ReadBufferBytes, minReadBufferBytes)
	return c
}

// Follower reads one container's log file (one path, across its rotations)
// from a Position on.
type Follower struct {
	path      string
	start     Position
	cfg       FollowerConfig
	malformed atomic.Uint64
}

// NewFollower follows the container log file at path, starting at start.
// The zero Position (any Position with Inode 0) means the current file, from
// start.Offset.
func NewFollower(path string, start Position, cfg FollowerConfig) *Follower {
	return &Follower{path: path, start: start, cfg: cfg.withDefaults()}
}

// Malformed is how many lines were skipped because they could not be parsed.
// It may be read while Run runs.
func (f *Follower) Malformed() uint64 { return f.malformed.Load() }

// Run reads records in order and calls handle(rec, pos) for each, pos being
// the Position just after that record: what a caller checkpoints once it has
// handed the record on. Resuming from any such pos neither repeats nor skips
// a record. handle is called from Run's goroutine.
//
// Run follows appends and rotation: when the file at the path is replaced it
// reads the old file to its end first, then the new one from its start. If
// start names a file that has been rotated away, that file (found by inode
// among the uncompressed rotated files beside the path) is read from
// start.Offset first, then any later rotated files, then the current one;
// if it is gone (compressed or deleted) the uncompressed rotated files are
// read from their start. An Offset beyond the end of its file means the file
// was truncated: it is read from its start.
//
// Malformed lines are skipped and counted. Partial lines are joined; a
// partial line at the end of the file waits for its last segment.
//
// Run returns nil when ctx is cancelled, or when the path's directory is gone
// (the pod was removed) and what could still be read was read; then a partial
// line that will never be completed is handed on as it is. Any other error
// ends Run. Run must not be called again while it runs; each call starts
// from the Follower's start Position.
func (f *Follower) Run(ctx context.Context, handle func(Record, Position)) error {
	r := &run{
		ctx:       ctx,
		handle:    handle,
		path:      f.path,
		start:     f.start,
		poll:      f.cfg.PollInterval,
		max:       f.cfg.MaxLineBytes,
		malformed: &f.malformed,
		buf:       make([]byte, f.cfg.ReadBufferBytes),
	}
	defer r.closeAll()
	if err := r.follow(); err != nil {
		return fmt.Errorf("following %s: %w", f.path, err)
	}
	return nil
}

// source is an open log file.
type source struct {
	file  *os.File
	name  string
	inode uint64
	start int64 // offset to start reading at
}

func openSource(name string) (*source, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil {
		var inode uint64
		if inode, err = inodeOf(st); err == nil {
			return &source{file: f, name: name, inode: inode}, nil
		}
	}
	_ = f.Close()
	return nil, fmt.Errorf("stat %s: %w", name, err)
}

// run is the state of one Run call.
type run struct {
	ctx       context.Context
	handle    func(Record, Position)
	path      string
	start     Position
	poll      time.Duration
	max       int
	malformed *atomic.Uint64
	timer     *time.Timer

	rotated []*source // to read to their end before live
	live    *source   // the file at the path when Run started, if any
	cur     *source   // being read
	last    Position  // end of the last file finished

	// buf[rp:wp] is read but not handled; buf[0] is at offset bufOff.
	buf            []byte
	rp, wp         int
	bufOff         int64
	long, skipping bool  // inside a line longer than buf; valid, or malformed
	longPartial    bool  // the tag of that long line
	skipUntil      int64 // when resuming inside a line: content before this offset was handed on

	// The record being joined from partial segments.
	pending       bool
	pendingTS     time.Time
	pendingStdout bool
	acc           []byte
}

func (r *run) follow() error {
	if err := r.plan(); err != nil {
		return err
	}
	// Only the newest rotated file can still be written to (the runtime may
	// not have reopened the path yet): it is followed like the current
	// file, below. The others are read to their end now.
	for len(r.rotated) > 1 {
		if err := r.readWhole(r.rotated[0]); err != nil || r.ctx.Err() != nil {
			return err
		}
		r.rotated = r.rotated[1:]
	}
	if len(r.rotated) == 1 {
		newest := r.rotated[0]
		r.rotated = nil
		if err := r.open(newest); err != nil {
			return err
		}
	}

	switchPolls := 0 // polls since the path was seen naming another file
	for {
		if r.cur == nil {
			if err := r.openNext(); err != nil {
				return err
			}
			if r.cur == nil { // no file at the path
				gone, err := r.dirGone()
				if err != nil {
					return err
				}
				if gone {
					r.flush(r.last)
					return nil
				}
				if !r.sleep() {
					return nil
				}
				continue
			}
		}

		n, err := r.readToEOF()
		if err != nil {
			return err
		}
		if r.ctx.Err() != nil {
			return nil
		}
		st, err := os.Stat(r.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Between the kubelet's rename and the runtime's reopen, or the
			// pod is gone.
			gone, err := r.dirGone()
			if err != nil {
				return err
			}
			if gone {
				// Open files stay readable after their directory is removed.
				for r.cur != nil {
					if _, err := r.readToEOF(); err != nil || r.ctx.Err() != nil {
						return err
					}
					r.finish()
					if r.live != nil {
						if err := r.openNext(); err != nil {
							return err
						}
					}
				}
				r.flush(r.last)
				return nil
			}
		case err != nil:
			return fmt.Errorf("stat: %w", err)
		default:
			inode, err := inodeOf(st)
			if err != nil {
				return err
			}
			if inode != r.cur.inode {
				// The runtime creates the new file before it stops writing
				// to the old one: switch only once the old file has stayed
				// quiet for a whole poll interval.
				switchPolls++
				if (switchPolls > 1 && n == 0) || switchPolls > maxSwitchPolls {
					r.finish()
					switchPolls = 0
					continue
				}
			} else {
				switchPolls = 0 // a failed rotation renames the file back
				if st.Size() < r.offset() {
					if err := r.truncated(); err != nil {
						return err
					}
					continue
				}
			}
		}
		if !r.sleep() {
			return nil
		}
	}
}

// openNext opens the file to read after the current one: the one that was
// at the path when Run started, if not read yet, else the one at the path
// now. r.cur stays nil if there is none.
func (r *run) openNext() error {
	src := r.live
	r.live = nil
	if src == nil {
		var err error
		src, err = openSource(r.path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return r.open(src)
}

// readWhole reads a file that no longer grows.
func (r *run) readWhole(src *source) error {
	if err := r.open(src); err != nil {
		return err
	}
	if _, err := r.readToEOF(); err != nil || r.ctx.Err() != nil {
		return err
	}
	r.finish()
	return nil
}

// plan opens the current file and, when start names another file, the
// rotated files to read before it.
func (r *run) plan() error {
	cur, err := openSource(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		cur, err = nil, nil
	}
	if err != nil {
		return err
	}
	r.live = cur
	if r.start.Inode == 0 || (cur != nil && cur.inode == r.start.Inode) {
		if cur != nil {
			cur.start = r.start.Offset
		}
		return nil
	}

	dir, base := filepath.Split(r.path)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing rotated files: %w", err)
	}
	var found *source
	var stamped []*source // kubelet-rotated, in rotation order (ReadDir sorts by name)
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), base+".")
		// .gz is compressed; .tmp is the kubelet compressing it.
		if !ok || suffix == "" || e.IsDir() || strings.HasSuffix(suffix, ".gz") || strings.HasSuffix(suffix, ".tmp") {
			continue
		}
		src, err := openSource(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // compressed or removed since listed
		}
		if err != nil {
			r.rotated = append(stamped, found) // for closeAll
			return err
		}
		switch {
		case cur != nil && src.inode == cur.inode:
			_ = src.file.Close() // rotated after it was opened as the current file
		case src.inode == r.start.Inode:
			src.start = r.start.Offset
			found = src
		case isRotationStamp(suffix):
			stamped = append(stamped, src)
		default:
			_ = src.file.Close()
		}
	}
	if found == nil {
		// Only the newest rotated file stays uncompressed, so the file start
		// named is older than these: read them all.
		r.rotated = stamped
		return nil
	}
	r.rotated = []*source{found}
	for _, src := range stamped {
		if src.name > found.name {
			r.rotated = append(r.rotated, src)
		} else {
			_ = src.file.Close()
		}
	}
	return nil
}

// open makes src the file being read, from src.start.
func (r *run) open(src *source) error {
	r.cur = src
	st, err := src.file.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", src.name, err)
	}
	off := src.start
	if off < 0 || off > st.Size() {
		off = 0 // truncated since the Position was taken
	}
	lineStart := off
	if off > 0 {
		if lineStart, err = lineStartBefore(src.file, off, r.buf); err != nil {
			return fmt.Errorf("reading %s: %w", src.name, err)
		}
	}
	if _, err := src.file.Seek(lineStart, io.SeekStart); err != nil {
		return fmt.Errorf("seeking in %s: %w", src.name, err)
	}
	r.resetBuffer(lineStart)
	if lineStart < off {
		r.skipUntil = off
	}
	return nil
}

// lineStartBefore is the offset of the line holding the byte before off.
func lineStartBefore(f *os.File, off int64, scratch []byte) (int64, error) {
	end := off
	for end > 0 {
		b := scratch[:min(int64(len(scratch)), end)]
		if _, err := f.ReadAt(b, end-int64(len(b))); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return end - int64(len(b)) + int64(i) + 1, nil
		}
		end -= int64(len(b))
	}
	return 0, nil
}

func (r *run) resetBuffer(off int64) {
	r.rp, r.wp, r.bufOff = 0, 0, off
	r.long, r.skipping, r.skipUntil = false, false, 0
}

// offset is how far the current file has been read.
func (r *run) offset() int64 { return r.bufOff + int64(r.wp) }

// readToEOF reads the current file to its end, or until ctx is cancelled,
// and returns how many bytes it read.
func (r *run) readToEOF() (int64, error) {
	var total int64
	for r.ctx.Err() == nil {
		if r.rp > 0 {
			r.wp = copy(r.buf, r.buf[r.rp:r.wp])
			r.bufOff += int64(r.rp)
			r.rp = 0
		}
		n, err := r.cur.file.Read(r.buf[r.wp:])
		r.wp += n
		total += int64(n)
		r.process()
		if err == io.EOF || (err == nil && n == 0) {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("reading %s: %w", r.cur.name, err)
		}
	}
	return total, nil
}

// process hands on every complete line in buf[rp:wp].
func (r *run) process() {
	for r.rp < r.wp {
		data := r.buf[r.rp:r.wp]
		off := r.bufOff + int64(r.rp)
		i := bytes.IndexByte(data, '\n')
		if r.long || r.skipping {
			chunk := data
			if i >= 0 {
				chunk = data[:i]
			}
			if r.long {
				r.content(chunk, off)
			}
			if i < 0 {
				r.rp = r.wp
				return
			}
			r.rp += i + 1
			if r.long {
				r.long = false
				r.endLine(r.longPartial, off+int64(i)+1)
			} else {
				r.skipping = false
			}
			continue
		}
		if i < 0 {
			if r.rp == 0 && r.wp == len(r.buf) {
				r.startLong(data, off)
				r.rp = r.wp
			}
			return
		}
		r.line(data[:i], off, off+int64(i)+1)
		r.rp += i + 1
	}
}

// line handles one physical line b (without its newline) spanning
// [start, end) in the file.
func (r *run) line(b []byte, start, end int64) {
	ts, stdout, partial, cs, err := parseHeader(b)
	if err != nil {
		r.malformed.Add(1)
		r.skipUntil = 0
		return
	}
	content := b[cs:]
	if !r.pending && !partial && len(content) <= r.max && r.skipUntil == 0 {
		r.emit(ts, stdout, content, Position{Inode: r.cur.inode, Offset: end})
		return
	}
	r.beginLine(ts, stdout, start)
	r.content(content, start+int64(cs))
	r.endLine(partial, end)
}

// startLong starts a line that does not fit in buf, which holds its start.
func (r *run) startLong(data []byte, off int64) {
	ts, stdout, partial, cs, err := parseHeader(data)
	if err != nil || data[cs-1] != ' ' { // the header must be whole
		r.malformed.Add(1)
		r.skipping = true
		r.skipUntil = 0
		return
	}
	r.long, r.longPartial = true, partial
	r.beginLine(ts, stdout, off)
	r.content(data[cs:], off+int64(cs))
}

func (r *run) beginLine(ts time.Time, stdout bool, start int64) {
	if r.pending && r.pendingStdout != stdout {
		// The runtime writes stdout and stderr lines into one file, so a
		// partial line of one stream can be followed by lines of the other.
		// One Position cannot tell that a partial line is unfinished while a
		// later line was handed on, so the unfinished one goes first, cut.
		r.flush(Position{Inode: r.cur.inode, Offset: start})
	}
	if !r.pending {
		r.pending, r.pendingTS, r.pendingStdout = true, ts, stdout
		r.acc = r.acc[:0]
	}
}

// content adds content c, found at offset off, to the pending record,
// handing on a piece each time it grows beyond max.
func (r *run) content(c []byte, off int64) {
	if r.skipUntil > off {
		n := int(min(r.skipUntil-off, int64(len(c))))
		c, off = c[n:], off+int64(n)
	}
	for len(r.acc)+len(c) > r.max {
		k := r.max - len(r.acc)
		r.acc = append(r.acc, c[:k]...)
		c, off = c[k:], off+int64(k)
		r.emit(r.pendingTS, r.pendingStdout, r.acc, Position{Inode: r.cur.inode, Offset: off})
		r.acc = r.acc[:0]
	}
	r.acc = append(r.acc, c...)
}

func (r *run) endLine(partial bool, end int64) {
	r.skipUntil = 0
	if !partial {
		r.flush(Position{Inode: r.cur.inode, Offset: end})
	}
}

// flush hands on the pending record, if any.
func (r *run) flush(pos Position) {
	if !r.pending {
		return
	}
	r.emit(r.pendingTS, r.pendingStdout, r.acc, pos)
	r.pending = false
	r.acc = r.acc[:0]
}

func (r *run) emit(ts time.Time, stdout bool, content []byte, pos Position) {
	line := make([]byte, len(content))
	copy(line, content)
	r.handle(Record{Timestamp: ts, Stdout: stdout, Line: line}, pos)
}

// finish closes the current file, which will not grow any more, handling a
// last line that lacks its newline. A partial record stays pending: its
// next segment is in the next file.
func (r *run) finish() {
	end := r.offset()
	switch {
	case r.long:
		r.long = false
		r.endLine(r.longPartial, end)
	case r.skipping:
	case r.rp < r.wp:
		r.line(r.buf[r.rp:r.wp], r.bufOff+int64(r.rp), end)
	}
	r.last = Position{Inode: r.cur.inode, Offset: end}
	_ = r.cur.file.Close()
	r.cur = nil
	r.resetBuffer(0)
}

// truncated starts the current file over: it was truncated in place.
func (r *run) truncated() error {
	r.flush(Position{Inode: r.cur.inode})
	if _, err := r.cur.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("seeking in %s: %w", r.cur.name, err)
	}
	r.resetBuffer(0)
	return nil
}

func (r *run) dirGone() (bool, error) {
	_, err := os.Stat(filepath.Dir(r.path))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat: %w", err)
	}
	return false, nil
}

// sleep waits a poll interval; false if ctx was cancelled.
func (r *run) sleep() bool {
	if r.timer == nil {
		r.timer = time.NewTimer(r.poll)
	} else {
		r.timer.Reset(r.poll)
	}
	select {
	case <-r.ctx.Done():
		return false
	case <-r.timer.C:
		return true
	}
}

func (r *run) closeAll() {
	if r.timer != nil {
		r.timer.Stop()
	}
	for _, src := range append(r.rotated, r.cur, r.live) {
		if src != nil {
			_ = src.file.Close()
		}
	}
}

// isRotationStamp reports whether s is the kubelet's rotation suffix,
// 20060102-150405.
func isRotationStamp(s string) bool {
	if len(s) != len("20060102-150405") || s[8] != '-' {
		return false
	}
	for i := range len(s) {
		if i != 8 && (s[i] < '0' || s[i] > '9') {
			return false
		}
	}
	return true
}
