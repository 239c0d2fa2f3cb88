package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/progress"
)

// The lifecycle benchmark ("agentmarket bench http") runs whole trades —
// intent, bids, award, delivery, the sort checker, settlement — with many
// agents at once, through each of several ways into a market: over HTTP
// through the Go SDK, signed, against a real server, and in-process on the
// engine, the baseline that shows what HTTP costs.

// LifecycleMarket is an open market for the lifecycle benchmark to drive.
type LifecycleMarket struct {
	// URL, when set, is a server that the agents reach through the Go SDK,
	// each signing as itself; Operator signs the operator's mints.
	URL      string
	Operator market.PrivateKey
	// Service, when URL is empty, is the market in-process: agents call it
	// with their principal in the context, as the simulator does.
	Service market.Service
	// Close stops the market.
	Close func() error
}

// LifecycleSystem is one way into a market, opened afresh for its run.
type LifecycleSystem struct {
	Name  string // short, for tables: "in-process", "http"
	About string // one line on what it is
	// Open starts the market with its data in dir, an empty directory.
	Open func(ctx context.Context, dir string) (*LifecycleMarket, error)
}

// HTTPConfig configures the lifecycle benchmark.
type HTTPConfig struct {
	// Systems are run in order; each after the first is compared with the
	// first, the baseline.
	Systems []LifecycleSystem
	// Agents is how many buyers trade at once; each keeps InFlight
	// lifecycles going, as a busy buyer has several intents open. Sellers
	// is how many sellers bid, Bids how many of them bid on each intent.
	Agents, InFlight, Sellers, Bids int
	// Duration is how long each system starts new lifecycles; the run
	// then finishes those in flight.
	Duration time.Duration
	// BidWindow is every intent's bidding window. A lifecycle cannot take
	// less, so Agents × InFlight / BidWindow bounds lifecycles per
	// second. It must outlast posting the intent and placing the bids
	// under load, or bids arrive after bidding has closed.
	BidWindow time.Duration
	// Poll is how long a buyer waits before asking again for bids that
	// are still sealed after the bid deadline; the wait doubles, up to
	// eight times Poll.
	Poll time.Duration
	// Dir is where each system keeps its data; a fresh directory below it
	// per run. Default the system's temporary directory.
	Dir string
	// Progress receives a progress display; nil shows none.
	Progress io.Writer
}

// DefaultHTTPConfig is the benchmark: 32 agents for 10 seconds per
// system, with 320 lifecycles in flight so that the one-second bid window
// does not bound the rate below what the market can do.
func DefaultHTTPConfig() HTTPConfig {
	return HTTPConfig{Agents: 32, InFlight: 10, Sellers: 32, Bids: 3, Duration: 10 * time.Second,
		BidWindow: time.Second, Poll: 5 * time.Millisecond}
}

// QuickHTTPConfig runs each system for a moment: a smoke test, not a
// measurement.
func QuickHTTPConfig() HTTPConfig {
	c := DefaultHTTPConfig()
	c.Agents, c.InFlight, c.Sellers, c.Duration, c.BidWindow = 8, 2, 8, time.Second, 300*time.Millisecond
	return c
}

// Request types, in lifecycle order.
const (
	opPostIntent = "post_intent"
	opPlaceBid   = "place_bid"
	opBids       = "bids"
	opAward      = "award"
	opDeliver    = "deliver"
)

var lifecycleOps = []string{opPostIntent, opPlaceBid, opBids, opAward, opDeliver}

// HTTPReport is the lifecycle benchmark's outcome.
type HTTPReport struct {
	Machine Machine           `json:"machine"`
	Config  HTTPReportConfig  `json:"config"`
	Runs    []LifecycleRun    `json:"runs"`
	Ratios  []LifecycleRatio  `json:"ratios"`
	Targets []Target          `json:"targets"`
	Notes   []string          `json:"notes"`
	Passed  bool              `json:"passed"` // every run completed and its money check held
	Systems map[string]string `json:"systems"`
	Ops     map[string]string `json:"request_types"`
}

// HTTPReportConfig is the part of the HTTPConfig a reader needs.
type HTTPReportConfig struct {
	Agents          int     `json:"agents"`
	InFlight        int     `json:"in_flight_per_agent"`
	Sellers         int     `json:"sellers"`
	BidsPerIntent   int     `json:"bids_per_intent"`
	DurationSeconds float64 `json:"duration_seconds"`
	BidWindowMs     int64   `json:"bid_window_ms"`
	PollMs          float64 `json:"poll_ms"`
}

// LifecycleRun is one system's run.
type LifecycleRun struct {
	System     string  `json:"system"`
	OverHTTP   bool    `json:"over_http"`  // the agents reached the market through the SDK
	Lifecycles int64   `json:"lifecycles"` // completed: settled by the checker
	Failed     int64   `json:"failed"`     // started and not completed
	Seconds    float64 `json:"seconds"`
	PerSec     float64 `json:"lifecycles_per_sec"`
	// Latencies in nanoseconds. A lifecycle runs from posting the intent
	// to the settled delivery; CloseLag from the bid deadline to the
	// moment the buyer first sees the bids (the market closes bidding on
	// its deadline tick).
	LifecycleP50 time.Duration `json:"lifecycle_p50_ns"`
	LifecycleP99 time.Duration `json:"lifecycle_p99_ns"`
	CloseLagP50  time.Duration `json:"close_lag_p50_ns"`
	CloseLagP99  time.Duration `json:"close_lag_p99_ns"`
	// SealedPolls counts the buyers' requests for bids that were still
	// sealed: the deadline had passed, the market's tick had not yet
	// closed bidding.
	SealedPolls int64          `json:"sealed_polls"`
	Requests    []RequestStats `json:"requests"`
	Passed      bool           `json:"passed"`
	Check       string         `json:"check"`           // "passed", or "FAILED: why"
	Error       string         `json:"error,omitempty"` // why the run itself failed, if it did
}

// RequestStats are one request type's latencies in a run, successes and
// failures alike.
type RequestStats struct {
	Op     string           `json:"op"`
	Count  int64            `json:"count"`
	P50    time.Duration    `json:"p50_ns"`
	P99    time.Duration    `json:"p99_ns"`
	Errors map[string]int64 `json:"errors,omitempty"` // by problem code
}

// LifecycleRatio compares a system with the baseline.
type LifecycleRatio struct {
	System   string  `json:"system"`
	Baseline string  `json:"baseline"`
	Factor   float64 `json:"factor"` // the system's lifecycles/s over the baseline's
	// P50Factor is, per request type, the system's p50 over the baseline's.
	P50Factor map[string]float64 `json:"p50_factor"`
}

// HTTPBench runs the lifecycle benchmark on every system in turn.
func HTTPBench(ctx context.Context, cfg HTTPConfig) (*HTTPReport, error) {
	switch {
	case len(cfg.Systems) == 0:
		return nil, errors.New("bench http: no systems")
	case cfg.Agents < 1 || cfg.InFlight < 1 || cfg.Bids < 1 || cfg.Sellers < cfg.Bids:
		return nil, fmt.Errorf("bench http: need at least one agent with one lifecycle in flight, one bid, and as many sellers as bids (have %d, %d, %d, %d)",
			cfg.Agents, cfg.InFlight, cfg.Bids, cfg.Sellers)
	case cfg.Duration <= 0 || cfg.BidWindow <= 0 || cfg.Poll <= 0:
		return nil, errors.New("bench http: need a positive duration, bid window and poll interval")
	}
	rep := &HTTPReport{
		Machine: Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadAtStart: loadAverage()},
		Config: HTTPReportConfig{Agents: cfg.Agents, InFlight: cfg.InFlight, Sellers: cfg.Sellers, BidsPerIntent: cfg.Bids, DurationSeconds: cfg.Duration.Seconds(),
			BidWindowMs: cfg.BidWindow.Milliseconds(), PollMs: float64(cfg.Poll) / float64(time.Millisecond)},
		Systems: map[string]string{},
		Ops: map[string]string{
			opPostIntent: "the buyer posts a SORT_LIST intent paid on the sort checker",
			opPlaceBid:   fmt.Sprintf("each of %d sellers bids, at once", cfg.Bids),
			opBids:       "after the bid deadline the buyer lists the bids (polls while they are still sealed are counted apart)",
			opAward:      "the buyer awards the cheapest bid: contract and escrow hold",
			opDeliver:    "the seller delivers the sorted list; the checker passes it and the contract settles",
		},
		Notes: []string{
			fmt.Sprintf("Each of the %d agents keeps %d lifecycles in flight, and a lifecycle lasts at least its %s bid window, "+
				"so lifecycles/s cannot exceed %d / (window + request time): %s a second with no request time at all. "+
				"The window must outlast posting the intent and placing its bids under load; bids that arrive later fail with bidding_closed.",
				cfg.Agents, cfg.InFlight, cfg.BidWindow, cfg.Agents*cfg.InFlight,
				progress.Count(int64(float64(cfg.Agents*cfg.InFlight)/cfg.BidWindow.Seconds()))),
			"Every system is durable: the ledger fsyncs its journal, and the market store commits with synchronous=FULL (SQLite) or fsyncs its journal (the journal store), before a call returns.",
			"The money check: at the end no agent has funds held in escrow, and what the buyers paid equals what the sellers earned plus the market's fees.",
		},
	}
	for _, s := range cfg.Systems {
		rep.Systems[s.Name] = s.About
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Runs = append(rep.Runs, runLifecycles(ctx, cfg, s))
	}
	rep.finish()
	return rep, ctx.Err()
}

// runLifecycles measures one system. Its result is named so that closing
// the market, deferred, can still fail the run.
func runLifecycles(ctx context.Context, cfg HTTPConfig, sys LifecycleSystem) (run LifecycleRun) {
	run.System = sys.Name
	fail := func(err error) LifecycleRun {
		run.Error, run.Check = err.Error(), "FAILED: "+err.Error()
		return run
	}
	w := cfg.Progress
	if w == nil {
		w = io.Discard
	}
	tr := progress.Start(w, progress.Options{Label: "http " + sys.Name, Unit: "lifecycles", Budget: cfg.Duration})
	defer tr.Finish()
	tr.Status("starting the market")
	dir, err := os.MkdirTemp(cfg.Dir, "agentmarket-bench-http-")
	if err != nil {
		return fail(fmt.Errorf("data directory: %w", err))
	}
	defer os.RemoveAll(dir)
	m, err := sys.Open(ctx, dir)
	if err != nil {
		return fail(fmt.Errorf("open %s: %w", sys.Name, err))
	}
	run.OverHTTP = m.URL != ""
	defer func() {
		if err := m.Close(); err != nil && run.Error == "" {
			run.Passed, run.Error, run.Check = false, err.Error(), "FAILED: close: "+err.Error()
		}
	}()
	tr.Status(fmt.Sprintf("registering %d buyers and %d sellers", cfg.Agents, cfg.Sellers))
	d, err := newDriver(ctx, cfg, m)
	if err != nil {
		return fail(err)
	}
	defer d.close()
	before, err := d.balances(ctx)
	if err != nil {
		return fail(err)
	}

	tr.Begin()
	start := time.Now()
	stop := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for i := range len(d.buyers) * cfg.InFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			consecutive := 0
			for time.Now().Before(stop) && ctx.Err() == nil {
				if err := d.lifecycle(ctx, i%len(d.buyers)); err != nil {
					d.failed.Add(1)
					// A market that fails every lifecycle has stopped
					// working; do not spin against it.
					if consecutive++; consecutive >= 20 {
						return
					}
					continue
				}
				consecutive = 0
				tr.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	run.Lifecycles, run.Failed = tr.Count(), d.failed.Load()
	run.Seconds = elapsed.Seconds()
	run.PerSec = float64(run.Lifecycles) / run.Seconds
	run.LifecycleP50, run.LifecycleP99 = d.lifecycleLat.quantiles()
	run.CloseLagP50, run.CloseLagP99 = d.closeLag.quantiles()
	run.SealedPolls = d.sealedPolls.Load()
	for _, op := range lifecycleOps {
		run.Requests = append(run.Requests, d.ops[op].stats(op))
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	after, err := d.balances(ctx)
	if err != nil {
		return fail(err)
	}
	run.Check = d.checkMoney(before, after)
	run.Passed = run.Check == "passed"
	return run
}

// actor is one agent's way into the market.
type actor struct {
	id  market.AgentID
	svc market.Service
	ctx context.Context
}

// driver runs lifecycles on one market.
type driver struct {
	cfg       HTTPConfig
	buyers    []actor
	sellers   []actor
	transport *http.Transport // shared by the SDK clients; nil in-process

	ops          map[string]*latencies
	lifecycleLat latencies
	closeLag     latencies
	failed       atomic.Int64
	sealedPolls  atomic.Int64
	seq          atomic.Int64 // numbers lifecycles
	fees         atomic.Int64 // the market's fees on settled contracts
}

// sortParams is every intent's task; sortedOutput its answer.
var (
	sortParams   = json.RawMessage(`{"items":[5,3,9,1],"order":"asc"}`)
	sortedOutput = json.RawMessage(`{"items":[1,3,5,9]}`)
)

const benchIntent = "SORT_LIST"

func newDriver(ctx context.Context, cfg HTTPConfig, m *LifecycleMarket) (*driver, error) {
	d := &driver{cfg: cfg, ops: map[string]*latencies{}}
	for _, op := range lifecycleOps {
		d.ops[op] = &latencies{}
	}
	var operator actor
	if m.URL != "" {
		// Each agent would hold its own connection to the market; a shared
		// transport with room for all of them does the same in one
		// process, where Go's default keeps only two idle connections per
		// host and would open a new one for nearly every request.
		d.transport = http.DefaultTransport.(*http.Transport).Clone()
		d.transport.MaxIdleConns, d.transport.MaxIdleConnsPerHost = 0, 4*(cfg.Agents+cfg.Sellers)
		operator = actor{svc: client.New(m.URL, m.Operator, client.WithHTTPClient(&http.Client{Transport: d.transport})), ctx: ctx}
	} else {
		operator = actor{svc: m.Service, ctx: market.AsOperator(ctx)}
	}
	join := func(name string, role market.Role) (actor, error) {
		key, err := market.GenerateKey(nil)
		if err != nil {
			return actor{}, err
		}
		a := actor{id: key.Public().DID(), ctx: ctx, svc: m.Service}
		if m.URL != "" {
			a.svc = client.New(m.URL, key, client.WithHTTPClient(&http.Client{Transport: d.transport}))
		} else {
			a.ctx = market.AsAgent(ctx, a.id)
		}
		// One operator per agent, so that no operator's grant cap binds
		// and no rating is discounted.
		reg := market.SignRegistration(market.Registration{Name: name, Operator: name, Roles: []market.Role{role}}, key, time.Now())
		if _, err := a.svc.Register(a.ctx, reg); err != nil {
			return a, fmt.Errorf("register %s: %w", name, err)
		}
		return a, nil
	}
	for i := range cfg.Sellers {
		s, err := join(fmt.Sprintf("bench-seller-%d", i), market.RoleSeller)
		if err != nil {
			return nil, err
		}
		if _, err := s.svc.PublishOffer(s.ctx, market.Offer{Intent: benchIntent, BasePriceMicrocredits: market.Credit / 10, LatencyMs: 60_000}); err != nil {
			return nil, fmt.Errorf("publish offer: %w", err)
		}
		d.sellers = append(d.sellers, s)
	}
	for i := range cfg.Agents {
		b, err := join(fmt.Sprintf("bench-buyer-%d", i), market.RoleBuyer)
		if err != nil {
			return nil, err
		}
		// Enough for any run: a lifecycle costs at most 0.3 cr and its fee.
		if _, err := operator.svc.Mint(operator.ctx, b.id, 1_000_000*market.Credit); err != nil {
			return nil, fmt.Errorf("mint: %w", err)
		}
		d.buyers = append(d.buyers, b)
	}
	return d, nil
}

func (d *driver) close() {
	if d.transport != nil {
		d.transport.CloseIdleConnections()
	}
}

// timed runs one request and records its latency, and its problem code
// when it fails.
func (d *driver) timed(op string, f func() error) error {
	t := time.Now()
	err := f()
	d.ops[op].add(time.Since(t), err)
	return err
}

// lifecycle runs one trade of buyer i from intent to settlement.
func (d *driver) lifecycle(ctx context.Context, i int) error {
	buyer := d.buyers[i]
	n := int(d.seq.Add(1))
	start := time.Now()
	var in market.Intent
	err := d.timed(opPostIntent, func() (err error) {
		in, err = buyer.svc.PostIntent(buyer.ctx, market.IntentRequest{
			RequestID: fmt.Sprintf("bench-%d", n), Intent: benchIntent, Parameters: sortParams,
			Constraints: market.Constraints{MaxBudgetMicrocredits: market.Credit},
			BidWindowMs: d.cfg.BidWindow.Milliseconds(),
			Acceptance:  market.Acceptance{Policy: market.AcceptChecker, Checker: "sort"},
		})
		return err
	})
	if err != nil {
		return err
	}

	// Sellers bid at once, as independent agents would.
	var wg sync.WaitGroup
	var placed atomic.Int32
	for k := range d.cfg.Bids {
		s := d.sellers[(i+n+k)%len(d.sellers)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.timed(opPlaceBid, func() error {
				_, err := s.svc.PlaceBid(s.ctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: int64(1+k) * market.Credit / 10, LatencyMs: 60_000})
				return err
			})
			if err == nil {
				placed.Add(1)
			}
		}()
	}
	wg.Wait()
	if placed.Load() == 0 {
		return errors.New("no bid arrived before the deadline")
	}

	if err := sleepUntil(ctx, in.BidDeadline); err != nil {
		return err
	}
	var bids []market.Bid
	for wait := d.cfg.Poll; ; wait = min(2*wait, 8*d.cfg.Poll) {
		t := time.Now()
		bids, err = buyer.svc.Bids(buyer.ctx, in.ID)
		if market.CodeOf(err) != "bids_sealed" {
			d.ops[opBids].add(time.Since(t), err)
			break
		}
		d.sealedPolls.Add(1)
		if err := sleepUntil(ctx, time.Now().Add(wait)); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	d.closeLag.add(time.Since(in.BidDeadline), nil)
	if len(bids) == 0 {
		return errors.New("no bids listed")
	}
	best := slices.MinFunc(bids, func(a, b market.Bid) int { return int(a.PriceMicrocredits - b.PriceMicrocredits) })

	var c market.Contract
	if err := d.timed(opAward, func() (err error) {
		c, err = buyer.svc.Award(buyer.ctx, in.ID, best.ID)
		return err
	}); err != nil {
		return err
	}
	seller := d.sellers[slices.IndexFunc(d.sellers, func(s actor) bool { return s.id == c.Seller })]
	if err := d.timed(opDeliver, func() (err error) {
		c, err = seller.svc.Deliver(seller.ctx, market.DeliveryRequest{Contract: c.ID, Output: sortedOutput})
		return err
	}); err != nil {
		return err
	}
	if c.State != market.ContractSettled || c.Outcome == nil {
		return fmt.Errorf("contract %s is %s after a passing delivery", c.ID, c.State)
	}
	d.fees.Add(c.Outcome.FeeMicrocredits)
	d.lifecycleLat.add(time.Since(start), nil)
	return nil
}

// balances reads every agent's wallet, buyers first.
func (d *driver) balances(ctx context.Context) ([]market.Balance, error) {
	var out []market.Balance
	for _, a := range slices.Concat(d.buyers, d.sellers) {
		b, err := a.svc.Balance(a.ctx, a.id)
		if err != nil {
			return nil, fmt.Errorf("balance of %s: %w", a.id, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// checkMoney compares the wallets before and after the run: nothing may
// be left in escrow, and the buyers' loss must be the sellers' gain plus
// the market's fees.
func (d *driver) checkMoney(before, after []market.Balance) string {
	var delta, held int64
	for i := range after {
		delta += after[i].PostedMicrocredits - before[i].PostedMicrocredits
		held += after[i].HeldMicrocredits + after[i].IncomingMicrocredits
	}
	switch {
	case held != 0:
		return fmt.Sprintf("FAILED: %d µcr still held in escrow after every lifecycle ended", held)
	case delta != -d.fees.Load():
		return fmt.Sprintf("FAILED: agents' wallets changed by %d µcr in all, but the market's fees were %d µcr", delta, d.fees.Load())
	}
	return "passed"
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// latencies is a histogram that many goroutines record into, with the
// failures counted by problem code.
type latencies struct {
	mu     sync.Mutex
	h      histogram
	errors map[string]int64
}

func (l *latencies) add(d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.h.add(d, 1)
	if err != nil {
		code := market.CodeOf(err)
		if code == "" {
			code = "other"
		}
		if l.errors == nil {
			l.errors = map[string]int64{}
		}
		l.errors[code]++
	}
}

func (l *latencies) quantiles() (p50, p99 time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.h.quantile(0.5), l.h.quantile(0.99)
}

func (l *latencies) stats(op string) RequestStats {
	p50, p99 := l.quantiles()
	l.mu.Lock()
	defer l.mu.Unlock()
	return RequestStats{Op: op, Count: int64(l.h.n), P50: p50, P99: p99, Errors: maps.Clone(l.errors)}
}

// finish computes the ratios against the first system, the targets and
// the verdict.
func (r *HTTPReport) finish() {
	r.Machine.LoadAtEnd = loadAverage()
	r.Passed = true
	for _, run := range r.Runs {
		if !run.Passed {
			r.Passed = false
		}
	}
	if len(r.Runs) == 0 {
		return
	}
	base := r.Runs[0]
	for _, run := range r.Runs[1:] {
		if base.PerSec <= 0 {
			continue
		}
		q := LifecycleRatio{System: run.System, Baseline: base.System, Factor: run.PerSec / base.PerSec, P50Factor: map[string]float64{}}
		for i, rs := range run.Requests {
			if b := base.Requests[i]; b.P50 > 0 {
				q.P50Factor[rs.Op] = float64(rs.P50) / float64(b.P50)
			}
		}
		r.Ratios = append(r.Ratios, q)
	}
	// The targets are for trades over HTTP.
	for _, run := range r.Runs {
		if !run.OverHTTP {
			continue
		}
		r.Targets = append(r.Targets, goal(run.System+" ≥ 3,000 lifecycles/s", 3000, run.PerSec))
		var worst time.Duration
		for _, rs := range run.Requests {
			worst = max(worst, rs.P99)
		}
		r.Targets = append(r.Targets, Target{Name: run.System + " p99 < 20ms for every request type", Want: float64(20 * time.Millisecond),
			Measured: float64(worst), Met: worst > 0 && worst < 20*time.Millisecond})
	}
}

// WriteJSON writes the report as indented JSON.
func (r *HTTPReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people.
func (r *HTTPReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "agentmarket bench http: %s/%s, %d CPUs, %s; %d buyers with %d lifecycles in flight each, %d sellers, %d bids per intent, %dms bid window, %s per system\n",
		r.Machine.OS, r.Machine.Arch, r.Machine.CPUs, r.Machine.GoVersion, c.Agents, c.InFlight, c.Sellers, c.BidsPerIntent, c.BidWindowMs,
		time.Duration(c.DurationSeconds*float64(time.Second)))
	if r.Machine.LoadAtStart != "" {
		fmt.Fprintf(&b, "load average (1, 5, 15 min) at start %s, at end %s: above %d means other processes competed for the CPUs\n",
			r.Machine.LoadAtStart, r.Machine.LoadAtEnd, r.Machine.CPUs)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	for _, run := range r.Runs {
		fmt.Fprintf(tw, "  %s\t%s\n", run.System, r.Systems[run.System])
	}
	tw.Flush()
	b.WriteString("\n")

	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tlifecycles\tfailed\tseconds\tlifecycles/s\tlifecycle p50\tlifecycle p99\tclose lag p50\tclose lag p99\tsealed polls\tmoney check\t")
	for _, run := range r.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", run.System, progress.Count(run.Lifecycles), run.Failed, run.Seconds,
			progress.Count(int64(run.PerSec+0.5)), formatLatency(run.LifecycleP50), formatLatency(run.LifecycleP99),
			formatLatency(run.CloseLagP50), formatLatency(run.CloseLagP99), progress.Count(run.SealedPolls), run.Check)
	}
	tw.Flush()
	b.WriteString("\n")

	// Per request type, the systems side by side.
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "request\t"
	for _, run := range r.Runs {
		header += fmt.Sprintf("%s count\t%s p50\t%s p99\t", run.System, run.System, run.System)
	}
	for _, q := range r.Ratios {
		header += fmt.Sprintf("%s/%s p50\t", q.System, q.Baseline)
	}
	fmt.Fprintln(tw, header+"errors\t")
	for i, op := range lifecycleOps {
		line := op + "\t"
		var errs []string
		for _, run := range r.Runs {
			if i >= len(run.Requests) {
				line += "-\t-\t-\t"
				continue
			}
			rs := run.Requests[i]
			line += fmt.Sprintf("%s\t%s\t%s\t", progress.Count(rs.Count), formatLatency(rs.P50), formatLatency(rs.P99))
			for code, n := range rs.Errors {
				errs = append(errs, fmt.Sprintf("%s %s×%d", run.System, code, n))
			}
		}
		for _, q := range r.Ratios {
			line += formatFactor(q.P50Factor[op]) + "×\t"
		}
		sort.Strings(errs)
		if len(errs) == 0 {
			errs = []string{"-"}
		}
		fmt.Fprintln(tw, line+strings.Join(errs, ", ")+"\t")
	}
	tw.Flush()
	b.WriteString("\n")

	if len(r.Ratios) > 0 {
		b.WriteString("ratios (lifecycles/s):\n")
		for _, q := range r.Ratios {
			fmt.Fprintf(&b, "  %s / %s: %s×\n", q.System, q.Baseline, formatFactor(q.Factor))
		}
		b.WriteString("\n")
	}
	if len(r.Targets) > 0 {
		b.WriteString("targets:\n")
		for _, t := range r.Targets {
			verdict := "met"
			if !t.Met {
				verdict = "NOT MET"
			}
			measured := progress.Count(int64(t.Measured))
			if strings.Contains(t.Name, "p99") {
				measured = formatLatency(time.Duration(t.Measured)) + " (the slowest request type's p99)"
			}
			fmt.Fprintf(&b, "  %s: %s, %s\n", t.Name, measured, verdict)
		}
		b.WriteString("\n")
	}
	b.WriteString("notes:\n")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  - %s\n", n)
	}
	verdict := "every run passed its money check"
	if !r.Passed {
		verdict = "SOME RUNS FAILED (see the money check column)"
	}
	fmt.Fprintf(&b, "\n%s\n", verdict)
	_, err := io.WriteString(w, b.String())
	return err
}
