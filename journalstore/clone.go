package journalstore

import (
	"slices"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// The store keeps copies. A Put copies its argument before storing it and
// a read copies what it returns, so that no caller can change stored state
// through a slice or a pointer it passed in or got back. Stored values are
// never changed in place: a write stores a new version. Times lose their
// monotonic clock reading, which means nothing once stored.

func cloneBytes[B ~[]byte](b B) B {
	if b == nil {
		return nil
	}
	return B(slices.Clone([]byte(b)))
}

func wall(t time.Time) time.Time { return t.Round(0) }

func cloneAgent(a market.Agent) market.Agent {
	a.Roles = slices.Clone(a.Roles)
	a.RegisteredAt = wall(a.RegisteredAt)
	return a
}

func cloneOffer(o market.Offer) market.Offer {
	o.ParameterSchema = cloneBytes(o.ParameterSchema)
	o.Tags = slices.Clone(o.Tags)
	o.CreatedAt, o.UpdatedAt = wall(o.CreatedAt), wall(o.UpdatedAt)
	return o
}

func cloneIntent(i market.Intent) market.Intent {
	i.Parameters = cloneBytes(i.Parameters)
	i.Acceptance = cloneAcceptance(i.Acceptance)
	i.BidDeadline, i.AwardDeadline, i.CreatedAt = wall(i.BidDeadline), wall(i.AwardDeadline), wall(i.CreatedAt)
	return i
}

func cloneAcceptance(a market.Acceptance) market.Acceptance {
	a.Schema = cloneBytes(a.Schema)
	return a
}

func cloneBid(b market.Bid) market.Bid {
	b.ExpiresAt, b.CreatedAt = wall(b.ExpiresAt), wall(b.CreatedAt)
	return b
}

func cloneMessage(m market.Message) market.Message {
	m.CreatedAt = wall(m.CreatedAt)
	return m
}

func cloneContract(c market.Contract) market.Contract {
	c.Acceptance = cloneAcceptance(c.Acceptance)
	c.AwardedAt, c.DeliverBy, c.ReviewBy = wall(c.AwardedAt), wall(c.DeliverBy), wall(c.ReviewBy)
	if c.Delivery != nil {
		d := *c.Delivery
		d.Output = cloneBytes(d.Output)
		d.DeliveredAt = wall(d.DeliveredAt)
		if d.Check != nil {
			ch := *d.Check
			d.Check = &ch
		}
		c.Delivery = &d
	}
	if c.Dispute != nil {
		d := *c.Dispute
		d.OpenedAt = wall(d.OpenedAt)
		c.Dispute = &d
	}
	c.Arbiters = slices.Clone(c.Arbiters)
	if c.Reviews != nil {
		rs := make([]market.Review, len(c.Reviews))
		for i, r := range c.Reviews {
			r.ReviewedAt = wall(r.ReviewedAt)
			rs[i] = r
		}
		c.Reviews = rs
	}
	if c.GoldQuality != nil {
		g := *c.GoldQuality
		c.GoldQuality = &g
	}
	if c.Outcome != nil {
		o := *c.Outcome
		o.SettledAt = wall(o.SettledAt)
		c.Outcome = &o
	}
	c.Children = slices.Clone(c.Children)
	return c
}

func cloneReceipt(r market.Receipt) market.Receipt {
	r.SettledAt = wall(r.SettledAt)
	return r
}

func cloneScore(s market.ScoreRecord) market.ScoreRecord {
	s.UpdatedAt = wall(s.UpdatedAt)
	return s
}

func clonePair(p market.PairRecord) market.PairRecord {
	p.UpdatedAt = wall(p.UpdatedAt)
	return p
}

func cloneIdempotency(r market.IdempotencyRecord) market.IdempotencyRecord {
	r.Header = cloneBytes(r.Header)
	r.Body = cloneBytes(r.Body)
	r.CreatedAt = wall(r.CreatedAt)
	return r
}

func cloneEvent(e market.Event) market.Event {
	e.At = wall(e.At)
	e.Audience = slices.Clone(e.Audience)
	e.Data = cloneBytes(e.Data)
	return e
}
