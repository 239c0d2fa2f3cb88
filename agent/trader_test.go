package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/agent"
	"github.com/agentmarket/agentmarket/agent/internal/testmarket"
	"github.com/agentmarket/agentmarket/checker"
	"github.com/agentmarket/agentmarket/market"
)

// TestTradersCompleteATrade runs a scripted seller and an LLM buyer (on
// ObeyingModel with no appetite for injections, a fake: no model API is
// reachable here) against the real engine, through Trader alone.
func TestTradersCompleteATrade(t *testing.T) {
	m := testmarket.New(t)
	buyerID := m.NewAgent("buyer", market.RoleBuyer)
	sellerID := m.NewAgent("seller", market.RoleSeller)
	offer, err := m.PublishOffer(market.AsAgent(context.Background(), sellerID), market.Offer{Intent: "SORT_LIST",
		BasePriceMicrocredits: 2 * market.Credit, LatencyMs: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	seller0 := m.Wallet(sellerID)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seller := &agent.Trader{Svc: m, ID: sellerID, Policy: agent.Scripted{}, Poll: time.Millisecond,
		Work: func(_ context.Context, in market.Intent) (json.RawMessage, error) {
			out, _, err := checker.Solve("sort", in.Parameters)
			return out, err
		}}
	sold := make(chan error, 1)
	go func() { sold <- seller.Sell(ctx, []market.Offer{offer}) }()

	buyer := &agent.Trader{Svc: m, ID: buyerID, Policy: agent.NewLLM(agent.NewObeyingModel(0, 1)), Poll: time.Second,
		Wait: func(ctx context.Context, d time.Duration) error {
			time.Sleep(5 * time.Millisecond) // let the seller's goroutine look at the market
			return m.Advance(ctx, d)
		}}
	res, err := buyer.Buy(ctx, agent.Order{RequestID: "r1", Intent: "SORT_LIST", Parameters: json.RawMessage(`{"items":[9,4,7]}`),
		BudgetMicrocredits: 5 * market.Credit, Acceptance: market.Acceptance{Policy: market.AcceptBuyer}, Checker: "sort", BidWindowMs: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Contract == nil || res.Contract.State != market.ContractSettled || res.Reviewed == nil || res.Reviewed.Action != agent.ActionAccept {
		t.Fatalf("result %+v", res)
	}
	cancel()
	if err := <-sold; !errors.Is(err, context.Canceled) {
		t.Fatalf("Sell = %v", err)
	}
	if got := m.Wallet(sellerID).PostedMicrocredits - seller0.PostedMicrocredits; got != res.Contract.PriceMicrocredits {
		t.Fatalf("the seller earned %d µcr, want %d", got, res.Contract.PriceMicrocredits)
	}
	if st := seller.Stats(); st.Actions < 2 || st.Refused != 0 {
		t.Fatalf("seller stats %+v, want a bid and a delivery", st)
	}
	m.CheckMoney()
}
