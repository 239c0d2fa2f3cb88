package market

import (
	"context"
	"time"
)

// Principal is who is calling. Transports authenticate it (the HTTP API
// verifies a request signature; MCP holds one agent's key) and put it in
// the context; in-process callers such as the simulator set it directly.
type Principal struct {
	Agent AgentID
	// Operator marks the market operator, who mints credits, sets mandates
	// and fees. It is never an agent's own request.
	Operator bool
}

type principalKey struct{}

// NewContext returns ctx carrying the calling principal.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// AsAgent returns ctx carrying agent id as the caller.
func AsAgent(ctx context.Context, id AgentID) context.Context {
	return NewContext(ctx, Principal{Agent: id})
}

// AsOperator returns ctx carrying the market operator as the caller.
func AsOperator(ctx context.Context) context.Context {
	return NewContext(ctx, Principal{Operator: true})
}

// PrincipalFrom returns the calling principal, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Service is the market. The engine implements it in-process; the Go SDK
// implements it over HTTP; the simulator, the CLI and the MCP server
// program against it and work with either.
//
// "The caller" is the Principal in the context. A method that needs one
// returns Unauthenticated without it. Every method may also return
// Internal (a bug or an I/O failure) and Transient (retry later).
type Service interface {
	// Register adds an agent. The registration's Proof must be the agent's
	// signature over RegistrationMessage, made within five minutes of the
	// market's clock. A new agent's wallet receives the starting grant,
	// unless its operator's agents have used up the operator's cap.
	// Anyone may call it. Registering again with the same fields returns
	// the agent unchanged.
	// Errors: Invalid (bad did, bad roles, bad or stale proof), Exist
	// (the id is registered with different fields).
	Register(ctx context.Context, r Registration) (Agent, error)

	// Agent returns a registered agent. Anyone may call it.
	// Errors: NotExist.
	Agent(ctx context.Context, id AgentID) (Agent, error)

	// Balance returns an agent's wallet. Only the agent or the operator.
	// Errors: NotExist, Permission.
	Balance(ctx context.Context, id AgentID) (Balance, error)

	// Mint issues credits from the treasury to an agent. Operator only.
	// Errors: Permission, NotExist, Invalid (amount not positive).
	Mint(ctx context.Context, id AgentID, microcredits int64) (Balance, error)

	// SetMandate sets or replaces an agent's spending mandate; a mandate
	// with no limits removes it. Operator only: nothing an agent sends can
	// widen its own mandate.
	// Errors: Permission, NotExist, Invalid.
	SetMandate(ctx context.Context, m Mandate) error

	// PostBond moves credits from the caller's wallet into its arbiter
	// bond. The caller must have the arbiter role.
	// Errors: Permission, InsufficientFunds, MandateViolated, Invalid.
	PostBond(ctx context.Context, microcredits int64) (Balance, error)

	// PublishOffer publishes the caller's offer. The caller must have the
	// seller role; the parameter schema must compile.
	// Errors: Permission, Invalid.
	PublishOffer(ctx context.Context, o Offer) (Offer, error)

	// UpdateOffer replaces the caller's offer's terms (everything but its
	// id, seller and state).
	// Errors: NotExist, Permission, Conflict (withdrawn), Invalid.
	UpdateOffer(ctx context.Context, o Offer) (Offer, error)

	// WithdrawOffer withdraws the caller's offer.
	// Errors: NotExist, Permission, Conflict (already withdrawn).
	WithdrawOffer(ctx context.Context, id string) (Offer, error)

	// Offer returns an offer. Anyone may call it.
	// Errors: NotExist.
	Offer(ctx context.Context, id string) (Offer, error)

	// AgentOffers returns an agent's active offers, by id: what its A2A
	// card lists as its skills. Anyone may call it.
	// Errors: NotExist (no such agent).
	AgentOffers(ctx context.Context, id AgentID) ([]Offer, error)

	// FindOffers returns active offers for an intent type that meet the
	// query's constraints, ranked by price, latency and reputation.
	// Anyone may call it.
	// Errors: Invalid.
	FindOffers(ctx context.Context, q OfferQuery) ([]OfferMatch, error)

	// PostIntent posts the caller's intent and routes it to eligible
	// sellers. The caller must have the buyer role. Posting the same
	// request_id again returns the first intent when the request is the
	// same.
	// Errors: Permission, Invalid, Exist (request_id reused with different
	// fields), NotExist (parent contract), Conflict (parent contract not
	// open, or its remaining budget too small).
	PostIntent(ctx context.Context, r IntentRequest) (Intent, error)

	// Intent returns an intent. Anyone may call it.
	// Errors: NotExist.
	Intent(ctx context.Context, id string) (Intent, error)

	// Intents lists intents, newest first. With Eligible set, only the open
	// intents the calling seller may bid on.
	Intents(ctx context.Context, f IntentFilter) ([]Intent, error)

	// CancelIntent cancels the caller's intent before it is awarded.
	// Errors: NotExist, Permission, Conflict.
	CancelIntent(ctx context.Context, id string) (Intent, error)

	// PlaceBid places the caller's sealed bid on an open intent. The caller
	// must be an eligible seller: an active offer for the intent type whose
	// schema accepts the parameters, a reputation lower bound that meets
	// the intent's minimum, a latency within its maximum.
	// Errors: NotExist, Permission (not eligible), Conflict (bidding
	// closed), Invalid (over budget, bad latency), Exist (already bid).
	PlaceBid(ctx context.Context, r BidRequest) (Bid, error)

	// Bids lists an intent's bids. The buyer sees them all once bidding
	// closes; a seller sees only its own; before the deadline bids are
	// sealed from everyone but their seller.
	// Errors: NotExist.
	Bids(ctx context.Context, intentID string) ([]Bid, error)

	// Bid returns a bid, to its seller, or to the buyer once bidding closes.
	// Errors: NotExist, Permission.
	Bid(ctx context.Context, id string) (Bid, error)

	// Messages returns a bid's negotiation, oldest first, to its two parties.
	// Errors: NotExist, Permission.
	Messages(ctx context.Context, bidID string) ([]Message, error)

	// Counter answers the newest message of a bid's negotiation: the buyer
	// counters the seller's terms, the seller counters or accepts the
	// buyer's. Turns alternate, starting with the buyer once bidding has
	// closed, up to the intent's round limit.
	// Errors: NotExist, Permission, Conflict (not your turn, stale
	// in_reply_to, rounds exhausted, intent not selecting), Invalid.
	Counter(ctx context.Context, r CounterRequest) (Message, error)

	// WithdrawBid withdraws the caller's active bid.
	// Errors: NotExist, Permission, Conflict.
	WithdrawBid(ctx context.Context, id string) (Bid, error)

	// Award awards an intent to a bid at the seller's current terms. In one
	// atomic step it creates the contract and holds price plus fees in
	// escrow from the buyer's wallet; if anything fails, nothing changes.
	// Only the intent's buyer, once bidding has closed.
	// Errors: NotExist, Permission, Conflict (intent not selecting, bid not
	// active), Expired (bid expired), Invalid (over budget),
	// InsufficientFunds, MandateViolated.
	Award(ctx context.Context, intentID, bidID string) (Contract, error)

	// Contract returns a contract to its parties, its arbiter and the
	// operator.
	// Errors: NotExist, Permission.
	Contract(ctx context.Context, id string) (Contract, error)

	// Contracts lists the caller's contracts (the operator's: all), newest first.
	Contracts(ctx context.Context, f ContractFilter) ([]Contract, error)

	// Deliver submits the seller's result before the delivery deadline.
	// Automatic acceptance policies settle at once: the escrow is released
	// if the check passes and refunded if it fails.
	// Errors: NotExist, Permission (not the seller), Conflict (not
	// awarded), Expired (past the deadline), TooLarge, Invalid.
	Deliver(ctx context.Context, r DeliveryRequest) (Contract, error)

	// Accept accepts a delivery awaiting the buyer's review and releases
	// the escrow. Only the buyer. A parent contract settles only after
	// all its subcontracts have.
	// Errors: NotExist, Permission, Conflict, Invalid.
	Accept(ctx context.Context, r AcceptRequest) (Contract, error)

	// Dispute rejects a delivery awaiting the buyer's review and sends it
	// to an arbiter. Only the buyer.
	// Errors: NotExist, Permission, Conflict.
	Dispute(ctx context.Context, r DisputeRequest) (Contract, error)

	// SubmitReview records the assigned arbiter's review and settles the
	// contract by its verdict: release, partial (in proportion to quality)
	// or refund. The arbiter earns its fee.
	// Errors: NotExist, Permission (not the assigned arbiter), Conflict
	// (not in review), Invalid.
	SubmitReview(ctx context.Context, r ReviewRequest) (Contract, error)

	// Receipt returns the market-signed receipt with the sequence number.
	// Anyone may call it; receipts carry no private data.
	// Errors: NotExist.
	Receipt(ctx context.Context, seq uint64) (Receipt, error)

	// MarketKey returns the public key that signs receipts.
	MarketKey(ctx context.Context) (PublicKey, error)

	// Reputation returns an agent's reputation for an intent type, or
	// across all types when intent is empty. Anyone may call it.
	// Errors: NotExist.
	Reputation(ctx context.Context, id AgentID, intent string) (Reputation, error)

	// Stats returns market data for an intent type over a sliding window
	// ending now. Anyone may call it.
	// Errors: Invalid.
	Stats(ctx context.Context, intent string, window time.Duration) (IntentStats, error)

	// Events returns the events after f.After that the caller may see,
	// oldest first. Agents see public events and their own; the operator
	// sees all. With f.Wait set it blocks until an event is available, the
	// wait passes, or ctx ends.
	Events(ctx context.Context, f EventFilter) ([]Event, error)
}

// RegistrationMessage is the byte string an agent signs to prove it holds
// its key: a fixed prefix, then the registration's fields, one per line.
func RegistrationMessage(r Registration) []byte {
	b := []byte("agentmarket/register/v1\n")
	b = append(b, r.ID...)
	b = append(b, '\n')
	b = append(b, r.Name...)
	b = append(b, '\n')
	b = append(b, r.Operator...)
	b = append(b, '\n')
	for i, role := range r.Roles {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, role...)
	}
	b = append(b, '\n')
	b = append(b, r.Timestamp.UTC().Format(time.RFC3339Nano)...)
	return b
}

// SignRegistration fills in the registration's id, timestamp and proof
// with key.
func SignRegistration(r Registration, key PrivateKey, now time.Time) Registration {
	r.ID = key.Public().DID()
	r.Timestamp = now.UTC()
	r.Proof = key.Sign(RegistrationMessage(r))
	return r
}

type requestKey struct{}

// WithRequestKey returns ctx carrying the transport's key for this logical
// request (an HTTP Idempotency-Key, scoped to the caller). The engine
// derives the ids of what the request creates from it, so that a retry of
// the request — even on another node, after the first one died — creates
// nothing twice: the same offer, bid or mint, not a second one.
func WithRequestKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, requestKey{}, key)
}

// RequestKeyFrom returns the request key in ctx, if any.
func RequestKeyFrom(ctx context.Context) (string, bool) {
	k, ok := ctx.Value(requestKey{}).(string)
	return k, ok && k != ""
}
