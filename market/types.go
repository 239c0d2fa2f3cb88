package market

import (
	"encoding/json"
	"time"
)

// Microcredits are the market's money: 1 credit = 1,000,000 µcr. Amounts
// are integers everywhere; in JSON their field names end in _microcredits.
const Credit int64 = 1_000_000

// Role is a capability an agent registers for. An agent may hold several.
type Role string

const (
	RoleBuyer   Role = "buyer"
	RoleSeller  Role = "seller"
	RoleArbiter Role = "arbiter"
)

// Agent is a registered participant.
type Agent struct {
	ID       AgentID `json:"id"`
	Name     string  `json:"name,omitempty"`
	Operator string  `json:"operator,omitempty"` // who runs the agent; ratings between one operator's agents count for nothing
	Roles    []Role  `json:"roles"`
	// BondMicrocredits is what an arbiter has posted as its bond.
	BondMicrocredits int64 `json:"bond_microcredits"`
	// BondPosts counts the bond postings; each has a ledger transfer id
	// derived from the agent and its number, so a retry cannot post twice.
	BondPosts int `json:"bond_posts"`
	// GrantMicrocredits is the starting grant the agent received.
	GrantMicrocredits int64     `json:"grant_microcredits"`
	RegisteredAt      time.Time `json:"registered_at"`
}

// HasRole reports whether the agent registered for r.
func (a *Agent) HasRole(r Role) bool {
	for _, x := range a.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Registration is the request to register an agent. Proof is the agent's
// Ed25519 signature over RegistrationMessage, which proves it holds the
// private key of its did:key.
type Registration struct {
	ID        AgentID   `json:"id"`
	Name      string    `json:"name,omitempty"`
	Operator  string    `json:"operator,omitempty"`
	Roles     []Role    `json:"roles"`
	Timestamp time.Time `json:"timestamp"`
	Proof     []byte    `json:"proof"`
}

// Balance is an agent's wallet.
type Balance struct {
	Agent                 AgentID `json:"agent"`
	PostedMicrocredits    int64   `json:"posted_microcredits"`    // settled funds
	HeldMicrocredits      int64   `json:"held_microcredits"`      // reserved in escrow for open contracts
	IncomingMicrocredits  int64   `json:"incoming_microcredits"`  // held for this agent by others' escrow
	AvailableMicrocredits int64   `json:"available_microcredits"` // posted minus held: what may be spent now
	BondMicrocredits      int64   `json:"bond_microcredits"`      // posted as an arbiter bond
}

// Mandate limits an agent's spending. Only the market operator sets it;
// nothing an agent sends can widen it.
type Mandate struct {
	Agent                      AgentID   `json:"agent"`
	MaxPerTransferMicrocredits int64     `json:"max_per_transfer_microcredits,omitempty"`
	BudgetMicrocredits         int64     `json:"budget_microcredits,omitempty"`
	Window                     Duration  `json:"window,omitempty"`
	Counterparties             []AgentID `json:"counterparties,omitempty"`
	ExpiresAt                  time.Time `json:"expires_at,omitzero"`
}

// OfferState is an offer's lifecycle state.
type OfferState string

const (
	OfferActive    OfferState = "active"
	OfferWithdrawn OfferState = "withdrawn"
)

// Offer is a seller's advertised capability.
type Offer struct {
	ID     string  `json:"id"`
	Seller AgentID `json:"seller"`
	Intent string  `json:"intent"`
	// ParameterSchema is a JSON Schema that every intent routed to this
	// offer must satisfy.
	ParameterSchema       json.RawMessage `json:"parameter_schema,omitempty"`
	BasePriceMicrocredits int64           `json:"base_price_microcredits"`
	// UnitPriceMicrocredits is charged per unit of the numeric intent
	// parameter named by Unit (such as "word_count").
	UnitPriceMicrocredits int64      `json:"unit_price_microcredits,omitempty"`
	Unit                  string     `json:"unit,omitempty"`
	LatencyMs             int64      `json:"latency_ms"`
	Capacity              int        `json:"capacity"` // contracts it takes at once; 0 means unlimited
	Tags                  []string   `json:"tags,omitempty"`
	State                 OfferState `json:"state"`
	CreatedAt             time.Time  `json:"created_at"`
	UpdatedAt             time.Time  `json:"updated_at"`
}

// OfferQuery finds offers. Results are ranked best first.
type OfferQuery struct {
	Intent                 string          `json:"intent"`
	Parameters             json.RawMessage `json:"parameters,omitempty"` // when set, only offers whose schema accepts them
	MaxPriceMicrocredits   int64           `json:"max_price_microcredits,omitempty"`
	MaxLatencyMs           int64           `json:"max_latency_ms,omitempty"`
	MinimumReputationScore float64         `json:"minimum_reputation_score,omitempty"`
	Limit                  int             `json:"limit,omitempty"`
}

// OfferMatch is a ranked discovery result.
type OfferMatch struct {
	Offer Offer `json:"offer"`
	// PriceMicrocredits is the offer's price for the queried parameters.
	PriceMicrocredits int64      `json:"price_microcredits"`
	Reputation        Reputation `json:"reputation"`
	Score             float64    `json:"score"`
}

// IntentState is an intent's lifecycle state.
type IntentState string

const (
	IntentOpen      IntentState = "open"      // taking sealed bids until the bid deadline
	IntentSelecting IntentState = "selecting" // bids opened; the buyer negotiates and awards
	IntentAwarded   IntentState = "awarded"
	IntentCancelled IntentState = "cancelled"
	IntentExpired   IntentState = "expired" // no award by the award deadline
)

// Constraints bound what the buyer will take.
type Constraints struct {
	MaxLatencyMs           int64   `json:"max_latency_ms,omitempty"`
	MaxBudgetMicrocredits  int64   `json:"max_budget_microcredits"`
	MinimumReputationScore float64 `json:"minimum_reputation_score,omitempty"`
}

// Selection says how the winning bid is chosen.
type Selection struct {
	// Mode is "manual" (the buyer awards) or "auto" (the market awards the
	// best-scoring bid at the bid deadline).
	Mode          string  `json:"mode"`
	PriceWeight   float64 `json:"price_weight,omitempty"`
	SpeedWeight   float64 `json:"speed_weight,omitempty"`
	QualityWeight float64 `json:"quality_weight,omitempty"`
}

const (
	SelectManual = "manual"
	SelectAuto   = "auto"
)

// Acceptance policies: how a delivery is verified.
const (
	AcceptBuyer   = "buyer_review" // the buyer accepts or disputes within a window; silence accepts
	AcceptSchema  = "schema"       // the output must satisfy a JSON Schema
	AcceptDigest  = "digest"       // the output's sha256 must match
	AcceptChecker = "checker"      // a built-in deterministic checker must pass
	AcceptArbiter = "arbiter"      // an arbiter reviews every delivery
)

// Acceptance is an intent's acceptance policy.
type Acceptance struct {
	Policy   string          `json:"policy"`
	Schema   json.RawMessage `json:"schema,omitempty"`  // for "schema"
	Digest   string          `json:"digest,omitempty"`  // for "digest": "sha256:<hex>"
	Checker  string          `json:"checker,omitempty"` // for "checker": a registry name
	ReviewMs int64           `json:"review_ms,omitempty"`
}

// Intent is a buyer's request for quotes, in the seed's wire shape plus
// the market's additions.
type Intent struct {
	ID          string          `json:"id"`
	RequestID   string          `json:"request_id"`
	Buyer       AgentID         `json:"buyer"`
	Intent      string          `json:"intent"`
	Parameters  json.RawMessage `json:"parameters"`
	Constraints Constraints     `json:"constraints"`

	BidDeadline    time.Time  `json:"bid_deadline"`
	AwardDeadline  time.Time  `json:"award_deadline"`
	Selection      Selection  `json:"selection"`
	MaxRounds      int        `json:"max_rounds"`
	Acceptance     Acceptance `json:"acceptance"`
	ParentContract string     `json:"parent_contract,omitempty"`

	State     IntentState `json:"state"`
	Contract  string      `json:"contract,omitempty"` // the awarded contract
	CreatedAt time.Time   `json:"created_at"`
	// EligibleSellers is how many sellers the intent was routed to.
	EligibleSellers int `json:"eligible_sellers"`
}

// IntentRequest posts an intent. Zero fields take the market's defaults.
type IntentRequest struct {
	RequestID      string          `json:"request_id"`
	Intent         string          `json:"intent"`
	Parameters     json.RawMessage `json:"parameters"`
	Constraints    Constraints     `json:"constraints"`
	BidWindowMs    int64           `json:"bid_window_ms,omitempty"`
	AwardWindowMs  int64           `json:"award_window_ms,omitempty"`
	Selection      Selection       `json:"selection,omitzero"`
	MaxRounds      int             `json:"max_rounds,omitempty"`
	Acceptance     Acceptance      `json:"acceptance,omitzero"`
	ParentContract string          `json:"parent_contract,omitempty"`
}

// BidState is a bid's lifecycle state.
type BidState string

const (
	BidActive    BidState = "active"
	BidWithdrawn BidState = "withdrawn"
	BidExpired   BidState = "expired"
	BidWon       BidState = "won"
	BidLost      BidState = "lost"
)

// Bid is a seller's sealed quote for an intent. Its price and latency are
// the seller's current terms: a seller's counter-offer changes them.
type Bid struct {
	ID                string    `json:"id"`
	Intent            string    `json:"intent"` // the intent's id
	Seller            AgentID   `json:"seller"`
	Offer             string    `json:"offer,omitempty"`
	PriceMicrocredits int64     `json:"price_microcredits"`
	LatencyMs         int64     `json:"latency_ms"`
	ExpiresAt         time.Time `json:"expires_at"`
	Note              string    `json:"note,omitempty"` // free text, stored verbatim, never interpreted
	State             BidState  `json:"state"`
	Rounds            int       `json:"rounds"`       // counter-offers exchanged
	LastMessage       string    `json:"last_message"` // the newest message in the negotiation
	// BuyerOffer is the buyer's latest counter price not yet answered; 0 when none.
	BuyerOfferMicrocredits int64     `json:"buyer_offer_microcredits,omitempty"`
	CreatedAt              time.Time `json:"created_at"`
}

// BidRequest places a bid.
type BidRequest struct {
	Intent            string `json:"intent"`
	Offer             string `json:"offer,omitempty"`
	PriceMicrocredits int64  `json:"price_microcredits"`
	LatencyMs         int64  `json:"latency_ms"`
	ValidForMs        int64  `json:"valid_for_ms,omitempty"`
	Note              string `json:"note,omitempty"`
}

// Message is one step of a negotiation. It names the message it answers:
// the bid itself, or the previous counter.
type Message struct {
	ID                string    `json:"id"`
	Bid               string    `json:"bid"`
	From              AgentID   `json:"from"`
	InReplyTo         string    `json:"in_reply_to"`
	PriceMicrocredits int64     `json:"price_microcredits"`
	LatencyMs         int64     `json:"latency_ms"`
	Accept            bool      `json:"accept,omitempty"` // the seller accepts the buyer's counter
	Note              string    `json:"note,omitempty"`
	Round             int       `json:"round"`
	CreatedAt         time.Time `json:"created_at"`
}

// CounterRequest answers the newest message of a bid's negotiation.
type CounterRequest struct {
	Bid               string `json:"bid"`
	InReplyTo         string `json:"in_reply_to"`
	PriceMicrocredits int64  `json:"price_microcredits"`
	LatencyMs         int64  `json:"latency_ms,omitempty"`
	Accept            bool   `json:"accept,omitempty"`
	Note              string `json:"note,omitempty"`
}

// ContractState is a contract's lifecycle state; see docs/protocol.md.
type ContractState string

const (
	ContractAwarded   ContractState = "awarded"   // escrow held; awaiting delivery
	ContractDelivered ContractState = "delivered" // awaiting the buyer's review
	ContractInReview  ContractState = "in_review" // an arbiter is reviewing
	ContractSettled   ContractState = "settled"   // paid in full or in part; final
	ContractRefunded  ContractState = "refunded"  // escrow returned to the buyer; final
)

// Terminal reports whether no transition leaves s.
func (s ContractState) Terminal() bool { return s == ContractSettled || s == ContractRefunded }

// Contract is an awarded bid with its escrow.
type Contract struct {
	ID       string  `json:"id"`
	IntentID string  `json:"intent_id"`
	Intent   string  `json:"intent"` // the intent type
	Bid      string  `json:"bid"`
	Buyer    AgentID `json:"buyer"`
	Seller   AgentID `json:"seller"`

	PriceMicrocredits      int64 `json:"price_microcredits"`
	FeeMicrocredits        int64 `json:"fee_microcredits"`         // the market's fee on the full price
	ArbiterFeeMicrocredits int64 `json:"arbiter_fee_microcredits"` // reserved for an arbiter, paid only if one reviews
	HoldMicrocredits       int64 `json:"hold_microcredits"`        // price + fee + arbiter fee, held in escrow at award

	Acceptance     Acceptance    `json:"acceptance"`
	ParentContract string        `json:"parent_contract,omitempty"`
	State          ContractState `json:"state"`
	AwardedAt      time.Time     `json:"awarded_at"`
	DeliverBy      time.Time     `json:"deliver_by"`
	ReviewBy       time.Time     `json:"review_by,omitzero"` // the buyer's window, or the arbiter's deadline
	Delivery       *Delivery     `json:"delivery,omitempty"`
	Dispute        *Dispute      `json:"dispute,omitempty"`
	// Arbiters are the arbiters assigned to review the delivery now; a
	// cross-check assigns two. Reviews holds the reviews received.
	Arbiters []AgentID `json:"arbiters,omitempty"`
	Reviews  []Review  `json:"reviews,omitempty"`
	// Assignments counts arbiter assignments, reassignments included.
	Assignments int `json:"assignments,omitempty"`
	// Audit marks a review the market sampled on its own account: the
	// market, not the buyer, pays the arbiter.
	Audit bool `json:"audit,omitempty"`
	// GoldQuality is the known answer of a gold task (an arbiter-reviewed
	// intent that also names a checker). Only the buyer and the operator
	// see it; it measures the arbiters.
	GoldQuality *float64 `json:"gold_quality,omitempty"`
	Outcome     *Outcome `json:"outcome,omitempty"`
	// Children are the subcontracts this contract's seller awarded under it.
	Children []string `json:"children,omitempty"`
	// ChildBudgetMicrocredits is what the children hold of this contract's price.
	ChildBudgetMicrocredits int64 `json:"child_budget_microcredits,omitempty"`
}

// Delivery is the seller's result: inline JSON, or a digest and a URI.
type Delivery struct {
	Output      json.RawMessage `json:"output,omitempty"`
	Digest      string          `json:"digest,omitempty"` // "sha256:<hex>" of the output or of the content at URI
	URI         string          `json:"uri,omitempty"`
	DeliveredAt time.Time       `json:"delivered_at"`
	Check       *CheckResult    `json:"check,omitempty"`
}

// DeliveryRequest delivers a contract's result.
type DeliveryRequest struct {
	Contract string          `json:"contract"`
	Output   json.RawMessage `json:"output,omitempty"`
	Digest   string          `json:"digest,omitempty"`
	URI      string          `json:"uri,omitempty"`
}

// CheckResult is an automatic verification's verdict.
type CheckResult struct {
	Policy string `json:"policy"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail,omitempty"`
}

// Dispute is a buyer's rejection of a delivery.
type Dispute struct {
	Reason   string    `json:"reason"` // free text, stored verbatim, never interpreted
	OpenedAt time.Time `json:"opened_at"`
}

// Verdicts an arbiter can return.
const (
	VerdictRelease = "release" // pay the seller in full
	VerdictPartial = "partial" // pay in proportion to quality; refund the rest
	VerdictRefund  = "refund"  // return the escrow to the buyer
)

// Review is an arbiter's judgement of a delivery.
type Review struct {
	Arbiter    AgentID   `json:"arbiter"`
	Quality    float64   `json:"quality"` // 0 to 1
	Verdict    string    `json:"verdict"`
	Note       string    `json:"note,omitempty"`
	ReviewedAt time.Time `json:"reviewed_at"`
}

// ReviewRequest submits an arbiter's review.
type ReviewRequest struct {
	Contract string  `json:"contract"`
	Quality  float64 `json:"quality"`
	Verdict  string  `json:"verdict"`
	Note     string  `json:"note,omitempty"`
}

// Outcome is how a contract settled.
type Outcome struct {
	Result                 string    `json:"result"` // "paid", "partial" or "refunded"
	PaidMicrocredits       int64     `json:"paid_microcredits"`
	RefundedMicrocredits   int64     `json:"refunded_microcredits"`
	FeeMicrocredits        int64     `json:"fee_microcredits"`
	ArbiterFeeMicrocredits int64     `json:"arbiter_fee_microcredits"`
	Quality                float64   `json:"quality"`
	Reason                 string    `json:"reason"` // machine-readable: accepted, review_window_elapsed, check_failed, late_delivery, ...
	SettledAt              time.Time `json:"settled_at"`
	Receipt                uint64    `json:"receipt"` // the receipt's sequence number
}

// Outcome results.
const (
	ResultPaid     = "paid"
	ResultPartial  = "partial"
	ResultRefunded = "refunded"
)

// AcceptRequest accepts a delivery. Quality, from 0 to 1, is the buyer's
// rating; 0 means unrated, taken as 1.
type AcceptRequest struct {
	Contract string  `json:"contract"`
	Quality  float64 `json:"quality,omitempty"`
}

// DisputeRequest rejects a delivery and sends it to an arbiter.
type DisputeRequest struct {
	Contract string `json:"contract"`
	Reason   string `json:"reason"`
}

// Reputation is what settled, escrow-backed outcomes say of an agent.
type Reputation struct {
	Agent  AgentID `json:"agent"`
	Intent string  `json:"intent,omitempty"` // empty: across all intents
	// Score is the weighted mean quality of the agent's settled work.
	Score float64 `json:"score"`
	// LowerBound is a conservative bound on Score given how little evidence
	// there is; minimum_reputation_score is compared with it.
	LowerBound float64 `json:"lower_bound"`
	// Evidence is the total weight of the outcomes behind the score.
	Evidence  float64 `json:"evidence"`
	Contracts int     `json:"contracts"`
	// BuyerScore rates the agent as a buyer: it falls when the agent
	// disputes work that arbiters pass.
	BuyerScore   float64 `json:"buyer_score"`
	DisputesLost int     `json:"disputes_lost"`
}

// IntentStats are market data for one intent type over a sliding window.
type IntentStats struct {
	Intent string   `json:"intent"`
	Window Duration `json:"window"`
	// PriceIndexMicrocredits is the volume-weighted average price of the
	// contracts settled in the window; 0 when none settled.
	PriceIndexMicrocredits int64 `json:"price_index_microcredits"`
	Intents                int   `json:"intents"`
	Bids                   int   `json:"bids"`
	Awards                 int   `json:"awards"`
	Fills                  int   `json:"fills"` // contracts settled with payment
	ActiveSellers          int   `json:"active_sellers"`
	VolumeMicrocredits     int64 `json:"volume_microcredits"`
}

// Event is an entry in the market's event stream. Seq orders events and is
// what a consumer resumes from.
type Event struct {
	Seq      int64           `json:"seq"`
	Type     string          `json:"type"`
	At       time.Time       `json:"at"`
	Intent   string          `json:"intent,omitempty"` // the intent type, for topic filters
	Subject  string          `json:"subject"`          // the id of the intent, bid or contract
	Audience []AgentID       `json:"audience,omitempty"`
	Data     json.RawMessage `json:"data"`
}

// Event types.
const (
	EventAgentRegistered   = "agent.registered"
	EventOfferPublished    = "offer.published"
	EventOfferWithdrawn    = "offer.withdrawn"
	EventIntentPosted      = "intent.posted"
	EventIntentClosed      = "intent.closed"
	EventIntentCancelled   = "intent.cancelled"
	EventIntentExpired     = "intent.expired"
	EventBidPlaced         = "bid.placed"
	EventBidCountered      = "bid.countered"
	EventBidWithdrawn      = "bid.withdrawn"
	EventContractAwarded   = "contract.awarded"
	EventContractDelivered = "contract.delivered"
	EventContractDisputed  = "contract.disputed"
	EventReviewAssigned    = "review.assigned"
	EventContractSettled   = "contract.settled"
	EventContractRefunded  = "contract.refunded"
)

// EventFilter selects events. Empty fields match everything.
type EventFilter struct {
	After  int64    `json:"after"`
	Types  []string `json:"types,omitempty"`
	Intent string   `json:"intent,omitempty"`
	// Agent restricts to events addressed to the agent or public ones.
	Agent AgentID `json:"agent,omitempty"`
	Limit int     `json:"limit,omitempty"`
	// Wait, when positive, blocks up to that long for a first event.
	Wait Duration `json:"wait,omitempty"`
}

// Page selects a slice of a list: items after the cursor, at most Limit.
type Page struct {
	After string `json:"after,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// IntentFilter selects intents.
type IntentFilter struct {
	Intent string      `json:"intent,omitempty"`
	State  IntentState `json:"state,omitempty"`
	Buyer  AgentID     `json:"buyer,omitempty"`
	// Eligible lists only intents the calling seller may bid on.
	Eligible bool `json:"eligible,omitempty"`
	Page
}

// ContractFilter selects contracts.
type ContractFilter struct {
	Agent  AgentID       `json:"agent,omitempty"` // as buyer, seller or arbiter
	State  ContractState `json:"state,omitempty"`
	Intent string        `json:"intent,omitempty"`
	Parent string        `json:"parent,omitempty"`
	Page
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("90s") and also reads integer milliseconds.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var ms int64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*d = Duration(time.Duration(ms) * time.Millisecond)
	return nil
}
