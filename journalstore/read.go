package journalstore

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// reader implements market.ReadTx at one version of the state: a View's
// snapshot, or, for the writer, the newest version (latest), its batch's
// writes included. A View's reads take the state's lock one call at a
// time; the writer's need none.
type reader struct {
	s        *state
	snap     uint64 // the version read; latest for the writer
	events   int64  // the newest event the reader sees
	receipts int64  // the newest receipt the reader sees
	locked   bool   // take s.mu for each read
	done     bool   // fn returned: the transaction may not be used
	err      error  // the first failure to read the archive in this call
}

// latest is the writer's snapshot: every version, pending ones included.
const latest = math.MaxUint64

var _ market.ReadTx = (*reader)(nil)

// errTxDone is returned by a transaction used after its fn returned.
var errTxDone = errors.New("journalstore: transaction used after its function returned")

const (
	defaultLimit = 100
	maxLimit     = 1000
)

// limit applies a page's default and cap.
func limit(n int) int {
	switch {
	case n <= 0:
		return defaultLimit
	case n > maxLimit:
		return maxLimit
	}
	return n
}

// notFound is the NotExist error for an object of a kind. Writes look up
// ids that are not there yet on their hot path (a new bid's, say), so it
// builds the error without fmt.
func notFound(kind string, id string) error {
	code := strings.ReplaceAll(kind, " ", "_") + "_not_found"
	return &market.Error{Kind: market.NotExist, Code: code, Message: kind + " " + strconv.Quote(id) + " does not exist"}
}

// notFound is the NotExist error for an object the reader did not find,
// or the error that kept it from reading the object.
func (r *reader) notFound(kind string, id string) error {
	if r.err != nil {
		return r.err
	}
	return notFound(kind, id)
}

func badCursor(kind, id string) error {
	return market.Errorf(market.Invalid, "bad_cursor", "page cursor %q is not a known %s", id, kind)
}

// begin starts a read: it fails on a finished transaction and otherwise
// takes the lock if the reader needs it. The caller defers end.
func (r *reader) begin() error {
	if r.done {
		return errTxDone
	}
	r.err = nil
	if r.locked {
		r.s.mu.RLock()
	}
	return nil
}

func (r *reader) end() {
	if r.locked {
		r.s.mu.RUnlock()
	}
}

// lastEvent and lastReceipt return the newest event and receipt the
// reader sees: its snapshot's, or for the writer the newest of all.
func (r *reader) lastEvent() int64 {
	if r.snap == latest {
		return r.s.events.last
	}
	return r.events
}

func (r *reader) lastReceipt() int64 {
	if r.snap == latest {
		return r.s.receipts.last
	}
	return r.receipts
}

// getKeyed reads an object of a keyed table as the reader sees it.
func getKeyed[K comparable, T any](r *reader, m map[K]*version[T], k K) (T, bool) {
	if v := m[k].at(r.snap); v != nil {
		return v.val, true
	}
	var zero T
	return zero, false
}

// getSeq reads an object of a sequenced table by id, with its sequence
// number, as the reader sees it.
func getSeq[T any](r *reader, t *seqTable[T], id string) (int64, *T) {
	seq, v, err := t.find(id, r.snap, r.s.archive)
	if err != nil && r.err == nil {
		r.err = err
	}
	return seq, v
}

// cursorSeq is the sequence number of the object a page continues after:
// 0 with no cursor, an error if the cursor names no object of the table.
func cursorSeq[T any](r *reader, t *seqTable[T], after, kind string) (int64, error) {
	if after == "" {
		return 0, nil
	}
	seq, v := getSeq(r, t, after)
	if v == nil {
		if r.err != nil {
			return 0, r.err
		}
		return 0, badCursor(kind, after)
	}
	return seq, nil
}

// atSeq reads an object of a sequenced table by sequence number. A failure
// to read the archive is kept in r.err, which the method returns.
func atSeq[T any](r *reader, t *seqTable[T], seq int64) *T {
	v, err := t.value(seq, r.snap, r.s.archive)
	if err != nil && r.err == nil {
		r.err = err
	}
	return v
}

func (r *reader) Agent(id market.AgentID) (market.Agent, error) {
	if err := r.begin(); err != nil {
		return market.Agent{}, err
	}
	defer r.end()
	a, ok := getKeyed(r, r.s.agents, id)
	if !ok {
		return a, notFound("agent", string(id))
	}
	return cloneAgent(a), r.err
}

func (r *reader) Arbiters(minBond int64) ([]market.Agent, error) {
	if err := r.begin(); err != nil {
		return nil, err
	}
	defer r.end()
	var out []market.Agent
	r.s.arbiters.ascendAll(func(id idKey) bool {
		a, ok := getKeyed(r, r.s.agents, market.AgentID(id))
		if ok && a.HasRole(market.RoleArbiter) && a.BondMicrocredits >= minBond {
			out = append(out, cloneAgent(a))
		}
		return true
	})
	return out, r.err
}

func (r *reader) OperatorGrants(operator string) (int64, error) {
	if err := r.begin(); err != nil {
		return 0, err
	}
	defer r.end()
	n, _ := getKeyed(r, r.s.grants, operator)
	return n, r.err
}

func (r *reader) Offer(id string) (market.Offer, error) {
	if err := r.begin(); err != nil {
		return market.Offer{}, err
	}
	defer r.end()
	o, ok := getKeyed(r, r.s.offers, id)
	if !ok {
		return o, notFound("offer", id)
	}
	return cloneOffer(o), r.err
}

// offers lists the offers of an id set that pass keep, by id.
func (r *reader) offers(set *sorted[idKey], keep func(*market.Offer) bool) []market.Offer {
	var out []market.Offer
	set.ascendAll(func(id idKey) bool {
		if o, ok := getKeyed(r, r.s.offers, string(id)); ok && keep(&o) {
			if out == nil {
				out = make([]market.Offer, 0, set.Len())
			}
			out = append(out, cloneOffer(o))
		}
		return true
	})
	return out
}

func (r *reader) ActiveOffers(intent string) ([]market.Offer, error) {
	if err := r.begin(); err != nil {
		return nil, err
	}
	defer r.end()
	return r.offers(r.s.offerActive[intent], func(o *market.Offer) bool {
		return o.Intent == intent && o.State == market.OfferActive
	}), nil
}

func (r *reader) OffersBySeller(seller market.AgentID) ([]market.Offer, error) {
	if err := r.begin(); err != nil {
		return nil, err
	}
	defer r.end()
	return r.offers(r.s.offerBySeller[string(seller)], func(o *market.Offer) bool { return o.Seller == seller }), r.err
}

func (r *reader) Intent(id string) (market.Intent, error) {
	if err := r.begin(); err != nil {
		return market.Intent{}, err
	}
	defer r.end()
	_, i := getSeq(r, &r.s.intents, id)
	if i == nil {
		return market.Intent{}, r.notFound("intent", id)
	}
	return cloneIntent(*i), r.err
}

func (r *reader) IntentByRequest(buyer market.AgentID, requestID string) (market.Intent, error) {
	if err := r.begin(); err != nil {
		return market.Intent{}, err
	}
	defer r.end()
	var found *market.Intent
	r.s.intentByRequest.each(requestKey(string(buyer), requestID), func(seq int64) bool {
		if i := atSeq(r, &r.s.intents, seq); i != nil && i.Buyer == buyer && i.RequestID == requestID {
			found = i
			return false
		}
		return true
	})
	if found == nil || requestID == "" {
		return market.Intent{}, market.Errorf(market.NotExist, "intent_not_found",
			"buyer %s has no intent with request_id %q", buyer, requestID)
	}
	return cloneIntent(*found), r.err
}

// smallest returns the smallest of the candidate sets a list query may
// walk, ignoring the filters it was not given (nil sets); ok is false when
// no filter was given.
func smallest(sets ...*sorted[seqKey]) (best *sorted[seqKey], ok bool) {
	for _, s := range sets {
		if s == nil {
			continue
		}
		if !ok || s.Len() < best.Len() {
			best, ok = s, true
		}
	}
	return best, ok
}

// newestFirst walks sequence numbers below before (0: from the newest),
// newest first: those in set, or, with no set, every one up to last.
func newestFirst(set *sorted[seqKey], useSet bool, last, before int64, fn func(seq int64) bool) {
	if useSet {
		if before == 0 {
			set.descendAll(func(k seqKey) bool { return fn(int64(k)) })
		} else {
			set.descendBelow(seqKey(before), func(k seqKey) bool { return fn(int64(k)) })
		}
		return
	}
	from := last
	if before > 0 {
		from = before - 1
	}
	for seq := from; seq > 0; seq-- {
		if !fn(seq) {
			return
		}
	}
}

// filterSet returns the set under key k of m when the filter value is
// set, and otherwise a nil set that smallest ignores. A filter value
// with no set at all matches nothing: it returns an empty set.
func filterSet[K comparable](m setMap[K, seqKey], k K, given bool) *sorted[seqKey] {
	if !given {
		return nil
	}
	if s := m[k]; s != nil {
		return s
	}
	return &sorted[seqKey]{}
}

func (r *reader) Intents(f market.IntentFilter) ([]market.Intent, error) {
	if err := r.begin(); err != nil {
		return nil, err
	}
	defer r.end()
	s := r.s
	before, err := cursorSeq(r, &s.intents, f.After, "intent")
	if err != nil {
		return nil, err
	}
	set, useSet := smallest(
		filterSet(s.intentByType, f.Intent, f.Intent != ""),
		filterSet(s.intentByState, string(f.State), f.State != ""),
		filterSet(s.intentByBuyer, string(f.Buyer), f.Buyer != ""))
	n := limit(f.Limit)
	var out []market.Intent
	newestFirst(set, useSet, s.intents.last, before, func(seq int64) bool {
		i := atSeq(r, &s.intents, seq)
		if i == nil || (f.Intent != "" && i.Intent != f.Intent) || (f.State != "" && i.State != f.State) ||
			(f.Buyer != "" && i.Buyer != f.Buyer) {
			return true
		}
		out = append(out, cloneIntent(*i))
		return len(out) < n
	})
	return out, r.err
}

// IntentsDue returns intents whose deadline is at or before now: bidding
// closes at the bid deadline, not after it.
func (r *reader) IntentsDue(now time.Time, n int) ([]market.Intent, error) {
	if err := r.begin(); err != nil {
		return nil, err
	}
	defer r.end()
	t, n := nanos(now), limit(n)
	var out []market.Intent
	r.s.intentDue.ascendAll(func(k dueKey) bool {
		if k.at > t {
			return false
		}
		if i := atSeq(r, &r.s.intents, k.seq); i != nil {
			if due, ok := intentDue(i); ok && due == k.at {
				out = append(out, cloneIntent(*i))
			}
		}
		return len(out) < n
	})
	return out, r.err
}

func (r *reader) Bid(id string) (market.Bid, error) {
	if err := r.begin(); err != nil {
		return market.Bid{}, err
	}
	defer r.end()
	_, b := getSeq(r, &r.s.bids, id)
	if b == nil {
		return market.Bid{}, r.notFound("bid", id)
	}
	return cloneBid(b.Bid), r.err
}

func (r *reader) Bids(intentID string) ([]market.Bid, error) {
	if err := r.begin(); err != nil {
		return nil, err
	}
	defer r.end()
	var out []market.Bid
	r.s.bidByIntent.each(intentID, func(seq int64) bool {
		if b := atSeq(r, &r.s.bids, seq); b != nil && b.Intent == intentID {
			if out == nil {
				out = make([]market.Bid, 0, r.s.bidByIntent.len(intentID))
			}
			out = append(out, cloneBid(b.Bid))
		}
		return true
	})
	return out, r.err
}

func (r *reader) Messages(bidID string) ([]market.Message, error) {
	if err := r.begin(); err != nil {
		return nil, err
	}
	defer r.end()
	var out []market.Message
	r.s.messageByBid.each(bidID, func(seq int64) bool {
		if m := atSeq(r, &r.s.messages, seq); m != nil && m.Bid == bidID {
			out = append(out, cloneMessage(*m))
		}
		return true
	})
	return out, r.err
}

func (r *reader) Contract(id string) (market.Contract, error) {
	if err := r.begin(); err != nil {
		return market.Contract{}, err
	}
	defer r.end()
	_, c := getSeq(r, &r.s.contracts, id)
	if c == nil {
		return market.Contract{}, r.notFound("contract", id)
	}
	return cloneContract(*c), r.err
}

// isParty reports whether the agent is a party to the contract.
func isParty(c *market.Contract, a market.AgentID) bool {
	if c.Buyer == a || c.Seller == a || slices.Contains(c.Arbiters, a) {
		return true
	}
	for i := range c.Reviews {
		if c.Reviews[i].Arbiter == a {
			return true
		}
	}
	return false
}

func (r *reader) Contracts(f market.ContractFilter) ([]market.Contract, error) {
	if err := r.begin(); err != nil {
		return nil, err
	}
	defer r.end()
	s := r.s
	before, err := cursorSeq(r, &s.contracts, f.After, "contract")
	if err != nil {
		return nil, err
	}
	set, useSet := smallest(
		filterSet(s.contractByParty, string(f.Agent), f.Agent != ""),
		filterSet(s.contractByState, string(f.State), f.State != ""),
		filterSet(s.contractByType, f.Intent, f.Intent != ""),
		filterSet(s.contractByParen, f.Parent, f.Parent != ""))
	n := limit(f.Limit)
	var out []market.Contract
	newestFirst(set, useSet, s.contracts.last, before, func(seq int64) bool {
		c := atSeq(r, &s.contracts, seq)
		if c == nil || (f.State != "" && c.State != f.State) || (f.Intent != "" && c.Intent != f.Intent) ||
			(f.Parent != "" && c.ParentContract != f.Parent) || (f.Agent != "" && !isParty(c, f.Agent)) {
			return true
		}
		out = append(out, cloneContract(*c))
		return len(out) < n
	})
	return out, r.err
}

// ContractsDue returns contracts whose deadline is before now: a
// delivery or a review at the deadline itself is still on time.
func (r *reader) ContractsDue(now time.Time, n int) ([]market.Contract, error) {
	if err := r.begin(); err != nil {
		return nil, err
	}
	defer r.end()
	t, n := nanos(now), limit(n)
	var out []market.Contract
	r.s.contractDue.ascendAll(func(k dueKey) bool {
		if k.at >= t {
			return false
		}
		if c := atSeq(r, &r.s.contracts, k.seq); c != nil {
			if due, ok := contractDue(c); ok && due == k.at {
				out = append(out, cloneContract(*c))
			}
		}
		return len(out) < n
	})
	return out, r.err
}

func (r *reader) OpenContracts(seller market.AgentID, intent string) (int, error) {
	if err := r.begin(); err != nil {
		return 0, err
	}
	defer r.end()
	n := 0
	r.s.contractOpen[[2]string{string(seller), intent}].ascendAll(func(seq seqKey) bool {
		if c := atSeq(r, &r.s.contracts, int64(seq)); c != nil && c.Seller == seller && c.Intent == intent && !c.State.Terminal() {
			n++
		}
		return true
	})
	return n, r.err
}

// lockReceipts read-locks the state for the writer's reader, which reads
// receipts whose signatures the syncer may be setting (see
// PutReceiptSigning), and returns the unlock. A View's reader holds the
// lock already, and reads only signed receipts.
func (r *reader) lockReceipts() func() {
	if r.locked {
		return func() {}
	}
	r.s.mu.RLock()
	return r.s.mu.RUnlock
}

func (r *reader) Receipt(seq uint64) (market.Receipt, error) {
	if err := r.begin(); err != nil {
		return market.Receipt{}, err
	}
	defer r.end()
	defer r.lockReceipts()()
	if seq == 0 || seq > uint64(r.lastReceipt()) {
		return market.Receipt{}, notFound("receipt", strconv.FormatUint(seq, 10))
	}
	rc := atSeq(r, &r.s.receipts, int64(seq))
	if rc == nil {
		return market.Receipt{}, r.notFound("receipt", strconv.FormatUint(seq, 10))
	}
	return cloneReceipt(*rc), nil
}

func (r *reader) LastReceipt() (market.Receipt, error) {
	if err := r.begin(); err != nil {
		return market.Receipt{}, err
	}
	defer r.end()
	defer r.lockReceipts()()
	last := r.lastReceipt()
	if last == 0 {
		return market.Receipt{}, market.Errorf(market.NotExist, "receipt_not_found", "there are no receipts yet")
	}
	rc := atSeq(r, &r.s.receipts, last)
	if rc == nil {
		return market.Receipt{}, r.notFound("receipt", strconv.FormatInt(last, 10))
	}
	return cloneReceipt(*rc), nil
}

// Score returns a zero record naming the agent and intent when there is
// none, ready to be added to and stored.
func (r *reader) Score(agent market.AgentID, intent string) (market.ScoreRecord, error) {
	if err := r.begin(); err != nil {
		return market.ScoreRecord{}, err
	}
	defer r.end()
	sc, ok := getKeyed(r, r.s.scores, scoreKey{agent, intent})
	if !ok {
		return market.ScoreRecord{Agent: agent, Intent: intent}, r.err
	}
	return sc, r.err
}

// Pair returns a zero record naming the pair and intent when they never
// traded.
func (r *reader) Pair(buyer, seller market.AgentID, intent string) (market.PairRecord, error) {
	if err := r.begin(); err != nil {
		return market.PairRecord{}, err
	}
	defer r.end()
	p, ok := getKeyed(r, r.s.pairs, pairKey{buyer, seller, intent})
	if !ok {
		return market.PairRecord{Buyer: buyer, Seller: seller, Intent: intent}, r.err
	}
	return p, r.err
}

// PairsBetween returns the pair's records ordered by intent type.
func (r *reader) PairsBetween(buyer, seller market.AgentID) ([]market.PairRecord, error) {
	if err := r.begin(); err != nil {
		return nil, err
	}
	defer r.end()
	var out []market.PairRecord
	r.s.pairsBetween[[2]string{string(buyer), string(seller)}].ascendAll(func(intent idKey) bool {
		if p, ok := getKeyed(r, r.s.pairs, pairKey{buyer, seller, string(intent)}); ok {
			out = append(out, p)
		}
		return true
	})
	return out, r.err
}

// PaidBy returns, ordered by id, the sellers of the buyer's contracts
// whose outcome paid them something.
func (r *reader) PaidBy(buyer market.AgentID) ([]market.AgentID, error) {
	if err := r.begin(); err != nil {
		return nil, err
	}
	defer r.end()
	var out []market.AgentID
	r.s.contractPaid[string(buyer)].ascendAll(func(k sellerKey) bool {
		seller := market.AgentID(k.seller)
		if len(out) > 0 && out[len(out)-1] == seller {
			return true // this seller is listed already
		}
		// An archived contract's index entries are exactly its own: no
		// need to read it back to check this one.
		if r.s.contracts.head(k.seq) == nil && r.s.contracts.get(k.seq).cold != 0 {
			out = append(out, seller)
			return true
		}
		c := atSeq(r, &r.s.contracts, k.seq)
		if c != nil && c.Buyer == buyer && c.Seller == seller && c.Outcome != nil && c.Outcome.PaidMicrocredits > 0 {
			out = append(out, seller)
		}
		return true
	})
	return out, r.err
}

// ArbiterRecord returns a zero record naming the arbiter when there is
// none.
func (r *reader) ArbiterRecord(arbiter market.AgentID) (market.ArbiterRecord, error) {
	if err := r.begin(); err != nil {
		return market.ArbiterRecord{}, err
	}
	defer r.end()
	a, ok := getKeyed(r, r.s.arbRecs, arbiter)
	if !ok {
		return market.ArbiterRecord{Arbiter: arbiter}, r.err
	}
	return a, r.err
}

// StatsSince counts, for one intent type, what happened at or after
// since, with the sqlite adapter's definitions: intents created, bids
// created, contracts awarded, and fills, which are contracts settled
// with result paid or partial whose outcome is dated in the window. The
// price index is the mean agreed price of the fills, rounded down; the
// volume is what the fills paid. ActiveSellers is the number of distinct
// sellers with an active offer for the type now. Window is left zero.
//
// Each count sums a statistic's facts since the time, then corrects for
// the suspect facts that this reader's snapshot does not see as the sum
// does; see series.
func (r *reader) StatsSince(intent string, since time.Time) (market.IntentStats, error) {
	if err := r.begin(); err != nil {
		return market.IntentStats{}, err
	}
	defer r.end()
	s := r.s
	t := nanos(since)
	st := market.IntentStats{Intent: intent}
	count := func(k countKey) ikey { return ikey{n: k.at, seq: k.seq} }
	st.Intents = int(stat(r, s.intentsCreated[intent], ixIntentCreated, intent, t, count).n)
	st.Bids = int(stat(r, s.bidsCreated[intent], ixBidCreated, intent, t, count).n)
	st.Awards = int(stat(r, s.contractsAwarded[intent], ixContractAwarded, intent, t, count).n)
	fills := stat(r, s.contractFills[intent], ixContractFill, intent, t, func(k fillKey) ikey {
		return ikey{n: k.at, seq: k.seq, a: k.price, b: k.paid}
	})
	st.Fills, st.VolumeMicrocredits = int(fills.n), fills.b
	if fills.n > 0 {
		st.PriceIndexMicrocredits = fills.a / fills.n
	}
	var sellers []market.AgentID
	for _, o := range r.offers(s.offerActive[intent], func(o *market.Offer) bool {
		return o.Intent == intent && o.State == market.OfferActive
	}) {
		if !slices.Contains(sellers, o.Seller) {
			sellers = append(sellers, o.Seller)
		}
	}
	st.ActiveSellers = len(sellers)
	return st, r.err
}

// stat sums a statistic's facts at or after t as the reader sees them.
// key gives a fact's index key, less its index and intent type.
func stat[K fact[K]](r *reader, sr *series[K], idx uint8, intent string, t int64, key func(K) ikey) total {
	if sr == nil {
		return total{}
	}
	sum := sr.since(t)
	for k := range sr.suspect {
		if k.when() >= t {
			ik := key(k)
			ik.idx, ik.s1 = idx, intent
			if !r.sees(ik) {
				addFact(&sum, k, -1)
			}
		}
	}
	return sum
}

// sees reports whether the object of a statistic's fact, as the reader
// sees it, has the fact.
func (r *reader) sees(k ikey) bool {
	var buf [16]ikey
	var keys []ikey
	switch k.idx {
	case ixIntentCreated:
		if i := atSeq(r, &r.s.intents, k.seq); i != nil {
			keys = intentKeys(i, k.seq, buf[:0])
		}
	case ixBidCreated:
		if b := atSeq(r, &r.s.bids, k.seq); b != nil {
			keys = bidKeys(b, k.seq, buf[:0])
		}
	case ixContractAwarded, ixContractFill:
		if c := atSeq(r, &r.s.contracts, k.seq); c != nil {
			keys = contractKeys(c, k.seq, buf[:0])
		}
	}
	return slices.Contains(keys, k)
}

// Events walks the smallest list that holds every match: the public
// events merged with the agent's, the intent type's, or all of them.
func (r *reader) Events(f market.EventFilter) ([]market.Event, error) {
	if err := r.begin(); err != nil {
		return nil, err
	}
	defer r.end()
	s := r.s
	n, last := limit(f.Limit), r.lastEvent()
	var out []market.Event
	keep := func(seq int64) bool {
		if seq > last {
			return false
		}
		e := atSeq(r, &s.events, seq)
		if e == nil {
			return false
		}
		if (len(f.Types) == 0 || slices.Contains(f.Types, e.Type)) && (f.Intent == "" || e.Intent == f.Intent) {
			out = append(out, cloneEvent(*e))
		}
		return len(out) < n
	}
	switch {
	case f.Agent != "":
		pub := s.eventsPublic.cursor(f.After)
		var own *seqCursor
		if l := s.eventsByAgent[f.Agent]; l != nil {
			own = l.cursor(f.After)
		}
		for {
			p, okP := pub.peek()
			o, okO := own.peek()
			var seq int64
			switch {
			case okP && (!okO || p < o):
				seq = p
				pub.next()
			case okO:
				seq = o
				own.next()
			default:
				return out, r.err
			}
			if !keep(seq) {
				break
			}
		}
	case f.Intent != "":
		if l := s.eventsByIntent[f.Intent]; l != nil {
			for c := l.cursor(f.After); ; c.next() {
				seq, ok := c.peek()
				if !ok || !keep(seq) {
					break
				}
			}
		}
	default:
		for seq := max(f.After, 0) + 1; seq <= last; seq++ {
			if !keep(seq) {
				break
			}
		}
	}
	return out, r.err
}

func (r *reader) Idempotency(key string) (market.IdempotencyRecord, error) {
	if err := r.begin(); err != nil {
		return market.IdempotencyRecord{}, err
	}
	defer r.end()
	if rec, ok := getKeyed(r, r.s.idem, key); ok {
		return cloneIdempotency(rec), nil
	}
	if off, ok := r.s.idemCold[key]; ok {
		rec, err := readArchived(r.s.archive, off-1, (*dec).idempotency)
		if err != nil {
			return market.IdempotencyRecord{}, err
		}
		return *rec, nil
	}
	return market.IdempotencyRecord{}, notFound("idempotency key", key)
}
