package postgres

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// writeTx implements market.Tx inside an Update's transaction.
type writeTx struct {
	readTx
	s           *Store
	eventLocked bool  // the transaction holds the event lock
	maxSeq      int64 // the highest event sequence number appended
}

var _ market.Tx = (*writeTx)(nil)

// exec runs a statement, wrapping its error with what it was doing, and
// returns the rows it affected.
func (w *writeTx) exec(what string, query string, args ...any) (int64, error) {
	tag, err := w.q.Exec(w.ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return tag.RowsAffected(), nil
}

// encode is the document column of v.
func encode(kind string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", kind, err)
	}
	return string(b), nil
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
	_, err = w.exec("put agent "+string(a.ID), `INSERT INTO agents (id, arbiter, bond, doc) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET arbiter = excluded.arbiter, bond = excluded.bond, doc = excluded.doc`,
		a.ID, a.HasRole(market.RoleArbiter), a.BondMicrocredits, doc)
	return err
}

func (w *writeTx) AddOperatorGrant(operator string, microcredits int64) error {
	_, err := w.exec("add operator grant", `INSERT INTO operator_grants (operator, microcredits) VALUES ($1, $2)
		ON CONFLICT (operator) DO UPDATE SET microcredits = operator_grants.microcredits + excluded.microcredits`,
		operator, microcredits)
	return err
}

func (w *writeTx) PutOffer(o market.Offer) error {
	doc, err := encode("offer", o)
	if err != nil {
		return err
	}
	_, err = w.exec("put offer "+o.ID, `INSERT INTO offers (id, seller, intent, state, doc) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET seller = excluded.seller, intent = excluded.intent, state = excluded.state,
		doc = excluded.doc`,
		o.ID, o.Seller, o.Intent, o.State, doc)
	return err
}

// intentDue is an intent's next deadline: the bid deadline while open,
// the award deadline while selecting, none otherwise.
func intentDue(i market.Intent) *int64 {
	var n int64
	switch i.State {
	case market.IntentOpen:
		n = nanos(i.BidDeadline)
	case market.IntentSelecting:
		n = nanos(i.AwardDeadline)
	default:
		return nil
	}
	return &n
}

// PutIntent stores an intent. An empty request_id is stored as NULL and
// is exempt from uniqueness; a request_id the buyer already used on
// another intent is an Exist error. The check reads before it writes, so
// that the error leaves the transaction usable: in PostgreSQL a failed
// statement would abort it. Under serializable isolation a concurrent
// Update that takes the same request_id makes one of the two retry.
func (w *writeTx) PutIntent(i market.Intent) error {
	doc, err := encode("intent", i)
	if err != nil {
		return err
	}
	what := "put intent " + i.ID
	if i.RequestID != "" {
		var other string
		found, err := w.scalar(what, `SELECT id FROM intents WHERE buyer = $1 AND request_id = $2 AND id <> $3`,
			[]any{i.Buyer, i.RequestID, i.ID}, &other)
		if err != nil {
			return err
		}
		if found {
			return market.Errorf(market.Exist, "request_id_reused",
				"buyer %s already has an intent with request_id %q", i.Buyer, i.RequestID)
		}
	}
	_, err = w.exec(what, `INSERT INTO intents (id, buyer, request_id, intent, state, due, created_at, doc)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET buyer = excluded.buyer, request_id = excluded.request_id,
		intent = excluded.intent, state = excluded.state, due = excluded.due, created_at = excluded.created_at,
		doc = excluded.doc`,
		i.ID, i.Buyer, nullString(i.RequestID), i.Intent, i.State, intentDue(i), nanos(i.CreatedAt), doc)
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
		VALUES ($1, $2, COALESCE((SELECT intent FROM intents WHERE id = $2), ''), $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET intent_id = excluded.intent_id, intent_type = excluded.intent_type,
		seller = excluded.seller, created_at = excluded.created_at, doc = excluded.doc`,
		b.ID, b.Intent, b.Seller, nanos(b.CreatedAt), doc)
	return err
}

func (w *writeTx) PutMessage(m market.Message) error {
	doc, err := encode("message", m)
	if err != nil {
		return err
	}
	_, err = w.exec("put message "+m.ID, `INSERT INTO messages (id, bid_id, doc) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET bid_id = excluded.bid_id, doc = excluded.doc`,
		m.ID, m.Bid, doc)
	return err
}

// contractDue is a contract's next deadline: delivery while awarded,
// review while delivered or in review, none once terminal.
func contractDue(c market.Contract) *int64 {
	var n int64
	switch c.State {
	case market.ContractAwarded:
		n = nanos(c.DeliverBy)
	case market.ContractDelivered, market.ContractInReview:
		n = nanos(c.ReviewBy)
	default:
		return nil
	}
	return &n
}

// PutContract stores a contract and indexes its parties: buyer, seller,
// and every arbiter assigned to it or that reviewed it.
func (w *writeTx) PutContract(c market.Contract) error {
	doc, err := encode("contract", c)
	if err != nil {
		return err
	}
	var (
		settledAt *int64
		paid      int64
		result    string
	)
	if o := c.Outcome; o != nil {
		n := nanos(o.SettledAt)
		settledAt, paid, result = &n, o.PaidMicrocredits, o.Result
	}
	what := "put contract " + c.ID
	var seq int64
	if _, err := w.scalar(what, `INSERT INTO contracts (id, intent_id, intent, buyer, seller, parent, state, due,
		awarded_at, settled_at, price, paid, result, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (id) DO UPDATE SET intent_id = excluded.intent_id, intent = excluded.intent,
		buyer = excluded.buyer, seller = excluded.seller, parent = excluded.parent, state = excluded.state,
		due = excluded.due, awarded_at = excluded.awarded_at, settled_at = excluded.settled_at,
		price = excluded.price, paid = excluded.paid, result = excluded.result, doc = excluded.doc
		RETURNING seq`,
		[]any{c.ID, c.IntentID, c.Intent, c.Buyer, c.Seller, c.ParentContract, c.State, contractDue(c),
			nanos(c.AwardedAt), settledAt, c.PriceMicrocredits, paid, result, doc}, &seq); err != nil {
		return err
	}
	if _, err := w.exec(what, `DELETE FROM contract_parties WHERE seq = $1`, seq); err != nil {
		return err
	}
	_, err = w.exec(what, `INSERT INTO contract_parties (agent, seq) SELECT DISTINCT a, $2::BIGINT FROM unnest($1::TEXT[]) AS a`,
		agentStrings(contractParties(c)), seq)
	return err
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

func agentStrings(ids []market.AgentID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
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
	_, err = w.exec(fmt.Sprintf("put receipt %d", r.Seq), `INSERT INTO receipts (seq, contract, doc) VALUES ($1, $2, $3)`,
		int64(r.Seq), r.Contract, doc)
	return err
}

func (w *writeTx) PutScore(s market.ScoreRecord) error {
	doc, err := encode("score", s)
	if err != nil {
		return err
	}
	_, err = w.exec("put score "+string(s.Agent), `INSERT INTO scores (agent, intent, doc) VALUES ($1, $2, $3)
		ON CONFLICT (agent, intent) DO UPDATE SET doc = excluded.doc`,
		s.Agent, s.Intent, doc)
	return err
}

func (w *writeTx) PutPair(p market.PairRecord) error {
	doc, err := encode("pair", p)
	if err != nil {
		return err
	}
	_, err = w.exec("put pair", `INSERT INTO pairs (buyer, seller, intent, doc) VALUES ($1, $2, $3, $4)
		ON CONFLICT (buyer, seller, intent) DO UPDATE SET doc = excluded.doc`,
		p.Buyer, p.Seller, p.Intent, doc)
	return err
}

func (w *writeTx) PutArbiterRecord(r market.ArbiterRecord) error {
	doc, err := encode("arbiter record", r)
	if err != nil {
		return err
	}
	_, err = w.exec("put arbiter record "+string(r.Arbiter), `INSERT INTO arbiter_records (arbiter, doc) VALUES ($1, $2)
		ON CONFLICT (arbiter) DO UPDATE SET doc = excluded.doc`,
		r.Arbiter, doc)
	return err
}

// AppendEvent stores e with the next sequence number and indexes its
// audience one agent per row, so that matching compares whole ids. Its
// Seq field is ignored; At keeps its instant and reads back in UTC.
//
// A sequence hands out numbers in the order transactions ask, not the
// order they commit, so two appenders could commit 11 before 10 and a
// reader that saw 11 would skip 10 for good. To keep the log append-only
// for readers, the first append of a transaction takes a transaction
// advisory lock on the event log, held until it commits or rolls back:
// appenders take their numbers and commit one at a time, and a snapshot
// always holds a prefix of the log. (CockroachDB has no advisory locks;
// there, the fallback is a one-row counter the first append updates,
// whose write lock serializes appenders the same way.)
func (w *writeTx) AppendEvent(e market.Event) (int64, error) {
	audience, err := json.Marshal(e.Audience)
	if err != nil {
		return 0, fmt.Errorf("encode event audience: %w", err)
	}
	if !w.eventLocked {
		if _, err := w.exec("lock the event log", `SELECT pg_advisory_xact_lock($1)`, w.s.eventLock); err != nil {
			return 0, err
		}
		w.eventLocked = true
	}
	var data []byte
	if e.Data != nil {
		data = []byte(e.Data)
	}
	var seq int64
	if _, err := w.scalar("append event", `INSERT INTO events (type, at, intent, subject, public, audience, data)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq`,
		[]any{e.Type, nanos(e.At), e.Intent, e.Subject, len(e.Audience) == 0, string(audience), data}, &seq); err != nil {
		return 0, err
	}
	if len(e.Audience) > 0 {
		if _, err := w.exec("append event audience", `INSERT INTO event_audience (agent, seq)
			SELECT DISTINCT a, $2::BIGINT FROM unnest($1::TEXT[]) AS a`, agentStrings(e.Audience), seq); err != nil {
			return 0, err
		}
	}
	w.maxSeq = max(w.maxSeq, seq)
	return seq, nil
}

func (w *writeTx) PutIdempotency(r market.IdempotencyRecord) error {
	_, err := w.exec("put idempotency record", `INSERT INTO idempotency (key, request_hash, status, header, body, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, status = excluded.status,
		header = excluded.header, body = excluded.body, created_at = excluded.created_at`,
		r.Key, r.RequestHash, r.Status, r.Header, r.Body, nanos(r.CreatedAt))
	return err
}

// UseNonce records the nonce until expires. A nonce whose record has
// expired by the store's clock (expires at or before now) may be used
// again: the insert takes its row over. It touches only the nonce's own
// row, so that concurrent Updates using different nonces never conflict;
// expired rows are swept in the background.
func (w *writeTx) UseNonce(agent market.AgentID, nonce string, expires time.Time) error {
	n, err := w.exec("use nonce", `INSERT INTO nonces (agent, nonce, expires) VALUES ($1, $2, $3)
		ON CONFLICT (agent, nonce) DO UPDATE SET expires = excluded.expires WHERE nonces.expires <= $4`,
		agent, nonce, nanos(expires), nanos(w.s.now()))
	if err != nil {
		return err
	}
	if n == 0 {
		return market.Errorf(market.Exist, "nonce_reused", "agent %s has already used nonce %q", agent, nonce)
	}
	return nil
}
