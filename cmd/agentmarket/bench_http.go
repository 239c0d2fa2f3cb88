package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/agentmarket/agentmarket/bench"
)

// runBenchHTTP runs whole market lifecycles through the real serve over
// loopback, signed, and in-process on the engine beside it.
func runBenchHTTP(ctx context.Context, e *env, args []string) error {
	fs := e.flags("bench http")
	quick := fs.Bool("quick", false, "run each system for a moment with 8 agents: a smoke test, not a measurement")
	duration := fs.Duration("duration", 0, "how long each system starts lifecycles (default 10s, or 700ms with --quick)")
	agents := fs.Int("agents", 0, "buyers trading at once (default 32, or 8 with --quick)")
	inFlight := fs.Int("inflight", 0, "lifecycles each buyer keeps in flight (default 10, or 2 with --quick)")
	sellers := fs.Int("sellers", 0, "sellers bidding (default as many as agents)")
	bids := fs.Int("bids", 3, "bids per intent")
	window := fs.Duration("bid-window", 0, "every intent's bidding window (default 1s, or 300ms with --quick)")
	poll := fs.Duration("poll", 5*time.Millisecond, "how long a buyer waits before asking again for bids still sealed after the deadline; it doubles, up to 8 times")
	tick := fs.Duration("tick", 10*time.Millisecond, "how often each market runs its deadlines (serve --tick), which closes bidding")
	systems := fs.String("systems", "in-process,http",
		"systems to run, comma-separated, the baseline first: in-process or http on the SQLite market store, in-process-journal or http-journal on the journal store")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	dir := fs.String("dir", "", "where runs put their data (default the system's temporary directory)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole benchmark, server included, to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench http takes no arguments, got %q", fs.Args())
	}
	cfg := bench.DefaultHTTPConfig()
	if *quick {
		cfg = bench.QuickHTTPConfig()
	}
	if *duration > 0 {
		cfg.Duration = *duration
	}
	if *agents > 0 {
		cfg.Agents, cfg.Sellers = *agents, *agents
	}
	if *inFlight > 0 {
		cfg.InFlight = *inFlight
	}
	if *window > 0 {
		cfg.BidWindow = *window
	}
	if *sellers > 0 {
		cfg.Sellers = *sellers
	}
	cfg.Bids, cfg.Poll, cfg.Dir, cfg.Progress = *bids, *poll, *dir, e.stderr
	if *tick <= 0 {
		return fmt.Errorf("bench http --tick %s: want a positive duration", *tick)
	}
	for _, s := range splitList(*systems) {
		switch s {
		case "in-process":
			cfg.Systems = append(cfg.Systems, inProcessSystem(s, storeSQLite, *tick))
		case "in-process-journal":
			cfg.Systems = append(cfg.Systems, inProcessSystem(s, storeJournal, *tick))
		case "http":
			cfg.Systems = append(cfg.Systems, serveSystem(e, s, storeSQLite, *tick))
		case "http-journal":
			cfg.Systems = append(cfg.Systems, serveSystem(e, s, storeJournal, *tick))
		default:
			return fmt.Errorf("bench http: unknown system %q (want in-process, http, in-process-journal or http-journal)", s)
		}
	}

	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	rep, err := bench.HTTPBench(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench http: %w", err)
	}
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("Both markets run their deadlines every %s (serve --tick), so bidding closes within a tick of its deadline; the close lag columns show it.", *tick),
		"The http market is agentmarket serve itself, on 127.0.0.1:0 in a temporary directory, with the per-agent rate limit "+
			"raised out of the way (--rate-limit 1000000): the benchmark measures capacity, not the limit. Agents' SDK clients "+
			"share one keep-alive transport with room for a connection each.")
	if *asJSON {
		err = rep.WriteJSON(e.stdout)
	} else {
		err = rep.WriteTable(e.stdout)
	}
	if err != nil {
		return err
	}
	if !rep.Passed {
		return errors.New("bench http: some runs failed their checks")
	}
	return nil
}

// storeAbout says what a system's market store is, for the report.
var storeAbout = map[string]string{
	storeSQLite:  "the market store on SQLite",
	storeJournal: "the market store in memory behind its journal (serve --store journal)",
}

// inProcessSystem is the baseline: the engine on the embedded store (the
// market store that store names), as serve opens it, called directly.
func inProcessSystem(name, store string, tick time.Duration) bench.LifecycleSystem {
	return bench.LifecycleSystem{
		Name:  name,
		About: "the engine on the ledger and " + storeAbout[store] + ", called directly: no HTTP, no signatures",
		Open: func(ctx context.Context, dir string) (*bench.LifecycleMarket, error) {
			st, err := openStack(ctx, dir, stackOptions{Store: store})
			if err != nil {
				return nil, err
			}
			tctx, stop := context.WithCancel(context.WithoutCancel(ctx))
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				runDeadlines(tctx, st, tick, slog.New(slog.DiscardHandler))
			}()
			return &bench.LifecycleMarket{Service: st.Engine, Close: func() error {
				stop()
				wg.Wait()
				return st.Close()
			}}, nil
		},
	}
}

// serveSystem runs agentmarket serve --store store on a free loopback
// port, and the agents reach it through the Go SDK.
func serveSystem(e *env, name, store string, tick time.Duration) bench.LifecycleSystem {
	return bench.LifecycleSystem{
		Name:  name,
		About: "agentmarket serve on loopback with " + storeAbout[store] + ", reached through the Go SDK: RFC 9421 signatures, idempotency keys, JSON",
		Open: func(ctx context.Context, dir string) (*bench.LifecycleMarket, error) {
			sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			out, w := io.Pipe()
			done := make(chan error, 1)
			args := []string{"--addr", "127.0.0.1:0", "--data", dir, "--log-level", "warn", "--tick", tick.String(), "--rate-limit", "1000000", "--store", store}
			// The benchmark's environment must not reconfigure the server.
			senv := &env{getenv: func(string) string { return "" }, stdout: w, stderr: e.stderr}
			go func() {
				done <- runServe(sctx, senv, args)
				w.Close()
			}()
			url, err := listeningURL(out)
			go io.Copy(io.Discard, out)
			if err != nil {
				cancel()
				return nil, errors.Join(err, <-done)
			}
			key, err := readAgentKey(filepath.Join(dir, "operator.key"))
			if err != nil {
				cancel()
				return nil, errors.Join(err, <-done)
			}
			return &bench.LifecycleMarket{URL: url, Operator: key, Close: func() error {
				cancel()
				return <-done
			}}, nil
		},
	}
}

var listeningLine = regexp.MustCompile(`listening on (http://\S+)`)

// listeningURL reads serve's output until it says where it listens.
func listeningURL(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if m := listeningLine.FindStringSubmatch(sc.Text()); m != nil {
			return m[1], nil
		}
	}
	return "", errors.New("serve exited before it listened")
}
