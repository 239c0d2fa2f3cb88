package journalstore

import (
	"encoding/binary"
	"slices"
)

// seqList is an ascending list of sequence numbers that only grows at its
// end, such as the events addressed to one agent. It keeps the gaps
// between numbers as varints, in chunks of up to seqListChunk numbers
// that each know their first and last, so that an entry costs a byte or
// two instead of eight, and finding where to start reading decodes one
// chunk. The events of a market make millions of entries; this is what
// lets them stay in memory.
type seqList struct {
	chunks []seqChunk
}

const seqListChunk = 128

type seqChunk struct {
	first, last int64
	n           int
	gaps        []byte // the varint gaps from first to each later number
}

// push appends seq, which must be above every number in the list.
func (l *seqList) push(seq int64) {
	if n := len(l.chunks); n > 0 && l.chunks[n-1].n < seqListChunk {
		c := &l.chunks[n-1]
		c.gaps = binary.AppendUvarint(c.gaps, uint64(seq-c.last))
		c.last = seq
		c.n++
		return
	}
	l.chunks = append(l.chunks, seqChunk{first: seq, last: seq, n: 1})
}

// last returns the list's last number, or 0 when it is empty.
func (l *seqList) last() int64 {
	if len(l.chunks) == 0 {
		return 0
	}
	return l.chunks[len(l.chunks)-1].last
}

// pop removes the last number.
func (l *seqList) pop() {
	n := len(l.chunks)
	if n == 0 {
		return
	}
	c := &l.chunks[n-1]
	if c.n == 1 {
		l.chunks = l.chunks[:n-1]
		return
	}
	// Walk the chunk to the start of its last gap.
	seq, off, prevOff := c.first, 0, 0
	for i := 1; i < c.n; i++ {
		g, k := binary.Uvarint(c.gaps[off:])
		prevOff = off
		off += k
		if i < c.n-1 {
			seq += int64(g)
		}
	}
	c.gaps = c.gaps[:prevOff]
	c.last = seq
	c.n--
}

func (l *seqList) empty() bool { return len(l.chunks) == 0 }

// cursor returns a cursor at the first number above seq.
func (l *seqList) cursor(seq int64) *seqCursor {
	ci, _ := slices.BinarySearchFunc(l.chunks, seq, func(c seqChunk, seq int64) int {
		if c.last <= seq {
			return -1
		}
		return 1
	})
	c := &seqCursor{l: l, ci: ci, off: -1}
	for v, ok := c.peek(); ok && v <= seq; v, ok = c.peek() {
		c.next()
	}
	return c
}

// seqCursor reads a seqList in order. A nil cursor is at the end.
type seqCursor struct {
	l   *seqList
	ci  int   // the chunk
	off int   // where the next gap starts in it; -1 before its first number
	v   int64 // the number read last in the chunk
}

// peek returns the number the cursor is at, and false at the end.
func (c *seqCursor) peek() (int64, bool) {
	if c == nil || c.ci >= len(c.l.chunks) {
		return 0, false
	}
	ch := &c.l.chunks[c.ci]
	if c.off < 0 {
		return ch.first, true
	}
	g, _ := binary.Uvarint(ch.gaps[c.off:])
	return c.v + int64(g), true
}

// next moves the cursor past the number it is at.
func (c *seqCursor) next() {
	ch := &c.l.chunks[c.ci]
	if c.off < 0 {
		c.v, c.off = ch.first, 0
	} else {
		g, k := binary.Uvarint(ch.gaps[c.off:])
		c.v += int64(g)
		c.off += k
	}
	if c.off >= len(ch.gaps) {
		c.ci, c.off = c.ci+1, -1
	}
}
