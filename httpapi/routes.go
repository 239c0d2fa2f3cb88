package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/agentmarket/agentmarket/a2a"
	"github.com/agentmarket/agentmarket/market"
)

// route is one operation of the API: its pattern, how it is
// authenticated, its messages (for the OpenAPI document, the JSON Schemas
// and the agent card) and its handler.
type route struct {
	method, path string
	op           string // the OpenAPI operationId and the agent card's skill id
	summary      string
	tag          string
	access       access
	in           any // a zero request body, or nil for none
	out          any // a zero response body, or nil for none
	status       int // the status of success
	query        []param
	stream       bool // it also answers text/event-stream
	handler      apiHandler
}

// param is a query parameter.
type param struct {
	name, typ, desc string // typ is a JSON Schema type, or "duration"
}

var (
	pageParams = []param{
		{"after", "string", "continue after this id"},
		{"limit", "integer", "at most this many (default 100, at most 1000)"},
	}
)

// routes lists every route of the API. It is the one place routes are
// declared: the mux, the OpenAPI document and the agent card all come
// from it.
func routes(s *server) []route {
	svc, docs := s.svc, s.docs
	return []route{
		{method: "POST", path: "/v1/agents", op: "register", tag: "agents", access: enrolling, status: 201,
			in: market.Registration{}, out: market.Agent{}, handler: handleRegister(svc),
			summary: "Register an agent. The body's proof signs the registration; the request itself may be unsigned."},
		{method: "GET", path: "/v1/agents/{id}", op: "get_agent", tag: "agents", status: 200,
			out: market.Agent{}, handler: handleAgent(svc), summary: "Get a registered agent."},
		{method: "GET", path: "/v1/agents/{id}/offers", op: "get_agent_offers", tag: "agents", status: 200,
			out: []market.Offer{}, handler: handleAgentOffers(svc), summary: "List an agent's active offers."},
		{method: "GET", path: "/v1/agents/{id}/card", op: "get_agent_card", tag: "agents", status: 200,
			out: a2a.AgentCard{}, handler: handleAgentsCard(svc, s.cfg.PublicURL, s.cfg.MarketKey),
			summary: "An agent's A2A v1.0 card, its skills its active offers, signed by the market (EdDSA JWS; kid is the market's did:key)."},
		{method: "GET", path: "/v1/agents/{id}/balance", op: "get_balance", tag: "agents", status: 200,
			out: market.Balance{}, handler: handleBalance(svc), summary: "Get an agent's wallet: the agent itself or the operator."},
		{method: "POST", path: "/v1/agents/{id}/mint", op: "mint", tag: "operator", access: signed, status: 200,
			in: AmountRequest{}, out: market.Balance{}, handler: handleMint(svc), summary: "Issue credits to an agent from the treasury. Operator only."},
		{method: "PUT", path: "/v1/agents/{id}/mandate", op: "set_mandate", tag: "operator", access: signed, status: 204,
			in: market.Mandate{}, handler: handleSetMandate(svc), summary: "Set or replace an agent's spending mandate. Operator only."},
		{method: "GET", path: "/v1/agents/{id}/reputation", op: "get_reputation", tag: "agents", status: 200,
			query: []param{{"intent", "string", "an intent type; empty for all"}},
			out:   market.Reputation{}, handler: handleReputation(svc), summary: "Get an agent's reputation."},
		{method: "POST", path: "/v1/bonds", op: "post_bond", tag: "arbiters", access: signed, status: 200,
			in: AmountRequest{}, out: market.Balance{}, handler: handlePostBond(svc), summary: "Move credits from the caller's wallet into its arbiter bond."},

		{method: "POST", path: "/v1/offers", op: "publish_offer", tag: "offers", access: signed, status: 201,
			in: market.Offer{}, out: market.Offer{}, handler: handlePublishOffer(svc), summary: "Publish the calling seller's offer."},
		{method: "GET", path: "/v1/offers", op: "find_offers", tag: "offers", status: 200,
			query: []param{
				{"intent", "string", "the intent type (required)"},
				{"parameters", "string", "a JSON object of intent parameters the offer's schema must accept"},
				{"max_price_microcredits", "integer", "the highest price"},
				{"max_latency_ms", "integer", "the slowest promised latency"},
				{"minimum_reputation_score", "number", "the lowest reputation lower bound"},
				{"limit", "integer", "at most this many"},
			},
			out: []market.OfferMatch{}, handler: handleFindOffers(svc), summary: "Find active offers for an intent type, best first."},
		{method: "GET", path: "/v1/offers/{id}", op: "get_offer", tag: "offers", status: 200,
			out: market.Offer{}, handler: handleOffer(svc), summary: "Get an offer."},
		{method: "PUT", path: "/v1/offers/{id}", op: "update_offer", tag: "offers", access: signed, status: 200,
			in: market.Offer{}, out: market.Offer{}, handler: handleUpdateOffer(svc), summary: "Replace the terms of the caller's offer."},
		{method: "POST", path: "/v1/offers/{id}/withdraw", op: "withdraw_offer", tag: "offers", access: signed, status: 200,
			out: market.Offer{}, handler: handleWithdrawOffer(svc), summary: "Withdraw the caller's offer."},

		{method: "POST", path: "/v1/intents", op: "post_intent", tag: "intents", access: signed, status: 201,
			in: market.IntentRequest{}, out: market.Intent{}, handler: handlePostIntent(svc),
			summary: "Post the calling buyer's intent (a request for quotes) and route it to eligible sellers."},
		{method: "GET", path: "/v1/intents", op: "list_intents", tag: "intents", status: 200,
			query: append([]param{
				{"intent", "string", "an intent type"},
				{"state", "string", "open, selecting, awarded, cancelled or expired"},
				{"buyer", "string", "a buyer's did:key"},
				{"eligible", "boolean", "only the open intents the calling seller may bid on"},
			}, pageParams...),
			out: []market.Intent{}, handler: handleIntents(svc), summary: "List intents, newest first."},
		{method: "GET", path: "/v1/intents/{id}", op: "get_intent", tag: "intents", status: 200,
			out: market.Intent{}, handler: handleIntent(svc), summary: "Get an intent."},
		{method: "POST", path: "/v1/intents/{id}/cancel", op: "cancel_intent", tag: "intents", access: signed, status: 200,
			out: market.Intent{}, handler: handleCancelIntent(svc), summary: "Cancel the caller's intent before it is awarded."},
		{method: "POST", path: "/v1/intents/{id}/bids", op: "place_bid", tag: "bids", access: signed, status: 201,
			in: market.BidRequest{}, out: market.Bid{}, handler: handlePlaceBid(svc), summary: "Place the calling seller's sealed bid on an open intent."},
		{method: "GET", path: "/v1/intents/{id}/bids", op: "list_bids", tag: "bids", status: 200,
			out: []market.Bid{}, handler: handleBids(svc), summary: "List an intent's bids as the caller may see them."},
		{method: "POST", path: "/v1/intents/{id}/award", op: "award", tag: "contracts", access: signed, status: 201,
			in: AwardRequest{}, out: market.Contract{}, handler: handleAward(svc),
			summary: "Award the intent to a bid: create the contract and hold its price in escrow."},

		{method: "GET", path: "/v1/bids/{id}", op: "get_bid", tag: "bids", status: 200,
			out: market.Bid{}, handler: handleBid(svc), summary: "Get a bid, to its seller or, once bidding closes, the buyer."},
		{method: "GET", path: "/v1/bids/{id}/messages", op: "list_messages", tag: "bids", status: 200,
			out: []market.Message{}, handler: handleMessages(svc), summary: "Get a bid's negotiation, oldest first."},
		{method: "POST", path: "/v1/bids/{id}/messages", op: "counter", tag: "bids", access: signed, status: 201,
			in: market.CounterRequest{}, out: market.Message{}, handler: handleCounter(svc), summary: "Counter or accept the newest terms of a bid's negotiation."},
		{method: "POST", path: "/v1/bids/{id}/withdraw", op: "withdraw_bid", tag: "bids", access: signed, status: 200,
			out: market.Bid{}, handler: handleWithdrawBid(svc), summary: "Withdraw the caller's active bid."},

		{method: "GET", path: "/v1/contracts", op: "list_contracts", tag: "contracts", status: 200,
			query: append([]param{
				{"agent", "string", "a party's did:key (the operator only; agents see their own)"},
				{"state", "string", "awarded, delivered, in_review, settled or refunded"},
				{"intent", "string", "an intent type"},
				{"parent", "string", "a parent contract's id"},
			}, pageParams...),
			out: []market.Contract{}, handler: handleContracts(svc), summary: "List the caller's contracts, newest first."},
		{method: "GET", path: "/v1/contracts/{id}", op: "get_contract", tag: "contracts", status: 200,
			out: market.Contract{}, handler: handleContract(svc), summary: "Get a contract, to its parties, its arbiters and the operator."},
		{method: "POST", path: "/v1/contracts/{id}/delivery", op: "deliver", tag: "contracts", access: signed, status: 200,
			in: market.DeliveryRequest{}, out: market.Contract{}, handler: handleDeliver(svc), summary: "Deliver the contract's result (the seller)."},
		{method: "POST", path: "/v1/contracts/{id}/accept", op: "accept", tag: "contracts", access: signed, status: 200,
			in: market.AcceptRequest{}, out: market.Contract{}, handler: handleAccept(svc), summary: "Accept a delivery and release the escrow (the buyer)."},
		{method: "POST", path: "/v1/contracts/{id}/dispute", op: "dispute", tag: "contracts", access: signed, status: 200,
			in: market.DisputeRequest{}, out: market.Contract{}, handler: handleDispute(svc), summary: "Reject a delivery and send it to an arbiter (the buyer)."},
		{method: "POST", path: "/v1/contracts/{id}/reviews", op: "submit_review", tag: "arbiters", access: signed, status: 200,
			in: market.ReviewRequest{}, out: market.Contract{}, handler: handleSubmitReview(svc), summary: "Submit the assigned arbiter's review and settle by its verdict."},

		{method: "GET", path: "/v1/receipts/{seq}", op: "get_receipt", tag: "receipts", status: 200,
			out: market.Receipt{}, handler: handleReceipt(svc), summary: "Get a market-signed settlement receipt."},
		{method: "GET", path: "/v1/market-key", op: "get_market_key", tag: "receipts", status: 200,
			out: MarketKeyResponse{}, handler: handleMarketKey(svc), summary: "Get the public key that signs receipts."},
		{method: "GET", path: "/v1/stats/{intent}", op: "get_stats", tag: "market data", status: 200,
			query: []param{{"window", "duration", `the sliding window, such as "1h" (default 1h)`}},
			out:   market.IntentStats{}, handler: handleStats(svc), summary: "Get market data for an intent type over a sliding window."},
		{method: "GET", path: "/v1/events", op: "events", tag: "events", status: 200, stream: true,
			query: []param{
				{"after", "integer", "events after this seq (Last-Event-ID takes precedence on a stream)"},
				{"types", "string", "comma-separated event types"},
				{"intent", "string", "an intent type"},
				{"agent", "string", "events visible to this agent (the operator only)"},
				{"limit", "integer", "at most this many per response (JSON)"},
				{"wait", "duration", "long-poll up to this long for a first event (JSON; at most 60s)"},
			},
			out: []market.Event{}, handler: handleEvents(svc, s.cfg.Heartbeat, s.cfg.Closing),
			summary: "The events the caller may see: a server-sent event stream (Accept: text/event-stream) or a JSON page."},

		{method: "GET", path: "/healthz", op: "health", tag: "meta", status: 200,
			out: Health{}, handler: handleHealth(s.cfg.Store, s.log), summary: "Report that the server is up and its market store answers (503 store_unavailable if not)."},
		{method: "GET", path: "/v1/openapi.json", op: "openapi", tag: "meta", status: 200,
			handler: handleOpenAPI(docs), summary: "This API's OpenAPI 3.1 description."},
		{method: "GET", path: "/v1/schemas", op: "list_schemas", tag: "meta", status: 200,
			handler: handleSchemaIndex(docs), summary: "List the JSON Schemas of the API's messages."},
		{method: "GET", path: "/v1/schemas/{name}", op: "get_schema", tag: "meta", status: 200,
			handler: handleSchema(docs), summary: "Get a message's JSON Schema (draft 2020-12), such as intent-request.v1.json."},
		{method: "GET", path: "/.well-known/agent-card.json", op: "agent_card", tag: "meta", status: 200,
			handler: handleAgentCard(docs, s.cfg.PublicURL, s.cfg.MarketKey), summary: "The market's A2A agent card, signed with the market's key when it has one."},
	}
}

// addRoutes registers the routes on mux, answers a known path's other
// methods with 405 and unknown paths with 404, all as problems.
func addRoutes(mux *http.ServeMux, s *server, rts []route) {
	methods := map[string][]string{}
	var paths []string
	for _, rt := range rts {
		mux.Handle(rt.method+" "+rt.path, s.handle(rt))
		if methods[rt.path] == nil {
			paths = append(paths, rt.path)
		}
		methods[rt.path] = append(methods[rt.path], rt.method)
	}
	for _, p := range paths {
		allowed := methods[p]
		if slices.Contains(allowed, http.MethodGet) {
			allowed = append(allowed, http.MethodHead)
		}
		allow := strings.Join(allowed, ", ")
		mux.Handle(p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, r, s.log, &statusError{status: http.StatusMethodNotAllowed, err: problem(market.Unsupported, "method_not_allowed",
				fmt.Sprintf("%s does not take %s; it takes %s", p, r.Method, allow))})
		}))
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.log, problem(market.NotExist, "route_not_found", fmt.Sprintf("no route %s %s; see /v1/openapi.json", r.Method, truncate(r.URL.Path, 100))))
	}))
}
