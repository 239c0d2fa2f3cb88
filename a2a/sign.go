package a2a

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/agentmarket/agentmarket/market"
)

// ErrUnsigned reports a card that carries no signature by the key asked.
var ErrUnsigned = errors.New("a2a: card has no signature by this key")

// ErrBadSignature reports a signature that does not verify: the card was
// changed after signing, or was signed by another key.
var ErrBadSignature = errors.New("a2a: card signature does not verify")

// protectedHeader is the JWS protected header of a card signature.
type protectedHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
	Kid string `json:"kid"`
}

// Sign appends a signature by key to the card and returns it. The
// signature is a JWS with EdDSA whose detached payload is the card's
// canonical JSON without its signatures, and whose key id is the key's
// did:key.
func Sign(c AgentCard, key market.PrivateKey) (AgentCard, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return c, fmt.Errorf("a2a: encode card: %w", err)
	}
	sig, err := signRaw(raw, key)
	if err != nil {
		return c, err
	}
	c.Signatures = append(append([]AgentCardSignature(nil), c.Signatures...), sig)
	return c, nil
}

func signRaw(raw []byte, key market.PrivateKey) (AgentCardSignature, error) {
	payload, err := signingPayload(raw)
	if err != nil {
		return AgentCardSignature{}, err
	}
	h, err := json.Marshal(protectedHeader{Alg: "EdDSA", Typ: "JOSE", Kid: string(key.Public().DID())})
	if err != nil {
		return AgentCardSignature{}, err
	}
	h, err = Canonicalize(h)
	if err != nil {
		return AgentCardSignature{}, err
	}
	protected := b64(h)
	sig := key.Sign(signingInput(protected, payload))
	return AgentCardSignature{Protected: protected, Signature: b64(sig)}, nil
}

// Verify checks that the card JSON, exactly as received, carries a valid
// signature by key. It works on the raw bytes so that members this
// package does not know are covered too.
func Verify(cardJSON []byte, key market.PublicKey) error {
	var env struct {
		Signatures []AgentCardSignature `json:"signatures"`
	}
	if err := json.Unmarshal(cardJSON, &env); err != nil {
		return fmt.Errorf("a2a: card is not JSON: %w", err)
	}
	payload, err := signingPayload(cardJSON)
	if err != nil {
		return err
	}
	did := string(key.DID())
	found := false
	for _, s := range env.Signatures {
		hb, err := base64.RawURLEncoding.DecodeString(s.Protected)
		if err != nil {
			continue
		}
		var h protectedHeader
		if json.Unmarshal(hb, &h) != nil || h.Kid != did {
			continue
		}
		found = true
		if h.Alg != "EdDSA" {
			return fmt.Errorf("%w: alg %q, want EdDSA", ErrBadSignature, h.Alg)
		}
		sig, err := base64.RawURLEncoding.DecodeString(s.Signature)
		if err == nil && key.Verify(signingInput(s.Protected, payload), sig) {
			return nil
		}
	}
	if !found {
		return ErrUnsigned
	}
	return ErrBadSignature
}

// VerifyCard checks a card value; it is Verify on the card's JSON.
func VerifyCard(c AgentCard, key market.PublicKey) error {
	raw, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("a2a: encode card: %w", err)
	}
	return Verify(raw, key)
}

// signingPayload returns the canonical JSON of the card with its
// signatures member removed.
func signingPayload(cardJSON []byte) ([]byte, error) {
	// Canonicalize refuses duplicate member names at every depth, so that
	// no two parsers can read one signed card two ways.
	if _, err := Canonicalize(cardJSON); err != nil {
		return nil, fmt.Errorf("a2a: %w", err)
	}
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(cardJSON))
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("a2a: card is not a JSON object: %w", err)
	}
	delete(obj, "signatures")
	stripped, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	// The member values stay raw JSON, so nothing is lost to a Go type.
	return Canonicalize(stripped)
}

// signingInput is the JWS signing input: ASCII(protected || '.' ||
// BASE64URL(payload)).
func signingInput(protected string, payload []byte) []byte {
	return []byte(protected + "." + b64(payload))
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
