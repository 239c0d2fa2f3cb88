package journalstore

import (
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// The journal and the snapshots hold market objects in a compact binary
// encoding: integers as varints, strings and byte slices with their
// length, floats as their IEEE bits, times as seconds, nanoseconds and
// zone offset, optional parts behind a presence byte. Fields are written
// in declaration order; a new field goes at the end of its type's
// encoding together with a new format version. Encoding is what the hot
// path pays for every write, so it allocates nothing beyond the buffer.

// enc appends to a buffer.
type enc struct{ b []byte }

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) int(v int)        { e.varint(int64(v)) }
func (e *enc) byte(v byte)      { e.b = append(e.b, v) }

func (e *enc) bool(v bool) {
	if v {
		e.byte(1)
	} else {
		e.byte(0)
	}
}

func (e *enc) float(v float64) { e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(v)) }

func (e *enc) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// bytes keeps nil apart from empty: the length is written plus one, and
// zero stands for nil.
func (e *enc) bytes(b []byte) {
	if b == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(b)) + 1)
	e.b = append(e.b, b...)
}

// time writes the instant and the zone's offset; the zero time is one
// byte. A decoded time has a fixed zone of that offset, or UTC.
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.byte(0)
		return
	}
	_, off := t.Zone()
	e.byte(1)
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
	e.varint(int64(off))
}

func (e *enc) agentIDs(ids []market.AgentID) {
	if ids == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(ids)) + 1)
	for _, id := range ids {
		e.str(string(id))
	}
}

func (e *enc) strs(ss []string) {
	if ss == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(ss)) + 1)
	for _, s := range ss {
		e.str(s)
	}
}

// errCorrupt is what a decoder returns for bytes that are not a valid
// encoding. A record whose hash matched cannot hold such bytes unless the
// writer had a bug; snapshots are checked the same way.
var errCorrupt = errors.New("malformed encoding")

// dec reads what enc wrote. The first error sticks: later reads return
// zero values, and err says what went wrong.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) int() int {
	v := d.varint()
	if v != int64(int(v)) {
		d.fail()
		return 0
	}
	return int(v)
}

func (d *dec) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail()
	return false
}

func (d *dec) float() float64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

// take returns the next n bytes, aliasing the input.
func (d *dec) take(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string { return string(d.take(d.uvarint())) }

func (d *dec) bytes() []byte {
	n := d.uvarint()
	if n == 0 {
		return nil
	}
	b := d.take(n - 1)
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

func (d *dec) time() time.Time {
	switch d.byte() {
	case 0:
		return time.Time{}
	case 1:
	default:
		d.fail()
		return time.Time{}
	}
	sec, nsec, off := d.varint(), d.uvarint(), d.varint()
	if nsec >= 1e9 || off < -24*3600 || off > 24*3600 {
		d.fail()
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	if off == 0 {
		return t.UTC()
	}
	return t.In(time.FixedZone("", int(off)))
}

// count reads a list length written plus one; nil reports a nil list. It
// refuses lengths that the remaining bytes cannot hold, so that a bad
// length cannot make the decoder allocate without bound.
func (d *dec) count() (n int, isNil bool) {
	v := d.uvarint()
	if v == 0 {
		return 0, true
	}
	if v-1 > uint64(len(d.b)) {
		d.fail()
		return 0, true
	}
	return int(v - 1), false
}

// length reads a count of items of at least a byte each, refusing one
// that the remaining bytes cannot hold.
func (d *dec) length() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(v)
}

func (d *dec) agentIDs() []market.AgentID {
	n, isNil := d.count()
	if isNil {
		return nil
	}
	ids := make([]market.AgentID, n)
	for i := range ids {
		ids[i] = market.AgentID(d.str())
	}
	return ids
}

func (d *dec) strs() []string {
	n, isNil := d.count()
	if isNil {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str()
	}
	return ss
}

func (e *enc) agent(a *market.Agent) {
	e.str(string(a.ID))
	e.str(a.Name)
	e.str(a.Operator)
	if a.Roles == nil {
		e.uvarint(0)
	} else {
		e.uvarint(uint64(len(a.Roles)) + 1)
		for _, r := range a.Roles {
			e.str(string(r))
		}
	}
	e.varint(a.BondMicrocredits)
	e.int(a.BondPosts)
	e.varint(a.GrantMicrocredits)
	e.time(a.RegisteredAt)
}

func (d *dec) agent() (a market.Agent) {
	a.ID = market.AgentID(d.str())
	a.Name = d.str()
	a.Operator = d.str()
	if n, isNil := d.count(); !isNil {
		a.Roles = make([]market.Role, n)
		for i := range a.Roles {
			a.Roles[i] = market.Role(d.str())
		}
	}
	a.BondMicrocredits = d.varint()
	a.BondPosts = d.int()
	a.GrantMicrocredits = d.varint()
	a.RegisteredAt = d.time()
	return a
}

func (e *enc) offer(o *market.Offer) {
	e.str(o.ID)
	e.str(string(o.Seller))
	e.str(o.Intent)
	e.bytes(o.ParameterSchema)
	e.varint(o.BasePriceMicrocredits)
	e.varint(o.UnitPriceMicrocredits)
	e.str(o.Unit)
	e.varint(o.LatencyMs)
	e.int(o.Capacity)
	e.strs(o.Tags)
	e.str(string(o.State))
	e.time(o.CreatedAt)
	e.time(o.UpdatedAt)
}

func (d *dec) offer() (o market.Offer) {
	o.ID = d.str()
	o.Seller = market.AgentID(d.str())
	o.Intent = d.str()
	o.ParameterSchema = d.bytes()
	o.BasePriceMicrocredits = d.varint()
	o.UnitPriceMicrocredits = d.varint()
	o.Unit = d.str()
	o.LatencyMs = d.varint()
	o.Capacity = d.int()
	o.Tags = d.strs()
	o.State = market.OfferState(d.str())
	o.CreatedAt = d.time()
	o.UpdatedAt = d.time()
	return o
}

func (e *enc) acceptance(a *market.Acceptance) {
	e.str(a.Policy)
	e.bytes(a.Schema)
	e.str(a.Digest)
	e.str(a.Checker)
	e.varint(a.ReviewMs)
}

func (d *dec) acceptance() (a market.Acceptance) {
	a.Policy = d.str()
	a.Schema = d.bytes()
	a.Digest = d.str()
	a.Checker = d.str()
	a.ReviewMs = d.varint()
	return a
}

func (e *enc) intent(i *market.Intent) {
	e.str(i.ID)
	e.str(i.RequestID)
	e.str(string(i.Buyer))
	e.str(i.Intent)
	e.bytes(i.Parameters)
	e.varint(i.Constraints.MaxLatencyMs)
	e.varint(i.Constraints.MaxBudgetMicrocredits)
	e.float(i.Constraints.MinimumReputationScore)
	e.time(i.BidDeadline)
	e.time(i.AwardDeadline)
	e.str(i.Selection.Mode)
	e.float(i.Selection.PriceWeight)
	e.float(i.Selection.SpeedWeight)
	e.float(i.Selection.QualityWeight)
	e.int(i.MaxRounds)
	e.acceptance(&i.Acceptance)
	e.str(i.ParentContract)
	e.str(string(i.State))
	e.str(i.Contract)
	e.time(i.CreatedAt)
	e.int(i.EligibleSellers)
}

func (d *dec) intent() (i market.Intent) {
	i.ID = d.str()
	i.RequestID = d.str()
	i.Buyer = market.AgentID(d.str())
	i.Intent = d.str()
	i.Parameters = d.bytes()
	i.Constraints.MaxLatencyMs = d.varint()
	i.Constraints.MaxBudgetMicrocredits = d.varint()
	i.Constraints.MinimumReputationScore = d.float()
	i.BidDeadline = d.time()
	i.AwardDeadline = d.time()
	i.Selection.Mode = d.str()
	i.Selection.PriceWeight = d.float()
	i.Selection.SpeedWeight = d.float()
	i.Selection.QualityWeight = d.float()
	i.MaxRounds = d.int()
	i.Acceptance = d.acceptance()
	i.ParentContract = d.str()
	i.State = market.IntentState(d.str())
	i.Contract = d.str()
	i.CreatedAt = d.time()
	i.EligibleSellers = d.int()
	return i
}

func (e *enc) bid(b *market.Bid) {
	e.str(b.ID)
	e.str(b.Intent)
	e.str(string(b.Seller))
	e.str(b.Offer)
	e.varint(b.PriceMicrocredits)
	e.varint(b.LatencyMs)
	e.time(b.ExpiresAt)
	e.str(b.Note)
	e.str(string(b.State))
	e.int(b.Rounds)
	e.str(b.LastMessage)
	e.varint(b.BuyerOfferMicrocredits)
	e.time(b.CreatedAt)
}

func (d *dec) bid() (b market.Bid) {
	b.ID = d.str()
	b.Intent = d.str()
	b.Seller = market.AgentID(d.str())
	b.Offer = d.str()
	b.PriceMicrocredits = d.varint()
	b.LatencyMs = d.varint()
	b.ExpiresAt = d.time()
	b.Note = d.str()
	b.State = market.BidState(d.str())
	b.Rounds = d.int()
	b.LastMessage = d.str()
	b.BuyerOfferMicrocredits = d.varint()
	b.CreatedAt = d.time()
	return b
}

func (e *enc) bidValue(b *bidValue) {
	e.str(b.intentType)
	e.bid(&b.Bid)
}

func (d *dec) bidValue() (b bidValue) {
	b.intentType = d.str()
	b.Bid = d.bid()
	return b
}

func (e *enc) message(m *market.Message) {
	e.str(m.ID)
	e.str(m.Bid)
	e.str(string(m.From))
	e.str(m.InReplyTo)
	e.varint(m.PriceMicrocredits)
	e.varint(m.LatencyMs)
	e.bool(m.Accept)
	e.str(m.Note)
	e.int(m.Round)
	e.time(m.CreatedAt)
}

func (d *dec) message() (m market.Message) {
	m.ID = d.str()
	m.Bid = d.str()
	m.From = market.AgentID(d.str())
	m.InReplyTo = d.str()
	m.PriceMicrocredits = d.varint()
	m.LatencyMs = d.varint()
	m.Accept = d.bool()
	m.Note = d.str()
	m.Round = d.int()
	m.CreatedAt = d.time()
	return m
}

func (e *enc) contract(c *market.Contract) {
	e.str(c.ID)
	e.str(c.IntentID)
	e.str(c.Intent)
	e.str(c.Bid)
	e.str(string(c.Buyer))
	e.str(string(c.Seller))
	e.varint(c.PriceMicrocredits)
	e.varint(c.FeeMicrocredits)
	e.varint(c.ArbiterFeeMicrocredits)
	e.varint(c.HoldMicrocredits)
	e.acceptance(&c.Acceptance)
	e.str(c.ParentContract)
	e.str(string(c.State))
	e.time(c.AwardedAt)
	e.time(c.DeliverBy)
	e.time(c.ReviewBy)
	e.bool(c.Delivery != nil)
	if dl := c.Delivery; dl != nil {
		e.bytes(dl.Output)
		e.str(dl.Digest)
		e.str(dl.URI)
		e.time(dl.DeliveredAt)
		e.bool(dl.Check != nil)
		if ch := dl.Check; ch != nil {
			e.str(ch.Policy)
			e.bool(ch.Passed)
			e.str(ch.Detail)
		}
	}
	e.bool(c.Dispute != nil)
	if dp := c.Dispute; dp != nil {
		e.str(dp.Reason)
		e.time(dp.OpenedAt)
	}
	e.agentIDs(c.Arbiters)
	if c.Reviews == nil {
		e.uvarint(0)
	} else {
		e.uvarint(uint64(len(c.Reviews)) + 1)
		for i := range c.Reviews {
			r := &c.Reviews[i]
			e.str(string(r.Arbiter))
			e.float(r.Quality)
			e.str(r.Verdict)
			e.str(r.Note)
			e.time(r.ReviewedAt)
		}
	}
	e.int(c.Assignments)
	e.bool(c.Audit)
	e.bool(c.GoldQuality != nil)
	if c.GoldQuality != nil {
		e.float(*c.GoldQuality)
	}
	e.bool(c.Outcome != nil)
	if o := c.Outcome; o != nil {
		e.str(o.Result)
		e.varint(o.PaidMicrocredits)
		e.varint(o.RefundedMicrocredits)
		e.varint(o.FeeMicrocredits)
		e.varint(o.ArbiterFeeMicrocredits)
		e.float(o.Quality)
		e.str(o.Reason)
		e.time(o.SettledAt)
		e.uvarint(o.Receipt)
	}
	e.strs(c.Children)
	e.varint(c.ChildBudgetMicrocredits)
}

func (d *dec) contract() (c market.Contract) {
	c.ID = d.str()
	c.IntentID = d.str()
	c.Intent = d.str()
	c.Bid = d.str()
	c.Buyer = market.AgentID(d.str())
	c.Seller = market.AgentID(d.str())
	c.PriceMicrocredits = d.varint()
	c.FeeMicrocredits = d.varint()
	c.ArbiterFeeMicrocredits = d.varint()
	c.HoldMicrocredits = d.varint()
	c.Acceptance = d.acceptance()
	c.ParentContract = d.str()
	c.State = market.ContractState(d.str())
	c.AwardedAt = d.time()
	c.DeliverBy = d.time()
	c.ReviewBy = d.time()
	if d.bool() {
		dl := &market.Delivery{}
		dl.Output = d.bytes()
		dl.Digest = d.str()
		dl.URI = d.str()
		dl.DeliveredAt = d.time()
		if d.bool() {
			dl.Check = &market.CheckResult{Policy: d.str(), Passed: d.bool(), Detail: d.str()}
		}
		c.Delivery = dl
	}
	if d.bool() {
		c.Dispute = &market.Dispute{Reason: d.str(), OpenedAt: d.time()}
	}
	c.Arbiters = d.agentIDs()
	if n, isNil := d.count(); !isNil {
		c.Reviews = make([]market.Review, n)
		for i := range c.Reviews {
			r := &c.Reviews[i]
			r.Arbiter = market.AgentID(d.str())
			r.Quality = d.float()
			r.Verdict = d.str()
			r.Note = d.str()
			r.ReviewedAt = d.time()
		}
	}
	c.Assignments = d.int()
	c.Audit = d.bool()
	if d.bool() {
		g := d.float()
		c.GoldQuality = &g
	}
	if d.bool() {
		o := &market.Outcome{}
		o.Result = d.str()
		o.PaidMicrocredits = d.varint()
		o.RefundedMicrocredits = d.varint()
		o.FeeMicrocredits = d.varint()
		o.ArbiterFeeMicrocredits = d.varint()
		o.Quality = d.float()
		o.Reason = d.str()
		o.SettledAt = d.time()
		o.Receipt = d.uvarint()
		c.Outcome = o
	}
	c.Children = d.strs()
	c.ChildBudgetMicrocredits = d.varint()
	return c
}

func (e *enc) receipt(r *market.Receipt) {
	e.uvarint(r.Seq)
	e.str(string(r.Market))
	e.str(r.Contract)
	e.str(r.IntentID)
	e.str(r.Intent)
	e.str(string(r.Buyer))
	e.str(string(r.Seller))
	e.str(string(r.Arbiter))
	e.varint(r.PriceMicrocredits)
	e.varint(r.PaidMicrocredits)
	e.varint(r.RefundedMicrocredits)
	e.varint(r.FeeMicrocredits)
	e.varint(r.ArbiterFeeMicrocredits)
	e.str(r.Result)
	e.varint(r.QualityBps)
	e.str(r.Reason)
	e.time(r.SettledAt)
	e.str(r.PrevHash)
	e.str(r.Signature)
}

func (d *dec) receipt() (r market.Receipt) {
	r.Seq = d.uvarint()
	r.Market = market.AgentID(d.str())
	r.Contract = d.str()
	r.IntentID = d.str()
	r.Intent = d.str()
	r.Buyer = market.AgentID(d.str())
	r.Seller = market.AgentID(d.str())
	r.Arbiter = market.AgentID(d.str())
	r.PriceMicrocredits = d.varint()
	r.PaidMicrocredits = d.varint()
	r.RefundedMicrocredits = d.varint()
	r.FeeMicrocredits = d.varint()
	r.ArbiterFeeMicrocredits = d.varint()
	r.Result = d.str()
	r.QualityBps = d.varint()
	r.Reason = d.str()
	r.SettledAt = d.time()
	r.PrevHash = d.str()
	r.Signature = d.str()
	return r
}

func (e *enc) score(s *market.ScoreRecord) {
	e.str(string(s.Agent))
	e.str(s.Intent)
	e.float(s.Good)
	e.float(s.Bad)
	e.int(s.Contracts)
	e.float(s.BuyerGood)
	e.float(s.BuyerBad)
	e.int(s.DisputesLost)
	e.time(s.UpdatedAt)
}

func (d *dec) score() (s market.ScoreRecord) {
	s.Agent = market.AgentID(d.str())
	s.Intent = d.str()
	s.Good = d.float()
	s.Bad = d.float()
	s.Contracts = d.int()
	s.BuyerGood = d.float()
	s.BuyerBad = d.float()
	s.DisputesLost = d.int()
	s.UpdatedAt = d.time()
	return s
}

func (e *enc) pair(p *market.PairRecord) {
	e.str(string(p.Buyer))
	e.str(string(p.Seller))
	e.str(p.Intent)
	e.int(p.Trades)
	e.int(p.Paid)
	e.float(p.Good)
	e.float(p.Bad)
	e.bool(p.Circular)
	e.time(p.UpdatedAt)
}

func (d *dec) pair() (p market.PairRecord) {
	p.Buyer = market.AgentID(d.str())
	p.Seller = market.AgentID(d.str())
	p.Intent = d.str()
	p.Trades = d.int()
	p.Paid = d.int()
	p.Good = d.float()
	p.Bad = d.float()
	p.Circular = d.bool()
	p.UpdatedAt = d.time()
	return p
}

func (e *enc) arbiterRecord(r *market.ArbiterRecord) {
	e.str(string(r.Arbiter))
	e.int(r.Reviews)
	e.int(r.Compared)
	e.float(r.AbsError)
}

func (d *dec) arbiterRecord() (r market.ArbiterRecord) {
	r.Arbiter = market.AgentID(d.str())
	r.Reviews = d.int()
	r.Compared = d.int()
	r.AbsError = d.float()
	return r
}

func (e *enc) idempotency(r *market.IdempotencyRecord) {
	e.str(r.Key)
	e.str(r.RequestHash)
	e.int(r.Status)
	e.bytes(r.Header)
	e.bytes(r.Body)
	e.time(r.CreatedAt)
}

func (d *dec) idempotency() (r market.IdempotencyRecord) {
	r.Key = d.str()
	r.RequestHash = d.str()
	r.Status = d.int()
	r.Header = d.bytes()
	r.Body = d.bytes()
	r.CreatedAt = d.time()
	return r
}

func (e *enc) event(ev *market.Event) {
	e.varint(ev.Seq)
	e.str(ev.Type)
	e.time(ev.At)
	e.str(ev.Intent)
	e.str(ev.Subject)
	e.agentIDs(ev.Audience)
	e.bytes(ev.Data)
}

func (d *dec) event() (ev market.Event) {
	ev.Seq = d.varint()
	ev.Type = d.str()
	ev.At = d.time()
	ev.Intent = d.str()
	ev.Subject = d.str()
	ev.Audience = d.agentIDs()
	ev.Data = d.bytes()
	return ev
}
