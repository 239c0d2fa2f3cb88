package bench

import (
	"math/bits"
	"time"
)

// histogram counts durations in log-linear buckets: exact below 256ns, and
// 128 buckets per power of two above, so a percentile is within 0.8% of the
// true value. It has a fixed size whatever the number of samples, so a run
// of millions of calls records every one of them.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
}

const (
	histSub     = 128
	histBuckets = histSub * 58
)

func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(v) - 8
	return histSub*e + int(v>>uint(e))
}

// histValue returns the middle of bucket i.
func histValue(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	e := i/histSub - 1
	m := uint64(i - histSub*e)
	return m<<uint(e) + 1<<uint(e)/2
}

// add records n samples of d.
func (h *histogram) add(d time.Duration, n uint64) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))] += n
	h.n += n
}

// merge adds o's samples to h.
func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the duration below which the fraction q of samples lie.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(histValue(i))
		}
	}
	return time.Duration(histValue(len(h.counts) - 1))
}
