package postgres_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/engine"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/postgres"
	"github.com/agentmarket/agentmarket/postgres/pgtest"
	"github.com/agentmarket/agentmarket/sim"
)

var _ engine.Ledger = (*postgres.Ledger)(nil)

// node is one engine on the shared schema, as one serve process would
// run: its own store and ledger connections, its own engine.
type node struct {
	store  *postgres.Store
	ledger *postgres.Ledger
	engine *engine.Engine
}

func openNode(t *testing.T, url string, clock *sim.Virtual, seed uint64) *node {
	t.Helper()
	key, err := market.NewPrivateKeyFromSeed(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{
		store:  MustOpen(t, url, postgres.Options{Now: clock.Now}),
		ledger: MustOpenLedger(t, url, postgres.LedgerOptions{Now: clock.Now}),
	}
	n.engine, err = engine.New(t.Context(), engine.Config{Store: n.store, Ledger: n.ledger, Key: key, Now: clock.Now, Seed: seed})
	if err != nil {
		t.Fatalf("engine on postgres: %v", err)
	}
	return n
}

// TestSimulatedEconomy runs the simulator's adversarial economy on
// engines over PostgreSQL, with eight agents acting at once: on one node,
// and spread over two nodes sharing one schema, each agent talking to one
// of them and both running the deadlines. The economy must trade, lose no
// credit, leak none to attackers and meet no unexpected error.
func TestSimulatedEconomy(t *testing.T) {
	if testing.Short() {
		t.Skip("a simulated economy takes a while")
	}
	for _, nodes := range []int{1, 2} {
		t.Run(map[int]string{1: "OneNode", 2: "TwoNodes"}[nodes], func(t *testing.T) {
			url := pgtest.Schema(t)
			clock := sim.NewVirtual(sim.Epoch)
			var ns []*node
			for i := range nodes {
				ns = append(ns, openNode(t, url, clock, uint64(i+1)))
			}
			var next atomic.Uint64
			mkt := sim.Market{
				Connect: func(ctx context.Context, key market.PrivateKey) (sim.Session, error) {
					if key.IsZero() {
						return sim.Session{Service: ns[0].engine, Ctx: market.AsOperator(ctx)}, nil
					}
					n := ns[next.Add(1)%uint64(len(ns))]
					return sim.Session{Service: n.engine, Ctx: market.AsAgent(ctx, key.Public().DID())}, nil
				},
				Clock: clock,
				Tick: func(ctx context.Context) error {
					for _, n := range ns {
						if _, err := n.ledger.Tick(ctx); err != nil {
							return err
						}
						if _, err := n.engine.Tick(ctx); err != nil {
							return err
						}
					}
					return nil
				},
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
			defer cancel()
			res, err := sim.Run(ctx, sim.Config{Scenario: "adversarial", Agents: 40, Duration: 2 * time.Minute, Seed: 1,
				Workers: 8, Market: mkt, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
			if err != nil {
				t.Fatalf("simulation: %v", err)
			}
			if err := ns[0].ledger.CheckInvariants(t.Context()); err != nil {
				t.Errorf("ledger invariants after the run: %v", err)
			}
			m := res.Metrics
			if m.Volume.Settled == 0 {
				t.Errorf("no contract settled: %+v", m.Volume)
			}
			if m.StolenMicrocredits != 0 {
				t.Errorf("attacks gained %d µcr", m.StolenMicrocredits)
			}
			if len(m.Errors) > 0 {
				t.Errorf("agents met unexpected errors: %+v", m.Errors)
			}
			t.Logf("%d contracts settled", m.Volume.Settled)
		})
	}
}
