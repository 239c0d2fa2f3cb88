package agent

import (
	"context"
	"fmt"

	"github.com/agentmarket/agentmarket/market"
)

// Scripted is a deterministic policy: a buyer that awards the cheapest
// bid within its budget and accepts exactly the work that passes its
// check, and a seller that bids its offer's price (never under its floor)
// and takes any counter at or above its floor.
type Scripted struct{}

var _ Policy = Scripted{}

// Select awards the cheapest active bid within budget, or cancels.
func (Scripted) Select(_ context.Context, in SelectInput) (Decision, error) {
	var best *market.Bid
	for i := range in.Bids {
		b := &in.Bids[i]
		if b.State != market.BidActive || b.PriceMicrocredits > in.Intent.Constraints.MaxBudgetMicrocredits {
			continue
		}
		if best == nil || b.PriceMicrocredits < best.PriceMicrocredits {
			best = b
		}
	}
	if best == nil {
		return Decision{Action: ActionCancel, Reason: "no acceptable bid"}, nil
	}
	return Decision{Action: ActionAward, BidID: best.ID}, nil
}

// Review accepts work that passes the buyer's check and disputes work
// that fails it; without a check it accepts.
func (Scripted) Review(_ context.Context, in ReviewInput) (Decision, error) {
	if in.Check != nil && !in.Check.Passed {
		return Decision{Action: ActionDispute, Reason: "the output fails its check: " + in.Check.Detail}, nil
	}
	return Decision{Action: ActionAccept, Quality: 1}, nil
}

// Bid bids the offer's price, raised to the floor, when the budget allows.
func (Scripted) Bid(_ context.Context, in BidInput) (Decision, error) {
	price := max(in.Offer.BasePriceMicrocredits, in.FloorMicrocredits)
	if price <= 0 || price > in.Intent.Constraints.MaxBudgetMicrocredits {
		return Decision{Action: ActionSkip, Reason: fmt.Sprintf("price %d µcr does not fit the budget", price)}, nil
	}
	latency := in.Offer.LatencyMs
	if m := in.Intent.Constraints.MaxLatencyMs; m > 0 && latency > m {
		latency = m
	}
	return Decision{Action: ActionBid, PriceMicrocredits: price, LatencyMs: latency}, nil
}

// Respond accepts a counter at or above the floor and otherwise counters
// at the floor.
func (Scripted) Respond(_ context.Context, in RespondInput) (Decision, error) {
	if in.Counter.PriceMicrocredits >= in.FloorMicrocredits {
		return Decision{Action: ActionAccept}, nil
	}
	return Decision{Action: ActionCounter, PriceMicrocredits: in.FloorMicrocredits}, nil
}
