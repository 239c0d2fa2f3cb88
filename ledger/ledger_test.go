package ledger_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/ledger"
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

func (c *clock) Set(t time.Time) {
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

// withTransfer returns t changed by f, for cases that differ in one field.
func withTransfer(t ledger.Transfer, f func(*ledger.Transfer)) ledger.Transfer {
	f(&t)
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

func wantNoTransfer(t tester, l *ledger.Ledger, n ledger.ID) {
	t.Helper()
	if x, err := l.LookupTransfer(t.Context(), n); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("lookup transfer %s: got %+v, %v; want ErrNotFound", n, x, err)
	}
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

func TestCreateAccountResults(t *testing.T) {
	existing := ledger.Account{ID: id(1), UserData: id(7), Code: 3, Flags: ledger.DebitsMustNotExceedCredits}
	tests := []struct {
		name    string
		account ledger.Account
		want    ledger.Result
	}{
		{"NewAccountIsOK", ledger.Account{ID: id(2), Code: 3}, ledger.OK},
		{"SameFieldsIsExists", existing, ledger.Exists},
		{"SameFieldsWithCallerTimestampIsExists", withAccount(existing, func(a *ledger.Account) { a.Timestamp = 99 }), ledger.Exists},
		{"DifferentCodeIsExistsWithDifferentFields", withAccount(existing, func(a *ledger.Account) { a.Code = 4 }), ledger.ExistsWithDifferentFields},
		{"DifferentFlagsIsExistsWithDifferentFields", withAccount(existing, func(a *ledger.Account) { a.Flags = 0 }), ledger.ExistsWithDifferentFields},
		{"DifferentUserDataIsExistsWithDifferentFields", withAccount(existing, func(a *ledger.Account) { a.UserData = id(8) }), ledger.ExistsWithDifferentFields},
		{"ZeroIDIsIDMustNotBeZero", ledger.Account{Code: 3}, ledger.IDMustNotBeZero},
		{"UnknownFlagIsFlagsInvalid", ledger.Account{ID: id(2), Flags: 1 << 9}, ledger.FlagsInvalid},
		{"NonZeroCounterIsAccountCountersMustBeZero", ledger.Account{ID: id(2), CreditsPosted: 5}, ledger.AccountCountersMustBeZero},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := mustOpen(t, t.TempDir(), ledger.Options{})
			mustCreateAccounts(t, l, existing)
			before := mustLookupAccounts(t, l, 1)
			res, err := l.CreateAccounts(t.Context(), []ledger.Account{tc.account})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{tc.want.String()}, codes(res)); diff != "" {
				t.Fatalf("results (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, mustLookupAccounts(t, l, 1)); diff != "" {
				t.Errorf("existing account changed (-before +after):\n%s", diff)
			}
			created := mustLookupAccounts(t, l, 2)
			if tc.want == ledger.OK {
				if len(created) != 1 {
					t.Fatalf("created account not found")
				}
				want := []ledger.Account{{ID: id(2), Code: 3, Timestamp: created[0].Timestamp}}
				if diff := cmp.Diff(want, created); diff != "" {
					t.Errorf("created account (-want +got):\n%s", diff)
				}
				if created[0].Timestamp <= before[0].Timestamp {
					t.Errorf("timestamp %d does not follow %d", created[0].Timestamp, before[0].Timestamp)
				}
			} else if len(created) != 0 {
				t.Errorf("rejected account was created: %+v", created)
			}
		})
	}
}

// withAccount returns a changed by f, for cases that differ in one field.
func withAccount(a ledger.Account, f func(*ledger.Account)) ledger.Account {
	f(&a)
	return a
}

// TestTransferResults submits one batch per case to a fresh fixture and
// checks each transfer's result code. A transfer that did not commit must
// leave no trace, and a batch in which nothing committed must leave every
// balance as it was.
func TestTransferResults(t *testing.T) {
	const maxI = math.MaxInt64
	type fx = fixture
	tests := []struct {
		name    string
		setup   []ledger.Transfer // committed before the batch
		prepare func(t *testing.T, f *fx)
		batch   []ledger.Transfer
		want    []ledger.Result
		check   func(t *testing.T, f *fx)
	}{
		{name: "PlainTransferIsOK",
			batch: []ledger.Transfer{plain(10, alice, bob, 300)},
			want:  []ledger.Result{ledger.OK},
			check: func(t *testing.T, f *fx) {
				wantCounters(t, f.l, alice, counters{DebitsPosted: 300, CreditsPosted: aliceFunds})
				wantCounters(t, f.l, bob, counters{CreditsPosted: 300})
			}},
		{name: "SpendingTheWholeBalanceIsOK",
			batch: []ledger.Transfer{plain(10, alice, bob, aliceFunds)},
			want:  []ledger.Result{ledger.OK}},
		{name: "TreasuryMayGoNegative",
			batch: []ledger.Transfer{plain(10, treasury, bob, 1<<40)},
			want:  []ledger.Result{ledger.OK}},
		{name: "RetryWithSameFieldsIsExists",
			setup: []ledger.Transfer{plain(10, alice, bob, 300)},
			batch: []ledger.Transfer{plain(10, alice, bob, 300)},
			want:  []ledger.Result{ledger.Exists}},
		{name: "RetryAfterTheFundsAreSpentIsStillExists",
			setup: []ledger.Transfer{plain(10, alice, bob, aliceFunds)},
			batch: []ledger.Transfer{plain(10, alice, bob, aliceFunds)},
			want:  []ledger.Result{ledger.Exists}},
		{name: "RetryWithCallerTimestampIsExists",
			setup: []ledger.Transfer{plain(10, alice, bob, 300)},
			batch: []ledger.Transfer{withTransfer(plain(10, alice, bob, 300), func(x *ledger.Transfer) { x.Timestamp = 5 })},
			want:  []ledger.Result{ledger.Exists}},
		{name: "IDReusedWithOtherAmountIsExistsWithDifferentFields",
			setup: []ledger.Transfer{plain(10, alice, bob, 300)},
			batch: []ledger.Transfer{plain(10, alice, bob, 301)},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "IDReusedWithOtherCreditAccountIsExistsWithDifferentFields",
			setup: []ledger.Transfer{plain(10, alice, bob, 300)},
			batch: []ledger.Transfer{plain(10, alice, carol, 300)},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "IDReusedWithOtherDebitAccountIsExistsWithDifferentFields",
			setup: []ledger.Transfer{plain(10, alice, bob, 300)},
			batch: []ledger.Transfer{plain(10, treasury, bob, 300)},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "IDReusedWithOtherCodeIsExistsWithDifferentFields",
			setup: []ledger.Transfer{plain(10, alice, bob, 300)},
			batch: []ledger.Transfer{withTransfer(plain(10, alice, bob, 300), func(x *ledger.Transfer) { x.Code = 9 })},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "IDReusedWithOtherUserDataIsExistsWithDifferentFields",
			setup: []ledger.Transfer{plain(10, alice, bob, 300)},
			batch: []ledger.Transfer{withTransfer(plain(10, alice, bob, 300), func(x *ledger.Transfer) { x.UserData = id(9) })},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "IDReusedAsPendingIsExistsWithDifferentFields",
			setup: []ledger.Transfer{plain(10, alice, bob, 300)},
			batch: []ledger.Transfer{pending(10, alice, bob, 300, 0)},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "IDReusedWithOtherTimeoutIsExistsWithDifferentFields",
			setup: []ledger.Transfer{pending(10, alice, bob, 300, time.Hour)},
			batch: []ledger.Transfer{pending(10, alice, bob, 300, time.Minute)},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "IDOfAPendingReusedForItsPostIsExistsWithDifferentFields",
			setup: []ledger.Transfer{pending(10, alice, bob, 300, 0)},
			batch: []ledger.Transfer{post(10, 10, 0)},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "SameIDTwiceInABatchIsOKThenExists",
			batch: []ledger.Transfer{plain(10, alice, bob, 300), plain(10, alice, bob, 300)},
			want:  []ledger.Result{ledger.OK, ledger.Exists},
			check: func(t *testing.T, f *fx) {
				wantCounters(t, f.l, bob, counters{CreditsPosted: 300})
			}},
		{name: "SameIDTwiceInABatchWithOtherAmountIsOKThenExistsWithDifferentFields",
			batch: []ledger.Transfer{plain(10, alice, bob, 300), plain(10, alice, bob, 200)},
			want:  []ledger.Result{ledger.OK, ledger.ExistsWithDifferentFields},
			check: func(t *testing.T, f *fx) {
				wantCounters(t, f.l, bob, counters{CreditsPosted: 300})
			}},
		{name: "ZeroIDIsIDMustNotBeZero",
			batch: []ledger.Transfer{{DebitAccountID: id(alice), CreditAccountID: id(bob), Amount: 1}},
			want:  []ledger.Result{ledger.IDMustNotBeZero}},
		{name: "UnknownFlagIsFlagsInvalid",
			batch: []ledger.Transfer{withTransfer(plain(10, alice, bob, 1), func(x *ledger.Transfer) { x.Flags = 1 << 12 })},
			want:  []ledger.Result{ledger.FlagsInvalid}},
		{name: "PendingAndPostTogetherIsFlagsInvalid",
			setup: []ledger.Transfer{pending(9, alice, bob, 1, 0)},
			batch: []ledger.Transfer{withTransfer(post(10, 9, 0), func(x *ledger.Transfer) { x.Flags |= ledger.Pending })},
			want:  []ledger.Result{ledger.FlagsInvalid}},
		{name: "PostAndVoidTogetherIsFlagsInvalid",
			setup: []ledger.Transfer{pending(9, alice, bob, 1, 0)},
			batch: []ledger.Transfer{withTransfer(post(10, 9, 0), func(x *ledger.Transfer) { x.Flags |= ledger.VoidPending })},
			want:  []ledger.Result{ledger.FlagsInvalid}},
		{name: "UnknownDebitAccountIsAccountNotFound",
			batch: []ledger.Transfer{plain(10, 77, bob, 1)},
			want:  []ledger.Result{ledger.AccountNotFound}},
		{name: "UnknownCreditAccountIsAccountNotFound",
			batch: []ledger.Transfer{plain(10, alice, 77, 1)},
			want:  []ledger.Result{ledger.AccountNotFound}},
		{name: "NoAccountsIsAccountNotFound",
			batch: []ledger.Transfer{{ID: id(10), Amount: 1}},
			want:  []ledger.Result{ledger.AccountNotFound}},
		{name: "DebitingTheCreditAccountIsSameAccount",
			batch: []ledger.Transfer{plain(10, alice, alice, 1)},
			want:  []ledger.Result{ledger.SameAccount}},
		{name: "ZeroAmountIsZeroAmount",
			batch: []ledger.Transfer{plain(10, alice, bob, 0)},
			want:  []ledger.Result{ledger.ZeroAmount}},
		{name: "ZeroAmountPendingIsZeroAmount",
			batch: []ledger.Transfer{pending(10, alice, bob, 0, 0)},
			want:  []ledger.Result{ledger.ZeroAmount}},
		{name: "SpendingMoreThanTheBalanceIsInsufficientFunds",
			batch: []ledger.Transfer{plain(10, alice, bob, aliceFunds+1)},
			want:  []ledger.Result{ledger.InsufficientFunds}},
		{name: "EmptyWalletIsInsufficientFunds",
			batch: []ledger.Transfer{plain(10, bob, alice, 1)},
			want:  []ledger.Result{ledger.InsufficientFunds}},
		{name: "ReservingMoreThanTheBalanceIsInsufficientFunds",
			batch: []ledger.Transfer{pending(10, alice, bob, aliceFunds+1, 0)},
			want:  []ledger.Result{ledger.InsufficientFunds}},
		{name: "SpendingReservedFundsIsInsufficientFunds",
			setup: []ledger.Transfer{pending(9, alice, bob, 600, 0)},
			batch: []ledger.Transfer{plain(10, alice, bob, 401)},
			want:  []ledger.Result{ledger.InsufficientFunds}},
		{name: "PendingCreditsAreNotSpendable",
			setup: []ledger.Transfer{pending(9, alice, bob, 600, 0)},
			batch: []ledger.Transfer{plain(10, bob, carol, 1)},
			want:  []ledger.Result{ledger.InsufficientFunds}},
		{name: "PendingIDOnAPlainTransferIsPendingIDMustBeZero",
			batch: []ledger.Transfer{withTransfer(plain(10, alice, bob, 1), func(x *ledger.Transfer) { x.PendingID = id(3) })},
			want:  []ledger.Result{ledger.PendingIDMustBeZero}},
		{name: "PostWithoutPendingIDIsPendingIDMustNotBeZero",
			batch: []ledger.Transfer{post(10, 0, 0)},
			want:  []ledger.Result{ledger.PendingIDMustNotBeZero}},
		{name: "PostOfItselfIsPendingIDMustBeDifferent",
			batch: []ledger.Transfer{post(10, 10, 0)},
			want:  []ledger.Result{ledger.PendingIDMustBeDifferent}},
		{name: "TimeoutOnAPlainTransferIsTimeoutReservedForPending",
			batch: []ledger.Transfer{withTransfer(plain(10, alice, bob, 1), func(x *ledger.Transfer) { x.Timeout = time.Second })},
			want:  []ledger.Result{ledger.TimeoutReservedForPending}},
		{name: "TimeoutOnAPostIsTimeoutReservedForPending",
			setup: []ledger.Transfer{pending(9, alice, bob, 1, 0)},
			batch: []ledger.Transfer{withTransfer(post(10, 9, 0), func(x *ledger.Transfer) { x.Timeout = time.Second })},
			want:  []ledger.Result{ledger.TimeoutReservedForPending}},
		{name: "NegativeTimeoutIsTimeoutReservedForPending",
			batch: []ledger.Transfer{pending(10, alice, bob, 1, -time.Second)},
			want:  []ledger.Result{ledger.TimeoutReservedForPending}},
		{name: "PostOfUnknownIDIsPendingNotFound",
			batch: []ledger.Transfer{post(10, 9, 0)},
			want:  []ledger.Result{ledger.PendingNotFound}},
		{name: "VoidOfUnknownIDIsPendingNotFound",
			batch: []ledger.Transfer{void(10, 9)},
			want:  []ledger.Result{ledger.PendingNotFound}},
		{name: "PostOfAPlainTransferIsPendingTransferNotPending",
			batch: []ledger.Transfer{post(10, 1, 0)},
			want:  []ledger.Result{ledger.PendingTransferNotPending}},
		{name: "PostNamingOtherAccountsIsPendingTransferHasDifferentAccounts",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0)},
			batch: []ledger.Transfer{withTransfer(post(10, 9, 0), func(x *ledger.Transfer) { x.CreditAccountID = id(carol) })},
			want:  []ledger.Result{ledger.PendingTransferHasDifferentAccounts}},
		{name: "PostNamingItsAccountsIsOK",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0)},
			batch: []ledger.Transfer{withTransfer(post(10, 9, 0), func(x *ledger.Transfer) {
				x.DebitAccountID, x.CreditAccountID = id(alice), id(bob)
			})},
			want: []ledger.Result{ledger.OK}},
		{name: "VoidOfAnotherAmountIsPendingTransferHasDifferentAmount",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0)},
			batch: []ledger.Transfer{withTransfer(void(10, 9), func(x *ledger.Transfer) { x.Amount = 99 })},
			want:  []ledger.Result{ledger.PendingTransferHasDifferentAmount}},
		{name: "VoidOfTheExactAmountIsOK",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0)},
			batch: []ledger.Transfer{withTransfer(void(10, 9), func(x *ledger.Transfer) { x.Amount = 100 })},
			want:  []ledger.Result{ledger.OK}},
		{name: "PostMoreThanPendingIsExceedsPendingAmount",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0)},
			batch: []ledger.Transfer{post(10, 9, 101)},
			want:  []ledger.Result{ledger.ExceedsPendingAmount}},
		{name: "PostAfterPostIsPendingAlreadyPosted",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0), post(10, 9, 50)},
			batch: []ledger.Transfer{post(11, 9, 50)},
			want:  []ledger.Result{ledger.PendingAlreadyPosted}},
		{name: "VoidAfterPostIsPendingAlreadyPosted",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0), post(10, 9, 0)},
			batch: []ledger.Transfer{void(11, 9)},
			want:  []ledger.Result{ledger.PendingAlreadyPosted}},
		{name: "PostAfterVoidIsPendingAlreadyVoided",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0), void(10, 9)},
			batch: []ledger.Transfer{post(11, 9, 0)},
			want:  []ledger.Result{ledger.PendingAlreadyVoided}},
		{name: "SecondResolutionInOneBatchIsPendingAlreadyPosted",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0)},
			batch: []ledger.Transfer{post(10, 9, 0), void(11, 9)},
			want:  []ledger.Result{ledger.OK, ledger.PendingAlreadyPosted}},
		{name: "RetryOfAPostIsExists",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0), post(10, 9, 40)},
			batch: []ledger.Transfer{post(10, 9, 40)},
			want:  []ledger.Result{ledger.Exists}},
		{name: "RetryOfAPostNamingItsAccountsIsExists",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0), post(10, 9, 40)},
			batch: []ledger.Transfer{withTransfer(post(10, 9, 40), func(x *ledger.Transfer) {
				x.DebitAccountID, x.CreditAccountID = id(alice), id(bob)
			})},
			want: []ledger.Result{ledger.Exists}},
		{name: "RetryOfAPostWithOtherAmountIsExistsWithDifferentFields",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0), post(10, 9, 40)},
			batch: []ledger.Transfer{post(10, 9, 0)},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "RetryOfAPostNamingOtherAccountsIsExistsWithDifferentFields",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0), post(10, 9, 40)},
			batch: []ledger.Transfer{withTransfer(post(10, 9, 40), func(x *ledger.Transfer) { x.CreditAccountID = id(carol) })},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "PostAfterExpiryIsPendingExpired",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, time.Minute)},
			prepare: func(t *testing.T, f *fx) {
				f.clock.Advance(time.Minute + time.Second)
				if n := mustTick(t, f.l); n != 1 {
					t.Fatalf("tick expired %d, want 1", n)
				}
			},
			batch: []ledger.Transfer{post(10, 9, 0)},
			want:  []ledger.Result{ledger.PendingExpired}},
		{name: "VoidAfterExpiryIsPendingExpired",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, time.Minute)},
			prepare: func(t *testing.T, f *fx) {
				f.clock.Advance(time.Minute + time.Second)
				mustTick(t, f.l)
			},
			batch: []ledger.Transfer{void(10, 9)},
			want:  []ledger.Result{ledger.PendingExpired}},
		{name: "PostAtTheTimeoutWithoutATickIsPendingExpired",
			setup:   []ledger.Transfer{pending(9, alice, bob, 100, time.Minute)},
			prepare: func(t *testing.T, f *fx) { f.clock.Advance(time.Minute + time.Second) },
			batch:   []ledger.Transfer{post(10, 9, 0)},
			want:    []ledger.Result{ledger.PendingExpired},
			check: func(t *testing.T, f *fx) {
				wantStatus(t, f.l, 9, ledger.StatusExpired)
				wantCounters(t, f.l, alice, counters{CreditsPosted: aliceFunds})
			}},
		{name: "PostOfAPendingThatTimesOutLaterInTheBatchIsPendingExpired",
			batch: []ledger.Transfer{pending(9, alice, bob, 100, time.Nanosecond), post(10, 9, 0)},
			want:  []ledger.Result{ledger.OK, ledger.PendingExpired}},
		{name: "PostJustBeforeTheTimeoutIsOK",
			setup:   []ledger.Transfer{pending(9, alice, bob, 100, time.Minute)},
			prepare: func(t *testing.T, f *fx) { f.clock.Advance(time.Minute - time.Microsecond) },
			batch:   []ledger.Transfer{post(10, 9, 0)},
			want:    []ledger.Result{ledger.OK}},
		{name: "PendingWithATimeoutBeyondTheClockIsOverflow",
			batch: []ledger.Transfer{pending(10, alice, bob, 100, math.MaxInt64)},
			want:  []ledger.Result{ledger.Overflow}},
		{name: "AmountAboveMaxInt64IsOverflow",
			batch: []ledger.Transfer{plain(10, issuer, sink, maxI+1)},
			want:  []ledger.Result{ledger.Overflow}},
		{name: "DebitCountersAboveMaxInt64IsOverflow",
			setup: []ledger.Transfer{plain(9, issuer, sink, maxI)},
			batch: []ledger.Transfer{plain(10, issuer, treasury, 1)},
			want:  []ledger.Result{ledger.Overflow}},
		{name: "CreditCountersAboveMaxInt64IsOverflow",
			setup: []ledger.Transfer{plain(9, issuer, sink, maxI)},
			batch: []ledger.Transfer{plain(10, treasury, sink, 1)},
			want:  []ledger.Result{ledger.Overflow}},
		{name: "PendingCountersCountTowardOverflow",
			setup: []ledger.Transfer{pending(9, issuer, sink, maxI-1, 0)},
			batch: []ledger.Transfer{pending(10, treasury, sink, 1, 0), plain(11, treasury, sink, 1)},
			want:  []ledger.Result{ledger.OK, ledger.Overflow}},
		{name: "CountersUpToMaxInt64AreOK",
			setup: []ledger.Transfer{plain(9, issuer, sink, maxI-1)},
			batch: []ledger.Transfer{plain(10, issuer, carol, 1)},
			want:  []ledger.Result{ledger.OK},
			check: func(t *testing.T, f *fx) {
				if got := mustAccount(t, f.l, issuer).Balance().Posted; got != math.MinInt64+1 {
					t.Errorf("issuer posted balance %d, want %d", got, int64(math.MinInt64+1))
				}
			}},
		{name: "LinkedChainCommitsWhole",
			batch: []ledger.Transfer{linked(plain(10, alice, bob, 500)), linked(plain(11, bob, carol, 200)), plain(12, carol, alice, 100)},
			want:  []ledger.Result{ledger.OK, ledger.OK, ledger.OK},
			check: func(t *testing.T, f *fx) {
				wantCounters(t, f.l, carol, counters{DebitsPosted: 100, CreditsPosted: 200})
			}},
		{name: "LinkedChainFailsWholeAtItsLastEvent",
			batch: []ledger.Transfer{linked(plain(10, alice, bob, 500)), linked(plain(11, bob, carol, 200)), plain(12, alice, carol, 501)},
			want:  []ledger.Result{ledger.LinkedEventFailed, ledger.LinkedEventFailed, ledger.InsufficientFunds}},
		{name: "LinkedChainFailsWholeAtItsFirstEvent",
			batch: []ledger.Transfer{linked(plain(10, bob, alice, 1)), linked(plain(11, alice, carol, 200)), plain(12, alice, bob, 1)},
			want:  []ledger.Result{ledger.InsufficientFunds, ledger.LinkedEventFailed, ledger.LinkedEventFailed}},
		{name: "FailedChainLeavesTheNextChainAlone",
			batch: []ledger.Transfer{linked(plain(10, alice, bob, 0)), plain(11, alice, bob, 10), plain(12, alice, bob, 20)},
			want:  []ledger.Result{ledger.ZeroAmount, ledger.LinkedEventFailed, ledger.OK},
			check: func(t *testing.T, f *fx) {
				wantCounters(t, f.l, bob, counters{CreditsPosted: 20})
			}},
		{name: "LinkedChainRollsBackAReservationAndItsPost",
			batch: []ledger.Transfer{linked(pending(10, alice, bob, 100, time.Hour)), linked(post(11, 10, 60)), plain(12, carol, bob, 1)},
			want:  []ledger.Result{ledger.LinkedEventFailed, ledger.LinkedEventFailed, ledger.InsufficientFunds},
			check: func(t *testing.T, f *fx) {
				wantStatus(t, f.l, 10, ledger.StatusNone)
				f.clock.Advance(2 * time.Hour)
				if n := mustTick(t, f.l); n != 0 {
					t.Errorf("tick expired %d reservations of a rolled-back chain", n)
				}
			}},
		{name: "LinkedChainRollsBackAResolution",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0)},
			batch: []ledger.Transfer{linked(void(10, 9)), plain(11, carol, bob, 1)},
			want:  []ledger.Result{ledger.LinkedEventFailed, ledger.InsufficientFunds},
			check: func(t *testing.T, f *fx) {
				wantStatus(t, f.l, 9, ledger.StatusPending)
				wantResults(t, f.l, []ledger.Transfer{post(12, 9, 0)}, ledger.OK)
			}},
		{name: "LinkedChainMayHoldARetry",
			setup: []ledger.Transfer{linked(plain(9, alice, bob, 100)), plain(8, alice, bob, 1)},
			batch: []ledger.Transfer{linked(plain(9, alice, bob, 100)), plain(10, bob, carol, 100)},
			want:  []ledger.Result{ledger.Exists, ledger.OK}},
		{name: "RetryWithoutTheLinkedFlagIsExistsWithDifferentFields",
			setup: []ledger.Transfer{linked(plain(9, alice, bob, 100)), plain(8, alice, bob, 1)},
			batch: []ledger.Transfer{plain(9, alice, bob, 100)},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "IDTakenEarlierInAFailedChainIsFreeAgain",
			batch: []ledger.Transfer{linked(plain(10, alice, bob, 100)), plain(11, carol, bob, 1), plain(10, alice, carol, 7)},
			want:  []ledger.Result{ledger.LinkedEventFailed, ledger.InsufficientFunds, ledger.OK},
			check: func(t *testing.T, f *fx) {
				if diff := cmp.Diff(id(carol), mustLookupTransfer(t, f.l, 10).CreditAccountID); diff != "" {
					t.Errorf("transfer 10 credit account (-want +got):\n%s", diff)
				}
			}},
		{name: "BatchEndingInsideAChainIsLinkedEventChainOpen",
			batch: []ledger.Transfer{linked(plain(10, alice, bob, 1)), linked(plain(11, alice, bob, 1))},
			want:  []ledger.Result{ledger.LinkedEventFailed, ledger.LinkedEventChainOpen}},
		{name: "OpenChainAfterACompleteOneFailsAlone",
			batch: []ledger.Transfer{plain(10, alice, bob, 1), linked(plain(11, alice, bob, 1))},
			want:  []ledger.Result{ledger.OK, ledger.LinkedEventChainOpen}},
		{name: "MandateCapIsMandateViolated",
			prepare: func(t *testing.T, f *fx) {
				mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), MaxPerTransfer: 100})
			},
			batch: []ledger.Transfer{plain(10, alice, bob, 100), plain(11, alice, bob, 101)},
			want:  []ledger.Result{ledger.OK, ledger.MandateViolated}},
		{name: "MandateCapAppliesToReservations",
			prepare: func(t *testing.T, f *fx) {
				mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), MaxPerTransfer: 100})
			},
			batch: []ledger.Transfer{pending(10, alice, bob, 101, 0)},
			want:  []ledger.Result{ledger.MandateViolated}},
		{name: "MandateBudgetIsMandateViolated",
			prepare: func(t *testing.T, f *fx) {
				mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 300, Window: time.Hour})
			},
			batch: []ledger.Transfer{plain(10, alice, bob, 200), pending(11, alice, bob, 100, 0), plain(12, alice, bob, 1)},
			want:  []ledger.Result{ledger.OK, ledger.OK, ledger.MandateViolated}},
		{name: "MandateCounterpartyIsMandateViolated",
			prepare: func(t *testing.T, f *fx) {
				mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Counterparties: []ledger.ID{id(bob)}})
			},
			batch: []ledger.Transfer{plain(10, alice, bob, 1), plain(11, alice, carol, 1)},
			want:  []ledger.Result{ledger.OK, ledger.MandateViolated}},
		{name: "ExpiredMandateIsMandateViolated",
			prepare: func(t *testing.T, f *fx) {
				mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), ExpiresAt: epoch.Add(time.Hour)})
				f.clock.Advance(time.Hour)
			},
			batch: []ledger.Transfer{plain(10, alice, bob, 1)},
			want:  []ledger.Result{ledger.MandateViolated}},
		{name: "MandateDoesNotLimitCredits",
			prepare: func(t *testing.T, f *fx) {
				mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(bob), MaxPerTransfer: 1, Counterparties: []ledger.ID{id(carol)}})
			},
			batch: []ledger.Transfer{plain(10, alice, bob, 500)},
			want:  []ledger.Result{ledger.OK}},
		{name: "MandateViolationInAChainFailsTheChain",
			prepare: func(t *testing.T, f *fx) {
				mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), MaxPerTransfer: 100})
			},
			batch: []ledger.Transfer{linked(plain(10, alice, bob, 100)), plain(11, alice, carol, 200)},
			want:  []ledger.Result{ledger.LinkedEventFailed, ledger.MandateViolated}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, t.TempDir())
			if len(tc.setup) > 0 {
				mustTransfer(t, f.l, tc.setup...)
			}
			if tc.prepare != nil {
				tc.prepare(t, f)
			}
			before := mustLookupAccounts(t, f.l, fixtureAccounts...)
			setupIDs := map[ledger.ID]bool{id(1): true}
			for _, x := range tc.setup {
				setupIDs[x.ID] = true
			}
			got := createTransfers(t, f.l, tc.batch...)
			if diff := cmp.Diff(codes(tc.want), codes(got)); diff != "" {
				t.Fatalf("results (-want +got):\n%s", diff)
			}
			committed := map[ledger.ID]bool{}
			for i, r := range got {
				if r == ledger.OK {
					committed[tc.batch[i].ID] = true
				}
			}
			for i, r := range got {
				x := tc.batch[i]
				if !r.Committed() && !setupIDs[x.ID] && !committed[x.ID] && !x.ID.IsZero() {
					wantNoTransfer(t, f.l, x.ID)
				}
			}
			if len(committed) == 0 {
				if diff := cmp.Diff(before, mustLookupAccounts(t, f.l, fixtureAccounts...)); diff != "" {
					t.Errorf("a batch that committed nothing changed balances (-before +after):\n%s", diff)
				}
			}
			mustCheckInvariants(t, f.l)
			if tc.check != nil {
				tc.check(t, f)
			}
			// What was acknowledged survives a restart, and what failed
			// left nothing behind for replay to trip on.
			want := mustLookupAccounts(t, f.l, fixtureAccounts...)
			f.reopen(t)
			if diff := cmp.Diff(want, mustLookupAccounts(t, f.l, fixtureAccounts...)); diff != "" {
				t.Errorf("accounts after restart (-before +after):\n%s", diff)
			}
			if rep, err := ledger.Verify(f.dir); err != nil {
				t.Errorf("verify: %v (%+v)", err, rep)
			}
		})
	}
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

func TestBatchLimits(t *testing.T) {
	l := mustOpen(t, t.TempDir(), ledger.Options{})
	if _, err := l.CreateTransfers(t.Context(), make([]ledger.Transfer, ledger.MaxBatch+1)); !errors.Is(err, ledger.ErrBatchTooLarge) {
		t.Errorf("transfers: got %v, want ErrBatchTooLarge", err)
	}
	if _, err := l.CreateAccounts(t.Context(), make([]ledger.Account, ledger.MaxBatch+1)); !errors.Is(err, ledger.ErrBatchTooLarge) {
		t.Errorf("accounts: got %v, want ErrBatchTooLarge", err)
	}
	res, err := l.CreateTransfers(t.Context(), nil)
	if err != nil || len(res) != 0 {
		t.Errorf("empty batch: got %v, %v", res, err)
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
	t.Run("ReservationMovesFundsToPending", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustTransfer(t, f.l, pending(10, alice, bob, 300, time.Hour))
		wantCounters(t, f.l, alice, counters{DebitsPending: 300, CreditsPosted: aliceFunds})
		wantCounters(t, f.l, bob, counters{CreditsPending: 300})
		if diff := cmp.Diff(ledger.Balance{Posted: aliceFunds, Pending: -300, Available: aliceFunds - 300},
			mustAccount(t, f.l, alice).Balance()); diff != "" {
			t.Errorf("alice balance (-want +got):\n%s", diff)
		}
		wantStatus(t, f.l, 10, ledger.StatusPending)
		wantStatus(t, f.l, 1, ledger.StatusNone)
		wantStatus(t, f.l, 99, ledger.StatusNone)
	})
	t.Run("FullPostMovesTheWholeReservation", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustTransfer(t, f.l, pending(10, alice, bob, 300, time.Hour), post(11, 10, 0))
		wantCounters(t, f.l, alice, counters{DebitsPosted: 300, CreditsPosted: aliceFunds})
		wantCounters(t, f.l, bob, counters{CreditsPosted: 300})
		wantStatus(t, f.l, 10, ledger.StatusPosted)
		got := mustLookupTransfer(t, f.l, 11)
		want := ledger.Transfer{ID: id(11), DebitAccountID: id(alice), CreditAccountID: id(bob), Amount: 300,
			PendingID: id(10), Flags: ledger.PostPending, Timestamp: got.Timestamp}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("post as stored (-want +got):\n%s", diff)
		}
	})
	t.Run("PartialPostReturnsTheRemainder", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustTransfer(t, f.l, pending(10, alice, bob, 300, time.Hour), post(11, 10, 120))
		wantCounters(t, f.l, alice, counters{DebitsPosted: 120, CreditsPosted: aliceFunds})
		wantCounters(t, f.l, bob, counters{CreditsPosted: 120})
		if got := mustAccount(t, f.l, alice).Balance().Available; got != aliceFunds-120 {
			t.Errorf("alice available %d, want %d", got, aliceFunds-120)
		}
		if got := mustLookupTransfer(t, f.l, 11).Amount; got != 120 {
			t.Errorf("post amount %d, want 120", got)
		}
	})
	t.Run("VoidRefunds", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustTransfer(t, f.l, pending(10, alice, bob, 300, time.Hour), void(11, 10))
		wantCounters(t, f.l, alice, counters{CreditsPosted: aliceFunds})
		wantCounters(t, f.l, bob, counters{})
		wantStatus(t, f.l, 10, ledger.StatusVoided)
		if got := mustLookupTransfer(t, f.l, 11).Amount; got != 300 {
			t.Errorf("void amount %d, want the reservation's 300", got)
		}
	})
	t.Run("ResolvingTwiceFails", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustTransfer(t, f.l, pending(10, alice, bob, 300, 0), post(11, 10, 100))
		wantResults(t, f.l, []ledger.Transfer{post(12, 10, 100), void(13, 10), post(11, 10, 100)},
			ledger.PendingAlreadyPosted, ledger.PendingAlreadyPosted, ledger.Exists)
		wantCounters(t, f.l, alice, counters{DebitsPosted: 100, CreditsPosted: aliceFunds})
	})
	t.Run("ExpiryIsExactlyOnce", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustTransfer(t, f.l, pending(10, alice, bob, 300, 10*time.Second))
		// The reservation was stamped after the clock's reading, so it is
		// due a little later; ask the ledger when.
		due := time.Unix(0, mustLookupTransfer(t, f.l, 10).Timestamp).Add(10 * time.Second)
		f.clock.Set(due.Add(-time.Nanosecond))
		if n := mustTick(t, f.l); n != 0 {
			t.Fatalf("tick before the timeout expired %d", n)
		}
		wantStatus(t, f.l, 10, ledger.StatusPending)
		f.clock.Set(due)
		if n := mustTick(t, f.l); n != 1 {
			t.Fatalf("tick at the timeout expired %d, want 1", n)
		}
		wantStatus(t, f.l, 10, ledger.StatusExpired)
		wantCounters(t, f.l, alice, counters{CreditsPosted: aliceFunds})
		wantCounters(t, f.l, bob, counters{})
		f.clock.Advance(time.Hour)
		if n := mustTick(t, f.l); n != 0 {
			t.Fatalf("second tick expired %d", n)
		}
		wantResults(t, f.l, []ledger.Transfer{post(11, 10, 0), void(12, 10)}, ledger.PendingExpired, ledger.PendingExpired)
		f.reopen(t)
		if n := mustTick(t, f.l); n != 0 {
			t.Fatalf("tick after restart expired %d", n)
		}
		wantStatus(t, f.l, 10, ledger.StatusExpired)
		wantCounters(t, f.l, alice, counters{CreditsPosted: aliceFunds})
	})
	t.Run("ExpiryWaitsForNoTick", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustTransfer(t, f.l, pending(10, alice, bob, 300, time.Second))
		f.clock.Advance(time.Hour)
		// Any request expires what is due before it is applied.
		wantStatus(t, f.l, 10, ledger.StatusExpired)
		wantCounters(t, f.l, alice, counters{CreditsPosted: aliceFunds})
	})
	t.Run("ExpiryOrderFollowsTheTimeouts", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustTransfer(t, f.l,
			pending(10, alice, bob, 100, 3*time.Hour),
			pending(11, alice, bob, 100, time.Hour),
			pending(12, alice, bob, 100, 2*time.Hour),
			pending(13, alice, bob, 100, 0))
		for i, want := range []struct {
			expired ledger.ID
			pending uint64
		}{{id(11), 300}, {id(12), 200}, {id(10), 100}} {
			f.clock.Advance(time.Hour + time.Second)
			if n := mustTick(t, f.l); n != 1 {
				t.Fatalf("hour %d: tick expired %d, want 1", i+1, n)
			}
			if st, _ := f.l.PendingStatus(t.Context(), want.expired); st != ledger.StatusExpired {
				t.Fatalf("hour %d: %s is %s, want expired", i+1, want.expired, st)
			}
			wantCounters(t, f.l, alice, counters{DebitsPending: want.pending, CreditsPosted: aliceFunds})
		}
		f.clock.Advance(1000 * time.Hour)
		if n := mustTick(t, f.l); n != 0 {
			t.Fatalf("a reservation without a timeout expired")
		}
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

func TestMandates(t *testing.T) {
	t.Run("BudgetWindowSlides", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 300, Window: time.Hour})
		mustTransfer(t, f.l, plain(10, alice, bob, 200))
		f.clock.Advance(10 * time.Minute)
		mustTransfer(t, f.l, plain(11, alice, bob, 100))
		first := time.Unix(0, mustLookupTransfer(t, f.l, 10).Timestamp)
		f.clock.Set(first.Add(time.Hour - time.Nanosecond))
		wantResults(t, f.l, []ledger.Transfer{plain(12, alice, bob, 1)}, ledger.MandateViolated)
		// The first spend leaves the window an hour after it was made.
		f.clock.Set(first.Add(time.Hour))
		wantResults(t, f.l, []ledger.Transfer{plain(13, alice, bob, 201), plain(14, alice, bob, 200), plain(15, alice, bob, 1)},
			ledger.MandateViolated, ledger.OK, ledger.MandateViolated)
	})
	t.Run("VoidGivesBudgetBack", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
		mustTransfer(t, f.l, pending(10, alice, bob, 100, 0))
		wantResults(t, f.l, []ledger.Transfer{plain(11, alice, bob, 1)}, ledger.MandateViolated)
		mustTransfer(t, f.l, void(12, 10))
		wantResults(t, f.l, []ledger.Transfer{plain(13, alice, bob, 100), plain(14, alice, bob, 1)},
			ledger.OK, ledger.MandateViolated)
	})
	t.Run("ExpiryGivesBudgetBack", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
		mustTransfer(t, f.l, pending(10, alice, bob, 100, time.Minute))
		f.clock.Advance(2 * time.Minute)
		wantResults(t, f.l, []ledger.Transfer{plain(13, alice, bob, 100)}, ledger.OK)
	})
	t.Run("PartialPostKeepsWhatWasPosted", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
		mustTransfer(t, f.l, pending(10, alice, bob, 100, 0), post(11, 10, 60))
		wantResults(t, f.l, []ledger.Transfer{plain(12, alice, bob, 41), plain(13, alice, bob, 40)},
			ledger.MandateViolated, ledger.OK)
	})
	t.Run("PostIsNotCheckedAgain", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustTransfer(t, f.l, pending(10, alice, bob, 100, 0))
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), MaxPerTransfer: 10, Counterparties: []ledger.ID{id(carol)}})
		wantResults(t, f.l, []ledger.Transfer{post(11, 10, 0)}, ledger.OK)
	})
	t.Run("FailedChainGivesBudgetBack", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
		wantResults(t, f.l, []ledger.Transfer{linked(plain(10, alice, bob, 100)), plain(11, carol, bob, 1)},
			ledger.LinkedEventFailed, ledger.InsufficientFunds)
		wantResults(t, f.l, []ledger.Transfer{plain(12, alice, bob, 100)}, ledger.OK)
	})
	t.Run("FailedChainDoesNotSlideTheWindow", func(t *testing.T) {
		// A chain that fails is undone whole, its timestamps included, so
		// the spends it pushed out of the window must come back: the next
		// transfer is stamped earlier than the chain's last event was.
		f := newFixture(t, t.TempDir())
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
		mustTransfer(t, f.l, plain(10, alice, bob, 100))
		spent := time.Unix(0, mustLookupTransfer(t, f.l, 10).Timestamp)
		f.clock.Set(spent.Add(time.Hour - time.Nanosecond))
		wantResults(t, f.l, []ledger.Transfer{
			linked(plain(11, treasury, carol, 1)), // stamped an hour after the spend, less 1ns
			linked(plain(12, alice, bob, 1)),      // stamped exactly an hour after it
			plain(13, carol, bob, 1000),           // fails the chain
		}, ledger.LinkedEventFailed, ledger.LinkedEventFailed, ledger.InsufficientFunds)
		wantResults(t, f.l, []ledger.Transfer{plain(14, alice, bob, 100)}, ledger.MandateViolated)
		f.reopen(t)
		f.clock.Set(spent.Add(time.Hour))
		wantResults(t, f.l, []ledger.Transfer{plain(15, alice, bob, 100)}, ledger.OK)
	})
	t.Run("WideningTheWindowBringsNoSpendBack", func(t *testing.T) {
		// A spend that left the window before the mandate was replaced
		// stays out of it, whether or not a failed transfer happened to
		// look at the window in between: replay never sees those.
		for _, probe := range []bool{true, false} {
			f := newFixture(t, t.TempDir())
			mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
			mustTransfer(t, f.l, plain(10, alice, bob, 100))
			spent := time.Unix(0, mustLookupTransfer(t, f.l, 10).Timestamp)
			f.clock.Set(spent.Add(2 * time.Hour))
			mustTransfer(t, f.l, plain(20, treasury, carol, 1))
			if probe {
				wantResults(t, f.l, []ledger.Transfer{plain(11, alice, bob, 101)}, ledger.MandateViolated)
			}
			mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: 3 * time.Hour})
			wantResults(t, f.l, []ledger.Transfer{plain(12, alice, bob, 100), plain(13, alice, bob, 1)},
				ledger.OK, ledger.MandateViolated)
			f.reopen(t)
			wantResults(t, f.l, []ledger.Transfer{plain(14, alice, bob, 1)}, ledger.MandateViolated)
		}
	})
	t.Run("ReplacingKeepsTheWindowsSpends", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
		mustTransfer(t, f.l, plain(10, alice, bob, 80))
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour, MaxPerTransfer: 50})
		wantResults(t, f.l, []ledger.Transfer{plain(11, alice, bob, 21), plain(12, alice, bob, 20)},
			ledger.MandateViolated, ledger.OK)
	})
	t.Run("MandateWithNoLimitsRemovesIt", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), MaxPerTransfer: 1})
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice)})
		if _, ok, err := f.l.Mandate(t.Context(), id(alice)); err != nil || ok {
			t.Fatalf("mandate after removal: found %v, %v", ok, err)
		}
		wantResults(t, f.l, []ledger.Transfer{plain(10, alice, bob, 500)}, ledger.OK)
		f.reopen(t)
		wantResults(t, f.l, []ledger.Transfer{plain(11, alice, bob, 500)}, ledger.OK)
	})
	t.Run("MandateSurvivesRestart", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		m := ledger.Mandate{AccountID: id(alice), MaxPerTransfer: 500, Budget: 600, Window: time.Hour,
			Counterparties: []ledger.ID{id(bob), id(carol)}, ExpiresAt: epoch.Add(24 * time.Hour)}
		mustSetMandate(t, f.l, m)
		mustTransfer(t, f.l, plain(10, alice, bob, 500), pending(11, alice, carol, 50, 0))
		f.reopen(t)
		got, ok, err := f.l.Mandate(t.Context(), id(alice))
		if err != nil || !ok {
			t.Fatalf("mandate after restart: %v, %v", ok, err)
		}
		if diff := cmp.Diff(m, got); diff != "" {
			t.Errorf("mandate after restart (-want +got):\n%s", diff)
		}
		wantResults(t, f.l, []ledger.Transfer{plain(12, alice, bob, 51), plain(13, alice, sink, 1), plain(14, alice, bob, 50)},
			ledger.MandateViolated, ledger.MandateViolated, ledger.OK)
		mustTransfer(t, f.l, void(15, 11))
		wantResults(t, f.l, []ledger.Transfer{plain(16, alice, carol, 50)}, ledger.OK)
		f.clock.Set(m.ExpiresAt)
		wantResults(t, f.l, []ledger.Transfer{plain(17, alice, carol, 1)}, ledger.MandateViolated)
	})
	t.Run("MandateIsCopiedFromTheCaller", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		parties := []ledger.ID{id(bob)}
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Counterparties: parties})
		parties[0] = id(carol)
		got, _, err := f.l.Mandate(t.Context(), id(alice))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]ledger.ID{id(bob)}, got.Counterparties); diff != "" {
			t.Errorf("counterparties after the caller reused its slice (-want +got):\n%s", diff)
		}
		wantResults(t, f.l, []ledger.Transfer{plain(10, alice, carol, 1), plain(11, alice, bob, 1)},
			ledger.MandateViolated, ledger.OK)
	})
	t.Run("BadMandatesAreRefused", func(t *testing.T) {
		f := newFixture(t, t.TempDir())
		for _, m := range []ledger.Mandate{
			{MaxPerTransfer: 1},
			{AccountID: id(alice), Budget: 1},
			{AccountID: id(alice), Budget: 1, Window: -time.Second},
			{AccountID: id(alice), Counterparties: []ledger.ID{{}}},
			{AccountID: id(alice), Counterparties: make([]ledger.ID, 1025)},
			// Expiry times the ledger's nanosecond clock cannot hold: the
			// epoch itself once read as no expiry at all.
			{AccountID: id(alice), ExpiresAt: time.Unix(0, 0)},
			{AccountID: id(alice), ExpiresAt: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)},
			{AccountID: id(alice), ExpiresAt: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)},
		} {
			if err := f.l.SetMandate(t.Context(), m); !errors.Is(err, ledger.ErrInvalid) {
				t.Errorf("SetMandate(%+v): got %v, want ErrInvalid", m, err)
			}
		}
		if err := f.l.SetMandate(t.Context(), ledger.Mandate{AccountID: id(77), MaxPerTransfer: 1}); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("mandate on an unknown account: got %v, want ErrNotFound", err)
		}
		if _, ok, err := f.l.Mandate(t.Context(), id(alice)); err != nil || ok {
			t.Errorf("a refused mandate was set: %v, %v", ok, err)
		}
	})
}
