package ledgertest

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/ledger"
)

func withAccount(a ledger.Account, f func(*ledger.Account)) ledger.Account {
	f(&a)
	return a
}

func testCreateAccountResults(t *testing.T, open Opener) {
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
			clock := NewClock()
			l := open(t, clock.Now)
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
			if tc.want != ledger.OK {
				if len(created) != 0 {
					t.Errorf("rejected account was created: %+v", created)
				}
				return
			}
			if len(created) != 1 {
				t.Fatalf("created account not found")
			}
			want := []ledger.Account{{ID: id(2), Code: 3, Timestamp: created[0].Timestamp}}
			if diff := cmp.Diff(want, created); diff != "" {
				t.Errorf("created account (-want +got):\n%s", diff)
			}
			if created[0].Timestamp < Epoch.UnixNano() {
				t.Errorf("timestamp %d is before the clock's %d", created[0].Timestamp, Epoch.UnixNano())
			}
		})
	}
	t.Run("SameIDTwiceInABatchIsOKThenExists", func(t *testing.T) {
		l := open(t, NewClock().Now)
		a := ledger.Account{ID: id(5), Code: 1}
		res, err := l.CreateAccounts(t.Context(), []ledger.Account{a, a, withAccount(a, func(a *ledger.Account) { a.Code = 2 })})
		if err != nil {
			t.Fatal(err)
		}
		want := []ledger.Result{ledger.OK, ledger.Exists, ledger.ExistsWithDifferentFields}
		if diff := cmp.Diff(codes(want), codes(res)); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
	})
	t.Run("InvalidFirstDoesNotTakeTheID", func(t *testing.T) {
		l := open(t, NewClock().Now)
		bad := ledger.Account{ID: id(5), DebitsPosted: 1}
		res, err := l.CreateAccounts(t.Context(), []ledger.Account{bad, {ID: id(5)}})
		if err != nil {
			t.Fatal(err)
		}
		want := []ledger.Result{ledger.AccountCountersMustBeZero, ledger.OK}
		if diff := cmp.Diff(codes(want), codes(res)); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
	})
}

// testTransferResults submits one batch per case to a fresh fixture and
// checks each transfer's result code. A transfer that did not commit must
// leave no trace, and a batch in which nothing committed must leave every
// balance as it was.
func testTransferResults(t *testing.T, open Opener) {
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
			batch: []ledger.Transfer{with(plain(10, alice, bob, 300), func(x *ledger.Transfer) { x.Timestamp = 5 })},
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
			batch: []ledger.Transfer{with(plain(10, alice, bob, 300), func(x *ledger.Transfer) { x.Code = 9 })},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "IDReusedWithOtherUserDataIsExistsWithDifferentFields",
			setup: []ledger.Transfer{plain(10, alice, bob, 300)},
			batch: []ledger.Transfer{with(plain(10, alice, bob, 300), func(x *ledger.Transfer) { x.UserData = id(9) })},
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
			batch: []ledger.Transfer{with(plain(10, alice, bob, 1), func(x *ledger.Transfer) { x.Flags = 1 << 12 })},
			want:  []ledger.Result{ledger.FlagsInvalid}},
		{name: "PendingAndPostTogetherIsFlagsInvalid",
			setup: []ledger.Transfer{pending(9, alice, bob, 1, 0)},
			batch: []ledger.Transfer{with(post(10, 9, 0), func(x *ledger.Transfer) { x.Flags |= ledger.Pending })},
			want:  []ledger.Result{ledger.FlagsInvalid}},
		{name: "PostAndVoidTogetherIsFlagsInvalid",
			setup: []ledger.Transfer{pending(9, alice, bob, 1, 0)},
			batch: []ledger.Transfer{with(post(10, 9, 0), func(x *ledger.Transfer) { x.Flags |= ledger.VoidPending })},
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
		{name: "FundsOfAnExpiredReservationAreSpendableWithoutATick",
			setup:   []ledger.Transfer{pending(9, alice, bob, 600, time.Minute)},
			prepare: func(t *testing.T, f *fx) { f.clock.Advance(time.Minute + time.Second) },
			batch:   []ledger.Transfer{plain(10, alice, carol, aliceFunds)},
			want:    []ledger.Result{ledger.OK},
			check: func(t *testing.T, f *fx) {
				wantStatus(t, f.l, 9, ledger.StatusExpired)
				wantCounters(t, f.l, bob, counters{})
			}},
		{name: "PendingIDOnAPlainTransferIsPendingIDMustBeZero",
			batch: []ledger.Transfer{with(plain(10, alice, bob, 1), func(x *ledger.Transfer) { x.PendingID = id(3) })},
			want:  []ledger.Result{ledger.PendingIDMustBeZero}},
		{name: "PostWithoutPendingIDIsPendingIDMustNotBeZero",
			batch: []ledger.Transfer{post(10, 0, 0)},
			want:  []ledger.Result{ledger.PendingIDMustNotBeZero}},
		{name: "PostOfItselfIsPendingIDMustBeDifferent",
			batch: []ledger.Transfer{post(10, 10, 0)},
			want:  []ledger.Result{ledger.PendingIDMustBeDifferent}},
		{name: "TimeoutOnAPlainTransferIsTimeoutReservedForPending",
			batch: []ledger.Transfer{with(plain(10, alice, bob, 1), func(x *ledger.Transfer) { x.Timeout = time.Second })},
			want:  []ledger.Result{ledger.TimeoutReservedForPending}},
		{name: "TimeoutOnAPostIsTimeoutReservedForPending",
			setup: []ledger.Transfer{pending(9, alice, bob, 1, 0)},
			batch: []ledger.Transfer{with(post(10, 9, 0), func(x *ledger.Transfer) { x.Timeout = time.Second })},
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
			batch: []ledger.Transfer{with(post(10, 9, 0), func(x *ledger.Transfer) { x.CreditAccountID = id(carol) })},
			want:  []ledger.Result{ledger.PendingTransferHasDifferentAccounts}},
		{name: "PostNamingItsAccountsIsOK",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0)},
			batch: []ledger.Transfer{with(post(10, 9, 0), func(x *ledger.Transfer) {
				x.DebitAccountID, x.CreditAccountID = id(alice), id(bob)
			})},
			want: []ledger.Result{ledger.OK}},
		{name: "VoidOfAnotherAmountIsPendingTransferHasDifferentAmount",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0)},
			batch: []ledger.Transfer{with(void(10, 9), func(x *ledger.Transfer) { x.Amount = 99 })},
			want:  []ledger.Result{ledger.PendingTransferHasDifferentAmount}},
		{name: "VoidOfTheExactAmountIsOK",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0)},
			batch: []ledger.Transfer{with(void(10, 9), func(x *ledger.Transfer) { x.Amount = 100 })},
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
			batch: []ledger.Transfer{with(post(10, 9, 40), func(x *ledger.Transfer) {
				x.DebitAccountID, x.CreditAccountID = id(alice), id(bob)
			})},
			want: []ledger.Result{ledger.Exists}},
		{name: "RetryOfAPostWithOtherAmountIsExistsWithDifferentFields",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0), post(10, 9, 40)},
			batch: []ledger.Transfer{post(10, 9, 0)},
			want:  []ledger.Result{ledger.ExistsWithDifferentFields}},
		{name: "RetryOfAPostNamingOtherAccountsIsExistsWithDifferentFields",
			setup: []ledger.Transfer{pending(9, alice, bob, 100, 0), post(10, 9, 40)},
			batch: []ledger.Transfer{with(post(10, 9, 40), func(x *ledger.Transfer) { x.CreditAccountID = id(carol) })},
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
		{name: "PostingUpToMaxInt64IsOK",
			setup: []ledger.Transfer{pending(9, treasury, sink, 10, 0), plain(8, issuer, sink, maxI-10)},
			batch: []ledger.Transfer{post(10, 9, 0)},
			want:  []ledger.Result{ledger.OK}},
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
		{name: "PayoutFeeAndArbiterFeeCommitTogether",
			setup: []ledger.Transfer{pending(9, alice, bob, 300, time.Hour), pending(8, alice, sink, 20, time.Hour),
				pending(7, alice, carol, 10, time.Hour)},
			batch: []ledger.Transfer{linked(post(10, 9, 250)), linked(post(11, 8, 0)), void(12, 7)},
			want:  []ledger.Result{ledger.OK, ledger.OK, ledger.OK},
			check: func(t *testing.T, f *fx) {
				wantCounters(t, f.l, alice, counters{DebitsPosted: 270, CreditsPosted: aliceFunds})
				wantCounters(t, f.l, bob, counters{CreditsPosted: 250})
				wantCounters(t, f.l, carol, counters{})
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
				mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), ExpiresAt: Epoch.Add(time.Hour)})
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
			f := newFixture(t, open)
			if len(tc.setup) > 0 {
				mustTransfer(t, f.l, tc.setup...)
			}
			if tc.prepare != nil {
				tc.prepare(t, f)
			}
			due := dueAndPending(t, f, tc.setup)
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
			// A batch expires the due reservations it touches first, so
			// balances may change without a commit while one is due.
			if len(committed) == 0 && !due {
				if diff := cmp.Diff(before, mustLookupAccounts(t, f.l, fixtureAccounts...)); diff != "" {
					t.Errorf("a batch that committed nothing changed balances (-before +after):\n%s", diff)
				}
			}
			mustCheckInvariants(t, f.l)
			if tc.check != nil {
				tc.check(t, f)
			}
		})
	}
}

// dueAndPending reports whether a reservation among xs has fallen due on
// the fixture's clock and is still pending, so that the next request may
// expire it.
func dueAndPending(t *testing.T, f *fixture, xs []ledger.Transfer) bool {
	t.Helper()
	for _, x := range xs {
		if x.Flags&ledger.Pending == 0 || x.Timeout <= 0 {
			continue
		}
		st, err := f.l.PendingStatus(t.Context(), x.ID)
		if err != nil {
			t.Fatalf("pending status %s: %v", x.ID, err)
		}
		if st != ledger.StatusPending {
			continue
		}
		stored, err := f.l.LookupTransfer(t.Context(), x.ID)
		if err != nil {
			t.Fatalf("lookup transfer %s: %v", x.ID, err)
		}
		if !f.clock.Now().Before(time.Unix(0, stored.Timestamp).Add(x.Timeout)) {
			return true
		}
	}
	return false
}

// testBatches checks what holds for a batch as a whole.
func testBatches(t *testing.T, open Opener) {
	t.Run("LimitsAreEnforced", func(t *testing.T) {
		l := open(t, NewClock().Now)
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
	})
	t.Run("RetryingABatchChangesNothing", func(t *testing.T) {
		f := newFixture(t, open)
		batch := []ledger.Transfer{
			plain(10, alice, bob, 100),
			pending(11, alice, carol, 200, time.Hour),
			linked(plain(12, bob, carol, 50)), plain(13, carol, sink, 25),
			post(14, 11, 150),
			plain(15, bob, alice, 1000), // refused: insufficient funds
		}
		first := createTransfers(t, f.l, batch...)
		want := []ledger.Result{ledger.OK, ledger.OK, ledger.OK, ledger.OK, ledger.OK, ledger.InsufficientFunds}
		if diff := cmp.Diff(codes(want), codes(first)); diff != "" {
			t.Fatalf("first results (-want +got):\n%s", diff)
		}
		balances := mustLookupAccounts(t, f.l, fixtureAccounts...)
		stored := mustLookupTransfer(t, f.l, 14)
		f.clock.Advance(time.Minute)
		again := createTransfers(t, f.l, batch...)
		want = []ledger.Result{ledger.Exists, ledger.Exists, ledger.Exists, ledger.Exists, ledger.Exists, ledger.InsufficientFunds}
		if diff := cmp.Diff(codes(want), codes(again)); diff != "" {
			t.Fatalf("results of the retry (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(balances, mustLookupAccounts(t, f.l, fixtureAccounts...)); diff != "" {
			t.Errorf("a retry changed balances (-before +after):\n%s", diff)
		}
		if diff := cmp.Diff(stored, mustLookupTransfer(t, f.l, 14)); diff != "" {
			t.Errorf("a retry changed a stored transfer (-before +after):\n%s", diff)
		}
		mustCheckInvariants(t, f.l)
	})
	t.Run("AFullBatchCommits", func(t *testing.T) {
		clock := NewClock()
		l := open(t, clock.Now)
		const wallets = 2 * ledger.MaxBatch
		as := []ledger.Account{{ID: id(1)}}
		for n := range uint64(wallets) {
			as = append(as, ledger.Account{ID: id(100 + n), Flags: ledger.DebitsMustNotExceedCredits})
			if len(as) == ledger.MaxBatch {
				mustCreateAccounts(t, l, as...)
				as = as[:0]
			}
		}
		mustCreateAccounts(t, l, as...)
		var xs []ledger.Transfer
		for n := range uint64(ledger.MaxBatch) {
			xs = append(xs, plain(1_000_000+n, 1, 100+n, 10))
		}
		mustTransfer(t, l, xs...)
		xs = xs[:0]
		for n := range uint64(ledger.MaxBatch) {
			xs = append(xs, plain(2_000_000+n, 100+n, 100+ledger.MaxBatch+n, 10))
		}
		mustTransfer(t, l, xs...)
		mustCheckInvariants(t, l)
		if got := mustAccount(t, l, 100+ledger.MaxBatch+7).Balance().Posted; got != 10 {
			t.Errorf("last wallet's balance %d, want 10", got)
		}
	})
}

// testLookups checks what the lookups return.
func testLookups(t *testing.T, open Opener) {
	f := newFixture(t, open)
	mustTransfer(t, f.l, with(pending(10, alice, bob, 300, time.Hour), func(x *ledger.Transfer) {
		x.UserData, x.Code = id(42), 7
	}), post(11, 10, 0))
	t.Run("AccountsComeInTheOrderAsked", func(t *testing.T) {
		as := mustLookupAccounts(t, f.l, bob, 99, alice, bob)
		var got []ledger.ID
		for _, a := range as {
			got = append(got, a.ID)
		}
		if diff := cmp.Diff([]ledger.ID{id(bob), id(alice), id(bob)}, got); diff != "" {
			t.Errorf("accounts (-want +got):\n%s", diff)
		}
	})
	t.Run("TransferIsStoredAsSent", func(t *testing.T) {
		got := mustLookupTransfer(t, f.l, 10)
		want := ledger.Transfer{ID: id(10), DebitAccountID: id(alice), CreditAccountID: id(bob), Amount: 300,
			UserData: id(42), Code: 7, Timeout: time.Hour, Flags: ledger.Pending, Timestamp: got.Timestamp}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("pending as stored (-want +got):\n%s", diff)
		}
	})
	t.Run("PostIsStoredWithItsAccountsAndAmount", func(t *testing.T) {
		got := mustLookupTransfer(t, f.l, 11)
		want := ledger.Transfer{ID: id(11), DebitAccountID: id(alice), CreditAccountID: id(bob), Amount: 300,
			PendingID: id(10), Flags: ledger.PostPending, Timestamp: got.Timestamp}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("post as stored (-want +got):\n%s", diff)
		}
	})
	t.Run("UnknownTransferIsErrNotFound", func(t *testing.T) {
		wantNoTransfer(t, f.l, id(99))
	})
	t.Run("StatusOfWhatIsNotPendingIsNone", func(t *testing.T) {
		wantStatus(t, f.l, 1, ledger.StatusNone)
		wantStatus(t, f.l, 99, ledger.StatusNone)
		wantStatus(t, f.l, 10, ledger.StatusPosted)
	})
}
