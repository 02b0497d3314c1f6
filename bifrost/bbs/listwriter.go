package bbs

import (
	"encoding/binary"
	"net/http"
	"strconv"
)

// listChunk is how much of a list answer is built before it is written:
// CC's scheduling-infos list is 40+ MB at 100,000 LRPs and the whole-LRP
// list 120 MB; one buffer of that size per request was a tenth of the
// list's CPU (copying) and most of its garbage.
const listChunk = 64 << 10

// listWriter writes a list response (protobuf, 200) as it is encoded, a
// chunk at a time: each item as its length-delimited field, its length as
// a varint, its bytes, which is byte for byte what proto.Marshal writes
// for the response's repeated field. Nothing is sent before the first
// chunk is full, so a list that fails early can still be answered
// otherwise.
type listWriter struct {
	w http.ResponseWriter
	// size is the Content-Length to announce, or -1 when it is not known
	// up front (the body is then sent chunked).
	size    int
	buf     []byte
	started bool
	// failed is the first write error (the client went away): nothing
	// more is written.
	failed error
}

// sizedMessage is a gogo-protobuf generated message.
type sizedMessage interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

func newListWriter(w http.ResponseWriter, size int) *listWriter {
	chunk := listChunk
	if size >= 0 {
		chunk = min(size, listChunk)
	}
	return &listWriter{w: w, size: size, buf: make([]byte, 0, chunk)}
}

// encodedFieldSize is the size of a length-delimited field (1..15) of n
// bytes.
func encodedFieldSize(n int) int {
	return 1 + uvarintLen(uint64(n)) + n
}

// encoded appends an already encoded item as field (1..15).
func (l *listWriter) encoded(field int, item []byte) error {
	if err := l.room(len(item)); err != nil {
		return err
	}
	l.buf = append(l.buf, byte(field<<3|2))
	l.buf = binary.AppendUvarint(l.buf, uint64(len(item)))
	l.buf = append(l.buf, item...)
	return nil
}

// message appends m, encoded, as field (1..15).
func (l *listWriter) message(field int, m sizedMessage) error {
	size := m.Size()
	if err := l.room(size); err != nil {
		return err
	}
	before := len(l.buf)
	l.buf = append(l.buf, byte(field<<3|2))
	l.buf = binary.AppendUvarint(l.buf, uint64(size))
	start := len(l.buf)
	l.buf = append(l.buf, make([]byte, size)...)
	if _, err := m.MarshalToSizedBuffer(l.buf[start:]); err != nil {
		l.buf = l.buf[:before] // no half an item
		return err
	}
	return nil
}

// room writes out what is built if an item of n bytes would not fit.
func (l *listWriter) room(n int) error {
	if l.failed != nil {
		return l.failed
	}
	if len(l.buf) > 0 && len(l.buf)+1+binary.MaxVarintLen64+n > cap(l.buf) {
		return l.flush()
	}
	return nil
}

func (l *listWriter) flush() error {
	if !l.started {
		l.w.Header().Set("Content-Type", protobufContentType)
		if l.size >= 0 {
			l.w.Header().Set("Content-Length", strconv.Itoa(l.size))
		}
		l.w.WriteHeader(http.StatusOK)
		l.started = true
	}
	if len(l.buf) > 0 {
		if _, err := l.w.Write(l.buf); err != nil {
			l.failed = err
			return err
		}
	}
	l.buf = l.buf[:0]
	return nil
}

// finish writes out the rest (and the header of an answer that fit one
// chunk).
func (l *listWriter) finish() error {
	if l.failed != nil {
		return l.failed
	}
	return l.flush()
}

// uvarintLen is the length of v's varint encoding.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}
