package httpsig_test

import (
	"crypto/ed25519"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/agentmarket/agentmarket/httpapi/httpsig"
)

// FuzzParse feeds arbitrary Signature-Input and Signature fields to the
// parser. Whatever the bytes, it must not panic; what it accepts must
// yield a signature base; and re-signing what it accepted must parse back
// to the same components and parameters.
func FuzzParse(f *testing.F) {
	f.Add(b26Input, b26Signature)
	f.Add(`sig1=("@method" "@authority" "@path" "content-digest");created=1700000000;nonce="abc";keyid="did:key:z6Mk";alg="ed25519"`, `sig1=:AAAA:`)
	f.Add(`sig1=("@query");expires=1;tag="x";foo=?1`, `sig1=:AA==:`)
	f.Add(`a=(), b=("@path")`, `b=:AA==:, a=:AA==:`)
	f.Add(`sig1=("@method";sf)`, `sig1=:AA==:`)
	f.Add(`sig1=("x" "x")`, `sig1=:AA==:`)
	f.Add(`sig1=(`, `sig1=:`)
	_, priv, _ := ed25519.GenerateKey(nil)
	f.Fuzz(func(t *testing.T, input, sig string) {
		h := http.Header{}
		h.Set("Signature-Input", input)
		h.Set("Signature", sig)
		sigs, err := httpsig.Parse(h)
		if err != nil {
			if !errors.Is(err, httpsig.ErrMalformed) && !errors.Is(err, httpsig.ErrNoSignature) {
				t.Fatalf("Parse error %v wraps neither ErrMalformed nor ErrNoSignature", err)
			}
			return
		}
		r := readRFCRequest(t)
		for _, s := range sigs {
			if _, err := s.Base(r); err != nil && !errors.Is(err, httpsig.ErrMissingComponent) && !errors.Is(err, httpsig.ErrMalformed) {
				t.Fatalf("Base: %v", err)
			}
			if err := s.Verify(r, priv.Public().(ed25519.PublicKey)); err == nil {
				t.Fatalf("a fuzzed signature verified: %q %q", input, sig)
			}
		}
		p := sigs[0].Params
		p.Created, p.Expires = p.Created.UTC(), p.Expires.UTC()
		if p.Created.Unix() < 0 || p.Expires.Unix() < 0 {
			return // Params drop non-positive times as absent
		}
		r2 := readRFCRequest(t)
		if err := httpsig.Sign(r2, "sig1", p, priv); err != nil {
			if errors.Is(err, httpsig.ErrMissingComponent) || errors.Is(err, httpsig.ErrMalformed) {
				return
			}
			t.Fatalf("Sign: %v", err)
		}
		again, err := httpsig.Parse(r2.Header)
		if err != nil {
			t.Fatalf("re-signed fields do not parse: %v\n%s\n%s", err, r2.Header.Get("Signature-Input"), r2.Header.Get("Signature"))
		}
		q := again[0].Params
		if !slices.Equal(q.Components, p.Components) || q.Nonce != p.Nonce || q.KeyID != p.KeyID || q.Alg != p.Alg || q.Tag != p.Tag ||
			!q.Created.Equal(p.Created) || !q.Expires.Equal(p.Expires) {
			t.Fatalf("round trip changed the parameters: %+v, want %+v", q, p)
		}
		if err := again[0].Verify(r2, priv.Public().(ed25519.PublicKey)); err != nil {
			t.Fatalf("re-signed request does not verify: %v", err)
		}
	})
}

// FuzzVerifyContentDigest checks that arbitrary Content-Digest values
// never panic and that a value matches at most one body.
func FuzzVerifyContentDigest(f *testing.F) {
	f.Add(httpsig.ContentDigest([]byte(`{}`)), []byte(`{}`))
	f.Add(`sha-256=:AAAA:, sha-512=:BBBB:`, []byte(`x`))
	f.Add(`sha-256="x"`, []byte(nil))
	f.Fuzz(func(t *testing.T, value string, body []byte) {
		if httpsig.VerifyContentDigest([]string{value}, body) != nil {
			return
		}
		// A digest that matched this body must not match another.
		other := append(append([]byte(nil), body...), 'x')
		if err := httpsig.VerifyContentDigest([]string{value}, other); err == nil {
			t.Fatalf("%q matched both %q and %q", value, body, other)
		}
	})
}
