package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// orchestrator sells whole projects and subcontracts their parts: the
// autonomous enterprise. It posts each part as a child intent under the
// project's contract, under a checker, so that a subcontractor is paid
// only when its tests pass, retries parts that fail, and delivers the
// assembled project once every part has settled.
type orchestrator struct {
	agentBase
	markup   float64
	capacity int
	overhead int64 // its own true cost of running a project

	bidOn    map[string]bool     // project intents it bid on
	projects map[string]*project // by the project's contract id
	parts    map[string]*part    // by child intent id
	byChild  map[string]*part    // by child contract id
}

type project struct {
	c         market.Contract
	root      *task
	parts     []*part
	delivered bool
}

type part struct {
	p        *project
	i        int
	k        *kind
	params   json.RawMessage
	t        *task
	budget   int64
	output   json.RawMessage
	done     bool
	open     bool // a child intent or contract is in flight
	attempts int
	intent   string // the current child intent
}

func (o *orchestrator) prepare(ctx context.Context) error {
	o.bidOn = map[string]bool{}
	o.projects = map[string]*project{}
	o.parts = map[string]*part{}
	o.byChild = map[string]*part{}
	_, err := o.svc().PublishOffer(o.ctx(), market.Offer{Intent: kindProject.Intent, BasePriceMicrocredits: 5 * market.Credit,
		LatencyMs: 150_000, Capacity: o.capacity, Tags: []string{"sim", "orchestrator"}})
	return err
}

// quote is what a project will cost: each part at a typical market
// markup over its reference cost, plus the orchestrator's overhead.
func (o *orchestrator) quote(params json.RawMessage) int64 {
	kinds, ps := projectParts(params)
	var sum int64
	for i, k := range kinds {
		sum += referenceCost(k, estimateWork(k, ps[i])) * 13 / 10
	}
	return int64(float64(sum+o.overhead) * o.markup)
}

// refTotal is the reference cost of all a project's parts.
func (o *orchestrator) refTotal(kinds []*kind, ps []json.RawMessage) int64 {
	var sum int64
	for i, k := range kinds {
		sum += referenceCost(k, estimateWork(k, ps[i]))
	}
	return sum
}

func (o *orchestrator) handle(ev *event) {
	switch ev.Type {
	case market.EventIntentPosted:
		in := ev.intent
		if in.Intent == kindProject.Intent && in.Buyer != o.id && len(o.projects)+len(o.bidOn) < 2*o.capacity {
			price := min(o.quote(in.Parameters), in.Constraints.MaxBudgetMicrocredits)
			if _, err := o.svc().PlaceBid(o.ctx(), market.BidRequest{Intent: in.ID, PriceMicrocredits: price, LatencyMs: 150_000}); err == nil {
				o.bidOn[in.ID] = true
			} else if k := market.KindOf(err); k != market.Permission && k != market.Conflict && k != market.Invalid {
				o.unexpected("place_bid", err)
			}
		}
	case market.EventIntentClosed:
		if p := o.parts[ev.Subject]; p != nil && ev.intent.Buyer == o.id {
			o.choose(p)
		}
	case market.EventIntentExpired, market.EventIntentCancelled:
		delete(o.bidOn, ev.Subject)
		if p := o.parts[ev.Subject]; p != nil {
			delete(o.parts, ev.Subject)
			p.open = false
			o.retry(p)
		}
	case market.EventContractAwarded:
		c := ev.contract
		delete(o.bidOn, c.IntentID)
		if c.Seller == o.id && c.Intent == kindProject.Intent {
			o.start(c)
		} else if p := o.parts[c.IntentID]; p != nil && c.Buyer == o.id {
			o.byChild[c.ID] = p
		}
	case market.EventContractSettled, market.EventContractRefunded:
		c := ev.contract
		if p := o.byChild[c.ID]; p != nil {
			delete(o.byChild, c.ID)
			delete(o.parts, c.IntentID)
			p.open = false
			if c.Outcome.PaidMicrocredits > 0 && c.Delivery != nil {
				p.done, p.output = true, c.Delivery.Output
			} else {
				o.retry(p)
			}
			o.maybeDeliver(p.p, false)
		}
		if c.Seller == o.id {
			delete(o.projects, c.ID)
		}
	}
}

// start breaks an awarded project into child intents.
func (o *orchestrator) start(c *market.Contract) {
	in, err := o.svc().Intent(o.ctx(), c.IntentID)
	if err != nil {
		o.unexpected("intent", err)
		return
	}
	p := &project{c: *c, root: o.sim.world.task(c.IntentID)}
	o.projects[c.ID] = p
	kinds, ps := projectParts(in.Parameters)
	for i, k := range kinds {
		pt := &part{p: p, i: i, k: k, params: ps[i]}
		// Each part may cost up to twice its reference cost, within its
		// share of the project's price.
		share := c.PriceMicrocredits * referenceCost(k, estimateWork(k, ps[i])) / max(1, o.refTotal(kinds, ps))
		pt.budget = min(referenceCost(k, estimateWork(k, ps[i]))*2, share)
		if p.root != nil && i < len(p.root.parts) {
			pt.t = p.root.parts[i]
		} else {
			pt.t = &task{kind: k, params: ps[i]}
		}
		pt.t.parent, pt.t.buyer = p.root, &o.agentBase
		p.parts = append(p.parts, pt)
		o.postPart(pt)
	}
	// Whatever happens to the parts, deliver before the project's deadline.
	o.sim.after(o, c.DeliverBy.Add(-15*time.Second).Sub(o.sim.now()), func() { o.maybeDeliver(p, true) })
}

func (o *orchestrator) postPart(pt *part) {
	req := market.IntentRequest{
		RequestID:      fmt.Sprintf("%s-%s-p%d-a%d", o.name, pt.p.c.ID, pt.i, pt.attempts),
		Intent:         pt.k.Intent,
		Parameters:     pt.params,
		Constraints:    market.Constraints{MaxBudgetMicrocredits: pt.budget, MaxLatencyMs: 60_000},
		Acceptance:     pt.k.policy(),
		ParentContract: pt.p.c.ID,
		AwardWindowMs:  20_000,
	}
	in, err := o.svc().PostIntent(o.ctx(), req)
	if err != nil {
		if !market.Is(err, market.Conflict) {
			o.unexpected("post_intent", err)
		}
		return
	}
	pt.attempts++
	pt.open, pt.intent = true, in.ID
	o.parts[in.ID] = pt
	o.sim.world.post(in.ID, pt.t)
}

func (o *orchestrator) retry(pt *part) {
	if pt.done || pt.p.delivered || pt.attempts >= 3 {
		return
	}
	o.sim.after(o, 2*time.Second, func() {
		if !pt.p.delivered && o.sim.now().Before(pt.p.c.DeliverBy.Add(-40*time.Second)) {
			o.postPart(pt)
		}
	})
}

// choose awards a part to the bid with the best expected surplus, worth
// the part's budget to the project.
func (o *orchestrator) choose(pt *part) {
	bids, err := o.svc().Bids(o.ctx(), pt.intent)
	if err != nil {
		o.unexpected("bids", err)
		return
	}
	ranked := rankBids(&o.agentBase, pt.k, pt.budget*5/4, 0, bids)
	for _, b := range ranked {
		_, err := o.svc().Award(o.ctx(), pt.intent, b.ID)
		if err == nil {
			return
		}
		switch market.KindOf(err) {
		case market.Expired, market.Conflict, market.NotExist:
			continue
		case market.InsufficientFunds, market.MandateViolated, market.Invalid:
			o.sim.world.countError("award", market.KindOf(err))
		default:
			o.unexpected("award", err)
		}
		break
	}
	if _, err := o.svc().CancelIntent(o.ctx(), pt.intent); err != nil && !market.Is(err, market.Conflict) {
		o.unexpected("cancel_intent", err)
	}
}

// maybeDeliver delivers the project once every part has settled, or, when
// forced by the deadline, with whatever parts passed.
func (o *orchestrator) maybeDeliver(p *project, force bool) {
	if p.delivered {
		return
	}
	passed := 0
	for _, pt := range p.parts {
		if pt.open {
			return // a child still in flight blocks the parent's delivery
		}
		if pt.done {
			passed++
		} else if !force && pt.attempts < 3 && o.sim.now().Before(p.c.DeliverBy.Add(-40*time.Second)) {
			return // a retry is coming
		}
	}
	outs := make([]json.RawMessage, len(p.parts))
	for i, pt := range p.parts {
		outs[i] = pt.output
		if outs[i] == nil {
			outs[i] = json.RawMessage(`{}`)
		}
	}
	body, _ := json.Marshal(map[string]any{"project": p.c.ID, "parts": outs})
	p.delivered = true
	q := 0.0
	if len(p.parts) > 0 {
		q = float64(passed) / float64(len(p.parts))
	}
	o.sim.world.worked(p.c.ID, o.overhead, q, false)
	if _, err := o.svc().Deliver(o.ctx(), market.DeliveryRequest{Contract: p.c.ID, Output: body}); err != nil {
		switch market.KindOf(err) {
		case market.Expired, market.Conflict:
			o.sim.world.countError("late_delivery", market.KindOf(err))
		default:
			o.unexpected("deliver", err)
		}
	}
}
