package httpapi_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/httpapi"
	"github.com/agentmarket/agentmarket/httpapi/httpsig"
	"github.com/agentmarket/agentmarket/market"
)

const sortIntent = "SORT_LIST"

// agent is a registered agent: its key and its SDK client.
type agent struct {
	ID  market.AgentID
	Key market.PrivateKey
	*client.Client
}

func mustAgent(t testing.TB, url, name, operator string, roles ...market.Role) agent {
	t.Helper()
	key, err := market.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(url, key)
	reg := market.SignRegistration(market.Registration{Name: name, Operator: operator, Roles: roles}, key, time.Now())
	if _, err := c.Register(t.Context(), reg); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return agent{ID: key.Public().DID(), Key: key, Client: c}
}

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// signing describes how rawRequest signs; zero fields take the honest
// defaults, and each security case bends one of them.
type signing struct {
	key         market.PrivateKey // zero: unsigned
	keyID       string            // default the key's did:key
	created     time.Time         // default now
	nonce       string            // default random
	components  []string          // default @method @authority @path, and content-digest with a body
	alg         string            // default ed25519
	digestOf    []byte            // the content the Content-Digest is of; default the body
	contentType string            // default application/json with a body
	idem        string            // default random on POST and PUT; "-" for none
}

func randomString() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// rawRequest builds a request the way the SDK would, as s says.
func rawRequest(t testing.TB, method, url string, body []byte, s signing) *http.Request {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		ct := s.contentType
		if ct == "" {
			ct = "application/json"
		}
		r.Header.Set("Content-Type", ct)
		d := s.digestOf
		if d == nil {
			d = body
		}
		r.Header.Set("Content-Digest", httpsig.ContentDigest(d))
	}
	if (method == http.MethodPost || method == http.MethodPut) && s.idem != "-" {
		idem := s.idem
		if idem == "" {
			idem = randomString()
		}
		r.Header.Set("Idempotency-Key", idem)
	}
	if s.key.IsZero() {
		return r
	}
	p := httpsig.Params{Components: s.components, Created: s.created, Nonce: s.nonce, KeyID: s.keyID, Alg: s.alg}
	if p.Components == nil {
		p.Components = []string{"@method", "@authority", "@path"}
		if body != nil {
			p.Components = append(p.Components, "content-digest")
		}
	}
	if p.Created.IsZero() {
		p.Created = time.Now()
	}
	if p.Nonce == "" {
		p.Nonce = randomString()
	}
	if p.KeyID == "" {
		p.KeyID = string(s.key.Public().DID())
	}
	if p.Alg == "" {
		p.Alg = httpsig.AlgorithmEd25519
	}
	if err := httpsig.Sign(r, "sig1", p, s.key.Ed25519()); err != nil {
		t.Fatal(err)
	}
	return r
}

// response is what came back: the status, the headers, the body and, for
// an error, its problem.
type response struct {
	status  int
	header  http.Header
	body    []byte
	problem httpapi.Problem
}

// send sends a request, which may be sent again: its body is buffered.
func send(t *testing.T, r *http.Request) response {
	t.Helper()
	var body []byte
	if r.GetBody != nil {
		rc, err := r.GetBody()
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(rc)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := response{status: resp.StatusCode, header: resp.Header, body: b}
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("error response with Content-Type %q, want application/problem+json: %s", ct, b)
		}
		if err := json.Unmarshal(b, &out.problem); err != nil {
			t.Fatalf("problem does not decode: %v: %s", err, b)
		}
		if out.problem.Status != resp.StatusCode || out.problem.Type != httpapi.ProblemTypePrefix+out.problem.Code {
			t.Fatalf("inconsistent problem %+v for status %d", out.problem, resp.StatusCode)
		}
	}
	return out
}

func jsonBody(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
