package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// The methods below implement market.Service; its documentation says who
// may call each and which error kinds it returns. Over HTTP every method
// may also return Transient (the market is unreachable or busy after the
// client's retries) and Unauthenticated (a signature the server refused).

type amountRequest struct {
	AmountMicrocredits int64 `json:"amount_microcredits"`
}

type awardRequest struct {
	Bid string `json:"bid"`
}

type marketKeyResponse struct {
	Key market.PublicKey `json:"key"`
}

func seg(s string) string { return url.PathEscape(s) }

// fetch performs a call whose response body decodes into a T.
func fetch[T any](ctx context.Context, c *Client, k call) (T, error) {
	var v T
	k.out = &v
	err := c.do(ctx, k)
	return v, err
}

// Register registers an agent. The registration must carry its proof;
// market.SignRegistration makes one.
func (c *Client) Register(ctx context.Context, r market.Registration) (market.Agent, error) {
	return fetch[market.Agent](ctx, c, call{op: "register", method: http.MethodPost, path: "/v1/agents", body: r})
}

// Agent is market.Service.Agent over GET /v1/agents/{id}.
func (c *Client) Agent(ctx context.Context, id market.AgentID) (market.Agent, error) {
	return fetch[market.Agent](ctx, c, call{op: "agent", method: http.MethodGet, path: "/v1/agents/" + seg(string(id))})
}

// AgentOffers is market.Service.AgentOffers over GET /v1/agents/{id}/offers.
func (c *Client) AgentOffers(ctx context.Context, id market.AgentID) ([]market.Offer, error) {
	return fetch[[]market.Offer](ctx, c, call{op: "agent_offers", method: http.MethodGet, path: "/v1/agents/" + seg(string(id)) + "/offers"})
}

// Balance is market.Service.Balance over GET /v1/agents/{id}/balance.
func (c *Client) Balance(ctx context.Context, id market.AgentID) (market.Balance, error) {
	return fetch[market.Balance](ctx, c, call{op: "balance", method: http.MethodGet, path: "/v1/agents/" + seg(string(id)) + "/balance"})
}

// Mint is market.Service.Mint over POST /v1/agents/{id}/mint.
func (c *Client) Mint(ctx context.Context, id market.AgentID, microcredits int64) (market.Balance, error) {
	return fetch[market.Balance](ctx, c, call{op: "mint", method: http.MethodPost, path: "/v1/agents/" + seg(string(id)) + "/mint",
		body: amountRequest{AmountMicrocredits: microcredits}})
}

// SetMandate is market.Service.SetMandate over PUT /v1/agents/{id}/mandate.
func (c *Client) SetMandate(ctx context.Context, m market.Mandate) error {
	return c.do(ctx, call{op: "set_mandate", method: http.MethodPut, path: "/v1/agents/" + seg(string(m.Agent)) + "/mandate", body: m})
}

// PostBond is market.Service.PostBond over POST /v1/bonds.
func (c *Client) PostBond(ctx context.Context, microcredits int64) (market.Balance, error) {
	return fetch[market.Balance](ctx, c, call{op: "post_bond", method: http.MethodPost, path: "/v1/bonds",
		body: amountRequest{AmountMicrocredits: microcredits}})
}

// PublishOffer is market.Service.PublishOffer over POST /v1/offers.
func (c *Client) PublishOffer(ctx context.Context, o market.Offer) (market.Offer, error) {
	return fetch[market.Offer](ctx, c, call{op: "publish_offer", method: http.MethodPost, path: "/v1/offers", body: o})
}

// UpdateOffer is market.Service.UpdateOffer over PUT /v1/offers/{id}.
func (c *Client) UpdateOffer(ctx context.Context, o market.Offer) (market.Offer, error) {
	return fetch[market.Offer](ctx, c, call{op: "update_offer", method: http.MethodPut, path: "/v1/offers/" + seg(o.ID), body: o})
}

// WithdrawOffer is market.Service.WithdrawOffer over POST /v1/offers/{id}/withdraw.
func (c *Client) WithdrawOffer(ctx context.Context, id string) (market.Offer, error) {
	return fetch[market.Offer](ctx, c, call{op: "withdraw_offer", method: http.MethodPost, path: "/v1/offers/" + seg(id) + "/withdraw"})
}

// Offer is market.Service.Offer over GET /v1/offers/{id}.
func (c *Client) Offer(ctx context.Context, id string) (market.Offer, error) {
	return fetch[market.Offer](ctx, c, call{op: "offer", method: http.MethodGet, path: "/v1/offers/" + seg(id)})
}

// FindOffers is market.Service.FindOffers over GET /v1/offers.
func (c *Client) FindOffers(ctx context.Context, q market.OfferQuery) ([]market.OfferMatch, error) {
	v := url.Values{}
	set(v, "intent", q.Intent)
	set(v, "parameters", string(q.Parameters))
	setInt(v, "max_price_microcredits", q.MaxPriceMicrocredits)
	setInt(v, "max_latency_ms", q.MaxLatencyMs)
	if q.MinimumReputationScore != 0 {
		v.Set("minimum_reputation_score", strconv.FormatFloat(q.MinimumReputationScore, 'g', -1, 64))
	}
	setInt(v, "limit", int64(q.Limit))
	return fetch[[]market.OfferMatch](ctx, c, call{op: "find_offers", method: http.MethodGet, path: "/v1/offers", query: v})
}

// PostIntent is market.Service.PostIntent over POST /v1/intents.
func (c *Client) PostIntent(ctx context.Context, r market.IntentRequest) (market.Intent, error) {
	return fetch[market.Intent](ctx, c, call{op: "post_intent", method: http.MethodPost, path: "/v1/intents", body: r})
}

// Intent is market.Service.Intent over GET /v1/intents/{id}.
func (c *Client) Intent(ctx context.Context, id string) (market.Intent, error) {
	return fetch[market.Intent](ctx, c, call{op: "intent", method: http.MethodGet, path: "/v1/intents/" + seg(id)})
}

// Intents is market.Service.Intents over GET /v1/intents.
func (c *Client) Intents(ctx context.Context, f market.IntentFilter) ([]market.Intent, error) {
	v := url.Values{}
	set(v, "intent", f.Intent)
	set(v, "state", string(f.State))
	set(v, "buyer", string(f.Buyer))
	if f.Eligible {
		v.Set("eligible", "true")
	}
	set(v, "after", f.After)
	setInt(v, "limit", int64(f.Limit))
	return fetch[[]market.Intent](ctx, c, call{op: "intents", method: http.MethodGet, path: "/v1/intents", query: v})
}

// CancelIntent is market.Service.CancelIntent over POST /v1/intents/{id}/cancel.
func (c *Client) CancelIntent(ctx context.Context, id string) (market.Intent, error) {
	return fetch[market.Intent](ctx, c, call{op: "cancel_intent", method: http.MethodPost, path: "/v1/intents/" + seg(id) + "/cancel"})
}

// PlaceBid is market.Service.PlaceBid over POST /v1/intents/{id}/bids.
func (c *Client) PlaceBid(ctx context.Context, r market.BidRequest) (market.Bid, error) {
	return fetch[market.Bid](ctx, c, call{op: "place_bid", method: http.MethodPost, path: "/v1/intents/" + seg(r.Intent) + "/bids", body: r})
}

// Bids is market.Service.Bids over GET /v1/intents/{id}/bids.
func (c *Client) Bids(ctx context.Context, intentID string) ([]market.Bid, error) {
	return fetch[[]market.Bid](ctx, c, call{op: "bids", method: http.MethodGet, path: "/v1/intents/" + seg(intentID) + "/bids"})
}

// Bid is market.Service.Bid over GET /v1/bids/{id}.
func (c *Client) Bid(ctx context.Context, id string) (market.Bid, error) {
	return fetch[market.Bid](ctx, c, call{op: "bid", method: http.MethodGet, path: "/v1/bids/" + seg(id)})
}

// Messages is market.Service.Messages over GET /v1/bids/{id}/messages.
func (c *Client) Messages(ctx context.Context, bidID string) ([]market.Message, error) {
	return fetch[[]market.Message](ctx, c, call{op: "messages", method: http.MethodGet, path: "/v1/bids/" + seg(bidID) + "/messages"})
}

// Counter is market.Service.Counter over POST /v1/bids/{id}/messages.
func (c *Client) Counter(ctx context.Context, r market.CounterRequest) (market.Message, error) {
	return fetch[market.Message](ctx, c, call{op: "counter", method: http.MethodPost, path: "/v1/bids/" + seg(r.Bid) + "/messages", body: r})
}

// WithdrawBid is market.Service.WithdrawBid over POST /v1/bids/{id}/withdraw.
func (c *Client) WithdrawBid(ctx context.Context, id string) (market.Bid, error) {
	return fetch[market.Bid](ctx, c, call{op: "withdraw_bid", method: http.MethodPost, path: "/v1/bids/" + seg(id) + "/withdraw"})
}

// Award is market.Service.Award over POST /v1/intents/{id}/award.
func (c *Client) Award(ctx context.Context, intentID, bidID string) (market.Contract, error) {
	return fetch[market.Contract](ctx, c, call{op: "award", method: http.MethodPost, path: "/v1/intents/" + seg(intentID) + "/award",
		body: awardRequest{Bid: bidID}})
}

// Contract is market.Service.Contract over GET /v1/contracts/{id}.
func (c *Client) Contract(ctx context.Context, id string) (market.Contract, error) {
	return fetch[market.Contract](ctx, c, call{op: "contract", method: http.MethodGet, path: "/v1/contracts/" + seg(id)})
}

// Contracts is market.Service.Contracts over GET /v1/contracts.
func (c *Client) Contracts(ctx context.Context, f market.ContractFilter) ([]market.Contract, error) {
	v := url.Values{}
	set(v, "agent", string(f.Agent))
	set(v, "state", string(f.State))
	set(v, "intent", f.Intent)
	set(v, "parent", f.Parent)
	set(v, "after", f.After)
	setInt(v, "limit", int64(f.Limit))
	return fetch[[]market.Contract](ctx, c, call{op: "contracts", method: http.MethodGet, path: "/v1/contracts", query: v})
}

// Deliver is market.Service.Deliver over POST /v1/contracts/{id}/delivery.
func (c *Client) Deliver(ctx context.Context, r market.DeliveryRequest) (market.Contract, error) {
	return fetch[market.Contract](ctx, c, call{op: "deliver", method: http.MethodPost, path: "/v1/contracts/" + seg(r.Contract) + "/delivery", body: r})
}

// Accept is market.Service.Accept over POST /v1/contracts/{id}/accept.
func (c *Client) Accept(ctx context.Context, r market.AcceptRequest) (market.Contract, error) {
	return fetch[market.Contract](ctx, c, call{op: "accept", method: http.MethodPost, path: "/v1/contracts/" + seg(r.Contract) + "/accept", body: r})
}

// Dispute is market.Service.Dispute over POST /v1/contracts/{id}/dispute.
func (c *Client) Dispute(ctx context.Context, r market.DisputeRequest) (market.Contract, error) {
	return fetch[market.Contract](ctx, c, call{op: "dispute", method: http.MethodPost, path: "/v1/contracts/" + seg(r.Contract) + "/dispute", body: r})
}

// SubmitReview is market.Service.SubmitReview over POST /v1/contracts/{id}/reviews.
func (c *Client) SubmitReview(ctx context.Context, r market.ReviewRequest) (market.Contract, error) {
	return fetch[market.Contract](ctx, c, call{op: "submit_review", method: http.MethodPost, path: "/v1/contracts/" + seg(r.Contract) + "/reviews", body: r})
}

// Receipt is market.Service.Receipt over GET /v1/receipts/{seq}.
func (c *Client) Receipt(ctx context.Context, seq uint64) (market.Receipt, error) {
	return fetch[market.Receipt](ctx, c, call{op: "receipt", method: http.MethodGet, path: "/v1/receipts/" + strconv.FormatUint(seq, 10)})
}

// MarketKey is market.Service.MarketKey over GET /v1/market-key.
func (c *Client) MarketKey(ctx context.Context) (market.PublicKey, error) {
	k, err := fetch[marketKeyResponse](ctx, c, call{op: "market_key", method: http.MethodGet, path: "/v1/market-key"})
	return k.Key, err
}

// Reputation is market.Service.Reputation over GET /v1/agents/{id}/reputation.
func (c *Client) Reputation(ctx context.Context, id market.AgentID, intent string) (market.Reputation, error) {
	v := url.Values{}
	set(v, "intent", intent)
	return fetch[market.Reputation](ctx, c, call{op: "reputation", method: http.MethodGet, path: "/v1/agents/" + seg(string(id)) + "/reputation", query: v})
}

// Stats is market.Service.Stats over GET /v1/stats/{intent}.
func (c *Client) Stats(ctx context.Context, intent string, window time.Duration) (market.IntentStats, error) {
	v := url.Values{}
	if window != 0 {
		v.Set("window", window.String())
	}
	return fetch[market.IntentStats](ctx, c, call{op: "stats", method: http.MethodGet, path: "/v1/stats/" + seg(intent), query: v})
}

// Events returns a page of the events the caller may see. With f.Wait it
// long-polls: the server holds the request up to that long (at most 60 s)
// for a first event. Subscribe streams them instead.
func (c *Client) Events(ctx context.Context, f market.EventFilter) ([]market.Event, error) {
	return fetch[[]market.Event](ctx, c, call{op: "events", method: http.MethodGet, path: "/v1/events", query: eventQuery(f, true)})
}

func set(v url.Values, k, s string) {
	if s != "" {
		v.Set(k, s)
	}
}

func setInt(v url.Values, k string, n int64) {
	if n != 0 {
		v.Set(k, strconv.FormatInt(n, 10))
	}
}
