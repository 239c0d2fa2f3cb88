// Package a2a owns agentmarket's Agent-to-Agent (A2A v1.0) Agent Cards:
// an agent's card, whose skills are its offers; the market's card, whose
// skills are its operations; and their signatures: JWS (RFC 7515) with
// EdDSA over Ed25519, computed over the card's RFC 8785 canonical JSON
// with the signatures member left out, as A2A specifies.
//
// The types use A2A v1.0's field names. They are declared here rather
// than taken from the A2A SDK so that the package needs only the standard
// library and the market's keys; verification works on the raw JSON, so a
// card with members these types do not know still verifies exactly.
package a2a

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/agentmarket/agentmarket/market"
)

// ProtocolVersion is the A2A version the cards follow.
const ProtocolVersion = "1.0"

// WellKnownPath is where A2A clients look for a host's card.
const WellKnownPath = "/.well-known/agent-card.json"

// ProtocolBinding names how an agent on the market is reached: through
// the market's HTTP API (an intent addressed to its offers), signed per
// RFC 9421. A2A treats bindings as open strings.
const ProtocolBinding = "AGENTMARKET+HTTP"

// IdentityExtension is the URI of the card extension that binds a card to
// its agent's did:key on a market.
const IdentityExtension = "urn:agentmarket:a2a:identity:v1"

// DirectoryExtension is the URI of the market card's extension that says
// where the agents trading on it are listed: each agent's card (its
// skills its offers) and its offers, by URL template.
const DirectoryExtension = "urn:agentmarket:a2a:directory:v1"

// AgentCard is an A2A v1.0 Agent Card.
type AgentCard struct {
	Name                 string                `json:"name"`
	Description          string                `json:"description"`
	SupportedInterfaces  []AgentInterface      `json:"supportedInterfaces"`
	Provider             *AgentProvider        `json:"provider,omitempty"`
	Version              string                `json:"version"`
	DocumentationURL     string                `json:"documentationUrl,omitempty"`
	IconURL              string                `json:"iconUrl,omitempty"`
	Capabilities         AgentCapabilities     `json:"capabilities"`
	SecuritySchemes      map[string]any        `json:"securitySchemes,omitempty"`
	SecurityRequirements []map[string][]string `json:"securityRequirements,omitempty"`
	DefaultInputModes    []string              `json:"defaultInputModes"`
	DefaultOutputModes   []string              `json:"defaultOutputModes"`
	Skills               []AgentSkill          `json:"skills"`
	Signatures           []AgentCardSignature  `json:"signatures,omitempty"`
}

// AgentInterface is one URL and protocol binding that reaches the agent.
type AgentInterface struct {
	URL             string `json:"url"`
	ProtocolBinding string `json:"protocolBinding"`
	ProtocolVersion string `json:"protocolVersion"`
	Tenant          string `json:"tenant,omitempty"`
}

// AgentProvider is who runs the agent.
type AgentProvider struct {
	Organization string `json:"organization"`
	URL          string `json:"url"`
}

// AgentCapabilities are the optional A2A features the agent supports.
type AgentCapabilities struct {
	Streaming         bool             `json:"streaming,omitempty"`
	PushNotifications bool             `json:"pushNotifications,omitempty"`
	ExtendedAgentCard bool             `json:"extendedAgentCard,omitempty"`
	Extensions        []AgentExtension `json:"extensions,omitempty"`
}

// AgentExtension declares a protocol extension.
type AgentExtension struct {
	URI         string         `json:"uri"`
	Description string         `json:"description,omitempty"`
	Required    bool           `json:"required,omitempty"`
	Params      map[string]any `json:"params,omitempty"`
}

// AgentSkill is one thing the agent does.
type AgentSkill struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Tags        []string `json:"tags"`
	Examples    []string `json:"examples,omitempty"`
	InputModes  []string `json:"inputModes,omitempty"`
	OutputModes []string `json:"outputModes,omitempty"`
}

// AgentCardSignature is one JWS over the card, in the JSON form of RFC
// 7515 with a detached payload.
type AgentCardSignature struct {
	Protected string         `json:"protected"`
	Signature string         `json:"signature"`
	Header    map[string]any `json:"header,omitempty"`
}

var jsonModes = []string{"application/json"}

// signatureScheme is how the market authenticates agents, for cards.
var signatureScheme = map[string]any{
	"agentmarketSignature": map[string]any{
		"httpAuthSecurityScheme": map[string]any{
			"scheme":      "Signature",
			"description": "HTTP Message Signatures (RFC 9421) with the agent's Ed25519 did:key over method, path, Content-Digest, created and nonce.",
		},
	},
}

// ForAgent returns the card of agent a on the market at baseURL: its
// skills are its active offers, one skill per offer. marketDID is the
// did:key of the market's receipt key, so a client can check receipts.
func ForAgent(a market.Agent, offers []market.Offer, baseURL string, marketDID market.AgentID) AgentCard {
	name := a.Name
	if name == "" {
		name = string(a.ID)
	}
	c := AgentCard{
		Name:        name,
		Description: fmt.Sprintf("Agent %s trading on agentmarket. Hire it by posting an intent of one of its skills' types; payment is escrowed by the market.", a.ID),
		SupportedInterfaces: []AgentInterface{
			{URL: baseURL + "/v1", ProtocolBinding: ProtocolBinding, ProtocolVersion: ProtocolVersion},
		},
		Version: "1",
		Capabilities: AgentCapabilities{Extensions: []AgentExtension{{
			URI: IdentityExtension, Description: "The agent's did:key identity and the market it trades on.",
			Params: map[string]any{"did": string(a.ID), "market": string(marketDID), "roles": roleNames(a.Roles)},
		}}},
		SecuritySchemes:      signatureScheme,
		SecurityRequirements: []map[string][]string{{"agentmarketSignature": {}}},
		DefaultInputModes:    jsonModes,
		DefaultOutputModes:   jsonModes,
		Skills:               []AgentSkill{},
	}
	if a.Operator != "" {
		c.Provider = &AgentProvider{Organization: a.Operator, URL: baseURL}
	}
	for _, o := range offers {
		if o.Seller != a.ID || o.State == market.OfferWithdrawn {
			continue
		}
		desc := fmt.Sprintf("Serves %s intents from %d microcredits, delivering within %d ms.", o.Intent, o.BasePriceMicrocredits, o.LatencyMs)
		if o.UnitPriceMicrocredits > 0 {
			desc += fmt.Sprintf(" Plus %d microcredits per %s.", o.UnitPriceMicrocredits, o.Unit)
		}
		tags := append([]string{o.Intent, "price_microcredits:" + strconv.FormatInt(o.BasePriceMicrocredits, 10)}, o.Tags...)
		s := AgentSkill{ID: o.ID, Name: o.Intent, Description: desc, Tags: tags}
		if len(o.ParameterSchema) > 0 {
			s.Examples = []string{"parameters matching JSON Schema " + string(o.ParameterSchema)}
		}
		c.Skills = append(c.Skills, s)
	}
	return c
}

func roleNames(rs []market.Role) []any {
	out := make([]any, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}

// operations are the market's own skills, in the order a trade uses them.
var operations = []struct{ id, name, desc string }{
	{"register", "Register", "Register an agent: an Ed25519 did:key and a proof of possession."},
	{"find_offers", "Find offers", "Find sellers' offers for an intent type, ranked by price, latency and reputation."},
	{"publish_offer", "Publish an offer", "Advertise a service: intent type, parameter schema, price, latency, capacity."},
	{"post_intent", "Post an intent", "Request quotes for a task with a budget and constraints; eligible sellers bid."},
	{"bid", "Bid", "Place a sealed bid on an open intent."},
	{"counter", "Counter", "Negotiate a bid's price in alternating rounds."},
	{"award", "Award", "Award a bid; price and fees are held in escrow within the buyer's mandate."},
	{"deliver", "Deliver", "Deliver a contract's result; automatic checks settle at once."},
	{"accept", "Accept", "Accept a delivery and release the escrow."},
	{"dispute", "Dispute", "Reject a delivery; a bonded arbiter decides."},
	{"balance", "Balance", "Read a wallet: posted, held, available."},
	{"market_stats", "Market stats", "Price index, demand, supply and fills per intent type."},
	{"verify_receipt", "Verify a receipt", "Check a settlement receipt's signature and hash chain with the market key."},
}

// ForMarket returns the market's own card: its skills are the market's
// operations, reachable over its HTTP API and its MCP endpoint, and its
// directory extension points at every agent's card.
func ForMarket(baseURL string, marketDID market.AgentID, version string) AgentCard {
	c := AgentCard{
		Name:        "agentmarket",
		Description: "A marketplace where AI agents trade services: did:key identities, integer-microcredit wallets, escrowed contracts, verification, arbiters and reputation, with operator-set spending mandates.",
		SupportedInterfaces: []AgentInterface{
			{URL: baseURL + "/v1", ProtocolBinding: ProtocolBinding, ProtocolVersion: ProtocolVersion},
			{URL: baseURL + "/mcp", ProtocolBinding: "MCP", ProtocolVersion: ProtocolVersion},
		},
		Version: version,
		Capabilities: AgentCapabilities{Streaming: true, Extensions: []AgentExtension{{
			URI: IdentityExtension, Description: "The market's receipt-signing key.",
			Params: map[string]any{"did": string(marketDID), "market": string(marketDID)},
		}, {
			URI: DirectoryExtension, Description: "The agents trading here: each one's A2A card (skills: its active offers, signed by this market's key), its offers, and offers by intent type.",
			Params: map[string]any{
				"agentCard":   baseURL + "/v1/agents/{did}/card",
				"agentOffers": baseURL + "/v1/agents/{did}/offers",
				"findOffers":  baseURL + "/v1/offers?intent={intent}",
			},
		}}},
		SecuritySchemes:      signatureScheme,
		SecurityRequirements: []map[string][]string{{"agentmarketSignature": {}}},
		DefaultInputModes:    jsonModes,
		DefaultOutputModes:   jsonModes,
	}
	for _, op := range operations {
		c.Skills = append(c.Skills, AgentSkill{ID: op.id, Name: op.name, Description: op.desc, Tags: []string{"market"}})
	}
	return c
}

// Operations returns the ids of the market card's skills.
func Operations() []string {
	ids := make([]string, len(operations))
	for i, op := range operations {
		ids[i] = op.id
	}
	return slices.Clip(ids)
}
