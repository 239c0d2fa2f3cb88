package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"

	"github.com/agentmarket/agentmarket/market"
)

var intentTypeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`)

const (
	maxParamsBytes = 64 << 10
	maxLatencyMs   = 7 * 24 * 3600 * 1000
	maxPrice       = math.MaxInt64 / 4
)

func (e *Engine) validateOffer(op string, o *market.Offer) error {
	bad := func(code, msg string) error { return market.E(market.Op(op), market.Invalid, market.Code(code), msg) }
	switch {
	case !intentTypeRE.MatchString(o.Intent):
		return bad("invalid_intent", "intent must be 1-64 letters, digits and _.:-")
	case o.BasePriceMicrocredits < 0 || o.UnitPriceMicrocredits < 0:
		return bad("invalid_price", "prices must not be negative")
	case o.BasePriceMicrocredits > maxPrice || o.UnitPriceMicrocredits > maxPrice:
		return bad("invalid_price", "price is too large")
	case o.UnitPriceMicrocredits > 0 && o.Unit == "":
		return bad("invalid_unit", "a unit price needs the name of the parameter that counts units")
	case !validText(o.Unit, 64):
		return bad("invalid_unit", "unit must be printable text of at most 64 bytes")
	case o.LatencyMs <= 0 || o.LatencyMs > maxLatencyMs:
		return bad("invalid_latency", "latency_ms must be positive and at most a week")
	case o.Capacity < 0:
		return bad("invalid_capacity", "capacity must not be negative")
	case len(o.Tags) > 16:
		return bad("invalid_tags", "at most 16 tags")
	}
	for _, t := range o.Tags {
		if t == "" || !validText(t, 32) {
			return bad("invalid_tags", "tags must be printable text of 1 to 32 bytes")
		}
	}
	if len(o.ParameterSchema) > 0 {
		if _, err := e.schemas.compile(o.ParameterSchema); err != nil {
			return wrap(op, err)
		}
	}
	return nil
}

// PublishOffer publishes the caller's offer.
func (e *Engine) PublishOffer(ctx context.Context, o market.Offer) (market.Offer, error) {
	const op = "publish_offer"
	a, err := e.callerAgent(ctx, op, market.RoleSeller)
	if err != nil {
		return market.Offer{}, err
	}
	if err := e.validateOffer(op, &o); err != nil {
		return market.Offer{}, err
	}
	now := e.now()
	o.ID = e.opID(ctx, "off")
	o.Seller = a.ID
	o.State = market.OfferActive
	o.CreatedAt, o.UpdatedAt = now, now
	err = e.store.Update(ctx, func(tx market.Tx) error {
		if prev, err := tx.Offer(o.ID); err == nil {
			if prev.Seller != a.ID {
				return market.E(market.Exist, market.Code("offer_exists"), "the offer id is taken")
			}
			o = prev // a retry of a request that published it already
			return nil
		} else if !market.Is(err, market.NotExist) {
			return err
		}
		if err := tx.PutOffer(o); err != nil {
			return err
		}
		data, _ := json.Marshal(o)
		_, err := tx.AppendEvent(market.Event{Type: market.EventOfferPublished, At: now, Intent: o.Intent, Subject: o.ID, Data: data})
		return err
	})
	return o, wrap(op, err)
}

// UpdateOffer replaces the terms of the caller's offer.
func (e *Engine) UpdateOffer(ctx context.Context, o market.Offer) (market.Offer, error) {
	const op = "update_offer"
	a, err := e.callerAgent(ctx, op, market.RoleSeller)
	if err != nil {
		return market.Offer{}, err
	}
	if err := e.validateOffer(op, &o); err != nil {
		return market.Offer{}, err
	}
	var out market.Offer
	err = e.store.Update(ctx, func(tx market.Tx) error {
		cur, err := tx.Offer(o.ID)
		if err != nil {
			return err
		}
		if cur.Seller != a.ID {
			return market.E(market.Permission, market.Code("not_your_offer"), "only the offer's seller may change it")
		}
		if cur.State != market.OfferActive {
			return market.E(market.Conflict, market.Code("offer_withdrawn"), "the offer is withdrawn")
		}
		o.Seller, o.State, o.CreatedAt, o.UpdatedAt = cur.Seller, cur.State, cur.CreatedAt, e.now()
		out = o
		return tx.PutOffer(o)
	})
	return out, wrap(op, err)
}

// WithdrawOffer withdraws the caller's offer.
func (e *Engine) WithdrawOffer(ctx context.Context, id string) (market.Offer, error) {
	const op = "withdraw_offer"
	a, err := e.callerAgent(ctx, op, "")
	if err != nil {
		return market.Offer{}, err
	}
	var out market.Offer
	err = e.store.Update(ctx, func(tx market.Tx) error {
		cur, err := tx.Offer(id)
		if err != nil {
			return err
		}
		if cur.Seller != a.ID {
			return market.E(market.Permission, market.Code("not_your_offer"), "only the offer's seller may withdraw it")
		}
		if cur.State != market.OfferActive {
			return market.E(market.Conflict, market.Code("offer_withdrawn"), "the offer is already withdrawn")
		}
		cur.State, cur.UpdatedAt = market.OfferWithdrawn, e.now()
		out = cur
		if err := tx.PutOffer(cur); err != nil {
			return err
		}
		data, _ := json.Marshal(cur)
		_, err = tx.AppendEvent(market.Event{Type: market.EventOfferWithdrawn, At: cur.UpdatedAt, Intent: cur.Intent, Subject: cur.ID, Data: data})
		return err
	})
	return out, wrap(op, err)
}

// Offer returns an offer.
func (e *Engine) Offer(ctx context.Context, id string) (market.Offer, error) {
	var o market.Offer
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		o, err = tx.Offer(id)
		return err
	})
	return o, wrap("offer", err)
}

// offerPrice is the offer's price for the parameters: the base price plus
// the unit price times the parameter named by Unit.
func offerPrice(o *market.Offer, params json.RawMessage) (int64, error) {
	if o.UnitPriceMicrocredits == 0 {
		return o.BasePriceMicrocredits, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(params, &m); err != nil {
		return 0, fmt.Errorf("parameters are not a JSON object")
	}
	raw, ok := m[o.Unit]
	if !ok {
		return 0, fmt.Errorf("parameter %q, which the offer prices by, is missing", o.Unit)
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&n); err != nil {
		return 0, fmt.Errorf("parameter %q is not a number", o.Unit)
	}
	q, err := n.Int64()
	if err != nil || q < 0 {
		return 0, fmt.Errorf("parameter %q must be a non-negative integer", o.Unit)
	}
	if q > 0 && o.UnitPriceMicrocredits > (maxPrice-o.BasePriceMicrocredits)/q {
		return 0, fmt.Errorf("price overflows")
	}
	return o.BasePriceMicrocredits + o.UnitPriceMicrocredits*q, nil
}

// FindOffers returns ranked offers for an intent type.
func (e *Engine) FindOffers(ctx context.Context, q market.OfferQuery) ([]market.OfferMatch, error) {
	const op = "find_offers"
	if !intentTypeRE.MatchString(q.Intent) {
		return nil, market.E(market.Op(op), market.Invalid, market.Code("invalid_intent"), "intent must be 1-64 letters, digits and _.:-")
	}
	if q.MinimumReputationScore < 0 || q.MinimumReputationScore > 1 || q.MaxPriceMicrocredits < 0 || q.MaxLatencyMs < 0 {
		return nil, market.E(market.Op(op), market.Invalid, market.Code("invalid_query"), "constraints must be non-negative and the reputation score at most 1")
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, 100)
	var matches []market.OfferMatch
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		offers, err := tx.ActiveOffers(q.Intent)
		if err != nil {
			return err
		}
		for i := range offers {
			o := &offers[i]
			price := o.BasePriceMicrocredits
			if len(q.Parameters) > 0 {
				if len(o.ParameterSchema) > 0 && e.schemas.validate(o.ParameterSchema, q.Parameters, "parameters") != nil {
					continue
				}
				if price, err = offerPrice(o, q.Parameters); err != nil {
					continue
				}
			}
			if q.MaxPriceMicrocredits > 0 && price > q.MaxPriceMicrocredits {
				continue
			}
			if q.MaxLatencyMs > 0 && o.LatencyMs > q.MaxLatencyMs {
				continue
			}
			rep, err := e.reputation(tx, o.Seller, q.Intent)
			if err != nil {
				return err
			}
			if rep.LowerBound < q.MinimumReputationScore {
				continue
			}
			matches = append(matches, market.OfferMatch{Offer: *o, PriceMicrocredits: price, Reputation: rep})
		}
		return nil
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	rankOffers(matches)
	if len(matches) > limit {
		matches = matches[:limit]
	}
	return matches, nil
}

// rankOffers scores each match from 0 to 1 (half price, a fifth latency,
// three tenths reputation, each relative to the best and worst on offer)
// and sorts best first, by id on ties.
func rankOffers(ms []market.OfferMatch) {
	if len(ms) == 0 {
		return
	}
	minP, maxP := ms[0].PriceMicrocredits, ms[0].PriceMicrocredits
	minL, maxL := ms[0].Offer.LatencyMs, ms[0].Offer.LatencyMs
	for _, m := range ms {
		minP, maxP = min(minP, m.PriceMicrocredits), max(maxP, m.PriceMicrocredits)
		minL, maxL = min(minL, m.Offer.LatencyMs), max(maxL, m.Offer.LatencyMs)
	}
	norm := func(v, lo, hi int64) float64 {
		if hi == lo {
			return 1
		}
		return 1 - float64(v-lo)/float64(hi-lo)
	}
	for i := range ms {
		m := &ms[i]
		m.Score = 0.5*norm(m.PriceMicrocredits, minP, maxP) + 0.2*norm(m.Offer.LatencyMs, minL, maxL) + 0.3*m.Reputation.Score
	}
	sort.SliceStable(ms, func(i, j int) bool {
		if ms[i].Score != ms[j].Score {
			return ms[i].Score > ms[j].Score
		}
		return ms[i].Offer.ID < ms[j].Offer.ID
	})
}

// reputation returns an agent's reputation for an intent type, decayed to now.
func (e *Engine) reputation(tx market.ReadTx, id market.AgentID, intent string) (market.Reputation, error) {
	s, err := tx.Score(id, intent)
	if err != nil {
		return market.Reputation{}, err
	}
	s.Agent, s.Intent = id, intent
	return s.At(e.now(), e.cfg.HalfLife).Reputation(), nil
}

// Reputation returns an agent's reputation.
func (e *Engine) Reputation(ctx context.Context, id market.AgentID, intent string) (market.Reputation, error) {
	const op = "reputation"
	var rep market.Reputation
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		if _, err := tx.Agent(id); err != nil {
			return err
		}
		var err error
		rep, err = e.reputation(tx, id, intent)
		return err
	})
	return rep, wrap(op, err)
}
