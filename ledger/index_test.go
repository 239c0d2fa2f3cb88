package ledger

import (
	"math/rand/v2"
	"testing"

	"pgregory.net/rapid"
)

// The index is tested on its own against a Go map: inserts, lookups and
// backward-shift removals, across growth, with ids chosen to pile up on
// one home slot and wrap around the end of the table.

type indexKey struct {
	id  ID
	tag uint64
}

// indexModel drives an index and keeps the map it must agree with. Every
// entry gets a fresh offset, and owner says whose an offset is, which is
// what the ledger's match reads from the journal.
type indexModel struct {
	x       *index
	entries map[indexKey]int64
	owner   map[int64]indexKey
	nextOff int64
}

func newIndexModel(capacity int) *indexModel {
	return &indexModel{x: newIndex(capacity), entries: map[indexKey]int64{}, owner: map[int64]indexKey{}}
}

func (m *indexModel) insert(k indexKey) {
	off := m.nextOff
	m.nextOff += transferEventSize
	m.x.insert(k.id, k.tag, off)
	m.entries[k] = off
	m.owner[off] = k
}

func (m *indexModel) remove(k indexKey) {
	m.x.remove(k.id, k.tag, m.entries[k])
	delete(m.entries, k)
}

func (m *indexModel) lookup(k indexKey) (int64, bool) {
	return m.x.lookup(k.id, k.tag, func(off int64) bool { return m.owner[off] == k })
}

type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// check compares every entry with the map, and checks the table's
// invariant: from its home slot to the slot it sits in, an entry's probe
// run has no hole, or a lookup would stop short of it.
func (m *indexModel) check(t fataler) {
	t.Helper()
	if m.x.count != len(m.entries) {
		t.Fatalf("index counts %d entries, map holds %d", m.x.count, len(m.entries))
	}
	for k, want := range m.entries {
		if got, ok := m.lookup(k); !ok || got != want {
			t.Fatalf("lookup %s/%d: got %d, %v; want %d", k.id, k.tag, got, ok, want)
		}
	}
	used := checkRuns(t, m.x.slots, m.x.mask, m.x.shift, 0)
	if m.x.old != nil {
		// During a move, entries the cursor has not reached live only in
		// the old table; those behind it are in both.
		used += checkRuns(t, m.x.old, m.x.oldMask, m.x.oldShift, m.x.moved)
	}
	if used != len(m.entries) {
		t.Fatalf("%d slots used for %d entries", used, len(m.entries))
	}
}

// checkRuns checks that no entry of a table sits behind an empty slot
// (dead slots count as occupied) and counts the live entries at or after
// from.
func checkRuns(t fataler, slots []slot, mask uint64, shift uint, from int) int {
	t.Helper()
	used := 0
	for j, s := range slots {
		if s.loc == 0 {
			continue
		}
		if s.loc != dead && j >= from {
			used++
		}
		if s.loc == dead {
			continue
		}
		home := s.hash >> shift
		for i := home; i != uint64(j); i = (i + 1) & mask {
			if slots[i].loc == 0 {
				t.Fatalf("slot %d (home %d) sits behind empty slot %d", j, home, i)
			}
		}
	}
	return used
}

// crowdedIDs returns n ids whose transfer entries share the last home slot
// of a fresh index, so that they wrap around to the start of the table.
func crowdedIDs(n int) []ID {
	x := newIndex(0)
	var ids []ID
	for i := uint64(1); len(ids) < n; i++ {
		id := IDFromUint64(i)
		if hashID(id, tagTransfer)>>x.shift == x.mask {
			ids = append(ids, id)
		}
	}
	return ids
}

func TestIndexAgainstMap(t *testing.T) {
	crowded := crowdedIDs(24)
	rapid.Check(t, func(t *rapid.T) {
		m := newIndexModel(0)
		// Ids from a small pool, half of them crowded on one slot, so that
		// an id often comes back with the other tag or after its removal.
		pool := append(append([]ID{}, crowded...), func() []ID {
			var ids []ID
			for i := range 24 {
				ids = append(ids, IDFromUint64(uint64(1_000_000+i)))
			}
			return ids
		}()...)
		drawKey := func(t *rapid.T) indexKey {
			return indexKey{id: rapid.SampledFrom(pool).Draw(t, "id"), tag: rapid.Uint64Range(0, 1).Draw(t, "tag")}
		}
		t.Repeat(map[string]func(*rapid.T){
			"insert": func(t *rapid.T) {
				k := drawKey(t)
				if _, ok := m.entries[k]; ok {
					t.Skip("present")
				}
				m.insert(k)
			},
			"remove": func(t *rapid.T) {
				k := drawKey(t)
				if _, ok := m.entries[k]; !ok {
					t.Skip("absent")
				}
				m.remove(k)
			},
			"removeAbsent": func(t *rapid.T) {
				// The undo log only removes what it inserted, but a stale
				// offset must not take another entry with it.
				k := drawKey(t)
				m.x.remove(k.id, k.tag, m.nextOff+transferEventSize)
			},
			"lookupAbsent": func(t *rapid.T) {
				k := drawKey(t)
				if _, ok := m.entries[k]; ok {
					t.Skip("present")
				}
				if off, ok := m.lookup(k); ok {
					t.Fatalf("absent %s/%d found at %d", k.id, k.tag, off)
				}
			},
			"": func(t *rapid.T) { m.check(t) },
		})
	})
}

func TestIndexAcrossGrowth(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	m := newIndexModel(0)
	slots := len(m.x.slots)
	var keys []indexKey
	for op := range 30_000 {
		if len(keys) > 0 && rng.IntN(4) == 0 {
			// Remove a random entry; swap it out of the key list.
			i := rng.IntN(len(keys))
			m.remove(keys[i])
			keys[i] = keys[len(keys)-1]
			keys = keys[:len(keys)-1]
		} else {
			k := indexKey{id: IDFromUint64(rng.Uint64N(1 << 40)), tag: rng.Uint64N(2)}
			if _, ok := m.entries[k]; ok {
				continue
			}
			m.insert(k)
			keys = append(keys, k)
		}
		if op%2000 == 0 {
			m.check(t)
		}
	}
	m.check(t)
	if len(m.x.slots) < 8*slots {
		t.Fatalf("table grew from %d to %d slots only; the test meant to cross several growths", slots, len(m.x.slots))
	}
	if load := float64(m.x.count) / float64(len(m.x.slots)); load > 0.75 {
		t.Errorf("load factor %.2f above 3/4", load)
	}
	// Emptied, the table finds nothing and keeps no entry.
	for _, k := range keys {
		m.remove(k)
	}
	m.check(t)
	if m.x.count != 0 {
		t.Errorf("%d entries left after removing all", m.x.count)
	}
}
