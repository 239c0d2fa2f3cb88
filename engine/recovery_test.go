package engine_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
)

// TestOrphanHoldIsReleased plays a node that died between holding an
// award's escrow in the ledger and committing the contract: when the
// intent expires, the hold goes back to the buyer instead of waiting for
// its timeout.
func TestOrphanHoldIsReleased(t *testing.T) {
	m := newMarket(t)
	p := m.parties()
	in, b := m.openIntent(p, market.Acceptance{}, 2*market.Credit)
	sum := sha256.Sum256([]byte(in.ID + "\x00" + b.ID))
	cid := "ctr_" + hex.EncodeToString(sum[:10])
	hold := ledger.Transfer{ID: ledger.DeriveID("escrow/price", []byte(cid)),
		DebitAccountID: ledger.DeriveID("wallet", []byte(p.buyer.ID)), CreditAccountID: ledger.DeriveID("wallet", []byte(p.seller.ID)),
		Amount: uint64(2 * market.Credit), Flags: ledger.Pending, Timeout: 24 * time.Hour}
	res, err := m.ledger.CreateTransfers(context.Background(), []ledger.Transfer{hold})
	if err != nil || res[0] != ledger.OK {
		t.Fatalf("hold: %v %v", res, err)
	}
	if got := m.balance(p.buyer.ID).HeldMicrocredits; got != 2*market.Credit {
		t.Fatalf("held %d before expiry", got)
	}
	m.tick(31 * time.Second) // past the award deadline: the intent expires
	if in := must[market.Intent](t)(m.Intent(context.Background(), in.ID)); in.State != market.IntentExpired {
		t.Fatalf("intent %s", in.State)
	}
	if got := m.balance(p.buyer.ID); got.HeldMicrocredits != 0 {
		t.Fatalf("the orphan hold is still held: %+v", got)
	}
	if st, _ := m.ledger.PendingStatus(context.Background(), hold.ID); st != ledger.StatusVoided {
		t.Fatalf("orphan hold is %s, want voided", st)
	}
	m.checkMoney()
}

// TestRetriedRequestsCreateNothingTwice replays requests with the same
// transport key, as the SDK does on another node after the first died.
func TestRetriedRequestsCreateNothingTwice(t *testing.T) {
	m := newMarket(t)
	p := m.parties()
	ctx := market.WithRequestKey(p.seller.Ctx, "http/seller/key-1")
	o1 := must[market.Offer](t)(m.PublishOffer(ctx, market.Offer{Intent: "DUP", BasePriceMicrocredits: market.Credit, LatencyMs: 1000}))
	o2 := must[market.Offer](t)(m.PublishOffer(ctx, market.Offer{Intent: "DUP", BasePriceMicrocredits: market.Credit, LatencyMs: 1000}))
	if o1.ID != o2.ID {
		t.Fatalf("a retried publish created %s and %s", o1.ID, o2.ID)
	}
	before := m.balance(p.buyer.ID).PostedMicrocredits
	op := market.WithRequestKey(operatorCtx(), "http/operator/mint-1")
	for range 3 {
		must[market.Balance](t)(m.Mint(op, p.buyer.ID, 5*market.Credit))
	}
	if got := m.balance(p.buyer.ID).PostedMicrocredits; got != before+5*market.Credit {
		t.Fatalf("three tries of one mint credited %d", got-before)
	}
	in := must[market.Intent](t)(m.PostIntent(p.buyer.Ctx, market.IntentRequest{RequestID: "dup-bid", Intent: sortIntent, Parameters: sortParams,
		Constraints: market.Constraints{MaxBudgetMicrocredits: 5 * market.Credit}}))
	bctx := market.WithRequestKey(p.seller.Ctx, "http/seller/bid-1")
	b1 := must[market.Bid](t)(m.PlaceBid(bctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: market.Credit, LatencyMs: 1000}))
	b2 := must[market.Bid](t)(m.PlaceBid(bctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: market.Credit, LatencyMs: 1000}))
	if b1.ID != b2.ID {
		t.Fatalf("a retried bid created %s and %s", b1.ID, b2.ID)
	}
	m.checkMoney()
}

// TestRestartDoesNotRepeatIDs restarts an engine with the same seed on
// the same data: its fresh ids must not collide with its predecessor's,
// or a new offer would overwrite an old one.
func TestRestartDoesNotRepeatIDs(t *testing.T) {
	m := newMarket(t)
	p := m.parties()
	first := must[market.Offer](t)(m.PublishOffer(p.seller.Ctx, market.Offer{Intent: "GEN", BasePriceMicrocredits: 1, LatencyMs: 1000}))
	m.restart()
	second := must[market.Offer](t)(m.PublishOffer(p.seller.Ctx, market.Offer{Intent: "GEN", BasePriceMicrocredits: 2, LatencyMs: 1000}))
	if first.ID == second.ID || first.ID == p.offer.ID {
		t.Fatalf("ids repeated across a restart: %s, %s", first.ID, second.ID)
	}
	if o := must[market.Offer](t)(m.Offer(context.Background(), first.ID)); o.BasePriceMicrocredits != 1 {
		t.Fatalf("the first offer was overwritten: %+v", o)
	}
}

// TestUnresponsiveArbitersStopBeingAssigned lets every arbiter miss its
// deadlines: each miss is recorded, and an arbiter that mostly misses is
// no longer assigned.
func TestUnresponsiveArbitersStopBeingAssigned(t *testing.T) {
	m := newMarket(t)
	p := m.parties()
	unresponsive := func() (n int, total int) {
		err := m.store.View(context.Background(), func(tx market.ReadTx) error {
			for _, a := range []agent{p.arb1, p.arb2} {
				rec, err := tx.ArbiterRecord(a.ID)
				if err != nil {
					return err
				}
				total += rec.Missed
				if rec.Unresponsive() {
					n++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n, total
	}
	for i := 0; ; i++ {
		if n, _ := unresponsive(); n == 2 {
			break
		}
		if i == 10 {
			t.Fatal("ten silent disputes did not mark both arbiters unresponsive")
		}
		in := must[market.Intent](t)(m.PostIntent(p.buyer.Ctx, market.IntentRequest{RequestID: "silent-" + string(rune('a'+i)),
			Intent: sortIntent, Parameters: sortParams, Constraints: market.Constraints{MaxBudgetMicrocredits: 5 * market.Credit}}))
		b := must[market.Bid](t)(m.PlaceBid(p.seller.Ctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: market.Credit, LatencyMs: 10_000}))
		m.tick(3 * time.Second)
		c := must[market.Contract](t)(m.Award(p.buyer.Ctx, in.ID, b.ID))
		must[market.Contract](t)(m.Deliver(p.seller.Ctx, market.DeliveryRequest{Contract: c.ID, Output: sortedOutput()}))
		must[market.Contract](t)(m.Dispute(p.buyer.Ctx, market.DisputeRequest{Contract: c.ID, Reason: "no"}))
		for range 4 {
			m.tick(61 * time.Second) // every assigned arbiter stays silent
		}
		if c = must[market.Contract](t)(m.Contract(p.buyer.Ctx, c.ID)); !c.State.Terminal() {
			t.Fatalf("dispute %d still %s after every deadline", i, c.State)
		}
		if _, total := unresponsive(); total < i+1 {
			t.Fatalf("%d misses recorded over %d silent disputes", total, i+1)
		}
	}
	var err error
	// Both arbiters now mostly miss: a new dispute finds none to assign.
	in := must[market.Intent](t)(m.PostIntent(p.buyer.Ctx, market.IntentRequest{RequestID: "silent-last", Intent: sortIntent,
		Parameters: sortParams, Constraints: market.Constraints{MaxBudgetMicrocredits: 5 * market.Credit}}))
	b := must[market.Bid](t)(m.PlaceBid(p.seller.Ctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: market.Credit, LatencyMs: 10_000}))
	m.tick(3 * time.Second)
	c := must[market.Contract](t)(m.Award(p.buyer.Ctx, in.ID, b.ID))
	must[market.Contract](t)(m.Deliver(p.seller.Ctx, market.DeliveryRequest{Contract: c.ID, Output: sortedOutput()}))
	_, err = m.Dispute(p.buyer.Ctx, market.DisputeRequest{Contract: c.ID, Reason: "no"})
	wantKind(t, err, market.Conflict, "no_arbiter_available")
	m.checkMoney()
}
