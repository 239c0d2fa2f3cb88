package journalstore

import (
	"cmp"
	"slices"
	"strings"
)

// The indexes are ordered sets. A set is kept in chunks of at most
// chunkMax elements, so that an insert or a removal anywhere moves at most
// one chunk's elements, and finding an element is a binary search over the
// chunks and then within one. Sets are small in the common case (the three
// bids of an intent) and start as one short chunk.
const chunkMax = 256

// element is what an ordered set holds: a value that orders itself.
type element[E any] interface {
	compare(E) int
}

// seqKey is an object's insertion sequence number.
type seqKey int64

func (a seqKey) compare(b seqKey) int { return cmp.Compare(a, b) }

// dueKey orders objects by a deadline in unix nanoseconds, then by
// insertion sequence.
type dueKey struct {
	at  int64
	seq int64
}

func (a dueKey) compare(b dueKey) int {
	if c := cmp.Compare(a.at, b.at); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// idKey is an object's id, for sets ordered by id.
type idKey string

func (a idKey) compare(b idKey) int { return strings.Compare(string(a), string(b)) }

// sellerKey is one paid contract of a buyer: the seller it paid, and the
// contract's sequence number.
type sellerKey struct {
	seller string
	seq    int64
}

func (a sellerKey) compare(b sellerKey) int {
	if c := strings.Compare(a.seller, b.seller); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// sorted is an ordered set of E.
type sorted[E element[E]] struct {
	chunks [][]E
	n      int
}

// Len returns the number of elements.
func (s *sorted[E]) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// chunkFor returns the index of the chunk where e belongs: the first whose
// last element is not below e, or the last chunk.
func (s *sorted[E]) chunkFor(e E) int {
	i, _ := slices.BinarySearchFunc(s.chunks, e, func(c []E, e E) int { return c[len(c)-1].compare(e) })
	return min(i, len(s.chunks)-1)
}

// insert adds e; it reports false when e was there already.
func (s *sorted[E]) insert(e E) bool {
	if len(s.chunks) == 0 {
		s.chunks = [][]E{{e}}
		s.n = 1
		return true
	}
	ci := len(s.chunks) - 1
	c := s.chunks[ci]
	var i int
	var found bool
	if c[len(c)-1].compare(e) < 0 {
		i = len(c) // the common case: e goes at the end
	} else {
		ci = s.chunkFor(e)
		c = s.chunks[ci]
		i, found = slices.BinarySearchFunc(c, e, E.compare)
	}
	if found {
		return false
	}
	c = slices.Insert(c, i, e)
	s.n++
	if len(c) <= chunkMax {
		s.chunks[ci] = c
		return true
	}
	lo, hi := split(c, ci == len(s.chunks)-1 && i == len(c)-1)
	s.chunks[ci] = lo
	s.chunks = slices.Insert(s.chunks, ci+1, hi)
	return true
}

// remove deletes e; it reports false when e was not there.
func (s *sorted[E]) remove(e E) bool {
	if len(s.chunks) == 0 {
		return false
	}
	ci := s.chunkFor(e)
	c := s.chunks[ci]
	i, found := slices.BinarySearchFunc(c, e, E.compare)
	if !found {
		return false
	}
	c = slices.Delete(c, i, i+1)
	s.n--
	if len(c) == 0 {
		s.chunks = slices.Delete(s.chunks, ci, ci+1)
		return true
	}
	s.chunks[ci] = c
	// Merge a chunk that has shrunk to a quarter into its neighbour, so
	// that a set that shrinks does not keep many near-empty chunks.
	if len(c) < chunkMax/4 && ci+1 < len(s.chunks) && len(c)+len(s.chunks[ci+1]) <= chunkMax {
		s.chunks[ci] = append(c, s.chunks[ci+1]...)
		s.chunks = slices.Delete(s.chunks, ci+1, ci+2)
	}
	return true
}

// first returns the smallest element.
func (s *sorted[E]) first() (e E, ok bool) {
	if s == nil || len(s.chunks) == 0 {
		return e, false
	}
	return s.chunks[0][0], true
}

// ascend calls fn on the elements from the first at or above from, in
// order, until fn returns false.
func (s *sorted[E]) ascend(from E, fn func(E) bool) {
	if s == nil || len(s.chunks) == 0 {
		return
	}
	ci := s.chunkFor(from)
	i, _ := slices.BinarySearchFunc(s.chunks[ci], from, E.compare)
	for ; ci < len(s.chunks); ci, i = ci+1, 0 {
		for _, e := range s.chunks[ci][i:] {
			if !fn(e) {
				return
			}
		}
	}
}

// ascendAll calls fn on every element in order until fn returns false.
func (s *sorted[E]) ascendAll(fn func(E) bool) {
	if s == nil {
		return
	}
	for _, c := range s.chunks {
		for _, e := range c {
			if !fn(e) {
				return
			}
		}
	}
}

// descendBelow calls fn on the elements below before, in reverse order,
// until fn returns false.
func (s *sorted[E]) descendBelow(before E, fn func(E) bool) {
	if s == nil || len(s.chunks) == 0 {
		return
	}
	ci := s.chunkFor(before)
	i, _ := slices.BinarySearchFunc(s.chunks[ci], before, E.compare)
	for ; ci >= 0; ci-- {
		c := s.chunks[ci]
		if i < 0 {
			i = len(c)
		}
		for j := i - 1; j >= 0; j-- {
			if !fn(c[j]) {
				return
			}
		}
		i = -1
	}
}

// descendAll calls fn on every element in reverse order until fn returns
// false.
func (s *sorted[E]) descendAll(fn func(E) bool) {
	if s == nil {
		return
	}
	for ci := len(s.chunks) - 1; ci >= 0; ci-- {
		c := s.chunks[ci]
		for j := len(c) - 1; j >= 0; j-- {
			if !fn(c[j]) {
				return
			}
		}
	}
}

// setMap is a family of ordered sets under keys, such as one set of bids
// per intent. An empty set is dropped from the map.
type setMap[K comparable, E element[E]] map[K]*sorted[E]

func (m setMap[K, E]) insert(k K, e E) {
	s := m[k]
	if s == nil {
		s = &sorted[E]{}
		m[k] = s
	}
	s.insert(e)
}

func (m setMap[K, E]) remove(k K, e E) {
	s := m[k]
	if s == nil {
		return
	}
	s.remove(e)
	if s.n == 0 {
		delete(m, k)
	}
}

// uniqueIndex maps a key to the objects that have it, where an object's
// key is unique among the newest values, as a buyer's request_id is: a key
// has one object, except while some reader still sees an object that
// gave the key up to another. It keeps the one in a plain map, which costs
// a fraction of a set per key, and any others in sets beside it.
type uniqueIndex[K comparable] struct {
	one  map[K]int64
	more setMap[K, seqKey]
}

func newUniqueIndex[K comparable]() uniqueIndex[K] {
	return uniqueIndex[K]{one: make(map[K]int64), more: make(setMap[K, seqKey])}
}

func (x *uniqueIndex[K]) insert(k K, seq int64) {
	switch v, ok := x.one[k]; {
	case !ok:
		x.one[k] = seq
	case v != seq:
		x.more.insert(k, seqKey(seq))
	}
}

func (x *uniqueIndex[K]) remove(k K, seq int64) {
	if v, ok := x.one[k]; !ok || v != seq {
		x.more.remove(k, seqKey(seq))
		return
	}
	if m := x.more[k]; m != nil {
		first, _ := m.first()
		x.one[k] = int64(first)
		x.more.remove(k, first)
		return
	}
	delete(x.one, k)
}

// each calls fn on the objects with key k until fn returns false.
func (x *uniqueIndex[K]) each(k K, fn func(seq int64) bool) {
	v, ok := x.one[k]
	if !ok || !fn(v) {
		return
	}
	x.more[k].ascendAll(func(e seqKey) bool { return fn(int64(e)) })
}

// fifo is a queue that takes items at its back and gives them from its
// front, compacting its slice only when the taken part is the larger, so
// that each item is copied at most once on average.
type fifo[T any] struct {
	q    []T
	head int
}

func (f *fifo[T]) push(v T)        { f.q = append(f.q, v) }
func (f *fifo[T]) len() int        { return len(f.q) - f.head }
func (f *fifo[T]) at(i int) T      { return f.q[f.head+i] }
func (f *fifo[T]) front(n int) []T { return f.q[f.head : f.head+n] }

// drop removes the first n items.
func (f *fifo[T]) drop(n int) {
	clear(f.q[f.head : f.head+n])
	f.head += n
	if f.head > len(f.q)/2 {
		f.q = f.q[:copy(f.q, f.q[f.head:])]
		f.head = 0
	}
}

// truncate keeps the first n items.
func (f *fifo[T]) truncate(n int) {
	clear(f.q[f.head+n:])
	f.q = f.q[:f.head+n]
}

// fewSets is a family of sets of sequence numbers that are mostly small,
// such as the bids of each intent: up to three numbers sit in the map's
// value, more in an ordered set beside them. A million intents then cost
// a map entry each, not a map entry and a set.
type fewSets[K comparable] map[K]fewSeqs

type fewSeqs struct {
	n    int8
	s    [3]int64        // the first n, ascending, when more is nil
	more *sorted[seqKey] // all of them, once there were more than three
}

func (m fewSets[K]) insert(k K, seq int64) {
	v := m[k]
	switch {
	case v.more != nil:
		v.more.insert(seqKey(seq))
		return
	case slices.Contains(v.s[:v.n], seq):
		return
	case int(v.n) < len(v.s):
		i, _ := slices.BinarySearch(v.s[:v.n], seq)
		copy(v.s[i+1:v.n+1], v.s[i:v.n])
		v.s[i] = seq
		v.n++
	default:
		v.more = &sorted[seqKey]{}
		for _, x := range v.s[:v.n] {
			v.more.insert(seqKey(x))
		}
		v.more.insert(seqKey(seq))
		v.n = 0
	}
	m[k] = v
}

func (m fewSets[K]) remove(k K, seq int64) {
	v, ok := m[k]
	if !ok {
		return
	}
	if v.more != nil {
		if v.more.remove(seqKey(seq)); v.more.Len() == 0 {
			delete(m, k)
		}
		return
	}
	i := slices.Index(v.s[:v.n], seq)
	if i < 0 {
		return
	}
	copy(v.s[i:], v.s[i+1:v.n])
	if v.n--; v.n == 0 {
		delete(m, k)
		return
	}
	m[k] = v
}

// len returns how many numbers the set holds.
func (m fewSets[K]) len(k K) int {
	v := m[k]
	if v.more != nil {
		return v.more.Len()
	}
	return int(v.n)
}

// each calls fn on the set's numbers in order until fn returns false.
func (m fewSets[K]) each(k K, fn func(seq int64) bool) {
	v := m[k]
	if v.more != nil {
		v.more.ascendAll(func(e seqKey) bool { return fn(int64(e)) })
		return
	}
	for _, seq := range v.s[:v.n] {
		if !fn(seq) {
			return
		}
	}
}

// idIndex finds objects by id. It keeps a 64-bit hash of each id, not the
// id, which would cost a string per object: the object's own value says
// which id it has, so a caller checks the value it finds. An id whose
// hash another id has is kept whole.
type idIndex struct {
	byHash map[uint64]int64
	clash  map[string]int64
}

func newIDIndex() *idIndex {
	return &idIndex{byHash: make(map[uint64]int64), clash: make(map[string]int64)}
}

// idHash is the id index's hash; tests replace it with a weak one.
var idHash = fnv1a

// fnv1a is FNV-1a: stable across processes, since snapshots hold it.
func fnv1a(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// candidate returns the object that may have id, 0 if none does; exact
// reports that it is sure, having kept the id whole.
func (x *idIndex) candidate(id string) (seq int64, exact bool) {
	if seq, ok := x.clash[id]; ok {
		return seq, true
	}
	return x.byHash[idHash(id)], false
}

// add records that the object seq has id, which no object had.
func (x *idIndex) add(id string, seq int64) {
	h := idHash(id)
	if other, ok := x.byHash[h]; ok && other != seq {
		x.clash[id] = seq
		return
	}
	x.byHash[h] = seq
}

// drop forgets that the object seq has id.
func (x *idIndex) drop(id string, seq int64) {
	if x.clash[id] == seq {
		delete(x.clash, id)
		return
	}
	if h := idHash(id); x.byHash[h] == seq {
		delete(x.byHash, h)
	}
}
