package sqlite

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/agentmarket/agentmarket/market"
)

// writeTx implements market.Tx inside one fn's savepoint of a batch. Its
// reads go through the batch's transaction, so they see the writes of fn
// and of the fns before it in the batch.
type writeTx struct {
	readTx
	now    func() time.Time
	maxSeq int64 // the highest event sequence number appended
}

var _ market.Tx = (*writeTx)(nil)

// exec runs a statement, wrapping its error with what it was doing.
func (w *writeTx) exec(what string, query string, args ...any) (int64, error) {
	res, err := w.q.ExecContext(w.ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return n, nil
}

// encode is the document column of v.
func encode(kind string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", kind, err)
	}
	return string(b), nil
}

// isUnique reports whether err is a UNIQUE or PRIMARY KEY violation.
func isUnique(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// nullString stores an empty string as NULL.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (w *writeTx) PutAgent(a market.Agent) error {
	doc, err := encode("agent", a)
	if err != nil {
		return err
	}
	_, err = w.exec("put agent "+string(a.ID), `INSERT INTO agents (id, arbiter, bond, doc) VALUES (?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET arbiter = excluded.arbiter, bond = excluded.bond, doc = excluded.doc`,
		a.ID, a.HasRole(market.RoleArbiter), a.BondMicrocredits, doc)
	return err
}

func (w *writeTx) AddOperatorGrant(operator string, microcredits int64) error {
	_, err := w.exec("add operator grant", `INSERT INTO operator_grants (operator, microcredits) VALUES (?, ?)
		ON CONFLICT (operator) DO UPDATE SET microcredits = operator_grants.microcredits + excluded.microcredits`,
		operator, microcredits)
	return err
}

func (w *writeTx) PutOffer(o market.Offer) error {
	doc, err := encode("offer", o)
	if err != nil {
		return err
	}
	_, err = w.exec("put offer "+o.ID, `INSERT INTO offers (id, seller, intent, state, doc) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seller = excluded.seller, intent = excluded.intent, state = excluded.state,
		doc = excluded.doc`,
		o.ID, o.Seller, o.Intent, o.State, doc)
	return err
}

// intentDue is an intent's next deadline: the bid deadline while open,
// the award deadline while selecting, none otherwise.
func intentDue(i market.Intent) any {
	switch i.State {
	case market.IntentOpen:
		return nanos(i.BidDeadline)
	case market.IntentSelecting:
		return nanos(i.AwardDeadline)
	}
	return nil
}

// PutIntent stores an intent. An empty request_id is stored as NULL and
// is exempt from uniqueness; a request_id the buyer already used on
// another intent is an Exist error.
func (w *writeTx) PutIntent(i market.Intent) error {
	doc, err := encode("intent", i)
	if err != nil {
		return err
	}
	_, err = w.exec("put intent "+i.ID, `INSERT INTO intents (id, buyer, request_id, intent, state, due, created_at, doc)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET buyer = excluded.buyer, request_id = excluded.request_id,
		intent = excluded.intent, state = excluded.state, due = excluded.due, created_at = excluded.created_at,
		doc = excluded.doc`,
		i.ID, i.Buyer, nullString(i.RequestID), i.Intent, i.State, intentDue(i), nanos(i.CreatedAt), doc)
	if isUnique(err) {
		return market.Errorf(market.Exist, "request_id_reused",
			"buyer %s already has an intent with request_id %q", i.Buyer, i.RequestID)
	}
	return err
}

// PutBid stores a bid with its intent's type, read from the intent, for
// market statistics; a bid whose intent is not stored has type "".
func (w *writeTx) PutBid(b market.Bid) error {
	doc, err := encode("bid", b)
	if err != nil {
		return err
	}
	_, err = w.exec("put bid "+b.ID, `INSERT INTO bids (id, intent_id, intent_type, seller, created_at, doc)
		VALUES (?, ?, COALESCE((SELECT intent FROM intents WHERE id = ?), ''), ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET intent_id = excluded.intent_id, intent_type = excluded.intent_type,
		seller = excluded.seller, created_at = excluded.created_at, doc = excluded.doc`,
		b.ID, b.Intent, b.Intent, b.Seller, nanos(b.CreatedAt), doc)
	return err
}

func (w *writeTx) PutMessage(m market.Message) error {
	doc, err := encode("message", m)
	if err != nil {
		return err
	}
	_, err = w.exec("put message "+m.ID, `INSERT INTO messages (id, bid_id, doc) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET bid_id = excluded.bid_id, doc = excluded.doc`,
		m.ID, m.Bid, doc)
	return err
}

// contractDue is a contract's next deadline: delivery while awarded,
// review while delivered or in review, none once terminal.
func contractDue(c market.Contract) any {
	switch c.State {
	case market.ContractAwarded:
		return nanos(c.DeliverBy)
	case market.ContractDelivered, market.ContractInReview:
		return nanos(c.ReviewBy)
	}
	return nil
}

// PutContract stores a contract and indexes its parties: buyer, seller,
// and every arbiter assigned to it or that reviewed it.
func (w *writeTx) PutContract(c market.Contract) error {
	doc, err := encode("contract", c)
	if err != nil {
		return err
	}
	var (
		settledAt any
		paid      int64
		result    string
	)
	if o := c.Outcome; o != nil {
		settledAt, paid, result = nanos(o.SettledAt), o.PaidMicrocredits, o.Result
	}
	what := "put contract " + c.ID
	var seq int64
	if _, err := w.scalar(what, `INSERT INTO contracts (id, intent_id, intent, buyer, seller, parent, state, due,
		awarded_at, settled_at, price, paid, result, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET intent_id = excluded.intent_id, intent = excluded.intent,
		buyer = excluded.buyer, seller = excluded.seller, parent = excluded.parent, state = excluded.state,
		due = excluded.due, awarded_at = excluded.awarded_at, settled_at = excluded.settled_at,
		price = excluded.price, paid = excluded.paid, result = excluded.result, doc = excluded.doc
		RETURNING seq`,
		[]any{c.ID, c.IntentID, c.Intent, c.Buyer, c.Seller, c.ParentContract, c.State, contractDue(c),
			nanos(c.AwardedAt), settledAt, c.PriceMicrocredits, paid, result, doc}, &seq); err != nil {
		return err
	}
	if _, err := w.exec(what, `DELETE FROM contract_parties WHERE seq = ?`, seq); err != nil {
		return err
	}
	for _, a := range contractParties(c) {
		if _, err := w.exec(what, `INSERT INTO contract_parties (agent, seq) VALUES (?, ?)
			ON CONFLICT (agent, seq) DO NOTHING`, a, seq); err != nil {
			return err
		}
	}
	return nil
}

// contractParties lists the agents a contract concerns.
func contractParties(c market.Contract) []market.AgentID {
	ids := []market.AgentID{c.Buyer, c.Seller}
	ids = append(ids, c.Arbiters...)
	for _, r := range c.Reviews {
		ids = append(ids, r.Arbiter)
	}
	return ids
}

// PutReceipt stores the next receipt: its Seq must be one more than the
// newest receipt's, or 1 for the first, else it is a Conflict error.
func (w *writeTx) PutReceipt(r market.Receipt) error {
	var last int64
	if _, err := w.scalar("last receipt", `SELECT COALESCE(MAX(seq), 0) FROM receipts`, nil, &last); err != nil {
		return err
	}
	if r.Seq != uint64(last)+1 {
		return market.Errorf(market.Conflict, "receipt_out_of_sequence",
			"receipt %d cannot follow receipt %d: want %d", r.Seq, last, last+1)
	}
	doc, err := encode("receipt", r)
	if err != nil {
		return err
	}
	_, err = w.exec(fmt.Sprintf("put receipt %d", r.Seq), `INSERT INTO receipts (seq, contract, doc) VALUES (?, ?, ?)`,
		int64(r.Seq), r.Contract, doc)
	return err
}

func (w *writeTx) PutScore(s market.ScoreRecord) error {
	doc, err := encode("score", s)
	if err != nil {
		return err
	}
	_, err = w.exec("put score "+string(s.Agent), `INSERT INTO scores (agent, intent, doc) VALUES (?, ?, ?)
		ON CONFLICT (agent, intent) DO UPDATE SET doc = excluded.doc`,
		s.Agent, s.Intent, doc)
	return err
}

func (w *writeTx) PutPair(p market.PairRecord) error {
	doc, err := encode("pair", p)
	if err != nil {
		return err
	}
	_, err = w.exec("put pair", `INSERT INTO pairs (buyer, seller, intent, doc) VALUES (?, ?, ?, ?)
		ON CONFLICT (buyer, seller, intent) DO UPDATE SET doc = excluded.doc`,
		p.Buyer, p.Seller, p.Intent, doc)
	return err
}

func (w *writeTx) PutArbiterRecord(r market.ArbiterRecord) error {
	doc, err := encode("arbiter record", r)
	if err != nil {
		return err
	}
	_, err = w.exec("put arbiter record "+string(r.Arbiter), `INSERT INTO arbiter_records (arbiter, doc) VALUES (?, ?)
		ON CONFLICT (arbiter) DO UPDATE SET doc = excluded.doc`,
		r.Arbiter, doc)
	return err
}

// AppendEvent stores e with the next sequence number and indexes its
// audience one agent per row, so that matching compares whole ids. Its
// Seq field is ignored; At keeps its instant and reads back in UTC.
func (w *writeTx) AppendEvent(e market.Event) (int64, error) {
	audience, err := json.Marshal(e.Audience)
	if err != nil {
		return 0, fmt.Errorf("encode event audience: %w", err)
	}
	var data any
	if e.Data != nil {
		data = []byte(e.Data)
	}
	var seq int64
	if _, err := w.scalar("append event", `INSERT INTO events (type, at, intent, subject, public, audience, data)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
		[]any{e.Type, nanos(e.At), e.Intent, e.Subject, len(e.Audience) == 0, string(audience), data}, &seq); err != nil {
		return 0, err
	}
	for _, a := range e.Audience {
		if _, err := w.exec("append event audience", `INSERT INTO event_audience (agent, seq) VALUES (?, ?)
			ON CONFLICT (agent, seq) DO NOTHING`, a, seq); err != nil {
			return 0, err
		}
	}
	w.maxSeq = max(w.maxSeq, seq)
	return seq, nil
}

func (w *writeTx) PutIdempotency(r market.IdempotencyRecord) error {
	_, err := w.exec("put idempotency record", `INSERT INTO idempotency (key, request_hash, status, header, body, created_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, status = excluded.status,
		header = excluded.header, body = excluded.body, created_at = excluded.created_at`,
		r.Key, r.RequestHash, r.Status, r.Header, r.Body, nanos(r.CreatedAt))
	return err
}

// UseNonce records the nonce until expires, by the store's clock. It
// first forgets every nonce that has expired (expires at or before now),
// so a nonce may be used again once its record has expired.
func (w *writeTx) UseNonce(agent market.AgentID, nonce string, expires time.Time) error {
	if _, err := w.exec("forget expired nonces", `DELETE FROM nonces WHERE expires <= ?`, nanos(w.now())); err != nil {
		return err
	}
	n, err := w.exec("use nonce", `INSERT INTO nonces (agent, nonce, expires) VALUES (?, ?, ?)
		ON CONFLICT (agent, nonce) DO NOTHING`, agent, nonce, nanos(expires))
	if err != nil {
		return err
	}
	if n == 0 {
		return market.Errorf(market.Exist, "nonce_reused", "agent %s has already used nonce %q", agent, nonce)
	}
	return nil
}
