package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/ledgertest"
)

// tester is what the helpers need from *testing.T and *rapid.T alike.
type tester interface {
	Helper()
	Cleanup(func())
	Context() context.Context
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// clock is a fake clock for Options.Now. Tests move it by hand, so expiry
// and mandate windows are exact.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func newClock() *clock { return &clock{now: epoch} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
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

// mustOpen opens the ledger in dir and closes it when the test ends.
func mustOpen(t tester, dir string, opts ledger.Options) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(dir, opts)
	if err != nil {
		t.Fatalf("open ledger: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func mustClose(t tester, l *ledger.Ledger) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("close ledger: %v", err)
	}
}

func mustCreateAccounts(t tester, l *ledger.Ledger, accounts ...ledger.Account) {
	t.Helper()
	res, err := l.CreateAccounts(t.Context(), accounts)
	if err != nil {
		t.Fatalf("create accounts: %v", err)
	}
	for i, r := range res {
		if r != ledger.OK {
			t.Fatalf("create account %d: %s", i, r)
		}
	}
}

// createTransfers submits a batch and fails the test only on an error.
func createTransfers(t tester, l *ledger.Ledger, xs ...ledger.Transfer) []ledger.Result {
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

// mustTransfer submits a batch that must commit whole.
func mustTransfer(t tester, l *ledger.Ledger, xs ...ledger.Transfer) {
	t.Helper()
	for i, r := range createTransfers(t, l, xs...) {
		if r != ledger.OK {
			t.Fatalf("transfer %d (%s): %s", i, xs[i].ID, r)
		}
	}
}

// codes spells results out, so that diffs name them.
func codes(rs []ledger.Result) []string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return s
}

func wantResults(t tester, l *ledger.Ledger, xs []ledger.Transfer, want ...ledger.Result) {
	t.Helper()
	got := createTransfers(t, l, xs...)
	if diff := cmp.Diff(codes(want), codes(got)); diff != "" {
		t.Fatalf("results (-want +got):\n%s", diff)
	}
}

func mustLookupAccounts(t tester, l *ledger.Ledger, ns ...uint64) []ledger.Account {
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

func mustAccount(t tester, l *ledger.Ledger, n uint64) ledger.Account {
	t.Helper()
	as := mustLookupAccounts(t, l, n)
	if len(as) != 1 {
		t.Fatalf("account %d not found", n)
	}
	return as[0]
}

func mustLookupTransfer(t tester, l *ledger.Ledger, n uint64) ledger.Transfer {
	t.Helper()
	x, err := l.LookupTransfer(t.Context(), id(n))
	if err != nil {
		t.Fatalf("lookup transfer %d: %v", n, err)
	}
	return x
}

func mustPendingStatus(t tester, l *ledger.Ledger, n uint64) ledger.PendingStatus {
	t.Helper()
	st, err := l.PendingStatus(t.Context(), id(n))
	if err != nil {
		t.Fatalf("pending status %d: %v", n, err)
	}
	return st
}

func wantStatus(t tester, l *ledger.Ledger, n uint64, want ledger.PendingStatus) {
	t.Helper()
	if got := mustPendingStatus(t, l, n); got != want {
		t.Fatalf("pending %d: status %s, want %s", n, got, want)
	}
}

func mustTick(t tester, l *ledger.Ledger) int {
	t.Helper()
	n, err := l.Tick(t.Context())
	if err != nil {
		t.Fatalf("tick: %v", err)
	}
	return n
}

func mustCheckInvariants(t tester, l *ledger.Ledger) {
	t.Helper()
	if err := l.CheckInvariants(t.Context()); err != nil {
		t.Fatalf("invariants: %v", err)
	}
}

func mustSetMandate(t tester, l *ledger.Ledger, m ledger.Mandate) {
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

func wantCounters(t tester, l *ledger.Ledger, n uint64, want counters) {
	t.Helper()
	if diff := cmp.Diff(want, countersOf(mustAccount(t, l, n))); diff != "" {
		t.Fatalf("account %d counters (-want +got):\n%s", n, diff)
	}
}

// fixture is a fresh ledger on a fake clock with the fixture's accounts
// and alice funded from the treasury by transfer 1.
type fixture struct {
	l     *ledger.Ledger
	clock *clock
	dir   string
}

func newFixture(t tester, dir string) *fixture {
	t.Helper()
	f := &fixture{clock: newClock(), dir: dir}
	f.l = mustOpen(t, dir, ledger.Options{Now: f.clock.Now})
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

// reopen closes the fixture's ledger and opens its directory again.
func (f *fixture) reopen(t tester) {
	t.Helper()
	mustClose(t, f.l)
	f.l = mustOpen(t, f.dir, ledger.Options{Now: f.clock.Now})
}

// TestConformanceAcrossRestarts runs the conformance suite against an
// embedded ledger that is closed, verified and opened again after every
// call that writes, so that whatever the suite checks it reads from a
// ledger replayed from its journal: what was acknowledged survives a
// restart, and what failed left nothing behind for replay to trip on.
// The suite reads nothing from the projection, so it is left off: opening
// it would be most of the cost. The concurrency cases need a ledger nobody
// closes under them; TestConformance runs those.
func TestConformanceAcrossRestarts(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T, now func() time.Time) ledgertest.Ledger {
		if strings.Contains(t.Name(), "/Concurrency/") {
			t.Skip("restarts need a quiet ledger; TestConformance runs the concurrency cases")
		}
		r := &restarting{dir: t.TempDir(), opts: ledger.Options{Now: now, NoProjection: true}, known: map[ledger.ID]bool{}}
		r.l = mustOpen(t, r.dir, r.opts)
		t.Cleanup(func() { r.l.Close() })
		return r
	})
}

// restarting is an embedded ledger restarted after every call that
// writes: creating accounts or transfers, setting a mandate, ticking. It
// keeps the IDs of the accounts it was asked to create, to check that a
// restart leaves every one of them as it was.
type restarting struct {
	l        *ledger.Ledger
	dir      string
	opts     ledger.Options
	accounts []ledger.ID
	known    map[ledger.ID]bool
}

// restarted restarts r after a call that returned v and err, and returns
// them, joined with what went wrong with the restart if anything did.
func restarted[T any](ctx context.Context, r *restarting, v T, err error) (T, error) {
	if rerr := r.restart(ctx); rerr != nil {
		return v, errors.Join(err, rerr)
	}
	return v, err
}

func (r *restarting) restart(ctx context.Context) error {
	before, err := r.lookupAll(ctx)
	if err != nil {
		return err
	}
	if err := r.l.Close(); err != nil {
		return fmt.Errorf("restart: close: %w", err)
	}
	if rep, err := ledger.Verify(r.dir); err != nil {
		return fmt.Errorf("restart: verify: %w (%+v)", err, rep)
	}
	l, err := ledger.Open(r.dir, r.opts)
	if err != nil {
		return fmt.Errorf("restart: open: %w", err)
	}
	r.l = l
	after, err := r.lookupAll(ctx)
	if err != nil {
		return err
	}
	if !slices.Equal(before, after) { // cmp is slow, and this runs after every call
		return fmt.Errorf("restart: accounts changed (-before +after):\n%s", cmp.Diff(before, after))
	}
	return nil
}

func (r *restarting) lookupAll(ctx context.Context) ([]ledger.Account, error) {
	var as []ledger.Account
	for ids := range slices.Chunk(r.accounts, ledger.MaxBatch) {
		got, err := r.l.LookupAccounts(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("restart: lookup accounts: %w", err)
		}
		as = append(as, got...)
	}
	return as, nil
}

func (r *restarting) CreateAccounts(ctx context.Context, accounts []ledger.Account) ([]ledger.Result, error) {
	for _, a := range accounts {
		if !a.ID.IsZero() && !r.known[a.ID] {
			r.known[a.ID] = true
			r.accounts = append(r.accounts, a.ID)
		}
	}
	res, err := r.l.CreateAccounts(ctx, accounts)
	return restarted(ctx, r, res, err)
}

func (r *restarting) CreateTransfers(ctx context.Context, transfers []ledger.Transfer) ([]ledger.Result, error) {
	res, err := r.l.CreateTransfers(ctx, transfers)
	return restarted(ctx, r, res, err)
}

func (r *restarting) LookupAccounts(ctx context.Context, ids []ledger.ID) ([]ledger.Account, error) {
	return r.l.LookupAccounts(ctx, ids)
}

func (r *restarting) LookupTransfer(ctx context.Context, id ledger.ID) (ledger.Transfer, error) {
	return r.l.LookupTransfer(ctx, id)
}

func (r *restarting) PendingStatus(ctx context.Context, id ledger.ID) (ledger.PendingStatus, error) {
	return r.l.PendingStatus(ctx, id)
}

func (r *restarting) SetMandate(ctx context.Context, m ledger.Mandate) error {
	_, err := restarted(ctx, r, struct{}{}, r.l.SetMandate(ctx, m))
	return err
}

func (r *restarting) Mandate(ctx context.Context, account ledger.ID) (ledger.Mandate, bool, error) {
	return r.l.Mandate(ctx, account)
}

func (r *restarting) Tick(ctx context.Context) (int, error) {
	n, err := r.l.Tick(ctx)
	return restarted(ctx, r, n, err)
}

func (r *restarting) CheckInvariants(ctx context.Context) error {
	return r.l.CheckInvariants(ctx)
}

func TestResultCodesAreStable(t *testing.T) {
	// Clients store and compare these codes: numbers and names are
	// append-only.
	want := []string{
		"ok", "linked_event_failed", "linked_event_chain_open", "exists", "exists_with_different_fields",
		"id_must_not_be_zero", "flags_invalid", "account_counters_must_be_zero", "account_not_found",
		"same_account", "zero_amount", "insufficient_funds", "pending_id_must_be_zero",
		"pending_id_must_not_be_zero", "pending_id_must_be_different", "timeout_reserved_for_pending",
		"pending_not_found", "pending_transfer_not_pending", "pending_transfer_has_different_accounts",
		"pending_transfer_has_different_amount", "pending_already_posted", "pending_already_voided",
		"pending_expired", "exceeds_pending_amount", "mandate_violated", "overflow",
	}
	var got []string
	for r := range ledger.Result(len(want)) {
		text, err := r.MarshalText()
		if err != nil || string(text) != r.String() {
			t.Errorf("%d: MarshalText %q, %v; String %q", r, text, err, r)
		}
		got = append(got, r.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("result codes (-want +got):\n%s", diff)
	}
	if got := ledger.Result(len(want)).String(); got != "result(26)" {
		t.Errorf("an unknown result reads %q", got)
	}
	if !ledger.Exists.Committed() || !ledger.OK.Committed() || ledger.LinkedEventFailed.Committed() {
		t.Error("Committed holds for exactly OK and Exists")
	}
}

func TestClosedLedgerRefusesCalls(t *testing.T) {
	l := mustOpen(t, t.TempDir(), ledger.Options{})
	mustCreateAccounts(t, l, ledger.Account{ID: id(1)}, ledger.Account{ID: id(2)})
	mustTransfer(t, l, plain(3, 1, 2, 1))
	mustClose(t, l)
	// Bounded, so that a call that would wait forever fails instead.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := l.AccountTransfers(ctx, id(1), ledger.TransferPage{}); !errors.Is(err, ledger.ErrClosed) {
		t.Errorf("account transfers after close: got %v, want ErrClosed", err)
	}
	if _, err := l.CreateTransfers(t.Context(), []ledger.Transfer{plain(1, 1, 2, 1)}); !errors.Is(err, ledger.ErrClosed) {
		t.Errorf("create transfers after close: got %v, want ErrClosed", err)
	}
	if _, err := l.LookupAccounts(t.Context(), []ledger.ID{id(1)}); !errors.Is(err, ledger.ErrClosed) {
		t.Errorf("lookup after close: got %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestTwoPhase(t *testing.T) {
	t.Run("ExpiryWaitsForNoTick", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustTransfer(t, f.l, pending(10, alice, bob, 300, time.Second))
		f.clock.Advance(time.Hour)
		// Any request expires what is due before it is applied.
		wantStatus(t, f.l, 10, ledger.StatusExpired)
		wantCounters(t, f.l, alice, counters{CreditsPosted: aliceFunds})
	})
	t.Run("TickExpiresMoreThanABatch", func(t *testing.T) {
		// Each request expires at most a batch's worth, to bound the
		// record; Tick must still expire everything that is due.
		f := newFixture(t, t.TempDir())
		const n = ledger.MaxBatch + 10
		mustTransfer(t, f.l, plain(2, treasury, bob, n))
		var batch []ledger.Transfer
		for i := range uint64(n) {
			batch = append(batch, pending(100+i, bob, carol, 1, time.Minute))
			if len(batch) == ledger.MaxBatch || i == n-1 {
				mustTransfer(t, f.l, batch...)
				batch = nil
			}
		}
		f.clock.Advance(time.Hour)
		if got := mustTick(t, f.l); got != n {
			t.Errorf("tick expired %d, want all %d", got, n)
		}
		wantStatus(t, f.l, 100+n-1, ledger.StatusExpired)
		wantCounters(t, f.l, bob, counters{CreditsPosted: n})
	})
	t.Run("ExpiryIntervalExpiresInTheBackground", func(t *testing.T) {
		c := newClock()
		dir := t.TempDir()
		l := mustOpen(t, dir, ledger.Options{Now: c.Now, ExpiryInterval: time.Millisecond})
		mustCreateAccounts(t, l, ledger.Account{ID: id(treasury)}, ledger.Account{ID: id(bob)})
		mustTransfer(t, l, pending(10, treasury, bob, 5, time.Minute))
		c.Advance(2 * time.Minute)
		// Any request of ours would expire the reservation itself, so
		// watch the journal instead: only the ticker's requests run.
		waitFor(t, func() bool {
			rep, err := ledger.Verify(dir)
			return err == nil && rep.Pending == 0
		})
		wantStatus(t, l, 10, ledger.StatusExpired)
		wantCounters(t, l, bob, counters{})
	})
	t.Run("ExpiredReservationSurvivesRestartAsExpired", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustTransfer(t, f.l, pending(10, alice, bob, 300, time.Minute), pending(11, alice, bob, 200, time.Hour))
		f.reopen(t)
		wantStatus(t, f.l, 10, ledger.StatusPending)
		f.clock.Advance(2 * time.Minute)
		if n := mustTick(t, f.l); n != 1 {
			t.Fatalf("tick after restart expired %d, want 1", n)
		}
		f.reopen(t)
		wantStatus(t, f.l, 10, ledger.StatusExpired)
		wantStatus(t, f.l, 11, ledger.StatusPending)
		wantCounters(t, f.l, alice, counters{DebitsPending: 200, CreditsPosted: aliceFunds})
		f.clock.Advance(time.Hour)
		if n := mustTick(t, f.l); n != 1 {
			t.Fatalf("second tick expired %d, want 1", n)
		}
	})
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline. It is for effects of background goroutines only.
func waitFor(t tester, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met before the deadline")
		}
		time.Sleep(time.Millisecond)
	}
}
