package ledger_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math/bits"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/agentmarket/agentmarket/ledger"
)

// The state machine test drives a ledger and a model of it with the same
// random operations (plain, pending, post, void and linked batches, exact
// and altered retries, clock moves, ticks, mandate changes and restarts)
// and after every step checks that they agree, and that money is
// conserved. The model is deliberately naive: maps, a list of spends, and
// a copy of itself to roll a failed chain back.

// The model's accounts: a treasury, three wallets, and a plain account.
// The first wallet carries a mandate.
const (
	mTreasury = 1
	mWallet1  = 2
	mWallet2  = 3
	mWallet3  = 4
	mPlain    = 5
	mUnknown  = 99
)

var modelAccounts = []uint64{mTreasury, mWallet1, mWallet2, mWallet3, mPlain}

type modelPending struct {
	debit, credit ledger.ID
	amount        uint64
	expiresAt     int64 // 0: never
}

// spend is a debit counted against the mandate's budget; pending names
// the reservation it is, if it is one.
type spend struct {
	ts      int64
	amount  uint64
	pending ledger.ID
}

type modelMandate struct {
	max, budget uint64
	window      int64
	spends      []spend
}

type modelTransfer struct {
	stored    ledger.Transfer // as LookupTransfer returns it
	requested uint64          // the amount the client asked for
}

type model struct {
	now, ts   int64
	events    uint64
	accounts  map[ledger.ID]ledger.Account
	transfers map[ledger.ID]modelTransfer
	pending   map[ledger.ID]modelPending
	status    map[ledger.ID]ledger.PendingStatus // of every committed reservation
	mandate   *modelMandate                      // on mWallet1
}

func newModel() *model {
	return &model{
		accounts:  map[ledger.ID]ledger.Account{},
		transfers: map[ledger.ID]modelTransfer{},
		pending:   map[ledger.ID]modelPending{},
		status:    map[ledger.ID]ledger.PendingStatus{},
	}
}

func (m *model) clone() *model {
	c := *m
	c.accounts = maps.Clone(m.accounts)
	c.transfers = maps.Clone(m.transfers)
	c.pending = maps.Clone(m.pending)
	c.status = maps.Clone(m.status)
	if m.mandate != nil {
		md := *m.mandate
		md.spends = slices.Clone(m.mandate.spends)
		c.mandate = &md
	}
	return &c
}

// stamp returns the next event's timestamp and commits the event.
func (m *model) stamp() int64 {
	ts := max(m.now, m.ts+1)
	m.ts = ts
	m.events++
	return ts
}

func (m *model) nextTS() int64 { return max(m.now, m.ts+1) }

func (m *model) createAccount(a ledger.Account) {
	a.Timestamp = m.stamp()
	m.accounts[a.ID] = a
}

// sweep expires the reservations due at the clock, as every ledger
// request does before anything else, and returns how many.
func (m *model) sweep() int {
	var due []ledger.ID
	for pid, p := range m.pending {
		if p.expiresAt != 0 && p.expiresAt <= m.now {
			due = append(due, pid)
		}
	}
	for _, pid := range due {
		p := m.pending[pid]
		m.stamp()
		m.release(pid, p, 0)
		m.status[pid] = ledger.StatusExpired
	}
	return len(due)
}

// release takes a reservation off the pending counters, posting kept of it.
func (m *model) release(pid ledger.ID, p modelPending, kept uint64) {
	d, c := m.accounts[p.debit], m.accounts[p.credit]
	d.DebitsPending -= p.amount
	c.CreditsPending -= p.amount
	d.DebitsPosted += kept
	c.CreditsPosted += kept
	m.accounts[p.debit], m.accounts[p.credit] = d, c
	delete(m.pending, pid)
	if m.mandate != nil {
		for i := range m.mandate.spends {
			if m.mandate.spends[i].pending == pid {
				m.mandate.spends[i].amount = kept
			}
		}
	}
}

func (m *model) setMandate(md ledger.Mandate) {
	ts := m.stamp()
	switch {
	case md.MaxPerTransfer == 0 && md.Budget == 0:
		m.mandate = nil
	case m.mandate == nil:
		m.mandate = &modelMandate{}
	case m.mandate.budget > 0:
		// Spends outside the old window are gone for good.
		m.mandate.spends = slices.DeleteFunc(m.mandate.spends, func(s spend) bool {
			return s.ts <= ts-m.mandate.window
		})
	}
	if m.mandate != nil {
		m.mandate.max, m.mandate.budget, m.mandate.window = md.MaxPerTransfer, md.Budget, int64(md.Window)
	}
}

func (m *model) allows(ts int64, amount uint64) bool {
	md := m.mandate
	if md.max != 0 && amount > md.max {
		return false
	}
	if md.budget != 0 {
		sum := amount
		for _, s := range md.spends {
			if s.ts > ts-md.window {
				sum += s.amount
			}
		}
		if sum > md.budget {
			return false
		}
	}
	return true
}

func (m *model) createTransfers(xs []ledger.Transfer) []ledger.Result {
	res := make([]ledger.Result, len(xs))
	for i := 0; i < len(xs); {
		j := i
		for j < len(xs) && xs[j].Flags&ledger.Linked != 0 {
			j++
		}
		if j == len(xs) {
			for k := i; k < len(xs); k++ {
				res[k] = ledger.LinkedEventFailed
			}
			res[len(xs)-1] = ledger.LinkedEventChainOpen
			break
		}
		before := m.clone()
		for k := i; k <= j; k++ {
			res[k] = m.transfer(xs[k])
			if !res[k].Committed() {
				*m = *before
				for f := i; f <= j; f++ {
					if f != k {
						res[f] = ledger.LinkedEventFailed
					}
				}
				break
			}
		}
		i = j + 1
	}
	return res
}

func (m *model) transfer(t ledger.Transfer) ledger.Result {
	const known = ledger.Linked | ledger.Pending | ledger.PostPending | ledger.VoidPending
	kind := t.Flags & (ledger.Pending | ledger.PostPending | ledger.VoidPending)
	switch {
	case t.ID.IsZero():
		return ledger.IDMustNotBeZero
	case t.Flags&^known != 0 || bits.OnesCount16(uint16(kind)) > 1:
		return ledger.FlagsInvalid
	case t.Timeout < 0:
		return ledger.TimeoutReservedForPending
	}
	if e, ok := m.transfers[t.ID]; ok {
		return m.compare(t, e)
	}
	if kind == ledger.PostPending || kind == ledger.VoidPending {
		return m.resolve(t)
	}
	switch {
	case !t.PendingID.IsZero():
		return ledger.PendingIDMustBeZero
	case t.Timeout != 0 && kind != ledger.Pending:
		return ledger.TimeoutReservedForPending
	case t.DebitAccountID == t.CreditAccountID && t.DebitAccountID.IsZero():
		return ledger.AccountNotFound
	case t.DebitAccountID == t.CreditAccountID:
		return ledger.SameAccount
	case t.Amount == 0:
		return ledger.ZeroAmount
	}
	d, okd := m.accounts[t.DebitAccountID]
	c, okc := m.accounts[t.CreditAccountID]
	if !okd || !okc {
		return ledger.AccountNotFound
	}
	if d.Flags&ledger.DebitsMustNotExceedCredits != 0 && d.DebitsPending+d.DebitsPosted+t.Amount > d.CreditsPosted {
		return ledger.InsufficientFunds
	}
	ts := m.nextTS()
	mandated := d.ID == id(mWallet1) && m.mandate != nil
	if mandated && !m.allows(ts, t.Amount) {
		return ledger.MandateViolated
	}
	m.stamp()
	if mandated && m.mandate.budget > 0 {
		s := spend{ts: ts, amount: t.Amount}
		if kind == ledger.Pending {
			s.pending = t.ID
		}
		m.mandate.spends = append(m.mandate.spends, s)
	}
	if kind == ledger.Pending {
		d.DebitsPending += t.Amount
		c.CreditsPending += t.Amount
		p := modelPending{debit: d.ID, credit: c.ID, amount: t.Amount}
		if t.Timeout > 0 {
			p.expiresAt = ts + int64(t.Timeout)
		}
		m.pending[t.ID] = p
		m.status[t.ID] = ledger.StatusPending
	} else {
		d.DebitsPosted += t.Amount
		c.CreditsPosted += t.Amount
	}
	m.accounts[d.ID], m.accounts[c.ID] = d, c
	stored := t
	stored.Timestamp = ts
	m.transfers[t.ID] = modelTransfer{stored: stored, requested: t.Amount}
	return ledger.OK
}

func (m *model) resolve(t ledger.Transfer) ledger.Result {
	switch {
	case t.PendingID.IsZero():
		return ledger.PendingIDMustNotBeZero
	case t.PendingID == t.ID:
		return ledger.PendingIDMustBeDifferent
	case t.Timeout != 0:
		return ledger.TimeoutReservedForPending
	}
	p, ok := m.pending[t.PendingID]
	if !ok {
		e, ok := m.transfers[t.PendingID]
		switch {
		case !ok:
			return ledger.PendingNotFound
		case e.stored.Flags&ledger.Pending == 0:
			return ledger.PendingTransferNotPending
		}
		switch m.status[t.PendingID] {
		case ledger.StatusPosted:
			return ledger.PendingAlreadyPosted
		case ledger.StatusVoided:
			return ledger.PendingAlreadyVoided
		case ledger.StatusExpired:
			return ledger.PendingExpired
		}
		panic("model: a closed reservation without a final status")
	}
	if (!t.DebitAccountID.IsZero() && t.DebitAccountID != p.debit) ||
		(!t.CreditAccountID.IsZero() && t.CreditAccountID != p.credit) {
		return ledger.PendingTransferHasDifferentAccounts
	}
	post := t.Flags&ledger.PostPending != 0
	amount := t.Amount
	switch {
	case post && amount == 0:
		amount = p.amount
	case post && amount > p.amount:
		return ledger.ExceedsPendingAmount
	case !post && amount != 0 && amount != p.amount:
		return ledger.PendingTransferHasDifferentAmount
	case !post:
		amount = p.amount
	}
	if p.expiresAt != 0 && p.expiresAt <= m.nextTS() {
		return ledger.PendingExpired
	}
	ts := m.stamp()
	kept, st := uint64(0), ledger.StatusVoided
	if post {
		kept, st = amount, ledger.StatusPosted
	}
	m.release(t.PendingID, p, kept)
	m.status[t.PendingID] = st
	stored := t
	stored.DebitAccountID, stored.CreditAccountID = p.debit, p.credit
	stored.Amount = amount
	stored.Timestamp = ts
	m.transfers[t.ID] = modelTransfer{stored: stored, requested: t.Amount}
	return ledger.OK
}

func (m *model) compare(t ledger.Transfer, e modelTransfer) ledger.Result {
	s := e.stored
	same := s.Flags == t.Flags && s.PendingID == t.PendingID && s.UserData == t.UserData &&
		s.Timeout == t.Timeout && s.Code == t.Code && e.requested == t.Amount
	if t.Flags&(ledger.PostPending|ledger.VoidPending) != 0 {
		same = same && (t.DebitAccountID.IsZero() || t.DebitAccountID == s.DebitAccountID) &&
			(t.CreditAccountID.IsZero() || t.CreditAccountID == s.CreditAccountID)
	} else {
		same = same && t.DebitAccountID == s.DebitAccountID && t.CreditAccountID == s.CreditAccountID
	}
	if same {
		return ledger.Exists
	}
	return ledger.ExistsWithDifferentFields
}

// machine runs one ledger against the model.
type machine struct {
	dir      string
	opts     ledger.Options
	clock    *clock
	l        *ledger.Ledger
	m        *model
	nextID   uint64
	batches  [][]ledger.Transfer // every batch submitted
	accepted []ledger.Transfer   // every transfer committed, as submitted
	reserved []ledger.ID         // every reservation committed
}

// startMandate is the mandated wallet's first mandate. Its window is a few
// nanoseconds of ledger time, like the clock's steps, so that batches
// straddle its edge.
var startMandate = ledger.Mandate{AccountID: id(mWallet1), MaxPerTransfer: 300, Budget: 250, Window: 5}

// amounts are spread so that a few spends fill a budget.
var amounts = rapid.OneOf(rapid.Uint64Range(1, 30), rapid.Uint64Range(30, 200), rapid.Uint64Range(200, 400))

func newMachine(t *rapid.T, base string) *machine {
	dir, err := os.MkdirTemp(base, "check")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &machine{dir: dir, clock: newClock(), m: newModel(), nextID: 1000}
	// The projection costs more to open than the rest of the ledger, so
	// only some runs check history against it.
	s.opts = ledger.Options{Now: s.clock.Now, NoProjection: !rapid.Bool().Draw(t, "projection")}
	s.l = mustOpen(t, dir, s.opts)
	s.m.now = s.clock.Now().UnixNano()
	var as []ledger.Account
	for _, n := range modelAccounts {
		a := ledger.Account{ID: id(n), Code: uint16(n)}
		if n == mWallet1 || n == mWallet2 || n == mWallet3 {
			a.Flags = ledger.DebitsMustNotExceedCredits
		}
		as = append(as, a)
		s.m.createAccount(a)
	}
	mustCreateAccounts(t, s.l, as...)
	s.setMandate(t, startMandate)
	s.submit(t, []ledger.Transfer{
		plain(s.newID(), mTreasury, mWallet1, 5000),
		plain(s.newID(), mTreasury, mWallet2, 5000),
		plain(s.newID(), mTreasury, mWallet3, 5000),
	})
	return s
}

func (s *machine) newID() uint64 {
	s.nextID++
	return s.nextID
}

func (s *machine) setMandate(t *rapid.T, md ledger.Mandate) {
	s.m.sweep()
	mustSetMandate(t, s.l, md)
	s.m.setMandate(md)
}

// submit sends a batch to the ledger and the model and checks that they
// answer alike.
func (s *machine) submit(t *rapid.T, xs []ledger.Transfer) []ledger.Result {
	s.m.sweep()
	want := s.m.createTransfers(xs)
	got := createTransfers(t, s.l, xs...)
	if diff := cmp.Diff(codes(want), codes(got)); diff != "" {
		t.Fatalf("results of %s (-model +ledger):\n%s", describe(xs), diff)
	}
	s.batches = append(s.batches, xs)
	for i, r := range got {
		if r == ledger.OK {
			s.accepted = append(s.accepted, xs[i])
			if xs[i].Flags&ledger.Pending != 0 {
				s.reserved = append(s.reserved, xs[i].ID)
			}
		}
	}
	return got
}

// describe spells a batch out compactly for failure messages.
func describe(xs []ledger.Transfer) string {
	var b strings.Builder
	for _, x := range xs {
		fmt.Fprintf(&b, "\n\t%d: %d->%d amount %d", numberOf(x.ID), numberOf(x.DebitAccountID), numberOf(x.CreditAccountID), x.Amount)
		if !x.PendingID.IsZero() {
			fmt.Fprintf(&b, " pending %d", numberOf(x.PendingID))
		}
		if x.Timeout != 0 {
			fmt.Fprintf(&b, " timeout %d", x.Timeout)
		}
		fmt.Fprintf(&b, " code %d flags %b", x.Code, x.Flags)
	}
	return b.String()
}

// numberOf reads back the number an id was made from by id.
func numberOf(x ledger.ID) uint64 { return binary.BigEndian.Uint64(x[8:]) }

func (s *machine) drawAccount(t *rapid.T, label string) uint64 {
	return rapid.SampledFrom(modelAccounts).Draw(t, label)
}

// drawPendingID picks a reservation, mostly one that was made, else any
// transfer or an id never used.
func (s *machine) drawPendingID(t *rapid.T) ledger.ID {
	open := slices.SortedFunc(maps.Keys(s.m.pending), func(a, b ledger.ID) int { return bytes.Compare(a[:], b[:]) })
	switch k := rapid.IntRange(0, 9).Draw(t, "pending_kind"); {
	case k < 6 && len(open) > 0:
		return rapid.SampledFrom(open).Draw(t, "open_id")
	case k < 8 && len(s.reserved) > 0:
		return rapid.SampledFrom(s.reserved).Draw(t, "pending_id")
	case k < 9 && len(s.accepted) > 0:
		return rapid.SampledFrom(s.accepted).Draw(t, "other_id").ID
	default:
		return id(s.newID())
	}
}

// drawTransfer draws a transfer, and whether it is new rather than a
// reuse of an earlier one, whose flags must stay as they were.
func (s *machine) drawTransfer(t *rapid.T) (ledger.Transfer, bool) {
	x := s.drawAny(t)
	return x, x.ID.IsZero() || s.m.transfers[x.ID] == (modelTransfer{})
}

func (s *machine) drawAny(t *rapid.T) ledger.Transfer {
	switch kind := rapid.IntRange(0, 11).Draw(t, "kind"); kind {
	case 0, 1, 2, 3, 4, 5:
		// The mandated wallet pays more often than the others.
		debit := rapid.SampledFrom([]uint64{mTreasury, mWallet1, mWallet1, mWallet2, mWallet3, mPlain}).Draw(t, "debit")
		credit := s.drawAccount(t, "credit")
		if credit == debit {
			credit = modelAccounts[(slices.Index(modelAccounts, debit)+1)%len(modelAccounts)]
		}
		x := plain(s.newID(), debit, credit, amounts.Draw(t, "amount"))
		x.Code = uint16(rapid.IntRange(0, 3).Draw(t, "code"))
		if kind >= 3 {
			x.Flags = ledger.Pending
			if rapid.Bool().Draw(t, "expires") {
				x.Timeout = time.Duration(rapid.Int64Range(1, 20).Draw(t, "timeout"))
			}
		}
		return x
	case 6:
		x := post(s.newID(), 0, rapid.Uint64Range(0, 300).Draw(t, "post_amount"))
		x.PendingID = s.drawPendingID(t)
		if rapid.IntRange(0, 4).Draw(t, "post_names_accounts") == 0 {
			x.DebitAccountID = id(s.drawAccount(t, "post_debit"))
		}
		return x
	case 7:
		x := void(s.newID(), 0)
		x.PendingID = s.drawPendingID(t)
		if rapid.IntRange(0, 5).Draw(t, "void_names_amount") == 0 {
			x.Amount = rapid.Uint64Range(1, 400).Draw(t, "void_amount")
		}
		return x
	case 8, 9:
		if len(s.accepted) == 0 {
			return plain(s.newID(), mTreasury, mPlain, 1)
		}
		x := rapid.SampledFrom(s.accepted).Draw(t, "reused")
		if kind == 9 {
			switch rapid.IntRange(0, 3).Draw(t, "altered") {
			case 0:
				x.Amount++
			case 1:
				x.Code++
			case 2:
				x.UserData = id(7)
			case 3:
				x.CreditAccountID = id(s.drawAccount(t, "altered_credit"))
			}
		}
		return x
	case 10:
		switch rapid.IntRange(0, 3).Draw(t, "invalid") {
		case 0:
			return plain(s.newID(), mWallet2, mWallet3, 0)
		case 1:
			return plain(s.newID(), mWallet2, mWallet2, 1)
		case 2:
			return plain(s.newID(), mUnknown, mWallet2, 1)
		default:
			return plain(0, mWallet2, mWallet3, 1)
		}
	default:
		// A big spend, to run wallets dry.
		debit := rapid.SampledFrom([]uint64{mWallet1, mWallet2, mWallet3}).Draw(t, "dry_debit")
		return plain(s.newID(), debit, mPlain, rapid.Uint64Range(1000, 8000).Draw(t, "dry_amount"))
	}
}

// drawResolutions draws posts and voids of the open reservations.
func (s *machine) drawResolutions(t *rapid.T) []ledger.Transfer {
	open := slices.SortedFunc(maps.Keys(s.m.pending), func(a, b ledger.ID) int { return bytes.Compare(a[:], b[:]) })
	if len(open) == 0 {
		t.Skip("nothing to resolve")
	}
	xs := make([]ledger.Transfer, rapid.IntRange(1, 3).Draw(t, "resolutions"))
	for i := range xs {
		pid := numberOf(rapid.SampledFrom(open).Draw(t, "resolve_id"))
		if rapid.Bool().Draw(t, "post") {
			xs[i] = post(s.newID(), pid, rapid.Uint64Range(0, 200).Draw(t, "resolve_amount"))
		} else {
			xs[i] = void(s.newID(), pid)
		}
		if i < len(xs)-1 && rapid.Bool().Draw(t, "resolve_linked") {
			xs[i].Flags |= ledger.Linked
		}
	}
	return xs
}

// drawChain draws one linked chain of new transfers, mostly the mandated
// wallet's, that often fails: whatever a failed chain did must not leak.
func (s *machine) drawChain(t *rapid.T) []ledger.Transfer {
	xs := make([]ledger.Transfer, rapid.IntRange(2, 5).Draw(t, "chain_size"))
	for i := range xs {
		if rapid.Bool().Draw(t, "chain_mandated") {
			xs[i] = plain(s.newID(), mWallet1, rapid.SampledFrom([]uint64{mWallet2, mPlain}).Draw(t, "chain_credit"),
				amounts.Draw(t, "chain_amount"))
			if rapid.IntRange(0, 3).Draw(t, "chain_pending") == 0 {
				xs[i].Flags = ledger.Pending
			}
		} else {
			xs[i], _ = s.drawTransfer(t)
		}
		xs[i].Flags |= ledger.Linked
	}
	xs[len(xs)-1].Flags &^= ledger.Linked
	// A transfer after the chain sees what the chain left behind.
	x := plain(s.newID(), mWallet1, mWallet3, amounts.Draw(t, "after_chain_amount"))
	return append(xs, x)
}

func (s *machine) drawBatch(t *rapid.T) []ledger.Transfer {
	n := rapid.IntRange(1, 6).Draw(t, "batch_size")
	xs := make([]ledger.Transfer, n)
	for i := range xs {
		var fresh bool
		xs[i], fresh = s.drawTransfer(t)
		// New transfers chain at random, and rarely leave the batch's
		// last chain open.
		if !fresh {
			continue
		}
		odds := 3
		if i == n-1 {
			odds = 12
		}
		if rapid.IntRange(0, odds).Draw(t, "linked") == 0 {
			xs[i].Flags |= ledger.Linked
		}
	}
	return xs
}

// accounts reads every account and checks conservation and wallets.
func (s *machine) accounts(t *rapid.T) []ledger.Account {
	as := mustLookupAccounts(t, s.l, modelAccounts...)
	var posted, pending int64
	for _, a := range as {
		b := a.Balance()
		posted += b.Posted
		pending += b.Pending
		if a.Flags&ledger.DebitsMustNotExceedCredits != 0 && b.Available < 0 {
			t.Fatalf("wallet %s below zero: %+v", a.ID, a)
		}
	}
	if posted != 0 || pending != 0 {
		t.Fatalf("balances sum to %d posted, %d pending", posted, pending)
	}
	return as
}

func (s *machine) check(t *rapid.T) {
	s.m.sweep()
	got := s.accounts(t)
	var want []ledger.Account
	for _, n := range modelAccounts {
		want = append(want, s.m.accounts[id(n)])
	}
	// Compare before diffing: cmp is slow, and this runs every step.
	if !slices.Equal(want, got) {
		t.Fatalf("accounts (-model +ledger):\n%s", cmp.Diff(want, got))
	}
	for x, e := range s.m.transfers {
		got, err := s.l.LookupTransfer(t.Context(), x)
		if err != nil {
			t.Fatalf("acknowledged transfer %s: %v", x, err)
		}
		if got != e.stored {
			t.Fatalf("transfer %s (-model +ledger):\n%s", x, cmp.Diff(e.stored, got))
		}
	}
	for _, pid := range s.reserved {
		got, err := s.l.PendingStatus(t.Context(), pid)
		if err != nil {
			t.Fatalf("pending status: %v", err)
		}
		if got != s.m.status[pid] {
			t.Fatalf("reservation %s is %s, model says %s", pid, got, s.m.status[pid])
		}
	}
	mustCheckInvariants(t, s.l)
}

func (s *machine) history(t *rapid.T) {
	if s.opts.NoProjection {
		t.Skip("no projection in this run")
	}
	account := s.drawAccount(t, "history_account")
	limit := rapid.IntRange(1, 20).Draw(t, "history_limit")
	var want []ledger.Transfer
	for _, e := range s.m.transfers {
		if e.stored.DebitAccountID == id(account) || e.stored.CreditAccountID == id(account) {
			want = append(want, e.stored)
		}
	}
	slices.SortFunc(want, func(a, b ledger.Transfer) int { return int(a.Timestamp - b.Timestamp) })
	var got []ledger.Transfer
	page := ledger.TransferPage{Limit: limit}
	for {
		xs, err := s.l.AccountTransfers(t.Context(), id(account), page)
		if err != nil {
			t.Fatalf("account transfers: %v", err)
		}
		if len(xs) == 0 {
			break
		}
		got = append(got, xs...)
		page.After = xs[len(xs)-1].Timestamp
	}
	if !slices.Equal(want, got) {
		t.Fatalf("history of %d (-model +ledger):\n%s", account, cmp.Diff(want, got))
	}
}

func TestStateMachine(t *testing.T) {
	base := t.TempDir()
	rapid.Check(t, func(t *rapid.T) {
		s := newMachine(t, base)
		t.Repeat(map[string]func(*rapid.T){
			"batch":   func(t *rapid.T) { s.submit(t, s.drawBatch(t)) },
			"resolve": func(t *rapid.T) { s.submit(t, s.drawResolutions(t)) },
			"chain":   func(t *rapid.T) { s.submit(t, s.drawChain(t)) },
			"retry": func(t *rapid.T) {
				// Resubmit an earlier batch exactly. The model says what
				// each transfer gets; if every one was committed before,
				// nothing may change, not even the journal.
				xs := rapid.SampledFrom(s.batches).Draw(t, "batch")
				mustTick(t, s.l)
				s.m.sweep()
				before := mustLookupAccounts(t, s.l, modelAccounts...)
				size := mustFileSize(t, journalPath(s.dir))
				res := s.submit(t, xs)
				if slices.ContainsFunc(res, func(r ledger.Result) bool { return r != ledger.Exists }) {
					return
				}
				if diff := cmp.Diff(before, mustLookupAccounts(t, s.l, modelAccounts...)); diff != "" {
					t.Fatalf("an idempotent retry changed balances (-before +after):\n%s", diff)
				}
				if got := mustFileSize(t, journalPath(s.dir)); got != size {
					t.Fatalf("an idempotent retry grew the journal from %d to %d bytes", size, got)
				}
			},
			"advance": func(t *rapid.T) {
				// Move the clock, and maybe tick before anything else can
				// expire what fell due.
				s.clock.Advance(time.Duration(rapid.Int64Range(0, 12).Draw(t, "advance")))
				s.m.now = s.clock.Now().UnixNano()
				if rapid.Bool().Draw(t, "tick") {
					want := s.m.sweep()
					if got := mustTick(t, s.l); got != want {
						t.Fatalf("tick expired %d, model says %d", got, want)
					}
				}
			},
			"mandate": func(t *rapid.T) {
				md := ledger.Mandate{AccountID: id(mWallet1)}
				if rapid.IntRange(0, 5).Draw(t, "mandate_removed") > 0 {
					md.MaxPerTransfer = rapid.SampledFrom([]uint64{0, 50, 300}).Draw(t, "mandate_max")
					md.Budget = rapid.SampledFrom([]uint64{0, 100, 250, 500}).Draw(t, "mandate_budget")
					md.Window = time.Duration(rapid.Int64Range(1, 10).Draw(t, "mandate_window"))
				}
				s.setMandate(t, md)
			},
			"reopen": func(t *rapid.T) {
				mustClose(t, s.l)
				rep, err := ledger.Verify(s.dir)
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				want := ledger.Report{Records: rep.Records, Events: s.m.events, Accounts: len(modelAccounts),
					Pending: len(s.m.pending), Head: rep.Head}
				if diff := cmp.Diff(want, rep); diff != "" {
					t.Fatalf("verify report (-model +ledger):\n%s", diff)
				}
				s.l = mustOpen(t, s.dir, s.opts)
			},
			"history": func(t *rapid.T) { s.history(t) },
			"":        func(t *rapid.T) { s.check(t) },
		})
	})
}
