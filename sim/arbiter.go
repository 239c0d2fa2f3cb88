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

// acceptBar is the quality an honest judge accepts as the work asked for:
// buyers accept at it, arbiters release at it.
const acceptBar = 0.5

// verdictFor is the arbiters' rule: release work that meets the bar, pay
// in proportion to quality down to half the bar, refund below. It
// returns the verdict and the share of the price it pays.
func verdictFor(q float64) (string, float64) {
	switch {
	case q >= acceptBar:
		return market.VerdictRelease, 1
	case q >= acceptBar/2:
		return market.VerdictPartial, q
	}
	return market.VerdictRefund, 0
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
	verdict, _ := verdictFor(q)
	_, err = a.svc().SubmitReview(a.ctx(), market.ReviewRequest{Contract: c.ID, Quality: q, Verdict: verdict})
	if err != nil && !market.Is(err, market.Conflict) {
		a.unexpected("submit_review", err)
	}
}
