package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/agentmarket/agentmarket/httpapi"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/sim"
)

// runDemo starts the market on the embedded store in a temporary
// directory, serves its HTTP API on a local port, and runs a simulated
// economy against it over HTTP with the Go SDK, as real agents would
// trade: the first thing to run to see the product work.
func runDemo(ctx context.Context, e *env, args []string) error {
	fs := e.flags("demo")
	scenario := fs.String("scenario", "adversarial", "the scenario: "+scenarioList())
	agents := fs.Int("agents", 40, "population size")
	seed := fs.Uint64("seed", 1, "the seed of the agents' randomness")
	duration := fs.Duration("duration", time.Minute, "how long the demo runs: three fifths trading, a fifth settling, a fifth for the LLM injection suite")
	addr := fs.String("addr", "127.0.0.1:0", "address for the API to listen on")
	out := fs.String("out", "report", "where to write report.html, metrics.json and timeseries.csv")
	store := fs.String("store", storeSQLite, storeUsage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *duration < 4*time.Second {
		return errors.New("usage: agentmarket demo [--scenario NAME] [--agents N] [--seed S] [--duration D (at least 4s)] [--addr HOST:PORT] [--out DIR] [--store sqlite|journal]")
	}
	dir, err := os.MkdirTemp("", "agentmarket-demo-")
	if err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	st, err := openStack(ctx, dir, stackOptions{Logger: log, Store: *store})
	if err != nil {
		return err
	}
	defer st.Close()
	opKey, err := market.GenerateKey(nil)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	srv := &http.Server{Handler: httpapi.NewServer(httpapi.Config{Service: st.Engine, Store: st.Store, Operator: opKey.Public(), Logger: log, MarketKey: st.Key}),
		ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	tickCtx, stopTicks := context.WithCancel(ctx)
	var ticks sync.WaitGroup
	ticks.Add(1)
	go func() {
		defer ticks.Done()
		runDeadlines(tickCtx, st, 200*time.Millisecond, log)
	}()
	defer func() {
		stopTicks()
		ticks.Wait()
	}()
	url := "http://" + ln.Addr().String()
	fmt.Fprintf(e.stdout, "agentmarket demo: the market's API is at %s (OpenAPI at %s/v1/openapi.json)\n", url, url)
	fmt.Fprintf(e.stdout, "agentmarket demo: %d simulated agents trade %s over HTTP for %s; every request is signed by its agent\n",
		*agents, *scenario, *duration)
	cfg := sim.Config{Scenario: *scenario, Agents: *agents, Seed: *seed, Duration: *duration * 3 / 5, WindDown: *duration / 5,
		Market: remoteMarket(url, opKey)}
	if _, _, err := cfg.Resolve(); err != nil {
		return err
	}
	return simulate(ctx, e, cfg, *out, "", func(ctx context.Context) error {
		if err := st.Ledger.CheckInvariants(ctx); err != nil {
			return fmt.Errorf("the ledger's invariants broke: %w", err)
		}
		return nil
	})
}
