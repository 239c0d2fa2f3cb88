package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/agentmarket/agentmarket/a2a"
	"github.com/agentmarket/agentmarket/market"
)

// documents are the API's descriptions, generated once from the route
// table and the message types: the OpenAPI document, the JSON Schemas
// and the routes the agent card lists.
type documents struct {
	openapi []byte
	schemas map[string][]byte // by file name
	index   []byte
	skills  []skill
}

// skill is an operation as the agent card lists it.
type skill struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Tags        []string `json:"tags"`
}

var pathParamRE = regexp.MustCompile(`\{([a-z_]+)\}`)

// build generates every document from the routes.
func (d *documents) build(rts []route) error {
	g := newSchemas()
	g.of(reflect.TypeFor[Problem](), response)
	paths := map[string]map[string]any{}
	for _, rt := range rts {
		op := map[string]any{
			"operationId": rt.op,
			"summary":     rt.summary,
			"tags":        []string{rt.tag},
			"responses":   responses(g, rt),
		}
		var params []any
		for _, m := range pathParamRE.FindAllStringSubmatch(rt.path, -1) {
			typ := "string"
			if m[1] == "seq" {
				typ = "integer"
			}
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": typ}})
		}
		for _, q := range rt.query {
			s := map[string]any{"type": q.typ}
			if q.typ == "duration" {
				s = map[string]any{"type": "string", "description": `a Go duration such as "30s", or milliseconds`}
			}
			params = append(params, map[string]any{"name": q.name, "in": "query", "description": q.desc, "schema": s})
		}
		if rt.method == http.MethodPost || rt.method == http.MethodPut {
			params = append(params, map[string]any{"name": "Idempotency-Key", "in": "header", "required": rt.access == signed,
				"description": "a unique key per logical request, reused on its retries; see docs/api.md",
				"schema":      map[string]any{"type": "string", "minLength": 1, "maxLength": maxIdempotencyKeyBytes}})
		}
		if rt.stream {
			params = append(params, map[string]any{"name": "Last-Event-ID", "in": "header",
				"description": "resume a stream after this event seq", "schema": map[string]any{"type": "string"}})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if rt.in != nil {
			ref := g.of(reflect.TypeOf(rt.in), request)
			def := g.defs[strings.TrimPrefix(ref["$ref"].(string), defsRef)].(map[string]any)
			_, hasRequired := def["required"]
			op["requestBody"] = map[string]any{"required": hasRequired,
				"content": map[string]any{"application/json": map[string]any{"schema": ref}}}
		}
		switch rt.access {
		case signed:
			op["security"] = []any{map[string]any{"httpSignature": []string{}}}
		default:
			op["security"] = []any{map[string]any{}, map[string]any{"httpSignature": []string{}}}
		}
		if paths[rt.path] == nil {
			paths[rt.path] = map[string]any{}
		}
		paths[rt.path][strings.ToLower(rt.method)] = op
		if rt.tag != "meta" {
			d.skills = append(d.skills, skill{ID: rt.op, Name: strings.ReplaceAll(rt.op, "_", " "),
				Description: fmt.Sprintf("%s (%s %s)", rt.summary, rt.method, rt.path), Tags: []string{rt.tag}})
		}
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":   "agentmarket",
			"version": "1",
			"description": "A marketplace where AI agents trade services: identities, wallets in integer microcredits, " +
				"escrowed contracts, verification and reputation. Requests that change state are signed with RFC 9421 " +
				"HTTP Message Signatures (Ed25519, keyid = the agent's did:key); errors are RFC 9457 problems. See docs/api.md.",
		},
		"jsonSchemaDialect": schemaDialect,
		"paths":             paths,
		"components": map[string]any{
			"schemas": g.defs,
			"securitySchemes": map[string]any{
				"httpSignature": map[string]any{
					"type": "http", "scheme": "Signature",
					"description": "RFC 9421 HTTP Message Signatures with alg ed25519: Signature-Input and Signature " +
						"covering @method, @authority, @path and content-digest (RFC 9530, sha-256) when there is a body, " +
						"with the created and nonce parameters and keyid set to the signer's did:key.",
				},
			},
		},
	}
	// Round-trip the document through JSON, so that the references are
	// rewritten wherever they sit, whatever the Go types around them.
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("encode openapi: %w", err)
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return fmt.Errorf("decode openapi: %w", err)
	}
	if d.openapi, err = json.MarshalIndent(rewriteRefs(generic, defsRef, "#/components/schemas/"), "", "  "); err != nil {
		return fmt.Errorf("encode openapi: %w", err)
	}
	d.schemas = map[string][]byte{}
	var names []string
	for def := range g.defs {
		b, err := json.MarshalIndent(g.standalone(def), "", "  ")
		if err != nil {
			return fmt.Errorf("encode schema %s: %w", def, err)
		}
		d.schemas[fileName(def)] = b
		names = append(names, fileName(def))
	}
	sort.Strings(names)
	type entry struct {
		Name string `json:"name"`
		URL  string `json:"url"`
	}
	list := make([]entry, len(names))
	for i, n := range names {
		list[i] = entry{n, "/v1/schemas/" + n}
	}
	if d.index, err = json.MarshalIndent(list, "", "  "); err != nil {
		return fmt.Errorf("encode schema index: %w", err)
	}
	return nil
}

// responses describes a route's success and its problems.
func responses(g *schemas, rt route) map[string]any {
	ok := map[string]any{"description": http.StatusText(rt.status)}
	content := map[string]any{}
	switch {
	case rt.out != nil:
		content["application/json"] = map[string]any{"schema": g.of(reflect.TypeOf(rt.out), response)}
	case rt.status != http.StatusNoContent:
		content["application/json"] = map[string]any{"schema": map[string]any{"type": "object"}}
	}
	if rt.stream {
		content["text/event-stream"] = map[string]any{"schema": map[string]any{"type": "string",
			"description": "server-sent events: id is the event's seq, event its type, data the event as JSON"}}
	}
	if len(content) > 0 {
		ok["content"] = content
	}
	problem := map[string]any{"description": "a problem: see docs/api.md for the codes",
		"content": map[string]any{"application/problem+json": map[string]any{"schema": map[string]any{"$ref": defsRef + "Problem"}}}}
	return map[string]any{fmt.Sprint(rt.status): ok, "default": problem}
}

func handleOpenAPI(d *documents) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		return writeDocument(w, "application/json", d.openapi)
	}
}

func handleSchemaIndex(d *documents) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		return writeDocument(w, "application/json", d.index)
	}
}

func handleSchema(d *documents) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		b, ok := d.schemas[r.PathValue("name")]
		if !ok {
			return problem(market.NotExist, "schema_not_found", fmt.Sprintf("no schema %q; GET /v1/schemas lists them", truncate(r.PathValue("name"), 80)))
		}
		return writeDocument(w, "application/schema+json", b)
	}
}

func writeDocument(w http.ResponseWriter, contentType string, b []byte) error {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, err := w.Write(b)
	return err
}

// agentCard is the market's A2A agent card: what it is, where it listens,
// what it does and how callers authenticate.
type agentCard struct {
	ProtocolVersion    string         `json:"protocolVersion"`
	Name               string         `json:"name"`
	Description        string         `json:"description"`
	URL                string         `json:"url"`
	PreferredTransport string         `json:"preferredTransport"`
	Version            string         `json:"version"`
	DocumentationURL   string         `json:"documentationUrl"`
	Provider           map[string]any `json:"provider"`
	Capabilities       map[string]any `json:"capabilities"`
	DefaultInputModes  []string       `json:"defaultInputModes"`
	DefaultOutputModes []string       `json:"defaultOutputModes"`
	Skills             []skill        `json:"skills"`
	SecuritySchemes    map[string]any `json:"securitySchemes"`
	Security           []any          `json:"security"`
}

// baseURL is the API's public base URL: publicURL if set, else the
// request's own scheme and host.
func baseURL(r *http.Request, publicURL string) string {
	if base := strings.TrimSuffix(publicURL, "/"); base != "" {
		return base
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// handleAgentsCard serves an agent's A2A card, built from its active
// offers and signed with the market's key: the market attests what it
// knows of the agent. Without a market key the card is unsigned. An
// agent's self-signed card is what "agent run --card" writes.
func handleAgentsCard(svc market.Service, publicURL string, key market.PrivateKey) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		id := market.AgentID(r.PathValue("id"))
		a, err := svc.Agent(r.Context(), id)
		if err != nil {
			return err
		}
		offers, err := svc.AgentOffers(r.Context(), id)
		if err != nil {
			return err
		}
		var marketDID market.AgentID
		if !key.IsZero() {
			marketDID = key.Public().DID()
		}
		card := a2a.ForAgent(a, offers, baseURL(r, publicURL), marketDID)
		if !key.IsZero() {
			if card, err = a2a.Sign(card, key); err != nil {
				return fmt.Errorf("sign agent card: %w", err)
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		return encode(w, http.StatusOK, card)
	}
}

func handleAgentCard(d *documents, publicURL string, key market.PrivateKey) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		base := baseURL(r, publicURL)
		if !key.IsZero() {
			// The A2A v1.0 card, signed: its skills are the market's operations.
			card, err := a2a.Sign(a2a.ForMarket(base, key.Public().DID(), "1"), key)
			if err != nil {
				return fmt.Errorf("sign agent card: %w", err)
			}
			return encode(w, http.StatusOK, card)
		}
		card := agentCard{
			ProtocolVersion:    "0.3.0",
			Name:               "agentmarket",
			Description:        "A marketplace where AI agents trade services with escrow, verification and reputation. Buyers post intents, sellers bid, contracts settle in integer microcredits.",
			URL:                base + "/v1",
			PreferredTransport: "HTTP+JSON",
			Version:            "1",
			DocumentationURL:   base + "/v1/openapi.json",
			Provider:           map[string]any{"organization": "agentmarket", "url": base},
			Capabilities:       map[string]any{"streaming": true, "pushNotifications": false},
			DefaultInputModes:  []string{"application/json"},
			DefaultOutputModes: []string{"application/json", "text/event-stream"},
			Skills:             d.skills,
			SecuritySchemes: map[string]any{"httpSignature": map[string]any{
				"type": "http", "scheme": "Signature",
				"description": "RFC 9421 HTTP Message Signatures, alg ed25519, keyid = the agent's did:key; see " + base + "/v1/openapi.json",
			}},
			Security: []any{map[string]any{"httpSignature": []string{}}},
		}
		return encode(w, http.StatusOK, card)
	}
}
