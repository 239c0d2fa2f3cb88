// Package ledgertest is the conformance suite for the ledger's semantics.
// Every ledger (the embedded one in package ledger, the PostgreSQL one in
// package postgres) runs the same cases, so that the engine can rely on
// one contract whichever holds its money: the result code of every kind
// of bad transfer, linked chains that commit all or nothing, two-phase
// transfers that resolve exactly once, expiry on an injected clock,
// idempotent retries, mandates, and conservation under concurrent
// writers.
//
// What the suite asserts is what every ledger guarantees; behaviour one
// ledger adds (the embedded ledger's journal and restarts, the global
// order of its timestamps) is tested beside that ledger.
package ledgertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/ledger"
)

// Ledger is what the suite drives: the calls the market engine makes of a
// ledger (engine.Ledger), and those a test needs besides.
type Ledger interface {
	CreateAccounts(ctx context.Context, accounts []ledger.Account) ([]ledger.Result, error)
	CreateTransfers(ctx context.Context, transfers []ledger.Transfer) ([]ledger.Result, error)
	LookupAccounts(ctx context.Context, ids []ledger.ID) ([]ledger.Account, error)
	LookupTransfer(ctx context.Context, id ledger.ID) (ledger.Transfer, error)
	PendingStatus(ctx context.Context, id ledger.ID) (ledger.PendingStatus, error)
	SetMandate(ctx context.Context, m ledger.Mandate) error
	Mandate(ctx context.Context, account ledger.ID) (ledger.Mandate, bool, error)
	// Tick expires reservations whose timeout has passed on the clock and
	// returns how many it expired.
	Tick(ctx context.Context) (int, error)
	// CheckInvariants returns an error when credits are not conserved, a
	// wallet is below zero, or pending counters do not match the open
	// reservations.
	CheckInvariants(ctx context.Context) error
}

// Opener returns a new, empty ledger whose clock is now, and closes it
// when the test ends. The suite moves the clock by hand, so that expiry
// and mandate windows are exact.
type Opener func(t *testing.T, now func() time.Time) Ledger

// Run runs the conformance suite.
func Run(t *testing.T, open Opener) {
	for _, g := range []struct {
		name string
		run  func(t *testing.T, open Opener)
	}{
		{"CreateAccountResults", testCreateAccountResults},
		{"TransferResults", testTransferResults},
		{"Batches", testBatches},
		{"Lookups", testLookups},
		{"TwoPhase", testTwoPhase},
		{"Mandates", testMandates},
		{"Timestamps", testTimestamps},
		{"Concurrency", testConcurrency},
	} {
		t.Run(g.name, func(t *testing.T) { g.run(t, open) })
	}
}

// Clock is a fake clock for an Opener. Tests move it by hand.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// Epoch is where every fixture's clock starts.
var Epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// NewClock returns a clock at Epoch.
func NewClock() *Clock { return &Clock{now: Epoch} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Set sets the clock.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// id names accounts and transfers by small numbers.
func id(n uint64) ledger.ID { return ledger.IDFromUint64(n) }

// The fixture's accounts. Wallets may not go below zero; the treasury and
// the issuer may, and the sink is a plain account for overflow cases.
const (
	treasury = 1
	alice    = 2
	bob      = 3
	carol    = 4
	sink     = 5
	issuer   = 6
)

var fixtureAccounts = []uint64{treasury, alice, bob, carol, sink, issuer}

const aliceFunds = 1000

func plain(n, from, to, amount uint64) ledger.Transfer {
	return ledger.Transfer{ID: id(n), DebitAccountID: id(from), CreditAccountID: id(to), Amount: amount}
}

func pending(n, from, to, amount uint64, timeout time.Duration) ledger.Transfer {
	return ledger.Transfer{ID: id(n), DebitAccountID: id(from), CreditAccountID: id(to), Amount: amount,
		Timeout: timeout, Flags: ledger.Pending}
}

func post(n, pid, amount uint64) ledger.Transfer {
	return ledger.Transfer{ID: id(n), PendingID: id(pid), Amount: amount, Flags: ledger.PostPending}
}

func void(n, pid uint64) ledger.Transfer {
	return ledger.Transfer{ID: id(n), PendingID: id(pid), Flags: ledger.VoidPending}
}

func linked(t ledger.Transfer) ledger.Transfer {
	t.Flags |= ledger.Linked
	return t
}

func with(t ledger.Transfer, f func(*ledger.Transfer)) ledger.Transfer {
	f(&t)
	return t
}

// fixture is a fresh ledger on a fake clock with the fixture's accounts
// and alice funded from the treasury by transfer 1.
type fixture struct {
	l     Ledger
	clock *Clock
}

func newFixture(t *testing.T, open Opener) *fixture {
	t.Helper()
	f := &fixture{clock: NewClock()}
	f.l = open(t, f.clock.Now)
	var as []ledger.Account
	for _, n := range fixtureAccounts {
		a := ledger.Account{ID: id(n), Code: 1}
		if n == alice || n == bob || n == carol {
			a.Flags = ledger.DebitsMustNotExceedCredits
		}
		as = append(as, a)
	}
	mustCreateAccounts(t, f.l, as...)
	mustTransfer(t, f.l, plain(1, treasury, alice, aliceFunds))
	return f
}

func mustCreateAccounts(t *testing.T, l Ledger, accounts ...ledger.Account) {
	t.Helper()
	res, err := l.CreateAccounts(t.Context(), accounts)
	if err != nil {
		t.Fatalf("create accounts: %v", err)
	}
	for i, r := range res {
		if r != ledger.OK {
			t.Fatalf("create account %s: %s", accounts[i].ID, r)
		}
	}
}

func createTransfers(t *testing.T, l Ledger, xs ...ledger.Transfer) []ledger.Result {
	t.Helper()
	res, err := l.CreateTransfers(t.Context(), xs)
	if err != nil {
		t.Fatalf("create transfers: %v", err)
	}
	if len(res) != len(xs) {
		t.Fatalf("create transfers: %d results for %d transfers", len(res), len(xs))
	}
	return res
}

// mustTransfer applies transfers that must all commit now.
func mustTransfer(t *testing.T, l Ledger, xs ...ledger.Transfer) {
	t.Helper()
	for i, r := range createTransfers(t, l, xs...) {
		if r != ledger.OK {
			t.Fatalf("transfer %s: %s", xs[i].ID, r)
		}
	}
}

func codes(rs []ledger.Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

func wantResults(t *testing.T, l Ledger, xs []ledger.Transfer, want ...ledger.Result) {
	t.Helper()
	if diff := cmp.Diff(codes(want), codes(createTransfers(t, l, xs...))); diff != "" {
		t.Fatalf("results (-want +got):\n%s", diff)
	}
}

func mustLookupAccounts(t *testing.T, l Ledger, ns ...uint64) []ledger.Account {
	t.Helper()
	ids := make([]ledger.ID, len(ns))
	for i, n := range ns {
		ids[i] = id(n)
	}
	as, err := l.LookupAccounts(t.Context(), ids)
	if err != nil {
		t.Fatalf("lookup accounts: %v", err)
	}
	return as
}

func mustAccount(t *testing.T, l Ledger, n uint64) ledger.Account {
	t.Helper()
	as := mustLookupAccounts(t, l, n)
	if len(as) != 1 {
		t.Fatalf("account %d not found", n)
	}
	return as[0]
}

func mustLookupTransfer(t *testing.T, l Ledger, n uint64) ledger.Transfer {
	t.Helper()
	x, err := l.LookupTransfer(t.Context(), id(n))
	if err != nil {
		t.Fatalf("lookup transfer %d: %v", n, err)
	}
	return x
}

func wantNoTransfer(t *testing.T, l Ledger, n ledger.ID) {
	t.Helper()
	if _, err := l.LookupTransfer(t.Context(), n); err != ledger.ErrNotFound {
		t.Errorf("transfer %s: got %v, want ErrNotFound", n, err)
	}
}

func wantStatus(t *testing.T, l Ledger, n uint64, want ledger.PendingStatus) {
	t.Helper()
	got, err := l.PendingStatus(t.Context(), id(n))
	if err != nil {
		t.Fatalf("pending status %d: %v", n, err)
	}
	if got != want {
		t.Fatalf("pending status of %d: got %s, want %s", n, got, want)
	}
}

func mustTick(t *testing.T, l Ledger) int {
	t.Helper()
	n, err := l.Tick(t.Context())
	if err != nil {
		t.Fatalf("tick: %v", err)
	}
	return n
}

func mustCheckInvariants(t *testing.T, l Ledger) {
	t.Helper()
	if err := l.CheckInvariants(t.Context()); err != nil {
		t.Fatalf("invariants: %v", err)
	}
}

func mustSetMandate(t *testing.T, l Ledger, m ledger.Mandate) {
	t.Helper()
	if err := l.SetMandate(t.Context(), m); err != nil {
		t.Fatalf("set mandate: %v", err)
	}
}

// counters is an account's four counters, for compact expectations.
type counters struct{ DebitsPending, DebitsPosted, CreditsPending, CreditsPosted uint64 }

func countersOf(a ledger.Account) counters {
	return counters{a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted}
}

func wantCounters(t *testing.T, l Ledger, n uint64, want counters) {
	t.Helper()
	if diff := cmp.Diff(want, countersOf(mustAccount(t, l, n))); diff != "" {
		t.Fatalf("account %d counters (-want +got):\n%s", n, diff)
	}
}
