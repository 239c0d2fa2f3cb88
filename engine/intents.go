package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/agentmarket/agentmarket/checker"
	"github.com/agentmarket/agentmarket/market"
)

var (
	requestIDRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
	digestRE    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

const maxRounds = 20

// validateIntent checks a request and fills in the market's defaults.
func (e *Engine) validateIntent(op string, r *market.IntentRequest) error {
	bad := func(code, format string, args ...any) error {
		return market.E(market.Op(op), market.Invalid, market.Code(code), fmt.Sprintf(format, args...))
	}
	if !requestIDRE.MatchString(r.RequestID) {
		return bad("invalid_request_id", "request_id must be 1-128 letters, digits and _.:-")
	}
	if !intentTypeRE.MatchString(r.Intent) {
		return bad("invalid_intent", "intent must be 1-64 letters, digits and _.:-")
	}
	if len(r.Parameters) == 0 {
		r.Parameters = json.RawMessage(`{}`)
	}
	if len(r.Parameters) > maxParamsBytes {
		return market.E(market.Op(op), market.TooLarge, market.Code("parameters_too_large"), fmt.Sprintf("parameters are %d bytes; the limit is %d", len(r.Parameters), maxParamsBytes))
	}
	if p := bytes.TrimSpace(r.Parameters); len(p) == 0 || p[0] != '{' || !json.Valid(p) {
		return bad("invalid_parameters", "parameters must be a JSON object")
	}
	c := &r.Constraints
	switch {
	case c.MaxBudgetMicrocredits <= 0 || c.MaxBudgetMicrocredits > maxPrice:
		return bad("invalid_budget", "constraints.max_budget_microcredits must be positive")
	case c.MaxLatencyMs < 0 || c.MaxLatencyMs > maxLatencyMs:
		return bad("invalid_latency", "constraints.max_latency_ms must be between 0 and a week")
	case c.MinimumReputationScore < 0 || c.MinimumReputationScore > 1:
		return bad("invalid_reputation", "constraints.minimum_reputation_score must be between 0 and 1")
	case r.BidWindowMs < 0 || r.BidWindowMs > 24*3600*1000:
		return bad("invalid_window", "bid_window_ms must be between 0 and a day")
	case r.AwardWindowMs < 0 || r.AwardWindowMs > 7*24*3600*1000:
		return bad("invalid_window", "award_window_ms must be between 0 and a week")
	case r.MaxRounds < 0 || r.MaxRounds > maxRounds:
		return bad("invalid_rounds", "max_rounds must be between 0 and %d", maxRounds)
	}
	if r.MaxRounds == 0 {
		r.MaxRounds = 3
	}
	s := &r.Selection
	switch s.Mode {
	case "":
		s.Mode = market.SelectManual
	case market.SelectManual, market.SelectAuto:
	default:
		return bad("invalid_selection", "selection.mode must be manual or auto")
	}
	if s.PriceWeight < 0 || s.SpeedWeight < 0 || s.QualityWeight < 0 {
		return bad("invalid_selection", "selection weights must not be negative")
	}
	if s.PriceWeight+s.SpeedWeight+s.QualityWeight == 0 {
		s.PriceWeight, s.SpeedWeight, s.QualityWeight = 0.5, 0.2, 0.3
	}
	a := &r.Acceptance
	if a.ReviewMs < 0 || a.ReviewMs > 7*24*3600*1000 {
		return bad("invalid_acceptance", "acceptance.review_ms must be between 0 and a week")
	}
	switch a.Policy {
	case "":
		a.Policy = market.AcceptBuyer
	case market.AcceptBuyer, market.AcceptArbiter:
	case market.AcceptSchema:
		if len(a.Schema) == 0 {
			return bad("invalid_acceptance", "the schema policy needs acceptance.schema")
		}
		if _, err := e.schemas.compile(a.Schema); err != nil {
			return wrap(op, err)
		}
	case market.AcceptDigest:
		if !digestRE.MatchString(a.Digest) {
			return bad("invalid_acceptance", "acceptance.digest must be sha256: and 64 lowercase hex digits")
		}
	case market.AcceptChecker:
		ch, ok := checker.Get(a.Checker)
		if !ok {
			return bad("unknown_checker", "checker %q is not built in; the checkers are %s", a.Checker, strings.Join(checker.Names(), ", "))
		}
		if err := e.schemas.validate(ch.ParameterSchema(), r.Parameters, "parameters"); err != nil {
			return wrap(op, err)
		}
		if err := ch.CheckParams(r.Parameters); err != nil {
			return bad("invalid_parameters", "the %s checker cannot take these parameters: %s", a.Checker, truncateMsg(err.Error(), 200))
		}
	default:
		return bad("invalid_acceptance", "acceptance.policy must be one of buyer_review, schema, digest, checker, arbiter")
	}
	if a.Checker != "" && a.Policy != market.AcceptChecker && a.Policy != market.AcceptArbiter {
		return bad("invalid_acceptance", "acceptance.checker applies only to the checker and arbiter policies")
	}
	if a.Checker != "" && a.Policy == market.AcceptArbiter {
		// An arbiter-reviewed intent that also names a checker is a gold
		// task: the checker's verdict measures the arbiter's accuracy.
		if _, ok := checker.Get(a.Checker); !ok {
			return bad("unknown_checker", "checker %q is not built in", a.Checker)
		}
	}
	return nil
}

// eligible reports why seller's offer may not take the intent, or nil.
func (e *Engine) eligible(tx market.ReadTx, in *market.Intent, o *market.Offer) error {
	notEligible := func(format string, args ...any) error {
		return market.E(market.Permission, market.Code("not_eligible"), fmt.Sprintf(format, args...))
	}
	switch {
	case o.State != market.OfferActive:
		return notEligible("offer %s is withdrawn", o.ID)
	case o.Intent != in.Intent:
		return notEligible("offer %s is for %s, not %s", o.ID, o.Intent, in.Intent)
	case o.Seller == in.Buyer:
		return notEligible("an agent may not bid on its own intent")
	case in.Constraints.MaxLatencyMs > 0 && o.LatencyMs > in.Constraints.MaxLatencyMs:
		return notEligible("offer %s promises %d ms; the intent allows %d", o.ID, o.LatencyMs, in.Constraints.MaxLatencyMs)
	}
	if len(o.ParameterSchema) > 0 {
		if err := e.schemas.validate(o.ParameterSchema, in.Parameters, "the intent's parameters"); err != nil {
			return notEligible("%s", market.MessageOf(err))
		}
	}
	if in.Constraints.MinimumReputationScore > 0 {
		rep, err := e.reputation(tx, o.Seller, in.Intent)
		if err != nil {
			return err
		}
		if rep.LowerBound < in.Constraints.MinimumReputationScore {
			return notEligible("the seller's reputation lower bound %.3f is below the intent's minimum %.3f",
				rep.LowerBound, in.Constraints.MinimumReputationScore)
		}
	}
	if o.Capacity > 0 {
		n, err := tx.OpenContracts(o.Seller, in.Intent)
		if err != nil {
			return err
		}
		if n >= o.Capacity {
			return notEligible("the seller is at capacity (%d open contracts)", n)
		}
	}
	return nil
}

// eligibleOffer returns the seller's first offer that may take the intent,
// or the reason none may.
func (e *Engine) eligibleOffer(tx market.ReadTx, in *market.Intent, seller market.AgentID, offerID string) (market.Offer, error) {
	var offers []market.Offer
	if offerID != "" {
		o, err := tx.Offer(offerID)
		if err != nil {
			return market.Offer{}, err
		}
		if o.Seller != seller {
			return market.Offer{}, market.E(market.Permission, market.Code("not_your_offer"), "the offer belongs to another seller")
		}
		offers = []market.Offer{o}
	} else {
		all, err := tx.OffersBySeller(seller)
		if err != nil {
			return market.Offer{}, err
		}
		for _, o := range all {
			if o.Intent == in.Intent && o.State == market.OfferActive {
				offers = append(offers, o)
			}
		}
		if len(offers) == 0 {
			return market.Offer{}, market.E(market.Permission, market.Code("not_eligible"),
				fmt.Sprintf("the seller has no active offer for %s", in.Intent))
		}
	}
	var first error
	for i := range offers {
		err := e.eligible(tx, in, &offers[i])
		if err == nil {
			return offers[i], nil
		}
		if first == nil {
			first = err
		}
	}
	return market.Offer{}, first
}

// eligibleSellers returns the distinct sellers an intent is routed to.
func (e *Engine) eligibleSellers(tx market.ReadTx, in *market.Intent) ([]market.AgentID, error) {
	offers, err := tx.ActiveOffers(in.Intent)
	if err != nil {
		return nil, err
	}
	seen := map[market.AgentID]bool{}
	var out []market.AgentID
	for i := range offers {
		o := &offers[i]
		if seen[o.Seller] {
			continue
		}
		err := e.eligible(tx, in, o)
		if err == nil {
			seen[o.Seller] = true
			out = append(out, o.Seller)
			continue
		}
		if !market.Is(err, market.Permission) {
			return nil, err
		}
	}
	return out, nil
}

// PostIntent posts the caller's intent and routes it to eligible sellers.
func (e *Engine) PostIntent(ctx context.Context, r market.IntentRequest) (market.Intent, error) {
	const op = "post_intent"
	buyer, err := e.callerAgent(ctx, op, market.RoleBuyer)
	if err != nil {
		return market.Intent{}, err
	}
	if err := e.validateIntent(op, &r); err != nil {
		return market.Intent{}, err
	}
	now := e.now()
	bidWindow := e.cfg.BidWindow
	if r.BidWindowMs > 0 {
		bidWindow = time.Duration(r.BidWindowMs) * time.Millisecond
	}
	awardWindow := e.cfg.AwardWindow
	if r.AwardWindowMs > 0 {
		awardWindow = time.Duration(r.AwardWindowMs) * time.Millisecond
	}
	in := market.Intent{
		ID: e.opID(ctx, "int"), RequestID: r.RequestID, Buyer: buyer.ID, Intent: r.Intent,
		Parameters: compactJSON(r.Parameters), Constraints: r.Constraints,
		BidDeadline: now.Add(bidWindow), AwardDeadline: now.Add(bidWindow + awardWindow),
		Selection: r.Selection, MaxRounds: r.MaxRounds, Acceptance: r.Acceptance,
		ParentContract: r.ParentContract, State: market.IntentOpen, CreatedAt: now,
	}
	// Routing reads every offer for the intent type; do it against a
	// snapshot, outside the write transaction, which only re-checks.
	var sellers []market.AgentID
	err = e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		sellers, err = e.eligibleSellers(tx, &in)
		return err
	})
	if err != nil {
		return market.Intent{}, wrap(op, err)
	}
	in.EligibleSellers = len(sellers)
	data, err := json.Marshal(in)
	if err != nil {
		return market.Intent{}, wrap(op, err)
	}
	var out market.Intent
	err = e.store.Update(ctx, func(tx market.Tx) error {
		prev, err := tx.IntentByRequest(buyer.ID, r.RequestID)
		if err == nil {
			if sameIntent(&prev, &in) {
				out = prev
				return nil
			}
			return market.E(market.Exist, market.Code("request_id_reused"),
				fmt.Sprintf("request_id %q was used for a different intent (%s)", r.RequestID, prev.ID))
		}
		if !market.Is(err, market.NotExist) {
			return err
		}
		if in.ParentContract != "" {
			if err := e.checkParent(tx, buyer.ID, in.ParentContract, in.Constraints.MaxBudgetMicrocredits); err != nil {
				return err
			}
		}
		if err := tx.PutIntent(in); err != nil {
			return err
		}
		out = in
		return e.emitJSON(tx, market.EventIntentPosted, in.Intent, in.ID, append([]market.AgentID{in.Buyer}, sellers...), data)
	})
	return out, wrap(op, err)
}

// checkParent checks that an orchestrator may subcontract under parent.
func (e *Engine) checkParent(tx market.ReadTx, caller market.AgentID, parentID string, budget int64) error {
	p, err := tx.Contract(parentID)
	if err != nil {
		return err
	}
	if p.Seller != caller {
		return market.E(market.Permission, market.Code("not_your_contract"), "only the parent contract's seller may subcontract under it")
	}
	if p.State != market.ContractAwarded {
		return market.E(market.Conflict, market.Code("parent_not_open"), fmt.Sprintf("the parent contract is %s; subcontracts need it awarded and undelivered", p.State))
	}
	if remaining := p.PriceMicrocredits - p.ChildBudgetMicrocredits; budget > remaining {
		return market.E(market.Conflict, market.Code("parent_budget_exceeded"),
			fmt.Sprintf("the subcontract's budget %d exceeds what remains of the parent's escrow, %d", budget, remaining))
	}
	return nil
}

func sameIntent(a, b *market.Intent) bool {
	ja, _ := json.Marshal([]any{a.Intent, a.Constraints, a.Selection, a.MaxRounds, a.Acceptance, a.ParentContract})
	jb, _ := json.Marshal([]any{b.Intent, b.Constraints, b.Selection, b.MaxRounds, b.Acceptance, b.ParentContract})
	return bytes.Equal(ja, jb) && bytes.Equal(compactJSON(a.Parameters), compactJSON(b.Parameters))
}

func compactJSON(b json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

// emit appends an event whose data is v.
func (e *Engine) emit(tx market.Tx, typ, intent, subject string, audience []market.AgentID, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return e.emitJSON(tx, typ, intent, subject, audience, data)
}

// emitJSON appends an event whose data is already marshalled. A store
// runs its transactions one at a time, so an operation whose event data
// is known before its transaction marshals it outside, and emits it
// with emitJSON inside.
func (e *Engine) emitJSON(tx market.Tx, typ, intent, subject string, audience []market.AgentID, data json.RawMessage) error {
	_, err := tx.AppendEvent(market.Event{Type: typ, At: e.now(), Intent: intent, Subject: subject, Audience: dedupe(audience), Data: data})
	return err
}

// dedupe returns ids without empty and repeated ones, in order. An
// audience is a handful of agents, so a scan beats a set.
func dedupe(ids []market.AgentID) []market.AgentID {
	var out []market.AgentID
	for _, id := range ids {
		if id != "" && !slices.Contains(out, id) {
			if out == nil {
				out = make([]market.AgentID, 0, len(ids))
			}
			out = append(out, id)
		}
	}
	return out
}

// Intent returns an intent.
func (e *Engine) Intent(ctx context.Context, id string) (market.Intent, error) {
	var in market.Intent
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		in, err = tx.Intent(id)
		return err
	})
	return in, wrap("intent", err)
}

// Intents lists intents; with Eligible, the open ones the caller may bid on.
func (e *Engine) Intents(ctx context.Context, f market.IntentFilter) ([]market.Intent, error) {
	const op = "intents"
	var seller market.AgentID
	if f.Eligible {
		a, err := e.callerAgent(ctx, op, market.RoleSeller)
		if err != nil {
			return nil, err
		}
		seller = a.ID
		f.State = market.IntentOpen
	}
	var out []market.Intent
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		list, err := tx.Intents(f)
		if err != nil {
			return err
		}
		if seller == "" {
			out = list
			return nil
		}
		for i := range list {
			if _, err := e.eligibleOffer(tx, &list[i], seller, ""); err == nil {
				out = append(out, list[i])
			} else if !market.Is(err, market.Permission) {
				return err
			}
		}
		return nil
	})
	return out, wrap(op, err)
}

// CancelIntent cancels the caller's intent before it is awarded.
func (e *Engine) CancelIntent(ctx context.Context, id string) (market.Intent, error) {
	const op = "cancel_intent"
	p, err := principal(ctx, op)
	if err != nil {
		return market.Intent{}, err
	}
	var out market.Intent
	err = e.store.Update(ctx, func(tx market.Tx) error {
		in, err := tx.Intent(id)
		if err != nil {
			return err
		}
		if in.Buyer != p.Agent && !p.Operator {
			return market.E(market.Permission, market.Code("not_your_intent"), "only the intent's buyer may cancel it")
		}
		if in.State != market.IntentOpen && in.State != market.IntentSelecting {
			return market.E(market.Conflict, market.Code("illegal_transition"), fmt.Sprintf("the intent is %s; only open or selecting intents can be cancelled", in.State))
		}
		in.State = market.IntentCancelled
		out = in
		return e.closeIntent(tx, in, market.EventIntentCancelled)
	})
	if err == nil {
		e.releaseOrphanHolds(ctx, id, "")
	}
	return out, wrap(op, err)
}

// closeIntent stores an intent that will take no award and marks its
// active bids lost.
func (e *Engine) closeIntent(tx market.Tx, in market.Intent, event string) error {
	if err := tx.PutIntent(in); err != nil {
		return err
	}
	bids, err := tx.Bids(in.ID)
	if err != nil {
		return err
	}
	audience := []market.AgentID{in.Buyer}
	for _, b := range bids {
		audience = append(audience, b.Seller)
		if b.State == market.BidActive {
			b.State = market.BidLost
			if err := tx.PutBid(b); err != nil {
				return err
			}
		}
	}
	return e.emit(tx, event, in.Intent, in.ID, audience, in)
}
