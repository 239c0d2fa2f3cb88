package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentmarket/agentmarket/bench"
)

// runBenchMarket measures full market lifecycles in-process and durable,
// on the embedded SQLite store with group commit, on the journal store,
// and, as the baseline, on SQLite with one store transaction per state
// change.
func runBenchMarket(ctx context.Context, e *env, args []string) error {
	fs := e.flags("bench market")
	quick := fs.Bool("quick", false, "a few waves: a smoke test, not a measurement")
	lifecycles := fs.Int("lifecycles", 0, "lifecycles per system (default 4096, or 64 with --quick)")
	wave := fs.Int("wave", 0, "lifecycles at once (default 256, or 32 with --quick)")
	systems := fs.String("systems", "one-tx,embedded,journal", "systems to run, comma-separated, the baseline first: one-tx, embedded, journal")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	dir := fs.String("dir", "", "where runs put their data (default the system's temporary directory)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole benchmark to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench market takes no arguments, got %q", fs.Args())
	}
	cfg := bench.DefaultMarketConfig()
	if *quick {
		cfg = bench.QuickMarketConfig()
	}
	if *lifecycles > 0 {
		cfg.Lifecycles = *lifecycles
	}
	if *wave > 0 {
		cfg.Wave = *wave
	}
	cfg.Dir, cfg.Progress = *dir, e.stderr
	for _, s := range splitList(*systems) {
		switch s {
		case "one-tx":
			cfg.Systems = append(cfg.Systems, embeddedMarket("one-tx",
				"the engine on the ledger and SQLite with the store's group commit off: one transaction and one fsync per state change, the naive baseline", storeSQLite, 1))
		case "embedded":
			cfg.Systems = append(cfg.Systems, embeddedMarket("embedded",
				"the engine on the ledger and SQLite as serve opens it: concurrent state changes share a commit", storeSQLite, 0))
		case "journal":
			cfg.Systems = append(cfg.Systems, embeddedMarket("journal",
				"the engine on the ledger and the journal store (serve --store journal): the market's state in memory, one fsynced journal record per batch", storeJournal, 0))
		default:
			return fmt.Errorf("bench market: unknown system %q (want one-tx, embedded or journal)", s)
		}
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	rep, err := bench.MarketBench(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench market: %w", err)
	}
	if *asJSON {
		err = rep.WriteJSON(e.stdout)
	} else {
		err = rep.WriteTable(e.stdout)
	}
	if err != nil {
		return err
	}
	if !rep.Passed {
		return errors.New("bench market: some runs failed their checks")
	}
	return nil
}

// embeddedMarket opens the embedded market on the named store, with
// storeBatch capping the updates that share a SQLite commit (0: the
// store's default).
func embeddedMarket(name, about, store string, storeBatch int) bench.MarketSystem {
	return bench.MarketSystem{Name: name, About: about,
		Open: func(ctx context.Context, dir string, now func() time.Time) (*bench.MarketEngine, error) {
			st, err := openStack(ctx, dir, stackOptions{Now: now, Seed: 1, StoreBatch: storeBatch, Store: store})
			if err != nil {
				return nil, err
			}
			return &bench.MarketEngine{
				Service: st.Engine,
				Tick: func(ctx context.Context) error {
					if _, err := st.Ledger.Tick(ctx); err != nil {
						return err
					}
					_, err := st.Engine.Tick(ctx)
					return err
				},
				Check: st.Ledger.CheckInvariants,
				Close: st.Close,
			}, nil
		}}
}
