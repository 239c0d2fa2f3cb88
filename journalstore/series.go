package journalstore

import (
	"cmp"
	"slices"
)

// A statistic's fact is something of an intent type that happened at a
// time (unix nanoseconds), by the object with sequence number seq. A count
// needs no more; a fill also carries the two amounts its statistic sums,
// the agreed price and what was paid.
type countKey struct {
	at, seq int64
}

func (x countKey) compare(y countKey) int {
	if c := cmp.Compare(x.at, y.at); c != 0 {
		return c
	}
	return cmp.Compare(x.seq, y.seq)
}

func (x countKey) when() int64             { return x.at }
func (x countKey) amounts() (int64, int64) { return 0, 0 }

type fillKey struct {
	at, seq int64
	price   int64
	paid    int64
}

func (x fillKey) compare(y fillKey) int {
	if c := cmp.Compare(x.at, y.at); c != 0 {
		return c
	}
	if c := cmp.Compare(x.seq, y.seq); c != 0 {
		return c
	}
	if c := cmp.Compare(x.price, y.price); c != 0 {
		return c
	}
	return cmp.Compare(x.paid, y.paid)
}

func (x fillKey) when() int64             { return x.at }
func (x fillKey) amounts() (int64, int64) { return x.price, x.paid }

// fact is what a series holds.
type fact[K any] interface {
	element[K]
	comparable
	when() int64
	amounts() (a, b int64)
}

// total is what a statistic sums over a stretch of time.
type total struct {
	n, a, b int64
}

func addFact[K fact[K]](t *total, k K, sign int64) {
	a, b := k.amounts()
	t.n += sign
	t.a += sign * a
	t.b += sign * b
}

// series is a time-ordered set of one statistic's facts. It keeps the sum
// of each chunk, so that summing everything since a time reads one partial
// chunk and the sums of the chunks after it, not every fact.
//
// Facts still in flux are also listed as suspects: a fact inserted by a
// write that some open View does not see yet, or one whose object has
// since changed, which some open View may still see. A reader sums every
// fact, then corrects for the suspects its snapshot disagrees with; see
// reader.stat.
type series[K fact[K]] struct {
	chunks  []seriesChunk[K]
	suspect map[K]uint64 // the latest version that touched the fact
}

type seriesChunk[K any] struct {
	e   []K
	sum total
}

func (s *series[K]) chunkFor(k K) int {
	i, _ := slices.BinarySearchFunc(s.chunks, k, func(c seriesChunk[K], k K) int { return c.e[len(c.e)-1].compare(k) })
	return min(i, len(s.chunks)-1)
}

func (s *series[K]) insert(k K) {
	if len(s.chunks) == 0 {
		s.chunks = []seriesChunk[K]{{e: []K{k}}}
		addFact(&s.chunks[0].sum, k, 1)
		return
	}
	ci := len(s.chunks) - 1
	c := &s.chunks[ci]
	var i int
	var found bool
	if c.e[len(c.e)-1].compare(k) < 0 {
		i = len(c.e) // the common case: k goes at the end
	} else {
		ci = s.chunkFor(k)
		c = &s.chunks[ci]
		i, found = slices.BinarySearchFunc(c.e, k, K.compare)
	}
	if found {
		return
	}
	c.e = slices.Insert(c.e, i, k)
	addFact(&c.sum, k, 1)
	if len(c.e) <= chunkMax {
		return
	}
	loE, hiE := split(c.e, ci == len(s.chunks)-1 && i == len(c.e)-1)
	lo, hi := seriesChunk[K]{e: loE}, seriesChunk[K]{e: hiE}
	for _, x := range hi.e {
		addFact(&hi.sum, x, 1)
	}
	lo.sum = c.sum
	lo.sum.n -= hi.sum.n
	lo.sum.a -= hi.sum.a
	lo.sum.b -= hi.sum.b
	s.chunks[ci] = lo
	s.chunks = slices.Insert(s.chunks, ci+1, hi)
}

func (s *series[K]) remove(k K) {
	delete(s.suspect, k)
	if len(s.chunks) == 0 {
		return
	}
	ci := s.chunkFor(k)
	c := &s.chunks[ci]
	i, found := slices.BinarySearchFunc(c.e, k, K.compare)
	if !found {
		return
	}
	c.e = slices.Delete(c.e, i, i+1)
	addFact(&c.sum, k, -1)
	if len(c.e) == 0 {
		s.chunks = slices.Delete(s.chunks, ci, ci+1)
	}
}

// since sums the facts at or after t.
func (s *series[K]) since(t int64) total {
	var sum total
	ci, _ := slices.BinarySearchFunc(s.chunks, t, func(c seriesChunk[K], t int64) int {
		return cmp.Compare(c.e[len(c.e)-1].when(), t)
	})
	if ci == len(s.chunks) {
		return sum
	}
	c := s.chunks[ci]
	i, _ := slices.BinarySearchFunc(c.e, t, func(x K, t int64) int { return cmp.Compare(x.when(), t) })
	if i == 0 {
		sum = c.sum
	} else {
		for _, x := range c.e[i:] {
			addFact(&sum, x, 1)
		}
	}
	for _, c := range s.chunks[ci+1:] {
		sum.n += c.sum.n
		sum.a += c.sum.a
		sum.b += c.sum.b
	}
	return sum
}

// markSuspect records that version ver touched the fact.
func (s *series[K]) markSuspect(k K, ver uint64) {
	if s.suspect == nil {
		s.suspect = make(map[K]uint64)
	}
	s.suspect[k] = max(s.suspect[k], ver)
}

// clearSuspects forgets the suspects no version above oldest touched, and
// reports whether any remain.
func (s *series[K]) clearSuspects(oldest uint64) bool {
	for k, ver := range s.suspect {
		if ver <= oldest {
			delete(s.suspect, k)
		}
	}
	return len(s.suspect) > 0
}

// split splits a chunk that outgrew chunkMax in two: in halves, each with
// room to grow; or, when the element that made it overflow was appended
// at the very end of the set, before that element, the first part fitted
// exactly, so that a set that only grows at its end keeps full chunks.
func split[E any](c []E, appended bool) (lo, hi []E) {
	at := len(c) / 2
	if appended {
		at = len(c) - 1
		lo = slices.Clip(append([]E(nil), c[:at]...))
	} else {
		lo = append(make([]E, 0, chunkMax+1), c[:at]...)
	}
	return lo, append(make([]E, 0, chunkMax+1), c[at:]...)
}
