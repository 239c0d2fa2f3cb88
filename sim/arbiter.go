package sim

import (
	"context"
	"slices"

	"github.com/agentmarket/agentmarket/market"
)

// arbiter is a bonded reviewer. It judges what a delivery is (running the
// checker on checked work, reading prose with its own noise) and never
// what the delivery, the bid or the dispute says about itself.
type arbiter struct {
	agentBase
	bond int64
	sd   float64
}

func (a *arbiter) prepare(ctx context.Context) error {
	_, err := a.svc().PostBond(a.ctx(), a.bond)
	return err
}

func (a *arbiter) handle(ev *event) {
	if ev.Type != market.EventReviewAssigned || !slices.Contains(ev.contract.Arbiters, a.id) {
		return
	}
	c := ev.contract
	in, err := a.svc().Intent(a.ctx(), c.IntentID)
	if err != nil {
		a.unexpected("intent", err)
		return
	}
	q := judge(&a.agentBase, a.sim.world, c, in.Parameters, a.sd)
	verdict := market.VerdictPartial
	switch {
	case q >= 0.6:
		verdict = market.VerdictRelease
	case q < 0.3:
		verdict = market.VerdictRefund
	}
	_, err = a.svc().SubmitReview(a.ctx(), market.ReviewRequest{Contract: c.ID, Quality: q, Verdict: verdict})
	if err != nil && !market.Is(err, market.Conflict) {
		a.unexpected("submit_review", err)
	}
}
