package ledgertest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/ledger"
)

func testMandates(t *testing.T, open Opener) {
	t.Run("BudgetWindowSlides", func(t *testing.T) {
		f := newFixture(t, open)
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
		f := newFixture(t, open)
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
		mustTransfer(t, f.l, pending(10, alice, bob, 100, 0))
		wantResults(t, f.l, []ledger.Transfer{plain(11, alice, bob, 1)}, ledger.MandateViolated)
		mustTransfer(t, f.l, void(12, 10))
		wantResults(t, f.l, []ledger.Transfer{plain(13, alice, bob, 100), plain(14, alice, bob, 1)},
			ledger.OK, ledger.MandateViolated)
	})
	t.Run("ExpiryGivesBudgetBack", func(t *testing.T) {
		f := newFixture(t, open)
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
		mustTransfer(t, f.l, pending(10, alice, bob, 100, time.Minute))
		f.clock.Advance(2 * time.Minute)
		wantResults(t, f.l, []ledger.Transfer{plain(13, alice, bob, 100)}, ledger.OK)
	})
	t.Run("ExpiryByTickGivesBudgetBack", func(t *testing.T) {
		f := newFixture(t, open)
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
		mustTransfer(t, f.l, pending(10, alice, bob, 100, time.Minute))
		f.clock.Advance(2 * time.Minute)
		if n := mustTick(t, f.l); n != 1 {
			t.Fatalf("tick expired %d, want 1", n)
		}
		wantResults(t, f.l, []ledger.Transfer{plain(13, alice, bob, 100), plain(14, alice, bob, 1)},
			ledger.OK, ledger.MandateViolated)
	})
	t.Run("PartialPostKeepsWhatWasPosted", func(t *testing.T) {
		f := newFixture(t, open)
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
		mustTransfer(t, f.l, pending(10, alice, bob, 100, 0), post(11, 10, 60))
		wantResults(t, f.l, []ledger.Transfer{plain(12, alice, bob, 41), plain(13, alice, bob, 40)},
			ledger.MandateViolated, ledger.OK)
	})
	t.Run("PostIsNotCheckedAgain", func(t *testing.T) {
		f := newFixture(t, open)
		mustTransfer(t, f.l, pending(10, alice, bob, 100, 0))
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), MaxPerTransfer: 10, Counterparties: []ledger.ID{id(carol)}})
		wantResults(t, f.l, []ledger.Transfer{post(11, 10, 0)}, ledger.OK)
	})
	t.Run("FailedChainGivesBudgetBack", func(t *testing.T) {
		f := newFixture(t, open)
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
		wantResults(t, f.l, []ledger.Transfer{linked(plain(10, alice, bob, 100)), plain(11, carol, bob, 1)},
			ledger.LinkedEventFailed, ledger.InsufficientFunds)
		wantResults(t, f.l, []ledger.Transfer{plain(12, alice, bob, 100)}, ledger.OK)
	})
	t.Run("FailedChainDoesNotSlideTheWindow", func(t *testing.T) {
		// A chain that fails is undone whole, its timestamps included, so
		// the spends it pushed out of the window must come back: the next
		// transfer is stamped earlier than the chain's last event was.
		f := newFixture(t, open)
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
		f.clock.Set(spent.Add(time.Hour))
		wantResults(t, f.l, []ledger.Transfer{plain(15, alice, bob, 100)}, ledger.OK)
	})
	t.Run("WideningTheWindowBringsNoSpendBack", func(t *testing.T) {
		// A spend that left the window before the mandate was replaced
		// stays out of it, whether or not a failed transfer happened to
		// look at the window in between.
		for _, probe := range []bool{true, false} {
			f := newFixture(t, open)
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
		}
	})
	t.Run("ReplacingKeepsTheWindowsSpends", func(t *testing.T) {
		f := newFixture(t, open)
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour})
		mustTransfer(t, f.l, plain(10, alice, bob, 80))
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), Budget: 100, Window: time.Hour, MaxPerTransfer: 50})
		wantResults(t, f.l, []ledger.Transfer{plain(11, alice, bob, 21), plain(12, alice, bob, 20)},
			ledger.MandateViolated, ledger.OK)
	})
	t.Run("MandateWithNoLimitsRemovesIt", func(t *testing.T) {
		f := newFixture(t, open)
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), MaxPerTransfer: 1})
		mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice)})
		if _, ok, err := f.l.Mandate(t.Context(), id(alice)); err != nil || ok {
			t.Fatalf("mandate after removal: found %v, %v", ok, err)
		}
		wantResults(t, f.l, []ledger.Transfer{plain(10, alice, bob, 500)}, ledger.OK)
	})
	t.Run("EveryLimitAtOnce", func(t *testing.T) {
		f := newFixture(t, open)
		m := ledger.Mandate{AccountID: id(alice), MaxPerTransfer: 500, Budget: 600, Window: time.Hour,
			Counterparties: []ledger.ID{id(bob), id(carol)}, ExpiresAt: Epoch.Add(24 * time.Hour)}
		mustSetMandate(t, f.l, m)
		got, ok, err := f.l.Mandate(t.Context(), id(alice))
		if err != nil || !ok {
			t.Fatalf("mandate: %v, %v", ok, err)
		}
		if diff := cmp.Diff(m, got); diff != "" {
			t.Errorf("mandate as stored (-want +got):\n%s", diff)
		}
		mustTransfer(t, f.l, plain(10, alice, bob, 500), pending(11, alice, carol, 50, 0))
		wantResults(t, f.l, []ledger.Transfer{plain(12, alice, bob, 51), plain(13, alice, sink, 1), plain(14, alice, bob, 50)},
			ledger.MandateViolated, ledger.MandateViolated, ledger.OK)
		mustTransfer(t, f.l, void(15, 11))
		wantResults(t, f.l, []ledger.Transfer{plain(16, alice, carol, 50)}, ledger.OK)
		f.clock.Set(m.ExpiresAt)
		wantResults(t, f.l, []ledger.Transfer{plain(17, alice, carol, 1)}, ledger.MandateViolated)
	})
	t.Run("MandateIsCopiedFromTheCaller", func(t *testing.T) {
		f := newFixture(t, open)
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
		f := newFixture(t, open)
		for _, m := range []ledger.Mandate{
			{MaxPerTransfer: 1},
			{AccountID: id(alice), Budget: 1},
			{AccountID: id(alice), Budget: 1, Window: -time.Second},
			{AccountID: id(alice), Counterparties: []ledger.ID{{}}},
			{AccountID: id(alice), Counterparties: make([]ledger.ID, 1025)},
			// Expiry times a nanosecond clock cannot hold: the epoch
			// itself once read as no expiry at all.
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
	t.Run("LimitsAboveMaxInt64RoundTrip", func(t *testing.T) {
		f := newFixture(t, open)
		m := ledger.Mandate{AccountID: id(alice), MaxPerTransfer: 1<<64 - 1, Budget: 1 << 63, Window: time.Hour}
		mustSetMandate(t, f.l, m)
		got, _, err := f.l.Mandate(t.Context(), id(alice))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(m, got); diff != "" {
			t.Errorf("mandate as stored (-want +got):\n%s", diff)
		}
		wantResults(t, f.l, []ledger.Transfer{plain(10, alice, bob, aliceFunds)}, ledger.OK)
	})
}

// testTimestamps checks what every ledger promises of timestamps: they
// are never before the clock, and they increase along an account's
// history and within a batch.
func testTimestamps(t *testing.T, open Opener) {
	f := newFixture(t, open)
	mustTransfer(t, f.l, plain(10, alice, bob, 1), plain(11, alice, carol, 1), pending(12, alice, bob, 1, 0))
	mustTransfer(t, f.l, post(13, 12, 0))
	mustTransfer(t, f.l, plain(14, bob, carol, 1))
	var last int64
	for _, n := range []uint64{1, 10, 11, 12, 13} { // alice's history, oldest first
		ts := mustLookupTransfer(t, f.l, n).Timestamp
		if ts < Epoch.UnixNano() {
			t.Errorf("transfer %d stamped %d, before the clock's %d", n, ts, Epoch.UnixNano())
		}
		if ts <= last {
			t.Errorf("transfer %d stamped %d, not after %d", n, ts, last)
		}
		last = ts
	}
	if ts := mustLookupTransfer(t, f.l, 14).Timestamp; ts <= mustLookupTransfer(t, f.l, 13).Timestamp {
		t.Errorf("bob's transfer 14 stamped %d, not after his transfer 13", ts)
	}
	f.clock.Advance(time.Hour)
	mustTransfer(t, f.l, plain(15, alice, bob, 1))
	if ts := mustLookupTransfer(t, f.l, 15).Timestamp; ts < Epoch.Add(time.Hour).UnixNano() {
		t.Errorf("transfer 15 stamped %d, before the clock", ts)
	}
}
