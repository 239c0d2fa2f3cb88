package mcpserver

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// Bearer tokens let MCP clients that cannot sign each request (most
// desktop clients only send a static header) authenticate to /mcp. A token
// is a compact JWS (RFC 7515) with EdDSA, signed by the agent's own key:
// the market checks it with the public key in the agent's did:key and
// needs no shared secret. It is a bearer credential until it expires, so
// tokens are short-lived and bound to one market by their audience.

// MaxTokenLifetime is the longest a token may live.
const MaxTokenLifetime = 30 * 24 * time.Hour

type tokenHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

type tokenClaims struct {
	Sub string `json:"sub"`
	Aud string `json:"aud"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

// IssueToken returns a bearer token for key's agent, valid at audience
// (the market's base URL) from now for ttl, at most MaxTokenLifetime.
func IssueToken(key market.PrivateKey, audience string, now time.Time, ttl time.Duration) (string, error) {
	if ttl <= 0 || ttl > MaxTokenLifetime {
		return "", market.Errorf(market.Invalid, "invalid_ttl", "token lifetime must be positive and at most %s", MaxTokenLifetime)
	}
	did := string(key.Public().DID())
	h, _ := json.Marshal(tokenHeader{Alg: "EdDSA", Typ: "JWT", Kid: did})
	c, _ := json.Marshal(tokenClaims{Sub: did, Aud: audience, Iat: now.Unix(), Exp: now.Add(ttl).Unix()})
	input := b64(h) + "." + b64(c)
	return input + "." + b64(key.Sign([]byte(input))), nil
}

// VerifyToken returns the agent a token names when its signature, audience
// and lifetime hold at now.
func VerifyToken(token, audience string, now time.Time) (market.AgentID, error) {
	bad := func(msg string) (market.AgentID, error) {
		return "", market.Errorf(market.Unauthenticated, "invalid_token", "bearer token: %s", msg)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return bad("not a compact JWS")
	}
	var h tokenHeader
	var c tokenClaims
	if !unb64JSON(parts[0], &h) || !unb64JSON(parts[1], &c) {
		return bad("malformed header or claims")
	}
	if h.Alg != "EdDSA" || h.Kid != c.Sub {
		return bad("want alg EdDSA and kid equal to sub")
	}
	pub, err := market.ParseDID(market.AgentID(c.Sub))
	if err != nil {
		return bad("sub is not an Ed25519 did:key")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !pub.Verify([]byte(parts[0]+"."+parts[1]), sig) {
		return bad("signature does not verify")
	}
	switch t := now.Unix(); {
	case c.Aud != audience:
		return bad("issued for another market")
	case c.Exp <= t:
		return bad("expired")
	case c.Iat > t+60:
		return bad("issued in the future")
	case c.Exp-c.Iat > int64(MaxTokenLifetime/time.Second):
		return bad("lifetime too long")
	}
	return market.AgentID(c.Sub), nil
}

// BearerAuthenticator authenticates requests by an "Authorization: Bearer"
// token from IssueToken for audience, on the clock now.
func BearerAuthenticator(audience string, now func() time.Time) Authenticate {
	return func(r *http.Request) (market.AgentID, error) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			return "", market.Errorf(market.Unauthenticated, "missing_token", "send Authorization: Bearer <token from agentmarket mcp token>")
		}
		return VerifyToken(strings.TrimSpace(tok), audience, now())
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unb64JSON(s string, v any) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && json.Unmarshal(b, v) == nil
}
