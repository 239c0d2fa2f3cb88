package journalstore

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// The state holds every object in memory, in versions. Each journal record
// is a version of the state, numbered by its sequence number, and every
// object value carries the version that wrote it, with a pointer to the
// value it replaced:
//
//   - The writer goroutine writes a batch's values at the next version,
//     which no View can see: a View reads at the newest version whose
//     record is durable, fixed when the View starts, and for each object
//     walks back to the newest value at or below it. The writer itself
//     reads the newest value of all, its batch's writes included.
//   - Once no View can see an old value any more, the writer drops it.
//
// The indexes hold, for every value some reader may still see, an entry
// for each list that value belongs in (a contract's state, its parties,
// its deadline...). An entry can outlive the value that put it there: a
// list query walks an index and keeps the objects whose value, as the
// reader sees it, matches the whole query, so a stale entry is skipped.
// Stale entries are removed when the old values are dropped.
//
// mu guards the maps, pages and indexes against the writer's changes:
// the writer takes it to change them, a View's read takes it for reading
// for one call at a time, so that a View never holds up a commit. The
// writer's own reads need no lock: no one else changes anything.
type state struct {
	mu sync.RWMutex

	agents    map[market.AgentID]*version[market.Agent]
	grants    map[string]*version[int64]
	offers    map[string]*version[market.Offer]
	intents   seqTable[market.Intent]
	bids      seqTable[bidValue]
	messages  seqTable[market.Message]
	contracts seqTable[market.Contract]
	scores    map[scoreKey]*version[market.ScoreRecord]
	pairs     map[pairKey]*version[market.PairRecord]
	arbRecs   map[market.AgentID]*version[market.ArbiterRecord]
	idem      map[string]*version[market.IdempotencyRecord]
	idemCold  map[string]int64 // where archived idempotency records are, plus one
	receipts  seqTable[market.Receipt]
	events    seqTable[market.Event]
	archive   *archive

	// Events and receipts up to these are archived.
	eventsCold, receiptsCold int64

	// nonces hold each nonce's expiry (unix ns). Only the writer reads
	// them, but they are versioned like the rest, for snapshots.
	nonces      map[nonceKey]*version[int64]
	nonceExpiry sorted[nonceExp] // the writer's alone

	intentByType    setMap[string, seqKey]
	intentByState   setMap[string, seqKey]
	intentByBuyer   setMap[string, seqKey]
	intentByRequest uniqueIndex[uint64] // by requestKey
	intentDue       sorted[dueKey]
	bidByIntent     fewSets[string]
	messageByBid    fewSets[string]
	contractByState setMap[string, seqKey]
	contractByType  setMap[string, seqKey]
	contractByParen setMap[string, seqKey]
	contractByParty setMap[string, seqKey]
	contractOpen    setMap[[2]string, seqKey]
	contractPaid    setMap[string, sellerKey]
	contractDue     sorted[dueKey]
	offerActive     setMap[string, idKey]
	offerBySeller   setMap[string, idKey]
	arbiters        sorted[idKey]
	pairsBetween    setMap[[2]string, idKey]
	eventsByIntent  map[string]*seqList
	eventsByAgent   map[market.AgentID]*seqList
	eventsPublic    seqList

	// The statistics, by intent type.
	intentsCreated   map[string]*series[countKey]
	bidsCreated      map[string]*series[countKey]
	contractsAwarded map[string]*series[countKey]
	contractFills    map[string]*series[fillKey]
	suspectSeries    map[suspects]bool // series with suspects to clear

	// names interns the agent ids and intent types that index keys hold,
	// so that each is in memory once however many objects it indexes.
	// Only the writer uses it.
	names map[string]string

	// removed collects the index keys removed while a snapshot copies the
	// indexes, nil otherwise.
	removed *[]ikey

	// keyBufs are reindex's and drop's scratch space for the index keys
	// of two values, kept here because a buffer handed to a keysFunc
	// escapes to the heap. Only a holder of mu uses them.
	keyBufs [2][]ikey

	// oldest is the oldest version some View may still read, as of the
	// last collection; values and entries that no reader at or above it
	// can see are garbage.
	oldest uint64
}

func newState(a *archive) *state {
	return &state{
		agents:           make(map[market.AgentID]*version[market.Agent]),
		grants:           make(map[string]*version[int64]),
		offers:           make(map[string]*version[market.Offer]),
		intents:          newSeqTable((*dec).intent, func(i *market.Intent) string { return i.ID }),
		bids:             newSeqTable((*dec).bidValue, func(b *bidValue) string { return b.ID }),
		messages:         newSeqTable((*dec).message, func(m *market.Message) string { return m.ID }),
		contracts:        newSeqTable((*dec).contract, func(c *market.Contract) string { return c.ID }),
		receipts:         newSeqTable((*dec).receipt, nil),
		events:           newSeqTable((*dec).event, nil),
		archive:          a,
		scores:           make(map[scoreKey]*version[market.ScoreRecord]),
		pairs:            make(map[pairKey]*version[market.PairRecord]),
		arbRecs:          make(map[market.AgentID]*version[market.ArbiterRecord]),
		idem:             make(map[string]*version[market.IdempotencyRecord]),
		idemCold:         make(map[string]int64),
		nonces:           make(map[nonceKey]*version[int64]),
		intentByType:     make(setMap[string, seqKey]),
		intentByState:    make(setMap[string, seqKey]),
		intentByBuyer:    make(setMap[string, seqKey]),
		intentByRequest:  newUniqueIndex[uint64](),
		names:            make(map[string]string),
		bidByIntent:      make(fewSets[string]),
		messageByBid:     make(fewSets[string]),
		contractByState:  make(setMap[string, seqKey]),
		contractByType:   make(setMap[string, seqKey]),
		contractByParen:  make(setMap[string, seqKey]),
		contractByParty:  make(setMap[string, seqKey]),
		contractOpen:     make(setMap[[2]string, seqKey]),
		contractPaid:     make(setMap[string, sellerKey]),
		offerActive:      make(setMap[string, idKey]),
		offerBySeller:    make(setMap[string, idKey]),
		pairsBetween:     make(setMap[[2]string, idKey]),
		eventsByIntent:   make(map[string]*seqList),
		eventsByAgent:    make(map[market.AgentID]*seqList),
		intentsCreated:   make(map[string]*series[countKey]),
		bidsCreated:      make(map[string]*series[countKey]),
		contractsAwarded: make(map[string]*series[countKey]),
		contractFills:    make(map[string]*series[fillKey]),
		suspectSeries:    make(map[suspects]bool),
	}
}

// version is one value of an object, written by the journal record ver.
// prev is the value it replaced, kept while some reader may see it.
// A version's val never changes once the version is stored.
type version[T any] struct {
	ver  uint64
	prev *version[T]
	val  T
}

// at returns the value a reader at snap sees, or nil.
func (v *version[T]) at(snap uint64) *version[T] {
	for v != nil && v.ver > snap {
		v = v.prev
	}
	return v
}

// bidValue is a bid with its intent's type, read from the intent when the
// bid was stored, for market statistics; "" if the intent was not stored.
type bidValue struct {
	market.Bid
	intentType string
}

type scoreKey struct {
	agent  market.AgentID
	intent string
}

type pairKey struct {
	buyer, seller market.AgentID
	intent        string
}

type nonceKey struct {
	agent market.AgentID
	nonce string
}

// nonceExp orders nonces by expiry, to forget the expired ones.
type nonceExp struct {
	at int64
	k  nonceKey
}

func (a nonceExp) compare(b nonceExp) int {
	switch {
	case a.at != b.at:
		return cmp.Compare(a.at, b.at)
	case a.k.agent != b.k.agent:
		return cmp.Compare(a.k.agent, b.k.agent)
	}
	return cmp.Compare(a.k.nonce, b.k.nonce)
}

// pages is an append-only sequence numbered from 1, in fixed-size pages
// so that growing it never copies what is there.
type pages[T any] struct {
	p    [][]T
	last int64
}

const (
	pageBits = 12
	pageSize = 1 << pageBits
)

func (p *pages[T]) get(seq int64) (v T) {
	i := seq - 1
	if seq <= 0 || i>>pageBits >= int64(len(p.p)) {
		return v
	}
	return p.p[i>>pageBits][i&(pageSize-1)]
}

func (p *pages[T]) set(seq int64, v T) {
	i := seq - 1
	for i>>pageBits >= int64(len(p.p)) {
		p.p = append(p.p, make([]T, pageSize))
	}
	p.p[i>>pageBits][i&(pageSize-1)] = v
}

// seqTable holds objects numbered in insertion order: each gets the next
// sequence number when first stored. Lists of them run in that order.
//
// Most objects are cold, so a table keeps, per object, one integer free
// of pointers, which the garbage collector need not look into: zero for
// none, a positive archive offset plus one for a cold object, or a
// negative index into pool, the slots of the objects in memory.
type seqTable[T any] struct {
	ids    *idIndex // nil for events and receipts, which have no id
	slots  pages[int64]
	pool   []slot[T]
	free   []int32 // unused places in pool
	last   int64   // the highest sequence number given out
	decode func(*dec) T
	idOf   func(*T) string
}

// slot is where an object is: its versions, or, once it is cold, its
// value's place in the archive, plus one. A slot with both is an archived
// object that a write brought back; its versions are what counts.
type slot[T any] struct {
	v    *version[T]
	cold int64
}

// get returns the object's slot.
func (t *seqTable[T]) get(seq int64) slot[T] {
	switch x := t.slots.get(seq); {
	case x < 0:
		return t.pool[-x-1]
	case x > 0:
		return slot[T]{cold: x}
	}
	return slot[T]{}
}

// set stores the object's slot.
func (t *seqTable[T]) set(seq int64, sl slot[T]) {
	x := t.slots.get(seq)
	if sl.v == nil {
		if x < 0 {
			t.pool[-x-1] = slot[T]{}
			t.free = append(t.free, int32(-x-1))
		}
		t.slots.set(seq, sl.cold)
		return
	}
	if x >= 0 {
		if n := len(t.free); n > 0 {
			x = -int64(t.free[n-1]) - 1
			t.free = t.free[:n-1]
		} else {
			t.pool = append(t.pool, slot[T]{})
			x = -int64(len(t.pool))
		}
		t.slots.set(seq, x)
	}
	t.pool[-x-1] = sl
}

func newSeqTable[T any](decode func(*dec) T, idOf func(*T) string) seqTable[T] {
	t := seqTable[T]{decode: decode, idOf: idOf}
	if idOf != nil {
		t.ids = newIDIndex()
	}
	return t
}

// find returns the object with id and its value as a reader at snap sees
// it; seq 0 when there is none.
func (t *seqTable[T]) find(id string, snap uint64, a *archive) (int64, *T, error) {
	seq, exact := t.ids.candidate(id)
	if seq == 0 {
		return 0, nil, nil
	}
	v, err := t.value(seq, snap, a)
	if err != nil || v == nil || (!exact && t.idOf(v) != id) {
		return 0, nil, err
	}
	return seq, v, nil
}

// head returns the object's newest version, nil if there is none in
// memory.
func (t *seqTable[T]) head(seq int64) *version[T] { return t.get(seq).v }

// value returns the object's value as a reader at snap sees it, reading
// the archive if the object is cold; nil if there is none.
func (t *seqTable[T]) value(seq int64, snap uint64, a *archive) (*T, error) {
	sl := t.get(seq)
	if sl.v != nil {
		if v := sl.v.at(snap); v != nil {
			return &v.val, nil
		}
		return nil, nil
	}
	if sl.cold == 0 {
		return nil, nil
	}
	return readArchived(a, sl.cold-1, t.decode)
}

// readArchived decodes a value from the archive.
func readArchived[T any](a *archive, off int64, decode func(*dec) T) (*T, error) {
	b, err := a.read(off)
	if err != nil {
		return nil, err
	}
	d := dec{b: b}
	v := decode(&d)
	if d.err != nil || len(d.b) != 0 {
		return nil, fmt.Errorf("archive at %d: %w", off, errCorrupt)
	}
	return &v, nil
}

// hydrated is the version of a value read back from the archive for a
// write to replace: version 0, older than every reader.
func hydrated[T any](v *T) *version[T] { return &version[T]{val: *v} }

// Times are indexed as unix nanoseconds, as the sqlite adapter stores
// them: the zero time is the smallest value, so that a zero deadline has
// always passed, and times beyond the years 1678 to 2262 are clamped.
const zeroNanos = math.MinInt64

var (
	minNanoTime = time.Unix(0, math.MinInt64+1)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

func nanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return zeroNanos
	case t.Before(minNanoTime):
		return math.MinInt64 + 1
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// The indexes an object's value has entries in.
const (
	ixIntentType = iota + 1
	ixIntentState
	ixIntentBuyer
	ixIntentRequest
	ixIntentDue
	ixIntentCreated
	ixBidIntent
	ixBidCreated
	ixMessageBid
	ixContractState
	ixContractType
	ixContractParent
	ixContractParty
	ixContractOpen
	ixContractPaid
	ixContractDue
	ixContractAwarded
	ixContractFill
	ixOfferActive
	ixOfferSeller
	ixArbiter
)

// ikey is one index entry of an object's value: which index, the key
// within it (s1, s2, n), the amounts a statistic sums (a, b), and the
// object, by sequence number or id.
type ikey struct {
	idx    uint8
	s1, s2 string
	n      int64
	a, b   int64
	seq    int64
	id     string
}

func intentDue(i *market.Intent) (int64, bool) {
	switch i.State {
	case market.IntentOpen:
		return nanos(i.BidDeadline), true
	case market.IntentSelecting:
		return nanos(i.AwardDeadline), true
	}
	return 0, false
}

func contractDue(c *market.Contract) (int64, bool) {
	switch c.State {
	case market.ContractAwarded:
		return nanos(c.DeliverBy), true
	case market.ContractDelivered, market.ContractInReview:
		return nanos(c.ReviewBy), true
	}
	return 0, false
}

func intentKeys(i *market.Intent, seq int64, buf []ikey) []ikey {
	buf = append(buf,
		ikey{idx: ixIntentType, s1: i.Intent, seq: seq},
		ikey{idx: ixIntentState, s1: string(i.State), seq: seq},
		ikey{idx: ixIntentBuyer, s1: string(i.Buyer), seq: seq},
		ikey{idx: ixIntentCreated, s1: i.Intent, n: nanos(i.CreatedAt), seq: seq})
	if i.RequestID != "" {
		// The key is the hash the index holds, so that two request_ids
		// that hash alike are one entry, as they are in the index.
		buf = append(buf, ikey{idx: ixIntentRequest, n: int64(requestKey(string(i.Buyer), i.RequestID)), seq: seq})
	}
	if due, ok := intentDue(i); ok {
		buf = append(buf, ikey{idx: ixIntentDue, n: due, seq: seq})
	}
	return buf
}

func bidKeys(b *bidValue, seq int64, buf []ikey) []ikey {
	return append(buf,
		ikey{idx: ixBidIntent, s1: b.Intent, seq: seq},
		ikey{idx: ixBidCreated, s1: b.intentType, n: nanos(b.CreatedAt), seq: seq})
}

func messageKeys(m *market.Message, seq int64, buf []ikey) []ikey {
	return append(buf, ikey{idx: ixMessageBid, s1: m.Bid, seq: seq})
}

// contractParties lists the agents a contract concerns, once each: its
// buyer, its seller, and every arbiter assigned to it or that reviewed it.
func contractParties(c *market.Contract, buf []market.AgentID) []market.AgentID {
	add := func(a market.AgentID) {
		if !slices.Contains(buf, a) {
			buf = append(buf, a)
		}
	}
	add(c.Buyer)
	add(c.Seller)
	for _, a := range c.Arbiters {
		add(a)
	}
	for _, r := range c.Reviews {
		add(r.Arbiter)
	}
	return buf
}

func contractKeys(c *market.Contract, seq int64, buf []ikey) []ikey {
	buf = append(buf,
		ikey{idx: ixContractState, s1: string(c.State), seq: seq},
		ikey{idx: ixContractType, s1: c.Intent, seq: seq},
		ikey{idx: ixContractAwarded, s1: c.Intent, n: nanos(c.AwardedAt), seq: seq})
	if c.ParentContract != "" {
		buf = append(buf, ikey{idx: ixContractParent, s1: c.ParentContract, seq: seq})
	}
	var parties [8]market.AgentID
	for _, a := range contractParties(c, parties[:0]) {
		buf = append(buf, ikey{idx: ixContractParty, s1: string(a), seq: seq})
	}
	if due, ok := contractDue(c); ok {
		buf = append(buf, ikey{idx: ixContractDue, n: due, seq: seq})
	}
	if !c.State.Terminal() {
		buf = append(buf, ikey{idx: ixContractOpen, s1: string(c.Seller), s2: c.Intent, seq: seq})
	}
	if o := c.Outcome; o != nil {
		if o.PaidMicrocredits > 0 {
			buf = append(buf, ikey{idx: ixContractPaid, s1: string(c.Buyer), s2: string(c.Seller), seq: seq})
		}
		if c.State == market.ContractSettled && (o.Result == market.ResultPaid || o.Result == market.ResultPartial) {
			buf = append(buf, ikey{idx: ixContractFill, s1: c.Intent, n: nanos(o.SettledAt),
				a: c.PriceMicrocredits, b: o.PaidMicrocredits, seq: seq})
		}
	}
	return buf
}

func offerKeys(o *market.Offer, buf []ikey) []ikey {
	buf = append(buf, ikey{idx: ixOfferSeller, s1: string(o.Seller), id: o.ID})
	if o.State == market.OfferActive {
		buf = append(buf, ikey{idx: ixOfferActive, s1: o.Intent, id: o.ID})
	}
	return buf
}

func agentKeys(a *market.Agent, buf []ikey) []ikey {
	if a.HasRole(market.RoleArbiter) {
		buf = append(buf, ikey{idx: ixArbiter, id: string(a.ID)})
	}
	return buf
}

// requestKey is the key of a buyer's request_id in the request index: a
// hash, so that the index holds no strings. Whoever finds an intent by it
// checks the intent's buyer and request_id.
func requestKey(buyer, requestID string) uint64 {
	return idHash(buyer + "\x00" + requestID)
}

// intern returns the one copy of a name the state keeps. The caller is
// the writer.
func (s *state) intern(name string) string {
	if v, ok := s.names[name]; ok {
		return v
	}
	s.names[name] = name
	return name
}

// suspects is a series with suspects, as the state lists them.
type suspects interface{ clearSuspects(oldest uint64) bool }

// countSeries returns the count an index key is a fact of, creating it if
// create is set; nil if the key is not a count's.
func (s *state) countSeries(k *ikey, create bool) *series[countKey] {
	var m map[string]*series[countKey]
	switch k.idx {
	case ixIntentCreated:
		m = s.intentsCreated
	case ixBidCreated:
		m = s.bidsCreated
	case ixContractAwarded:
		m = s.contractsAwarded
	default:
		return nil
	}
	sr := m[k.s1]
	if sr == nil && create {
		sr = &series[countKey]{}
		m[k.s1] = sr
	}
	return sr
}

// fillSeries returns the fills an index key is a fact of, creating it if
// create is set; nil if the key is not a fill.
func (s *state) fillSeries(k *ikey, create bool) *series[fillKey] {
	if k.idx != ixContractFill {
		return nil
	}
	sr := s.contractFills[k.s1]
	if sr == nil && create {
		sr = &series[fillKey]{}
		s.contractFills[k.s1] = sr
	}
	return sr
}

func countOf(k *ikey) countKey { return countKey{at: k.n, seq: k.seq} }
func fillOf(k *ikey) fillKey   { return fillKey{at: k.n, seq: k.seq, price: k.a, paid: k.b} }

// isStat reports whether an index key is a statistic's fact.
func isStat(k *ikey) bool {
	switch k.idx {
	case ixIntentCreated, ixBidCreated, ixContractAwarded, ixContractFill:
		return true
	}
	return false
}

// insert adds an index entry. Inserting one that is there does nothing.
// A statistic's fact is marked suspect at ver, the version that added it.
func (s *state) insert(k *ikey, ver uint64) {
	switch k.idx {
	case ixIntentType:
		s.intentByType.insert(k.s1, seqKey(k.seq))
	case ixIntentState:
		s.intentByState.insert(k.s1, seqKey(k.seq))
	case ixIntentBuyer:
		s.intentByBuyer.insert(k.s1, seqKey(k.seq))
	case ixIntentRequest:
		s.intentByRequest.insert(uint64(k.n), k.seq)
	case ixIntentDue:
		s.intentDue.insert(dueKey{k.n, k.seq})
	case ixBidIntent:
		s.bidByIntent.insert(k.s1, k.seq)
	case ixMessageBid:
		s.messageByBid.insert(k.s1, k.seq)
	case ixContractState:
		s.contractByState.insert(k.s1, seqKey(k.seq))
	case ixContractType:
		s.contractByType.insert(k.s1, seqKey(k.seq))
	case ixContractParent:
		s.contractByParen.insert(k.s1, seqKey(k.seq))
	case ixContractParty:
		s.contractByParty.insert(k.s1, seqKey(k.seq))
	case ixContractOpen:
		s.contractOpen.insert([2]string{k.s1, k.s2}, seqKey(k.seq))
	case ixContractPaid:
		s.contractPaid.insert(s.intern(k.s1), sellerKey{s.intern(k.s2), k.seq})
	case ixContractDue:
		s.contractDue.insert(dueKey{k.n, k.seq})
	case ixOfferActive:
		s.offerActive.insert(k.s1, idKey(k.id))
	case ixOfferSeller:
		s.offerBySeller.insert(k.s1, idKey(k.id))
	case ixArbiter:
		s.arbiters.insert(idKey(k.id))
	default:
		if sr := s.countSeries(k, true); sr != nil {
			sr.insert(countOf(k))
		} else if sr := s.fillSeries(k, true); sr != nil {
			sr.insert(fillOf(k))
		}
		s.suspect(k, ver)
	}
}

// suspect marks a statistic's fact as one that readers must check.
func (s *state) suspect(k *ikey, ver uint64) {
	if sr := s.countSeries(k, false); sr != nil {
		sr.markSuspect(countOf(k), ver)
		s.suspectSeries[sr] = true
	} else if sr := s.fillSeries(k, false); sr != nil {
		sr.markSuspect(fillOf(k), ver)
		s.suspectSeries[sr] = true
	}
}

// remove deletes an index entry.
func (s *state) remove(k *ikey) {
	if s.removed != nil {
		*s.removed = append(*s.removed, *k)
	}
	switch k.idx {
	case ixIntentType:
		s.intentByType.remove(k.s1, seqKey(k.seq))
	case ixIntentState:
		s.intentByState.remove(k.s1, seqKey(k.seq))
	case ixIntentBuyer:
		s.intentByBuyer.remove(k.s1, seqKey(k.seq))
	case ixIntentRequest:
		s.intentByRequest.remove(uint64(k.n), k.seq)
	case ixIntentDue:
		s.intentDue.remove(dueKey{k.n, k.seq})
	case ixBidIntent:
		s.bidByIntent.remove(k.s1, k.seq)
	case ixMessageBid:
		s.messageByBid.remove(k.s1, k.seq)
	case ixContractState:
		s.contractByState.remove(k.s1, seqKey(k.seq))
	case ixContractType:
		s.contractByType.remove(k.s1, seqKey(k.seq))
	case ixContractParent:
		s.contractByParen.remove(k.s1, seqKey(k.seq))
	case ixContractParty:
		s.contractByParty.remove(k.s1, seqKey(k.seq))
	case ixContractOpen:
		s.contractOpen.remove([2]string{k.s1, k.s2}, seqKey(k.seq))
	case ixContractPaid:
		s.contractPaid.remove(k.s1, sellerKey{k.s2, k.seq})
	case ixContractDue:
		s.contractDue.remove(dueKey{k.n, k.seq})
	case ixOfferActive:
		s.offerActive.remove(k.s1, idKey(k.id))
	case ixOfferSeller:
		s.offerBySeller.remove(k.s1, idKey(k.id))
	case ixArbiter:
		s.arbiters.remove(idKey(k.id))
	default:
		if sr := s.countSeries(k, false); sr != nil {
			sr.remove(countOf(k))
		} else if sr := s.fillSeries(k, false); sr != nil {
			sr.remove(fillOf(k))
		}
	}
}

// keysFunc lists the index entries of a value.
type keysFunc[T any] func(v *T, seq int64, buf []ikey) []ikey

// reindex adds the entries of a new value that the value it replaces
// lacks. Entries the new value lacks stay for the readers that still see
// the old value, and go when it is dropped; a statistic marks them
// suspect, so that newer readers correct for them.
func reindex[T any](s *state, keys keysFunc[T], seq int64, old *version[T], nv *version[T]) {
	if keys == nil {
		return
	}
	var oldKeys []ikey
	if old != nil {
		oldKeys = keys(&old.val, seq, s.keyBufs[0][:0])
		s.keyBufs[0] = oldKeys
	}
	newKeys := keys(&nv.val, seq, s.keyBufs[1][:0])
	s.keyBufs[1] = newKeys
	for i := range newKeys {
		if !slices.Contains(oldKeys, newKeys[i]) {
			s.insert(&newKeys[i], nv.ver)
		}
	}
	for i := range oldKeys {
		if isStat(&oldKeys[i]) && !slices.Contains(newKeys, oldKeys[i]) {
			s.suspect(&oldKeys[i], nv.ver)
		}
	}
}

// drop removes the entries of the dropped values that no live value has.
// live is the newest value, which links to the others that readers may
// still see; dead links to the dropped ones.
func drop[T any](s *state, keys keysFunc[T], seq int64, live, dead *version[T]) {
	if keys == nil || dead == nil {
		return
	}
	liveKeys := s.keyBufs[0][:0]
	for v := live; v != nil; v = v.prev {
		liveKeys = keys(&v.val, seq, liveKeys)
	}
	s.keyBufs[0] = liveKeys
	for d := dead; d != nil; d = d.prev {
		deadKeys := keys(&d.val, seq, s.keyBufs[1][:0])
		s.keyBufs[1] = deadKeys
		for i := range deadKeys {
			if !slices.Contains(liveKeys, deadKeys[i]) {
				s.remove(&deadKeys[i])
			}
		}
	}
}

// trim cuts the values of head's chain that no reader at or above oldest
// can see, and returns the first of them.
func trim[T any](head *version[T], oldest uint64) (dead *version[T]) {
	v := head
	for v != nil && v.ver > oldest {
		v = v.prev
	}
	if v == nil || v.prev == nil {
		return nil
	}
	dead = v.prev
	v.prev = nil
	return dead
}

// kinds of object, for the writer's logs.
const (
	kAgent = iota + 1
	kGrant
	kOffer
	kIntent
	kBid
	kMessage
	kContract
	kScore
	kPair
	kArbiterRecord
	kIdempotency
	kNonce
)

// ref names one object: by sequence number, or by up to three key parts.
type ref struct {
	kind uint8
	seq  int64
	k    [3]string
}

func agentRef(id market.AgentID) ref { return ref{kind: kAgent, k: [3]string{string(id)}} }
func scoreRef(k scoreKey) ref        { return ref{kind: kScore, k: [3]string{string(k.agent), k.intent}} }
func pairRef(k pairKey) ref {
	return ref{kind: kPair, k: [3]string{string(k.buyer), string(k.seller), k.intent}}
}

func nonceRef(k nonceKey) ref    { return ref{kind: kNonce, k: [3]string{string(k.agent), k.nonce}} }
func (r ref) nonceKey() nonceKey { return nonceKey{market.AgentID(r.k[0]), r.k[1]} }
func (r ref) scoreKey() scoreKey { return scoreKey{market.AgentID(r.k[0]), r.k[1]} }
func (r ref) pairKey() pairKey {
	return pairKey{market.AgentID(r.k[0]), market.AgentID(r.k[1]), r.k[2]}
}

// collect drops the values of r's object that no reader at or above
// s.oldest can see, and the index entries only they had. The caller holds
// mu for writing.
func (s *state) collect(r ref) {
	o := s.oldest
	switch r.kind {
	case kAgent:
		h := s.agents[market.AgentID(r.k[0])]
		drop(s, agentKeysFunc, 0, h, trim(h, o))
	case kGrant:
		trim(s.grants[r.k[0]], o)
	case kOffer:
		h := s.offers[r.k[0]]
		drop(s, offerKeysFunc, 0, h, trim(h, o))
	case kIntent:
		h := s.intents.head(r.seq)
		drop(s, intentKeys, r.seq, h, trim(h, o))
	case kBid:
		h := s.bids.head(r.seq)
		drop(s, bidKeys, r.seq, h, trim(h, o))
	case kMessage:
		h := s.messages.head(r.seq)
		drop(s, messageKeys, r.seq, h, trim(h, o))
	case kContract:
		h := s.contracts.head(r.seq)
		drop(s, contractKeys, r.seq, h, trim(h, o))
	case kScore:
		trim(s.scores[r.scoreKey()], o)
	case kPair:
		trim(s.pairs[r.pairKey()], o)
	case kArbiterRecord:
		trim(s.arbRecs[market.AgentID(r.k[0])], o)
	case kIdempotency:
		trim(s.idem[r.k[0]], o)
	case kNonce:
		trim(s.nonces[r.nonceKey()], o)
	}
}

func agentKeysFunc(a *market.Agent, _ int64, buf []ikey) []ikey { return agentKeys(a, buf) }
func offerKeysFunc(o *market.Offer, _ int64, buf []ikey) []ikey { return offerKeys(o, buf) }

// clearSuspects forgets the statistics' suspects that every reader agrees
// on: those no version above oldest touched. The caller holds mu.
func (s *state) clearSuspects() {
	for sr := range s.suspectSeries {
		if !sr.clearSuspects(s.oldest) {
			delete(s.suspectSeries, sr)
		}
	}
}
