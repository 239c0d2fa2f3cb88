package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/httpapi"
	"github.com/agentmarket/agentmarket/httpapi/httpapitest"
	"github.com/agentmarket/agentmarket/market"
)

// TestHostileRequests sends each kind of hostile or broken request to a
// market holding a contract awaiting the buyer's review, and checks that
// each gets its documented status and problem code and that no money
// moved.
func TestHostileRequests(t *testing.T) {
	const maxBody = 64 << 10
	m := httpapitest.New(t, httpapitest.Options{API: func(c *httpapi.Config) { c.MaxBodyBytes = maxBody }})
	ctx := t.Context()
	op := client.New(m.URL, m.Operator)
	buyer := mustAgent(t, m.URL, "buyer", "op-b", market.RoleBuyer)
	seller := mustAgent(t, m.URL, "seller", "op-s", market.RoleSeller)
	mallory := mustAgent(t, m.URL, "mallory", "op-m", market.RoleBuyer, market.RoleSeller)
	stranger, _ := market.GenerateKey(nil)

	must[market.Offer](t)(seller.PublishOffer(ctx, market.Offer{Intent: sortIntent, BasePriceMicrocredits: market.Credit, LatencyMs: 60_000}))
	in := must[market.Intent](t)(buyer.PostIntent(ctx, market.IntentRequest{RequestID: "r1", Intent: sortIntent,
		Parameters: json.RawMessage(`{"items":[2,1]}`), Constraints: market.Constraints{MaxBudgetMicrocredits: 5 * market.Credit}, BidWindowMs: 100}))
	bid := must[market.Bid](t)(seller.PlaceBid(ctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: market.Credit, LatencyMs: 30_000}))
	deadline := time.Now().Add(10 * time.Second)
	for {
		in = must[market.Intent](t)(buyer.Intent(ctx, in.ID))
		if in.State == market.IntentSelecting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bidding never closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	contract := must[market.Contract](t)(buyer.Award(ctx, in.ID, bid.ID))
	must[market.Contract](t)(seller.Deliver(ctx, market.DeliveryRequest{Contract: contract.ID, Output: json.RawMessage(`{"items":[1,2]}`)}))

	balances := func() map[market.AgentID]market.Balance {
		t.Helper()
		if err := m.CheckMoney(); err != nil {
			t.Fatal(err)
		}
		out := map[market.AgentID]market.Balance{}
		for _, a := range []agent{buyer, seller, mallory} {
			out[a.ID] = must[market.Balance](t)(op.Balance(ctx, a.ID))
		}
		return out
	}

	url := m.URL
	acceptURL := url + "/v1/contracts/" + contract.ID + "/accept"
	mintURL := url + "/v1/agents/" + string(mallory.ID) + "/mint"
	acceptBody := []byte(`{"quality":1}`)

	// A mint the operator signed, replayed byte for byte: the first
	// arrival mints, the replay must not.
	replayed := rawRequest(t, "POST", mintURL, []byte(`{"amount_microcredits":1000000}`), signing{key: m.Operator})
	if r := send(t, replayed); r.status != http.StatusOK {
		t.Fatalf("the original mint: %d %s", r.status, r.body)
	}

	cases := []struct {
		name   string
		req    *http.Request
		status int
		code   string
	}{
		{"ForgedSignature", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: mallory.Key, keyID: string(buyer.ID)}),
			401, "signature_invalid"},
		{"ReplayedRequest", replayed, 401, "nonce_reused"},
		{"StaleCreated", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: buyer.Key, created: time.Now().Add(-6 * time.Minute)}),
			401, "signature_stale"},
		{"CreatedInTheFuture", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: buyer.Key, created: time.Now().Add(6 * time.Minute)}),
			401, "signature_stale"},
		{"DigestMismatch", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: buyer.Key, digestOf: []byte(`{"quality":0.1}`)}),
			401, "digest_mismatch"},
		{"MissingSignature", rawRequest(t, "POST", acceptURL, acceptBody, signing{}), 401, "signature_required"},
		{"UnknownKey", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: stranger}), 401, "unknown_key"},
		{"KeyIDNotADID", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: buyer.Key, keyID: "buyer"}), 401, "unknown_key"},
		{"BodyNotCovered", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: buyer.Key, components: []string{"@method", "@authority", "@path"}}),
			401, "signature_incomplete"},
		{"PathNotCovered", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: buyer.Key, components: []string{"@method", "@authority", "content-digest"}}),
			401, "signature_incomplete"},
		{"UnsupportedAlgorithm", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: buyer.Key, alg: "rsa-pss-sha512"}),
			401, "signature_malformed"},
		{"SomeoneElsesContract", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: mallory.Key}), 403, "not_your_contract"},
		{"TheSellerAcceptsItsOwnWork", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: seller.Key}), 403, "not_your_contract"},
		{"AnAgentMints", rawRequest(t, "POST", mintURL, []byte(`{"amount_microcredits":5}`), signing{key: mallory.Key}), 403, "operator_required"},
		{"OversizeBody", rawRequest(t, "POST", acceptURL, bytes.Repeat([]byte(" "), maxBody+1), signing{key: buyer.Key}), 413, "body_too_large"},
		{"MalformedJSON", rawRequest(t, "POST", acceptURL, []byte(`{"quality":`), signing{key: buyer.Key}), 400, "malformed_json"},
		{"TrailingJSON", rawRequest(t, "POST", acceptURL, []byte(`{"quality":1}{}`), signing{key: buyer.Key}), 400, "trailing_data"},
		{"WrongContentType", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: buyer.Key, contentType: "text/plain"}), 415, "unsupported_media_type"},
		{"UnknownField", rawRequest(t, "POST", acceptURL, []byte(`{"quality":1,"release_to":"mallory"}`), signing{key: buyer.Key}), 400, "unknown_field"},
		{"WrongFieldType", rawRequest(t, "POST", acceptURL, []byte(`{"quality":"high"}`), signing{key: buyer.Key}), 400, "invalid_field_type"},
		{"HugeInteger", rawRequest(t, "POST", mintURL, []byte(`{"amount_microcredits":99999999999999999999}`), signing{key: m.Operator}),
			400, "number_out_of_range"},
		{"HugeExponent", rawRequest(t, "POST", mintURL, []byte(`{"amount_microcredits":1e300}`), signing{key: m.Operator}), 400, "number_out_of_range"},
		{"HugeFloat", rawRequest(t, "POST", acceptURL, []byte(`{"quality":1e400}`), signing{key: buyer.Key}), 400, "number_out_of_range"},
		{"FractionalAmount", rawRequest(t, "POST", mintURL, []byte(`{"amount_microcredits":1.5}`), signing{key: m.Operator}), 400, "invalid_field_type"},
		{"NegativeMint", rawRequest(t, "POST", mintURL, []byte(`{"amount_microcredits":-1000000}`), signing{key: m.Operator}), 400, "negative_amount"},
		{"NegativeBid", rawRequest(t, "POST", url+"/v1/intents/"+in.ID+"/bids", []byte(`{"price_microcredits":-1,"latency_ms":1}`), signing{key: mallory.Key}),
			400, "negative_amount"},
		{"NegativeBudget", rawRequest(t, "POST", url+"/v1/intents", []byte(`{"request_id":"x","intent":"SORT_LIST","parameters":{},"constraints":{"max_budget_microcredits":-5}}`),
			signing{key: mallory.Key}), 400, "negative_amount"},
		{"NegativeQueryAmount", rawRequest(t, "GET", url+"/v1/offers?intent=SORT_LIST&max_price_microcredits=-1", nil, signing{}), 400, "negative_amount"},
		{"UnknownQueryParameter", rawRequest(t, "GET", url+"/v1/offers?intent=SORT_LIST&price=1", nil, signing{}), 400, "unknown_parameter"},
		{"MissingIdempotencyKey", rawRequest(t, "POST", acceptURL, acceptBody, signing{key: buyer.Key, idem: "-"}), 400, "idempotency_key_required"},
		{"PathBodyMismatch", rawRequest(t, "POST", acceptURL, []byte(`{"contract":"con_other"}`), signing{key: buyer.Key}), 400, "path_body_mismatch"},
		{"UnknownRoute", rawRequest(t, "POST", url+"/v1/contracts/"+contract.ID+"/release", acceptBody, signing{key: buyer.Key}), 404, "route_not_found"},
		{"WrongMethod", rawRequest(t, "DELETE", url+"/v1/contracts/"+contract.ID, nil, signing{key: buyer.Key}), 405, "method_not_allowed"},
	}
	before := balances()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := send(t, c.req)
			if r.status != c.status || r.problem.Code != c.code {
				t.Fatalf("got %d %s (%s), want %d %s", r.status, r.problem.Code, r.problem.Detail, c.status, c.code)
			}
			if diff := cmp.Diff(before, balances()); diff != "" {
				t.Fatalf("money moved (-before +after):\n%s", diff)
			}
		})
	}

	// The buyer's own, honest acceptance still works after all that.
	r := send(t, rawRequest(t, "POST", acceptURL, acceptBody, signing{key: buyer.Key}))
	if r.status != http.StatusOK {
		t.Fatalf("the buyer's acceptance: %d %s", r.status, r.body)
	}
	if after := balances(); after[seller.ID].PostedMicrocredits != before[seller.ID].PostedMicrocredits+market.Credit {
		t.Fatalf("seller was not paid: %+v", after[seller.ID])
	}
}

// TestAnonymousReads checks that an unsigned request reads what is public
// and nothing else.
func TestAnonymousReads(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{})
	buyer := mustAgent(t, m.URL, "buyer", "", market.RoleBuyer)
	for _, c := range []struct {
		path   string
		status int
	}{
		{"/v1/agents/" + string(buyer.ID), 200},
		{"/v1/agents/" + string(buyer.ID) + "/reputation", 200},
		{"/v1/offers?intent=SORT_LIST", 200},
		{"/v1/market-key", 200},
		{"/healthz", 200},
		{"/v1/agents/" + string(buyer.ID) + "/balance", 401},
		{"/v1/contracts", 401},
		{"/v1/events", 401},
	} {
		r := send(t, rawRequest(t, "GET", m.URL+c.path, nil, signing{}))
		if r.status != c.status {
			t.Errorf("GET %s: %d %s, want %d", c.path, r.status, r.body, c.status)
		}
	}
}

// TestRateLimit checks that a caller over its budget gets 429 with
// Retry-After, and that another caller is unaffected.
func TestRateLimit(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{API: func(c *httpapi.Config) { c.RateLimit, c.RateBurst = 0.5, 3 }})
	a := mustAgent(t, m.URL, "a", "", market.RoleBuyer)
	b := mustAgent(t, m.URL, "b", "", market.RoleBuyer)
	var last response
	for range 5 {
		last = send(t, rawRequest(t, "GET", m.URL+"/v1/agents/"+string(a.ID)+"/balance", nil, signing{key: a.Key}))
	}
	if last.status != http.StatusTooManyRequests || last.problem.Code != "rate_limited" || last.header.Get("Retry-After") == "" {
		t.Fatalf("after a burst: %d %s Retry-After %q", last.status, last.problem.Code, last.header.Get("Retry-After"))
	}
	if r := send(t, rawRequest(t, "GET", m.URL+"/v1/agents/"+string(b.ID)+"/balance", nil, signing{key: b.Key})); r.status != 200 {
		t.Fatalf("another agent: %d %s", r.status, r.body)
	}
	if r := send(t, rawRequest(t, "GET", m.URL+"/v1/agents/"+string(a.ID)+"/balance", nil, signing{key: m.Operator})); r.status != 200 {
		t.Fatalf("the operator: %d %s", r.status, r.body)
	}
}

// TestInternalErrorsHideTheirDetail checks that a failure that is not a
// domain error reaches the client as a bare 500.
func TestInternalErrorsHideTheirDetail(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{Service: func(s market.Service) market.Service {
		return failingAgent{Service: s}
	}})
	r := send(t, rawRequest(t, "GET", m.URL+"/v1/agents/did:key:zsecret", nil, signing{}))
	if r.status != 500 || r.problem.Code != "internal" || r.problem.Detail != "internal error" || strings.Contains(string(r.body), "fire") {
		t.Fatalf("got %d %s", r.status, r.body)
	}
}

// failingAgent fails Agent with an error that is not a market error.
type failingAgent struct{ market.Service }

func (failingAgent) Agent(ctx context.Context, id market.AgentID) (market.Agent, error) {
	return market.Agent{}, fmt.Errorf("disk on fire reading %s", id)
}
