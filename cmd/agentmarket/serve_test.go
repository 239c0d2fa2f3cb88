package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/market"
)

// syncBuffer is a bytes.Buffer that run's output and the test may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// server is one run of "agentmarket serve".
type server struct {
	URL    string
	out    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

var listeningRE = regexp.MustCompile(`listening on (http://\S+)`)

// startServe runs serve on addr with data in dir, waits until /healthz
// answers, and stops it when the test ends.
func startServe(t *testing.T, dir, addr string, extra ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{out: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	args := append([]string{"serve", "--addr", addr, "--data", dir, "--log-level", "warn", "--tick", "50ms"}, extra...)
	go func() {
		s.done <- run(ctx, args, func(string) string { return "" }, strings.NewReader(""), s.out, s.out)
	}()
	waitFor(t, "serve to print its address", func() bool {
		select {
		case err := <-s.done:
			t.Fatalf("serve exited early: %v\n%s", err, s.out)
		default:
		}
		m := listeningRE.FindStringSubmatch(s.out.String())
		if m == nil {
			return false
		}
		s.URL = m[1]
		return true
	})
	waitFor(t, "/healthz", func() bool {
		resp, err := http.Get(s.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop cancels serve's context, as SIGTERM does, and waits for it to
// return. It may be called more than once.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("serve returned %v\n%s", err, s.out)
		}
	case <-time.After(time.Minute):
		t.Fatalf("serve did not shut down\n%s", s.out)
	}
}

// waitFor polls cond until it holds, or fails the test after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
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

func newAgent(t *testing.T, url, name, operator string, roles ...market.Role) *client.Client {
	t.Helper()
	key, err := market.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(url, key, client.WithBackoff(20*time.Millisecond, 500*time.Millisecond), client.WithRetries(20))
	reg := market.SignRegistration(market.Registration{Name: name, Operator: operator, Roles: roles}, key, time.Now())
	must[market.Agent](t)(c.Register(t.Context(), reg))
	return c
}

// collector gathers a subscription's events.
type collector struct {
	mu  sync.Mutex
	evs []market.Event
}

func collect(ch <-chan market.Event) *collector {
	c := &collector{}
	go func() {
		for ev := range ch {
			c.mu.Lock()
			c.evs = append(c.evs, ev)
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) types() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, ev := range c.evs {
		out = append(out, ev.Type)
	}
	return out
}

func (c *collector) find(typ, subject string) (market.Event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.evs {
		if ev.Type == typ && (subject == "" || ev.Subject == subject) {
			return ev, true
		}
	}
	return market.Event{}, false
}

// TestServeTradeAcrossRestarts runs a whole trade (offer, intent, bid,
// award, delivery, dispute, arbiter review, settlement) between SDK agents
// over HTTP, restarting the server between steps on the same data and
// address. Event subscriptions ride through the restarts by resuming.
func TestServeTradeAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, dir, "127.0.0.1:0")
	addr := strings.TrimPrefix(srv.URL, "http://")
	if !strings.Contains(srv.out.String(), "generated the operator key in "+filepath.Join(dir, "operator.key")) {
		t.Fatalf("serve did not say where the operator key is:\n%s", srv.out)
	}
	restart := func() {
		t.Helper()
		srv.stop(t)
		srv = startServe(t, dir, addr)
	}
	ctx := t.Context()
	url := srv.URL

	keyText, err := os.ReadFile(filepath.Join(dir, "operator.key"))
	if err != nil {
		t.Fatal(err)
	}
	var opKey market.PrivateKey
	if err := opKey.UnmarshalText(keyText); err != nil {
		t.Fatal(err)
	}
	op := client.New(url, opKey, client.WithRetries(20))
	buyer := newAgent(t, url, "buyer", "op-buyer", market.RoleBuyer)
	seller := newAgent(t, url, "seller", "op-seller", market.RoleSeller)
	arbiter := newAgent(t, url, "arbiter", "op-arbiter", market.RoleArbiter)

	sellerEvents, err := seller.Subscribe(ctx, market.EventFilter{Types: []string{market.EventIntentPosted}})
	if err != nil {
		t.Fatal(err)
	}
	sellerSeen := collect(sellerEvents)
	buyerEvents, err := buyer.Subscribe(ctx, market.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	buyerSeen := collect(buyerEvents)

	must[market.Offer](t)(seller.PublishOffer(ctx, market.Offer{Intent: "SORT_LIST", BasePriceMicrocredits: 2 * market.Credit, LatencyMs: 60_000}))
	must[market.Balance](t)(op.Mint(ctx, arbiter.ID(), 20*market.Credit))
	must[market.Balance](t)(arbiter.PostBond(ctx, 10*market.Credit))
	buyer0 := must[market.Balance](t)(op.Balance(ctx, buyer.ID()))
	restart()

	in := must[market.Intent](t)(buyer.PostIntent(ctx, market.IntentRequest{RequestID: "e2e-1", Intent: "SORT_LIST",
		Parameters:  json.RawMessage(`{"items":[3,1,2],"order":"asc"}`),
		Constraints: market.Constraints{MaxBudgetMicrocredits: 5 * market.Credit}, BidWindowMs: 300}))
	waitFor(t, "the seller to hear of the intent over its resumed stream", func() bool {
		_, ok := sellerSeen.find(market.EventIntentPosted, in.ID)
		return ok
	})
	bid := must[market.Bid](t)(seller.PlaceBid(ctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: 2 * market.Credit, LatencyMs: 30_000}))
	restart()

	waitFor(t, "bidding to close", func() bool {
		in, err := buyer.Intent(ctx, in.ID)
		return err == nil && in.State == market.IntentSelecting
	})
	c := must[market.Contract](t)(buyer.Award(ctx, in.ID, bid.ID))
	restart()

	c = must[market.Contract](t)(seller.Deliver(ctx, market.DeliveryRequest{Contract: c.ID, Output: json.RawMessage(`{"items":[1,2,3]}`)}))
	restart()

	// The market audits a sample of buyer-reviewed deliveries on its own
	// account (engine.Config.SampleRate), drawn from the engine's random
	// source: an audited delivery is already with the arbiter, and the
	// buyer has nothing to dispute.
	audited := c.State == market.ContractInReview
	if !audited {
		c = must[market.Contract](t)(buyer.Dispute(ctx, market.DisputeRequest{Contract: c.ID, Reason: "I doubt the order"}))
	}
	if len(c.Arbiters) != 1 || c.Arbiters[0] != arbiter.ID() {
		t.Fatalf("arbiters %v, want %s", c.Arbiters, arbiter.ID())
	}
	restart()

	c = must[market.Contract](t)(arbiter.SubmitReview(ctx, market.ReviewRequest{Contract: c.ID, Quality: 0.95, Verdict: market.VerdictRelease}))
	if c.State != market.ContractSettled || c.Outcome.PaidMicrocredits != 2*market.Credit {
		t.Fatalf("contract %s %+v", c.State, c.Outcome)
	}
	restart()

	rc := must[market.Receipt](t)(seller.Receipt(ctx, c.Outcome.Receipt))
	if err := market.VerifyReceipt(rc, must[market.PublicKey](t)(seller.MarketKey(ctx))); err != nil {
		t.Fatal(err)
	}
	sb := must[market.Balance](t)(seller.Balance(ctx, seller.ID()))
	if sb.PostedMicrocredits != 100*market.Credit+2*market.Credit {
		t.Fatalf("seller %+v, want the grant plus the price", sb)
	}
	bb := must[market.Balance](t)(buyer.Balance(ctx, buyer.ID()))
	if bb.HeldMicrocredits != 0 || bb.PostedMicrocredits >= buyer0.PostedMicrocredits-2*market.Credit+1 {
		t.Fatalf("buyer %+v (was %+v): want the price and fees paid, nothing held", bb, buyer0)
	}

	// Every step reached the buyer's stream once, in order, across five
	// restarts.
	want := []string{market.EventContractAwarded, market.EventContractDelivered, market.EventContractDisputed, market.EventContractSettled}
	if audited {
		want = slices.DeleteFunc(want, func(typ string) bool { return typ == market.EventContractDisputed })
	}
	waitFor(t, "the buyer's events", func() bool {
		_, ok := buyerSeen.find(market.EventContractSettled, c.ID)
		return ok
	})
	var got []string
	for _, typ := range buyerSeen.types() {
		if slices.Contains(want, typ) {
			got = append(got, typ)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("buyer's contract events %v, want %v", got, want)
	}
	buyerSeen.mu.Lock()
	for i := 1; i < len(buyerSeen.evs); i++ {
		if buyerSeen.evs[i].Seq <= buyerSeen.evs[i-1].Seq {
			t.Fatalf("events out of order or repeated: %d after %d", buyerSeen.evs[i].Seq, buyerSeen.evs[i-1].Seq)
		}
	}
	buyerSeen.mu.Unlock()

	t.Run("LastEventIDResumes", func(t *testing.T) {
		// The SDK sends After as Last-Event-ID on a stream.
		awarded, _ := buyerSeen.find(market.EventContractAwarded, c.ID)
		sub, err := buyer.Subscribe(ctx, market.EventFilter{After: awarded.Seq, Types: []string{market.EventContractDelivered}})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-sub:
			if ev.Type != market.EventContractDelivered || ev.Seq <= awarded.Seq {
				t.Fatalf("first event after %d: %d %s", awarded.Seq, ev.Seq, ev.Type)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no event after resuming")
		}
	})

	srv.stop(t)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"ledger", "verify", "--data", dir}, func(string) string { return "" }, nil, &out, &out); err != nil {
		t.Fatalf("ledger verify after the trade: %v\n%s", err, out.String())
	}
}

// TestServeFinishesRequestsInFlight stops the server while a long poll is
// waiting: the request completes, and serve returns cleanly.
func TestServeFinishesRequestsInFlight(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, dir, "127.0.0.1:0")
	key, _ := market.GenerateKey(nil)
	c := client.New(srv.URL, key, client.WithRetries(0))
	must[market.Agent](t)(c.Register(t.Context(), market.SignRegistration(market.Registration{Roles: []market.Role{market.RoleBuyer}}, key, time.Now())))
	evs := must[[]market.Event](t)(c.Events(t.Context(), market.EventFilter{}))
	after := evs[len(evs)-1].Seq

	type result struct {
		evs []market.Event
		err error
	}
	polled := make(chan result, 1)
	go func() {
		evs, err := c.Events(context.Background(), market.EventFilter{After: after, Wait: market.Duration(1500 * time.Millisecond)})
		polled <- result{evs, err}
	}()
	time.Sleep(300 * time.Millisecond) // let the poll reach the server
	srv.stop(t)
	r := <-polled
	if r.err != nil {
		t.Fatalf("the request in flight failed: %v", r.err)
	}
	if len(r.evs) != 0 {
		t.Fatalf("poll got %d events", len(r.evs))
	}
	if _, err := http.Get(srv.URL + "/healthz"); err == nil {
		t.Fatal("the server still answers after shutdown")
	}
}

// TestServeEndsStreamsOnShutdown checks that an open event stream does not
// hold up shutdown.
func TestServeEndsStreamsOnShutdown(t *testing.T) {
	srv := startServe(t, t.TempDir(), "127.0.0.1:0")
	key, _ := market.GenerateKey(nil)
	c := client.New(srv.URL, key)
	must[market.Agent](t)(c.Register(t.Context(), market.SignRegistration(market.Registration{Roles: []market.Role{market.RoleBuyer}}, key, time.Now())))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if _, err := c.Subscribe(ctx, market.EventFilter{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	srv.stop(t)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("shutdown took %s with a stream open", d)
	}
}

func TestServeFlags(t *testing.T) {
	noEnv := func(string) string { return "" }
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"PostgresNeedsTheKeys", []string{"serve", "--db", "postgres://x"}, nil, "--market-key and --operator-key"},
		{"PostgresFromEnv", []string{"serve"}, map[string]string{"AGENTMARKET_DB": "postgres://x"}, "--market-key and --operator-key"},
		{"MarketKeyWithoutPostgres", []string{"serve", "--market-key", "market.key"}, nil, "only with --db"},
		{"BadLogLevel", []string{"serve", "--log-level", "loud"}, nil, "--log-level"},
		{"BadRateLimit", []string{"serve", "--rate-limit", "-1"}, nil, "--rate-limit"},
		{"MissingOperatorKey", []string{"serve", "--addr", "127.0.0.1:0", "--operator-key", "/nonexistent/operator.key"}, nil, "read operator key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			getenv := noEnv
			if c.env != nil {
				getenv = func(k string) string { return c.env[k] }
			}
			args := append(c.args, "--data", t.TempDir())
			err := run(t.Context(), args, getenv, nil, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}

	t.Run("EnvironmentFallbacks", func(t *testing.T) {
		dir := t.TempDir()
		keyPath := filepath.Join(t.TempDir(), "op.key")
		k, _ := market.GenerateKey(nil)
		text, _ := k.MarshalText()
		if err := os.WriteFile(keyPath, text, 0o600); err != nil {
			t.Fatal(err)
		}
		env := map[string]string{"AGENTMARKET_ADDR": "127.0.0.1:0", "AGENTMARKET_DATA": dir, "AGENTMARKET_OPERATOR_KEY": keyPath}
		ctx, cancel := context.WithCancel(t.Context())
		out := &syncBuffer{}
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"serve"}, func(key string) string { return env[key] }, nil, out, io.Discard)
		}()
		waitFor(t, "serve to listen", func() bool { return listeningRE.MatchString(out.String()) })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "operator key "+keyPath+" ("+string(k.Public().DID())+")") {
			t.Fatalf("serve did not use the operator key from the environment:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(dir, "market.db")); err != nil {
			t.Fatalf("serve did not use the data directory from the environment: %v", err)
		}
	})
}
