package journalstore

import (
	"cmp"
	"slices"
)

// statKey is one fact a market statistic counts: something of an intent
// type that happened at a time (unix nanoseconds), by the object with
// sequence number seq, with two amounts that the statistic sums (a fill's
// agreed price and what it paid; zero for counts).
type statKey struct {
	at, seq int64
	a, b    int64
}

func (x statKey) compare(y statKey) int {
	if c := cmp.Compare(x.at, y.at); c != 0 {
		return c
	}
	if c := cmp.Compare(x.seq, y.seq); c != 0 {
		return c
	}
	if c := cmp.Compare(x.a, y.a); c != 0 {
		return c
	}
	return cmp.Compare(x.b, y.b)
}

// total is what a statistic sums over a stretch of time.
type total struct {
	n, a, b int64
}

func (t *total) add(k statKey, sign int64) {
	t.n += sign
	t.a += sign * k.a
	t.b += sign * k.b
}

// series is a time-ordered set of one statistic's facts. It keeps the sum
// of each chunk, so that summing everything since a time reads one partial
// chunk and the sums of the chunks after it, not every fact.
//
// Facts still in flux are also listed as suspects: a fact inserted by a
// write that some open View does not see yet, or one whose object has
// since changed, which some open View may still see. A reader sums every
// fact, then corrects for the suspects its snapshot disagrees with; see
// state.stats.
type series struct {
	chunks  []seriesChunk
	suspect map[statKey]uint64 // the latest version that touched the fact
}

type seriesChunk struct {
	e   []statKey
	sum total
}

func (s *series) chunkFor(k statKey) int {
	i, _ := slices.BinarySearchFunc(s.chunks, k, func(c seriesChunk, k statKey) int { return c.e[len(c.e)-1].compare(k) })
	return min(i, len(s.chunks)-1)
}

func (s *series) insert(k statKey) {
	if len(s.chunks) == 0 {
		s.chunks = []seriesChunk{{e: []statKey{k}}}
		s.chunks[0].sum.add(k, 1)
		return
	}
	ci := s.chunkFor(k)
	c := &s.chunks[ci]
	i, found := slices.BinarySearchFunc(c.e, k, statKey.compare)
	if found {
		return
	}
	c.e = slices.Insert(c.e, i, k)
	c.sum.add(k, 1)
	if len(c.e) <= chunkMax {
		return
	}
	half := len(c.e) / 2
	lo := seriesChunk{e: make([]statKey, half, chunkMax)}
	copy(lo.e, c.e[:half])
	hi := seriesChunk{e: make([]statKey, len(c.e)-half, chunkMax)}
	copy(hi.e, c.e[half:])
	for _, x := range lo.e {
		lo.sum.add(x, 1)
	}
	for _, x := range hi.e {
		hi.sum.add(x, 1)
	}
	s.chunks[ci] = lo
	s.chunks = slices.Insert(s.chunks, ci+1, hi)
}

func (s *series) remove(k statKey) {
	delete(s.suspect, k)
	if len(s.chunks) == 0 {
		return
	}
	ci := s.chunkFor(k)
	c := &s.chunks[ci]
	i, found := slices.BinarySearchFunc(c.e, k, statKey.compare)
	if !found {
		return
	}
	c.e = slices.Delete(c.e, i, i+1)
	c.sum.add(k, -1)
	if len(c.e) == 0 {
		s.chunks = slices.Delete(s.chunks, ci, ci+1)
	}
}

func (s *series) has(k statKey) bool {
	if len(s.chunks) == 0 {
		return false
	}
	_, found := slices.BinarySearchFunc(s.chunks[s.chunkFor(k)].e, k, statKey.compare)
	return found
}

// since sums the facts at or after t.
func (s *series) since(t int64) total {
	var sum total
	if len(s.chunks) == 0 {
		return sum
	}
	from := statKey{at: t, seq: -1 << 63, a: -1 << 63, b: -1 << 63}
	ci := s.chunkFor(from)
	c := s.chunks[ci]
	i, _ := slices.BinarySearchFunc(c.e, from, statKey.compare)
	if i == 0 {
		sum = c.sum
	} else {
		for _, x := range c.e[i:] {
			sum.add(x, 1)
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
func (s *series) markSuspect(k statKey, ver uint64) {
	if s.suspect == nil {
		s.suspect = make(map[statKey]uint64)
	}
	s.suspect[k] = max(s.suspect[k], ver)
}
