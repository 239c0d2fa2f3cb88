package market

import (
	"context"
	"time"
)

// Store persists the market's state: agents, offers, intents, bids,
// negotiation messages, contracts, receipts, reputation, events, and the
// transport's idempotency keys and nonces. Money is not here: it lives in
// the ledger. The sqlite and postgres packages implement Store, and one
// conformance suite (storetest) runs against both.
type Store interface {
	// Update runs fn in a read-write transaction and commits it durably
	// before returning nil. If fn returns an error, none of its writes
	// happen and Update returns that error. Implementations may batch
	// concurrent Updates into one commit (group commit) and may run fn
	// more than once to resolve a conflict, so fn must have no effects
	// outside tx.
	Update(ctx context.Context, fn func(tx Tx) error) error

	// View runs fn against a consistent read-only snapshot of committed
	// state.
	View(ctx context.Context, fn func(tx ReadTx) error) error

	// WaitEvents blocks until an event with a sequence number above after
	// is committed, or ctx ends. It returns immediately if one exists.
	WaitEvents(ctx context.Context, after int64) error

	// Close releases the store.
	Close() error
}

// ReadTx reads market state. Single-object getters return a NotExist
// *Error when the object is absent. Lists return objects in the order
// each method states; a Page's After is the id to continue from, and its
// Limit defaults to 100 and is capped at 1000.
type ReadTx interface {
	Agent(id AgentID) (Agent, error)
	// Arbiters returns the agents with the arbiter role and at least
	// minBond posted, ordered by id.
	Arbiters(minBond int64) ([]Agent, error)
	// OperatorGrants returns the starting grant given so far to agents
	// that declared operator.
	OperatorGrants(operator string) (int64, error)

	Offer(id string) (Offer, error)
	// ActiveOffers returns the active offers for an intent type, by id.
	ActiveOffers(intent string) ([]Offer, error)
	// OffersBySeller returns the seller's offers, by id.
	OffersBySeller(seller AgentID) ([]Offer, error)

	Intent(id string) (Intent, error)
	// IntentByRequest finds a buyer's intent by its request_id.
	IntentByRequest(buyer AgentID, requestID string) (Intent, error)
	// Intents lists intents matching the filter (Eligible is ignored),
	// newest first.
	Intents(f IntentFilter) ([]Intent, error)
	// IntentsDue returns up to limit intents whose next deadline has
	// passed at now: open intents past their bid deadline, selecting
	// intents past their award deadline. Oldest deadline first.
	IntentsDue(now time.Time, limit int) ([]Intent, error)

	Bid(id string) (Bid, error)
	// Bids returns an intent's bids, oldest first.
	Bids(intentID string) ([]Bid, error)
	// Messages returns a bid's negotiation messages, oldest first.
	Messages(bidID string) ([]Message, error)

	Contract(id string) (Contract, error)
	// Contracts lists contracts matching the filter, newest first.
	Contracts(f ContractFilter) ([]Contract, error)
	// ContractsDue returns up to limit non-terminal contracts whose
	// deadline (DeliverBy while awarded, ReviewBy while delivered or in
	// review) has passed at now, oldest deadline first.
	ContractsDue(now time.Time, limit int) ([]Contract, error)
	// OpenContracts counts the seller's non-terminal contracts for an
	// intent type.
	OpenContracts(seller AgentID, intent string) (int, error)

	// Receipt returns the receipt with the sequence number.
	Receipt(seq uint64) (Receipt, error)
	// LastReceipt returns the newest receipt, or a NotExist error when
	// there is none.
	LastReceipt() (Receipt, error)

	// Score returns the reputation aggregate for an agent and intent type
	// ("" for all types); a zero aggregate when there is none.
	Score(agent AgentID, intent string) (ScoreRecord, error)
	// Pair returns the trade record of a buyer and a seller for an intent
	// type; a zero record when they never traded.
	Pair(buyer, seller AgentID, intent string) (PairRecord, error)
	// PairsBetween returns every intent type's record for a buyer and seller.
	PairsBetween(buyer, seller AgentID) ([]PairRecord, error)
	// PaidBy returns the sellers that buyer has paid at least once: those
	// of its pair records with Paid above zero.
	PaidBy(buyer AgentID) ([]AgentID, error)
	// ArbiterRecord returns an arbiter's accuracy record; zero when none.
	ArbiterRecord(arbiter AgentID) (ArbiterRecord, error)

	// StatsSince aggregates an intent type's activity since a time.
	StatsSince(intent string, since time.Time) (IntentStats, error)

	// Events returns up to f.Limit events after f.After matching the
	// filter, oldest first. An event matches f.Agent when its audience is
	// empty (public) or includes the agent.
	Events(f EventFilter) ([]Event, error)

	// Idempotency returns the stored response for a transport idempotency
	// key, or a NotExist error.
	Idempotency(key string) (IdempotencyRecord, error)
}

// Tx reads and writes market state within a transaction.
type Tx interface {
	ReadTx
	PutAgent(a Agent) error
	// AddOperatorGrant records a starting grant given to an operator's agent.
	AddOperatorGrant(operator string, microcredits int64) error
	PutOffer(o Offer) error
	// PutIntent stores an intent; a buyer's request_id must stay unique.
	PutIntent(i Intent) error
	PutBid(b Bid) error
	PutMessage(m Message) error
	PutContract(c Contract) error
	// PutReceipt stores a receipt; its Seq must be the next in sequence.
	PutReceipt(r Receipt) error
	PutScore(s ScoreRecord) error
	PutPair(p PairRecord) error
	PutArbiterRecord(r ArbiterRecord) error
	// AppendEvent stores an event, assigns its sequence number and At is
	// kept as given. Subscribers are woken after the commit.
	AppendEvent(e Event) (int64, error)
	// PutIdempotency stores a transport response under its key.
	PutIdempotency(r IdempotencyRecord) error
	// UseNonce records a request nonce of an agent until expires; it
	// returns an Exist error if the nonce was used before. Expired nonces
	// may be forgotten.
	UseNonce(agent AgentID, nonce string, expires time.Time) error
}

// ReceiptSigningTx is a Tx that can sign a receipt off the goroutine
// that runs its store's transactions. A store that runs them one at a
// time implements it so that the signature, the costliest step of a
// settlement, does not hold up the transactions behind it.
type ReceiptSigningTx interface {
	Tx
	// PutReceiptSigning stores r, whose Signature is empty, as PutReceipt
	// does, and sets its Signature to what sign returns. The store calls
	// sign at most once, after the transaction's function returns and
	// before the receipt is durable or a View can read it; transactions
	// that run before then may read it unsigned. If the transaction
	// fails, sign may not be called.
	PutReceiptSigning(r Receipt, sign func() string) error
}

// ScoreRecord is an agent's reputation aggregate for one intent type, or
// all of them when Intent is empty. Good and Bad are time-decayed sums of
// outcome weight times quality and times one minus quality, as of
// UpdatedAt.
type ScoreRecord struct {
	Agent        AgentID   `json:"agent"`
	Intent       string    `json:"intent"`
	Good         float64   `json:"good"`
	Bad          float64   `json:"bad"`
	Contracts    int       `json:"contracts"`
	BuyerGood    float64   `json:"buyer_good"`
	BuyerBad     float64   `json:"buyer_bad"`
	DisputesLost int       `json:"disputes_lost"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// PairRecord is the trade history of one buyer and one seller for an
// intent type: what the buyer's outcomes contributed to the seller's
// score, so that the contribution can be withdrawn if the pair turns out
// to be part of a wash-trading cycle.
type PairRecord struct {
	Buyer  AgentID `json:"buyer"`
	Seller AgentID `json:"seller"`
	Intent string  `json:"intent"`
	Trades int     `json:"trades"`
	Paid   int     `json:"paid"` // trades in which the buyer paid the seller
	// Good and Bad are this pair's decayed contribution to the seller's
	// score, as of UpdatedAt.
	Good      float64   `json:"good"`
	Bad       float64   `json:"bad"`
	Circular  bool      `json:"circular"` // part of a payment cycle: contributes nothing
	UpdatedAt time.Time `json:"updated_at"`
}

// ArbiterRecord tracks an arbiter's accuracy: how far its quality scores
// fell from the consensus of other arbiters and from gold answers.
type ArbiterRecord struct {
	Arbiter  AgentID `json:"arbiter"`
	Reviews  int     `json:"reviews"`
	Compared int     `json:"compared"` // reviews with a second opinion or a gold answer
	// AbsError is the sum of absolute differences from the reference.
	AbsError float64 `json:"abs_error"`
	// Missed counts assignments whose deadline passed without a review.
	Missed int `json:"missed"`
}

// Unresponsive reports whether the arbiter mostly misses its deadlines:
// three misses and more misses than reviews. Such an arbiter is no longer
// assigned, so that a dispute is not left to arbiters who never answer.
func (r ArbiterRecord) Unresponsive() bool { return r.Missed >= 3 && r.Missed > r.Reviews }

// Accuracy is one minus the mean absolute error, or 1 with no comparisons.
func (r ArbiterRecord) Accuracy() float64 {
	if r.Compared == 0 {
		return 1
	}
	return 1 - r.AbsError/float64(r.Compared)
}

// IdempotencyRecord is a transport response stored under an idempotency key.
type IdempotencyRecord struct {
	Key         string    `json:"key"`
	RequestHash string    `json:"request_hash"`
	Status      int       `json:"status"`
	Header      []byte    `json:"header,omitempty"` // the response's content type and the like, JSON-encoded
	Body        []byte    `json:"body"`
	CreatedAt   time.Time `json:"created_at"`
}
