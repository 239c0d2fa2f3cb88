package httpapi

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/agentmarket/agentmarket/httpapi/httpsig"
	"github.com/agentmarket/agentmarket/market"
)

// access says what a route asks of a request's signature.
type access uint8

const (
	// public routes take a signature or none; an unsigned request is
	// anonymous, and the engine decides what an anonymous caller may read.
	public access = iota
	// signed routes change state and need a valid signature.
	signed
	// enrolling is registration: the request may be unsigned (the body
	// carries its own proof) and its key need not be registered yet.
	enrolling
)

// Problem codes of authentication failures. Each is a 401.
const (
	codeSignatureRequired   = "signature_required"
	codeSignatureMalformed  = "signature_malformed"
	codeSignatureIncomplete = "signature_incomplete"
	codeSignatureStale      = "signature_stale"
	codeUnknownKey          = "unknown_key"
	codeSignatureInvalid    = "signature_invalid"
	codeDigestMismatch      = "digest_mismatch"
	codeNonceReused         = "nonce_reused"
)

// maxNonceBytes bounds a signature's nonce.
const maxNonceBytes = 128

// requiredComponents must be covered by every signature; content-digest
// too when the request has a body.
var requiredComponents = []string{"@method", "@authority", "@path"}

func unauthenticated(code, format string, args ...any) error {
	return problem(market.Unauthenticated, code, fmt.Sprintf(format, args...))
}

// authenticated verifies the request's signature, if any, and puts the
// signer in the request's context as the market Principal.
func (s *server) authenticated(rt route, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateOf(r)
		sigs, err := httpsig.Parse(r.Header)
		if errors.Is(err, httpsig.ErrNoSignature) {
			if rt.access == signed {
				writeError(w, r, s.log, unauthenticated(codeSignatureRequired,
					"%s %s needs an RFC 9421 signature (Signature-Input and Signature); see docs/api.md", rt.method, rt.path))
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if err != nil {
			writeError(w, r, s.log, unauthenticated(codeSignatureMalformed, "%v", err))
			return
		}
		p, err := s.verify(r, sigs[0], st, rt.access == enrolling)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(market.NewContext(r.Context(), p)))
	})
}

// verify checks one signature against the server's policy and the
// signer's key, in order of cost: parameters, the clock, the key, the
// signature, the digest. The nonce is checked later, after the rate limit.
func (s *server) verify(r *http.Request, sig httpsig.Signature, st *requestState, enrolling bool) (market.Principal, error) {
	var p market.Principal
	if sig.KeyID == "" {
		return p, unauthenticated(codeSignatureMalformed, "the signature has no keyid; set it to your did:key")
	}
	if sig.Alg != "" && sig.Alg != httpsig.AlgorithmEd25519 {
		return p, unauthenticated(codeSignatureMalformed, "alg %q is not supported; use ed25519", truncate(sig.Alg, 40))
	}
	for _, c := range requiredComponents {
		if !sig.Covers(c) {
			return p, unauthenticated(codeSignatureIncomplete, "the signature must cover %s", c)
		}
	}
	if (len(st.body) > 0 || r.Header.Get("Content-Digest") != "") && !sig.Covers("content-digest") {
		return p, unauthenticated(codeSignatureIncomplete, "a request with a body must send Content-Digest and cover it")
	}
	if sig.Created.IsZero() || sig.Nonce == "" {
		return p, unauthenticated(codeSignatureIncomplete, "the signature needs the created and nonce parameters")
	}
	if len(sig.Nonce) > maxNonceBytes {
		return p, unauthenticated(codeSignatureMalformed, "the nonce exceeds %d bytes", maxNonceBytes)
	}
	now, window := s.now(), s.cfg.SignatureWindow
	if d := now.Sub(sig.Created); d > window || d < -window {
		return p, unauthenticated(codeSignatureStale, "the signature was created %s, more than %s from the server's clock %s",
			sig.Created.UTC().Format(time.RFC3339), window, now.UTC().Format(time.RFC3339))
	}
	if !sig.Expires.IsZero() && !now.Before(sig.Expires) {
		return p, unauthenticated(codeSignatureStale, "the signature expired at %s", sig.Expires.UTC().Format(time.RFC3339))
	}

	var pub ed25519.PublicKey
	id := market.AgentID(sig.KeyID)
	if id == s.operator {
		p.Operator, pub = true, s.operatorKey
	} else {
		pk, err := market.ParseDID(id)
		if err != nil {
			return p, unauthenticated(codeUnknownKey, "keyid %q is not a did:key", truncate(sig.KeyID, 80))
		}
		if !enrolling {
			if err := s.registered(r.Context(), id); err != nil {
				return p, err
			}
		}
		p.Agent, pub = id, pk.Ed25519()
	}

	if err := sig.Verify(r, pub); err != nil {
		switch {
		case errors.Is(err, httpsig.ErrBadSignature):
			return market.Principal{}, unauthenticated(codeSignatureInvalid, "the signature does not verify with %s's key", truncate(sig.KeyID, 80))
		case errors.Is(err, httpsig.ErrMissingComponent):
			return market.Principal{}, unauthenticated(codeSignatureIncomplete, "%v", err)
		}
		return market.Principal{}, unauthenticated(codeSignatureMalformed, "%v", err)
	}
	if sig.Covers("content-digest") {
		if err := httpsig.VerifyContentDigest(r.Header.Values("Content-Digest"), st.body); err != nil {
			if errors.Is(err, httpsig.ErrDigestMismatch) {
				return market.Principal{}, unauthenticated(codeDigestMismatch, "Content-Digest does not match the body")
			}
			return market.Principal{}, unauthenticated(codeSignatureMalformed, "Content-Digest: %v", err)
		}
	}
	st.signed = true
	st.caller = sig.KeyID
	st.nonce = sig.Nonce
	// A nonce need be remembered only while its created time would pass.
	st.nonceExpires = sig.Created.Add(window + time.Second)
	return p, nil
}

// registered returns an unknown_key error unless the agent is registered.
func (s *server) registered(ctx context.Context, id market.AgentID) error {
	if s.known.has(id) {
		return nil
	}
	_, err := s.svc.Agent(ctx, id)
	switch {
	case market.Is(err, market.NotExist):
		return unauthenticated(codeUnknownKey, "agent %s is not registered; register it with POST /v1/agents first", id)
	case err != nil:
		return fmt.Errorf("look up signer %s: %w", id, err)
	}
	s.known.add(id)
	return nil
}

// nonceChecked records a signed request's nonce in the shared store and
// refuses one that was used before: a replay, on this node or another.
func (s *server) nonceChecked(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, err := s.useNonce(r.Context(), stateOf(r), ""); err != nil {
			writeError(w, r, s.log, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// useNonce records a signed request's nonce, as nonceChecked does, and
// returns a nonce_reused problem for a replay; an unsigned request has no
// nonce. Given an idempotency key it also reads the key's record, in the
// same transaction: a POST or PUT then needs no read transaction of its
// own.
func (s *server) useNonce(ctx context.Context, st *requestState, idempotencyKey string) (rec market.IdempotencyRecord, found bool, err error) {
	if !st.signed {
		return rec, false, nil
	}
	reused := false
	err = s.store.Update(ctx, func(tx market.Tx) error {
		rec, found, reused = market.IdempotencyRecord{}, false, false
		if err := tx.UseNonce(market.AgentID(st.caller), st.nonce, st.nonceExpires); err != nil {
			reused = market.Is(err, market.Exist)
			return err
		}
		if idempotencyKey == "" {
			return nil
		}
		r, err := tx.Idempotency(idempotencyKey)
		switch {
		case err == nil:
			rec, found = r, true
		case !market.Is(err, market.NotExist):
			return fmt.Errorf("read idempotency record: %w", err)
		}
		return nil
	})
	switch {
	case err == nil:
		return rec, found, nil
	case reused:
		return rec, false, unauthenticated(codeNonceReused, "nonce %q was already used: the request is a replay", truncate(st.nonce, 40))
	}
	return rec, false, fmt.Errorf("record nonce: %w", err)
}

// knownAgents remembers registered agents, which are never removed, so
// that most signed requests skip the store lookup. It stops growing at
// its limit.
type knownAgents struct {
	mu    sync.RWMutex
	ids   map[market.AgentID]struct{}
	limit int
}

func newKnownAgents(limit int) *knownAgents {
	return &knownAgents{ids: make(map[market.AgentID]struct{}), limit: limit}
}

func (k *knownAgents) has(id market.AgentID) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	_, ok := k.ids[id]
	return ok
}

func (k *knownAgents) add(id market.AgentID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.ids) < k.limit {
		k.ids[id] = struct{}{}
	}
}

// remoteHost returns the client's address without its port.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
