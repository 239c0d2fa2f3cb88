package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/agentmarket/agentmarket/engine"
	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
)

// lifecycle drives random actors through the whole contract lifecycle and
// checks the money and state invariants after every step.
type lifecycle struct {
	m        *testMarket
	buyers   []agent
	sellers  []agent
	arbiters []agent
	all      []agent
	intents  []string
	n        int
}

// pickIntent draws an intent, mostly one in the given state so that the
// run makes progress, sometimes any, so that wrong states are tried too.
func (l *lifecycle) pickIntent(t *rapid.T, state market.IntentState) (string, bool) {
	if len(l.intents) == 0 {
		return "", false
	}
	if rapid.IntRange(0, 4).Draw(t, "anyState") > 0 {
		list, err := l.m.Intents(context.Background(), market.IntentFilter{State: state, Page: market.Page{Limit: 1000}})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) > 0 {
			return rapid.SampledFrom(list).Draw(t, "intent").ID, true
		}
	}
	return rapid.SampledFrom(l.intents).Draw(t, "intent"), true
}

func (l *lifecycle) agentByID(id market.AgentID) agent {
	for _, a := range l.all {
		if a.ID == id {
			return a
		}
	}
	panic("unknown agent " + string(id))
}

func (l *lifecycle) contracts(t *rapid.T, states ...market.ContractState) []market.Contract {
	cs, err := l.m.Contracts(operatorCtx(), market.ContractFilter{Page: market.Page{Limit: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	var out []market.Contract
	for _, c := range cs {
		if len(states) == 0 || slices.Contains(states, c.State) {
			out = append(out, c)
		}
	}
	return out
}

func (l *lifecycle) postIntent(t *rapid.T) {
	b := rapid.SampledFrom(l.buyers).Draw(t, "buyer")
	policy := rapid.SampledFrom([]string{market.AcceptBuyer, market.AcceptChecker, market.AcceptArbiter}).Draw(t, "policy")
	acc := market.Acceptance{Policy: policy}
	if policy == market.AcceptChecker {
		acc.Checker = "sort"
	}
	l.n++
	in, err := l.m.PostIntent(b.Ctx, market.IntentRequest{
		RequestID: fmt.Sprintf("p-%d", l.n), Intent: sortIntent, Parameters: sortParams,
		Constraints: market.Constraints{MaxBudgetMicrocredits: rapid.Int64Range(1, 30).Draw(t, "budget") * market.Credit},
		Selection:   market.Selection{Mode: rapid.SampledFrom([]string{market.SelectManual, market.SelectAuto}).Draw(t, "mode")},
		Acceptance:  acc,
	})
	if err != nil {
		t.Fatalf("post intent: %v", err)
	}
	l.intents = append(l.intents, in.ID)
}

func (l *lifecycle) placeBid(t *rapid.T) {
	id, ok := l.pickIntent(t, market.IntentOpen)
	if !ok {
		t.Skip("no intents")
	}
	s := rapid.SampledFrom(l.sellers).Draw(t, "seller")
	in, err := l.m.Intent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	price := rapid.Int64Range(1, 40).Draw(t, "price") * market.Credit / 2
	_, err = l.m.PlaceBid(s.Ctx, market.BidRequest{Intent: id, PriceMicrocredits: price, LatencyMs: rapid.Int64Range(1_000, 60_000).Draw(t, "latency")})
	switch {
	case in.State != market.IntentOpen:
		wantRapidKind(t, err, market.Conflict)
	case price > in.Constraints.MaxBudgetMicrocredits:
		wantRapidKind(t, err, market.Invalid, market.Exist)
	case err != nil && !market.Is(err, market.Exist):
		t.Fatalf("bid: %v", err)
	}
}

func (l *lifecycle) award(t *rapid.T) {
	id, ok := l.pickIntent(t, market.IntentSelecting)
	if !ok {
		t.Skip("no intents")
	}
	in, err := l.m.Intent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	bids, err := l.m.Bids(operatorCtx(), id)
	if err != nil || len(bids) == 0 {
		t.Skip("no bids")
	}
	b := rapid.SampledFrom(bids).Draw(t, "bid")
	buyer := l.agentByID(in.Buyer)
	before := l.m.balance(buyer.ID)
	_, err = l.m.Award(buyer.Ctx, id, b.ID)
	if err != nil {
		k := market.KindOf(err)
		if k != market.Conflict && k != market.Expired && k != market.InsufficientFunds && k != market.Invalid {
			t.Fatalf("award: %v", err)
		}
		if after := l.m.balance(buyer.ID); after != before {
			t.Fatalf("a failed award (%v) changed the buyer's wallet: %+v -> %+v", err, before, after)
		}
	}
}

func (l *lifecycle) counter(t *rapid.T) {
	id, ok := l.pickIntent(t, market.IntentSelecting)
	if !ok {
		t.Skip("no intents")
	}
	bids, err := l.m.Bids(operatorCtx(), id)
	if err != nil || len(bids) == 0 {
		t.Skip("no bids")
	}
	b := rapid.SampledFrom(bids).Draw(t, "bid")
	in, _ := l.m.Intent(context.Background(), id)
	actor := l.agentByID(in.Buyer)
	accept := false
	if b.BuyerOfferMicrocredits > 0 {
		actor, accept = l.agentByID(b.Seller), rapid.Bool().Draw(t, "accept")
	}
	_, err = l.m.Counter(actor.Ctx, market.CounterRequest{Bid: b.ID, InReplyTo: b.LastMessage, Accept: accept,
		PriceMicrocredits: rapid.Int64Range(1, 20).Draw(t, "price") * market.Credit / 2})
	if err != nil {
		k := market.KindOf(err)
		if k != market.Conflict && k != market.Invalid && k != market.Expired {
			t.Fatalf("counter: %v", err)
		}
	}
}

func (l *lifecycle) deliver(t *rapid.T) {
	cs := l.contracts(t, market.ContractAwarded)
	if len(cs) == 0 {
		t.Skip("nothing to deliver")
	}
	c := rapid.SampledFrom(cs).Draw(t, "contract")
	out := sortedOutput()
	if rapid.Bool().Draw(t, "wrong") {
		out = json.RawMessage(`{"items":[9,1]}`)
	}
	_, err := l.m.Deliver(l.agentByID(c.Seller).Ctx, market.DeliveryRequest{Contract: c.ID, Output: out})
	if err != nil && !market.Is(err, market.Expired) && !market.Is(err, market.Conflict) {
		t.Fatalf("deliver: %v", err)
	}
}

func (l *lifecycle) review(t *rapid.T) {
	cs := l.contracts(t, market.ContractDelivered)
	if len(cs) == 0 {
		t.Skip("nothing delivered")
	}
	c := rapid.SampledFrom(cs).Draw(t, "contract")
	buyer := l.agentByID(c.Buyer)
	var err error
	if rapid.Bool().Draw(t, "dispute") {
		_, err = l.m.Dispute(buyer.Ctx, market.DisputeRequest{Contract: c.ID, Reason: "no"})
	} else {
		_, err = l.m.Accept(buyer.Ctx, market.AcceptRequest{Contract: c.ID, Quality: rapid.Float64Range(0, 1).Draw(t, "quality")})
	}
	if err != nil && !market.Is(err, market.Conflict) {
		t.Fatalf("review: %v", err)
	}
}

func (l *lifecycle) arbitrate(t *rapid.T) {
	cs := l.contracts(t, market.ContractInReview)
	if len(cs) == 0 {
		t.Skip("nothing in review")
	}
	c := rapid.SampledFrom(cs).Draw(t, "contract")
	arb := l.agentByID(rapid.SampledFrom(c.Arbiters).Draw(t, "arbiter"))
	_, err := l.m.SubmitReview(arb.Ctx, market.ReviewRequest{Contract: c.ID, Quality: rapid.Float64Range(0, 1).Draw(t, "quality"),
		Verdict: rapid.SampledFrom([]string{market.VerdictRelease, market.VerdictPartial, market.VerdictRefund}).Draw(t, "verdict")})
	if err != nil && !market.Is(err, market.Conflict) {
		t.Fatalf("arbitrate: %v", err)
	}
}

// illegal tries a step the contract's state forbids, or one by the wrong
// agent, and checks that it fails and changes nothing.
func (l *lifecycle) illegal(t *rapid.T) {
	cs := l.contracts(t)
	if len(cs) == 0 {
		t.Skip("no contracts")
	}
	c := rapid.SampledFrom(cs).Draw(t, "contract")
	who := rapid.SampledFrom(l.all).Draw(t, "who")
	type attempt struct {
		step  market.Step
		actor market.AgentID
		do    func(agent) error
	}
	attempts := []attempt{
		{market.StepDeliverForReview, c.Seller, func(a agent) error {
			_, err := l.m.Deliver(a.Ctx, market.DeliveryRequest{Contract: c.ID, Output: sortedOutput()})
			return err
		}},
		{market.StepAccept, c.Buyer, func(a agent) error {
			_, err := l.m.Accept(a.Ctx, market.AcceptRequest{Contract: c.ID})
			return err
		}},
		{market.StepDispute, c.Buyer, func(a agent) error {
			_, err := l.m.Dispute(a.Ctx, market.DisputeRequest{Contract: c.ID, Reason: "x"})
			return err
		}},
		{market.StepVerdictRelease, "", func(a agent) error {
			_, err := l.m.SubmitReview(a.Ctx, market.ReviewRequest{Contract: c.ID, Quality: 1, Verdict: market.VerdictRelease})
			return err
		}},
	}
	at := rapid.SampledFrom(attempts).Draw(t, "attempt")
	_, stateErr := market.Transition(c.State, at.step)
	rightActor := who.ID == at.actor || at.actor == "" && slices.Contains(c.Arbiters, who.ID)
	if stateErr == nil && rightActor {
		t.Skip("that step is legal")
	}
	before := l.m.balance(c.Buyer)
	err := at.do(who)
	if err == nil {
		t.Fatalf("illegal %s by %s on a %s contract succeeded", at.step, who.ID, c.State)
	}
	if k := market.KindOf(err); k != market.Conflict && k != market.Permission && k != market.Expired {
		t.Fatalf("illegal %s: got %v", at.step, err)
	}
	if after, _ := l.m.Contract(operatorCtx(), c.ID); after.State != c.State {
		t.Fatalf("illegal %s moved the contract from %s to %s", at.step, c.State, after.State)
	}
	if after := l.m.balance(c.Buyer); after != before {
		t.Fatalf("illegal %s changed the buyer's wallet", at.step)
	}
}

func (l *lifecycle) check(t *rapid.T) {
	ctx := context.Background()
	if err := l.m.ledger.CheckInvariants(ctx); err != nil {
		t.Fatalf("ledger: %v", err)
	}
	var held int64
	for _, a := range l.all {
		b := l.m.balance(a.ID)
		if b.AvailableMicrocredits < 0 || b.PostedMicrocredits < 0 {
			t.Fatalf("wallet of %s below zero: %+v", a.ID, b)
		}
		held += b.HeldMicrocredits
	}
	var holds int64
	for _, c := range l.contracts(t) {
		legal := slices.Contains(market.ContractStates(), c.State)
		if !legal {
			t.Fatalf("contract %s in unknown state %q", c.ID, c.State)
		}
		if c.State.Terminal() != (c.Outcome != nil) {
			t.Fatalf("contract %s is %s with outcome %v", c.ID, c.State, c.Outcome)
		}
		if !c.State.Terminal() {
			holds += c.HoldMicrocredits
			st, err := l.m.ledger.PendingStatus(ctx, ledger.DeriveID("escrow/price", []byte(c.ID)))
			if err != nil || st != ledger.StatusPending {
				t.Fatalf("open contract %s has escrow %s (%v)", c.ID, st, err)
			}
		}
	}
	if held != holds {
		t.Fatalf("wallets hold %d µcr but open contracts hold %d", held, holds)
	}
}

func wantRapidKind(t *rapid.T, err error, kinds ...market.Kind) {
	if err == nil {
		t.Fatalf("got no error, want one of %v", kinds)
	}
	if !slices.Contains(kinds, market.KindOf(err)) {
		t.Fatalf("got %v, want one of %v", err, kinds)
	}
}

var debugStates map[string]int

func TestLifecycleProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := newMarket(t, func(c *engine.Config) { c.SampleRate, c.CrossCheckRate = 0.3, 0.3 })
		l := &lifecycle{m: m}
		for i := range 2 {
			l.buyers = append(l.buyers, m.agent(fmt.Sprintf("b%d", i), fmt.Sprintf("ob%d", i), market.RoleBuyer))
			s := m.agent(fmt.Sprintf("s%d", i), fmt.Sprintf("os%d", i), market.RoleSeller)
			must[market.Offer](t)(m.PublishOffer(s.Ctx, market.Offer{Intent: sortIntent, BasePriceMicrocredits: market.Credit, LatencyMs: 60_000}))
			l.sellers = append(l.sellers, s)
		}
		for i := range 3 {
			a := m.agent(fmt.Sprintf("a%d", i), fmt.Sprintf("oa%d", i), market.RoleArbiter)
			must[market.Balance](t)(m.PostBond(a.Ctx, 10*market.Credit))
			l.arbiters = append(l.arbiters, a)
		}
		l.all = slices.Concat(l.buyers, l.sellers, l.arbiters)
		rt.Repeat(map[string]func(*rapid.T){
			"post":      l.postIntent,
			"bid":       l.placeBid,
			"counter":   l.counter,
			"award":     l.award,
			"deliver":   l.deliver,
			"review":    l.review,
			"arbitrate": l.arbitrate,
			"illegal":   l.illegal,
			"tick": func(t *rapid.T) {
				m.tick(time.Duration(rapid.Int64Range(100, 2_500).Draw(t, "ms")) * time.Millisecond)
			},
			"longtick": func(t *rapid.T) {
				m.tick(time.Duration(rapid.Int64Range(20_000, 70_000).Draw(t, "ms")) * time.Millisecond)
			},
			"restart": func(t *rapid.T) {
				if rapid.IntRange(0, 9).Draw(t, "restart") == 0 {
					m.restart()
				}
			},
			"": l.check,
		})
		if debugStates != nil {
			for _, c := range l.contracts(rt) {
				debugStates[string(c.State)+"/"+func() string {
					if c.Outcome != nil {
						return c.Outcome.Reason
					}
					return ""
				}()]++
			}
		}
	})
}
