package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/engine"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/progress"
	"github.com/agentmarket/agentmarket/sim"
)

const simUsage = "usage: agentmarket sim [--scenario NAME] [--agents N] [--seed S] [--duration D] [--out DIR] [--data DIR] [--workers N] [--server URL]"

// runSim runs a seeded simulation against an in-process market (or, with
// --server, a running one), shows its progress, prints the summary and
// writes the report.
func runSim(ctx context.Context, e *env, args []string) error {
	fs := e.flags("sim")
	scenario := fs.String("scenario", "baseline", "the scenario: "+scenarioList())
	agents := fs.Int("agents", 0, "population size (default: the scenario's)")
	seed := fs.Uint64("seed", 1, "the seed of every agent's and the engine's randomness")
	duration := fs.Duration("duration", 0, "how long buyers post work, in market time (default: the scenario's)")
	out := fs.String("out", "report", "where to write report.html, metrics.json and timeseries.csv")
	data := fs.String("data", "", "a new data directory for the in-process market (default: a temporary one, removed afterwards)")
	workers := fs.Int("workers", 0, "agents acting at once (default: the scenario's); above 1 a run is faster and not reproducible")
	server := fs.String("server", "", "run the agents against the market server at URL instead of in-process, on the wall clock")
	opKeyPath := fs.String("operator-key", e.getenv("AGENTMARKET_OPERATOR_KEY"),
		"with --server: the file holding the server's operator key (env AGENTMARKET_OPERATOR_KEY), which funds agents and reads the event stream")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	list := fs.Bool("list", false, "list the scenarios and exit")
	store := fs.String("store", storeSQLite, storeUsage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New(simUsage)
	}
	if *list {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		for _, sc := range sim.Scenarios() {
			fmt.Fprintf(tw, "%s\t%d agents, %s\t%s\n", sc.Name, sc.Agents, sc.Duration, sc.Description)
		}
		return tw.Flush()
	}
	cfg := sim.Config{Scenario: *scenario, Agents: *agents, Seed: *seed, Duration: *duration, Workers: *workers}
	resolved, _, err := cfg.Resolve()
	if err != nil {
		return err
	}
	if *server != "" {
		if *opKeyPath == "" {
			return errors.New("sim --server needs --operator-key: the operator funds the agents and reads the event stream")
		}
		opKey, _, _, err := operatorKey(*opKeyPath, "")
		if err != nil {
			return err
		}
		cfg.Market = remoteMarket(*server, opKey)
		return simulate(ctx, e, cfg, *out, *cpuProfile, nil)
	}

	dir := *data
	if dir == "" {
		tmp, err := os.MkdirTemp("", "agentmarket-sim-")
		if err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("data dir %s is not empty: a simulation starts from an empty market", dir)
	}
	clock := sim.NewVirtual(sim.Epoch)
	st, err := openStack(ctx, dir, stackOptions{Now: clock.Now, Seed: *seed, Store: *store, Tweak: func(c *engine.Config) {
		if resolved.Workers <= 1 {
			c.TickWorkers = 1 // deadlines in order: the run is a function of its seed
		}
	}})
	if err != nil {
		return err
	}
	defer st.Close()
	cfg.Market = sim.InProcess(st.Engine, clock, func(ctx context.Context) error {
		if _, err := st.Ledger.Tick(ctx); err != nil {
			return err
		}
		_, err := st.Engine.Tick(ctx)
		return err
	})
	return simulate(ctx, e, cfg, *out, *cpuProfile, func(ctx context.Context) error {
		if err := st.Ledger.CheckInvariants(ctx); err != nil {
			return fmt.Errorf("the ledger's invariants broke: %w", err)
		}
		return nil
	})
}

// simulate runs a configured simulation with a progress display, checks
// the market afterwards (when check is set), prints the summary and
// writes the report into out.
func simulate(ctx context.Context, e *env, cfg sim.Config, out, cpuProfile string, check func(context.Context) error) error {
	stopProfile, err := startCPUProfile(cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	tracker := progress.Start(e.stderr, progress.Options{Label: "sim " + cfg.Scenario, Unit: "steps", Total: cfg.Steps()})
	cfg.Progress = tracker
	res, err := sim.Run(ctx, cfg)
	tracker.Finish()
	if err != nil {
		return fmt.Errorf("sim %s: %w", cfg.Scenario, err)
	}
	if check != nil {
		if err := check(ctx); err != nil {
			return fmt.Errorf("sim %s: %w", cfg.Scenario, err)
		}
	}
	if err := res.WriteSummary(e.stdout); err != nil {
		return err
	}
	if rss := peakRSS(); rss > 0 {
		fmt.Fprintf(e.stdout, "peak memory %d MiB (resident), %d MiB from the Go runtime\n", rss>>20, res.Wall.Sys>>20)
	}
	if err := res.WriteFiles(out); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "report: %s\n", filepath.Join(out, "report.html"))
	return nil
}

// remoteMarket is a sim.Market over the Go SDK: each agent signs its own
// requests with its own key, and the operator's client funds agents and
// reads the whole event stream. The agents' requests pass through a
// wiretap, so that the replay attack has real requests to replay.
func remoteMarket(url string, operator market.PrivateKey) sim.Market {
	tap := &sim.Wiretap{Next: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}}
	agents := &http.Client{Transport: tap}
	return sim.Market{
		Connect: func(ctx context.Context, key market.PrivateKey) (sim.Session, error) {
			if key.IsZero() {
				return sim.Session{Service: client.New(url, operator), Ctx: ctx}, nil
			}
			return sim.Session{Service: client.New(url, key, client.WithHTTPClient(agents)), Ctx: ctx}, nil
		},
		Clock:  sim.WallClock{},
		Remote: &sim.Remote{URL: url, HTTP: &http.Client{Timeout: 10 * time.Second}, Tap: tap},
	}
}

func scenarioList() string {
	var names []string
	for _, sc := range sim.Scenarios() {
		names = append(names, sc.Name)
	}
	return strings.Join(names, ", ")
}

// peakRSS returns the process's peak resident memory in bytes, where the
// system reports it (Linux), or 0.
func peakRSS() int64 {
	if runtime.GOOS != "linux" {
		return 0
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
