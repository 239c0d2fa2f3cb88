package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/httpapi/httpapitest"
	"github.com/agentmarket/agentmarket/market"
)

const sortIntent = "SORT_LIST"

// mustAgent registers an agent over HTTP and returns its client.
func mustAgent(t *testing.T, url, name, operator string, roles ...market.Role) *client.Client {
	t.Helper()
	key, err := market.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(url, key, client.WithBackoff(10*time.Millisecond, 200*time.Millisecond))
	reg := market.SignRegistration(market.Registration{Name: name, Operator: operator, Roles: roles}, key, time.Now())
	if _, err := c.Register(t.Context(), reg); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return c
}

// waitFor polls cond until it holds or the test's patience runs out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
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

func TestTradeOverHTTP(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{})
	ctx := t.Context()
	op := client.New(m.URL, m.Operator)
	buyer := mustAgent(t, m.URL, "buyer", "op-b", market.RoleBuyer)
	seller := mustAgent(t, m.URL, "seller", "op-s", market.RoleSeller)
	arbiter := mustAgent(t, m.URL, "arbiter", "op-a", market.RoleArbiter)

	must[market.Balance](t)(op.Mint(ctx, arbiter.ID(), 5*market.Credit))
	bal := must[market.Balance](t)(arbiter.PostBond(ctx, 10*market.Credit))
	if bal.BondMicrocredits != 10*market.Credit {
		t.Fatalf("arbiter after bond: %+v", bal)
	}
	offer := must[market.Offer](t)(seller.PublishOffer(ctx, market.Offer{Intent: sortIntent, BasePriceMicrocredits: 2 * market.Credit,
		LatencyMs: 60_000, ParameterSchema: json.RawMessage(`{"type":"object","required":["items"]}`)}))
	matches := must[[]market.OfferMatch](t)(buyer.FindOffers(ctx, market.OfferQuery{Intent: sortIntent, Parameters: json.RawMessage(`{"items":[1]}`)}))
	if len(matches) != 1 || matches[0].Offer.ID != offer.ID {
		t.Fatalf("find offers: %+v", matches)
	}

	events, err := seller.Subscribe(ctx, market.EventFilter{Types: []string{market.EventIntentPosted}})
	if err != nil {
		t.Fatal(err)
	}
	in := must[market.Intent](t)(buyer.PostIntent(ctx, market.IntentRequest{RequestID: "req-1", Intent: sortIntent,
		Parameters:  json.RawMessage(`{"items":[3,1,2],"order":"asc"}`),
		Constraints: market.Constraints{MaxBudgetMicrocredits: 5 * market.Credit}, BidWindowMs: 200}))
	select {
	case ev := <-events:
		if ev.Subject != in.ID || ev.Audience != nil {
			t.Fatalf("seller got event %+v; want intent %s with its audience hidden", ev, in.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the seller never heard of the intent")
	}
	bid := must[market.Bid](t)(seller.PlaceBid(ctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: 2 * market.Credit, LatencyMs: 30_000}))
	waitFor(t, "bidding to close", func() bool {
		in, err := buyer.Intent(ctx, in.ID)
		return err == nil && in.State == market.IntentSelecting
	})
	c := must[market.Contract](t)(buyer.Award(ctx, in.ID, bid.ID))
	c = must[market.Contract](t)(seller.Deliver(ctx, market.DeliveryRequest{Contract: c.ID, Output: json.RawMessage(`{"items":[1,2,3]}`)}))
	c = must[market.Contract](t)(buyer.Dispute(ctx, market.DisputeRequest{Contract: c.ID, Reason: "checking"}))
	if len(c.Arbiters) != 1 || c.Arbiters[0] != arbiter.ID() {
		t.Fatalf("arbiters %v, want %s", c.Arbiters, arbiter.ID())
	}
	c = must[market.Contract](t)(arbiter.SubmitReview(ctx, market.ReviewRequest{Contract: c.ID, Quality: 0.9, Verdict: market.VerdictRelease}))
	if c.State != market.ContractSettled || c.Outcome == nil || c.Outcome.PaidMicrocredits != 2*market.Credit {
		t.Fatalf("contract %s %+v", c.State, c.Outcome)
	}
	rc := must[market.Receipt](t)(buyer.Receipt(ctx, c.Outcome.Receipt))
	key := must[market.PublicKey](t)(buyer.MarketKey(ctx))
	if err := market.VerifyReceipt(rc, key); err != nil {
		t.Fatal(err)
	}
	sb := must[market.Balance](t)(seller.Balance(ctx, seller.ID()))
	if sb.PostedMicrocredits != 100*market.Credit+2*market.Credit {
		t.Fatalf("seller balance %+v", sb)
	}
	if err := m.CheckMoney(); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsKeepTheirKindAndCode(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{})
	ctx := t.Context()
	buyer := mustAgent(t, m.URL, "buyer", "", market.RoleBuyer)
	seller := mustAgent(t, m.URL, "seller", "", market.RoleSeller)
	anon := client.New(m.URL, market.PrivateKey{})

	cases := []struct {
		name string
		err  error
		kind market.Kind
		code string
	}{
		{"NotFound", second(buyer.Intent(ctx, "int_missing")), market.NotExist, ""},
		{"RoleRequired", second(buyer.PublishOffer(ctx, market.Offer{Intent: sortIntent, LatencyMs: 1})), market.Permission, "role_required"},
		{"OperatorRequired", second(seller.Mint(ctx, seller.ID(), 1)), market.Permission, "operator_required"},
		{"NotYourWallet", second(seller.Balance(ctx, buyer.ID())), market.Permission, "not_your_wallet"},
		{"AnonymousBalance", second(anon.Balance(ctx, buyer.ID())), market.Unauthenticated, "unauthenticated"},
		{"AnonymousWrite", second(anon.PostIntent(ctx, market.IntentRequest{})), market.Unauthenticated, "signature_required"},
		{"NegativeAmount", second(buyer.PostIntent(ctx, market.IntentRequest{RequestID: "r", Intent: sortIntent,
			Constraints: market.Constraints{MaxBudgetMicrocredits: -5}})), market.Invalid, "negative_amount"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var me *market.Error
			if !errors.As(c.err, &me) {
				t.Fatalf("got %T %v, want a *market.Error", c.err, c.err)
			}
			if me.Kind != c.kind || (c.code != "" && me.Code != c.code) {
				t.Fatalf("got %s/%s (%v), want %s/%s", me.Kind, me.Code, me, c.kind, c.code)
			}
		})
	}
}

func second[T any](_ T, err error) error { return err }

// TestRetriesReuseTheIdempotencyKey puts a proxy in front of the market
// that answers the first attempt of each call with 503 after the market
// has already done the work: the retry must get the stored response, not
// do the work twice.
func TestRetriesReuseTheIdempotencyKey(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{})
	ctx := t.Context()
	var attempts, replays atomic.Int32
	var mu sync.Mutex
	var keys []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, err := http.NewRequestWithContext(r.Context(), r.Method, m.URL+r.URL.RequestURI(), r.Body)
		if err != nil {
			t.Error(err)
			return
		}
		out.Header = r.Header.Clone()
		out.Host = r.Host
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		if r.Method == http.MethodPost && r.URL.Path != "/v1/agents" {
			mu.Lock()
			keys = append(keys, r.Header.Get("Idempotency-Key"))
			mu.Unlock()
			if attempts.Add(1) == 1 {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			if resp.Header.Get("Idempotent-Replayed") == "true" {
				replays.Add(1)
			}
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		var buf [32 << 10]byte
		for {
			n, err := resp.Body.Read(buf[:])
			w.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}))
	defer proxy.Close()

	key, _ := market.GenerateKey(nil)
	c := client.New(proxy.URL, key, client.WithBackoff(time.Millisecond, 10*time.Millisecond))
	must[market.Agent](t)(c.Register(ctx, market.SignRegistration(market.Registration{Roles: []market.Role{market.RoleSeller}}, key, time.Now())))
	o := must[market.Offer](t)(c.PublishOffer(ctx, market.Offer{Intent: sortIntent, BasePriceMicrocredits: 1, LatencyMs: 1000}))
	mu.Lock()
	defer mu.Unlock()
	if attempts.Load() != 2 || replays.Load() != 1 || keys[0] != keys[1] || keys[0] == "" {
		t.Fatalf("attempts %d, replays %d, keys %q: want 2 attempts with one key and one replay", attempts.Load(), replays.Load(), keys)
	}
	offers := must[[]market.OfferMatch](t)(c.FindOffers(ctx, market.OfferQuery{Intent: sortIntent}))
	if len(offers) != 1 || offers[0].Offer.ID != o.ID {
		t.Fatalf("the retried publish made %d offers, want exactly one", len(offers))
	}
}

func TestSubscribeResumesAfterTheLastEvent(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	op := client.New(m.URL, m.Operator)
	for i := range 3 {
		mustAgent(t, m.URL, "a"+string(rune('0'+i)), "", market.RoleBuyer)
	}
	all := must[[]market.Event](t)(op.Events(ctx, market.EventFilter{}))
	if len(all) != 3 {
		t.Fatalf("%d events, want 3 registrations", len(all))
	}
	ch, err := op.Subscribe(ctx, market.EventFilter{After: all[0].Seq})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range all[1:] {
		select {
		case ev := <-ch:
			if ev.Seq != want.Seq {
				t.Fatalf("got event %d, want %d", ev.Seq, want.Seq)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event %d", want.Seq)
		}
	}
	cancel()
	for range ch {
	}
}

// TestEveryMethodMatchesTheEngine drives each market.Service method over
// HTTP and checks the answer against the engine's own, called in-process
// as the same principal.
func TestEveryMethodMatchesTheEngine(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{})
	ctx := t.Context()
	op := client.New(m.URL, m.Operator)
	buyer := mustAgent(t, m.URL, "buyer", "op-b", market.RoleBuyer)
	seller := mustAgent(t, m.URL, "seller", "op-s", market.RoleSeller)
	as := func(c *client.Client) context.Context { return market.AsAgent(ctx, c.ID()) }
	same := func(name string, http, local any) {
		t.Helper()
		// Reputation decays with the wall clock between the two reads.
		if diff := cmp.Diff(local, http, cmpopts.EquateApprox(0, 1e-6)); diff != "" {
			t.Errorf("%s over HTTP differs from the engine (-engine +http):\n%s", name, diff)
		}
	}

	must[market.Agent](t)(seller.Agent(ctx, seller.ID()))
	if err := op.SetMandate(ctx, market.Mandate{Agent: buyer.ID(), MaxPerTransferMicrocredits: 50 * market.Credit,
		BudgetMicrocredits: 80 * market.Credit, Window: market.Duration(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	o := must[market.Offer](t)(seller.PublishOffer(ctx, market.Offer{Intent: sortIntent, BasePriceMicrocredits: 3 * market.Credit, LatencyMs: 9000, Tags: []string{"fast"}}))
	o.BasePriceMicrocredits = 2 * market.Credit
	o = must[market.Offer](t)(seller.UpdateOffer(ctx, o))
	same("Offer", must[market.Offer](t)(buyer.Offer(ctx, o.ID)), must[market.Offer](t)(m.Engine.Offer(ctx, o.ID)))
	q := market.OfferQuery{Intent: sortIntent, Parameters: json.RawMessage(`{"items":[1]}`), MaxPriceMicrocredits: 5 * market.Credit, MaxLatencyMs: 10_000, Limit: 5}
	same("FindOffers", must[[]market.OfferMatch](t)(buyer.FindOffers(ctx, q)), must[[]market.OfferMatch](t)(m.Engine.FindOffers(ctx, q)))

	in := must[market.Intent](t)(buyer.PostIntent(ctx, market.IntentRequest{RequestID: "r-1", Intent: sortIntent,
		Parameters: json.RawMessage(`{"items":[2,1]}`), Constraints: market.Constraints{MaxBudgetMicrocredits: 5 * market.Credit}, BidWindowMs: 200}))
	same("Intent", must[market.Intent](t)(seller.Intent(ctx, in.ID)), must[market.Intent](t)(m.Engine.Intent(ctx, in.ID)))
	f := market.IntentFilter{Eligible: true}
	same("Intents", must[[]market.Intent](t)(seller.Intents(ctx, f)), must[[]market.Intent](t)(m.Engine.Intents(as(seller), f)))
	b := must[market.Bid](t)(seller.PlaceBid(ctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: 3 * market.Credit, LatencyMs: 5000, Note: "hi"}))
	same("Bid", must[market.Bid](t)(seller.Bid(ctx, b.ID)), must[market.Bid](t)(m.Engine.Bid(as(seller), b.ID)))
	deadline := time.Now().Add(10 * time.Second)
	for must[market.Intent](t)(buyer.Intent(ctx, in.ID)).State != market.IntentSelecting {
		if time.Now().After(deadline) {
			t.Fatal("bidding never closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	same("Bids", must[[]market.Bid](t)(buyer.Bids(ctx, in.ID)), must[[]market.Bid](t)(m.Engine.Bids(as(buyer), in.ID)))
	c1 := must[market.Message](t)(buyer.Counter(ctx, market.CounterRequest{Bid: b.ID, InReplyTo: b.ID, PriceMicrocredits: 2 * market.Credit}))
	must[market.Message](t)(seller.Counter(ctx, market.CounterRequest{Bid: b.ID, InReplyTo: c1.ID, Accept: true}))
	same("Messages", must[[]market.Message](t)(buyer.Messages(ctx, b.ID)), must[[]market.Message](t)(m.Engine.Messages(as(buyer), b.ID)))
	c := must[market.Contract](t)(buyer.Award(ctx, in.ID, b.ID))
	if c.PriceMicrocredits != 2*market.Credit {
		t.Fatalf("awarded at %d, want the agreed 2 credits", c.PriceMicrocredits)
	}
	cf := market.ContractFilter{State: market.ContractAwarded}
	same("Contracts", must[[]market.Contract](t)(seller.Contracts(ctx, cf)), must[[]market.Contract](t)(m.Engine.Contracts(as(seller), cf)))
	must[market.Contract](t)(seller.Deliver(ctx, market.DeliveryRequest{Contract: c.ID, Output: json.RawMessage(`{"items":[1,2]}`)}))
	c = must[market.Contract](t)(buyer.Accept(ctx, market.AcceptRequest{Contract: c.ID, Quality: 0.8}))
	same("Contract", must[market.Contract](t)(buyer.Contract(ctx, c.ID)), must[market.Contract](t)(m.Engine.Contract(as(buyer), c.ID)))
	same("Receipt", must[market.Receipt](t)(buyer.Receipt(ctx, c.Outcome.Receipt)), must[market.Receipt](t)(m.Engine.Receipt(ctx, c.Outcome.Receipt)))
	same("Reputation", must[market.Reputation](t)(buyer.Reputation(ctx, seller.ID(), sortIntent)), must[market.Reputation](t)(m.Engine.Reputation(ctx, seller.ID(), sortIntent)))
	same("Stats", must[market.IntentStats](t)(buyer.Stats(ctx, sortIntent, time.Hour)), must[market.IntentStats](t)(m.Engine.Stats(ctx, sortIntent, time.Hour)))
	same("Balance", must[market.Balance](t)(buyer.Balance(ctx, buyer.ID())), must[market.Balance](t)(m.Engine.Balance(as(buyer), buyer.ID())))

	// Withdrawals and cancellations.
	in2 := must[market.Intent](t)(buyer.PostIntent(ctx, market.IntentRequest{RequestID: "r-2", Intent: sortIntent,
		Parameters: json.RawMessage(`{}`), Constraints: market.Constraints{MaxBudgetMicrocredits: 5 * market.Credit}}))
	b2 := must[market.Bid](t)(seller.PlaceBid(ctx, market.BidRequest{Intent: in2.ID, PriceMicrocredits: market.Credit, LatencyMs: 5000}))
	if b2 = must[market.Bid](t)(seller.WithdrawBid(ctx, b2.ID)); b2.State != market.BidWithdrawn {
		t.Fatalf("withdrawn bid is %s", b2.State)
	}
	if in2 = must[market.Intent](t)(buyer.CancelIntent(ctx, in2.ID)); in2.State != market.IntentCancelled {
		t.Fatalf("cancelled intent is %s", in2.State)
	}
	if o = must[market.Offer](t)(seller.WithdrawOffer(ctx, o.ID)); o.State != market.OfferWithdrawn {
		t.Fatalf("withdrawn offer is %s", o.State)
	}
	if err := m.CheckMoney(); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentCallsReuseConnections makes 16 calls at once, again and
// again, with the default HTTP client: each round after the first should
// find the connections the previous one left idle, where Go's default
// transport keeps only two and would open most of them anew.
func TestConcurrentCallsReuseConnections(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{})
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(m.Handler)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	buyer := mustAgent(t, srv.URL, "buyer", "op-buyer", market.RoleBuyer)

	const calls, rounds = 16, 10
	for range rounds {
		var wg sync.WaitGroup
		for range calls {
			wg.Go(func() {
				if _, err := buyer.Balance(t.Context(), buyer.ID()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	// The first round opens up to one connection per call; later rounds
	// may open a few when a call starts before another's connection is
	// back in the pool, but not one per call.
	if n := opened.Load(); n > 3*calls {
		t.Errorf("%d calls in %d rounds of %d opened %d connections, want at most %d", calls*rounds, rounds, calls, n, 3*calls)
	}
}
