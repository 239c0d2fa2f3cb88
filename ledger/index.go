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
type index struct {
	slots []slot
	mask  uint64
	shift uint
	count int
}

// slot is empty when loc is zero. loc is (offset<<1 | tag) + 1.
type slot struct {
	hash uint64
	loc  uint64
}

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
	for i := h >> x.shift; ; i = (i + 1) & x.mask {
		s := x.slots[i]
		if s.loc == 0 {
			return 0, false
		}
		if s.hash == h && (s.loc-1)&1 == tag {
			off := int64((s.loc - 1) >> 1)
			if match(off) {
				return off, true
			}
		}
	}
}

// insert adds an entry; the caller has checked that it is absent.
func (x *index) insert(id ID, tag uint64, off int64) {
	if (x.count+1)*4 > len(x.slots)*3 {
		x.grow()
	}
	x.put(hashID(id, tag), uint64(off)<<1|tag+1)
	x.count++
}

func (x *index) put(h, loc uint64) {
	for i := h >> x.shift; ; i = (i + 1) & x.mask {
		if x.slots[i].loc == 0 {
			x.slots[i] = slot{hash: h, loc: loc}
			return
		}
	}
}

// remove deletes the entry for (id, tag) at off, if present.
func (x *index) remove(id ID, tag uint64, off int64) {
	h := hashID(id, tag)
	loc := uint64(off)<<1 | tag + 1
	i := h >> x.shift
	for ; ; i = (i + 1) & x.mask {
		s := x.slots[i]
		if s.loc == 0 {
			return
		}
		if s.hash == h && s.loc == loc {
			break
		}
	}
	// Backward-shift: move later entries of the run into the hole when
	// their home slot does not lie cyclically after the hole.
	hole := i
	for j := (i + 1) & x.mask; ; j = (j + 1) & x.mask {
		s := x.slots[j]
		if s.loc == 0 {
			break
		}
		home := s.hash >> x.shift
		if (j-home)&x.mask >= (j-hole)&x.mask {
			x.slots[hole] = s
			hole = j
		}
	}
	x.slots[hole] = slot{}
	x.count--
}

func (x *index) grow() {
	old := x.slots
	n := len(old) * 2
	x.slots = make([]slot, n)
	x.mask = uint64(n - 1)
	x.shift--
	for _, s := range old {
		if s.loc != 0 {
			x.put(s.hash, s.loc)
		}
	}
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
