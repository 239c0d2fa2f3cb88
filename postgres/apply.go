package postgres

import (
	"cmp"
	"math"
	"math/bits"
	"slices"

	"github.com/agentmarket/agentmarket/ledger"
)

// This file holds the ledger's rules, applied in memory to the rows a
// batch has locked. They are the embedded ledger's (ledger/state.go) rule
// for rule and result for result, and ledgertest runs both against the
// same cases; what differs is only where the state comes from (rows read
// under lock, not a process's memory) and where it goes (rows written
// back in one statement per table).

// maxCounter bounds every counter so that balances always fit an int64,
// as in the embedded ledger.
const maxCounter = math.MaxInt64

// Known flags, as the embedded ledger defines them.
const (
	accountFlagsKnown  = ledger.DebitsMustNotExceedCredits
	transferFlagsKnown = ledger.Linked | ledger.Pending | ledger.PostPending | ledger.VoidPending
)

// accountRow is a locked account. loadedTS is its last_ts as read, which
// bounds the spends its mandate can still count.
type accountRow struct {
	ledger.Account
	lastTS   int64
	loaded   [4]uint64
	loadedTS int64
}

func (a *accountRow) counters() [4]uint64 {
	return [4]uint64{a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted}
}

func (a *accountRow) changed() bool { return a.counters() != a.loaded || a.lastTS != a.loadedTS }

// pendingRow is a pending transfer: read under its row lock, or made in
// this batch.
type pendingRow struct {
	id            ledger.ID
	debit, credit ledger.ID
	amount        uint64
	expiresAt     int64 // 0: never
	status        ledger.PendingStatus
	resolvedAt    int64
	loadedStatus  ledger.PendingStatus // StatusNone for a row made in this batch
}

// transferRow is a committed transfer: read, or made in this batch.
// requested is the amount as the client sent it.
type transferRow struct {
	ledger.Transfer
	requested uint64
}

// spendRow is one debit a mandate's budget counts, keyed by its transfer.
type spendRow struct {
	id           ledger.ID // the transfer
	account      ledger.ID
	ts           int64
	amount       uint64
	loadedAmount uint64
	made         bool // made in this batch, not read
}

// mandateRow is an account's mandate and the spends loaded for it.
type mandateRow struct {
	ledger.Mandate
	expiresAt int64
	allowed   map[ledger.ID]struct{}
	spends    []*spendRow
}

func newMandateRow(m ledger.Mandate) *mandateRow {
	ms := &mandateRow{Mandate: m}
	if !m.ExpiresAt.IsZero() {
		ms.expiresAt = m.ExpiresAt.UnixNano()
	}
	if len(m.Counterparties) > 0 {
		ms.allowed = make(map[ledger.ID]struct{}, len(m.Counterparties))
		for _, c := range m.Counterparties {
			ms.allowed[c] = struct{}{}
		}
	}
	return ms
}

// allows reports whether the mandate lets the account pay amt to the
// account to at ts: the embedded ledger's check. The budget counts the
// spends still inside the rolling window that ends at ts.
func (ms *mandateRow) allows(ts int64, amt uint64, to ledger.ID) bool {
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
		var sum uint64
		for _, e := range ms.spends {
			if e.ts > ts-int64(ms.Window) {
				sum += e.amount
			}
		}
		if sum+amt > ms.Budget || sum+amt < amt {
			return false
		}
	}
	return true
}

// batch is the state one transaction works on: the rows it locked and
// read, changed in memory by the embedded ledger's rules, then written
// back. Changes are recorded in an undo log so that a linked chain that
// fails part way leaves nothing.
type batch struct {
	now int64 // the clock at the start of the batch
	ts  int64 // the last timestamp assigned

	accounts  map[ledger.ID]*accountRow
	pending   map[ledger.ID]*pendingRow
	transfers map[ledger.ID]*transferRow
	mandates  map[ledger.ID]*mandateRow // by account
	spends    map[ledger.ID]*spendRow   // by transfer

	made    []*transferRow // transfers committed by this batch, in order
	expired int            // reservations this batch expired
	undo    []func()
}

func newBatch(now int64) *batch {
	return &batch{
		now:       now,
		accounts:  make(map[ledger.ID]*accountRow),
		pending:   make(map[ledger.ID]*pendingRow),
		transfers: make(map[ledger.ID]*transferRow),
		mandates:  make(map[ledger.ID]*mandateRow),
		spends:    make(map[ledger.ID]*spendRow),
	}
}

// nextTS returns the timestamp the next event would get: the clock, or
// just after the last event on any account this batch holds, whichever is
// later.
func (b *batch) nextTS() int64 {
	if b.now > b.ts {
		return b.now
	}
	return b.ts + 1
}

type mark struct {
	undo, made int
	ts         int64
}

func (b *batch) mark() mark { return mark{undo: len(b.undo), made: len(b.made), ts: b.ts} }

func (b *batch) rollback(m mark) {
	for i := len(b.undo) - 1; i >= m.undo; i-- {
		b.undo[i]()
	}
	b.undo = b.undo[:m.undo]
	clear(b.made[m.made:])
	b.made = b.made[:m.made]
	b.ts = m.ts
}

// saveAccount records an account's counters and last timestamp for undo.
func (b *batch) saveAccount(a *accountRow) {
	c, ts := a.counters(), a.lastTS
	b.undo = append(b.undo, func() {
		a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted = c[0], c[1], c[2], c[3]
		a.lastTS = ts
	})
}

// createTransfers applies a batch of transfers with linked-chain
// semantics, as the embedded ledger does.
func (b *batch) createTransfers(xs []ledger.Transfer, res []ledger.Result) {
	for i := 0; i < len(xs); {
		j := i
		for j < len(xs) && xs[j].Flags&ledger.Linked != 0 {
			j++
		}
		if j == len(xs) {
			for k := i; k < len(xs)-1; k++ {
				res[k] = ledger.LinkedEventFailed
			}
			res[len(xs)-1] = ledger.LinkedEventChainOpen
			return
		}
		b.undo = b.undo[:0]
		if i == j {
			res[i] = b.transfer(&xs[i])
			i++
			continue
		}
		m := b.mark()
		failed := -1
		for k := i; k <= j; k++ {
			res[k] = b.transfer(&xs[k])
			if !res[k].Committed() {
				failed = k
				break
			}
		}
		if failed >= 0 {
			b.rollback(m)
			for k := i; k <= j; k++ {
				if k != failed {
					res[k] = ledger.LinkedEventFailed
				}
			}
		}
		i = j + 1
	}
}

// transfer checks and applies one transfer. It changes nothing unless it
// returns OK; what it changes it records in the undo log.
func (b *batch) transfer(t *ledger.Transfer) ledger.Result {
	if t.ID.IsZero() {
		return ledger.IDMustNotBeZero
	}
	kind := t.Flags & (ledger.Pending | ledger.PostPending | ledger.VoidPending)
	if t.Flags&^transferFlagsKnown != 0 || bits.OnesCount16(uint16(kind)) > 1 {
		return ledger.FlagsInvalid
	}
	if t.Timeout < 0 {
		return ledger.TimeoutReservedForPending
	}
	if e, ok := b.transfers[t.ID]; ok {
		return compareExisting(t, e)
	}
	if kind&(ledger.PostPending|ledger.VoidPending) != 0 {
		return b.resolve(t)
	}
	switch {
	case !t.PendingID.IsZero():
		return ledger.PendingIDMustBeZero
	case t.Timeout != 0 && kind != ledger.Pending:
		return ledger.TimeoutReservedForPending
	case t.DebitAccountID == t.CreditAccountID:
		if t.DebitAccountID.IsZero() {
			return ledger.AccountNotFound
		}
		return ledger.SameAccount
	case t.Amount == 0:
		return ledger.ZeroAmount
	}
	da, ok := b.accounts[t.DebitAccountID]
	if !ok {
		return ledger.AccountNotFound
	}
	ca, ok := b.accounts[t.CreditAccountID]
	if !ok {
		return ledger.AccountNotFound
	}
	amt := t.Amount
	if da.DebitsPending+da.DebitsPosted > maxCounter-amt || amt > maxCounter ||
		ca.CreditsPending+ca.CreditsPosted > maxCounter-amt {
		return ledger.Overflow
	}
	if da.Flags&ledger.DebitsMustNotExceedCredits != 0 && da.DebitsPending+da.DebitsPosted+amt > da.CreditsPosted {
		return ledger.InsufficientFunds
	}
	ts := b.nextTS()
	if kind == ledger.Pending && t.Timeout > 0 && ts > maxCounter-int64(t.Timeout) {
		// The expiry time would wrap to the past and expire the
		// reservation at once.
		return ledger.Overflow
	}
	if ms := b.mandates[da.ID]; ms != nil {
		if !ms.allows(ts, amt, ca.ID) {
			return ledger.MandateViolated
		}
		if ms.Budget > 0 {
			sp := &spendRow{id: t.ID, account: da.ID, ts: ts, amount: amt, made: true}
			ms.spends = append(ms.spends, sp)
			b.spends[t.ID] = sp
			b.undo = append(b.undo, func() {
				ms.spends = ms.spends[:len(ms.spends)-1]
				delete(b.spends, t.ID)
			})
		}
	}
	b.saveAccount(da)
	b.saveAccount(ca)
	if kind == ledger.Pending {
		da.DebitsPending += amt
		ca.CreditsPending += amt
		p := &pendingRow{id: t.ID, debit: da.ID, credit: ca.ID, amount: amt, status: ledger.StatusPending}
		if t.Timeout > 0 {
			p.expiresAt = ts + int64(t.Timeout)
		}
		b.pending[t.ID] = p
		b.undo = append(b.undo, func() { delete(b.pending, t.ID) })
	} else {
		da.DebitsPosted += amt
		ca.CreditsPosted += amt
	}
	da.lastTS, ca.lastTS = ts, ts
	b.ts = ts
	stored := *t
	stored.Timestamp = ts
	b.commit(&transferRow{Transfer: stored, requested: t.Amount})
	return ledger.OK
}

// commit adds a transfer the batch has applied.
func (b *batch) commit(x *transferRow) {
	b.transfers[x.ID] = x
	b.made = append(b.made, x)
	b.undo = append(b.undo, func() { delete(b.transfers, x.ID) })
}

// resolve posts or voids a pending transfer.
func (b *batch) resolve(t *ledger.Transfer) ledger.Result {
	switch {
	case t.PendingID.IsZero():
		return ledger.PendingIDMustNotBeZero
	case t.PendingID == t.ID:
		return ledger.PendingIDMustBeDifferent
	case t.Timeout != 0:
		return ledger.TimeoutReservedForPending
	}
	p, ok := b.pending[t.PendingID]
	if !ok || p.status != ledger.StatusPending {
		return b.whyNotPending(t.PendingID)
	}
	da, ca := b.accounts[p.debit], b.accounts[p.credit]
	if (!t.DebitAccountID.IsZero() && t.DebitAccountID != da.ID) ||
		(!t.CreditAccountID.IsZero() && t.CreditAccountID != ca.ID) {
		return ledger.PendingTransferHasDifferentAccounts
	}
	post := t.Flags&ledger.PostPending != 0
	amt := t.Amount
	if post {
		if amt == 0 {
			amt = p.amount
		}
		if amt > p.amount {
			return ledger.ExceedsPendingAmount
		}
	} else {
		if amt != 0 && amt != p.amount {
			return ledger.PendingTransferHasDifferentAmount
		}
		amt = p.amount
	}
	ts := b.nextTS()
	if p.expiresAt != 0 && p.expiresAt <= ts {
		return ledger.PendingExpired
	}
	if post && (da.DebitsPosted > maxCounter-amt || ca.CreditsPosted > maxCounter-amt) {
		return ledger.Overflow
	}
	b.saveAccount(da)
	b.saveAccount(ca)
	da.DebitsPending -= p.amount
	ca.CreditsPending -= p.amount
	kept := uint64(0)
	status := ledger.StatusVoided
	if post {
		da.DebitsPosted += amt
		ca.CreditsPosted += amt
		kept = amt
		status = ledger.StatusPosted
	}
	b.releaseSpend(p, kept)
	b.setStatus(p, status, ts)
	da.lastTS, ca.lastTS = ts, ts
	b.ts = ts
	stored := *t
	stored.DebitAccountID, stored.CreditAccountID = da.ID, ca.ID
	stored.Amount = amt
	stored.Timestamp = ts
	b.commit(&transferRow{Transfer: stored, requested: t.Amount})
	return ledger.OK
}

func (b *batch) setStatus(p *pendingRow, status ledger.PendingStatus, ts int64) {
	old, oldAt := p.status, p.resolvedAt
	p.status, p.resolvedAt = status, ts
	b.undo = append(b.undo, func() { p.status, p.resolvedAt = old, oldAt })
}

// releaseSpend gives back to a mandate's budget the part of a reservation
// that was not posted.
func (b *batch) releaseSpend(p *pendingRow, kept uint64) {
	sp, ok := b.spends[p.id]
	if !ok {
		return
	}
	old := sp.amount
	sp.amount = kept
	b.undo = append(b.undo, func() { sp.amount = old })
}

// whyNotPending explains why pid is not an open pending transfer.
func (b *batch) whyNotPending(pid ledger.ID) ledger.Result {
	x, ok := b.transfers[pid]
	if !ok {
		return ledger.PendingNotFound
	}
	if x.Flags&ledger.Pending == 0 {
		return ledger.PendingTransferNotPending
	}
	if p, ok := b.pending[pid]; ok {
		switch p.status {
		case ledger.StatusPosted:
			return ledger.PendingAlreadyPosted
		case ledger.StatusVoided:
			return ledger.PendingAlreadyVoided
		case ledger.StatusExpired:
			return ledger.PendingExpired
		}
	}
	return ledger.PendingNotFound
}

// compareExisting answers a transfer whose id is taken.
func compareExisting(t *ledger.Transfer, e *transferRow) ledger.Result {
	resolving := t.Flags&(ledger.PostPending|ledger.VoidPending) != 0
	same := e.Flags == t.Flags && e.PendingID == t.PendingID && e.UserData == t.UserData &&
		e.Timeout == t.Timeout && e.Code == t.Code && e.requested == t.Amount
	if resolving {
		same = same && (t.DebitAccountID.IsZero() || t.DebitAccountID == e.DebitAccountID) &&
			(t.CreditAccountID.IsZero() || t.CreditAccountID == e.CreditAccountID)
	} else {
		same = same && t.DebitAccountID == e.DebitAccountID && t.CreditAccountID == e.CreditAccountID
	}
	if same {
		return ledger.Exists
	}
	return ledger.ExistsWithDifferentFields
}

// expireDue expires, in order of their expiry and then id, the open
// reservations the batch holds whose timeout has passed on its clock.
func (b *batch) expireDue() {
	var due []*pendingRow
	for _, p := range b.pending {
		if p.status == ledger.StatusPending && p.expiresAt != 0 && p.expiresAt <= b.now {
			due = append(due, p)
		}
	}
	slices.SortFunc(due, func(x, y *pendingRow) int {
		if c := cmp.Compare(x.expiresAt, y.expiresAt); c != 0 {
			return c
		}
		return compareIDs(x.id, y.id)
	})
	for _, p := range due {
		b.expire(p)
	}
	b.undo = b.undo[:0]
}

// expire releases a reservation whose timeout has passed.
func (b *batch) expire(p *pendingRow) {
	da, ca := b.accounts[p.debit], b.accounts[p.credit]
	ts := b.nextTS()
	b.saveAccount(da)
	b.saveAccount(ca)
	da.DebitsPending -= p.amount
	ca.CreditsPending -= p.amount
	b.releaseSpend(p, 0)
	b.setStatus(p, ledger.StatusExpired, ts)
	da.lastTS, ca.lastTS = ts, ts
	b.ts = ts
	b.expired++
}

func compareIDs(x, y ledger.ID) int {
	for i := range x {
		if c := cmp.Compare(x[i], y[i]); c != 0 {
			return c
		}
	}
	return 0
}
