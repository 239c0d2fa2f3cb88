package httpsig_test

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/httpapi/httpsig"
)

// The test key of RFC 9421 appendix B.1.4, "test-key-ed25519".
const (
	rfcPublicKey = `-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----`
	rfcPrivateKey = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----`
)

// rfcRequest is the test-request message of RFC 9421 appendix B.2.
const rfcRequest = "POST /foo?param=Value&Pet=dog HTTP/1.1\r\n" +
	"Host: example.com\r\n" +
	"Date: Tue, 20 Apr 2021 02:07:55 GMT\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Digest: sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\r\n" +
	"Content-Length: 18\r\n" +
	"\r\n" +
	`{"hello": "world"}`

// The signature of appendix B.2.6, with its base.
const (
	b26Input     = `sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"`
	b26Signature = `sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:`
	b26Base      = `"date": Tue, 20 Apr 2021 02:07:55 GMT
"@method": POST
"@path": /foo
"@authority": example.com
"content-type": application/json
"content-length": 18
"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"`
)

func rfcKeys(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pb, _ := pem.Decode([]byte(rfcPublicKey))
	pub, err := x509.ParsePKIXPublicKey(pb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := pem.Decode([]byte(rfcPrivateKey))
	priv, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pub.(ed25519.PublicKey), priv.(ed25519.PrivateKey)
}

// readRFCRequest parses the test request as a server receives it.
func readRFCRequest(t *testing.T) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(rfcRequest)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRFC9421AppendixB26(t *testing.T) {
	pub, priv := rfcKeys(t)

	t.Run("VerifiesTheRFCSignature", func(t *testing.T) {
		r := readRFCRequest(t)
		r.Header.Set("Signature-Input", b26Input)
		r.Header.Set("Signature", b26Signature)
		sigs, err := httpsig.Parse(r.Header)
		if err != nil {
			t.Fatal(err)
		}
		if len(sigs) != 1 || sigs[0].Label != "sig-b26" || sigs[0].KeyID != "test-key-ed25519" || sigs[0].Created.Unix() != 1618884473 {
			t.Fatalf("parsed %+v", sigs)
		}
		base, err := sigs[0].Base(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(base) != b26Base {
			t.Fatalf("signature base:\n%s\nwant:\n%s", base, b26Base)
		}
		if err := sigs[0].Verify(r, pub); err != nil {
			t.Fatalf("the RFC's signature does not verify: %v", err)
		}
	})

	t.Run("SigningReproducesTheRFCSignature", func(t *testing.T) {
		r := readRFCRequest(t)
		p := httpsig.Params{
			Components: []string{"date", "@method", "@path", "@authority", "content-type", "content-length"},
			Created:    time.Unix(1618884473, 0),
			KeyID:      "test-key-ed25519",
		}
		if err := httpsig.Sign(r, "sig-b26", p, priv); err != nil {
			t.Fatal(err)
		}
		if got := r.Header.Get("Signature-Input"); got != b26Input {
			t.Errorf("Signature-Input %s\nwant %s", got, b26Input)
		}
		if got := r.Header.Get("Signature"); got != b26Signature {
			t.Errorf("Signature %s\nwant %s", got, b26Signature)
		}
	})

	t.Run("ATamperedRequestFails", func(t *testing.T) {
		r := readRFCRequest(t)
		r.Header.Set("Signature-Input", b26Input)
		r.Header.Set("Signature", b26Signature)
		r.Method = http.MethodPut
		sigs, err := httpsig.Parse(r.Header)
		if err != nil {
			t.Fatal(err)
		}
		if err := sigs[0].Verify(r, pub); !errors.Is(err, httpsig.ErrBadSignature) {
			t.Fatalf("got %v, want ErrBadSignature", err)
		}
	})
}

func TestContentDigest(t *testing.T) {
	body := []byte(`{"hello": "world"}`)
	// RFC 9530 section 2 gives this sha-256 digest of the same content.
	const want = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
	if got := httpsig.ContentDigest(body); got != want {
		t.Fatalf("ContentDigest = %s, want %s", got, want)
	}
	sha512 := readRFCRequest(t).Header.Get("Content-Digest")
	cases := []struct {
		name   string
		values []string
		body   []byte
		want   error
	}{
		{"SHA256Matches", []string{want}, body, nil},
		{"BothMatch", []string{want, sha512}, body, nil},
		{"OnlySHA512IsNotEnough", []string{sha512}, body, httpsig.ErrDigestMissing},
		{"Absent", nil, body, httpsig.ErrDigestMissing},
		{"OtherBody", []string{want}, []byte(`{"hello": "there"}`), httpsig.ErrDigestMismatch},
		{"SHA512Mismatch", []string{want, "sha-512=:AAAA:"}, body, httpsig.ErrDigestMismatch},
		{"Malformed", []string{"sha-256=X48E"}, body, httpsig.ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := httpsig.VerifyContentDigest(c.values, c.body); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestSignAndVerifyRoundTrip(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"amount_microcredits":5}`)
	r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/v1/agents/did:key:zX/mint?x=1", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Digest", httpsig.ContentDigest(body))
	p := httpsig.Params{Components: []string{"@method", "@authority", "@path", "@query", "content-digest"},
		Created: time.Unix(1_700_000_000, 0), Nonce: "n-1", KeyID: "did:key:zX", Alg: httpsig.AlgorithmEd25519}
	if err := httpsig.Sign(r, "sig1", p, priv); err != nil {
		t.Fatal(err)
	}
	// The server sees the same request through the wire format.
	var wire bytes.Buffer
	if err := r.Write(&wire); err != nil {
		t.Fatal(err)
	}
	in, err := http.ReadRequest(bufio.NewReader(&wire))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(in.Body)
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := httpsig.Parse(in.Header)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigs[0].Verify(in, pub); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if err := httpsig.VerifyContentDigest(in.Header.Values("Content-Digest"), got); err != nil {
		t.Fatal(err)
	}
	if s := sigs[0]; s.Nonce != "n-1" || s.Alg != "ed25519" || !s.Covers("content-digest") || s.Covers("date") {
		t.Fatalf("params %+v", s.Params)
	}
	in.URL.RawQuery = "x=2"
	if err := sigs[0].Verify(in, pub); !errors.Is(err, httpsig.ErrBadSignature) {
		t.Fatalf("changed query: got %v, want ErrBadSignature", err)
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name   string
		input  string
		sig    string
		reason error
	}{
		{"NoFields", "", "", httpsig.ErrNoSignature},
		{"InputWithoutSignature", `sig1=("@method");created=1`, "", httpsig.ErrMalformed},
		{"NotADictionary", `("@method")`, `sig1=:AA==:`, httpsig.ErrMalformed},
		{"LabelWithoutSignature", `sig1=("@method")`, `sig2=:AA==:`, httpsig.ErrMalformed},
		{"ComponentNotAString", `sig1=(@method)`, `sig1=:AA==:`, httpsig.ErrMalformed},
		{"ComponentParameters", `sig1=("content-digest";sf)`, `sig1=:AA==:`, httpsig.ErrMalformed},
		{"UnsupportedDerivedComponent", `sig1=("@status")`, `sig1=:AA==:`, httpsig.ErrMalformed},
		{"UpperCaseField", `sig1=("Date")`, `sig1=:AA==:`, httpsig.ErrMalformed},
		{"DuplicateComponent", `sig1=("@path" "@path")`, `sig1=:AA==:`, httpsig.ErrMalformed},
		{"CreatedNotAnInteger", `sig1=("@path");created="now"`, `sig1=:AA==:`, httpsig.ErrMalformed},
		{"SignatureNotBytes", `sig1=("@path")`, `sig1="abc"`, httpsig.ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.input != "" {
				h.Set("Signature-Input", c.input)
			}
			if c.sig != "" {
				h.Set("Signature", c.sig)
			}
			if _, err := httpsig.Parse(h); !errors.Is(err, c.reason) {
				t.Fatalf("got %v, want %v", err, c.reason)
			}
		})
	}
}

// TestAPIDocWorkedExample reproduces the signing example of docs/api.md,
// so that the document and the code cannot drift apart.
func TestAPIDocWorkedExample(t *testing.T) {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	const did = "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd"
	body := []byte(`{"price_microcredits":2000000,"latency_ms":30000}`)
	r, err := http.NewRequest("POST", "http://127.0.0.1:8080/v1/intents/int_5f1c0a9e3b7d42e8a601/bids", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Digest", httpsig.ContentDigest(body))
	p := httpsig.Params{Components: []string{"@method", "@authority", "@path", "content-digest"},
		Created: time.Unix(1798761600, 0), Nonce: "q3vX1m0Lw8Yk2rTz5cQh", KeyID: did, Alg: "ed25519"}
	if err := httpsig.Sign(r, "sig1", p, priv); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Content-Digest":  "sha-256=:eMHVG5obUwY7mMYP3AfSW8bmEYjV+oAWcgfpha6b/Tk=:",
		"Signature-Input": `sig1=("@method" "@authority" "@path" "content-digest");created=1798761600;nonce="q3vX1m0Lw8Yk2rTz5cQh";alg="ed25519";keyid="` + did + `"`,
		"Signature":       "sig1=:fV8VH/dbdMPD1DdrMhVfX3+6eWuVciAgpUtoz4kzHcYeiYJIt2VY+P84RiZozzCyXRru9llWGrNhZAdmJo65Dw==:",
	}
	for k, v := range want {
		if got := r.Header.Get(k); got != v {
			t.Errorf("%s: %s\nwant %s", k, got, v)
		}
	}
}
