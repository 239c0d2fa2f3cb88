package journalstore

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestSortedMatchesASortedSlice inserts and removes at random, in runs
// that append at the end as the indexes mostly do, and checks every
// operation of the chunked set against a plain sorted slice.
func TestSortedMatchesASortedSlice(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var s sorted[seqKey]
		var model []seqKey
		next := seqKey(0)
		for range 5000 {
			var k seqKey
			switch r := rng.IntN(10); {
			case r < 5: // append
				next += seqKey(1 + rng.IntN(3))
				k = next
			case r < 7:
				k = seqKey(rng.Int64N(int64(next) + 1))
			default:
				if len(model) == 0 {
					continue
				}
				k = model[rng.IntN(len(model))]
				if got, want := s.remove(k), true; got != want {
					t.Fatalf("seed %d: remove(%d) = %v", seed, k, got)
				}
				i, _ := slices.BinarySearch(model, k)
				model = slices.Delete(model, i, i+1)
				continue
			}
			i, found := slices.BinarySearch(model, k)
			if got := s.insert(k); got == found {
				t.Fatalf("seed %d: insert(%d) = %v with it present = %v", seed, k, got, found)
			}
			if !found {
				model = slices.Insert(model, i, k)
			}
		}
		var all []seqKey
		s.ascendAll(func(k seqKey) bool { all = append(all, k); return true })
		if d := cmp.Diff(model, all); d != "" || s.Len() != len(model) {
			t.Fatalf("seed %d: set (len %d) differs from the model (-want +got):\n%s", seed, s.Len(), d)
		}
		for _, c := range s.chunks {
			if len(c) == 0 || len(c) > chunkMax {
				t.Fatalf("seed %d: chunk of %d elements", seed, len(c))
			}
		}
		for range 50 {
			from := seqKey(rng.Int64N(int64(next) + 2))
			i, _ := slices.BinarySearch(model, from)
			var up, down []seqKey
			s.ascend(from, func(k seqKey) bool { up = append(up, k); return len(up) < 40 })
			s.descendBelow(from, func(k seqKey) bool { down = append(down, k); return len(down) < 40 })
			wantDown := slices.Clone(model[:i])
			slices.Reverse(wantDown)
			if d := cmp.Diff(model[i:min(len(model), i+40)], up, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("seed %d: ascend(%d) (-want +got):\n%s", seed, from, d)
			}
			if d := cmp.Diff(wantDown[:min(len(wantDown), 40)], down, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("seed %d: descendBelow(%d) (-want +got):\n%s", seed, from, d)
			}
		}
	}
}

// TestSeriesSumsMatchBruteForce checks a series' sums since a time
// against adding up its facts one by one, as facts come and go.
func TestSeriesSumsMatchBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var s series[fillKey]
	var model []fillKey
	for i := range 4000 {
		if len(model) > 0 && rng.IntN(4) == 0 {
			j := rng.IntN(len(model))
			s.remove(model[j])
			model = slices.Delete(model, j, j+1)
		} else {
			at := int64(i) * 10
			if rng.IntN(5) == 0 {
				at = rng.Int64N(int64(i)*10 + 1) // a late fact, out of order
			}
			k := fillKey{at: at, seq: int64(i), price: rng.Int64N(1000), paid: rng.Int64N(1000)}
			s.insert(k)
			model = append(model, k)
		}
		if i%97 == 0 {
			since := rng.Int64N(int64(i)*10 + 20)
			var want total
			for _, k := range model {
				if k.at >= since {
					addFact(&want, k, 1)
				}
			}
			if got := s.since(since); got != want {
				t.Fatalf("after %d steps: since(%d) = %+v, want %+v", i, since, got, want)
			}
		}
	}
}

// TestSeqListMatchesASlice pushes numbers with gaps of every size,
// including gaps that take several varint bytes, pops some back, and
// reads from every position against a plain slice.
func TestSeqListMatchesASlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var l seqList
	var model []int64
	next := int64(0)
	for range 3000 {
		if len(model) > 0 && rng.IntN(5) == 0 {
			l.pop()
			model = model[:len(model)-1]
			next = 0
			if len(model) > 0 {
				next = model[len(model)-1]
			}
			continue
		}
		next += 1 + rng.Int64N([]int64{3, 200, 1 << 20}[rng.IntN(3)])
		l.push(next)
		model = append(model, next)
	}
	if l.last() != model[len(model)-1] {
		t.Fatalf("last() = %d, want %d", l.last(), model[len(model)-1])
	}
	for _, from := range []int64{-1, 0, model[0], model[len(model)/2], model[len(model)/2] + 1, next, next + 5} {
		var got []int64
		for c := l.cursor(from); ; c.next() {
			seq, ok := c.peek()
			if !ok {
				break
			}
			got = append(got, seq)
		}
		i, found := slices.BinarySearch(model, from)
		if found {
			i++
		}
		if d := cmp.Diff(model[i:], got, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("cursor(%d) (-want +got):\n%s", from, d)
		}
	}
}
