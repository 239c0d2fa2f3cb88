package sim_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/agentmarket/agentmarket/engine"
	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/sim"
	"github.com/agentmarket/agentmarket/sqlite"
)

// MustMarket opens a real market (a ledger journal, a SQLite store and
// the engine over both) in a temporary directory, on a virtual clock, as
// the sim command does, and closes it when the test ends.
func MustMarket(tb testing.TB, seed uint64) sim.Market {
	tb.Helper()
	dir := tb.TempDir()
	clock := sim.NewVirtual(sim.Epoch)
	l, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := sqlite.Open(filepath.Join(dir, "market.db"), sqlite.Options{Now: clock.Now})
	if err != nil {
		l.Close()
		tb.Fatal(err)
	}
	key, err := market.NewPrivateKeyFromSeed(make([]byte, 32))
	if err != nil {
		tb.Fatal(err)
	}
	// One tick worker: deadlines in order, as a seeded run needs.
	e, err := engine.New(context.Background(), engine.Config{Store: s, Ledger: l, Key: key, Now: clock.Now, Seed: seed, TickWorkers: 1})
	if err != nil {
		s.Close()
		l.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := l.CheckInvariants(context.Background()); err != nil {
			tb.Errorf("ledger invariants after the run: %v", err)
		}
		s.Close()
		l.Close()
	})
	return sim.InProcess(e, clock, func(ctx context.Context) error {
		if _, err := l.Tick(ctx); err != nil {
			return err
		}
		_, err := e.Tick(ctx)
		return err
	})
}

// MustRun runs a scenario on a fresh market.
func MustRun(tb testing.TB, cfg sim.Config) *sim.Result {
	tb.Helper()
	cfg.Market = MustMarket(tb, cfg.Seed)
	res, err := sim.Run(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}
