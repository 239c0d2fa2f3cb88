package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"time"

	"github.com/agentmarket/agentmarket/checker"
	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
)

// contractID is derived from the intent and the bid, so that retrying an
// award finds the contract (and the escrow hold) of the first attempt.
func contractID(intentID, bidID string) string {
	sum := sha256.Sum256([]byte(intentID + "\x00" + bidID))
	return "ctr_" + hex.EncodeToString(sum[:10])
}

// escrow transfer ids of a contract.
func escrowPrice(c string) ledger.ID   { return derived("escrow/price", c) }
func escrowFee(c string) ledger.ID     { return derived("escrow/fee", c) }
func escrowArbiter(c string) ledger.ID { return derived("escrow/arbiter", c) }

// disputable reports whether an arbiter may review deliveries under the
// policy, so that an arbiter fee must be reserved at award.
func disputable(policy string) bool {
	return policy == market.AcceptBuyer || policy == market.AcceptArbiter
}

// Award awards an intent to a bid; see market.Service.
func (e *Engine) Award(ctx context.Context, intentID, bidID string) (market.Contract, error) {
	p, err := principal(ctx, "award")
	if err != nil {
		return market.Contract{}, err
	}
	return e.award(ctx, p, intentID, bidID)
}

func (e *Engine) award(ctx context.Context, p market.Principal, intentID, bidID string) (market.Contract, error) {
	const op = "award"
	now := e.now()
	cid := contractID(intentID, bidID)
	var existing *market.Contract
	check := func(tx market.ReadTx) (market.Intent, market.Bid, error) {
		in, err := tx.Intent(intentID)
		if err != nil {
			return in, market.Bid{}, err
		}
		if in.Buyer != p.Agent && !p.Operator {
			return in, market.Bid{}, market.E(market.Permission, market.Code("not_your_intent"), "only the intent's buyer may award it")
		}
		if in.State == market.IntentAwarded && in.Contract == cid {
			c, err := tx.Contract(cid)
			if err != nil {
				return in, market.Bid{}, err
			}
			existing = &c
			return in, market.Bid{}, nil
		}
		if in.State != market.IntentSelecting {
			msg := fmt.Sprintf("the intent is %s; awards happen after bidding closes and before the award deadline", in.State)
			if in.State == market.IntentOpen {
				msg = fmt.Sprintf("bidding is open until %s; bids are sealed until then", in.BidDeadline.Format(time.RFC3339Nano))
			}
			return in, market.Bid{}, market.E(market.Conflict, market.Code("not_selecting"), msg)
		}
		b, err := tx.Bid(bidID)
		if err != nil {
			return in, b, err
		}
		if b.Intent != in.ID {
			return in, b, market.E(market.NotExist, market.Code("bid_not_on_intent"), "the bid is not on this intent")
		}
		if b.State != market.BidActive {
			return in, b, market.E(market.Conflict, market.Code("bid_not_active"), fmt.Sprintf("the bid is %s", b.State))
		}
		if !now.Before(b.ExpiresAt) {
			return in, b, market.E(market.Expired, market.Code("bid_expired"), fmt.Sprintf("the bid expired at %s", b.ExpiresAt.Format(time.RFC3339Nano)))
		}
		if b.PriceMicrocredits > in.Constraints.MaxBudgetMicrocredits {
			return in, b, market.E(market.Invalid, market.Code("over_budget"), "the bid's price exceeds the intent's budget")
		}
		if in.ParentContract != "" {
			if err := e.checkParent(tx, in.Buyer, in.ParentContract, b.PriceMicrocredits); err != nil {
				return in, b, err
			}
		}
		return in, b, nil
	}
	var in market.Intent
	var b market.Bid
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		in, b, err = check(tx)
		return err
	})
	if err != nil {
		return market.Contract{}, wrap(op, err)
	}
	if existing != nil {
		return *existing, nil
	}

	c := e.newContract(cid, &in, &b, now)
	data, err := json.Marshal(c)
	if err != nil {
		return market.Contract{}, wrap(op, err)
	}
	if err := e.transfer(ctx, op, escrowLegs(&c, e.holdTimeout(&c, now))); err != nil {
		return market.Contract{}, err
	}
	err = e.store.Update(ctx, func(tx market.Tx) error {
		existing = nil
		in, b, err := check(tx)
		if err != nil || existing != nil {
			return err
		}
		if err := tx.PutContract(c); err != nil {
			return err
		}
		in.State, in.Contract = market.IntentAwarded, c.ID
		if err := tx.PutIntent(in); err != nil {
			return err
		}
		bids, err := tx.Bids(in.ID)
		if err != nil {
			return err
		}
		audience := []market.AgentID{in.Buyer}
		for _, x := range bids {
			audience = append(audience, x.Seller)
			switch {
			case x.ID == b.ID:
				x.State = market.BidWon
			case x.State == market.BidActive:
				x.State = market.BidLost
			default:
				continue
			}
			if err := tx.PutBid(x); err != nil {
				return err
			}
		}
		if c.ParentContract != "" {
			parent, err := tx.Contract(c.ParentContract)
			if err != nil {
				return err
			}
			parent.ChildBudgetMicrocredits += c.PriceMicrocredits
			parent.Children = append(parent.Children, c.ID)
			if err := tx.PutContract(parent); err != nil {
				return err
			}
		}
		return e.emitJSON(tx, market.EventContractAwarded, c.Intent, c.ID, audience, data)
	})
	if err != nil {
		if existing != nil {
			return *existing, nil
		}
		// The hold is in the ledger but the award did not commit: give it back.
		if cerr := e.releaseHold(ctx, &c); cerr != nil {
			e.log.Error("engine: release hold after failed award", "contract", c.ID, "err", cerr)
		}
		return market.Contract{}, wrap(op, err)
	}
	if existing != nil {
		return *existing, nil
	}
	e.releaseOrphanHolds(ctx, in.ID, b.ID)
	return c, nil
}

// releaseOrphanHolds voids the escrow of every bid on an intent but the
// winner's that is still held: an award whose hold reached the ledger but
// whose contract never committed (the node died in between, or the buyer
// switched to another bid after a failure). Without this the buyer's funds
// would stay held until the hold's timeout. Errors are logged: the
// timeout remains the backstop.
func (e *Engine) releaseOrphanHolds(ctx context.Context, intentID, winner string) {
	var bids []market.Bid
	if err := e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		bids, err = tx.Bids(intentID)
		return err
	}); err != nil {
		e.log.Warn("engine: list bids for orphan holds", "intent", intentID, "err", err)
		return
	}
	for _, b := range bids {
		if b.ID == winner {
			continue
		}
		cid := contractID(intentID, b.ID)
		st, err := e.ledger.PendingStatus(ctx, escrowPrice(cid))
		if err != nil || st != ledger.StatusPending {
			continue
		}
		// The fee and reserve legs may or may not exist; try them all.
		orphan := market.Contract{ID: cid, FeeMicrocredits: 1, ArbiterFeeMicrocredits: 1}
		if err := e.releaseHold(ctx, &orphan); err != nil {
			e.log.Warn("engine: release orphan hold", "contract", cid, "err", err)
			continue
		}
		e.log.Info("engine: released an orphan escrow hold", "contract", cid)
	}
}

func (e *Engine) newContract(cid string, in *market.Intent, b *market.Bid, now time.Time) market.Contract {
	price := b.PriceMicrocredits
	fee := price * e.cfg.FeeBps / 10_000
	var arbFee int64
	if disputable(in.Acceptance.Policy) {
		arbFee = max(1, price*e.cfg.ArbiterFeeBps/10_000)
	}
	return market.Contract{
		ID: cid, IntentID: in.ID, Intent: in.Intent, Bid: b.ID, Buyer: in.Buyer, Seller: b.Seller,
		PriceMicrocredits: price, FeeMicrocredits: fee, ArbiterFeeMicrocredits: arbFee, HoldMicrocredits: price + fee + arbFee,
		Acceptance: in.Acceptance, ParentContract: in.ParentContract, State: market.ContractAwarded,
		AwardedAt: now, DeliverBy: now.Add(time.Duration(b.LatencyMs) * time.Millisecond),
	}
}

// holdTimeout outlasts every deadline of the contract, so the ledger's
// expiry is only a backstop.
func (e *Engine) holdTimeout(c *market.Contract, now time.Time) time.Duration {
	return c.DeliverBy.Sub(now) + e.reviewWindow(c) + 4*e.cfg.ArbiterWindow + e.cfg.EscrowGrace
}

func (e *Engine) reviewWindow(c *market.Contract) time.Duration {
	if c.Acceptance.ReviewMs > 0 {
		return time.Duration(c.Acceptance.ReviewMs) * time.Millisecond
	}
	return e.cfg.ReviewWindow
}

// escrowLegs are the linked pending transfers that hold a contract's price
// and fees in the buyer's wallet: to the seller, to the market's fee
// account, to the arbiter pool.
func escrowLegs(c *market.Contract, timeout time.Duration) []ledger.Transfer {
	buyer := walletAccount(c.Buyer)
	uid := derived("contract", c.ID)
	xs := []ledger.Transfer{{ID: escrowPrice(c.ID), DebitAccountID: buyer, CreditAccountID: walletAccount(c.Seller),
		Amount: uint64(c.PriceMicrocredits), Flags: ledger.Pending, Timeout: timeout, Code: xferEscrowPrice, UserData: uid}}
	if c.FeeMicrocredits > 0 {
		xs = append(xs, ledger.Transfer{ID: escrowFee(c.ID), DebitAccountID: buyer, CreditAccountID: feesAccount,
			Amount: uint64(c.FeeMicrocredits), Flags: ledger.Pending, Timeout: timeout, Code: xferEscrowFee, UserData: uid})
	}
	if c.ArbiterFeeMicrocredits > 0 {
		xs = append(xs, ledger.Transfer{ID: escrowArbiter(c.ID), DebitAccountID: buyer, CreditAccountID: poolAccount,
			Amount: uint64(c.ArbiterFeeMicrocredits), Flags: ledger.Pending, Timeout: timeout, Code: xferEscrowArbiter, UserData: uid})
	}
	return link(xs)
}

// link chains transfers so they commit all or nothing.
func link(xs []ledger.Transfer) []ledger.Transfer {
	for i := range xs[:len(xs)-1] {
		xs[i].Flags |= ledger.Linked
	}
	return xs
}

// releaseHold voids a contract's hold that never became a contract.
func (e *Engine) releaseHold(ctx context.Context, c *market.Contract) error {
	var xs []ledger.Transfer
	for i, pid := range []ledger.ID{escrowPrice(c.ID), escrowFee(c.ID), escrowArbiter(c.ID)} {
		if i == 1 && c.FeeMicrocredits == 0 || i == 2 && c.ArbiterFeeMicrocredits == 0 {
			continue
		}
		xs = append(xs, ledger.Transfer{ID: derived("compensate", pid.String()), PendingID: pid, Flags: ledger.VoidPending, Code: xferCompensate})
	}
	res, err := e.ledger.CreateTransfers(ctx, xs)
	if err != nil {
		return err
	}
	for _, r := range res {
		if !r.Committed() && r != ledger.PendingAlreadyVoided && r != ledger.PendingExpired && r != ledger.PendingNotFound {
			return fmt.Errorf("void hold of %s: %s", c.ID, r)
		}
	}
	return nil
}

// Contract returns a contract to its parties, its arbiters and the operator.
func (e *Engine) Contract(ctx context.Context, id string) (market.Contract, error) {
	const op = "contract"
	p, err := principal(ctx, op)
	if err != nil {
		return market.Contract{}, err
	}
	var c market.Contract
	err = e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		c, err = tx.Contract(id)
		return err
	})
	if err != nil {
		return c, wrap(op, err)
	}
	if !p.Operator && p.Agent != c.Buyer && p.Agent != c.Seller && !reviewedBy(&c, p.Agent) {
		return market.Contract{}, market.E(market.Op(op), market.Permission, market.Code("not_a_party"), "a contract is visible to its parties, its arbiters and the operator")
	}
	return redact(c, p), nil
}

func reviewedBy(c *market.Contract, id market.AgentID) bool {
	if slices.Contains(c.Arbiters, id) {
		return true
	}
	for _, r := range c.Reviews {
		if r.Arbiter == id {
			return true
		}
	}
	return false
}

// redact hides what a viewer must not see: a gold task's answer from
// everyone but the buyer and the operator, and other arbiters' reviews
// from an arbiter still reviewing.
func redact(c market.Contract, p market.Principal) market.Contract {
	if p.Operator || p.Agent == c.Buyer {
		return c
	}
	c.GoldQuality = nil
	if !c.State.Terminal() && p.Agent != c.Seller {
		var own []market.Review
		for _, r := range c.Reviews {
			if r.Arbiter == p.Agent {
				own = append(own, r)
			}
		}
		c.Reviews = own
	}
	return c
}

// Contracts lists the caller's contracts, or all for the operator.
func (e *Engine) Contracts(ctx context.Context, f market.ContractFilter) ([]market.Contract, error) {
	const op = "contracts"
	p, err := principal(ctx, op)
	if err != nil {
		return nil, err
	}
	if !p.Operator {
		if f.Agent != "" && f.Agent != p.Agent {
			return nil, market.E(market.Op(op), market.Permission, market.Code("not_your_contracts"), "an agent lists only its own contracts")
		}
		f.Agent = p.Agent
	}
	var out []market.Contract
	err = e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		out, err = tx.Contracts(f)
		return err
	})
	for i := range out {
		out[i] = redact(out[i], p)
	}
	return out, wrap(op, err)
}

// loadContract reads a contract from a snapshot.
func (e *Engine) loadContract(ctx context.Context, id string) (market.Contract, error) {
	var c market.Contract
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		c, err = tx.Contract(id)
		return err
	})
	return c, err
}

// childrenOpen reports whether any subcontract is not yet final.
func childrenOpen(tx market.ReadTx, c *market.Contract) (bool, error) {
	for _, id := range c.Children {
		ch, err := tx.Contract(id)
		if err != nil {
			return false, err
		}
		if !ch.State.Terminal() {
			return true, nil
		}
	}
	return false, nil
}

func (e *Engine) childrenOpenNow(ctx context.Context, c *market.Contract) (bool, error) {
	if len(c.Children) == 0 {
		return false, nil
	}
	var open bool
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		open, err = childrenOpen(tx, c)
		return err
	})
	return open, err
}

// Deliver submits the seller's result; see market.Service.
func (e *Engine) Deliver(ctx context.Context, r market.DeliveryRequest) (market.Contract, error) {
	const op = "deliver"
	p, err := principal(ctx, op)
	if err != nil {
		return market.Contract{}, err
	}
	c, err := e.loadContract(ctx, r.Contract)
	if err != nil {
		return c, wrap(op, err)
	}
	if p.Agent != c.Seller {
		return market.Contract{}, market.E(market.Op(op), market.Permission, market.Code("not_your_contract"), "only the contract's seller may deliver")
	}
	if _, err := market.Transition(c.State, market.StepDeliverForReview); err != nil {
		return market.Contract{}, wrap(op, err)
	}
	now := e.now()
	if now.After(c.DeliverBy) {
		return market.Contract{}, market.E(market.Op(op), market.Expired, market.Code("delivery_deadline_passed"),
			fmt.Sprintf("the delivery deadline passed at %s", c.DeliverBy.Format(time.RFC3339Nano)))
	}
	d, err := e.validateDelivery(op, r, now)
	if err != nil {
		return market.Contract{}, err
	}
	if open, err := e.childrenOpenNow(ctx, &c); err != nil || open {
		if err != nil {
			return market.Contract{}, wrap(op, err)
		}
		return market.Contract{}, market.E(market.Op(op), market.Conflict, market.Code("children_open"), "subcontracts must settle before the contract is delivered")
	}
	setDelivery := func(c *market.Contract) { c.Delivery = &d }
	switch c.Acceptance.Policy {
	case market.AcceptSchema, market.AcceptDigest, market.AcceptChecker:
		res, err := e.verify(ctx, &c, &d)
		if err != nil {
			return market.Contract{}, wrap(op, err)
		}
		d.Check = &res
		if res.Passed {
			return e.settle(ctx, op, c, settlement{step: market.StepDeliverChecked, paid: c.PriceMicrocredits, quality: 1, reason: "check_passed"}, setDelivery)
		}
		return e.settle(ctx, op, c, settlement{step: market.StepDeliverRejected, quality: 0, reason: "check_failed"}, setDelivery)
	case market.AcceptArbiter:
		var gold *float64
		if c.Acceptance.Checker != "" {
			res, err := e.verify(ctx, &c, &d)
			if err != nil {
				return market.Contract{}, wrap(op, err)
			}
			g := 0.0
			if res.Passed {
				g = 1
			}
			gold = &g
		}
		return e.sendToArbiter(ctx, op, c, market.StepDeliverToArbiter, false, func(c *market.Contract) {
			c.Delivery = &d
			c.GoldQuality = gold
		})
	default: // buyer review, with sampling
		if e.chance(e.cfg.SampleRate) {
			c2, err := e.sendToArbiter(ctx, op, c, market.StepDeliverToArbiter, true, setDelivery)
			if !market.Is(err, market.Conflict) || market.CodeOf(err) != "no_arbiter_available" {
				return c2, err
			}
		}
		return e.transition(ctx, op, c.ID, market.StepDeliverForReview, func(c *market.Contract) {
			c.Delivery = &d
			c.ReviewBy = now.Add(e.reviewWindow(c))
		}, market.EventContractDelivered)
	}
}

func (e *Engine) validateDelivery(op string, r market.DeliveryRequest, now time.Time) (market.Delivery, error) {
	d := market.Delivery{DeliveredAt: now}
	bad := func(code, msg string) (market.Delivery, error) {
		return d, market.E(market.Op(op), market.Invalid, market.Code(code), msg)
	}
	switch {
	case len(r.Output) > 0 && (r.URI != ""):
		return bad("invalid_delivery", "deliver either inline output or a digest and a URI, not both")
	case len(r.Output) > 0:
		if len(r.Output) > e.cfg.MaxOutputBytes {
			return d, market.E(market.Op(op), market.TooLarge, market.Code("output_too_large"),
				fmt.Sprintf("output is %d bytes; the inline limit is %d; deliver a digest and a URI instead", len(r.Output), e.cfg.MaxOutputBytes))
		}
		if !json.Valid(r.Output) {
			return bad("invalid_output", "output must be JSON")
		}
		sum := sha256.Sum256(r.Output)
		d.Output = r.Output
		d.Digest = "sha256:" + hex.EncodeToString(sum[:])
		if r.Digest != "" && r.Digest != d.Digest {
			return bad("digest_mismatch", "the given digest is not the output's sha256")
		}
	case r.URI != "":
		if !digestRE.MatchString(r.Digest) {
			return bad("invalid_digest", "a URI delivery needs digest sha256: and 64 lowercase hex digits")
		}
		u, err := url.Parse(r.URI)
		if err != nil || !u.IsAbs() || len(r.URI) > 2048 {
			return bad("invalid_uri", "uri must be an absolute URI of at most 2048 bytes")
		}
		d.Digest, d.URI = r.Digest, r.URI
	default:
		return bad("invalid_delivery", "deliver inline output, or a digest and a URI")
	}
	return d, nil
}

// verify runs an automatic acceptance policy on a delivery.
func (e *Engine) verify(ctx context.Context, c *market.Contract, d *market.Delivery) (market.CheckResult, error) {
	res := market.CheckResult{Policy: c.Acceptance.Policy}
	switch c.Acceptance.Policy {
	case market.AcceptSchema:
		if d.Output == nil {
			res.Detail = "the schema policy needs inline output"
			return res, nil
		}
		if err := e.schemas.validate(c.Acceptance.Schema, d.Output, "output"); err != nil {
			res.Detail = market.MessageOf(err)
			return res, nil
		}
		res.Passed = true
	case market.AcceptDigest:
		res.Passed = d.Digest == c.Acceptance.Digest
		if !res.Passed {
			res.Detail = "the output's digest does not match"
		}
	default: // a checker, for the checker policy or a gold task
		res.Policy = market.AcceptChecker
		ch, ok := checker.Get(c.Acceptance.Checker)
		if !ok {
			return res, fmt.Errorf("checker %q vanished", c.Acceptance.Checker)
		}
		if d.Output == nil {
			res.Detail = "a checker needs inline output"
			return res, nil
		}
		in, err := e.Intent(ctx, c.IntentID)
		if err != nil {
			return res, err
		}
		if err := ch.Check(in.Parameters, d.Output); err != nil {
			res.Detail = truncateMsg(err.Error(), 300)
			return res, nil
		}
		res.Passed = true
	}
	return res, nil
}

// transition applies a step that moves no money.
func (e *Engine) transition(ctx context.Context, op, id string, step market.Step, mutate func(*market.Contract), event string) (market.Contract, error) {
	var out market.Contract
	err := e.store.Update(ctx, func(tx market.Tx) error {
		c, err := tx.Contract(id)
		if err != nil {
			return err
		}
		to, err := market.Transition(c.State, step)
		if err != nil {
			return err
		}
		c.State = to
		mutate(&c)
		out = c
		if err := tx.PutContract(c); err != nil {
			return err
		}
		return e.emit(tx, event, c.Intent, c.ID, []market.AgentID{c.Buyer, c.Seller}, c)
	})
	return out, wrap(op, err)
}

// sendToArbiter assigns arbiters and moves the contract into review.
func (e *Engine) sendToArbiter(ctx context.Context, op string, c market.Contract, step market.Step, audit bool,
	mutate func(*market.Contract)) (market.Contract, error) {
	var out market.Contract
	now := e.now()
	err := e.store.Update(ctx, func(tx market.Tx) error {
		cur, err := tx.Contract(c.ID)
		if err != nil {
			return err
		}
		to, err := market.Transition(cur.State, step)
		if err != nil {
			return err
		}
		arbs, err := e.pickArbiters(tx, &cur, e.arbiterCount())
		if err != nil {
			return err
		}
		if len(arbs) == 0 {
			if step == market.StepDeliverToArbiter && !audit {
				// No arbiter can take it: fall back to the buyer's review.
				to = market.ContractDelivered
				cur.ReviewBy = now.Add(e.reviewWindow(&cur))
				cur.State = to
				mutate(&cur)
				out = cur
				if err := tx.PutContract(cur); err != nil {
					return err
				}
				return e.emit(tx, market.EventContractDelivered, cur.Intent, cur.ID, []market.AgentID{cur.Buyer, cur.Seller}, cur)
			}
			return market.E(market.Conflict, market.Code("no_arbiter_available"), "no eligible arbiter is available to review this contract")
		}
		cur.State = to
		mutate(&cur)
		cur.Arbiters = arbs
		cur.Assignments += len(arbs)
		cur.Audit = cur.Audit || audit
		cur.ReviewBy = now.Add(e.cfg.ArbiterWindow)
		out = cur
		if err := tx.PutContract(cur); err != nil {
			return err
		}
		event := market.EventContractDelivered
		if step == market.StepDispute {
			event = market.EventContractDisputed
		}
		if err := e.emit(tx, event, cur.Intent, cur.ID, []market.AgentID{cur.Buyer, cur.Seller}, redact(cur, market.Principal{Agent: cur.Seller})); err != nil {
			return err
		}
		return e.emit(tx, market.EventReviewAssigned, cur.Intent, cur.ID, arbs, redact(cur, market.Principal{Agent: arbs[0]}))
	})
	return out, wrap(op, err)
}

func (e *Engine) arbiterCount() int {
	if e.chance(e.cfg.CrossCheckRate) {
		return 2
	}
	return 1
}

// pickArbiters chooses up to n bonded arbiters at random (seeded), never a
// party, an agent of a party's operator, one already assigned, or one
// whose measured accuracy has fallen below one half.
func (e *Engine) pickArbiters(tx market.ReadTx, c *market.Contract, n int) ([]market.AgentID, error) {
	all, err := tx.Arbiters(e.cfg.MinArbiterBond)
	if err != nil {
		return nil, err
	}
	buyer, err := tx.Agent(c.Buyer)
	if err != nil {
		return nil, err
	}
	seller, err := tx.Agent(c.Seller)
	if err != nil {
		return nil, err
	}
	var pool []market.AgentID
	for _, a := range all {
		switch {
		case a.ID == c.Buyer || a.ID == c.Seller:
			continue
		case a.Operator != "" && (a.Operator == buyer.Operator || a.Operator == seller.Operator):
			continue
		case reviewedBy(c, a.ID):
			continue
		}
		rec, err := tx.ArbiterRecord(a.ID)
		if err != nil {
			return nil, err
		}
		if rec.Compared >= 10 && rec.Accuracy() < 0.5 || rec.Unresponsive() {
			continue
		}
		pool = append(pool, a.ID)
	}
	var out []market.AgentID
	for len(out) < n && len(pool) > 0 {
		i := e.intn(len(pool))
		out = append(out, pool[i])
		pool = slices.Delete(pool, i, i+1)
	}
	return out, nil
}

// Accept accepts a delivery awaiting the buyer's review.
func (e *Engine) Accept(ctx context.Context, r market.AcceptRequest) (market.Contract, error) {
	const op = "accept"
	p, err := principal(ctx, op)
	if err != nil {
		return market.Contract{}, err
	}
	if r.Quality < 0 || r.Quality > 1 || math.IsNaN(r.Quality) {
		return market.Contract{}, market.E(market.Op(op), market.Invalid, market.Code("invalid_quality"), "quality must be between 0 and 1")
	}
	q := r.Quality
	if q == 0 {
		q = 1
	}
	c, err := e.loadContract(ctx, r.Contract)
	if err != nil {
		return c, wrap(op, err)
	}
	if p.Agent != c.Buyer {
		return market.Contract{}, market.E(market.Op(op), market.Permission, market.Code("not_your_contract"), "only the contract's buyer may accept")
	}
	if _, err := market.Transition(c.State, market.StepAccept); err != nil {
		return market.Contract{}, wrap(op, err)
	}
	if open, err := e.childrenOpenNow(ctx, &c); err != nil || open {
		if err != nil {
			return market.Contract{}, wrap(op, err)
		}
		return market.Contract{}, market.E(market.Op(op), market.Conflict, market.Code("children_open"), "subcontracts must settle before the contract is accepted")
	}
	return e.settle(ctx, op, c, settlement{step: market.StepAccept, paid: c.PriceMicrocredits, quality: q, reason: "accepted"}, nil)
}

// Dispute rejects a delivery and sends it to an arbiter.
func (e *Engine) Dispute(ctx context.Context, r market.DisputeRequest) (market.Contract, error) {
	const op = "dispute"
	p, err := principal(ctx, op)
	if err != nil {
		return market.Contract{}, err
	}
	if r.Reason == "" || len(r.Reason) > maxNoteBytes {
		return market.Contract{}, market.E(market.Op(op), market.Invalid, market.Code("invalid_reason"), fmt.Sprintf("a dispute needs a reason of at most %d bytes", maxNoteBytes))
	}
	c, err := e.loadContract(ctx, r.Contract)
	if err != nil {
		return c, wrap(op, err)
	}
	if p.Agent != c.Buyer {
		return market.Contract{}, market.E(market.Op(op), market.Permission, market.Code("not_your_contract"), "only the contract's buyer may dispute")
	}
	if _, err := market.Transition(c.State, market.StepDispute); err != nil {
		return market.Contract{}, wrap(op, err)
	}
	now := e.now()
	return e.sendToArbiter(ctx, op, c, market.StepDispute, false, func(c *market.Contract) {
		c.Dispute = &market.Dispute{Reason: r.Reason, OpenedAt: now}
	})
}

// SubmitReview records an assigned arbiter's review.
func (e *Engine) SubmitReview(ctx context.Context, r market.ReviewRequest) (market.Contract, error) {
	const op = "submit_review"
	p, err := principal(ctx, op)
	if err != nil {
		return market.Contract{}, err
	}
	if r.Quality < 0 || r.Quality > 1 || math.IsNaN(r.Quality) {
		return market.Contract{}, market.E(market.Op(op), market.Invalid, market.Code("invalid_quality"), "quality must be between 0 and 1")
	}
	switch r.Verdict {
	case market.VerdictRelease, market.VerdictPartial, market.VerdictRefund:
	default:
		return market.Contract{}, market.E(market.Op(op), market.Invalid, market.Code("invalid_verdict"), "verdict must be release, partial or refund")
	}
	if len(r.Note) > maxNoteBytes {
		return market.Contract{}, market.E(market.Op(op), market.TooLarge, market.Code("note_too_large"), fmt.Sprintf("note is limited to %d bytes", maxNoteBytes))
	}
	now := e.now()
	var c market.Contract
	var complete bool
	err = e.store.Update(ctx, func(tx market.Tx) error {
		var err error
		c, err = tx.Contract(r.Contract)
		if err != nil {
			return err
		}
		if !slices.Contains(c.Arbiters, p.Agent) {
			return market.E(market.Permission, market.Code("not_assigned"), "only an arbiter assigned to the contract may review it")
		}
		if _, err := market.Transition(c.State, market.StepVerdictRelease); err != nil {
			return err
		}
		for _, rv := range c.Reviews {
			if rv.Arbiter == p.Agent {
				return market.E(market.Conflict, market.Code("already_reviewed"), "the arbiter has already reviewed this contract")
			}
		}
		c.Reviews = append(c.Reviews, market.Review{Arbiter: p.Agent, Quality: r.Quality, Verdict: r.Verdict, Note: r.Note, ReviewedAt: now})
		complete = e.reviewsComplete(&c)
		if complete {
			return nil // settle below, through the ledger first
		}
		if err := tx.PutContract(c); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return market.Contract{}, wrap(op, err)
	}
	if !complete {
		return c, nil
	}
	reviews := c.Reviews
	return e.settle(ctx, op, c, e.verdict(&c), func(cur *market.Contract) { cur.Reviews = reviews })
}

// reviewsComplete reports whether every currently assigned arbiter has
// reviewed since the latest assignment.
func (e *Engine) reviewsComplete(c *market.Contract) bool {
	for _, a := range c.Arbiters {
		done := false
		for _, r := range c.Reviews {
			if r.Arbiter == a {
				done = true
			}
		}
		if !done {
			return false
		}
	}
	return true
}

// verdict combines the reviews of the current assignment into a
// settlement: one review decides alone; two that agree decide; two that
// disagree pay in proportion to their mean quality.
func (e *Engine) verdict(c *market.Contract) settlement {
	var rs []market.Review
	for _, r := range c.Reviews {
		if slices.Contains(c.Arbiters, r.Arbiter) {
			rs = append(rs, r)
		}
	}
	s := settlement{reason: "arbiter_verdict", arbiters: c.Arbiters}
	if c.Dispute == nil && !c.Audit {
		s.reason = "arbiter_review"
	}
	if len(rs) == 0 {
		s.step, s.paid, s.quality, s.reason, s.arbiters = market.StepArbiterUnanswered, c.PriceMicrocredits, 1, "arbiter_deadline", nil
		return s
	}
	var sum float64
	verdict := rs[0].Verdict
	for _, r := range rs {
		sum += r.Quality
		if r.Verdict != verdict {
			verdict = market.VerdictPartial
		}
	}
	s.quality = sum / float64(len(rs))
	s.reviewers = rs
	switch verdict {
	case market.VerdictRelease:
		s.paid = c.PriceMicrocredits
	case market.VerdictPartial:
		s.paid = int64(math.Floor(float64(c.PriceMicrocredits) * s.quality))
	case market.VerdictRefund:
		s.paid = 0
	}
	s.paid = min(max(s.paid, 0), c.PriceMicrocredits)
	s.step = market.StepVerdictRelease
	if s.paid == 0 {
		s.step = market.StepVerdictRefund
	}
	return s
}
