package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/agentmarket/agentmarket/bench"
	"github.com/agentmarket/agentmarket/ledger"
)

const benchUsage = "usage: agentmarket bench ledger [--quick] [--duration D] [--transfers N] [--pg URL] [--db URL] [--json] [--memory [--rss-transfers N]]\n" +
	"       agentmarket bench market [--quick] [--lifecycles N] [--wave N] [--systems one-tx,embedded] [--json] [--cpuprofile FILE]\n" +
	"       agentmarket bench http [--quick] [--duration D] [--agents N] [--inflight N] [--systems in-process,http] [--json] [--cpuprofile FILE]"

func runBench(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "http" {
		return runBenchHTTP(ctx, e, args[1:])
	}
	if len(args) > 0 && args[0] == "market" {
		return runBenchMarket(ctx, e, args[1:])
	}
	if len(args) == 0 || args[0] != "ledger" {
		return errors.New(benchUsage)
	}
	fs := e.flags("bench ledger")
	quick := fs.Bool("quick", false, "run every system and workload for a moment: a smoke test, not a measurement")
	duration := fs.Duration("duration", 0, "time budget per run (default 4s, or 150ms with --quick)")
	transfers := fs.Int64("transfers", 0, "most transfers per run (default 2,000,000, or 40,000 with --quick)")
	wallets := fs.Int("accounts", 0, "funded wallets the workloads spread over (default 100,000, or 1,000 with --quick)")
	pg := fs.String("pg", e.envOr("AGENTMARKET_BENCH_POSTGRES", e.getenv("AGENTMARKET_TEST_POSTGRES")),
		"PostgreSQL URL for system C (env AGENTMARKET_BENCH_POSTGRES, then AGENTMARKET_TEST_POSTGRES); empty skips C")
	db := fs.String("db", "", "PostgreSQL URL for system D, agentmarket's ledger on PostgreSQL, measured beside pgbench's TPC-B on the same server; empty skips D")
	workloads := fs.String("workloads", "W1,W2,W3", "workloads to run, comma-separated")
	systems := fs.String("systems", "A,B,C,D", "systems to run, comma-separated")
	batches := fs.String("batches", "1,100,8190", "A's batch sizes for one caller, comma-separated; empty skips them")
	callers := fs.Int("callers", 64, "A's concurrent single-transfer callers; 0 skips that run")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	memory := fs.Bool("memory", false, "only push --rss-transfers through A in batches of 8190 and report resident memory")
	rssTransfers := fs.Int64("rss-transfers", 10_000_000, "transfers for the memory run (implies --memory when set)")
	dir := fs.String("dir", "", "where runs put their data (default the system's temporary directory)")
	seed := fs.Uint64("seed", 1, "workload seed")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole benchmark to this file")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "rss-transfers" {
			*memory = true
		}
	})

	cfg := bench.DefaultConfig()
	if *quick {
		cfg = bench.QuickConfig()
	}
	if *duration > 0 {
		cfg.Duration = *duration
	}
	if *transfers > 0 {
		cfg.Transfers = *transfers
	}
	if *wallets > 0 {
		cfg.Wallets = *wallets
	}
	cfg.Postgres, cfg.LedgerDB, cfg.Dir, cfg.Seed, cfg.Progress = *pg, *db, *dir, *seed, e.stderr
	cfg.Batches, cfg.Callers = nil, *callers
	for _, s := range splitList(*batches) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > ledger.MaxBatch {
			return fmt.Errorf("batch size %q: want 1 to %d", s, ledger.MaxBatch)
		}
		cfg.Batches = append(cfg.Batches, n)
	}
	for _, s := range splitList(*workloads) {
		w, err := bench.ParseWorkload(s)
		if err != nil {
			return err
		}
		cfg.Workloads = append(cfg.Workloads, w)
	}
	for _, s := range splitList(*systems) {
		switch sys := bench.System(strings.ToUpper(s)); sys {
		case bench.Ledger, bench.NaiveSQLite, bench.NaivePostgres, bench.PostgresLedger:
			cfg.Systems = append(cfg.Systems, sys)
		default:
			return fmt.Errorf("unknown system %q (want A, B, C or D)", s)
		}
	}

	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()

	start := time.Now()
	var rep *bench.Report
	if *memory {
		rep, err = bench.MemoryBench(ctx, cfg, *rssTransfers)
	} else {
		rep, err = bench.Bench(ctx, cfg)
	}
	if err != nil {
		return fmt.Errorf("bench ledger: %w", err)
	}
	if *asJSON {
		err = rep.WriteJSON(e.stdout)
	} else {
		err = rep.WriteTable(e.stdout)
		fmt.Fprintf(e.stdout, "(took %s)\n", time.Since(start).Round(time.Second))
	}
	if err != nil {
		return err
	}
	if !rep.Passed {
		return errors.New("bench ledger: some runs failed their checks")
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// startCPUProfile starts a CPU profile written to path, and returns the
// function that ends it; with no path it does nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
