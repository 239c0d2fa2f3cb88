package journalstore

import (
	"fmt"
	"slices"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// State is the whole of a store's state as its tests compare it: the
// newest value of every object with its sequence number, the counters,
// and the entries of every index.
type State struct {
	Agents        map[market.AgentID]market.Agent
	Grants        map[string]int64
	Offers        map[string]market.Offer
	Intents       map[int64]market.Intent
	Bids          map[int64]market.Bid
	BidTypes      map[int64]string
	Messages      map[int64]market.Message
	Contracts     map[int64]market.Contract
	Scores        map[string]market.ScoreRecord
	Pairs         map[string]market.PairRecord
	ArbiterRecs   map[market.AgentID]market.ArbiterRecord
	Idempotency   map[string]market.IdempotencyRecord
	Nonces        map[string]int64
	Receipts      []market.Receipt
	Events        []market.Event
	Last          map[string]int64
	Indexes       map[string][]string
	Unfindable    []string       // objects that a lookup by their id does not find
	IDs           map[string]int // entries in each id index
	OldVersions   int            // values kept for readers beside the newest ones
	SuspectSeries int
}

// WeakIDHash makes the id index hash every id into one of four values, so
// that ids clash all the time, until the returned func restores it.
func WeakIDHash() (restore func()) {
	idHash = func(id string) uint64 { return uint64(len(id) % 4) }
	return func() { idHash = fnv1a }
}

// DumpState returns the state of a closed store, leaving out the nonces
// that expired at or before now.
func DumpState(s *Store, now time.Time) State {
	st := s.st
	d := State{
		Agents: map[market.AgentID]market.Agent{}, Grants: map[string]int64{}, Offers: map[string]market.Offer{},
		Intents: map[int64]market.Intent{}, Bids: map[int64]market.Bid{}, BidTypes: map[int64]string{},
		Messages: map[int64]market.Message{}, Contracts: map[int64]market.Contract{},
		Scores: map[string]market.ScoreRecord{}, Pairs: map[string]market.PairRecord{},
		ArbiterRecs: map[market.AgentID]market.ArbiterRecord{}, Idempotency: map[string]market.IdempotencyRecord{},
		Nonces: map[string]int64{}, Last: map[string]int64{}, Indexes: map[string][]string{},
		SuspectSeries: len(st.suspectSeries),
	}
	old := func(n int) { d.OldVersions += n }
	for k, v := range st.agents {
		d.Agents[k] = v.val
		old(chain(v))
	}
	for k, v := range st.grants {
		d.Grants[k] = v.val
		old(chain(v))
	}
	for k, v := range st.offers {
		d.Offers[k] = v.val
		old(chain(v))
	}
	seqs := func(name string, last int64, get func(int64) int) {
		d.Last[name] = last
		for seq := int64(1); seq <= last; seq++ {
			old(get(seq))
		}
	}
	seqs("intents", st.intents.last, func(seq int64) int {
		return value(&st.intents, st.archive, seq, func(v *version[market.Intent]) {
			d.Intents[seq] = v.val
		})
	})
	seqs("bids", st.bids.last, func(seq int64) int {
		return value(&st.bids, st.archive, seq, func(v *version[bidValue]) {
			d.Bids[seq], d.BidTypes[seq] = v.val.Bid, v.val.intentType
		})
	})
	seqs("messages", st.messages.last, func(seq int64) int {
		return value(&st.messages, st.archive, seq, func(v *version[market.Message]) {
			d.Messages[seq] = v.val
		})
	})
	seqs("contracts", st.contracts.last, func(seq int64) int {
		return value(&st.contracts, st.archive, seq, func(v *version[market.Contract]) {
			d.Contracts[seq] = v.val
		})
	})
	for k, v := range st.scores {
		d.Scores[fmt.Sprint(k)] = v.val
		old(chain(v))
	}
	for k, v := range st.pairs {
		d.Pairs[fmt.Sprint(k)] = v.val
		old(chain(v))
	}
	for k, v := range st.arbRecs {
		d.ArbiterRecs[k] = v.val
		old(chain(v))
	}
	for k, v := range st.idem {
		d.Idempotency[k] = v.val
		old(chain(v))
	}
	for k, v := range st.nonces {
		if v.val > now.UnixNano() {
			d.Nonces[fmt.Sprint(k)] = v.val
		}
		old(chain(v))
	}
	for seq := int64(1); seq <= st.receipts.last; seq++ {
		value(&st.receipts, st.archive, seq, func(v *version[market.Receipt]) { d.Receipts = append(d.Receipts, v.val) })
	}
	for seq := int64(1); seq <= st.events.last; seq++ {
		value(&st.events, st.archive, seq, func(v *version[market.Event]) { d.Events = append(d.Events, v.val) })
	}
	for k, off := range st.idemCold {
		if _, hot := st.idem[k]; !hot {
			rec, err := readArchived(st.archive, off-1, (*dec).idempotency)
			if err != nil {
				panic(err)
			}
			d.Idempotency[k] = *rec
		}
	}
	d.Last["receipts"], d.Last["events"] = st.receipts.last, st.events.last
	findable(&d, "intent", &st.intents, st.archive)
	findable(&d, "bid", &st.bids, st.archive)
	findable(&d, "message", &st.messages, st.archive)
	findable(&d, "contract", &st.contracts, st.archive)
	d.IDs = map[string]int{}
	for name, x := range map[string]*idIndex{"intents": st.intents.ids, "bids": st.bids.ids,
		"messages": st.messages.ids, "contracts": st.contracts.ids} {
		d.IDs[name] = len(x.byHash) + len(x.clash)
	}

	idx := func(name string, key any, elems []string) {
		if len(elems) > 0 {
			d.Indexes[fmt.Sprintf("%s %v", name, key)] = elems
		}
	}
	seqMap(idx, "intentByType", st.intentByType)
	seqMap(idx, "intentByState", st.intentByState)
	seqMap(idx, "intentByBuyer", st.intentByBuyer)
	for k, seq := range st.intentByRequest.one {
		idx("intentByRequest", k, []string{fmt.Sprint(seq)})
	}
	for k, set := range st.intentByRequest.more {
		idx("intentByRequestMore", k, elems(set))
	}
	fewMap(idx, "bidByIntent", st.bidByIntent)
	fewMap(idx, "messageByBid", st.messageByBid)
	seqMap(idx, "contractByState", st.contractByState)
	seqMap(idx, "contractByType", st.contractByType)
	seqMap(idx, "contractByParent", st.contractByParen)
	seqMap(idx, "contractByParty", st.contractByParty)
	seqMap(idx, "contractOpen", st.contractOpen)
	seqMap(idx, "contractPaid", st.contractPaid)
	seqMap(idx, "offerActive", st.offerActive)
	seqMap(idx, "offerBySeller", st.offerBySeller)
	seqMap(idx, "pairsBetween", st.pairsBetween)
	idx("intentDue", "", elems(&st.intentDue))
	idx("contractDue", "", elems(&st.contractDue))
	idx("arbiters", "", elems(&st.arbiters))
	var live []string
	st.nonceExpiry.ascendAll(func(e nonceExp) bool {
		if e.at > now.UnixNano() {
			live = append(live, fmt.Sprint(e))
		}
		return true
	})
	idx("nonceExpiry", "", live)
	for name, m := range map[string]map[string]*series[countKey]{"intentsCreated": st.intentsCreated,
		"bidsCreated": st.bidsCreated, "contractsAwarded": st.contractsAwarded} {
		for k, sr := range m {
			idx(name, k, seriesElems(sr))
		}
	}
	for k, sr := range st.contractFills {
		idx("contractFills", k, seriesElems(sr))
	}
	idx("eventsPublic", "", strs(&st.eventsPublic))
	for k, l := range st.eventsByIntent {
		idx("eventsByIntent", k, strs(l))
	}
	for k, l := range st.eventsByAgent {
		idx("eventsByAgent", k, strs(l))
	}
	return d
}

// value calls fn with the newest version of an object, read back from
// the archive if it is cold, and returns how many older versions it has.
func value[T any](t *seqTable[T], a *archive, seq int64, fn func(v *version[T])) int {
	sl := t.get(seq)
	switch {
	case sl.v != nil:
		fn(sl.v)
		return chain(sl.v)
	case sl.cold != 0:
		v, err := readArchived(a, sl.cold-1, t.decode)
		if err != nil {
			panic(err)
		}
		fn(hydrated(v))
	}
	return 0
}

// seriesElems lists a series' facts, and any chunk whose sum is wrong.
func seriesElems[K fact[K]](sr *series[K]) []string {
	var es []string
	for _, c := range sr.chunks {
		var sum total
		for _, e := range c.e {
			es = append(es, fmt.Sprint(e))
			addFact(&sum, e, 1)
		}
		if sum != c.sum {
			es = append(es, fmt.Sprintf("chunk sum %v, want %v", c.sum, sum))
		}
	}
	return es
}

// findable records the objects that a lookup by id does not find.
func findable[T any](d *State, kind string, t *seqTable[T], a *archive) {
	for seq := int64(1); seq <= t.last; seq++ {
		v, err := t.value(seq, latest, a)
		if err != nil {
			panic(err)
		}
		if v == nil {
			continue
		}
		if got, _, err := t.find(t.idOf(v), latest, a); err != nil || got != seq {
			d.Unfindable = append(d.Unfindable, fmt.Sprintf("%s %d %q: found %d, %v", kind, seq, t.idOf(v), got, err))
		}
	}
}

func chain[T any](v *version[T]) (n int) {
	for v = v.prev; v != nil; v = v.prev {
		n++
	}
	return n
}

func elems[E element[E]](s *sorted[E]) []string {
	var out []string
	s.ascendAll(func(e E) bool { out = append(out, fmt.Sprint(e)); return true })
	return out
}

func seqMap[K comparable, E element[E]](idx func(string, any, []string), name string, m setMap[K, E]) {
	keys := make([]string, 0, len(m))
	byKey := map[string]*sorted[E]{}
	for k, s := range m {
		ks := fmt.Sprint(k)
		keys = append(keys, ks)
		byKey[ks] = s
	}
	slices.Sort(keys)
	for _, k := range keys {
		idx(name, k, elems(byKey[k]))
	}
}

func fewMap(idx func(string, any, []string), name string, m fewSets[string]) {
	for k := range m {
		var es []string
		m.each(k, func(seq int64) bool { es = append(es, fmt.Sprint(seq)); return true })
		idx(name, k, es)
	}
}

func strs(l *seqList) []string {
	var out []string
	for c := l.cursor(0); ; c.next() {
		seq, ok := c.peek()
		if !ok {
			return out
		}
		out = append(out, fmt.Sprint(seq))
	}
}
