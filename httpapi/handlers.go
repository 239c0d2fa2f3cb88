package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// Request and response bodies the market types do not cover.
type (
	// AmountRequest is the body of a mint or a bond posting.
	AmountRequest struct {
		AmountMicrocredits int64 `json:"amount_microcredits"`
	}
	// AwardRequest names the bid to award.
	AwardRequest struct {
		Bid string `json:"bid"`
	}
	// MarketKeyResponse holds the public key that signs receipts.
	MarketKeyResponse struct {
		Key market.PublicKey `json:"key"`
	}
	// Health is the body of /healthz.
	Health struct {
		Status string `json:"status"`
	}
)

// reply encodes v with status, or returns err.
func reply[T any](w http.ResponseWriter, status int, v T, err error) error {
	if err != nil {
		return err
	}
	return encode(w, status, v)
}

// fromPath fills a body field that the path also names: empty takes the
// path's value, and a different one is an error.
func fromPath(field *string, r *http.Request, param, name string) error {
	v := r.PathValue(param)
	switch *field {
	case "":
		*field = v
	case v:
	default:
		return problem(market.Invalid, "path_body_mismatch", fmt.Sprintf("the body's %s %q differs from the path's %q", name, truncate(*field, 80), truncate(v, 80)))
	}
	return nil
}

func handleRegister(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		reg, err := decode[market.Registration](r)
		if err != nil {
			return err
		}
		a, err := svc.Register(r.Context(), reg)
		return reply(w, http.StatusCreated, a, err)
	}
}

func handleAgent(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		a, err := svc.Agent(r.Context(), market.AgentID(r.PathValue("id")))
		return reply(w, http.StatusOK, a, err)
	}
}

func handleAgentOffers(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		offers, err := svc.AgentOffers(r.Context(), market.AgentID(r.PathValue("id")))
		return reply(w, http.StatusOK, nonNil(offers), err)
	}
}

func handleBalance(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		b, err := svc.Balance(r.Context(), market.AgentID(r.PathValue("id")))
		return reply(w, http.StatusOK, b, err)
	}
}

func handleMint(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		req, err := decode[AmountRequest](r)
		if err != nil {
			return err
		}
		b, err := svc.Mint(r.Context(), market.AgentID(r.PathValue("id")), req.AmountMicrocredits)
		return reply(w, http.StatusOK, b, err)
	}
}

func handleSetMandate(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		m, err := decode[market.Mandate](r)
		if err != nil {
			return err
		}
		agent := string(m.Agent)
		if err := fromPath(&agent, r, "id", "agent"); err != nil {
			return err
		}
		m.Agent = market.AgentID(agent)
		if err := svc.SetMandate(r.Context(), m); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func handleReputation(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		rep, err := svc.Reputation(r.Context(), market.AgentID(r.PathValue("id")), r.URL.Query().Get("intent"))
		return reply(w, http.StatusOK, rep, err)
	}
}

func handlePostBond(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		req, err := decode[AmountRequest](r)
		if err != nil {
			return err
		}
		b, err := svc.PostBond(r.Context(), req.AmountMicrocredits)
		return reply(w, http.StatusOK, b, err)
	}
}

func handlePublishOffer(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		o, err := decode[market.Offer](r)
		if err != nil {
			return err
		}
		o, err = svc.PublishOffer(r.Context(), o)
		return reply(w, http.StatusCreated, o, err)
	}
}

func handleFindOffers(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		q := queryOf(r)
		oq := market.OfferQuery{
			Intent:                 q.str("intent"),
			MaxPriceMicrocredits:   q.int64("max_price_microcredits"),
			MaxLatencyMs:           q.int64("max_latency_ms"),
			MinimumReputationScore: q.float("minimum_reputation_score"),
			Limit:                  int(q.int64("limit")),
		}
		if p := q.str("parameters"); p != "" {
			if !json.Valid([]byte(p)) {
				return problem(market.Invalid, "invalid_parameter", "parameters must be a JSON object, URL-encoded")
			}
			oq.Parameters = json.RawMessage(p)
		}
		if q.err != nil {
			return q.err
		}
		ms, err := svc.FindOffers(r.Context(), oq)
		return reply(w, http.StatusOK, nonNil(ms), err)
	}
}

func handleOffer(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		o, err := svc.Offer(r.Context(), r.PathValue("id"))
		return reply(w, http.StatusOK, o, err)
	}
}

func handleUpdateOffer(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		o, err := decode[market.Offer](r)
		if err != nil {
			return err
		}
		if err := fromPath(&o.ID, r, "id", "id"); err != nil {
			return err
		}
		o, err = svc.UpdateOffer(r.Context(), o)
		return reply(w, http.StatusOK, o, err)
	}
}

func handleWithdrawOffer(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		o, err := svc.WithdrawOffer(r.Context(), r.PathValue("id"))
		return reply(w, http.StatusOK, o, err)
	}
}

func handlePostIntent(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		req, err := decode[market.IntentRequest](r)
		if err != nil {
			return err
		}
		in, err := svc.PostIntent(r.Context(), req)
		return reply(w, http.StatusCreated, in, err)
	}
}

func handleIntents(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		q := queryOf(r)
		f := market.IntentFilter{
			Intent:   q.str("intent"),
			State:    market.IntentState(q.str("state")),
			Buyer:    market.AgentID(q.str("buyer")),
			Eligible: q.bool("eligible"),
			Page:     market.Page{After: q.str("after"), Limit: int(q.int64("limit"))},
		}
		if q.err != nil {
			return q.err
		}
		list, err := svc.Intents(r.Context(), f)
		return reply(w, http.StatusOK, nonNil(list), err)
	}
}

func handleIntent(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		in, err := svc.Intent(r.Context(), r.PathValue("id"))
		return reply(w, http.StatusOK, in, err)
	}
}

func handleCancelIntent(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		in, err := svc.CancelIntent(r.Context(), r.PathValue("id"))
		return reply(w, http.StatusOK, in, err)
	}
}

func handlePlaceBid(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		req, err := decode[market.BidRequest](r)
		if err != nil {
			return err
		}
		if err := fromPath(&req.Intent, r, "id", "intent"); err != nil {
			return err
		}
		b, err := svc.PlaceBid(r.Context(), req)
		return reply(w, http.StatusCreated, b, err)
	}
}

func handleBids(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		bs, err := svc.Bids(r.Context(), r.PathValue("id"))
		return reply(w, http.StatusOK, nonNil(bs), err)
	}
}

func handleAward(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		req, err := decode[AwardRequest](r)
		if err != nil {
			return err
		}
		c, err := svc.Award(r.Context(), r.PathValue("id"), req.Bid)
		return reply(w, http.StatusCreated, c, err)
	}
}

func handleBid(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		b, err := svc.Bid(r.Context(), r.PathValue("id"))
		return reply(w, http.StatusOK, b, err)
	}
}

func handleMessages(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		ms, err := svc.Messages(r.Context(), r.PathValue("id"))
		return reply(w, http.StatusOK, nonNil(ms), err)
	}
}

func handleCounter(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		req, err := decode[market.CounterRequest](r)
		if err != nil {
			return err
		}
		if err := fromPath(&req.Bid, r, "id", "bid"); err != nil {
			return err
		}
		m, err := svc.Counter(r.Context(), req)
		return reply(w, http.StatusCreated, m, err)
	}
}

func handleWithdrawBid(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		b, err := svc.WithdrawBid(r.Context(), r.PathValue("id"))
		return reply(w, http.StatusOK, b, err)
	}
}

func handleContracts(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		q := queryOf(r)
		f := market.ContractFilter{
			Agent:  market.AgentID(q.str("agent")),
			State:  market.ContractState(q.str("state")),
			Intent: q.str("intent"),
			Parent: q.str("parent"),
			Page:   market.Page{After: q.str("after"), Limit: int(q.int64("limit"))},
		}
		if q.err != nil {
			return q.err
		}
		cs, err := svc.Contracts(r.Context(), f)
		return reply(w, http.StatusOK, nonNil(cs), err)
	}
}

func handleContract(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := svc.Contract(r.Context(), r.PathValue("id"))
		return reply(w, http.StatusOK, c, err)
	}
}

func handleDeliver(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		req, err := decode[market.DeliveryRequest](r)
		if err != nil {
			return err
		}
		if err := fromPath(&req.Contract, r, "id", "contract"); err != nil {
			return err
		}
		c, err := svc.Deliver(r.Context(), req)
		return reply(w, http.StatusOK, c, err)
	}
}

func handleAccept(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		req, err := decode[market.AcceptRequest](r)
		if err != nil {
			return err
		}
		if err := fromPath(&req.Contract, r, "id", "contract"); err != nil {
			return err
		}
		c, err := svc.Accept(r.Context(), req)
		return reply(w, http.StatusOK, c, err)
	}
}

func handleDispute(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		req, err := decode[market.DisputeRequest](r)
		if err != nil {
			return err
		}
		if err := fromPath(&req.Contract, r, "id", "contract"); err != nil {
			return err
		}
		c, err := svc.Dispute(r.Context(), req)
		return reply(w, http.StatusOK, c, err)
	}
}

func handleSubmitReview(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		req, err := decode[market.ReviewRequest](r)
		if err != nil {
			return err
		}
		if err := fromPath(&req.Contract, r, "id", "contract"); err != nil {
			return err
		}
		c, err := svc.SubmitReview(r.Context(), req)
		return reply(w, http.StatusOK, c, err)
	}
}

func handleReceipt(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
		if err != nil {
			return problem(market.Invalid, "invalid_parameter", "a receipt's seq is a non-negative integer")
		}
		rc, err := svc.Receipt(r.Context(), seq)
		return reply(w, http.StatusOK, rc, err)
	}
}

func handleMarketKey(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		k, err := svc.MarketKey(r.Context())
		return reply(w, http.StatusOK, MarketKeyResponse{Key: k}, err)
	}
}

func handleStats(svc market.Service) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		q := queryOf(r)
		window := q.duration("window")
		if q.err != nil {
			return q.err
		}
		if window == 0 {
			window = time.Hour
		}
		st, err := svc.Stats(r.Context(), r.PathValue("intent"), window)
		return reply(w, http.StatusOK, st, err)
	}
}

// healthTimeout bounds how long /healthz waits for the store to answer.
const healthTimeout = 2 * time.Second

// handleHealth answers 200 when the market store answers a read, and 503
// otherwise, so that a load balancer takes a node whose database is
// unreachable out of rotation. The store's error goes to the log only.
func handleHealth(store market.Store, log *slog.Logger) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "no-store")
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		if err := store.View(ctx, func(market.ReadTx) error { return nil }); err != nil {
			log.Warn("healthz: the market store does not answer", "err", err)
			return market.E(market.Transient, market.Code("store_unavailable"), "the market store does not answer")
		}
		return encode(w, http.StatusOK, Health{Status: "ok"})
	}
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// query reads typed query parameters, keeping the first error.
type query struct {
	v   url.Values
	err error
}

func queryOf(r *http.Request) *query { return &query{v: r.URL.Query()} }

func (q *query) fail(name, want string) {
	if q.err == nil {
		q.err = problem(market.Invalid, "invalid_parameter", fmt.Sprintf("query parameter %s must be %s", name, want))
	}
}

func (q *query) str(name string) string { return q.v.Get(name) }

func (q *query) int64(name string) int64 {
	s := q.v.Get(name)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && q.err == nil {
			q.err = problem(market.Invalid, "number_out_of_range", fmt.Sprintf("query parameter %s does not fit in 64 bits", name))
			return 0
		}
		q.fail(name, "an integer")
		return 0
	}
	if n < 0 && strings.HasSuffix(name, "_microcredits") && q.err == nil {
		q.err = problem(market.Invalid, "negative_amount", fmt.Sprintf("query parameter %s must not be negative", name))
	}
	return n
}

func (q *query) float(name string) float64 {
	s := q.v.Get(name)
	if s == "" {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		q.fail(name, "a number")
	}
	return f
}

func (q *query) bool(name string) bool {
	s := q.v.Get(name)
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		q.fail(name, "true or false")
	}
	return b
}

// duration reads a Go duration ("90s") or integer milliseconds.
func (q *query) duration(name string) time.Duration {
	s := q.v.Get(name)
	if s == "" {
		return 0
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 0 && ms <= int64(365*24*time.Hour/time.Millisecond) {
		return time.Duration(ms) * time.Millisecond
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		q.fail(name, `a non-negative duration such as "30s", or milliseconds`)
		return 0
	}
	return d
}
