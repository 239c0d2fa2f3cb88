package journalstore

import (
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// writer is the writer goroutine's side of the state: the version it is
// writing, what the fn running now has written (to undo it if the fn
// fails), what the batch has written (to journal it), and the old values
// waiting to be collected. Replay uses it too, so that recovery goes
// through the same code as the writes it recovers.
type writer struct {
	s   *state
	now func() time.Time
	ver uint64 // the version being written

	undo    []ref        // the running fn's writes, oldest first
	dirty   []ref        // the batch's writes
	seen    map[ref]bool // changes' scratch space
	gc      fifo[gcItem]
	evictQ  fifo[evictItem] // written objects that may go cold, oldest first
	keepAll bool            // nothing goes cold: evictQ stays empty
	buf     []byte          // for encoding evicted values

	// signs are the batch's receipts that the syncer signs; see
	// PutReceiptSigning.
	signs []receiptSign

	// Marks at the start of the running fn, to undo its appends.
	fnEvents, fnReceipts   int64
	fnDirty, fnGC, fnSigns int // into dirty, gc and signs

	// The batch's appends start after these.
	batchEvents, batchReceipts int64
}

// receiptSign is a receipt waiting for its signature, and what makes it.
type receiptSign struct {
	v    *version[market.Receipt]
	sign func() string
}

// gcItem names an object that version ver gave a new value, whose old
// values can be collected once no reader at or below ver remains.
type gcItem struct {
	ver uint64
	r   ref
}

// mayEvict queues an object that version ver wrote, to go cold later.
func (w *writer) mayEvict(ver uint64, r ref) {
	if !w.keepAll && evictable(r.kind) {
		w.evictQ.push(evictItem{ver, r})
	}
}

// wrote logs a new value of r's object; replaced says it had one.
func (w *writer) wrote(r ref, replaced bool) {
	w.undo = append(w.undo, r)
	w.dirty = append(w.dirty, r)
	if replaced {
		w.gc.push(gcItem{w.ver, r})
	}
}

// startFn marks where a fn's writes begin.
func (w *writer) startFn() {
	w.undo = w.undo[:0]
	w.fnEvents, w.fnReceipts = w.s.events.last, w.s.receipts.last
	w.fnDirty, w.fnGC, w.fnSigns = len(w.dirty), w.gc.len(), len(w.signs)
}

// rollback undoes the running fn's writes, newest first, as if it never
// ran.
func (w *writer) rollback() {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(w.undo) - 1; i >= 0; i-- {
		w.pop(w.undo[i])
	}
	w.undo = w.undo[:0]
	for seq := s.events.last; seq > w.fnEvents; seq-- {
		s.unindexEvent(&s.events.head(seq).val)
		s.events.set(seq, slot[market.Event]{})
	}
	s.events.last = w.fnEvents
	for seq := s.receipts.last; seq > w.fnReceipts; seq-- {
		s.receipts.set(seq, slot[market.Receipt]{})
	}
	s.receipts.last = w.fnReceipts
	w.dirty = w.dirty[:w.fnDirty]
	w.gc.truncate(w.fnGC)
	clear(w.signs[w.fnSigns:])
	w.signs = w.signs[:w.fnSigns]
}

// pop removes the newest value of r's object, which the running fn wrote,
// and the index entries that only it had. The caller holds mu.
func (w *writer) pop(r ref) {
	s := w.s
	switch r.kind {
	case kAgent:
		popKeyed(s, s.agents, market.AgentID(r.k[0]), agentKeysFunc)
	case kGrant:
		popKeyed(s, s.grants, r.k[0], nil)
	case kOffer:
		popKeyed(s, s.offers, r.k[0], offerKeysFunc)
	case kIntent:
		popSeq(s, &s.intents, r.seq, intentKeys)
	case kBid:
		popSeq(s, &s.bids, r.seq, bidKeys)
	case kMessage:
		popSeq(s, &s.messages, r.seq, messageKeys)
	case kContract:
		popSeq(s, &s.contracts, r.seq, contractKeys)
	case kScore:
		popKeyed(s, s.scores, r.scoreKey(), nil)
	case kPair:
		k := r.pairKey()
		if popKeyed(s, s.pairs, k, nil) {
			s.pairsBetween.remove([2]string{string(k.buyer), string(k.seller)}, idKey(k.intent))
		}
	case kArbiterRecord:
		popKeyed(s, s.arbRecs, market.AgentID(r.k[0]), nil)
	case kIdempotency:
		popKeyed(s, s.idem, r.k[0], nil)
	case kNonce:
		k := r.nonceKey()
		h := s.nonces[k]
		if h == nil {
			return // forgotten as expired since
		}
		s.nonceExpiry.remove(nonceExp{h.val, k})
		if !popKeyed(s, s.nonces, k, nil) {
			s.nonceExpiry.insert(nonceExp{s.nonces[k].val, k})
		}
	}
}

// popKeyed removes the newest value under k; it reports whether that
// leaves no value at all.
func popKeyed[K comparable, T any](s *state, m map[K]*version[T], k K, keys keysFunc[T]) (gone bool) {
	h := m[k]
	prev := h.prev
	if prev == nil {
		delete(m, k)
	} else {
		m[k] = prev
	}
	h.prev = nil
	drop(s, keys, 0, prev, h)
	return prev == nil
}

func popSeq[T any](s *state, t *seqTable[T], seq int64, keys keysFunc[T]) {
	sl := t.get(seq)
	h := sl.v
	prev := h.prev
	sl.v = prev
	if prev != nil && prev.ver == 0 && sl.cold != 0 {
		sl.v = nil // back to the archived value it was read from
	}
	t.set(seq, sl)
	if prev == nil {
		t.ids.drop(t.idOf(&h.val), seq)
		if seq == t.last {
			t.last--
		}
	}
	h.prev = nil
	drop(s, keys, seq, prev, h)
}

// putKeyed stores a new value under k at the writer's version and indexes
// it; it reports whether it replaced one. The caller holds mu.
func putKeyed[K comparable, T any](w *writer, m map[K]*version[T], k K, val T, keys keysFunc[T]) bool {
	old := m[k]
	nv := &version[T]{ver: w.ver, prev: old, val: val}
	m[k] = nv
	reindex(w.s, keys, 0, old, nv)
	return old != nil
}

// putSeq stores a new value of the object with sequence number seq (0: a
// new object, which takes the next number) at the writer's version and
// indexes it. It returns the sequence number and whether it replaced a
// value. The caller holds mu.
func putSeq[T any](w *writer, t *seqTable[T], id string, seq int64, val T, keys keysFunc[T]) (int64, bool, error) {
	if seq == 0 {
		found, _, err := t.find(id, latest, w.s.archive)
		if err != nil {
			return 0, false, err
		}
		if seq = found; seq == 0 {
			seq = t.last + 1
		}
	}
	sl := t.get(seq)
	old := sl.v
	if old == nil && sl.cold != 0 {
		// An archived object changes: its value comes back, for readers
		// that see it until the new one is durable.
		v, err := readArchived(w.s.archive, sl.cold-1, t.decode)
		if err != nil {
			return 0, false, err
		}
		old = hydrated(v)
	}
	nv := &version[T]{ver: w.ver, prev: old, val: val}
	if old == nil {
		t.ids.add(id, seq)
		t.last = max(t.last, seq)
	}
	sl.v = nv
	t.set(seq, sl)
	reindex(w.s, keys, seq, old, nv)
	return seq, old != nil, nil
}

// The state changes that the Tx methods and replay share. Each takes mu.

func (w *writer) putAgent(a market.Agent) {
	w.s.mu.Lock()
	replaced := putKeyed(w, w.s.agents, a.ID, a, agentKeysFunc)
	w.s.mu.Unlock()
	w.wrote(agentRef(a.ID), replaced)
}

func (w *writer) setGrant(operator string, total int64) {
	w.s.mu.Lock()
	replaced := putKeyed(w, w.s.grants, operator, total, nil)
	w.s.mu.Unlock()
	w.wrote(ref{kind: kGrant, k: [3]string{operator}}, replaced)
}

func (w *writer) putOffer(o market.Offer) {
	w.s.mu.Lock()
	replaced := putKeyed(w, w.s.offers, o.ID, o, offerKeysFunc)
	w.s.mu.Unlock()
	w.wrote(ref{kind: kOffer, k: [3]string{o.ID}}, replaced)
}

func (w *writer) putIntent(seq int64, i market.Intent) error {
	w.s.mu.Lock()
	seq, replaced, err := putSeq(w, &w.s.intents, i.ID, seq, i, intentKeys)
	w.s.mu.Unlock()
	if err != nil {
		return err
	}
	w.wrote(ref{kind: kIntent, seq: seq}, replaced)
	return nil
}

func (w *writer) putBid(seq int64, b bidValue) error {
	w.s.mu.Lock()
	seq, replaced, err := putSeq(w, &w.s.bids, b.ID, seq, b, bidKeys)
	w.s.mu.Unlock()
	if err != nil {
		return err
	}
	w.wrote(ref{kind: kBid, seq: seq}, replaced)
	return nil
}

func (w *writer) putMessage(seq int64, m market.Message) error {
	w.s.mu.Lock()
	seq, replaced, err := putSeq(w, &w.s.messages, m.ID, seq, m, messageKeys)
	w.s.mu.Unlock()
	if err != nil {
		return err
	}
	w.wrote(ref{kind: kMessage, seq: seq}, replaced)
	return nil
}

func (w *writer) putContract(seq int64, c market.Contract) error {
	w.s.mu.Lock()
	seq, replaced, err := putSeq(w, &w.s.contracts, c.ID, seq, c, contractKeys)
	w.s.mu.Unlock()
	if err != nil {
		return err
	}
	w.wrote(ref{kind: kContract, seq: seq}, replaced)
	return nil
}

func (w *writer) putScore(sc market.ScoreRecord) {
	k := scoreKey{sc.Agent, sc.Intent}
	w.s.mu.Lock()
	replaced := putKeyed(w, w.s.scores, k, sc, nil)
	w.s.mu.Unlock()
	w.wrote(scoreRef(k), replaced)
}

func (w *writer) putPair(p market.PairRecord) {
	k := pairKey{p.Buyer, p.Seller, p.Intent}
	w.s.mu.Lock()
	replaced := putKeyed(w, w.s.pairs, k, p, nil)
	if !replaced {
		w.s.pairsBetween.insert([2]string{string(p.Buyer), string(p.Seller)}, idKey(p.Intent))
	}
	w.s.mu.Unlock()
	w.wrote(pairRef(k), replaced)
}

func (w *writer) putArbiterRecord(a market.ArbiterRecord) {
	w.s.mu.Lock()
	replaced := putKeyed(w, w.s.arbRecs, a.Arbiter, a, nil)
	w.s.mu.Unlock()
	w.wrote(ref{kind: kArbiterRecord, k: [3]string{string(a.Arbiter)}}, replaced)
}

func (w *writer) putIdempotency(rec market.IdempotencyRecord) {
	w.s.mu.Lock()
	replaced := putKeyed(w, w.s.idem, rec.Key, rec, nil)
	w.s.mu.Unlock()
	w.wrote(ref{kind: kIdempotency, k: [3]string{rec.Key}}, replaced)
}

// appendReceipt stores the next receipt. The caller checked its Seq.
// Receipts and events never change, so their one version is version 0,
// which every reader sees; a reader's snapshot says how many it sees.
func (w *writer) appendReceipt(r market.Receipt) *version[market.Receipt] {
	s := w.s
	v := &version[market.Receipt]{val: r}
	s.mu.Lock()
	s.receipts.last++
	s.receipts.set(s.receipts.last, slot[market.Receipt]{v: v})
	s.mu.Unlock()
	return v
}

// appendEvent stores an event whose Seq is the next number.
func (w *writer) appendEvent(e market.Event) {
	s := w.s
	s.mu.Lock()
	v := &version[market.Event]{val: e}
	s.events.last = e.Seq
	s.events.set(e.Seq, slot[market.Event]{v: v})
	s.indexEvent(&v.val)
	s.mu.Unlock()
}

// indexEvent adds an event to the lists it belongs in: its intent
// type's, and the public list or the list of each agent of its audience.
func (s *state) indexEvent(e *market.Event) {
	if e.Intent != "" {
		l := s.eventsByIntent[e.Intent]
		if l == nil {
			l = &seqList{}
			s.eventsByIntent[s.intern(e.Intent)] = l
		}
		l.push(e.Seq)
	}
	if len(e.Audience) == 0 {
		s.eventsPublic.push(e.Seq)
		return
	}
	for _, a := range e.Audience {
		l := s.eventsByAgent[a]
		if l == nil {
			l = &seqList{}
			s.eventsByAgent[market.AgentID(s.intern(string(a)))] = l
		}
		if l.last() != e.Seq {
			l.push(e.Seq)
		}
	}
}

// unindexEvent removes the newest event from its lists.
func (s *state) unindexEvent(e *market.Event) {
	if e.Intent != "" {
		if l := s.eventsByIntent[e.Intent]; l != nil && l.last() == e.Seq {
			if l.pop(); l.empty() {
				delete(s.eventsByIntent, e.Intent)
			}
		}
	}
	if len(e.Audience) == 0 {
		if s.eventsPublic.last() == e.Seq {
			s.eventsPublic.pop()
		}
		return
	}
	for _, a := range e.Audience {
		if l := s.eventsByAgent[a]; l != nil && l.last() == e.Seq {
			if l.pop(); l.empty() {
				delete(s.eventsByAgent, a)
			}
		}
	}
}

// useNonce records a nonce until expires (unix ns).
func (w *writer) useNonce(k nonceKey, expires int64) {
	s := w.s
	s.mu.Lock()
	if old := s.nonces[k]; old != nil {
		s.nonceExpiry.remove(nonceExp{old.val, k})
	}
	replaced := putKeyed(w, s.nonces, k, expires, nil)
	s.nonceExpiry.insert(nonceExp{expires, k})
	s.mu.Unlock()
	w.wrote(nonceRef(k), replaced)
}

// forgetNonces forgets the nonces that expired at or before now. It is
// not undone if the fn fails: expired nonces may be forgotten any time.
func (s *state) forgetNonces(now int64) {
	for {
		first, ok := s.nonceExpiry.first()
		if !ok || first.at > now {
			return
		}
		s.mu.Lock()
		s.nonceExpiry.remove(first)
		delete(s.nonces, first.k)
		s.mu.Unlock()
	}
}

// writeTx implements market.Tx for one fn of a batch. Its reads see the
// newest values, the batch's and its own writes included.
type writeTx struct {
	reader
	w *writer
}

var _ market.ReceiptSigningTx = (*writeTx)(nil)

func (t *writeTx) check() error {
	if t.done {
		return errTxDone
	}
	return nil
}

func (t *writeTx) PutAgent(a market.Agent) error {
	if err := t.check(); err != nil {
		return err
	}
	t.w.putAgent(cloneAgent(a))
	return nil
}

func (t *writeTx) AddOperatorGrant(operator string, microcredits int64) error {
	if err := t.check(); err != nil {
		return err
	}
	var total int64
	if v := t.s.grants[operator]; v != nil {
		total = v.val
	}
	t.w.setGrant(operator, total+microcredits)
	return nil
}

func (t *writeTx) PutOffer(o market.Offer) error {
	if err := t.check(); err != nil {
		return err
	}
	t.w.putOffer(cloneOffer(o))
	return nil
}

// PutIntent stores an intent. An empty request_id is exempt from
// uniqueness; a request_id the buyer already used on another intent is an
// Exist error, and then nothing is written.
func (t *writeTx) PutIntent(i market.Intent) error {
	if err := t.check(); err != nil {
		return err
	}
	s := t.s
	seq, _, err := s.intents.find(i.ID, latest, s.archive)
	if err != nil {
		return err
	}
	if i.RequestID != "" {
		taken := false
		s.intentByRequest.each(requestKey(string(i.Buyer), i.RequestID), func(k int64) bool {
			if k == seq {
				return true
			}
			other, rerr := s.intents.value(k, latest, s.archive)
			if rerr != nil {
				err = rerr
				return false
			}
			taken = other != nil && other.Buyer == i.Buyer && other.RequestID == i.RequestID
			return !taken
		})
		if err != nil {
			return err
		}
		if taken {
			return market.Errorf(market.Exist, "request_id_reused",
				"buyer %s already has an intent with request_id %q", i.Buyer, i.RequestID)
		}
	}
	return t.w.putIntent(seq, cloneIntent(i))
}

// PutBid stores a bid with its intent's type, read from the intent, for
// market statistics; a bid whose intent is not stored has type "".
func (t *writeTx) PutBid(b market.Bid) error {
	if err := t.check(); err != nil {
		return err
	}
	bv := bidValue{Bid: cloneBid(b)}
	_, in, err := t.s.intents.find(b.Intent, latest, t.s.archive)
	if err != nil {
		return err
	}
	if in != nil {
		bv.intentType = in.Intent
	}
	return t.w.putBid(0, bv)
}

func (t *writeTx) PutMessage(m market.Message) error {
	if err := t.check(); err != nil {
		return err
	}
	return t.w.putMessage(0, cloneMessage(m))
}

func (t *writeTx) PutContract(c market.Contract) error {
	if err := t.check(); err != nil {
		return err
	}
	return t.w.putContract(0, cloneContract(c))
}

// PutReceipt stores the next receipt: its Seq must be one more than the
// newest receipt's, or 1 for the first, else it is a Conflict error.
func (t *writeTx) PutReceipt(r market.Receipt) error {
	if err := t.checkReceipt(&r); err != nil {
		return err
	}
	t.w.appendReceipt(cloneReceipt(r))
	return nil
}

// PutReceiptSigning stores the next receipt as PutReceipt does, and has
// the syncer sign it: the syncer calls sign before it journals the batch,
// sets the receipt's Signature under mu, and only then makes the batch
// durable and visible. Until then the writer's later fns may read the
// receipt unsigned; the writer reads receipts under mu for that reason.
func (t *writeTx) PutReceiptSigning(r market.Receipt, sign func() string) error {
	if err := t.checkReceipt(&r); err != nil {
		return err
	}
	v := t.w.appendReceipt(cloneReceipt(r))
	t.w.signs = append(t.w.signs, receiptSign{v, sign})
	return nil
}

func (t *writeTx) checkReceipt(r *market.Receipt) error {
	if err := t.check(); err != nil {
		return err
	}
	last := t.s.receipts.last
	if r.Seq != uint64(last)+1 {
		return market.Errorf(market.Conflict, "receipt_out_of_sequence",
			"receipt %d cannot follow receipt %d: want %d", r.Seq, last, last+1)
	}
	return nil
}

func (t *writeTx) PutScore(sc market.ScoreRecord) error {
	if err := t.check(); err != nil {
		return err
	}
	t.w.putScore(cloneScore(sc))
	return nil
}

func (t *writeTx) PutPair(p market.PairRecord) error {
	if err := t.check(); err != nil {
		return err
	}
	t.w.putPair(clonePair(p))
	return nil
}

func (t *writeTx) PutArbiterRecord(a market.ArbiterRecord) error {
	if err := t.check(); err != nil {
		return err
	}
	t.w.putArbiterRecord(a)
	return nil
}

// AppendEvent stores e with the next sequence number. Its Seq field is
// ignored; At is kept as given.
func (t *writeTx) AppendEvent(e market.Event) (int64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	ev := cloneEvent(e)
	ev.Seq = t.s.events.last + 1
	t.w.appendEvent(ev)
	return ev.Seq, nil
}

func (t *writeTx) PutIdempotency(r market.IdempotencyRecord) error {
	if err := t.check(); err != nil {
		return err
	}
	t.w.putIdempotency(cloneIdempotency(r))
	return nil
}

// UseNonce records the nonce until expires, by the store's clock. It
// first forgets every nonce that has expired (expires at or before now),
// so a nonce may be used again once its record has expired.
func (t *writeTx) UseNonce(agent market.AgentID, nonce string, expires time.Time) error {
	if err := t.check(); err != nil {
		return err
	}
	t.s.forgetNonces(nanos(t.w.now()))
	k := nonceKey{agent, nonce}
	if _, used := t.s.nonces[k]; used {
		return market.Errorf(market.Exist, "nonce_reused", "agent %s has already used nonce %q", agent, nonce)
	}
	t.w.useNonce(k, nanos(expires))
	return nil
}

// panicError is what an Update returns when its fn panicked.
func panicError(p any) error {
	return market.Errorf(market.Internal, "update_panicked", "update panicked: %v", p)
}
