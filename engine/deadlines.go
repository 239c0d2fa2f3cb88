package engine

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/agentmarket/agentmarket/market"
)

// Tick handles every deadline that has passed on the engine's clock: it
// closes bidding (and runs automatic awards), expires unawarded intents,
// refunds missed deliveries, settles deliveries the buyer left unreviewed,
// and reassigns or settles reviews the arbiters left unanswered. It
// returns how many deadlines it handled. The server calls it on a timer;
// a simulation calls it after advancing virtual time. Deadlines are
// processed through the same guarded steps as requests, so a deadline
// that races a request, or another node's Tick, takes effect once.
func (e *Engine) Tick(ctx context.Context) (int, error) {
	n := 0
	done := map[string]bool{}
	for round := 0; round < 100; round++ {
		var intents []market.Intent
		var contracts []market.Contract
		now := e.now()
		err := e.store.View(ctx, func(tx market.ReadTx) error {
			var err error
			if intents, err = tx.IntentsDue(now, 256); err != nil {
				return err
			}
			contracts, err = tx.ContractsDue(now, 256)
			return err
		})
		if err != nil {
			return n, wrap("tick", err)
		}
		var jobs []func()
		for i := range intents {
			in := intents[i]
			key := in.ID + "/" + string(in.State)
			if done[key] {
				continue
			}
			done[key] = true
			jobs = append(jobs, func() {
				if err := e.intentDue(ctx, in); err != nil && !benign(err) {
					e.log.Warn("engine: intent deadline", "intent", in.ID, "err", err)
				}
			})
		}
		for i := range contracts {
			c := contracts[i]
			key := c.ID + "/" + string(c.State) + "/" + fmt.Sprint(c.Assignments)
			if done[key] {
				continue
			}
			done[key] = true
			jobs = append(jobs, func() {
				if err := e.contractDue(ctx, c); err != nil && !benign(err) {
					e.log.Warn("engine: contract deadline", "contract", c.ID, "err", err)
				}
			})
		}
		progress := len(jobs) > 0
		n += len(jobs)
		// Deadlines are independent of one another: handle them in
		// parallel so that they share the store's and the ledger's group
		// commits instead of paying for one each.
		parallel(jobs, e.cfg.TickWorkers)
		if !progress {
			break
		}
	}
	return n, nil
}

// parallel runs jobs on up to workers goroutines and waits for them.
func parallel(jobs []func(), workers int) {
	var wg sync.WaitGroup
	next := make(chan func())
	for range min(workers, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range next {
				job()
			}
		}()
	}
	for _, job := range jobs {
		next <- job
	}
	close(next)
	wg.Wait()
}

// benign errors mean another actor got there first.
func benign(err error) bool {
	k := market.KindOf(err)
	return k == market.Conflict || k == market.NotExist
}

func (e *Engine) intentDue(ctx context.Context, in market.Intent) error {
	now := e.now()
	switch {
	case in.State == market.IntentOpen && !now.Before(in.BidDeadline):
		var closed market.Intent
		err := e.store.Update(ctx, func(tx market.Tx) error {
			cur, err := tx.Intent(in.ID)
			if err != nil {
				return err
			}
			if cur.State != market.IntentOpen {
				return market.E(market.Conflict, market.Code("illegal_transition"), "intent already closed")
			}
			cur.State = market.IntentSelecting
			closed = cur
			if err := tx.PutIntent(cur); err != nil {
				return err
			}
			bids, err := tx.Bids(cur.ID)
			if err != nil {
				return err
			}
			audience := []market.AgentID{cur.Buyer}
			for _, b := range bids {
				audience = append(audience, b.Seller)
			}
			return e.emit(tx, market.EventIntentClosed, cur.Intent, cur.ID, audience, cur)
		})
		if err != nil {
			return err
		}
		if closed.Selection.Mode == market.SelectAuto {
			return e.autoAward(ctx, closed)
		}
		return nil
	case in.State == market.IntentSelecting && !now.Before(in.AwardDeadline):
		return e.expireIntent(ctx, in.ID)
	}
	return nil
}

func (e *Engine) expireIntent(ctx context.Context, id string) error {
	defer e.releaseOrphanHolds(ctx, id, "")
	return e.store.Update(ctx, func(tx market.Tx) error {
		cur, err := tx.Intent(id)
		if err != nil {
			return err
		}
		if cur.State != market.IntentSelecting && cur.State != market.IntentOpen {
			return market.E(market.Conflict, market.Code("illegal_transition"), "intent already closed")
		}
		cur.State = market.IntentExpired
		return e.closeIntent(tx, cur, market.EventIntentExpired)
	})
}

// autoAward scores the bids by the intent's weights and awards the best
// one the buyer can pay for. Price scores 1 at zero and 0 at the budget;
// speed scores by latency against the slowest bid; quality is the
// seller's reputation score. Ties go to the earlier bid.
func (e *Engine) autoAward(ctx context.Context, in market.Intent) error {
	now := e.now()
	type scored struct {
		bid   market.Bid
		score float64
	}
	var cands []scored
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		bids, err := tx.Bids(in.ID)
		if err != nil {
			return err
		}
		var slowest int64 = 1
		for _, b := range bids {
			slowest = max(slowest, b.LatencyMs)
		}
		w := in.Selection
		total := w.PriceWeight + w.SpeedWeight + w.QualityWeight
		for _, b := range bids {
			if b.State != market.BidActive || !now.Before(b.ExpiresAt) {
				continue
			}
			rep, err := e.reputation(tx, b.Seller, in.Intent)
			if err != nil {
				return err
			}
			price := 1 - float64(b.PriceMicrocredits)/float64(in.Constraints.MaxBudgetMicrocredits)
			speed := 1 - float64(b.LatencyMs)/float64(slowest)
			if len(bids) == 1 {
				speed = 1
			}
			s := (w.PriceWeight*price + w.SpeedWeight*speed + w.QualityWeight*rep.Score) / total
			cands = append(cands, scored{b, s})
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].score != cands[j].score {
			return cands[i].score > cands[j].score
		}
		return cands[i].bid.CreatedAt.Before(cands[j].bid.CreatedAt)
	})
	buyer := market.Principal{Agent: in.Buyer}
	for _, c := range cands {
		_, err := e.award(ctx, buyer, in.ID, c.bid.ID)
		if err == nil {
			return nil
		}
		switch market.KindOf(err) {
		case market.InsufficientFunds, market.MandateViolated:
			e.log.Info("engine: automatic award failed; the intent expires", "intent", in.ID, "err", err)
			return e.expireIntent(ctx, in.ID)
		case market.Expired, market.Conflict:
			continue // that bid went stale; try the next
		default:
			return err
		}
	}
	return e.expireIntent(ctx, in.ID)
}

func (e *Engine) contractDue(ctx context.Context, c market.Contract) error {
	const op = "deadline"
	now := e.now()
	switch c.State {
	case market.ContractAwarded:
		if !now.After(c.DeliverBy) {
			return nil
		}
		_, err := e.settle(ctx, op, c, settlement{step: market.StepDeliveryMissed, reason: "delivery_missed"}, nil)
		return err
	case market.ContractDelivered:
		if !now.After(c.ReviewBy) {
			return nil
		}
		if open, err := e.childrenOpenNow(ctx, &c); err != nil || open {
			return err
		}
		_, err := e.settle(ctx, op, c, settlement{step: market.StepReviewElapsed, paid: c.PriceMicrocredits, quality: 1, reason: "review_window_elapsed"}, nil)
		return err
	case market.ContractInReview:
		if !now.After(c.ReviewBy) {
			return nil
		}
		s := e.verdict(&c)
		if len(s.reviewers) > 0 {
			reviews := c.Reviews
			_, err := e.settle(ctx, op, c, s, func(cur *market.Contract) { cur.Reviews = reviews })
			return err
		}
		if c.Assignments < 3 {
			_, err := e.reassign(ctx, c.ID)
			if market.CodeOf(err) != "no_arbiter_available" {
				return err
			}
		}
		_, err := e.settle(ctx, op, c, s, nil) // silence accepts: release in full
		return err
	}
	return nil
}

func reviewedIn(rs []market.Review, a market.AgentID) bool {
	for _, r := range rs {
		if r.Arbiter == a {
			return true
		}
	}
	return false
}

// reassign gives a review whose arbiters missed the deadline to others,
// and records the miss against them.
func (e *Engine) reassign(ctx context.Context, id string) (market.Contract, error) {
	var out market.Contract
	var none bool
	err := e.store.Update(ctx, func(tx market.Tx) error {
		none = false
		c, err := tx.Contract(id)
		if err != nil {
			return err
		}
		if _, err := market.Transition(c.State, market.StepReassign); err != nil {
			return err
		}
		// The assigned arbiters that did not review missed their deadline.
		for _, a := range c.Arbiters {
			if reviewedIn(c.Reviews, a) {
				continue
			}
			rec, err := tx.ArbiterRecord(a)
			if err != nil {
				return err
			}
			rec.Arbiter = a
			rec.Missed++
			if err := tx.PutArbiterRecord(rec); err != nil {
				return err
			}
		}
		arbs, err := e.pickArbiters(tx, &c, len(c.Arbiters))
		if err != nil {
			return err
		}
		if len(arbs) == 0 {
			none = true // keep the misses; the caller settles the contract
			return nil
		}
		c.Arbiters = arbs
		c.Assignments += len(arbs)
		c.ReviewBy = e.now().Add(e.cfg.ArbiterWindow)
		out = c
		if err := tx.PutContract(c); err != nil {
			return err
		}
		return e.emit(tx, market.EventReviewAssigned, c.Intent, c.ID, arbs, redact(c, market.Principal{Agent: arbs[0]}))
	})
	if err == nil && none {
		return out, market.E(market.Conflict, market.Code("no_arbiter_available"), "no other arbiter is available")
	}
	return out, err
}
