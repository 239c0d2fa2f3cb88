package httpapi_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/agentmarket/agentmarket/httpapi/httpapitest"
	"github.com/agentmarket/agentmarket/market"
)

// FuzzAuthenticate sends a state-changing request with arbitrary
// signature fields and body through the whole middleware. No such request
// can hold a valid signature, so each must be refused with a 4xx: never
// accepted, never a 500.
func FuzzAuthenticate(f *testing.F) {
	m := httpapitest.New(f, httpapitest.Options{})
	mustAgent(f, m.URL, "s", "", market.RoleSeller)
	valid := rawRequest(f, "POST", m.URL+"/v1/offers", []byte(`{"intent":"X"}`), signing{key: m.Operator})
	f.Add(valid.Header.Get("Signature-Input"), valid.Header.Get("Signature"), valid.Header.Get("Content-Digest"), []byte(`{"intent":"X"}`))
	f.Add(`sig1=("@method" "@authority" "@path");created=1;nonce="n";keyid="did:key:z6Mk"`, `sig1=:AAAA:`, ``, []byte(nil))
	f.Add(`sig1=();keyid=""`, `sig1=:=:`, `sha-256=:AA==:`, []byte(`{}`))
	f.Fuzz(func(t *testing.T, input, sig, digest string, body []byte) {
		r := httptest.NewRequest("POST", "/v1/offers", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", "k")
		r.Header.Set("Signature-Input", input)
		r.Header.Set("Signature", sig)
		r.Header.Set("Content-Digest", digest)
		w := httptest.NewRecorder()
		m.Handler.ServeHTTP(w, r)
		if w.Code < 400 || w.Code >= 500 {
			t.Fatalf("fuzzed signature got %d %s", w.Code, w.Body)
		}
		if w.Code != http.StatusUnauthorized && w.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("fuzzed signature got %d %s, want 401", w.Code, w.Body)
		}
	})
}
