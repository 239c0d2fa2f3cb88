package sim

import (
	"context"
	"fmt"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// ringMember is one identity of a sybil ring: agents that claim distinct
// operators and trade in a cycle (each buys from the next), rating each
// other perfectly, to manufacture reputation. The ring does the work, so
// that audits find nothing wrong with it.
type ringMember struct {
	agentBase
	ring     []*ringMember
	pos      int
	interval time.Duration
	attack   string

	bids      map[string]string // intent id → our bid
	mine      map[string]bool   // our intents as buyer
	evidence  float64
	startRep  float64
	finalRep  float64
	settledAs int // contracts settled with this member as the seller
}

func (r *ringMember) next() *ringMember { return r.ring[(r.pos+1)%len(r.ring)] }
func (r *ringMember) prev() *ringMember { return r.ring[(r.pos+len(r.ring)-1)%len(r.ring)] }

func (r *ringMember) prepare(ctx context.Context) error {
	r.bids, r.mine = map[string]string{}, map[string]bool{}
	rep, err := r.svc().Reputation(r.ctx(), r.id, "")
	if err != nil {
		return err
	}
	r.startRep = rep.Score
	_, err = r.svc().PublishOffer(r.ctx(), market.Offer{Intent: kindSort.Intent, BasePriceMicrocredits: market.Credit,
		LatencyMs: 20_000, Tags: []string{"sim", "sybil"}})
	return err
}

func (r *ringMember) wake() { r.sim.after(r, r.exp(r.interval), r.post) }

// post asks the next member of the ring for work it will rate perfectly.
func (r *ringMember) post() {
	if !r.sim.posting() {
		return
	}
	t, err := newTask(r.sim.world.nextTask(), kindSort, r.rng)
	if err != nil {
		r.unexpected("generate", err)
		return
	}
	t.buyer, t.postedAt = &r.agentBase, r.sim.now()
	t.value = referenceCost(kindSort, estimateWork(kindSort, t.params))
	in, err := r.svc().PostIntent(r.ctx(), market.IntentRequest{RequestID: fmt.Sprintf("%s-t%d", r.name, t.seq),
		Intent: kindSort.Intent, Parameters: t.params, AwardWindowMs: 20_000,
		Constraints: market.Constraints{MaxBudgetMicrocredits: t.value * 12 / 10},
		Acceptance:  market.Acceptance{Policy: market.AcceptBuyer}})
	if err != nil {
		r.unexpected("post_intent", err)
		return
	}
	r.sim.world.post(in.ID, t)
	r.mine[in.ID] = true
	r.sim.after(r, r.exp(r.interval), r.post)
}

func (r *ringMember) handle(ev *event) {
	switch ev.Type {
	case market.EventIntentPosted:
		in := ev.intent
		if in.Buyer == r.prev().id {
			b, err := r.svc().PlaceBid(r.ctx(), market.BidRequest{Intent: in.ID,
				PriceMicrocredits: in.Constraints.MaxBudgetMicrocredits, LatencyMs: 20_000})
			if err == nil {
				r.bids[in.ID] = b.ID
			} else if !market.Is(err, market.Permission) && !market.Is(err, market.Conflict) {
				r.unexpected("place_bid", err)
			}
		}
	case market.EventIntentClosed:
		if !r.mine[ev.Subject] {
			return
		}
		delete(r.mine, ev.Subject)
		bids, err := r.svc().Bids(r.ctx(), ev.Subject)
		if err != nil {
			r.unexpected("bids", err)
			return
		}
		for _, b := range bids {
			if b.Seller == r.next().id && b.State == market.BidActive {
				if _, err := r.svc().Award(r.ctx(), ev.Subject, b.ID); err != nil && !market.Is(err, market.Conflict) && !market.Is(err, market.InsufficientFunds) {
					r.unexpected("award", err)
				}
				return
			}
		}
		if _, err := r.svc().CancelIntent(r.ctx(), ev.Subject); err != nil && !market.Is(err, market.Conflict) {
			r.unexpected("cancel_intent", err)
		}
	case market.EventContractAwarded:
		c := ev.contract
		delete(r.bids, c.IntentID)
		if c.Seller != r.id {
			return
		}
		t := r.sim.world.task(c.IntentID)
		if t == nil {
			return
		}
		out, _, err := t.solve()
		if err != nil {
			r.unexpected("solve", err)
			return
		}
		r.sim.world.worked(c.ID, 0, 1, false)
		r.sim.after(r, time.Second, func() {
			if _, err := r.svc().Deliver(r.ctx(), market.DeliveryRequest{Contract: c.ID, Output: out}); err != nil &&
				!market.Is(err, market.Conflict) && !market.Is(err, market.Expired) {
				r.unexpected("deliver", err)
			}
		})
	case market.EventContractDelivered:
		c := ev.contract
		if c.Buyer == r.id && c.State == market.ContractDelivered {
			if _, err := r.svc().Accept(r.ctx(), market.AcceptRequest{Contract: c.ID, Quality: 1}); err != nil && !market.Is(err, market.Conflict) {
				r.unexpected("accept", err)
			}
		}
	case market.EventContractSettled:
		c := ev.contract
		if c.Seller != r.id {
			return
		}
		r.settledAs++
		// Did the trade count? Compare the evidence behind our score.
		rep, err := r.svc().Reputation(r.ctx(), r.id, "")
		if err != nil {
			r.unexpected("reputation", err)
			return
		}
		counted := rep.Evidence > r.evidence+1e-9
		r.evidence = rep.Evidence
		r.sim.world.attack(r.attack, func(a *Attack) {
			a.Attempts++
			if !counted {
				a.Blocked++
			}
		})
	}
}
