package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentmarket/agentmarket/a2a"
	"github.com/agentmarket/agentmarket/httpapi"
	"github.com/agentmarket/agentmarket/httpapi/httpapitest"
	"github.com/agentmarket/agentmarket/market"
)

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	r := send(t, rawRequest(t, "GET", url, nil, signing{}))
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, r.status, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// TestOpenAPIMatchesTheRoutes checks that the OpenAPI document describes
// exactly the routes routes.go declares, and that the mux really serves
// each path and method the document names.
func TestOpenAPIMatchesTheRoutes(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{})
	var doc struct {
		OpenAPI    string                               `json:"openapi"`
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	getJSON(t, m.URL+"/v1/openapi.json", &doc)
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	declared := httpapi.RoutePatterns()
	slices.Sort(documented)
	slices.Sort(declared)
	if diff := cmp.Diff(declared, documented); diff != "" {
		t.Fatalf("routes.go (-) and openapi.json (+) differ:\n%s", diff)
	}

	for _, pattern := range documented {
		method, path, _ := strings.Cut(pattern, " ")
		url := strings.NewReplacer("{seq}", "1", "{id}", "x", "{intent}", "SORT_LIST", "{name}", "problem.v1.json").Replace(path)
		r := send(t, rawRequest(t, method, m.URL+url, nil, signing{idem: "-"}))
		if r.problem.Code == "route_not_found" || r.problem.Code == "method_not_allowed" {
			t.Errorf("%s is documented, but %s %s answers %d %s", pattern, method, url, r.status, r.problem.Code)
		}
	}

	// Every reference resolves.
	var refs func(v any)
	refs = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && k == "$ref" {
					name := strings.TrimPrefix(s, "#/components/schemas/")
					if _, ok := doc.Components.Schemas[name]; !ok {
						t.Errorf("dangling $ref %s", s)
					}
				}
				refs(e)
			}
		case []any:
			for _, e := range x {
				refs(e)
			}
		}
	}
	var raw any
	getJSON(t, m.URL+"/v1/openapi.json", &raw)
	refs(raw)
}

// compileSchema fetches a served schema and compiles it.
func compileSchema(t *testing.T, base, name string) *jsonschema.Schema {
	t.Helper()
	r := send(t, rawRequest(t, "GET", base+"/v1/schemas/"+name, nil, signing{}))
	if r.status != http.StatusOK {
		t.Fatalf("schema %s: %d %s", name, r.status, r.body)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("schema %s: %v", name, err)
	}
	c := jsonschema.NewCompiler()
	url := "https://agentmarket.test/v1/schemas/" + name
	if err := c.AddResource(url, doc); err != nil {
		t.Fatalf("schema %s: %v", name, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("schema %s does not compile: %v", name, err)
	}
	return s
}

func validates(t *testing.T, s *jsonschema.Schema, doc string) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(inst)
}

func TestSchemas(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{})
	var index []struct{ Name, URL string }
	getJSON(t, m.URL+"/v1/schemas", &index)
	for _, e := range index {
		compileSchema(t, m.URL, e.Name)
	}
	if len(index) < 20 {
		t.Fatalf("only %d schemas", len(index))
	}

	t.Run("TheDesignsIntentValidates", func(t *testing.T) {
		s := compileSchema(t, m.URL, "intent-request.v1.json")
		seed := `{"request_id":"req_98765_alpha","intent":"TRANSLATE_AND_FORMAT_DOCUMENT",
 "parameters":{"source_lang":"en","target_lang":"ja","format":"markdown","word_count":5000},
 "constraints":{"max_latency_ms":2500,"max_budget_microcredits":50,"minimum_reputation_score":0.95}}`
		if err := validates(t, s, seed); err != nil {
			t.Fatalf("the seed's intent: %v", err)
		}
		for name, bad := range map[string]string{
			"NegativeBudget": strings.Replace(seed, `"max_budget_microcredits":50`, `"max_budget_microcredits":-50`, 1),
			"UnknownField":   strings.Replace(seed, `"request_id"`, `"pay_to":"x","request_id"`, 1),
			"NoConstraints":  `{"request_id":"r","intent":"X","parameters":{}}`,
		} {
			if validates(t, s, bad) == nil {
				t.Errorf("%s validated", name)
			}
		}
	})

	t.Run("RealMessagesValidate", func(t *testing.T) {
		key, _ := market.GenerateKey(nil)
		reg := market.SignRegistration(market.Registration{Name: "a", Roles: []market.Role{market.RoleSeller}}, key, time.Now())
		regJSON := string(jsonBody(t, reg))
		if err := validates(t, compileSchema(t, m.URL, "registration-input.v1.json"), regJSON); err != nil {
			t.Fatalf("a registration: %v", err)
		}
		r := send(t, rawRequest(t, "POST", m.URL+"/v1/agents", []byte(regJSON), signing{}))
		if err := validates(t, compileSchema(t, m.URL, "agent.v1.json"), string(r.body)); err != nil {
			t.Fatalf("an agent %s: %v", r.body, err)
		}
		bad := send(t, rawRequest(t, "POST", m.URL+"/v1/agents", []byte(`{`), signing{}))
		if err := validates(t, compileSchema(t, m.URL, "problem.v1.json"), string(bad.body)); err != nil {
			t.Fatalf("a problem %s: %v", bad.body, err)
		}
	})
}

func TestAgentCard(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{})
	var card struct {
		Name   string `json:"name"`
		URL    string `json:"url"`
		Skills []struct {
			ID string `json:"id"`
		} `json:"skills"`
		SecuritySchemes map[string]any `json:"securitySchemes"`
	}
	getJSON(t, m.URL+"/.well-known/agent-card.json", &card)
	if card.Name != "agentmarket" || card.URL != m.URL+"/v1" || card.SecuritySchemes["httpSignature"] == nil {
		t.Fatalf("card %+v", card)
	}
	var ids []string
	for _, s := range card.Skills {
		ids = append(ids, s.ID)
	}
	for _, want := range []string{"register", "post_intent", "place_bid", "award", "deliver", "accept", "dispute", "submit_review", "events"} {
		if !slices.Contains(ids, want) {
			t.Errorf("the card lacks skill %s; it has %v", want, ids)
		}
	}
}

// TestSignedAgentCard checks that with the market's key the card is the
// A2A v1.0 card, signed, and that the signature covers every field.
func TestSignedAgentCard(t *testing.T) {
	key, err := market.NewPrivateKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	m := httpapitest.New(t, httpapitest.Options{API: func(c *httpapi.Config) { c.MarketKey = key }})
	resp, err := http.Get(m.URL + "/.well-known/agent-card.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("card: %d %v", resp.StatusCode, err)
	}
	if err := a2a.Verify(raw, key.Public()); err != nil {
		t.Fatalf("the market's card does not verify with its key: %v\n%s", err, raw)
	}
	var card a2a.AgentCard
	if err := json.Unmarshal(raw, &card); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range card.Skills {
		ids = append(ids, s.ID)
	}
	if !slices.Equal(ids, a2a.Operations()) {
		t.Fatalf("skills %v, want the market's operations %v", ids, a2a.Operations())
	}
	tampered := bytes.Replace(raw, []byte(`"agentmarket"`), []byte(`"agentmarkat"`), 1)
	if err := a2a.Verify(tampered, key.Public()); err == nil {
		t.Fatal("a tampered card verified")
	}
	other, _ := market.GenerateKey(nil)
	if err := a2a.Verify(raw, other.Public()); err == nil {
		t.Fatal("the card verified with another key")
	}
}

// TestAgentCardsHostedByTheMarket checks that the market serves each
// agent's A2A card, its skills the agent's active offers, signed with the
// market's key; that the market's own card points at them; and that the
// SDK lists the same offers.
func TestAgentCardsHostedByTheMarket(t *testing.T) {
	key, err := market.NewPrivateKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	m := httpapitest.New(t, httpapitest.Options{API: func(c *httpapi.Config) { c.MarketKey = key }})
	ctx := t.Context()
	seller := mustAgent(t, m.URL, "bob", "op-bob", market.RoleSeller)
	kept := must[market.Offer](t)(seller.PublishOffer(ctx, market.Offer{Intent: sortIntent, BasePriceMicrocredits: market.Credit, LatencyMs: 60_000}))
	gone := must[market.Offer](t)(seller.PublishOffer(ctx, market.Offer{Intent: "FACTOR_NUMBER", BasePriceMicrocredits: market.Credit, LatencyMs: 60_000}))
	must[market.Offer](t)(seller.WithdrawOffer(ctx, gone.ID))

	offers := must[[]market.Offer](t)(seller.AgentOffers(ctx, seller.ID))
	if len(offers) != 1 || offers[0].ID != kept.ID {
		t.Fatalf("AgentOffers over HTTP: %+v, want only %s", offers, kept.ID)
	}

	resp, err := http.Get(m.URL + "/v1/agents/" + string(seller.ID) + "/card")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("agent card: %d %v %s", resp.StatusCode, err, raw)
	}
	if err := a2a.Verify(raw, key.Public()); err != nil {
		t.Fatalf("the agent's card does not verify with the market's key: %v\n%s", err, raw)
	}
	if err := a2a.Verify(raw, seller.Key.Public()); err == nil {
		t.Fatal("the market-signed card verified with the agent's own key")
	}
	var card a2a.AgentCard
	if err := json.Unmarshal(raw, &card); err != nil {
		t.Fatal(err)
	}
	if card.Name != "bob" || len(card.Skills) != 1 || card.Skills[0].ID != kept.ID || card.Skills[0].Name != sortIntent {
		t.Fatalf("card %s, skills %+v: want bob's one active offer", card.Name, card.Skills)
	}
	tampered := bytes.Replace(raw, []byte(kept.ID), []byte(gone.ID), 1)
	if err := a2a.Verify(tampered, key.Public()); err == nil {
		t.Fatal("a tampered agent card verified")
	}

	if r := send(t, rawRequest(t, "GET", m.URL+"/v1/agents/did:key:z6MkNobody/card", nil, signing{})); r.status != http.StatusNotFound {
		t.Fatalf("card of an unknown agent: %d %s", r.status, r.body)
	}

	var mc a2a.AgentCard
	getJSON(t, m.URL+"/.well-known/agent-card.json", &mc)
	var dir map[string]any
	for _, x := range mc.Capabilities.Extensions {
		if x.URI == a2a.DirectoryExtension {
			dir = x.Params
		}
	}
	if dir["agentCard"] != m.URL+"/v1/agents/{did}/card" {
		t.Fatalf("the market card's directory extension: %v", dir)
	}
}
