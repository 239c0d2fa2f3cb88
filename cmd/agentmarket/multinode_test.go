package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/postgres"
	"github.com/agentmarket/agentmarket/postgres/pgtest"
)

// serveArgsEnv carries a serve process's arguments, as JSON, from
// TestMultiNode to TestServeProcess.
const serveArgsEnv = "AGENTMARKET_TEST_SERVE_ARGS"

// TestServeProcess is not a test of its own: TestMultiNode runs the test
// binary again with only this test selected and serveArgsEnv set, so that
// each node of the market is an operating-system process it can kill.
// Without serveArgsEnv it does nothing.
func TestServeProcess(t *testing.T) {
	raw := os.Getenv(serveArgsEnv)
	if raw == "" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, "agentmarket: bad", serveArgsEnv+":", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The node is configured by its arguments alone.
	err := run(ctx, args, func(string) string { return "" }, strings.NewReader(""), os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentmarket:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serveProcess is one node of the market: "agentmarket serve" in its own
// process.
type serveProcess struct {
	name string
	addr string // the host:port it listens on
	cmd  *exec.Cmd
	out  *syncBuffer // its stdout and stderr
	done chan struct{}
	err  error // what Wait returned, once done is closed
	// waiting counts the requests sent to the node that have no response
	// yet.
	waiting atomic.Int32
}

// startServeProcess starts a node with args after "serve", waits until it
// answers /healthz, and kills it when the test ends if it still runs.
func startServeProcess(t *testing.T, name string, args ...string) *serveProcess {
	t.Helper()
	argv, err := json.Marshal(append([]string{"serve", "--addr", "127.0.0.1:0", "--log-level", "warn", "--tick", "50ms"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestServeProcess$", "-test.count=1", "-test.timeout=10m")
	p.cmd.Env = append(os.Environ(), serveArgsEnv+"="+string(argv))
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.running() {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s's output:\n%s", name, p.out)
		}
	})
	waitFor(t, name+" to print its address", func() bool {
		if !p.running() {
			t.Fatalf("%s exited early: %v\n%s", name, p.err, p.out)
		}
		m := listeningRE.FindStringSubmatch(p.out.String())
		if m == nil {
			return false
		}
		p.addr = strings.TrimPrefix(m[1], "http://")
		return true
	})
	waitFor(t, name+"'s /healthz", func() bool {
		resp, err := http.Get("http://" + p.addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

func (p *serveProcess) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill ends the node with SIGKILL: no shutdown, no requests finished.
func (p *serveProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", p.name, err)
	}
	<-p.done
}

// stop ends the node with SIGTERM and checks that it shut down cleanly.
func (p *serveProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("%s did not shut down", p.name)
	}
	if p.err != nil {
		t.Errorf("%s exited with %v", p.name, p.err)
	}
}

// marketHost is the one name the agents address the market by, as they
// would a load balancer's. Signatures cover it, so a request signed for
// the market is valid on every node.
const marketHost = "market.test"

// failoverRoute is one agent's load balancer: it sends the agent's
// requests to its current node, and when that node fails to answer, makes
// the next node current. The SDK then retries the request, with the same
// idempotency key and a fresh signature, and the retry reaches a live
// node.
type failoverRoute struct {
	nodes     []*serveProcess
	transport http.RoundTripper
	cur       atomic.Int32
	served    atomic.Int32 // the node that answered the latest request
	failovers atomic.Int32

	// keep, when set, receives a copy of each request as sent, body and
	// signature included, so that the test can replay it.
	keep func(*http.Request, []byte)
}

func (r *failoverRoute) RoundTrip(req *http.Request) (*http.Response, error) {
	i := r.cur.Load()
	out := req.Clone(req.Context())
	out.URL.Host = r.nodes[i].addr
	out.Host = marketHost
	if r.keep != nil && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		out.Body = io.NopCloser(bytes.NewReader(body))
		r.keep(out, body)
	}
	r.nodes[i].waiting.Add(1)
	resp, err := r.transport.RoundTrip(out)
	r.nodes[i].waiting.Add(-1)
	if err != nil {
		if req.Context().Err() == nil && r.cur.CompareAndSwap(i, (i+1)%int32(len(r.nodes))) {
			r.failovers.Add(1)
		}
		return nil, err
	}
	r.served.Store(i)
	return resp, nil
}

// multiAgent is an SDK client behind its own failoverRoute.
type multiAgent struct {
	*client.Client
	name  string
	route *failoverRoute
}

// multiMarket is the market under test: its nodes, and what its agents
// saw.
type multiMarket struct {
	nodes     []*serveProcess
	transport *http.Transport

	mu       sync.Mutex
	agents   []*multiAgent
	trades   []tradeRecord
	problems []string

	// alreadyDone counts requests that a retry found already applied,
	// because the node that applied them died before it could answer.
	alreadyDone atomic.Int32
	lateBids    atomic.Int32
	completed   atomic.Int32
}

func (m *multiMarket) agent(name string, key market.PrivateKey, home int) *multiAgent {
	r := &failoverRoute{nodes: m.nodes, transport: m.transport}
	r.cur.Store(int32(home))
	a := &multiAgent{name: name, route: r, Client: client.New("http://"+marketHost, key,
		client.WithHTTPClient(&http.Client{Transport: r}), client.WithRetries(20), client.WithBackoff(20*time.Millisecond, 500*time.Millisecond))}
	m.mu.Lock()
	m.agents = append(m.agents, a)
	m.mu.Unlock()
	return a
}

// register makes a key, registers an agent with it on its home node, and
// returns the agent.
func (m *multiMarket) register(t *testing.T, name string, home int, roles ...market.Role) *multiAgent {
	t.Helper()
	key, err := market.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	a := m.agent(name, key, home)
	reg := market.SignRegistration(market.Registration{Name: name, Operator: "op-" + name, Roles: roles}, key, time.Now())
	must[market.Agent](t)(a.Register(t.Context(), reg))
	return a
}

// problem records what went wrong in an agent's goroutine; the test fails
// on it at the end.
func (m *multiMarket) problem(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.problems = append(m.problems, fmt.Sprintf(format, args...))
}

// retried reports whether err says that the request was already applied:
// the SDK's retry of a request whose node died after applying it but
// before storing its response reached a node that applied it again, and
// the market's state machine refused the repeat.
func (m *multiMarket) retried(err error, codes ...string) bool {
	if slices.Contains(codes, market.CodeOf(err)) {
		m.alreadyDone.Add(1)
		return true
	}
	return false
}

// Trading modes: how a buyer chooses the winner and checks the work.
const (
	modeManual  = "manual"  // the buyer awards the cheapest bid; the sort checker settles
	modeAuto    = "auto"    // the market awards at the bid deadline; the sort checker settles
	modeDispute = "dispute" // the buyer awards, reviews, disputes; an arbiter settles
)

// tradeRecord is one buyer's trade, as the SDK reported it.
type tradeRecord struct {
	buyer    *multiAgent
	mode     string
	intent   string
	node     int32           // the node that answered the intent's post
	contract market.Contract // the final contract; no ID when no one won
}

// sortIntent is the parameters of a SORT_LIST intent.
type sortIntent struct {
	Items []int64 `json:"items"`
	Order string  `json:"order"`
}

// sell publishes an offer, then bids on every intent routed to the seller
// and delivers the sorted list on every contract it wins, until ctx ends.
func (m *multiMarket) sell(ctx context.Context, s *multiAgent, price int64) {
	events, err := s.Subscribe(ctx, market.EventFilter{Types: []string{market.EventIntentPosted, market.EventContractAwarded}})
	if err != nil {
		m.problem("%s: subscribe: %v", s.name, err)
		return
	}
	for ev := range events {
		switch ev.Type {
		case market.EventIntentPosted:
			_, err := s.PlaceBid(ctx, market.BidRequest{Intent: ev.Subject, PriceMicrocredits: price, LatencyMs: 60_000})
			switch {
			case err == nil, ctx.Err() != nil, m.retried(err, "already_bid"):
			case market.CodeOf(err) == "bidding_closed":
				m.lateBids.Add(1)
			default:
				m.problem("%s: bid on %s: %v", s.name, ev.Subject, err)
			}
		case market.EventContractAwarded:
			var c market.Contract
			if err := json.Unmarshal(ev.Data, &c); err != nil {
				m.problem("%s: award event: %v", s.name, err)
				continue
			}
			if c.Seller != s.ID() {
				continue
			}
			in, err := s.Intent(ctx, c.IntentID)
			if err != nil {
				if ctx.Err() == nil {
					m.problem("%s: read intent %s: %v", s.name, c.IntentID, err)
				}
				continue
			}
			var p sortIntent
			if err := json.Unmarshal(in.Parameters, &p); err != nil {
				m.problem("%s: intent %s parameters: %v", s.name, in.ID, err)
				continue
			}
			slices.Sort(p.Items)
			out, _ := json.Marshal(map[string][]int64{"items": p.Items})
			_, err = s.Deliver(ctx, market.DeliveryRequest{Contract: c.ID, Output: out})
			if err != nil && ctx.Err() == nil && !m.retried(err, "illegal_transition") {
				m.problem("%s: deliver %s: %v", s.name, c.ID, err)
			}
		}
	}
}

// arbitrate posts the arbiter's bond, then releases the escrow of every
// contract it is assigned to review, until ctx ends.
func (m *multiMarket) arbitrate(ctx context.Context, a *multiAgent) {
	events, err := a.Subscribe(ctx, market.EventFilter{Types: []string{market.EventReviewAssigned}})
	if err != nil {
		m.problem("%s: subscribe: %v", a.name, err)
		return
	}
	for ev := range events {
		_, err := a.SubmitReview(ctx, market.ReviewRequest{Contract: ev.Subject, Quality: 0.9, Verdict: market.VerdictRelease})
		if err != nil && ctx.Err() == nil && !m.retried(err, "already_reviewed", "illegal_transition") {
			m.problem("%s: review %s: %v", a.name, ev.Subject, err)
		}
	}
}

// buy runs a buyer's trades one after another.
func (m *multiMarket) buy(ctx context.Context, b *multiAgent, trades, offset int) {
	modes := []string{modeManual, modeAuto, modeManual, modeDispute}
	for i := range trades {
		tr, err := m.buyOnce(ctx, b, fmt.Sprintf("%s-%d", b.name, i), modes[(i+offset)%len(modes)])
		if err != nil {
			m.problem("%s: trade %d: %v", b.name, i, err)
			return
		}
		m.mu.Lock()
		m.trades = append(m.trades, tr)
		m.mu.Unlock()
		m.completed.Add(1)
	}
}

// buyOnce posts an intent, awards it (or lets the market), disputes the
// delivery in the dispute mode, and returns once the contract is settled
// or refunded, or no seller won.
func (m *multiMarket) buyOnce(ctx context.Context, b *multiAgent, requestID, mode string) (tradeRecord, error) {
	tr := tradeRecord{buyer: b, mode: mode}
	items := make([]int64, 8)
	for i := range items {
		items[i] = rand.Int64N(1000)
	}
	params, _ := json.Marshal(sortIntent{Items: items, Order: "asc"})
	req := market.IntentRequest{RequestID: requestID, Intent: "SORT_LIST", Parameters: params,
		Constraints: market.Constraints{MaxBudgetMicrocredits: 5 * market.Credit},
		BidWindowMs: 800, AwardWindowMs: 5_000,
		Acceptance: market.Acceptance{Policy: market.AcceptChecker, Checker: "sort"}}
	switch mode {
	case modeAuto:
		req.Selection = market.Selection{Mode: market.SelectAuto, PriceWeight: 1}
	case modeDispute:
		req.Acceptance = market.Acceptance{Policy: market.AcceptBuyer, ReviewMs: 60_000}
	}
	in, err := b.PostIntent(ctx, req)
	if err != nil {
		return tr, fmt.Errorf("post intent: %w", err)
	}
	tr.intent, tr.node = in.ID, b.route.served.Load()

	in, err = poll(ctx, func() (market.Intent, bool, error) {
		in, err := b.Intent(ctx, in.ID)
		return in, in.State != market.IntentOpen && (mode != modeAuto || in.State != market.IntentSelecting), err
	})
	if err != nil {
		return tr, fmt.Errorf("wait for intent %s to close: %w", tr.intent, err)
	}
	var c market.Contract
	switch {
	case mode == modeAuto && in.Contract != "":
		if c, err = b.Contract(ctx, in.Contract); err != nil {
			return tr, fmt.Errorf("read contract: %w", err)
		}
	case mode != modeAuto && in.State == market.IntentSelecting:
		bids, err := b.Bids(ctx, in.ID)
		if err != nil {
			return tr, fmt.Errorf("read bids: %w", err)
		}
		bids = slices.DeleteFunc(bids, func(b market.Bid) bool { return b.State != market.BidActive })
		if len(bids) == 0 {
			return tr, nil
		}
		best := slices.MinFunc(bids, func(x, y market.Bid) int { return int(x.PriceMicrocredits - y.PriceMicrocredits) })
		// Awarding is idempotent: a retry after a failover returns the
		// contract the dead node made.
		if c, err = b.Award(ctx, in.ID, best.ID); err != nil {
			return tr, fmt.Errorf("award %s: %w", best.ID, err)
		}
	default:
		return tr, nil // no bid won
	}

	if mode == modeDispute {
		c, err = waitContract(ctx, b, c.ID, func(c market.Contract) bool { return c.State != market.ContractAwarded })
		if err != nil {
			return tr, err
		}
		if c.State == market.ContractDelivered {
			_, err := b.Dispute(ctx, market.DisputeRequest{Contract: c.ID, Reason: "I doubt the order"})
			if err != nil && !m.retried(err, "illegal_transition") {
				return tr, fmt.Errorf("dispute %s: %w", c.ID, err)
			}
		}
	}
	tr.contract, err = waitContract(ctx, b, c.ID, func(c market.Contract) bool { return c.State.Terminal() })
	return tr, err
}

// waitContract polls a contract until done holds.
func waitContract(ctx context.Context, a *multiAgent, id string, done func(market.Contract) bool) (market.Contract, error) {
	c, err := poll(ctx, func() (market.Contract, bool, error) {
		c, err := a.Contract(ctx, id)
		return c, err == nil && done(c), err
	})
	if err != nil {
		return c, fmt.Errorf("wait for contract %s: %w", id, err)
	}
	return c, nil
}

// poll calls get every 100 ms until it reports done, fails, or ctx ends.
func poll[T any](ctx context.Context, get func() (T, bool, error)) (T, error) {
	for {
		v, done, err := get()
		if err != nil || done {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestMultiNode runs one market on two serve processes that share a fresh
// PostgreSQL schema. SDK agents, spread over both nodes, trade at once:
// they register, publish offers, post intents that the sort checker
// settles (some awarded by the buyer, some by the market at the bid
// deadline), bid, award, deliver, and dispute to arbiters. A third of the
// way through, one node is killed with SIGKILL; its agents fail over to
// the other node, retrying with the same idempotency keys, and the run
// completes. Then the market must hold together: credits conserved, every
// escrow resolved once, every settlement the agents saw present in the
// ledger and in the receipt chain, each deadline handled once, and events
// delivered across nodes.
func TestMultiNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two server processes and trades for a while")
	}
	db := pgtest.Schema(t)
	marketKeyFile, marketKey := keyFile(t)
	opKeyFile, opKey := keyFile(t)
	start := time.Now()
	m := &multiMarket{transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(m.transport.CloseIdleConnections)
	for _, name := range []string{"node0", "node1"} {
		m.nodes = append(m.nodes, startServeProcess(t, name, "--db", db, "--market-key", marketKeyFile, "--operator-key", opKeyFile))
	}
	startup := time.Since(start)
	victim, survivor := m.nodes[0], m.nodes[1]
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	// The operator is recognised on both nodes, and the market signs with
	// the one key on both.
	ops := []*multiAgent{m.agent("operator@node0", opKey, 0), m.agent("operator@node1", opKey, 1)}
	for _, op := range ops {
		if got := must[market.PublicKey](t)(op.MarketKey(ctx)); got.DID() != marketKey.Public().DID() {
			t.Fatalf("%s: market key %s, want %s", op.name, got.DID(), marketKey.Public().DID())
		}
	}
	// An observer on the node that will survive hears of every intent,
	// most of them posted on the other node.
	observed := collect(must[<-chan market.Event](t)(ops[1].Subscribe(ctx, market.EventFilter{Types: []string{market.EventIntentPosted}})))

	const buyers, sellers, arbiters, tradesEach = 6, 4, 2, 8
	var buyerAgents []*multiAgent
	for i := range buyers {
		b := m.register(t, fmt.Sprintf("buyer%d", i), i%2, market.RoleBuyer)
		// The operator funds half of the buyers through each node.
		must[market.Balance](t)(ops[i%2].Mint(ctx, b.ID(), 20*market.Credit))
		buyerAgents = append(buyerAgents, b)
	}

	t.Run("ReplayToTheOtherNodeIsRejected", func(t *testing.T) {
		// The operator's mint is signed and accepted on node0; the very
		// same bytes sent to node1 are a replay.
		var sent *http.Request
		var sentBody []byte
		ops[0].route.keep = func(r *http.Request, body []byte) { sent, sentBody = r, body }
		b := buyerAgents[0]
		before := must[market.Balance](t)(ops[1].Balance(ctx, b.ID()))
		must[market.Balance](t)(ops[0].Mint(ctx, b.ID(), market.Credit))
		ops[0].route.keep = nil
		for _, n := range m.nodes {
			replay := sent.Clone(ctx)
			replay.URL.Host = n.addr
			replay.Body = io.NopCloser(bytes.NewReader(sentBody))
			resp, err := m.transport.RoundTrip(replay)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var p struct{ Code string }
			json.Unmarshal(body, &p)
			if resp.StatusCode != http.StatusUnauthorized || p.Code != "nonce_reused" {
				t.Errorf("the mint replayed to %s: %d %s, want 401 nonce_reused", n.name, resp.StatusCode, body)
			}
		}
		after := must[market.Balance](t)(ops[1].Balance(ctx, b.ID()))
		if after.PostedMicrocredits != before.PostedMicrocredits+market.Credit {
			t.Errorf("%s: %d µcr after one mint of %d and its replays, had %d", b.name, after.PostedMicrocredits, market.Credit, before.PostedMicrocredits)
		}
	})

	t.Run("NodeWithOtherKeysRefusesToStart", func(t *testing.T) {
		otherKeyFile, _ := keyFile(t)
		err := run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--db", db, "--market-key", otherKeyFile, "--operator-key", opKeyFile},
			func(string) string { return "" }, nil, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "give every node the same --market-key and --operator-key") {
			t.Fatalf("a node with another market key: %v", err)
		}
	})

	agents, stopAgents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var sellerAgents []*multiAgent
	for i := range sellers {
		s := m.register(t, fmt.Sprintf("seller%d", i), i%2, market.RoleSeller)
		price := market.Credit + int64(i)*market.Credit/4
		must[market.Offer](t)(s.PublishOffer(ctx, market.Offer{Intent: "SORT_LIST", BasePriceMicrocredits: price, LatencyMs: 60_000}))
		sellerAgents = append(sellerAgents, s)
		wg.Go(func() { m.sell(agents, s, price) })
	}
	for i := range arbiters {
		a := m.register(t, fmt.Sprintf("arbiter%d", i), i%2, market.RoleArbiter)
		must[market.Balance](t)(a.PostBond(ctx, 10*market.Credit))
		wg.Go(func() { m.arbitrate(agents, a) })
	}
	setup := time.Since(start)

	var buying sync.WaitGroup
	for i, b := range buyerAgents {
		buying.Go(func() { m.buy(ctx, b, tradesEach, i) })
	}
	// SIGKILL a node a third of the way through the trades, while every
	// buyer is in the middle of one, and the node has requests in hand.
	for m.completed.Load() < buyers*tradesEach/3 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); victim.waiting.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	killedAfter, killedAt, inFlight := time.Since(start), m.completed.Load(), victim.waiting.Load()
	victim.kill(t)
	buying.Wait()
	tradingDone := time.Since(start)
	stopAgents()
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("the run did not finish: %v", ctx.Err())
	}
	for _, p := range m.problems {
		t.Error(p)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Tally what the agents saw.
	var (
		settled, refunded, noWinner, viaVictim int
		byMode                                 = map[string]int{}
		contracts                              = map[string]market.Contract{}
	)
	for _, tr := range m.trades {
		if tr.node == 0 {
			viaVictim++
		}
		if tr.contract.ID == "" {
			noWinner++
			continue
		}
		byMode[tr.mode]++
		contracts[tr.contract.ID] = tr.contract
		switch tr.contract.State {
		case market.ContractSettled:
			settled++
		case market.ContractRefunded:
			refunded++
		}
	}
	var failovers, movedAgents int
	for _, a := range m.agents {
		n := int(a.route.failovers.Load())
		failovers += n
		if n > 0 {
			movedAgents++
		}
	}
	t.Logf("%d trades: %d settled, %d refunded, %d without a winner; by mode %v; %d posted through %s before it died",
		len(m.trades), settled, refunded, noWinner, byMode, viaVictim, victim.name)
	t.Logf("%s killed after %d trades with %d requests in flight; %d failovers by %d agents; %d retries found their request already applied; %d late bids",
		victim.name, killedAt, inFlight, failovers, movedAgents, m.alreadyDone.Load(), m.lateBids.Load())
	t.Logf("timings: nodes up %s, agents ready %s, kill at %s, trading done %s",
		startup.Round(time.Millisecond), setup.Round(time.Millisecond), killedAfter.Round(time.Millisecond), tradingDone.Round(time.Millisecond))
	if len(m.trades) != buyers*tradesEach {
		t.Fatalf("%d trades finished, want %d", len(m.trades), buyers*tradesEach)
	}
	if settled < len(m.trades)/2 {
		t.Errorf("only %d of %d trades settled", settled, len(m.trades))
	}
	if byMode[modeAuto] == 0 || byMode[modeDispute] == 0 {
		t.Errorf("contracts by mode %v: want automatic awards and disputes among them", byMode)
	}
	if movedAgents == 0 {
		t.Errorf("no agent failed over from %s", victim.name)
	}

	op := ops[1]
	t.Run("CreditsAreConserved", func(t *testing.T) {
		l, err := postgres.OpenLedger(ctx, db, postgres.LedgerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if err := l.CheckInvariants(ctx); err != nil {
			t.Fatal(err)
		}
	})

	// orphans are the holds, by wallet, that a node placed for an award
	// and died before recording: no contract names them, and their
	// timeout returns them (see engine.recover).
	orphans := map[ledger.ID]int64{}
	t.Run("EveryEscrowResolvedOnce", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var twice int
		if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM (SELECT pending_id FROM ledger_transfers
			WHERE pending_id <> '00000000-0000-0000-0000-000000000000' GROUP BY pending_id HAVING COUNT(*) > 1) AS t`).Scan(&twice); err != nil {
			t.Fatal(err)
		}
		if twice != 0 {
			t.Errorf("%d holds were resolved more than once", twice)
		}
		// The engine tags each of a contract's transfers with user data
		// derived from the contract's id, a format the ledger keeps for
		// good; every contract is final, so none of its holds is open.
		ofContract := map[ledger.ID]string{}
		for id := range contracts {
			ofContract[ledger.DeriveID("contract", []byte(id))] = id
		}
		rows, err := conn.Query(ctx, `SELECT t.user_data, t.debit_account_id, t.amount
			FROM ledger_pending p JOIN ledger_transfers t ON t.id = p.id WHERE p.status = 1`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var tag, wallet ledger.ID
			var amount int64
			if err := rows.Scan(&tag, &wallet, &amount); err != nil {
				t.Fatal(err)
			}
			if c, ok := ofContract[tag]; ok {
				t.Errorf("contract %s is %s, but a hold of %d µcr for it is open", c, contracts[c].State, amount)
				continue
			}
			orphans[wallet] += amount
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(orphans) > 0 {
			t.Logf("holds of awards %s died before recording, which their timeout returns: %v", victim.name, orphans)
		}
		var all []market.Contract
		for page := (market.Page{Limit: 1000}); ; {
			cs := must[[]market.Contract](t)(op.Contracts(ctx, market.ContractFilter{Page: page}))
			all = append(all, cs...)
			if len(cs) < page.Limit {
				break
			}
			page.After = cs[len(cs)-1].ID
		}
		if len(all) != len(contracts) {
			t.Errorf("the market holds %d contracts, the buyers saw %d", len(all), len(contracts))
		}
		for _, c := range all {
			if !c.State.Terminal() {
				t.Errorf("contract %s is still %s", c.ID, c.State)
			}
		}
	})

	t.Run("EveryAcknowledgedSettlementIsPresent", func(t *testing.T) {
		// The receipt chain verifies, with one receipt per contract, and
		// each is the outcome its buyer saw.
		var receipts []market.Receipt
		for seq := uint64(1); ; seq++ {
			r, err := op.Receipt(ctx, seq)
			if market.Is(err, market.NotExist) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			receipts = append(receipts, r)
		}
		if err := market.VerifyReceiptChain(receipts, marketKey.Public()); err != nil {
			t.Errorf("receipt chain: %v", err)
		}
		byContract := map[string]market.Receipt{}
		for _, r := range receipts {
			if prev, ok := byContract[r.Contract]; ok {
				t.Errorf("contract %s has receipts %d and %d", r.Contract, prev.Seq, r.Seq)
			}
			byContract[r.Contract] = r
		}
		if len(byContract) != len(contracts) {
			t.Errorf("%d contracts have receipts, the buyers saw %d settle", len(byContract), len(contracts))
		}
		for id, c := range contracts {
			r, ok := byContract[id]
			if !ok || r.Seq != c.Outcome.Receipt || r.PaidMicrocredits != c.Outcome.PaidMicrocredits {
				t.Errorf("contract %s settled as receipt %d paying %d µcr; the chain has %+v", id, c.Outcome.Receipt, c.Outcome.PaidMicrocredits, r)
			}
			now := must[market.Contract](t)(op.Contract(ctx, id))
			if diff := cmp.Diff(c.Outcome, now.Outcome); now.State != c.State || diff != "" {
				t.Errorf("contract %s was %s to its buyer and is now %s; outcome (-buyer saw +now):\n%s", id, c.State, now.State, diff)
			}
		}
		// Every wallet holds what its receipts say it was paid or paid
		// out: nothing acknowledged is missing, nothing paid twice.
		const grant = 100 * market.Credit
		want := map[market.AgentID]int64{}
		for _, s := range sellerAgents {
			want[s.ID()] = grant
		}
		for i, b := range buyerAgents {
			want[b.ID()] = grant + 20*market.Credit
			if i == 0 {
				want[b.ID()] += market.Credit // the replay test's mint
			}
		}
		for _, r := range receipts {
			want[r.Seller] += r.PaidMicrocredits
			want[r.Buyer] -= r.PaidMicrocredits + r.FeeMicrocredits + r.ArbiterFeeMicrocredits
		}
		for _, a := range append(slices.Clone(sellerAgents), buyerAgents...) {
			bal := must[market.Balance](t)(op.Balance(ctx, a.ID()))
			held := orphans[ledger.DeriveID("wallet", []byte(a.ID()))]
			if bal.PostedMicrocredits != want[a.ID()] || bal.HeldMicrocredits != held {
				t.Errorf("%s: %d µcr posted, %d held; its receipts say %d, and %d held for awards never recorded",
					a.name, bal.PostedMicrocredits, bal.HeldMicrocredits, want[a.ID()], held)
			}
		}
	})

	t.Run("EachDeadlineFiredOnce", func(t *testing.T) {
		// Both nodes ran the deadlines until one died: each intent closed
		// once, and was awarded (by its buyer or by the market) at most
		// once; each contract settled once.
		closes, awards, ends := map[string]int{}, map[string]int{}, map[string]int{}
		for after := int64(0); ; {
			evs := must[[]market.Event](t)(op.Events(ctx, market.EventFilter{After: after, Limit: 1000}))
			for _, ev := range evs {
				switch ev.Type {
				case market.EventIntentClosed:
					closes[ev.Subject]++
				case market.EventContractAwarded:
					var c market.Contract
					json.Unmarshal(ev.Data, &c)
					awards[c.IntentID]++
				case market.EventContractSettled, market.EventContractRefunded:
					ends[ev.Subject]++
				}
			}
			if len(evs) < 1000 {
				break
			}
			after = evs[len(evs)-1].Seq
		}
		for _, tr := range m.trades {
			if closes[tr.intent] != 1 || awards[tr.intent] > 1 || tr.contract.ID != "" && (awards[tr.intent] != 1 || ends[tr.contract.ID] != 1) {
				t.Errorf("intent %s (%s): closed %d times, awarded %d times; contract %q ended %d times",
					tr.intent, tr.mode, closes[tr.intent], awards[tr.intent], tr.contract.ID, ends[tr.contract.ID])
			}
		}
	})

	t.Run("EventsReachTheOtherNode", func(t *testing.T) {
		if viaVictim == 0 {
			t.Fatalf("no intent was posted through %s", victim.name)
		}
		waitFor(t, "the observer on "+survivor.name+" to hear of every intent", func() bool {
			for _, tr := range m.trades {
				if _, ok := observed.find(market.EventIntentPosted, tr.intent); !ok {
					return false
				}
			}
			return true
		})
	})

	cancel()
	survivor.stop(t)
	if ws, ok := victim.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("%s ended with %v, not SIGKILL", victim.name, victim.err)
	}
}
