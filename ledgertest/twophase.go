package ledgertest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/ledger"
)

func testTwoPhase(t *testing.T, open Opener) {
	t.Run("ReservationMovesFundsToPending", func(t *testing.T) {
		f := newFixture(t, open)
		mustTransfer(t, f.l, pending(10, alice, bob, 300, time.Hour))
		wantCounters(t, f.l, alice, counters{DebitsPending: 300, CreditsPosted: aliceFunds})
		wantCounters(t, f.l, bob, counters{CreditsPending: 300})
		if diff := cmp.Diff(ledger.Balance{Posted: aliceFunds, Pending: -300, Available: aliceFunds - 300},
			mustAccount(t, f.l, alice).Balance()); diff != "" {
			t.Errorf("alice balance (-want +got):\n%s", diff)
		}
		wantStatus(t, f.l, 10, ledger.StatusPending)
	})
	t.Run("FullPostMovesTheWholeReservation", func(t *testing.T) {
		f := newFixture(t, open)
		mustTransfer(t, f.l, pending(10, alice, bob, 300, time.Hour), post(11, 10, 0))
		wantCounters(t, f.l, alice, counters{DebitsPosted: 300, CreditsPosted: aliceFunds})
		wantCounters(t, f.l, bob, counters{CreditsPosted: 300})
		wantStatus(t, f.l, 10, ledger.StatusPosted)
	})
	t.Run("PartialPostReturnsTheRemainder", func(t *testing.T) {
		f := newFixture(t, open)
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
		f := newFixture(t, open)
		mustTransfer(t, f.l, pending(10, alice, bob, 300, time.Hour), void(11, 10))
		wantCounters(t, f.l, alice, counters{CreditsPosted: aliceFunds})
		wantCounters(t, f.l, bob, counters{})
		wantStatus(t, f.l, 10, ledger.StatusVoided)
		if got := mustLookupTransfer(t, f.l, 11).Amount; got != 300 {
			t.Errorf("void amount %d, want the reservation's 300", got)
		}
	})
	t.Run("ResolvingTwiceFails", func(t *testing.T) {
		f := newFixture(t, open)
		mustTransfer(t, f.l, pending(10, alice, bob, 300, 0), post(11, 10, 100))
		wantResults(t, f.l, []ledger.Transfer{post(12, 10, 100), void(13, 10), post(11, 10, 100)},
			ledger.PendingAlreadyPosted, ledger.PendingAlreadyPosted, ledger.Exists)
		wantCounters(t, f.l, alice, counters{DebitsPosted: 100, CreditsPosted: aliceFunds})
	})
	t.Run("ExpiryIsExactlyOnce", func(t *testing.T) {
		f := newFixture(t, open)
		mustTransfer(t, f.l, pending(10, alice, bob, 300, 10*time.Second))
		// The reservation may be stamped after the clock's reading, so it
		// is due a little later; ask the ledger when.
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
		wantCounters(t, f.l, alice, counters{CreditsPosted: aliceFunds})
		mustCheckInvariants(t, f.l)
	})
	t.Run("ExpiryOrderFollowsTheTimeouts", func(t *testing.T) {
		f := newFixture(t, open)
		mustTransfer(t, f.l,
			pending(10, alice, bob, 100, 3*time.Hour),
			pending(11, alice, bob, 100, time.Hour),
			pending(12, alice, bob, 100, 2*time.Hour),
			pending(13, alice, bob, 100, 0))
		for i, want := range []struct {
			expired uint64
			pending uint64
		}{{11, 300}, {12, 200}, {10, 100}} {
			f.clock.Advance(time.Hour + time.Second)
			if n := mustTick(t, f.l); n != 1 {
				t.Fatalf("hour %d: tick expired %d, want 1", i+1, n)
			}
			wantStatus(t, f.l, want.expired, ledger.StatusExpired)
			wantCounters(t, f.l, alice, counters{DebitsPending: want.pending, CreditsPosted: aliceFunds})
		}
		f.clock.Advance(1000 * time.Hour)
		if n := mustTick(t, f.l); n != 0 {
			t.Fatalf("a reservation without a timeout expired")
		}
		wantStatus(t, f.l, 13, ledger.StatusPending)
	})
	t.Run("TickExpiresEverythingDue", func(t *testing.T) {
		f := newFixture(t, open)
		var xs []ledger.Transfer
		for n := range uint64(50) {
			xs = append(xs, pending(100+n, alice, bob, 10, time.Duration(n+1)*time.Second))
		}
		mustTransfer(t, f.l, xs...)
		f.clock.Advance(25*time.Second + 500*time.Millisecond)
		if n := mustTick(t, f.l); n != 25 {
			t.Fatalf("tick expired %d, want the 25 due", n)
		}
		wantCounters(t, f.l, alice, counters{DebitsPending: 250, CreditsPosted: aliceFunds})
		mustCheckInvariants(t, f.l)
	})
	t.Run("ResolvingInOneBatchWithItsReservation", func(t *testing.T) {
		f := newFixture(t, open)
		wantResults(t, f.l, []ledger.Transfer{pending(10, alice, bob, 300, time.Hour), post(11, 10, 100), void(12, 10)},
			ledger.OK, ledger.OK, ledger.PendingAlreadyPosted)
		wantCounters(t, f.l, bob, counters{CreditsPosted: 100})
		wantStatus(t, f.l, 10, ledger.StatusPosted)
	})
}
