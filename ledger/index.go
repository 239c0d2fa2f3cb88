package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
)

// index maps every committed transfer id, and every resolved pending id, to
// the journal offset of the event that holds it. It keeps 16 bytes a slot
// and no ids: the event at the offset is read back to confirm a match, which
// the full 64-bit hash makes rare for ids that are absent. Memory therefore
// grows by about 20 bytes a transfer, and the garbage collector never scans
// it, since the table holds no pointers.
//
// It is an open-addressing table with linear probing and backward-shift
// deletion, so that a linked chain that fails can take its entries back.
//
// It grows incrementally, as Redis does: when it fills, a table twice the
// size takes new entries while every insert moves a few slots of the old
// table over, so that no insert pays for copying millions of entries at
// once (which stalled the ledger for 100 ms at a few million transfers).
// Until the move ends, lookups try both tables, and a removal marks the old
// table's slot dead instead of shifting entries past the move's cursor.
type index struct {
	slots []slot
	mask  uint64
	shift uint
	count int // live entries in both tables

	old      []slot // the table being moved from; nil when none
	oldMask  uint64
	oldShift uint
	moved    int // slots of old already moved

	sink uint64 // keeps prefetch loads from being optimised away
}

// slot is empty when loc is zero. loc is (offset<<1 | tag) + 1; dead marks
// an entry removed from the old table during a move.
type slot struct {
	hash uint64
	loc  uint64
}

const dead = ^uint64(0)

// moveStep is how many old slots each insert moves. With the new table
// twice the size, the move ends before the new table is half full.
const moveStep = 8

// Tags say what an entry's id names: the transfer itself, or the pending
// transfer that the event at the offset resolved.
const (
	tagTransfer   = 0
	tagResolution = 1
)

func newIndex(capacity int) *index {
	n := 1 << 10
	for n*3/4 < capacity {
		n <<= 1
	}
	return &index{slots: make([]slot, n), mask: uint64(n - 1), shift: uint(64 - bits.TrailingZeros(uint(n)))}
}

// hashID mixes the id and tag; ids are client-chosen and often sequential.
func hashID(id ID, tag uint64) uint64 {
	lo := binary.LittleEndian.Uint64(id[:8])
	hi := binary.LittleEndian.Uint64(id[8:])
	h := mix64(lo ^ 0x9e3779b97f4a7c15*(tag+1))
	h = mix64(h ^ hi)
	if h == 0 {
		h = 1
	}
	return h
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// lookup returns the offset of the entry for (id, tag). match reads the
// event at a candidate offset and reports whether it holds id.
func (x *index) lookup(id ID, tag uint64, match func(off int64) bool) (int64, bool) {
	h := hashID(id, tag)
	if off, ok := probe(x.slots, x.mask, x.shift, h, tag, match); ok {
		return off, true
	}
	if x.old != nil {
		return probe(x.old, x.oldMask, x.oldShift, h, tag, match)
	}
	return 0, false
}

func probe(t []slot, mask uint64, shift uint, h, tag uint64, match func(off int64) bool) (int64, bool) {
	for i := h >> shift; ; i = (i + 1) & mask {
		s := t[i]
		if s.loc == 0 {
			return 0, false
		}
		if s.loc != dead && s.hash == h && (s.loc-1)&1 == tag {
			off := int64((s.loc - 1) >> 1)
			if match(off) {
				return off, true
			}
		}
	}
}

// prefetch touches the home slots of ids, so that the cache misses of a
// whole batch overlap instead of stalling the applier one at a time.
func (x *index) prefetch(xs []Transfer) {
	var acc uint64
	for i := range xs {
		h := hashID(xs[i].ID, tagTransfer)
		acc += x.slots[h>>x.shift].hash
		if x.old != nil {
			acc += x.old[h>>x.oldShift].hash
		}
	}
	x.sink += acc
}

// insert adds an entry; the caller has checked that it is absent.
func (x *index) insert(id ID, tag uint64, off int64) {
	if x.old != nil {
		x.move(moveStep)
	} else if (x.count+1)*4 > len(x.slots)*3 {
		x.grow()
	}
	put(x.slots, x.mask, x.shift, hashID(id, tag), uint64(off)<<1|tag+1)
	x.count++
}

func put(t []slot, mask uint64, shift uint, h, loc uint64) {
	for i := h >> shift; ; i = (i + 1) & mask {
		if t[i].loc == 0 {
			t[i] = slot{hash: h, loc: loc}
			return
		}
	}
}

// grow starts moving the entries to a table twice the size.
func (x *index) grow() {
	x.old, x.oldMask, x.oldShift, x.moved = x.slots, x.mask, x.shift, 0
	n := len(x.slots) * 2
	x.slots = make([]slot, n)
	x.mask = uint64(n - 1)
	x.shift--
}

// move copies up to n slots of the old table to the new one, and drops the
// old table when all are copied. Copied entries stay in the old table until
// then; lookups find them in the new one first.
func (x *index) move(n int) {
	for ; n > 0 && x.moved < len(x.old); n-- {
		if s := x.old[x.moved]; s.loc != 0 && s.loc != dead {
			put(x.slots, x.mask, x.shift, s.hash, s.loc)
		}
		x.moved++
	}
	if x.moved == len(x.old) {
		x.old = nil
	}
}

// remove deletes the entry for (id, tag) at off, if present.
func (x *index) remove(id ID, tag uint64, off int64) {
	h := hashID(id, tag)
	loc := uint64(off)<<1 | tag + 1
	found := removeFrom(x.slots, x.mask, x.shift, h, loc)
	if x.old != nil {
		// Mark it dead rather than shift: a shift could carry an entry the
		// move has not reached behind its cursor, where it would be lost.
		for i := h >> x.oldShift; ; i = (i + 1) & x.oldMask {
			s := x.old[i]
			if s.loc == 0 {
				break
			}
			if s.hash == h && s.loc == loc {
				x.old[i].loc = dead
				found = true
				break
			}
		}
	}
	if found {
		x.count--
	}
}

// removeFrom deletes an entry from a table with backward-shift deletion and
// reports whether it was there.
func removeFrom(t []slot, mask uint64, shift uint, h, loc uint64) bool {
	i := h >> shift
	for ; ; i = (i + 1) & mask {
		s := t[i]
		if s.loc == 0 {
			return false
		}
		if s.hash == h && s.loc == loc {
			break
		}
	}
	// Move later entries of the run into the hole when their home slot
	// does not lie cyclically after the hole.
	hole := i
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		s := t[j]
		if s.loc == 0 {
			break
		}
		home := s.hash >> shift
		if (j-home)&mask >= (j-hole)&mask {
			t[hole] = s
			hole = j
		}
	}
	t[hole] = slot{}
	return true
}

func deriveID(purpose string, key []byte) ID {
	h := sha256.New()
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write(key)
	var id ID
	copy(id[:], h.Sum(nil))
	if id.IsZero() {
		id[15] = 1
	}
	return id
}
