package journalstore

import (
	"fmt"

	"github.com/agentmarket/agentmarket/market"
)

// A record's body is the batch's committed changes, each a kind byte and
// the object's new value: the whole value, not a difference, so that
// replaying a record sets what it names and nothing else. Objects that
// lists return in insertion order carry their sequence number, events and
// receipts their own; a bid carries its intent's type as it was read when
// the bid was stored. Writes that a failed fn made are not in it.
const (
	opAgent = 1 + iota
	opGrant
	opOffer
	opIntent
	opBid
	opMessage
	opContract
	opReceipt
	opScore
	opPair
	opArbiterRecord
	opIdempotency
	opEvent
	opNonce
)

// change is one object's new value for the journal. v points into a
// stored version, which never changes, so that the syncer can encode it
// while the writer goes on.
type change struct {
	op  uint8
	seq int64
	k   [2]string // a grant's operator; a nonce's agent and nonce
	v   any
}

// changes lists what the batch wrote: each object it gave a new value
// once, with its newest value, then its events and receipts in order.
// Objects whose new values were all undone are left out.
func (w *writer) changes() []change {
	s := w.s
	if w.seen == nil {
		w.seen = make(map[ref]bool)
	}
	seen := w.seen
	defer clear(seen)
	cs := make([]change, 0, len(w.dirty)+int(s.events.last-w.batchEvents)+int(s.receipts.last-w.batchReceipts))
	for _, r := range w.dirty {
		if seen[r] {
			continue
		}
		seen[r] = true
		c := change{seq: r.seq}
		var ver uint64
		switch r.kind {
		case kAgent:
			h := s.agents[market.AgentID(r.k[0])]
			c.op, c.v, ver = opAgent, &h.val, h.ver
		case kGrant:
			h := s.grants[r.k[0]]
			c.op, c.v, c.k[0], ver = opGrant, &h.val, r.k[0], h.ver
		case kOffer:
			h := s.offers[r.k[0]]
			c.op, c.v, ver = opOffer, &h.val, h.ver
		case kIntent:
			h := s.intents.head(r.seq)
			if h == nil {
				continue
			}
			c.op, c.v, ver = opIntent, &h.val, h.ver
		case kBid:
			h := s.bids.head(r.seq)
			if h == nil {
				continue
			}
			c.op, c.v, ver = opBid, &h.val, h.ver
		case kMessage:
			h := s.messages.head(r.seq)
			if h == nil {
				continue
			}
			c.op, c.v, ver = opMessage, &h.val, h.ver
		case kContract:
			h := s.contracts.head(r.seq)
			if h == nil {
				continue
			}
			c.op, c.v, ver = opContract, &h.val, h.ver
		case kScore:
			h := s.scores[r.scoreKey()]
			c.op, c.v, ver = opScore, &h.val, h.ver
		case kPair:
			h := s.pairs[r.pairKey()]
			c.op, c.v, ver = opPair, &h.val, h.ver
		case kArbiterRecord:
			h := s.arbRecs[market.AgentID(r.k[0])]
			c.op, c.v, ver = opArbiterRecord, &h.val, h.ver
		case kIdempotency:
			h := s.idem[r.k[0]]
			c.op, c.v, ver = opIdempotency, &h.val, h.ver
		case kNonce:
			h := s.nonces[r.nonceKey()]
			if h == nil {
				continue // forgotten as expired within the batch
			}
			c.op, c.v, c.k, ver = opNonce, &h.val, [2]string{r.k[0], r.k[1]}, h.ver
		}
		if ver == w.ver {
			cs = append(cs, c)
			w.mayEvict(ver, r)
		}
	}
	for seq := w.batchEvents + 1; seq <= s.events.last; seq++ {
		cs = append(cs, change{op: opEvent, v: &s.events.head(seq).val})
	}
	for seq := w.batchReceipts + 1; seq <= s.receipts.last; seq++ {
		cs = append(cs, change{op: opReceipt, v: &s.receipts.head(seq).val})
	}
	return cs
}

// encodeChanges appends the changes to a record body.
func encodeChanges(b []byte, cs []change) []byte {
	e := enc{b: b}
	for i := range cs {
		c := &cs[i]
		e.byte(c.op)
		switch c.op {
		case opAgent:
			e.agent(c.v.(*market.Agent))
		case opGrant:
			e.str(c.k[0])
			e.varint(*c.v.(*int64))
		case opOffer:
			e.offer(c.v.(*market.Offer))
		case opIntent:
			e.varint(c.seq)
			e.intent(c.v.(*market.Intent))
		case opBid:
			b := c.v.(*bidValue)
			e.varint(c.seq)
			e.str(b.intentType)
			e.bid(&b.Bid)
		case opMessage:
			e.varint(c.seq)
			e.message(c.v.(*market.Message))
		case opContract:
			e.varint(c.seq)
			e.contract(c.v.(*market.Contract))
		case opReceipt:
			e.receipt(c.v.(*market.Receipt))
		case opScore:
			e.score(c.v.(*market.ScoreRecord))
		case opPair:
			e.pair(c.v.(*market.PairRecord))
		case opArbiterRecord:
			e.arbiterRecord(c.v.(*market.ArbiterRecord))
		case opIdempotency:
			e.idempotency(c.v.(*market.IdempotencyRecord))
		case opEvent:
			e.event(c.v.(*market.Event))
		case opNonce:
			e.str(c.k[0])
			e.str(c.k[1])
			e.varint(*c.v.(*int64))
		}
	}
	return e.b
}

// apply applies a record's changes at the writer's version, through the
// same code that the Tx methods use.
func (w *writer) apply(body []byte, count int) error {
	d := dec{b: body}
	s := w.s
	// seq reads an object's sequence number: one it has, or the next of
	// its table, as the writer gave them out.
	seq := func(last int64) int64 {
		n := d.varint()
		if n <= 0 || n > last+1 {
			d.fail()
		}
		return n
	}
	for i := 0; i < count && d.err == nil; i++ {
		switch op := d.byte(); op {
		case opAgent:
			a := d.agent()
			if d.err == nil {
				w.putAgent(a)
			}
		case opGrant:
			op, total := d.str(), d.varint()
			if d.err == nil {
				w.setGrant(op, total)
			}
		case opOffer:
			o := d.offer()
			if d.err == nil {
				w.putOffer(o)
			}
		case opIntent:
			n, in := seq(s.intents.last), d.intent()
			if d.err == nil {
				if err := w.putIntent(n, in); err != nil {
					return err
				}
			}
		case opBid:
			n := seq(s.bids.last)
			b := bidValue{intentType: d.str()}
			b.Bid = d.bid()
			if d.err == nil {
				if err := w.putBid(n, b); err != nil {
					return err
				}
			}
		case opMessage:
			n, m := seq(s.messages.last), d.message()
			if d.err == nil {
				if err := w.putMessage(n, m); err != nil {
					return err
				}
			}
		case opContract:
			n, c := seq(s.contracts.last), d.contract()
			if d.err == nil {
				if err := w.putContract(n, c); err != nil {
					return err
				}
			}
		case opReceipt:
			r := d.receipt()
			if d.err == nil {
				if r.Seq != uint64(s.receipts.last)+1 {
					return fmt.Errorf("change %d: receipt %d does not follow receipt %d", i, r.Seq, s.receipts.last)
				}
				w.appendReceipt(r)
			}
		case opScore:
			sc := d.score()
			if d.err == nil {
				w.putScore(sc)
			}
		case opPair:
			p := d.pair()
			if d.err == nil {
				w.putPair(p)
			}
		case opArbiterRecord:
			a := d.arbiterRecord()
			if d.err == nil {
				w.putArbiterRecord(a)
			}
		case opIdempotency:
			rec := d.idempotency()
			if d.err == nil {
				w.putIdempotency(rec)
			}
		case opEvent:
			e := d.event()
			if d.err == nil {
				if e.Seq != s.events.last+1 {
					return fmt.Errorf("change %d: event %d does not follow event %d", i, e.Seq, s.events.last)
				}
				w.appendEvent(e)
			}
		case opNonce:
			agent, nonce, expires := d.str(), d.str(), d.varint()
			if d.err == nil {
				w.useNonce(nonceKey{market.AgentID(agent), nonce}, expires)
			}
		default:
			return fmt.Errorf("change %d: unknown kind %d", i, op)
		}
	}
	if d.err != nil {
		return fmt.Errorf("decode changes: %w", d.err)
	}
	if len(d.b) != 0 {
		return fmt.Errorf("decode changes: %d bytes after the last change", len(d.b))
	}
	return nil
}
