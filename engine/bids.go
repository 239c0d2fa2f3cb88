package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

const maxNoteBytes = 4096

// PlaceBid places the caller's sealed bid.
func (e *Engine) PlaceBid(ctx context.Context, r market.BidRequest) (market.Bid, error) {
	const op = "place_bid"
	seller, err := e.callerAgent(ctx, op, market.RoleSeller)
	if err != nil {
		return market.Bid{}, err
	}
	if len(r.Note) > maxNoteBytes {
		return market.Bid{}, market.E(market.Op(op), market.TooLarge, market.Code("note_too_large"), fmt.Sprintf("note is limited to %d bytes", maxNoteBytes))
	}
	if r.ValidForMs < 0 {
		return market.Bid{}, market.E(market.Op(op), market.Invalid, market.Code("invalid_validity"), "valid_for_ms must not be negative")
	}
	now := e.now()
	var out market.Bid
	check := func(tx market.ReadTx) (market.Intent, market.Offer, error) {
		in, err := tx.Intent(r.Intent)
		if err != nil {
			return in, market.Offer{}, err
		}
		if in.State != market.IntentOpen || !now.Before(in.BidDeadline) {
			return in, market.Offer{}, market.E(market.Conflict, market.Code("bidding_closed"),
				fmt.Sprintf("intent %s is %s; bidding closed at %s", in.ID, in.State, in.BidDeadline.Format(time.RFC3339Nano)))
		}
		o, err := e.eligibleOffer(tx, &in, seller.ID, r.Offer)
		if err != nil {
			return in, o, err
		}
		if r.PriceMicrocredits <= 0 {
			return in, o, market.E(market.Invalid, market.Code("invalid_price"), "price_microcredits must be positive")
		}
		if r.PriceMicrocredits > in.Constraints.MaxBudgetMicrocredits {
			return in, o, market.E(market.Invalid, market.Code("over_budget"),
				fmt.Sprintf("price %d exceeds the intent's budget %d", r.PriceMicrocredits, in.Constraints.MaxBudgetMicrocredits))
		}
		if r.LatencyMs <= 0 || r.LatencyMs > maxLatencyMs {
			return in, o, market.E(market.Invalid, market.Code("invalid_latency"), "latency_ms must be positive and at most a week")
		}
		if in.Constraints.MaxLatencyMs > 0 && r.LatencyMs > in.Constraints.MaxLatencyMs {
			return in, o, market.E(market.Invalid, market.Code("latency_exceeds"),
				fmt.Sprintf("latency %d ms exceeds the intent's maximum %d ms", r.LatencyMs, in.Constraints.MaxLatencyMs))
		}
		bids, err := tx.Bids(in.ID)
		if err != nil {
			return in, o, err
		}
		for _, b := range bids {
			if b.Seller == seller.ID && b.State == market.BidActive {
				return in, o, market.E(market.Exist, market.Code("already_bid"), fmt.Sprintf("the seller already has active bid %s on this intent", b.ID))
			}
		}
		return in, o, nil
	}
	// Eligibility reads offers, schemas and reputation: check it against a
	// snapshot, then re-check only what a concurrent write could change
	// (the intent's state, a duplicate bid) inside the write.
	id := e.opID(ctx, "bid")
	var o market.Offer
	var retried bool
	var in market.Intent
	if err := e.store.View(ctx, func(tx market.ReadTx) error {
		if prev, err := tx.Bid(id); err == nil && prev.Seller == seller.ID && prev.Intent == r.Intent {
			out, retried = prev, true // a retry of a request that placed it already
			return nil
		}
		var err error
		in, o, err = check(tx)
		return err
	}); err != nil {
		return market.Bid{}, wrap(op, err)
	}
	if retried {
		return out, nil
	}
	bid := func(in *market.Intent) market.Bid {
		expires := in.AwardDeadline
		if r.ValidForMs > 0 {
			expires = now.Add(time.Duration(r.ValidForMs) * time.Millisecond)
		}
		return market.Bid{ID: id, Intent: in.ID, Seller: seller.ID, Offer: o.ID, PriceMicrocredits: r.PriceMicrocredits,
			LatencyMs: r.LatencyMs, ExpiresAt: expires, Note: r.Note, State: market.BidActive, LastMessage: id, CreatedAt: now}
	}
	// The bid as the snapshot's intent makes it, marshalled here for its
	// event; the write uses it unless the intent changed meanwhile.
	planned := bid(&in)
	data, err := json.Marshal(planned)
	if err != nil {
		return market.Bid{}, wrap(op, err)
	}
	err = e.store.Update(ctx, func(tx market.Tx) error {
		if prev, err := tx.Bid(id); err == nil && prev.Seller == seller.ID && prev.Intent == r.Intent {
			out = prev // a retry of a request that placed it already
			return nil
		}
		in, err := tx.Intent(r.Intent)
		if err != nil {
			return err
		}
		if in.State != market.IntentOpen || !now.Before(in.BidDeadline) {
			return market.E(market.Conflict, market.Code("bidding_closed"),
				fmt.Sprintf("intent %s is %s; bidding closed at %s", in.ID, in.State, in.BidDeadline.Format(time.RFC3339Nano)))
		}
		bids, err := tx.Bids(in.ID)
		if err != nil {
			return err
		}
		for _, b := range bids {
			if b.Seller == seller.ID && b.State == market.BidActive {
				return market.E(market.Exist, market.Code("already_bid"), fmt.Sprintf("the seller already has active bid %s on this intent", b.ID))
			}
		}
		out = bid(&in)
		if err := tx.PutBid(out); err != nil {
			return err
		}
		data := data
		// Only these fields come from the intent. != rather than Equal:
		// the same instant in another location marshals differently.
		if out.Intent != planned.Intent || out.ExpiresAt != planned.ExpiresAt {
			var merr error
			if data, merr = json.Marshal(out); merr != nil {
				return merr
			}
		}
		// Sealed: only the seller hears of its bid until bidding closes.
		return e.emitJSON(tx, market.EventBidPlaced, in.Intent, out.ID, []market.AgentID{seller.ID}, data)
	})
	return out, wrap(op, err)
}

// Bids lists an intent's bids as the caller may see them.
func (e *Engine) Bids(ctx context.Context, intentID string) ([]market.Bid, error) {
	const op = "bids"
	p, err := principal(ctx, op)
	if err != nil {
		return nil, err
	}
	var out []market.Bid
	err = e.store.View(ctx, func(tx market.ReadTx) error {
		in, err := tx.Intent(intentID)
		if err != nil {
			return err
		}
		bids, err := tx.Bids(intentID)
		if err != nil {
			return err
		}
		switch {
		case p.Operator:
			out = bids
		case p.Agent == in.Buyer:
			if in.State == market.IntentOpen {
				return market.E(market.Conflict, market.Code("bids_sealed"),
					fmt.Sprintf("bids are sealed until the bid deadline, %s", in.BidDeadline.Format(time.RFC3339Nano)))
			}
			out = bids
		default:
			for _, b := range bids {
				if b.Seller == p.Agent {
					out = append(out, b)
				}
			}
		}
		return nil
	})
	return out, wrap(op, err)
}

// Bid returns a bid to its seller, or to the buyer once bidding closed.
func (e *Engine) Bid(ctx context.Context, id string) (market.Bid, error) {
	const op = "bid"
	p, err := principal(ctx, op)
	if err != nil {
		return market.Bid{}, err
	}
	var out market.Bid
	err = e.store.View(ctx, func(tx market.ReadTx) error {
		b, err := tx.Bid(id)
		if err != nil {
			return err
		}
		in, err := tx.Intent(b.Intent)
		if err != nil {
			return err
		}
		if !p.Operator && p.Agent != b.Seller && (p.Agent != in.Buyer || in.State == market.IntentOpen) {
			return market.E(market.Permission, market.Code("bid_sealed"), "a bid is visible to its seller, and to the buyer once bidding closes")
		}
		out = b
		return nil
	})
	return out, wrap(op, err)
}

// Messages returns a bid's negotiation to its parties.
func (e *Engine) Messages(ctx context.Context, bidID string) ([]market.Message, error) {
	const op = "messages"
	p, err := principal(ctx, op)
	if err != nil {
		return nil, err
	}
	var out []market.Message
	err = e.store.View(ctx, func(tx market.ReadTx) error {
		b, err := tx.Bid(bidID)
		if err != nil {
			return err
		}
		in, err := tx.Intent(b.Intent)
		if err != nil {
			return err
		}
		if !p.Operator && p.Agent != b.Seller && p.Agent != in.Buyer {
			return market.E(market.Permission, market.Code("not_a_party"), "only the bid's seller and the intent's buyer see the negotiation")
		}
		out, err = tx.Messages(bidID)
		return err
	})
	return out, wrap(op, err)
}

// Counter answers the newest message of a negotiation.
func (e *Engine) Counter(ctx context.Context, r market.CounterRequest) (market.Message, error) {
	const op = "counter"
	p, err := principal(ctx, op)
	if err != nil {
		return market.Message{}, err
	}
	if len(r.Note) > maxNoteBytes {
		return market.Message{}, market.E(market.Op(op), market.TooLarge, market.Code("note_too_large"), fmt.Sprintf("note is limited to %d bytes", maxNoteBytes))
	}
	now := e.now()
	id := e.opID(ctx, "msg")
	var out market.Message
	err = e.store.Update(ctx, func(tx market.Tx) error {
		b, err := tx.Bid(r.Bid)
		if err != nil {
			return err
		}
		if b.LastMessage == id {
			// A retry of a request that sent this message already.
			msgs, err := tx.Messages(b.ID)
			if err != nil {
				return err
			}
			for _, m := range msgs {
				if m.ID == id && m.From == p.Agent {
					out = m
					return nil
				}
			}
		}
		in, err := tx.Intent(b.Intent)
		if err != nil {
			return err
		}
		buyer, seller := p.Agent == in.Buyer, p.Agent == b.Seller
		if !buyer && !seller {
			return market.E(market.Permission, market.Code("not_a_party"), "only the bid's seller and the intent's buyer negotiate")
		}
		switch {
		case in.State != market.IntentSelecting:
			return market.E(market.Conflict, market.Code("not_selecting"),
				fmt.Sprintf("the intent is %s; negotiation happens after bidding closes and before the award", in.State))
		case b.State != market.BidActive:
			return market.E(market.Conflict, market.Code("bid_not_active"), fmt.Sprintf("the bid is %s", b.State))
		case !now.Before(b.ExpiresAt):
			return market.E(market.Expired, market.Code("bid_expired"), "the bid has expired")
		case r.InReplyTo != b.LastMessage:
			return market.E(market.Conflict, market.Code("stale_reply"),
				fmt.Sprintf("in_reply_to must name the newest message, %s", b.LastMessage))
		case b.Rounds >= in.MaxRounds:
			return market.E(market.Conflict, market.Code("rounds_exhausted"), fmt.Sprintf("the intent allows %d rounds", in.MaxRounds))
		}
		buyersTurn := b.BuyerOfferMicrocredits == 0 // the newest message is the seller's: the bid or its counter
		if buyer && !buyersTurn || seller && buyersTurn {
			return market.E(market.Conflict, market.Code("not_your_turn"), "turns alternate; it is the other party's turn")
		}
		if r.Accept && !seller {
			return market.E(market.Invalid, market.Code("invalid_accept"), "only the seller accepts a counter-offer; the buyer accepts by awarding")
		}
		price := r.PriceMicrocredits
		if r.Accept {
			if price == 0 {
				price = b.BuyerOfferMicrocredits
			}
			if price != b.BuyerOfferMicrocredits {
				return market.E(market.Invalid, market.Code("accept_price_mismatch"), "accepting takes the buyer's price")
			}
		}
		if price <= 0 || price > in.Constraints.MaxBudgetMicrocredits {
			return market.E(market.Invalid, market.Code("invalid_price"),
				fmt.Sprintf("price must be positive and within the budget %d", in.Constraints.MaxBudgetMicrocredits))
		}
		latency := r.LatencyMs
		if latency == 0 {
			latency = b.LatencyMs
		}
		if latency < 0 || in.Constraints.MaxLatencyMs > 0 && latency > in.Constraints.MaxLatencyMs {
			return market.E(market.Invalid, market.Code("latency_exceeds"), "latency must be positive and within the intent's maximum")
		}
		b.Rounds++
		out = market.Message{ID: id, Bid: b.ID, From: p.Agent, InReplyTo: b.LastMessage, PriceMicrocredits: price,
			LatencyMs: latency, Accept: r.Accept, Note: r.Note, Round: b.Rounds, CreatedAt: now}
		b.LastMessage = id
		if buyer {
			b.BuyerOfferMicrocredits = price
		} else {
			b.PriceMicrocredits, b.LatencyMs, b.BuyerOfferMicrocredits = price, latency, 0
		}
		if err := tx.PutMessage(out); err != nil {
			return err
		}
		if err := tx.PutBid(b); err != nil {
			return err
		}
		return e.emit(tx, market.EventBidCountered, in.Intent, b.ID, []market.AgentID{in.Buyer, b.Seller}, out)
	})
	return out, wrap(op, err)
}

// WithdrawBid withdraws the caller's active bid.
func (e *Engine) WithdrawBid(ctx context.Context, id string) (market.Bid, error) {
	const op = "withdraw_bid"
	p, err := principal(ctx, op)
	if err != nil {
		return market.Bid{}, err
	}
	var out market.Bid
	err = e.store.Update(ctx, func(tx market.Tx) error {
		b, err := tx.Bid(id)
		if err != nil {
			return err
		}
		if b.Seller != p.Agent {
			return market.E(market.Permission, market.Code("not_your_bid"), "only the bid's seller may withdraw it")
		}
		if b.State != market.BidActive {
			return market.E(market.Conflict, market.Code("bid_not_active"), fmt.Sprintf("the bid is %s", b.State))
		}
		in, err := tx.Intent(b.Intent)
		if err != nil {
			return err
		}
		b.State = market.BidWithdrawn
		out = b
		if err := tx.PutBid(b); err != nil {
			return err
		}
		audience := []market.AgentID{b.Seller}
		if in.State != market.IntentOpen {
			audience = append(audience, in.Buyer)
		}
		return e.emit(tx, market.EventBidWithdrawn, in.Intent, b.ID, audience, b)
	})
	return out, wrap(op, err)
}
