package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/agentmarket/agentmarket/market"
)

// querier is what a transaction reads and writes through: an Update's or
// a View's pgx transaction, or doneTx once fn has returned.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// doneTx replaces a transaction's querier when its fn returns, so that a
// tx kept past its fn fails instead of reaching a pooled connection.
type doneTx struct{}

func (doneTx) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, errTxDone
}
func (doneTx) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, errTxDone }

// readTx implements market.ReadTx.
type readTx struct {
	ctx context.Context
	q   querier
}

var _ market.ReadTx = (*readTx)(nil)

const (
	defaultLimit = 100
	maxLimit     = 1000
)

// limit applies the default and the cap of a page's limit.
func limit(n int) int {
	switch {
	case n <= 0:
		return defaultLimit
	case n > maxLimit:
		return maxLimit
	}
	return n
}

// notFound is the NotExist error for an object of a kind.
func notFound(kind string, id any) error {
	code := strings.ReplaceAll(kind, " ", "_") + "_not_found"
	return market.Errorf(market.NotExist, code, "%s %q does not exist", kind, fmt.Sprint(id))
}

// zeroNanos stands for the zero time.Time, whose UnixNano is undefined.
const zeroNanos = math.MinInt64

var (
	minNanoTime = time.Unix(0, math.MinInt64+1)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// nanos is the column form of a time: unix nanoseconds, the zero time as
// the smallest value (so a zero deadline has always passed), and times
// beyond the years 1678 to 2262 clamped. It matches the sqlite adapter's.
func nanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return zeroNanos
	case t.Before(minNanoTime):
		return math.MinInt64 + 1
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// fromNanos is the inverse of nanos, in UTC.
func fromNanos(n int64) time.Time {
	if n == zeroNanos {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// rows runs a query and calls scan for each row.
func (r *readTx) rows(what string, scan func(pgx.Rows) error, query string, args ...any) error {
	rows, err := r.q.Query(r.ctx, query, args...)
	if err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("read %s: %w", what, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

// scalar reads the single row of a query into dst; found is false when
// there is no row.
func (r *readTx) scalar(what string, query string, args []any, dst ...any) (found bool, err error) {
	err = r.rows(what, func(rows pgx.Rows) error {
		found = true
		return rows.Scan(dst...)
	}, query, args...)
	return found, err
}

// docs reads the JSON documents a query selects as its one column.
func docs[T any](r *readTx, what string, query string, args ...any) ([]T, error) {
	var out []T
	err := r.rows(what, func(rows pgx.Rows) error {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return err
		}
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		out = append(out, v)
		return nil
	}, query, args...)
	return out, err
}

// doc reads the one JSON document a query selects; found is false when
// there is none.
func doc[T any](r *readTx, what string, query string, args ...any) (v T, found bool, err error) {
	vs, err := docs[T](r, what, query, args...)
	if err != nil || len(vs) == 0 {
		return v, false, err
	}
	return vs[0], true, nil
}

// get reads one object by key, or returns a NotExist error naming kind and id.
func get[T any](r *readTx, kind string, id any, query string, args ...any) (T, error) {
	v, found, err := doc[T](r, kind+" "+fmt.Sprint(id), query, args...)
	if err == nil && !found {
		err = notFound(kind, id)
	}
	return v, err
}

func (r *readTx) Agent(id market.AgentID) (market.Agent, error) {
	return get[market.Agent](r, "agent", id, `SELECT doc FROM agents WHERE id = $1`, id)
}

func (r *readTx) Arbiters(minBond int64) ([]market.Agent, error) {
	return docs[market.Agent](r, "arbiters", `SELECT doc FROM agents WHERE arbiter AND bond >= $1 ORDER BY id`, minBond)
}

func (r *readTx) OperatorGrants(operator string) (int64, error) {
	var n int64
	_, err := r.scalar("operator grants", `SELECT microcredits FROM operator_grants WHERE operator = $1`, []any{operator}, &n)
	return n, err
}

func (r *readTx) Offer(id string) (market.Offer, error) {
	return get[market.Offer](r, "offer", id, `SELECT doc FROM offers WHERE id = $1`, id)
}

func (r *readTx) ActiveOffers(intent string) ([]market.Offer, error) {
	return docs[market.Offer](r, "active offers", `SELECT doc FROM offers WHERE intent = $1 AND state = $2 ORDER BY id`,
		intent, market.OfferActive)
}

func (r *readTx) OffersBySeller(seller market.AgentID) ([]market.Offer, error) {
	return docs[market.Offer](r, "offers by seller", `SELECT doc FROM offers WHERE seller = $1 ORDER BY id`, seller)
}

func (r *readTx) Intent(id string) (market.Intent, error) {
	return get[market.Intent](r, "intent", id, `SELECT doc FROM intents WHERE id = $1`, id)
}

func (r *readTx) IntentByRequest(buyer market.AgentID, requestID string) (market.Intent, error) {
	i, found, err := doc[market.Intent](r, "intent by request", `SELECT doc FROM intents WHERE buyer = $1 AND request_id = $2`,
		buyer, requestID)
	if err == nil && !found {
		err = market.Errorf(market.NotExist, "intent_not_found", "buyer %s has no intent with request_id %q", buyer, requestID)
	}
	return i, err
}

// where collects the conditions of a list query and numbers their
// parameters.
type where struct {
	conds []string
	args  []any
}

// arg adds a parameter and returns its placeholder.
func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

// add adds a condition; each %s in cond is replaced by the placeholder of
// the next of args.
func (w *where) add(cond string, args ...any) {
	ph := make([]any, len(args))
	for i, a := range args {
		ph[i] = w.arg(a)
	}
	w.conds = append(w.conds, fmt.Sprintf(cond, ph...))
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// cursor returns the seq of the object a page continues after. An id
// that names no object is an Invalid error rather than an empty page, so
// that a bad cursor is not mistaken for the end of the list.
func (r *readTx) cursor(table, kind, id string) (int64, error) {
	var seq int64
	found, err := r.scalar(kind+" cursor", `SELECT seq FROM `+table+` WHERE id = $1`, []any{id}, &seq)
	if err == nil && !found {
		err = market.Errorf(market.Invalid, "bad_cursor", "page cursor %q is not a known %s", id, kind)
	}
	return seq, err
}

func (r *readTx) Intents(f market.IntentFilter) ([]market.Intent, error) {
	var w where
	if f.Intent != "" {
		w.add("intent = %s", f.Intent)
	}
	if f.State != "" {
		w.add("state = %s", f.State)
	}
	if f.Buyer != "" {
		w.add("buyer = %s", f.Buyer)
	}
	if f.After != "" {
		seq, err := r.cursor("intents", "intent", f.After)
		if err != nil {
			return nil, err
		}
		w.add("seq < %s", seq)
	}
	q := `SELECT doc FROM intents` + w.String() + ` ORDER BY seq DESC LIMIT ` + w.arg(limit(f.Limit))
	return docs[market.Intent](r, "intents", q, w.args...)
}

// IntentsDue returns intents whose deadline is at or before now: bidding
// closes at the bid deadline, not after it. n takes a Page's default and
// cap.
func (r *readTx) IntentsDue(now time.Time, n int) ([]market.Intent, error) {
	return docs[market.Intent](r, "due intents",
		`SELECT doc FROM intents WHERE due IS NOT NULL AND due <= $1 ORDER BY due, seq LIMIT $2`, nanos(now), limit(n))
}

func (r *readTx) Bid(id string) (market.Bid, error) {
	return get[market.Bid](r, "bid", id, `SELECT doc FROM bids WHERE id = $1`, id)
}

func (r *readTx) Bids(intentID string) ([]market.Bid, error) {
	return docs[market.Bid](r, "bids", `SELECT doc FROM bids WHERE intent_id = $1 ORDER BY seq`, intentID)
}

func (r *readTx) Messages(bidID string) ([]market.Message, error) {
	return docs[market.Message](r, "messages", `SELECT doc FROM messages WHERE bid_id = $1 ORDER BY seq`, bidID)
}

func (r *readTx) Contract(id string) (market.Contract, error) {
	return get[market.Contract](r, "contract", id, `SELECT doc FROM contracts WHERE id = $1`, id)
}

func (r *readTx) Contracts(f market.ContractFilter) ([]market.Contract, error) {
	// An agent's contracts are found through its rows in contract_parties,
	// walked newest first along that table's key, rather than by scanning
	// every contract.
	from, seq := `contracts c`, `c.seq`
	var w where
	if f.Agent != "" {
		from, seq = `contract_parties p JOIN contracts c ON c.seq = p.seq`, `p.seq`
		w.add("p.agent = %s", f.Agent)
	}
	if f.State != "" {
		w.add("c.state = %s", f.State)
	}
	if f.Intent != "" {
		w.add("c.intent = %s", f.Intent)
	}
	if f.Parent != "" {
		w.add("c.parent = %s", f.Parent)
	}
	if f.After != "" {
		after, err := r.cursor("contracts", "contract", f.After)
		if err != nil {
			return nil, err
		}
		w.add(seq+" < %s", after)
	}
	q := `SELECT c.doc FROM ` + from + w.String() + ` ORDER BY ` + seq + ` DESC LIMIT ` + w.arg(limit(f.Limit))
	return docs[market.Contract](r, "contracts", q, w.args...)
}

// ContractsDue returns contracts whose deadline is before now: a
// delivery or a review at the deadline itself is still on time. n takes a
// Page's default and cap.
func (r *readTx) ContractsDue(now time.Time, n int) ([]market.Contract, error) {
	return docs[market.Contract](r, "due contracts",
		`SELECT doc FROM contracts WHERE due IS NOT NULL AND due < $1 ORDER BY due, seq LIMIT $2`, nanos(now), limit(n))
}

func (r *readTx) OpenContracts(seller market.AgentID, intent string) (int, error) {
	var n int
	_, err := r.scalar("open contracts",
		`SELECT COUNT(*) FROM contracts WHERE seller = $1 AND intent = $2 AND state NOT IN ($3, $4)`,
		[]any{seller, intent, market.ContractSettled, market.ContractRefunded}, &n)
	return n, err
}

func (r *readTx) Receipt(seq uint64) (market.Receipt, error) {
	if seq > math.MaxInt64 {
		return market.Receipt{}, notFound("receipt", seq)
	}
	return get[market.Receipt](r, "receipt", seq, `SELECT doc FROM receipts WHERE seq = $1`, int64(seq))
}

func (r *readTx) LastReceipt() (market.Receipt, error) {
	rc, found, err := doc[market.Receipt](r, "last receipt", `SELECT doc FROM receipts ORDER BY seq DESC LIMIT 1`)
	if err == nil && !found {
		err = market.Errorf(market.NotExist, "receipt_not_found", "there are no receipts yet")
	}
	return rc, err
}

// Score returns a zero record naming the agent and intent when there is
// none, ready to be added to and stored.
func (r *readTx) Score(agent market.AgentID, intent string) (market.ScoreRecord, error) {
	s, found, err := doc[market.ScoreRecord](r, "score", `SELECT doc FROM scores WHERE agent = $1 AND intent = $2`, agent, intent)
	if err == nil && !found {
		s = market.ScoreRecord{Agent: agent, Intent: intent}
	}
	return s, err
}

// Pair returns a zero record naming the pair and intent when they never
// traded.
func (r *readTx) Pair(buyer, seller market.AgentID, intent string) (market.PairRecord, error) {
	p, found, err := doc[market.PairRecord](r, "pair",
		`SELECT doc FROM pairs WHERE buyer = $1 AND seller = $2 AND intent = $3`, buyer, seller, intent)
	if err == nil && !found {
		p = market.PairRecord{Buyer: buyer, Seller: seller, Intent: intent}
	}
	return p, err
}

// PairsBetween returns the pair's records ordered by intent type.
func (r *readTx) PairsBetween(buyer, seller market.AgentID) ([]market.PairRecord, error) {
	return docs[market.PairRecord](r, "pairs", `SELECT doc FROM pairs WHERE buyer = $1 AND seller = $2 ORDER BY intent`,
		buyer, seller)
}

// PaidBy returns, ordered by id, the sellers of the buyer's contracts
// whose outcome paid them something. Only a settlement pays a seller, so
// paid > 0 implies the contract settled.
func (r *readTx) PaidBy(buyer market.AgentID) ([]market.AgentID, error) {
	var out []market.AgentID
	err := r.rows("sellers paid", func(rows pgx.Rows) error {
		var id market.AgentID
		if err := rows.Scan(&id); err != nil {
			return err
		}
		out = append(out, id)
		return nil
	}, `SELECT DISTINCT seller FROM contracts WHERE buyer = $1 AND paid > 0 ORDER BY seller`, buyer)
	return out, err
}

// ArbiterRecord returns a zero record naming the arbiter when there is
// none.
func (r *readTx) ArbiterRecord(arbiter market.AgentID) (market.ArbiterRecord, error) {
	a, found, err := doc[market.ArbiterRecord](r, "arbiter record", `SELECT doc FROM arbiter_records WHERE arbiter = $1`, arbiter)
	if err == nil && !found {
		a = market.ArbiterRecord{Arbiter: arbiter}
	}
	return a, err
}

// StatsSince counts, for one intent type, what happened at or after
// since, exactly as the sqlite adapter does: intents created, bids
// created, contracts awarded, active sellers now, and the fills (settled
// contracts paid in full or in part) with their mean agreed price and the
// volume paid to sellers. Window is left zero: the store does not know
// the caller's clock.
func (r *readTx) StatsSince(intent string, since time.Time) (market.IntentStats, error) {
	st := market.IntentStats{Intent: intent}
	t := nanos(since)
	if _, err := r.scalar("intent stats", `SELECT
		(SELECT COUNT(*) FROM intents WHERE intent = $1 AND created_at >= $2),
		(SELECT COUNT(*) FROM bids WHERE intent_type = $1 AND created_at >= $2),
		(SELECT COUNT(*) FROM contracts WHERE intent = $1 AND awarded_at >= $2),
		(SELECT COUNT(DISTINCT seller) FROM offers WHERE intent = $1 AND state = $3)`,
		[]any{intent, t, market.OfferActive},
		&st.Intents, &st.Bids, &st.Awards, &st.ActiveSellers); err != nil {
		return st, err
	}
	var prices int64
	if _, err := r.scalar("intent fills", `SELECT COUNT(*), COALESCE(SUM(price), 0)::BIGINT, COALESCE(SUM(paid), 0)::BIGINT
		FROM contracts WHERE intent = $1 AND settled_at >= $2 AND state = $3 AND result IN ($4, $5)`,
		[]any{intent, t, market.ContractSettled, market.ResultPaid, market.ResultPartial},
		&st.Fills, &prices, &st.VolumeMicrocredits); err != nil {
		return st, err
	}
	if st.Fills > 0 {
		st.PriceIndexMicrocredits = prices / int64(st.Fills)
	}
	return st, nil
}

func (r *readTx) Events(f market.EventFilter) ([]market.Event, error) {
	var w where
	w.add("seq > %s", f.After)
	if len(f.Types) > 0 {
		w.add("type = ANY(%s)", f.Types)
	}
	if f.Intent != "" {
		w.add("intent = %s", f.Intent)
	}
	if f.Agent != "" {
		w.add("(public OR EXISTS (SELECT 1 FROM event_audience a WHERE a.agent = %s AND a.seq = events.seq))", f.Agent)
	}
	q := `SELECT seq, type, at, intent, subject, audience, data FROM events` + w.String() +
		` ORDER BY seq LIMIT ` + w.arg(limit(f.Limit))
	var out []market.Event
	err := r.rows("events", func(rows pgx.Rows) error {
		var (
			e        market.Event
			at       int64
			audience string
			data     []byte
		)
		if err := rows.Scan(&e.Seq, &e.Type, &at, &e.Intent, &e.Subject, &audience, &data); err != nil {
			return err
		}
		e.At = fromNanos(at)
		e.Data = data
		if err := json.Unmarshal([]byte(audience), &e.Audience); err != nil {
			return fmt.Errorf("decode audience of event %d: %w", e.Seq, err)
		}
		out = append(out, e)
		return nil
	}, q, w.args...)
	return out, err
}

func (r *readTx) Idempotency(key string) (market.IdempotencyRecord, error) {
	rec := market.IdempotencyRecord{Key: key}
	var created int64
	found, err := r.scalar("idempotency record",
		`SELECT request_hash, status, header, body, created_at FROM idempotency WHERE key = $1`, []any{key},
		&rec.RequestHash, &rec.Status, &rec.Header, &rec.Body, &created)
	if err != nil {
		return market.IdempotencyRecord{}, err
	}
	if !found {
		return market.IdempotencyRecord{}, notFound("idempotency key", key)
	}
	rec.CreatedAt = fromNanos(created)
	return rec, nil
}
