package storetest

import (
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// recordCases store single objects and read them back.
func recordCases() []testCase {
	return []testCase{
		{"RoundTripEveryRecordType", testRoundTrip},
		{"PutReplacesTheObject", testPutReplaces},
		{"GettersReturnNotExist", testNotExist},
		{"AbsentAggregatesAreZero", testZeroAggregates},
		{"ArbitersNeedRoleAndBond", testArbiters},
		{"OperatorGrantsAccumulate", testOperatorGrants},
		{"ActiveOffersByIntent", testActiveOffers},
		{"OffersBySeller", testOffersBySeller},
		{"IntentByRequest", testIntentByRequest},
		{"RequestIDIsUniquePerBuyer", testRequestIDUnique},
		{"BidsOldestFirst", testBidsOrder},
		{"MessagesOldestFirst", testMessagesOrder},
		{"OpenContractsCountsNonTerminal", testOpenContracts},
		{"ReceiptSequenceIsEnforced", testReceiptSequence},
		{"PairsBetweenByIntent", testPairsBetween},
		{"PaidByListsPaidSellers", testPaidBy},
		{"NonceReuseIsRejected", testNonceReuse},
		{"IdempotencyRoundTrip", testIdempotency},
	}
}

func testRoundTrip(t *testing.T, s market.Store) {
	agent := newAgent(alice, 5*market.Credit, market.RoleBuyer, market.RoleArbiter)
	offer := newOffer("o-1", bob, "TRANSLATE", market.OfferActive)
	intent := newIntent("i-1", alice, "TRANSLATE", market.IntentOpen, at(5))
	intent.ParentContract = "c-parent"
	bid := newBid("b-1", "i-1", bob, at(6))
	msg := newMessage("m-1", "b-1", alice, 1)
	contract := fullContract()
	receipt := newReceipt(1)
	score := market.ScoreRecord{Agent: bob, Intent: "TRANSLATE", Good: 3.5, Bad: 0.25, Contracts: 4, BuyerGood: 1.5,
		BuyerBad: 0.5, DisputesLost: 1, UpdatedAt: at(50)}
	pair := market.PairRecord{Buyer: alice, Seller: bob, Intent: "TRANSLATE", Trades: 3, Good: 1.25, Bad: 0.5,
		Circular: true, UpdatedAt: at(60)}
	arb := market.ArbiterRecord{Arbiter: carol, Reviews: 7, Compared: 5, AbsError: 0.625}
	idem := market.IdempotencyRecord{Key: "k-1", RequestHash: "sha256:aa", Status: 201,
		Header: []byte(`{"Content-Type":["application/json"]}`), Body: []byte(`{"id":"i-1"}`), CreatedAt: at(70)}
	put(t, s, agent, offer, intent, bid, msg, contract, receipt, score, pair, arb, idem)

	type all struct {
		Agent    market.Agent
		Offer    market.Offer
		Intent   market.Intent
		Bid      market.Bid
		Message  []market.Message
		Contract market.Contract
		Receipt  market.Receipt
		Score    market.ScoreRecord
		Pair     market.PairRecord
		Arbiter  market.ArbiterRecord
		Idem     market.IdempotencyRecord
	}
	want := all{agent, offer, intent, bid, []market.Message{msg}, contract, receipt, score, pair, arb, idem}
	read1 := func(tx market.ReadTx) (all, error) {
		var g all
		var errs [11]error
		g.Agent, errs[0] = tx.Agent(alice)
		g.Offer, errs[1] = tx.Offer("o-1")
		g.Intent, errs[2] = tx.Intent("i-1")
		g.Bid, errs[3] = tx.Bid("b-1")
		g.Message, errs[4] = tx.Messages("b-1")
		g.Contract, errs[5] = tx.Contract("c-full")
		g.Receipt, errs[6] = tx.Receipt(1)
		g.Score, errs[7] = tx.Score(bob, "TRANSLATE")
		g.Pair, errs[8] = tx.Pair(alice, bob, "TRANSLATE")
		g.Arbiter, errs[9] = tx.ArbiterRecord(carol)
		g.Idem, errs[10] = tx.Idempotency("k-1")
		return g, firstErr(errs[:]...)
	}
	diff(t, "records read in View", want, read(t, s, read1))

	// Reads inside an Update see the same, through the write transaction.
	var inUpdate all
	update(t, s, func(tx market.Tx) error {
		var err error
		inUpdate, err = read1(tx)
		return err
	})
	diff(t, "records read in Update", want, inUpdate)

	last := read(t, s, func(tx market.ReadTx) (market.Receipt, error) { return tx.LastReceipt() })
	diff(t, "LastReceipt", receipt, last)
}

func testPutReplaces(t *testing.T, s market.Store) {
	a := newAgent(alice, 0, market.RoleBuyer)
	i := newIntent("i-1", alice, "TRANSLATE", market.IntentOpen, at(0))
	c := newContract("c-1", alice, bob, "TRANSLATE", market.ContractAwarded, at(0))
	o := newOffer("o-1", bob, "TRANSLATE", market.OfferActive)
	put(t, s, a, i, c, o)

	a.Roles = append(a.Roles, market.RoleArbiter)
	a.BondMicrocredits = 9
	i.State = market.IntentAwarded
	i.Contract = "c-1"
	c = settled(c, market.ResultPaid, c.PriceMicrocredits, at(100))
	o.State = market.OfferWithdrawn
	put(t, s, a, i, c, o)

	got := read(t, s, func(tx market.ReadTx) ([]any, error) {
		ga, err1 := tx.Agent(alice)
		gi, err2 := tx.Intent("i-1")
		gc, err3 := tx.Contract("c-1")
		gofr, err4 := tx.Offer("o-1")
		return []any{ga, gi, gc, gofr}, firstErr(err1, err2, err3, err4)
	})
	diff(t, "replaced objects", []any{a, i, c, o}, got)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func testNotExist(t *testing.T, s market.Store) {
	// An object of another kind with the id exists, so that a getter
	// reading the wrong table would show.
	put(t, s, newAgent("x", 0, market.RoleBuyer), newReceipt(1))
	getters := []struct {
		name string
		get  func(tx market.ReadTx) error
	}{
		{"Agent", func(tx market.ReadTx) error { _, err := tx.Agent("nobody"); return err }},
		{"Offer", func(tx market.ReadTx) error { _, err := tx.Offer("x"); return err }},
		{"Intent", func(tx market.ReadTx) error { _, err := tx.Intent("x"); return err }},
		{"IntentByRequest", func(tx market.ReadTx) error { _, err := tx.IntentByRequest(alice, "x"); return err }},
		{"Bid", func(tx market.ReadTx) error { _, err := tx.Bid("x"); return err }},
		{"Contract", func(tx market.ReadTx) error { _, err := tx.Contract("x"); return err }},
		{"Receipt", func(tx market.ReadTx) error { _, err := tx.Receipt(2); return err }},
		{"ReceiptZero", func(tx market.ReadTx) error { _, err := tx.Receipt(0); return err }},
		{"Idempotency", func(tx market.ReadTx) error { _, err := tx.Idempotency("x"); return err }},
	}
	for _, g := range getters {
		t.Run(g.name, func(t *testing.T) {
			err := s.View(t.Context(), g.get)
			wantKind(t, g.name, err, market.NotExist)
		})
	}
}

func testZeroAggregates(t *testing.T, s market.Store) {
	type zeros struct {
		Score       market.ScoreRecord
		Pair        market.PairRecord
		Arbiter     market.ArbiterRecord
		Grants      int64
		Open        int
		Pairs       []market.PairRecord
		PaidBy      []market.AgentID
		Bids        []market.Bid
		Messages    []market.Message
		Active      []market.Offer
		BySeller    []market.Offer
		Arbiters    []market.Agent
		Intents     []market.Intent
		Contracts   []market.Contract
		Events      []market.Event
		Stats       market.IntentStats
		LastReceipt error
	}
	got := read(t, s, func(tx market.ReadTx) (zeros, error) {
		var z zeros
		var errs [16]error
		z.Score, errs[0] = tx.Score(bob, "TRANSLATE")
		z.Pair, errs[1] = tx.Pair(alice, bob, "TRANSLATE")
		z.Arbiter, errs[2] = tx.ArbiterRecord(carol)
		z.Grants, errs[3] = tx.OperatorGrants("op")
		z.Open, errs[4] = tx.OpenContracts(bob, "TRANSLATE")
		z.Pairs, errs[5] = tx.PairsBetween(alice, bob)
		z.PaidBy, errs[6] = tx.PaidBy(alice)
		z.Bids, errs[7] = tx.Bids("i-1")
		z.Messages, errs[8] = tx.Messages("b-1")
		z.Active, errs[9] = tx.ActiveOffers("TRANSLATE")
		z.BySeller, errs[10] = tx.OffersBySeller(bob)
		z.Arbiters, errs[11] = tx.Arbiters(0)
		z.Intents, errs[12] = tx.Intents(market.IntentFilter{})
		z.Contracts, errs[13] = tx.Contracts(market.ContractFilter{})
		z.Events, errs[14] = tx.Events(market.EventFilter{})
		z.Stats, errs[15] = tx.StatsSince("TRANSLATE", at(0))
		_, z.LastReceipt = tx.LastReceipt()
		return z, firstErr(errs[:]...)
	})
	wantKind(t, "LastReceipt on an empty store", got.LastReceipt, market.NotExist)
	got.LastReceipt = nil
	want := zeros{
		// A zero aggregate still names what it aggregates, so that the
		// caller can add to it and store it.
		Score:   market.ScoreRecord{Agent: bob, Intent: "TRANSLATE"},
		Pair:    market.PairRecord{Buyer: alice, Seller: bob, Intent: "TRANSLATE"},
		Arbiter: market.ArbiterRecord{Arbiter: carol},
		Stats:   market.IntentStats{Intent: "TRANSLATE"},
	}
	diff(t, "aggregates of an empty store", want, got)
}

func testArbiters(t *testing.T, s market.Store) {
	put(t, s,
		newAgent(dave, 5*market.Credit, market.RoleArbiter),
		newAgent(carol, 1*market.Credit, market.RoleArbiter, market.RoleSeller),
		newAgent(bob, 9*market.Credit, market.RoleSeller), // bonded but not an arbiter
		newAgent(alice, 2*market.Credit, market.RoleArbiter),
	)
	ids := func(minBond int64) []market.AgentID {
		as := read(t, s, func(tx market.ReadTx) ([]market.Agent, error) { return tx.Arbiters(minBond) })
		var out []market.AgentID
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	diff(t, "Arbiters(0)", []market.AgentID{alice, carol, dave}, ids(0))
	diff(t, "Arbiters(2 credits)", []market.AgentID{alice, dave}, ids(2*market.Credit))
	diff(t, "Arbiters(6 credits)", []market.AgentID(nil), ids(6*market.Credit))
}

func testOperatorGrants(t *testing.T, s market.Store) {
	update(t, s, func(tx market.Tx) error {
		for _, g := range []struct {
			op string
			n  int64
		}{{"acme", 100}, {"acme", 250}, {"other", 7}} {
			if err := tx.AddOperatorGrant(g.op, g.n); err != nil {
				return err
			}
		}
		return nil
	})
	got := read(t, s, func(tx market.ReadTx) ([]int64, error) {
		a, err1 := tx.OperatorGrants("acme")
		o, err2 := tx.OperatorGrants("other")
		n, err3 := tx.OperatorGrants("acm")
		return []int64{a, o, n}, firstErr(err1, err2, err3)
	})
	diff(t, "grants of acme, other, acm", []int64{350, 7, 0}, got)
}

func offerIDs(os []market.Offer) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.ID)
	}
	return out
}

func testActiveOffers(t *testing.T, s market.Store) {
	put(t, s,
		newOffer("o-3", bob, "TRANSLATE", market.OfferActive),
		newOffer("o-1", carol, "TRANSLATE", market.OfferActive),
		newOffer("o-2", dave, "TRANSLATE", market.OfferWithdrawn),
		newOffer("o-4", bob, "SUMMARISE", market.OfferActive),
		newOffer("o-5", bob, "TRANSLATE_AND_FORMAT", market.OfferActive),
	)
	got := read(t, s, func(tx market.ReadTx) ([]market.Offer, error) { return tx.ActiveOffers("TRANSLATE") })
	diff(t, "active TRANSLATE offers, by id", []string{"o-1", "o-3"}, offerIDs(got))
}

func testOffersBySeller(t *testing.T, s market.Store) {
	put(t, s,
		newOffer("o-3", bob, "TRANSLATE", market.OfferActive),
		newOffer("o-1", bob, "SUMMARISE", market.OfferWithdrawn),
		newOffer("o-2", carol, "TRANSLATE", market.OfferActive),
		newOffer("o-4", "did:key:zBobby", "TRANSLATE", market.OfferActive),
	)
	got := read(t, s, func(tx market.ReadTx) ([]market.Offer, error) { return tx.OffersBySeller(bob) })
	diff(t, "bob's offers, by id, withdrawn included", []string{"o-1", "o-3"}, offerIDs(got))
}

func testIntentByRequest(t *testing.T, s market.Store) {
	a := newIntent("i-1", alice, "TRANSLATE", market.IntentOpen, at(0))
	b := newIntent("i-2", bob, "TRANSLATE", market.IntentOpen, at(1))
	b.RequestID = a.RequestID // another buyer may use the same request_id
	put(t, s, a, b)
	got := read(t, s, func(tx market.ReadTx) ([]market.Intent, error) {
		x, err1 := tx.IntentByRequest(alice, a.RequestID)
		y, err2 := tx.IntentByRequest(bob, a.RequestID)
		return []market.Intent{x, y}, firstErr(err1, err2)
	})
	diff(t, "intents by request", []market.Intent{a, b}, got)
}

func testRequestIDUnique(t *testing.T, s market.Store) {
	first := newIntent("i-1", alice, "TRANSLATE", market.IntentOpen, at(0))
	put(t, s, first)

	t.Run("SameBuyerOtherIntentIsExist", func(t *testing.T) {
		dup := newIntent("i-2", alice, "SUMMARISE", market.IntentOpen, at(1))
		dup.RequestID = first.RequestID
		err := s.Update(t.Context(), func(tx market.Tx) error {
			if err := tx.PutAgent(newAgent(dave, 0)); err != nil {
				return err
			}
			return tx.PutIntent(dup)
		})
		wantKind(t, "PutIntent with a reused request_id", err, market.Exist)
		// The failed Update wrote nothing: neither the intent nor the agent.
		err = s.View(t.Context(), func(tx market.ReadTx) error { _, err := tx.Intent("i-2"); return err })
		wantKind(t, "Intent i-2 after the failed Update", err, market.NotExist)
		err = s.View(t.Context(), func(tx market.ReadTx) error { _, err := tx.Agent(dave); return err })
		wantKind(t, "Agent written before the failure", err, market.NotExist)
	})
	t.Run("ExistErrorCanBeHandledInsideTheUpdate", func(t *testing.T) {
		// The engine looks up a reused request_id inside the same Update
		// after PutIntent fails; the transaction must still work.
		dup := newIntent("i-3", alice, "TRANSLATE", market.IntentOpen, at(1))
		dup.RequestID = first.RequestID
		var found market.Intent
		update(t, s, func(tx market.Tx) error {
			err := tx.PutIntent(dup)
			if !market.Is(err, market.Exist) {
				t.Errorf("PutIntent: got %v, want an Exist error", err)
			}
			found, err = tx.IntentByRequest(alice, first.RequestID)
			return err
		})
		diff(t, "intent found after the Exist error", first, found)
	})
	t.Run("PuttingTheSameIntentAgainIsAllowed", func(t *testing.T) {
		again := first
		again.State = market.IntentSelecting
		put(t, s, again)
	})
	t.Run("EmptyRequestIDsDoNotCollide", func(t *testing.T) {
		x := newIntent("i-4", alice, "TRANSLATE", market.IntentOpen, at(2))
		y := newIntent("i-5", alice, "TRANSLATE", market.IntentOpen, at(3))
		x.RequestID, y.RequestID = "", ""
		put(t, s, x, y)
	})
}

func testBidsOrder(t *testing.T, s market.Store) {
	// Bids are stored out of id order and with equal times: insertion
	// order decides.
	put(t, s, newIntent("i-1", alice, "TRANSLATE", market.IntentOpen, at(0)))
	for _, id := range []string{"b-9", "b-2", "b-5"} {
		put(t, s, newBid(id, "i-1", bob, at(5)))
	}
	put(t, s, newBid("b-other", "i-2", bob, at(5)))
	// Updating the first bid does not move it.
	b := newBid("b-9", "i-1", bob, at(5))
	b.State = market.BidWon
	put(t, s, b)
	got := read(t, s, func(tx market.ReadTx) ([]market.Bid, error) { return tx.Bids("i-1") })
	var ids []string
	for _, b := range got {
		ids = append(ids, b.ID)
	}
	diff(t, "bids of i-1, oldest first", []string{"b-9", "b-2", "b-5"}, ids)
	diff(t, "updated bid", b, got[0])
}

func testMessagesOrder(t *testing.T, s market.Store) {
	msgs := []market.Message{
		newMessage("m-z", "b-1", alice, 1),
		newMessage("m-a", "b-1", bob, 2),
		newMessage("m-m", "b-1", alice, 3),
	}
	for _, m := range msgs {
		put(t, s, m)
	}
	put(t, s, newMessage("m-other", "b-2", alice, 1))
	got := read(t, s, func(tx market.ReadTx) ([]market.Message, error) { return tx.Messages("b-1") })
	diff(t, "messages of b-1, oldest first", msgs, got)
}

func testOpenContracts(t *testing.T, s market.Store) {
	awarded := newContract("c-1", alice, bob, "TRANSLATE", market.ContractAwarded, at(0))
	delivered := newContract("c-2", alice, bob, "TRANSLATE", market.ContractDelivered, at(1))
	review := newContract("c-3", carol, bob, "TRANSLATE", market.ContractInReview, at(2))
	done := settled(newContract("c-4", alice, bob, "TRANSLATE", market.ContractAwarded, at(3)), market.ResultPaid, 1, at(9))
	refunded := settled(newContract("c-5", alice, bob, "TRANSLATE", market.ContractAwarded, at(4)), market.ResultRefunded, 0, at(9))
	otherType := newContract("c-6", alice, bob, "SUMMARISE", market.ContractAwarded, at(5))
	otherSeller := newContract("c-7", alice, carol, "TRANSLATE", market.ContractAwarded, at(6))
	put(t, s, awarded, delivered, review, done, refunded, otherType, otherSeller)
	got := read(t, s, func(tx market.ReadTx) (int, error) { return tx.OpenContracts(bob, "TRANSLATE") })
	if got != 3 {
		t.Errorf("OpenContracts(bob, TRANSLATE) = %d, want 3", got)
	}
}

func testReceiptSequence(t *testing.T, s market.Store) {
	steps := []struct {
		name string
		seq  uint64
		ok   bool
	}{
		{"ZeroIsRejected", 0, false},
		{"FirstMustBeOne", 2, false},
		{"First", 1, true},
		{"Duplicate", 1, false},
		{"Gap", 3, false},
		{"Next", 2, true},
		{"Next", 3, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := s.Update(t.Context(), func(tx market.Tx) error { return tx.PutReceipt(newReceipt(st.seq)) })
			if st.ok {
				if err != nil {
					t.Fatalf("PutReceipt(%d): %v", st.seq, err)
				}
				return
			}
			wantKind(t, "PutReceipt out of sequence", err, market.Conflict)
		})
	}
	// Receipts written in one Update follow each other too.
	update(t, s, func(tx market.Tx) error {
		for seq := uint64(4); seq <= 6; seq++ {
			if err := tx.PutReceipt(newReceipt(seq)); err != nil {
				return err
			}
		}
		return nil
	})
	last := read(t, s, func(tx market.ReadTx) (market.Receipt, error) { return tx.LastReceipt() })
	if last.Seq != 6 {
		t.Errorf("LastReceipt().Seq = %d, want 6", last.Seq)
	}
	r4 := read(t, s, func(tx market.ReadTx) (market.Receipt, error) { return tx.Receipt(4) })
	diff(t, "Receipt(4)", newReceipt(4), r4)
}

func testPairsBetween(t *testing.T, s market.Store) {
	p1 := market.PairRecord{Buyer: alice, Seller: bob, Intent: "TRANSLATE", Trades: 1, Good: 1, UpdatedAt: at(1)}
	p2 := market.PairRecord{Buyer: alice, Seller: bob, Intent: "SUMMARISE", Trades: 2, Good: 2, UpdatedAt: at(2)}
	reverse := market.PairRecord{Buyer: bob, Seller: alice, Intent: "TRANSLATE", Trades: 3, UpdatedAt: at(3)}
	other := market.PairRecord{Buyer: alice, Seller: carol, Intent: "TRANSLATE", Trades: 4, UpdatedAt: at(4)}
	put(t, s, p1, p2, reverse, other)
	got := read(t, s, func(tx market.ReadTx) ([]market.PairRecord, error) { return tx.PairsBetween(alice, bob) })
	diff(t, "pairs of alice and bob, by intent", []market.PairRecord{p2, p1}, got)
}

func testPaidBy(t *testing.T, s market.Store) {
	put(t, s,
		settled(newContract("c-1", alice, bob, "TRANSLATE", market.ContractAwarded, at(0)), market.ResultPaid, 5, at(10)),
		settled(newContract("c-2", alice, bob, "SUMMARISE", market.ContractAwarded, at(1)), market.ResultPaid, 5, at(11)),
		settled(newContract("c-3", alice, dave, "TRANSLATE", market.ContractAwarded, at(2)), market.ResultPartial, 3, at(12)),
		settled(newContract("c-4", alice, carol, "TRANSLATE", market.ContractAwarded, at(3)), market.ResultRefunded, 0, at(13)),
		newContract("c-5", alice, abc, "TRANSLATE", market.ContractDelivered, at(4)), // not settled yet
		settled(newContract("c-6", bob, ab, "TRANSLATE", market.ContractAwarded, at(5)), market.ResultPaid, 5, at(14)),
	)
	got := read(t, s, func(tx market.ReadTx) ([]market.AgentID, error) { return tx.PaidBy(alice) })
	diff(t, "sellers alice paid", []market.AgentID{bob, dave}, got)
}

func testNonceReuse(t *testing.T, s market.Store) {
	// Expiry far ahead of any clock the store may use.
	expires := time.Now().Add(time.Hour)
	use := func(agent market.AgentID, nonce string) error {
		return s.Update(t.Context(), func(tx market.Tx) error { return tx.UseNonce(agent, nonce, expires) })
	}
	if err := use(alice, "n-1"); err != nil {
		t.Fatalf("first use: %v", err)
	}
	wantKind(t, "same agent, same nonce", use(alice, "n-1"), market.Exist)
	if err := use(bob, "n-1"); err != nil {
		t.Errorf("another agent's same nonce: %v", err)
	}
	if err := use(alice, "n-2"); err != nil {
		t.Errorf("same agent, another nonce: %v", err)
	}
	t.Run("RolledBackUseIsForgotten", func(t *testing.T) {
		err := s.Update(t.Context(), func(tx market.Tx) error {
			if err := tx.UseNonce(alice, "n-3", expires); err != nil {
				return err
			}
			return errBoom
		})
		if err != errBoom {
			t.Fatalf("Update: got %v, want errBoom", err)
		}
		if err := use(alice, "n-3"); err != nil {
			t.Errorf("nonce of a rolled-back Update: %v", err)
		}
	})
}

func testIdempotency(t *testing.T, s market.Store) {
	rec := market.IdempotencyRecord{Key: "k", RequestHash: "h1", Status: 200, Body: []byte("{}"), CreatedAt: at(1)}
	put(t, s, rec)
	rec.Status, rec.RequestHash, rec.Header = 409, "h2", []byte(`{"a":1}`)
	put(t, s, rec)
	got := read(t, s, func(tx market.ReadTx) (market.IdempotencyRecord, error) { return tx.Idempotency("k") })
	diff(t, "idempotency record after replacing", rec, got)
}
