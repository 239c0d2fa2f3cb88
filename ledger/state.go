package ledger

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"math/bits"
	"sort"
)

// state is the ledger's live state machine. One goroutine owns it: the
// engine's applier while running, or Verify and recovery while replaying.
// It applies events to memory and appends the committed ones to the record
// being built; failed events leave nothing behind.
//
// The same code applies live requests and replays the journal. On replay
// an event must apply with result OK, or the journal is corrupt.
type state struct {
	accounts map[ID]int32
	accts    []Account
	mandate  []*mandateState // by account index; nil when unmandated
	pending  map[ID]pendingXfer
	expiry   expiryHeap
	idx      *index

	ts        int64  // last timestamp assigned
	now       int64  // the clock at the current request
	floor     int64  // last timestamp committed for good: no later event is stamped at or before it
	spendSeq  uint64 // last mandate spend sequence number issued
	committed uint64 // events committed, for statistics

	// The record being built: buf holds the header and body, and its first
	// byte lies at journal offset base. During replay buf is unused and
	// replayOff is the offset of the event being replayed.
	buf       []byte
	base      int64
	count     int
	replaying bool
	replayOff int64

	// readAt reads committed journal bytes that are not in buf.
	readAt  func(b []byte, off int64) error
	scratch [transferEventSize]byte

	undo []undoEntry
}

type pendingXfer struct {
	debit, credit int32
	amount        uint64
	expiresAt     int64 // 0: never
	spendSeq      uint64
}

func newState(capacity int) *state {
	return &state{
		accounts: make(map[ID]int32),
		pending:  make(map[ID]pendingXfer),
		idx:      newIndex(capacity),
	}
}

// eventAt returns the bytes of the event at journal offset off: n bytes at
// most, from the record being built or from the journal.
func (s *state) eventAt(off int64, n int) []byte {
	if !s.replaying && off >= s.base {
		return s.buf[off-s.base:][:n]
	}
	b := s.scratch[:n]
	if err := s.readAt(b, off); err != nil {
		// The index only points at events the journal holds; a read that
		// fails means the disk under a running ledger failed.
		panic(fmt.Sprintf("ledger: read journal at %d: %v", off, err))
	}
	return b
}

func (s *state) matchTransfer(id ID) func(int64) bool {
	return func(off int64) bool {
		b := s.eventAt(off, 24)
		return b[0] == evTransfer && getID(b[8:]) == id
	}
}

func (s *state) matchResolution(pid ID) func(int64) bool {
	return func(off int64) bool {
		b := s.eventAt(off, 72)
		switch b[0] {
		case evTransfer:
			return getID(b[56:]) == pid
		case evExpire:
			return getID(b[8:]) == pid
		}
		return false
	}
}

func (s *state) findTransfer(id ID) (int64, bool) {
	return s.idx.lookup(id, tagTransfer, s.matchTransfer(id))
}

func (s *state) transferAt(off int64) (Transfer, uint64) {
	return decodeTransfer(s.eventAt(off, transferEventSize))
}

// nextTS returns the timestamp the next event would get.
func (s *state) nextTS() int64 {
	if s.now > s.ts {
		return s.now
	}
	return s.ts + 1
}

// eventOffset returns the journal offset the next event will occupy.
func (s *state) eventOffset() int64 {
	if s.replaying {
		return s.replayOff
	}
	return s.base + int64(len(s.buf))
}

// Undo log, for linked chains that fail part way.

type undoKind uint8

const (
	undoCounters undoKind = iota
	undoPendingAdd
	undoPendingRemove
	undoIndex
	undoSpendPush
	undoSpendAdjust
	undoAccountAdd
)

type undoEntry struct {
	kind     undoKind
	acct     int32
	counters [4]uint64
	id       ID
	p        pendingXfer
	tag      uint64
	off      int64
	ms       *mandateState
	seq      uint64
	amount   uint64
}

type mark struct {
	undo, buf, count int
	ts               int64
	spendSeq         uint64
}

func (s *state) mark() mark {
	return mark{undo: len(s.undo), buf: len(s.buf), count: s.count, ts: s.ts, spendSeq: s.spendSeq}
}

func (s *state) saveCounters(i int32) {
	a := &s.accts[i]
	s.undo = append(s.undo, undoEntry{kind: undoCounters, acct: i,
		counters: [4]uint64{a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted}})
}

func (s *state) rollback(m mark) {
	for i := len(s.undo) - 1; i >= m.undo; i-- {
		u := &s.undo[i]
		switch u.kind {
		case undoCounters:
			a := &s.accts[u.acct]
			a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted =
				u.counters[0], u.counters[1], u.counters[2], u.counters[3]
		case undoPendingAdd:
			delete(s.pending, u.id)
		case undoPendingRemove:
			s.pending[u.id] = u.p
		case undoIndex:
			s.idx.remove(u.id, u.tag, u.off)
		case undoSpendPush:
			u.ms.popSpend(u.seq)
		case undoSpendAdjust:
			u.ms.adjust(u.seq, u.amount)
		}
	}
	s.undo = s.undo[:m.undo]
	s.buf = s.buf[:m.buf]
	s.count = m.count
	s.ts = m.ts
	s.spendSeq = m.spendSeq
}

func (s *state) indexInsert(id ID, tag uint64, off int64) {
	s.idx.insert(id, tag, off)
	s.undo = append(s.undo, undoEntry{kind: undoIndex, id: id, tag: tag, off: off})
}

// createAccounts applies a batch of new accounts. Accounts do not chain.
func (s *state) createAccounts(as []Account, res []Result) {
	for i := range as {
		res[i] = s.createAccount(&as[i])
	}
}

func (s *state) createAccount(a *Account) Result {
	switch {
	case a.ID.IsZero():
		return IDMustNotBeZero
	case a.Flags&^accountFlagsKnown != 0:
		return FlagsInvalid
	case a.DebitsPending|a.DebitsPosted|a.CreditsPending|a.CreditsPosted != 0:
		return AccountCountersMustBeZero
	}
	if i, ok := s.accounts[a.ID]; ok {
		e := &s.accts[i]
		if e.Flags == a.Flags && e.Code == a.Code && e.UserData == a.UserData {
			return Exists
		}
		return ExistsWithDifferentFields
	}
	ts := s.nextTS()
	if s.replaying {
		ts = a.Timestamp
	}
	s.ts = ts
	n := Account{ID: a.ID, UserData: a.UserData, Code: a.Code, Flags: a.Flags, Timestamp: ts}
	s.accounts[n.ID] = int32(len(s.accts))
	s.accts = append(s.accts, n)
	s.mandate = append(s.mandate, nil)
	if !s.replaying {
		s.buf = appendAccount(s.buf, &n)
	}
	s.count++
	s.committed++
	return OK
}

// createTransfers applies a batch of transfers with linked-chain semantics.
func (s *state) createTransfers(xs []Transfer, res []Result) {
	if len(xs) > 16 {
		s.idx.prefetch(xs)
	}
	for i := 0; i < len(xs); {
		j := i
		for j < len(xs) && xs[j].Flags&Linked != 0 {
			j++
		}
		if j == len(xs) {
			for k := i; k < len(xs)-1; k++ {
				res[k] = LinkedEventFailed
			}
			res[len(xs)-1] = LinkedEventChainOpen
			return
		}
		s.undo = s.undo[:0]
		// A chain that fails takes its timestamps back, so only the last
		// timestamp before it is certain to stay in the past.
		s.floor = s.ts
		if i == j {
			res[i] = s.transfer(&xs[i])
			i++
			continue
		}
		m := s.mark()
		failed := -1
		for k := i; k <= j; k++ {
			res[k] = s.transfer(&xs[k])
			if !res[k].Committed() {
				failed = k
				break
			}
		}
		if failed >= 0 {
			s.rollback(m)
			for k := i; k <= j; k++ {
				if k != failed {
					res[k] = LinkedEventFailed
				}
			}
		}
		i = j + 1
	}
}

// transfer checks and applies one transfer. It changes nothing unless it
// returns OK; what it changes it records in the undo log.
func (s *state) transfer(t *Transfer) Result {
	if t.ID.IsZero() {
		return IDMustNotBeZero
	}
	kind := t.Flags & (Pending | PostPending | VoidPending)
	if t.Flags&^transferFlagsKnown != 0 || bits.OnesCount16(uint16(kind)) > 1 {
		return FlagsInvalid
	}
	if t.Timeout < 0 {
		return TimeoutReservedForPending
	}
	if off, ok := s.findTransfer(t.ID); ok {
		return s.compareExisting(t, off)
	}
	if kind&(PostPending|VoidPending) != 0 {
		return s.resolve(t)
	}
	switch {
	case !t.PendingID.IsZero():
		return PendingIDMustBeZero
	case t.Timeout != 0 && kind != Pending:
		return TimeoutReservedForPending
	case t.DebitAccountID == t.CreditAccountID:
		if t.DebitAccountID.IsZero() {
			return AccountNotFound
		}
		return SameAccount
	case t.Amount == 0:
		return ZeroAmount
	}
	di, ok := s.accounts[t.DebitAccountID]
	if !ok {
		return AccountNotFound
	}
	ci, ok := s.accounts[t.CreditAccountID]
	if !ok {
		return AccountNotFound
	}
	da, ca := &s.accts[di], &s.accts[ci]
	amt := t.Amount
	if da.DebitsPending+da.DebitsPosted > maxCounter-amt || amt > maxCounter ||
		ca.CreditsPending+ca.CreditsPosted > maxCounter-amt {
		return Overflow
	}
	if da.Flags&DebitsMustNotExceedCredits != 0 && da.DebitsPending+da.DebitsPosted+amt > da.CreditsPosted {
		return InsufficientFunds
	}
	ts := s.nextTS()
	if s.replaying {
		ts = t.Timestamp
	}
	if kind == Pending && t.Timeout > 0 && ts > maxCounter-int64(t.Timeout) {
		// The expiry time would wrap to the past and expire the
		// reservation at once.
		return Overflow
	}
	var spend uint64
	if ms := s.mandate[di]; ms != nil {
		if !ms.allows(ts, s.floor, amt, ca.ID) {
			return MandateViolated
		}
		if ms.Budget > 0 {
			s.spendSeq++
			spend = s.spendSeq
			ms.pushSpend(spend, ts, amt)
			s.undo = append(s.undo, undoEntry{kind: undoSpendPush, ms: ms, seq: spend})
		}
	}
	s.saveCounters(di)
	s.saveCounters(ci)
	if kind == Pending {
		da.DebitsPending += amt
		ca.CreditsPending += amt
		p := pendingXfer{debit: di, credit: ci, amount: amt, spendSeq: spend}
		if t.Timeout > 0 {
			p.expiresAt = ts + int64(t.Timeout)
			heap.Push(&s.expiry, expiryEntry{at: p.expiresAt, id: t.ID})
		}
		s.pending[t.ID] = p
		s.undo = append(s.undo, undoEntry{kind: undoPendingAdd, id: t.ID})
	} else {
		da.DebitsPosted += amt
		ca.CreditsPosted += amt
	}
	s.ts = ts
	off := s.eventOffset()
	stored := *t
	stored.Timestamp = ts
	if !s.replaying {
		s.buf = appendTransfer(s.buf, &stored, t.Amount, 0)
	}
	s.indexInsert(t.ID, tagTransfer, off)
	s.count++
	s.committed++
	return OK
}

// resolve posts or voids a pending transfer.
func (s *state) resolve(t *Transfer) Result {
	switch {
	case t.PendingID.IsZero():
		return PendingIDMustNotBeZero
	case t.PendingID == t.ID:
		return PendingIDMustBeDifferent
	case t.Timeout != 0:
		return TimeoutReservedForPending
	}
	p, ok := s.pending[t.PendingID]
	if !ok {
		return s.whyNotPending(t.PendingID)
	}
	da, ca := &s.accts[p.debit], &s.accts[p.credit]
	if (!t.DebitAccountID.IsZero() && t.DebitAccountID != da.ID) ||
		(!t.CreditAccountID.IsZero() && t.CreditAccountID != ca.ID) {
		return PendingTransferHasDifferentAccounts
	}
	post := t.Flags&PostPending != 0
	amt := t.Amount
	if post {
		if amt == 0 {
			amt = p.amount
		}
		if amt > p.amount {
			return ExceedsPendingAmount
		}
	} else {
		if amt != 0 && amt != p.amount {
			return PendingTransferHasDifferentAmount
		}
		amt = p.amount
	}
	ts := s.nextTS()
	if s.replaying {
		ts = t.Timestamp
	}
	if p.expiresAt != 0 && p.expiresAt <= ts {
		return PendingExpired
	}
	if post && (da.DebitsPosted > maxCounter-amt || ca.CreditsPosted > maxCounter-amt) {
		return Overflow
	}
	s.saveCounters(p.debit)
	s.saveCounters(p.credit)
	da.DebitsPending -= p.amount
	ca.CreditsPending -= p.amount
	kept := uint64(0)
	if post {
		da.DebitsPosted += amt
		ca.CreditsPosted += amt
		kept = amt
	}
	s.releaseSpend(p, kept)
	delete(s.pending, t.PendingID)
	s.undo = append(s.undo, undoEntry{kind: undoPendingRemove, id: t.PendingID, p: p})
	s.ts = ts
	off := s.eventOffset()
	if !s.replaying {
		stored := *t
		stored.DebitAccountID, stored.CreditAccountID = da.ID, ca.ID
		stored.Amount = amt
		stored.Timestamp = ts
		s.buf = appendTransfer(s.buf, &stored, t.Amount, p.amount)
	}
	s.indexInsert(t.ID, tagTransfer, off)
	s.indexInsert(t.PendingID, tagResolution, off)
	s.count++
	s.committed++
	return OK
}

// releaseSpend gives back to a mandate's budget the part of a reservation
// that was not posted.
func (s *state) releaseSpend(p pendingXfer, kept uint64) {
	if p.spendSeq == 0 {
		return
	}
	ms := s.mandate[p.debit]
	if ms == nil {
		return
	}
	if old, ok := ms.adjust(p.spendSeq, kept); ok {
		s.undo = append(s.undo, undoEntry{kind: undoSpendAdjust, ms: ms, seq: p.spendSeq, amount: old})
	}
}

// whyNotPending explains why pid is not an open pending transfer.
func (s *state) whyNotPending(pid ID) Result {
	off, ok := s.findTransfer(pid)
	if !ok {
		return PendingNotFound
	}
	if t, _ := s.transferAt(off); t.Flags&Pending == 0 {
		return PendingTransferNotPending
	}
	switch s.pendingStatusOf(pid) {
	case StatusPosted:
		return PendingAlreadyPosted
	case StatusVoided:
		return PendingAlreadyVoided
	case StatusExpired:
		return PendingExpired
	}
	return PendingNotFound
}

// pendingStatusOf returns the status of a pending transfer id.
func (s *state) pendingStatusOf(pid ID) PendingStatus {
	if _, ok := s.pending[pid]; ok {
		return StatusPending
	}
	off, ok := s.idx.lookup(pid, tagResolution, s.matchResolution(pid))
	if !ok {
		if o, ok := s.findTransfer(pid); ok {
			if t, _ := s.transferAt(o); t.Flags&Pending != 0 {
				// Unreachable while the state is consistent: a pending
				// transfer is open or has a resolution.
				return StatusPending
			}
		}
		return StatusNone
	}
	b := s.eventAt(off, 4)
	if b[0] == evExpire {
		return StatusExpired
	}
	if TransferFlags(binary.LittleEndian.Uint16(b[2:]))&PostPending != 0 {
		return StatusPosted
	}
	return StatusVoided
}

// compareExisting answers a transfer whose id is taken.
func (s *state) compareExisting(t *Transfer, off int64) Result {
	e, requested := s.transferAt(off)
	resolving := t.Flags&(PostPending|VoidPending) != 0
	same := e.Flags == t.Flags && e.PendingID == t.PendingID && e.UserData == t.UserData &&
		e.Timeout == t.Timeout && e.Code == t.Code && requested == t.Amount
	if resolving {
		same = same && (t.DebitAccountID.IsZero() || t.DebitAccountID == e.DebitAccountID) &&
			(t.CreditAccountID.IsZero() || t.CreditAccountID == e.CreditAccountID)
	} else {
		same = same && t.DebitAccountID == e.DebitAccountID && t.CreditAccountID == e.CreditAccountID
	}
	if same {
		return Exists
	}
	return ExistsWithDifferentFields
}

// expireOne expires the earliest due pending transfer, if it is still
// open, and reports how many it expired (0 or 1).
func (s *state) expireOne() int {
	e := heap.Pop(&s.expiry).(expiryEntry)
	p, ok := s.pending[e.id]
	if !ok || p.expiresAt != e.at {
		return 0 // resolved, or created by a chain that was rolled back
	}
	s.undo = s.undo[:0]
	s.expire(e.id, p, s.nextTS())
	return 1
}

func (s *state) expire(id ID, p pendingXfer, ts int64) {
	da, ca := &s.accts[p.debit], &s.accts[p.credit]
	da.DebitsPending -= p.amount
	ca.CreditsPending -= p.amount
	s.releaseSpend(p, 0)
	delete(s.pending, id)
	s.ts = ts
	off := s.eventOffset()
	if !s.replaying {
		s.buf = appendExpire(s.buf, &expiry{pendingID: id, debit: da.ID, credit: ca.ID, amount: p.amount, timestamp: ts})
	}
	s.idx.insert(id, tagResolution, off)
	s.count++
	s.committed++
}

// replayExpire applies a journaled expiry.
func (s *state) replayExpire(e expiry) error {
	id, ts := e.pendingID, e.timestamp
	p, ok := s.pending[id]
	switch {
	case !ok:
		return fmt.Errorf("expiry of %s, which is not pending", id)
	case p.expiresAt == 0 || p.expiresAt > ts:
		return fmt.Errorf("expiry of %s at %d before its timeout %d", id, ts, p.expiresAt)
	case ts <= s.ts:
		return fmt.Errorf("timestamp %d does not follow %d", ts, s.ts)
	case e.debit != s.accts[p.debit].ID || e.credit != s.accts[p.credit].ID || e.amount != p.amount:
		return fmt.Errorf("expiry of %s does not match the pending transfer", id)
	}
	s.expire(id, p, ts)
	return nil
}

// setMandate replaces the account's mandate; a mandate with no limits
// removes it. The spends still inside the old window carry over.
func (s *state) setMandate(m *Mandate, ts int64) Result {
	i, ok := s.accounts[m.AccountID]
	if !ok {
		return AccountNotFound
	}
	s.ts = ts
	ms := s.mandate[i]
	if m.MaxPerTransfer == 0 && m.Budget == 0 && len(m.Counterparties) == 0 && m.ExpiresAt.IsZero() {
		s.mandate[i] = nil
	} else {
		if ms == nil {
			ms = &mandateState{}
			s.mandate[i] = ms
		} else if ms.Budget > 0 {
			// Spends that left the old window by now stay gone, however
			// wide the new one. Which of them were already evicted
			// depends on the transfers that checked the window, failed
			// ones included, which replay never sees; cutting here makes
			// the history the same live and on replay.
			ms.evict(ts)
		}
		ms.set(*m)
	}
	if !s.replaying {
		s.buf = appendMandate(s.buf, m, ts)
	}
	s.count++
	s.committed++
	return OK
}

// mandateState is a mandate and the spends within its window.
type mandateState struct {
	Mandate
	expiresAt int64
	allowed   map[ID]struct{}
	spends    []spendEntry // spends[head:] are in the window, by ascending seq
	head      int
	sum       uint64 // total of spends[head:]
}

// spendEntry is one debit counted against the budget. seq is unique across
// the ledger, so that a reservation can find its entry when it resolves.
type spendEntry struct {
	seq    uint64
	ts     int64
	amount uint64
}

func (ms *mandateState) set(m Mandate) {
	ms.Mandate = m
	ms.expiresAt = 0
	if !m.ExpiresAt.IsZero() {
		ms.expiresAt = m.ExpiresAt.UnixNano()
	}
	ms.allowed = nil
	if len(m.Counterparties) > 0 {
		ms.allowed = make(map[ID]struct{}, len(m.Counterparties))
		for _, c := range m.Counterparties {
			ms.allowed[c] = struct{}{}
		}
	}
}

// allows reports whether the mandate lets the account pay amt to the
// account to at ts. floor is a timestamp that no later event can precede:
// spends that left the window by then are dropped for good, while spends
// that only leave it by ts are merely not counted, because ts belongs to
// an event that may still be rolled back, and the next one may be stamped
// earlier. Dropping them at ts would let that one overspend, live and not
// on replay.
func (ms *mandateState) allows(ts, floor int64, amt uint64, to ID) bool {
	if ms.expiresAt != 0 && ts >= ms.expiresAt {
		return false
	}
	if ms.MaxPerTransfer != 0 && amt > ms.MaxPerTransfer {
		return false
	}
	if ms.allowed != nil {
		if _, ok := ms.allowed[to]; !ok {
			return false
		}
	}
	if ms.Budget != 0 {
		ms.evict(floor)
		sum := ms.sum
		for _, e := range ms.spends[ms.head:] {
			if e.ts > ts-int64(ms.Window) {
				break
			}
			sum -= e.amount
		}
		if sum+amt > ms.Budget || sum+amt < amt {
			return false
		}
	}
	return true
}

// evict drops the spends that have left the rolling window ending at ts.
func (ms *mandateState) evict(ts int64) {
	for ms.head < len(ms.spends) && ms.spends[ms.head].ts <= ts-int64(ms.Window) {
		ms.sum -= ms.spends[ms.head].amount
		ms.head++
	}
	if ms.head > 64 && ms.head*2 > len(ms.spends) {
		n := copy(ms.spends, ms.spends[ms.head:])
		ms.spends = ms.spends[:n]
		ms.head = 0
	}
}

func (ms *mandateState) pushSpend(seq uint64, ts int64, amt uint64) {
	ms.spends = append(ms.spends, spendEntry{seq: seq, ts: ts, amount: amt})
	ms.sum += amt
}

// popSpend takes back the last spend, which must be seq.
func (ms *mandateState) popSpend(seq uint64) {
	i := len(ms.spends) - 1
	if i < ms.head || ms.spends[i].seq != seq {
		return
	}
	ms.sum -= ms.spends[i].amount
	ms.spends = ms.spends[:i]
}

// adjust sets the amount of spend seq, if it is still in the window, and
// returns the old amount.
func (ms *mandateState) adjust(seq, amount uint64) (uint64, bool) {
	w := ms.spends[ms.head:]
	i := sort.Search(len(w), func(i int) bool { return w[i].seq >= seq })
	if i == len(w) || w[i].seq != seq {
		return 0, false
	}
	old := w[i].amount
	ms.sum = ms.sum - old + amount
	w[i].amount = amount
	return old, true
}

type expiryEntry struct {
	at int64
	id ID
}

type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
