package httpapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"
	"unicode"

	"github.com/agentmarket/agentmarket/market"
)

// role says which way a message travels. A request schema is strict (the
// decoder rejects unknown fields, and amounts must not be negative) and
// leaves out of "required" the fields the server fills in; a response
// schema lists every field the server always sends.
type role uint8

const (
	response role = iota
	request
)

// JSON Schema dialect of every schema.
const schemaDialect = "https://json-schema.org/draft/2020-12/schema"

// defsRef is where a standalone schema keeps its definitions; the OpenAPI
// document moves them to #/components/schemas/.
const defsRef = "#/$defs/"

// optionalInRequests lists, per request type, the fields a request may
// leave out although Go always sends them: the path or the server
// supplies them, or the market applies a default.
var optionalInRequests = map[reflect.Type][]string{
	reflect.TypeFor[market.IntentRequest]():   {"parameters"},
	reflect.TypeFor[market.Selection]():       {"mode"},
	reflect.TypeFor[market.Acceptance]():      {"policy"},
	reflect.TypeFor[market.BidRequest]():      {"intent"},
	reflect.TypeFor[market.CounterRequest]():  {"bid", "price_microcredits"},
	reflect.TypeFor[market.DeliveryRequest](): {"contract"},
	reflect.TypeFor[market.AcceptRequest]():   {"contract"},
	reflect.TypeFor[market.DisputeRequest]():  {"contract"},
	reflect.TypeFor[market.ReviewRequest]():   {"contract"},
	reflect.TypeFor[market.Mandate]():         {"agent"},
	reflect.TypeFor[market.Offer]():           {"id", "seller", "state", "created_at", "updated_at", "capacity"},
}

// enums lists the values of the market's string enumerations.
var enums = map[reflect.Type][]string{
	reflect.TypeFor[market.Role]():          {"buyer", "seller", "arbiter"},
	reflect.TypeFor[market.OfferState]():    {"active", "withdrawn"},
	reflect.TypeFor[market.IntentState]():   {"open", "selecting", "awarded", "cancelled", "expired"},
	reflect.TypeFor[market.BidState]():      {"active", "withdrawn", "expired", "won", "lost"},
	reflect.TypeFor[market.ContractState](): {"awarded", "delivered", "in_review", "settled", "refunded"},
}

// descriptions documents the schemas that need it most.
var descriptions = map[string]string{
	"IntentRequest": "An intent (a request for quotes), version 1. Its core is the seed's wire shape: " +
		`{"request_id":"req_98765_alpha","intent":"TRANSLATE_AND_FORMAT_DOCUMENT","parameters":{...},` +
		`"constraints":{"max_latency_ms":2500,"max_budget_microcredits":50,"minimum_reputation_score":0.95}}; ` +
		"the market adds bid and award windows, a selection policy, a round limit, an acceptance policy and a parent contract.",
	"RegistrationInput": "An agent's registration. proof is the agent's Ed25519 signature (base64) over market.RegistrationMessage.",
	"Problem":           "An RFC 9457 problem: every error response, with the market error's stable code and kind.",
}

var (
	didPattern = "^did:key:z[1-9A-HJ-NP-Za-km-z]+$"
	agentIDT   = reflect.TypeFor[market.AgentID]()
	publicKeyT = reflect.TypeFor[market.PublicKey]()
	durationT  = reflect.TypeFor[market.Duration]()
	timeT      = reflect.TypeFor[time.Time]()
	rawT       = reflect.TypeFor[json.RawMessage]()
)

// schemas generates JSON Schemas from the Go types of the messages, so
// that the documents cannot drift from what the decoder accepts.
type schemas struct {
	defs map[string]any
}

func newSchemas() *schemas { return &schemas{defs: map[string]any{}} }

// name returns a struct type's definition name in a role: its Go name for
// responses; for requests the same when it ends in "Request", else the
// Go name and "Input".
func name(t reflect.Type, r role) string {
	n := t.Name()
	if r == request && !strings.HasSuffix(n, "Request") {
		n += "Input"
	}
	return n
}

// of returns the schema of a type in a role, defining named structs.
func (g *schemas) of(t reflect.Type, r role) map[string]any {
	if e, ok := enums[t]; ok {
		return map[string]any{"type": "string", "enum": e}
	}
	switch t {
	case agentIDT, publicKeyT:
		return map[string]any{"type": "string", "pattern": didPattern, "description": "an Ed25519 did:key"}
	case durationT:
		return map[string]any{"anyOf": []any{
			map[string]any{"type": "string", "description": `a Go duration, such as "90s"`},
			map[string]any{"type": "integer", "minimum": 0, "description": "milliseconds"},
		}}
	case timeT:
		return map[string]any{"type": "string", "format": "date-time"}
	case rawT:
		return map[string]any{"description": "any JSON value"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.of(t.Elem(), r)
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": g.of(t.Elem(), r)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.of(t.Elem(), r)}
	case reflect.Struct:
		n := name(t, r)
		if _, ok := g.defs[n]; !ok {
			g.defs[n] = nil // mark it, for recursive types
			g.defs[n] = g.object(t, r)
		}
		return map[string]any{"$ref": defsRef + n}
	}
	return map[string]any{}
}

// object returns a struct's schema.
func (g *schemas) object(t reflect.Type, r role) map[string]any {
	props := map[string]any{}
	var required []string
	optional := map[string]bool{}
	if r == request {
		for _, f := range optionalInRequests[t] {
			optional[f] = true
		}
	}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			if f.Anonymous && !strings.Contains(tag, ",") && tag == "" {
				walk(f.Type)
				continue
			}
			n := jsonName(f)
			s := g.of(f.Type, r)
			omit := strings.Contains(tag, ",omitempty") || strings.Contains(tag, ",omitzero")
			if r == request && strings.HasSuffix(n, "_microcredits") {
				s["minimum"] = 0
			}
			if r == response && !omit && f.Type.Kind() == reflect.Slice && f.Type != rawT && f.Type.Elem().Kind() != reflect.Uint8 {
				s["type"] = []any{"array", "null"} // Go sends a nil slice as null
			}
			props[n] = s
			if !omit && !optional[n] {
				required = append(required, n)
			}
		}
	}
	walk(t)
	o := map[string]any{"type": "object", "title": name(t, r), "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	if r == request {
		o["additionalProperties"] = false
	}
	if d, ok := descriptions[name(t, r)]; ok {
		o["description"] = d
	}
	return o
}

// fileName returns the file a definition is served as under /v1/schemas/:
// kebab case and a version, such as "intent-request.v1.json".
func fileName(def string) string {
	var b strings.Builder
	for i, c := range def {
		if unicode.IsUpper(c) {
			if i > 0 {
				b.WriteByte('-')
			}
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String() + ".v1.json"
}

// standalone returns one definition as a self-contained schema document
// holding the definitions it refers to.
func (g *schemas) standalone(def string) map[string]any {
	doc := map[string]any{
		"$schema": schemaDialect,
		"$id":     "/v1/schemas/" + fileName(def),
	}
	for k, v := range g.defs[def].(map[string]any) {
		doc[k] = v
	}
	used := map[string]any{}
	var collect func(v any)
	collect = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if ref, ok := e.(string); k == "$ref" && ok {
					n := strings.TrimPrefix(ref, defsRef)
					if _, seen := used[n]; !seen {
						used[n] = g.defs[n]
						collect(g.defs[n])
					}
					continue
				}
				collect(e)
			}
		case []any:
			for _, e := range x {
				collect(e)
			}
		}
	}
	collect(g.defs[def])
	delete(used, def)
	if len(used) > 0 {
		doc["$defs"] = used
	}
	return doc
}

// rewriteRefs returns v with every $ref's prefix from replaced by to.
func rewriteRefs(v any, from, to string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if ref, ok := e.(string); k == "$ref" && ok && strings.HasPrefix(ref, from) {
				out[k] = to + strings.TrimPrefix(ref, from)
				continue
			}
			out[k] = rewriteRefs(e, from, to)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = rewriteRefs(e, from, to)
		}
		return out
	}
	return v
}
