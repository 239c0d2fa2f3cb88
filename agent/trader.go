package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/agentmarket/agentmarket/checker"
	"github.com/agentmarket/agentmarket/market"
)

// Trader carries one agent's policy out against a market: it posts, bids,
// negotiates, awards, delivers and reviews through market.Service, asking
// the policy at each decision and validating every decision again before
// it acts. It works in-process on the engine or over HTTP through the Go
// SDK, because it sees the market only through the interface.
type Trader struct {
	Svc    market.Service
	ID     market.AgentID
	Policy Policy
	// Wait blocks for about d or until ctx ends. Default: a timer. A
	// test or simulation on a manual clock advances its clock here.
	Wait func(ctx context.Context, d time.Duration) error
	// Poll is how often the trader looks at the market. Default 500ms.
	Poll time.Duration
	// MaxWait bounds each wait for the market to move on (bids closing,
	// a delivery, a seller's answer). Default 10 minutes.
	MaxWait time.Duration
	Log     *slog.Logger

	// Work produces a delivery for a seller's contract. Default: solve
	// the intent with its named checker's reference solver.
	Work func(ctx context.Context, in market.Intent) (json.RawMessage, error)
	// Floor is the least a seller takes for an intent. Default: the
	// offer's base price.
	Floor func(in market.Intent, o market.Offer) int64

	mu    sync.Mutex
	stats TraderStats
}

// TraderStats count a trader's decisions and what became of them.
type TraderStats struct {
	Decisions int `json:"decisions"` // decisions the policy returned
	Actions   int `json:"actions"`   // market calls made for them that succeeded
	// Refused counts decisions refused by validation: nothing was done.
	Refused int `json:"refused"`
	// BlockedByMandate counts payments the market refused under the
	// operator's mandate: nothing was spent.
	BlockedByMandate int `json:"blocked_by_mandate"`
	// BlockedByMarket counts other refusals by the market (over budget,
	// insufficient funds, a stale bid).
	BlockedByMarket int `json:"blocked_by_market"`
}

// Stats returns a copy of the trader's counters.
func (t *Trader) Stats() TraderStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

func (t *Trader) count(f func(*TraderStats)) {
	t.mu.Lock()
	f(&t.stats)
	t.mu.Unlock()
}

func (t *Trader) ctx(ctx context.Context) context.Context { return market.AsAgent(ctx, t.ID) }

func (t *Trader) log() *slog.Logger {
	if t.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return t.Log
}

func (t *Trader) wait(ctx context.Context) error {
	d := t.Poll
	if d <= 0 {
		d = 500 * time.Millisecond
	}
	if t.Wait != nil {
		return t.Wait(ctx, d)
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// until polls until done reports true, ctx ends, or MaxWait passes on
// the trader's own count of polls.
func (t *Trader) until(ctx context.Context, what string, done func() (bool, error)) error {
	limit := t.MaxWait
	if limit <= 0 {
		limit = 10 * time.Minute
	}
	poll := t.Poll
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	for waited := time.Duration(0); ; waited += poll {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		if waited >= limit {
			return fmt.Errorf("gave up waiting for %s", what)
		}
		if err := t.wait(ctx); err != nil {
			return err
		}
	}
}

// Order is a task a buyer wants done.
type Order struct {
	RequestID          string
	Intent             string
	Parameters         json.RawMessage
	BudgetMicrocredits int64
	MaxLatencyMs       int64
	Acceptance         market.Acceptance
	BidWindowMs        int64
	// Checker names the checker the buyer verifies a delivery with.
	// Default: Acceptance.Checker.
	Checker string
	// MaxRounds bounds the decisions on one intent's bids. Default 4.
	MaxRounds int
}

// Result is what became of an order.
type Result struct {
	Intent   market.Intent
	Contract *market.Contract // nil when nothing was awarded
	// Reviewed is the decision taken on the delivery, if one was.
	Reviewed *Decision
}

// ErrNoAward reports an order that ended without a contract; the error
// wrapping it says why.
var ErrNoAward = errors.New("no award")

// Buy runs one order: posts the intent, waits for bids, lets the policy
// award or counter, waits for the delivery and lets the policy review it.
// It returns once the buyer has done its last move; an arbiter may still
// be deciding a dispute.
func (t *Trader) Buy(ctx context.Context, o Order) (Result, error) {
	var res Result
	in, err := t.Svc.PostIntent(t.ctx(ctx), market.IntentRequest{
		RequestID: o.RequestID, Intent: o.Intent, Parameters: o.Parameters,
		Constraints: market.Constraints{MaxBudgetMicrocredits: o.BudgetMicrocredits, MaxLatencyMs: o.MaxLatencyMs},
		Acceptance:  o.Acceptance, BidWindowMs: o.BidWindowMs,
	})
	if err != nil {
		return res, fmt.Errorf("post intent: %w", err)
	}
	res.Intent = in
	err = t.until(ctx, "bidding to close", func() (bool, error) {
		in, err = t.Svc.Intent(t.ctx(ctx), in.ID)
		return in.State != market.IntentOpen, err
	})
	res.Intent = in
	if err != nil {
		return res, err
	}
	if in.State == market.IntentAwarded { // auto selection
		c, err := t.Svc.Contract(t.ctx(ctx), in.Contract)
		if err != nil {
			return res, err
		}
		res.Contract = &c
	} else {
		c, err := t.selectAndAward(ctx, in, o)
		if err != nil {
			return res, err
		}
		res.Contract = &c
	}
	if res.Contract.Acceptance.Policy != market.AcceptBuyer && res.Contract.Acceptance.Policy != "" {
		return res, nil // the market verifies
	}
	c := *res.Contract
	err = t.until(ctx, "the delivery", func() (bool, error) {
		c, err = t.Svc.Contract(t.ctx(ctx), c.ID)
		return c.State != market.ContractAwarded, err
	})
	res.Contract = &c
	if err != nil || c.State != market.ContractDelivered {
		return res, err
	}
	d, err := t.review(ctx, in, c, o)
	if d != nil {
		res.Reviewed = d
	}
	if latest, lerr := t.Svc.Contract(t.ctx(ctx), c.ID); lerr == nil {
		res.Contract = &latest
	}
	return res, err
}

func (t *Trader) selectAndAward(ctx context.Context, in market.Intent, o Order) (market.Contract, error) {
	rounds := o.MaxRounds
	if rounds <= 0 {
		rounds = 4
	}
	var countered []string
	replies := map[string]market.Message{}
	for range rounds {
		bids, err := t.Svc.Bids(t.ctx(ctx), in.ID)
		if err != nil {
			return market.Contract{}, fmt.Errorf("bids: %w", err)
		}
		for _, id := range countered {
			if msgs, err := t.Svc.Messages(t.ctx(ctx), id); err == nil && len(msgs) > 0 && msgs[len(msgs)-1].From != t.ID {
				replies[id] = msgs[len(msgs)-1]
			}
		}
		sin := SelectInput{Intent: in, Bids: bids, Countered: countered, Replies: replies}
		if st, err := t.Svc.Stats(t.ctx(ctx), in.Intent, time.Hour); err == nil {
			sin.PriceIndexMicrocredits = st.PriceIndexMicrocredits
		}
		d, err := t.Policy.Select(ctx, sin)
		if err == nil {
			err = CheckSelect(sin, d)
		}
		if err != nil {
			t.count(func(s *TraderStats) { s.Refused++ })
			return market.Contract{}, fmt.Errorf("%w: select: %w", ErrNoAward, err)
		}
		t.count(func(s *TraderStats) { s.Decisions++ })
		switch d.Action {
		case ActionCancel:
			if _, err := t.Svc.CancelIntent(t.ctx(ctx), in.ID); err != nil && !market.Is(err, market.Conflict) {
				return market.Contract{}, fmt.Errorf("cancel: %w", err)
			}
			t.count(func(s *TraderStats) { s.Actions++ })
			return market.Contract{}, fmt.Errorf("%w: the policy cancelled: %s", ErrNoAward, d.Reason)
		case ActionAward:
			c, err := t.Svc.Award(t.ctx(ctx), in.ID, d.BidID)
			if err != nil {
				t.blocked(err)
				return market.Contract{}, fmt.Errorf("%w: award: %w", ErrNoAward, err)
			}
			t.count(func(s *TraderStats) { s.Actions++ })
			return c, nil
		case ActionCounter:
			b := bids[slices.IndexFunc(bids, func(b market.Bid) bool { return b.ID == d.BidID })]
			reply := b.LastMessage
			if reply == "" {
				reply = b.ID
			}
			m, err := t.Svc.Counter(t.ctx(ctx), market.CounterRequest{Bid: b.ID, InReplyTo: reply, PriceMicrocredits: d.PriceMicrocredits, Note: d.Reason})
			countered = append(countered, b.ID)
			if err != nil {
				t.blocked(err)
				continue
			}
			t.count(func(s *TraderStats) { s.Actions++ })
			// Give the seller a few polls to answer; then decide again
			// on the bids as they stand.
			polls := 0
			t.until(ctx, "the seller's answer", func() (bool, error) {
				polls++
				nb, err := t.Svc.Bid(t.ctx(ctx), b.ID)
				return err != nil || nb.LastMessage != m.ID || polls > 4, nil
			})
		}
	}
	return market.Contract{}, fmt.Errorf("%w: no decision after %d rounds", ErrNoAward, rounds)
}

// blocked counts a market refusal of a decision.
func (t *Trader) blocked(err error) {
	if market.Is(err, market.MandateViolated) {
		t.count(func(s *TraderStats) { s.BlockedByMandate++ })
		t.log().Info("agent: the mandate blocked a payment", "agent", t.ID, "err", err)
		return
	}
	t.count(func(s *TraderStats) { s.BlockedByMarket++ })
}

// localCheck verifies an output with the named checker.
func localCheck(name string, params, output json.RawMessage) *Check {
	ch, ok := checker.Get(name)
	if !ok {
		return nil
	}
	if err := ch.Check(params, output); err != nil {
		return &Check{Passed: false, Detail: err.Error()}
	}
	return &Check{Passed: true}
}

func (t *Trader) review(ctx context.Context, in market.Intent, c market.Contract, o Order) (*Decision, error) {
	name := o.Checker
	if name == "" {
		name = o.Acceptance.Checker
	}
	rin := ReviewInput{Intent: in, Contract: c}
	if name != "" && c.Delivery != nil {
		rin.Check = localCheck(name, in.Parameters, c.Delivery.Output)
	}
	d, err := t.Policy.Review(ctx, rin)
	if err == nil {
		err = CheckReview(rin, d)
	}
	if err != nil {
		t.count(func(s *TraderStats) { s.Refused++ })
		// Silence accepts when the review window passes, so a refused
		// review of work that fails its check falls back to the one safe
		// move: dispute it.
		if rin.Check == nil || rin.Check.Passed {
			return nil, fmt.Errorf("review: %w", err)
		}
		d = Decision{Action: ActionDispute, Reason: "the output fails its check: " + rin.Check.Detail}
	} else {
		t.count(func(s *TraderStats) { s.Decisions++ })
	}
	switch d.Action {
	case ActionAccept:
		_, err = t.Svc.Accept(t.ctx(ctx), market.AcceptRequest{Contract: c.ID, Quality: d.Quality})
	case ActionDispute:
		_, err = t.Svc.Dispute(t.ctx(ctx), market.DisputeRequest{Contract: c.ID, Reason: d.Reason})
	}
	if err != nil {
		t.blocked(err)
		return &d, fmt.Errorf("%s: %w", d.Action, err)
	}
	t.count(func(s *TraderStats) { s.Actions++ })
	return &d, nil
}

// Sell serves offers until ctx ends: it bids on the eligible intents its
// policy wants, answers buyers' counters, and delivers what it wins. It
// returns ctx's error, or the first error that is not the market's
// refusal of one move.
func (t *Trader) Sell(ctx context.Context, offers []market.Offer) error {
	seen := map[string]bool{}
	answered := map[string]bool{}
	delivered := map[string]bool{}
	for {
		if err := t.sellOnce(ctx, offers, seen, answered, delivered); err != nil {
			return err
		}
		if err := t.wait(ctx); err != nil {
			return err
		}
	}
}

func (t *Trader) sellOnce(ctx context.Context, offers []market.Offer, seen, answered, delivered map[string]bool) error {
	offerFor := func(intent string) (market.Offer, bool) {
		i := slices.IndexFunc(offers, func(o market.Offer) bool { return o.Intent == intent })
		if i < 0 {
			return market.Offer{}, false
		}
		return offers[i], true
	}
	floor := func(in market.Intent, o market.Offer) int64 {
		if t.Floor != nil {
			return t.Floor(in, o)
		}
		return o.BasePriceMicrocredits
	}
	open, err := t.Svc.Intents(t.ctx(ctx), market.IntentFilter{Eligible: true, State: market.IntentOpen})
	if err != nil {
		return fmt.Errorf("intents: %w", err)
	}
	for _, in := range open {
		o, ok := offerFor(in.Intent)
		if !ok || seen[in.ID] {
			continue
		}
		seen[in.ID] = true
		bin := BidInput{Intent: in, Offer: o, FloorMicrocredits: floor(in, o)}
		d, err := t.Policy.Bid(ctx, bin)
		if err == nil {
			err = CheckBid(bin, d)
		}
		if err != nil {
			t.count(func(s *TraderStats) { s.Refused++ })
			t.log().Info("agent: bid decision refused", "intent", in.ID, "err", err)
			continue
		}
		t.count(func(s *TraderStats) { s.Decisions++ })
		if d.Action != ActionBid {
			continue
		}
		if _, err := t.Svc.PlaceBid(t.ctx(ctx), market.BidRequest{Intent: in.ID, Offer: o.ID, PriceMicrocredits: d.PriceMicrocredits, LatencyMs: d.LatencyMs, Note: d.Reason}); err != nil {
			t.blocked(err)
			continue
		}
		t.count(func(s *TraderStats) { s.Actions++ })
	}
	// Answer counters on the intents bid on that are still selecting.
	for id := range seen {
		bids, err := t.Svc.Bids(t.ctx(ctx), id)
		if err != nil {
			continue
		}
		for _, b := range bids {
			if b.Seller != t.ID || b.State != market.BidActive || b.BuyerOfferMicrocredits == 0 || answered[b.LastMessage] {
				continue
			}
			answered[b.LastMessage] = true
			msgs, err := t.Svc.Messages(t.ctx(ctx), b.ID)
			if err != nil || len(msgs) == 0 {
				continue
			}
			in, err := t.Svc.Intent(t.ctx(ctx), id)
			if err != nil {
				continue
			}
			o, _ := offerFor(in.Intent)
			rin := RespondInput{Intent: in, Bid: b, Counter: msgs[len(msgs)-1], FloorMicrocredits: floor(in, o)}
			d, err := t.Policy.Respond(ctx, rin)
			if err == nil {
				err = CheckRespond(rin, d)
			}
			if err != nil {
				t.count(func(s *TraderStats) { s.Refused++ })
				continue
			}
			t.count(func(s *TraderStats) { s.Decisions++ })
			if d.Action == ActionSkip {
				continue
			}
			req := market.CounterRequest{Bid: b.ID, InReplyTo: b.LastMessage, Accept: d.Action == ActionAccept, PriceMicrocredits: d.PriceMicrocredits, Note: d.Reason}
			if _, err := t.Svc.Counter(t.ctx(ctx), req); err != nil {
				t.blocked(err)
				continue
			}
			t.count(func(s *TraderStats) { s.Actions++ })
		}
	}
	// Deliver what was won.
	won, err := t.Svc.Contracts(t.ctx(ctx), market.ContractFilter{Agent: t.ID, State: market.ContractAwarded})
	if err != nil {
		return fmt.Errorf("contracts: %w", err)
	}
	for _, c := range won {
		if c.Seller != t.ID || delivered[c.ID] {
			continue
		}
		delivered[c.ID] = true
		in, err := t.Svc.Intent(t.ctx(ctx), c.IntentID)
		if err != nil {
			continue
		}
		out, err := t.work(ctx, in)
		if err != nil {
			t.log().Warn("agent: cannot do the work", "contract", c.ID, "err", err)
			continue
		}
		if _, err := t.Svc.Deliver(t.ctx(ctx), market.DeliveryRequest{Contract: c.ID, Output: out}); err != nil {
			t.blocked(err)
			continue
		}
		t.count(func(s *TraderStats) { s.Actions++ })
	}
	return nil
}

func (t *Trader) work(ctx context.Context, in market.Intent) (json.RawMessage, error) {
	if t.Work != nil {
		return t.Work(ctx, in)
	}
	if in.Acceptance.Checker == "" {
		return nil, fmt.Errorf("intent %s names no checker and the trader has no Work function", in.ID)
	}
	out, _, err := checker.Solve(in.Acceptance.Checker, in.Parameters)
	return out, err
}
