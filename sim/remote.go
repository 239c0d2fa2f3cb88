package sim

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentmarket/agentmarket/httpapi/httpsig"
	"github.com/agentmarket/agentmarket/market"
)

// Remote describes a market reached over HTTP, for the attacks that only
// exist on the wire: replayed and forged requests.
type Remote struct {
	// URL is the market's base URL, such as "http://127.0.0.1:8080".
	URL string
	// HTTP sends the attackers' raw requests.
	HTTP *http.Client
	// Tap is what the honest agents' requests pass through, as an
	// eavesdropper on the network would see them. May be nil.
	Tap *Wiretap
}

// Wiretap is an http.RoundTripper that keeps a copy of the signed
// state-changing requests passing through it, so that a replay attack
// has real requests to replay.
type Wiretap struct {
	// Next carries the requests; nil means http.DefaultTransport.
	Next http.RoundTripper

	mu   sync.Mutex
	seen []tapped
}

// tapped is a captured request.
type tapped struct {
	method, url string
	header      http.Header
	body        []byte
}

// RoundTrip copies a signed POST or PUT and sends it on.
func (t *Wiretap) RoundTrip(r *http.Request) (*http.Response, error) {
	next := t.Next
	if next == nil {
		next = http.DefaultTransport
	}
	if (r.Method == http.MethodPost || r.Method == http.MethodPut) && r.Header.Get("Signature") != "" && r.Body != nil {
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		t.mu.Lock()
		if len(t.seen) < 64 {
			t.seen = append(t.seen, tapped{method: r.Method, url: r.URL.String(), header: r.Header.Clone(), body: body})
		}
		t.mu.Unlock()
	}
	return next.RoundTrip(r)
}

// take removes and returns up to n captured requests, oldest first.
func (t *Wiretap) take(n int) []tapped {
	t.mu.Lock()
	defer t.mu.Unlock()
	n = min(n, len(t.seen))
	out := append([]tapped(nil), t.seen[:n]...)
	t.seen = t.seen[n:]
	return out
}

// wireAttacker attacks the transport rather than the market: it replays
// requests it overheard, verbatim; it signs requests in a victim's name
// with its own key; it changes the body of a signed request; and it
// mints credits to itself with its own signature. In-process there is no
// wire, and it stays idle.
type wireAttacker struct {
	agentBase
	grant int64
}

func (w *wireAttacker) wake() {
	if w.sim.cfg.Market.Remote != nil {
		// Strike early, once agents have signed something to overhear,
		// so that a short run (demo) sees the attack too; then every 5s.
		w.sim.after(w, 2*time.Second, w.strike)
	}
}

func (w *wireAttacker) handle(*event) {}

// strike makes one round of wire attacks.
func (w *wireAttacker) strike() {
	if !w.sim.posting() {
		return
	}
	r := w.sim.cfg.Market.Remote
	ctx := context.Background()
	if r.Tap != nil {
		for _, c := range r.Tap.take(2) {
			status := w.send(ctx, r, c.method, c.url, c.header, c.body)
			w.sim.world.attack(AttackReplay, func(a *Attack) {
				a.Attempts++
				if status >= 400 {
					a.Blocked++
				}
			})
			// A tampered copy: the same signature over a different body.
			body := bytes.Replace(c.body, []byte(`"price_microcredits":`), []byte(`"price_microcredits":9`), 1)
			if bytes.Equal(body, c.body) {
				body = append(bytes.TrimRight(c.body, "}"), []byte(`,"note":"x"}`)...)
			}
			status = w.send(ctx, r, c.method, c.url, c.header, body)
			w.sim.world.attack(AttackForgery, func(a *Attack) {
				a.Attempts++
				if status >= 400 {
					a.Blocked++
				}
			})
		}
	}
	// A request in a victim's name, signed with the attacker's own key.
	if victim := w.victim(); victim != nil {
		body, _ := json.Marshal(map[string]any{"amount_microcredits": 10 * market.Credit})
		status := w.signed(ctx, r, http.MethodPost, "/v1/bonds", body, string(victim.id))
		w.countForgery(status)
	}
	// Credits minted to itself: only the operator may mint.
	body, _ := json.Marshal(map[string]any{"amount_microcredits": 1000 * market.Credit})
	w.countForgery(w.signed(ctx, r, http.MethodPost, "/v1/agents/"+string(w.id)+"/mint", body, string(w.id)))
	w.sim.after(w, 5*time.Second, w.strike)
}

func (w *wireAttacker) countForgery(status int) {
	w.sim.world.attack(AttackForgery, func(a *Attack) {
		a.Attempts++
		if status >= 400 {
			a.Blocked++
		}
	})
}

// victim picks an honest buyer to impersonate.
func (w *wireAttacker) victim() *agentBase {
	buyers := w.sim.sortedAgents("buyer")
	if len(buyers) == 0 {
		return nil
	}
	return buyers[w.rng.IntN(len(buyers))].base()
}

// signed sends a request signed with the attacker's key, claiming keyid.
func (w *wireAttacker) signed(ctx context.Context, r *Remote, method, path string, body []byte, keyid string) int {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(r.URL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Digest", httpsig.ContentDigest(body))
	nonce := make([]byte, 12)
	for i := range nonce {
		nonce[i] = byte(w.rng.Uint32())
	}
	p := httpsig.Params{Components: []string{"@method", "@authority", "@path", "content-digest"}, Created: time.Now(),
		Nonce: base64.RawURLEncoding.EncodeToString(nonce), KeyID: keyid, Alg: httpsig.AlgorithmEd25519}
	if err := httpsig.Sign(req, "sig1", p, w.key.Ed25519()); err != nil {
		return 0
	}
	return w.do(req)
}

// send re-sends a request as captured, with body.
func (w *wireAttacker) send(ctx context.Context, r *Remote, method, url string, header http.Header, body []byte) int {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header = header.Clone()
	return w.do(req)
}

func (w *wireAttacker) do(req *http.Request) int {
	resp, err := w.sim.cfg.Market.Remote.HTTP.Do(req)
	if err != nil {
		w.sim.world.countError("wire_attack", market.Transient)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// wireGain is what the wire attacker holds beyond its starting grant.
func (s *sim) wireGain(ctx context.Context) (int64, error) {
	var gain int64
	for _, a := range s.agents {
		w, ok := a.(*wireAttacker)
		if !ok {
			continue
		}
		bal, err := s.op.Service.Balance(s.op.Ctx, w.id)
		if err != nil {
			return 0, fmt.Errorf("balance of %s: %w", w.name, err)
		}
		ag, err := s.op.Service.Agent(s.op.Ctx, w.id)
		if err != nil {
			return 0, fmt.Errorf("agent %s: %w", w.name, err)
		}
		gain += bal.PostedMicrocredits + bal.BondMicrocredits - ag.GrantMicrocredits
	}
	return gain, nil
}
