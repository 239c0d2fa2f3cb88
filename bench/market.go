package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/progress"
)

// The market benchmark ("agentmarket bench market") measures full
// lifecycles in-process and durable — intent, three sealed bids, award
// with escrow, delivery, the sort checker, settlement — on a virtual
// clock, so that nothing but the market's own work bounds the rate: bid
// windows pass when the driver says so, not on the wall clock. Lifecycles
// run in waves of concurrent buyers, the way a busy market runs them.

// MarketEngine is an open market for the benchmark: the service, how to
// run its deadlines, and how to check its money.
type MarketEngine struct {
	Service market.Service
	// Tick runs every passed deadline (the engine's and the ledger's).
	Tick func(ctx context.Context) error
	// Check verifies the ledger's invariants: conservation, no negative wallet.
	Check func(ctx context.Context) error
	Close func() error
}

// MarketSystem is one market to measure, opened afresh for its run.
type MarketSystem struct {
	Name  string
	About string
	// Open starts the market in dir, an empty directory, on the clock now.
	Open func(ctx context.Context, dir string, now func() time.Time) (*MarketEngine, error)
}

// MarketConfig configures the market benchmark.
type MarketConfig struct {
	// Systems run in order; each after the first is compared with the first.
	Systems []MarketSystem
	// Lifecycles is how many each system runs, in waves of Wave at once,
	// by Buyers buyers and Sellers sellers (three bid on each intent).
	Lifecycles, Wave, Buyers, Sellers int
	// Dir is where each system keeps its data; default the temporary directory.
	Dir      string
	Progress io.Writer
}

// DefaultMarketConfig is the benchmark.
func DefaultMarketConfig() MarketConfig {
	return MarketConfig{Lifecycles: 4096, Wave: 256, Buyers: 32, Sellers: 32}
}

// QuickMarketConfig is a smoke test, not a measurement.
func QuickMarketConfig() MarketConfig {
	return MarketConfig{Lifecycles: 64, Wave: 32, Buyers: 8, Sellers: 8}
}

// MarketReport is the market benchmark's outcome.
type MarketReport struct {
	Machine Machine       `json:"machine"`
	Config  MarketConfig  `json:"config"`
	Runs    []MarketRun   `json:"runs"`
	Ratios  []MarketRatio `json:"ratios"`
	Targets []Target      `json:"targets"`
	Notes   []string      `json:"notes"`
	Passed  bool          `json:"passed"`
}

// MarketRun is one system's run.
type MarketRun struct {
	System       string         `json:"system"`
	About        string         `json:"about"`
	Lifecycles   int            `json:"lifecycles"`
	Seconds      float64        `json:"seconds"`
	PerSecond    float64        `json:"lifecycles_per_second"`
	Ops          []RequestStats `json:"requests"`
	Check        string         `json:"check"` // "passed", or what failed
	PeakRSSBytes int64          `json:"peak_rss_bytes"`
}

// MarketRatio compares a system's rate with the baseline's.
type MarketRatio struct {
	System   string  `json:"system"`
	Baseline string  `json:"baseline"`
	Factor   float64 `json:"factor"`
}

// MarketBench runs the benchmark.
func MarketBench(ctx context.Context, cfg MarketConfig) (*MarketReport, error) {
	rep := &MarketReport{
		Machine: Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadAtStart: loadAverage()},
		Config:  cfg, Passed: true,
	}
	rep.Config.Systems = nil
	for _, sys := range cfg.Systems {
		run, err := runMarket(ctx, cfg, sys)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sys.Name, err)
		}
		if run.Check != "passed" {
			rep.Passed = false
		}
		rep.Runs = append(rep.Runs, run)
	}
	for _, r := range rep.Runs[min(1, len(rep.Runs)):] {
		if base := rep.Runs[0]; base.PerSecond > 0 {
			rep.Ratios = append(rep.Ratios, MarketRatio{System: r.System, Baseline: base.System, Factor: r.PerSecond / base.PerSecond})
		}
	}
	best := 0.0
	for _, r := range rep.Runs {
		best = max(best, r.PerSecond)
	}
	rep.Targets = []Target{{Name: "lifecycles/s in-process, durable", Want: 20_000, Measured: best, Met: best >= 20_000}}
	rep.Machine.LoadAtEnd = loadAverage()
	rep.Notes = []string{
		"A lifecycle is an intent, three sealed bids, the bidding deadline, an award holding price and fee in escrow, a delivery, the sort checker, and settlement with a signed receipt; every step is durable before it returns.",
		"The clock is virtual: bid windows pass when the driver advances it, so the rate is the market's own, not bounded by waiting.",
	}
	return rep, nil
}

// virtualClock stands still until the driver advances it past a wave's
// bid deadline, so no bid is ever late however long a wave takes.
type virtualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *virtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *virtualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type marketActor struct {
	id  market.AgentID
	ctx context.Context
}

func runMarket(ctx context.Context, cfg MarketConfig, sys MarketSystem) (MarketRun, error) {
	run := MarketRun{System: sys.Name, About: sys.About, Check: "passed"}
	dir, err := os.MkdirTemp(cfg.Dir, "agentmarket-bench-market-")
	if err != nil {
		return run, fmt.Errorf("create run dir: %w", err)
	}
	defer os.RemoveAll(dir)
	clk := &virtualClock{t: time.Now().UTC().Truncate(time.Second)}
	m, err := sys.Open(ctx, dir, clk.Now)
	if err != nil {
		return run, err
	}
	defer m.Close()
	svc := m.Service
	register := func(name string, role market.Role) (marketActor, error) {
		key, err := market.GenerateKey(nil)
		if err != nil {
			return marketActor{}, err
		}
		a, err := svc.Register(ctx, market.SignRegistration(market.Registration{Name: name, Operator: name, Roles: []market.Role{role}}, key, clk.Now()))
		if err != nil {
			return marketActor{}, fmt.Errorf("register %s: %w", name, err)
		}
		return marketActor{id: a.ID, ctx: market.AsAgent(ctx, a.ID)}, nil
	}
	var buyers, sellers []marketActor
	op := market.AsOperator(ctx)
	for i := range cfg.Buyers {
		b, err := register(fmt.Sprintf("buyer-%d", i), market.RoleBuyer)
		if err != nil {
			return run, err
		}
		if _, err := svc.Mint(op, b.id, 1_000_000*market.Credit); err != nil {
			return run, fmt.Errorf("fund buyer: %w", err)
		}
		buyers = append(buyers, b)
	}
	for i := range cfg.Sellers {
		s, err := register(fmt.Sprintf("seller-%d", i), market.RoleSeller)
		if err != nil {
			return run, err
		}
		if _, err := svc.PublishOffer(s.ctx, market.Offer{Intent: "SORT_LIST", BasePriceMicrocredits: market.Credit / 10, LatencyMs: 60_000}); err != nil {
			return run, fmt.Errorf("publish offer: %w", err)
		}
		sellers = append(sellers, s)
	}
	lat := map[string]*latencies{}
	for _, op := range lifecycleOps {
		lat[op] = &latencies{}
	}
	var latMu sync.Mutex
	timed := func(op string, f func() error) error {
		start := time.Now()
		err := f()
		latMu.Lock()
		lat[op].add(time.Since(start), err)
		latMu.Unlock()
		return err
	}
	bar := progress.Discard()
	if cfg.Progress != nil {
		bar = progress.Start(cfg.Progress, progress.Options{Label: "market " + sys.Name, Unit: "lifecycles", Total: int64(cfg.Lifecycles)})
	}
	bar.Begin()
	params := json.RawMessage(`{"items":[5,3,9,1,7],"order":"asc"}`)
	output := json.RawMessage(`{"items":[1,3,5,7,9]}`)
	var failures []string
	var fmu sync.Mutex
	fail := func(err error) {
		fmu.Lock()
		if len(failures) < 5 {
			failures = append(failures, err.Error())
		}
		fmu.Unlock()
	}
	start := time.Now()
	done := 0
	for done < cfg.Lifecycles {
		n := min(cfg.Wave, cfg.Lifecycles-done)
		intents := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				b := buyers[(done+i)%len(buyers)]
				var in market.Intent
				if err := timed(opPostIntent, func() (err error) {
					in, err = svc.PostIntent(b.ctx, market.IntentRequest{RequestID: fmt.Sprintf("bench-%d", done+i), Intent: "SORT_LIST",
						Parameters: params, Constraints: market.Constraints{MaxBudgetMicrocredits: market.Credit},
						BidWindowMs: 1000, Acceptance: market.Acceptance{Policy: market.AcceptChecker, Checker: "sort"}})
					return err
				}); err != nil {
					fail(err)
					return
				}
				intents[i] = in.ID
				for k := range 3 {
					s := sellers[(done+i+k)%len(sellers)]
					if err := timed(opPlaceBid, func() error {
						_, err := svc.PlaceBid(s.ctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: int64(k+1) * market.Credit / 20, LatencyMs: 60_000})
						return err
					}); err != nil {
						fail(err)
					}
				}
			})
		}
		wg.Wait()
		clk.advance(1500 * time.Millisecond)
		if err := m.Tick(ctx); err != nil {
			return run, fmt.Errorf("tick: %w", err)
		}
		for i := range n {
			wg.Go(func() {
				if intents[i] == "" {
					return
				}
				b := buyers[(done+i)%len(buyers)]
				var bids []market.Bid
				if err := timed(opBids, func() (err error) { bids, err = svc.Bids(b.ctx, intents[i]); return err }); err != nil || len(bids) == 0 {
					fail(fmt.Errorf("bids of %s: %v (%d)", intents[i], err, len(bids)))
					return
				}
				var c market.Contract
				if err := timed(opAward, func() (err error) { c, err = svc.Award(b.ctx, intents[i], bids[0].ID); return err }); err != nil {
					fail(err)
					return
				}
				seller := slices.IndexFunc(sellers, func(s marketActor) bool { return s.id == c.Seller })
				if err := timed(opDeliver, func() error {
					got, err := svc.Deliver(sellers[seller].ctx, market.DeliveryRequest{Contract: c.ID, Output: output})
					if err == nil && got.State != market.ContractSettled {
						err = fmt.Errorf("contract %s is %s after a passing check", c.ID, got.State)
					}
					return err
				}); err != nil {
					fail(err)
					return
				}
				bar.Add(1)
				latMu.Lock()
				run.Lifecycles++
				latMu.Unlock()
			})
		}
		wg.Wait()
		done += n
	}
	run.Seconds = time.Since(start).Seconds()
	bar.Finish()
	run.PerSecond = float64(run.Lifecycles) / run.Seconds
	for _, op := range lifecycleOps {
		run.Ops = append(run.Ops, lat[op].stats(op))
	}
	if err := m.Check(ctx); err != nil {
		run.Check = "FAILED: " + err.Error()
	} else if len(failures) > 0 {
		run.Check = fmt.Sprintf("FAILED: %d of %d lifecycles did not complete, e.g. %s", cfg.Lifecycles-run.Lifecycles, cfg.Lifecycles, failures[0])
	}
	run.PeakRSSBytes = ReadMemory().PeakRSS
	return run, nil
}

// WriteJSON prints the report as JSON.
func (r *MarketReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable prints the report for people.
func (r *MarketReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "machine: %s/%s, %d CPUs, %s; load average %s at start, %s at end\n\n",
		r.Machine.OS, r.Machine.Arch, r.Machine.CPUs, r.Machine.GoVersion, r.Machine.LoadAtStart, r.Machine.LoadAtEnd)
	for _, run := range r.Runs {
		fmt.Fprintf(w, "  %s: %s\n", run.System, run.About)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "system\tlifecycles\tseconds\tlifecycles/s\tpeak RSS\tcheck\t")
	for _, run := range r.Runs {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%d MiB\t%s\t\n", run.System, run.Lifecycles, run.Seconds, run.PerSecond, run.PeakRSSBytes>>20, run.Check)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nper request, p50 / p99:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "system\t"
	for _, op := range lifecycleOps {
		header += op + "\t"
	}
	fmt.Fprintln(tw, header)
	for _, run := range r.Runs {
		line := run.System + "\t"
		for _, s := range run.Ops {
			line += fmt.Sprintf("%s / %s\t", fmtDur(s.P50), fmtDur(s.P99))
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w, "\nratios (lifecycles/s):")
		for _, q := range r.Ratios {
			fmt.Fprintf(w, "  %s / %s  %.1f×\n", q.System, q.Baseline, q.Factor)
		}
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, t := range r.Targets {
		verdict := "met"
		if !t.Met {
			verdict = fmt.Sprintf("SHORT (%.1f%% of target)", 100*t.Measured/t.Want)
		}
		fmt.Fprintf(w, "  %s ≥ %.0f: %.0f, %s\n", t.Name, t.Want, t.Measured, verdict)
	}
	fmt.Fprintln(w, "\nnotes:")
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
	return nil
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}
