// Package testmarket builds a real market for the agent packages' tests:
// the engine on a ledger journal and a SQLite store in a temporary
// directory, on a manual clock that tests advance instead of sleeping.
package testmarket

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/engine"
	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/sqlite"
)

// Clock is a manual clock shared by the ledger and the engine.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Market is a running engine with its clock and ledger.
type Market struct {
	*engine.Engine
	T      testing.TB
	Clock  *Clock
	Ledger *ledger.Ledger
	Key    market.PrivateKey

	mu    sync.Mutex
	seeds int
}

// New opens a market in t's temporary directory and closes it at cleanup.
func New(t testing.TB) *Market {
	t.Helper()
	dir := t.TempDir()
	clk := &Clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	key, err := market.NewPrivateKeyFromSeed(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Open(filepath.Join(dir, "market.db"), sqlite.Options{Now: clk.Now})
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	e, err := engine.New(context.Background(), engine.Config{Store: s, Ledger: l, Key: key, Now: clk.Now, Seed: 1, SampleRate: -1, CrossCheckRate: -1})
	if err != nil {
		s.Close()
		l.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); l.Close() })
	return &Market{Engine: e, T: t, Clock: clk, Ledger: l, Key: key}
}

// agentKey returns a deterministic key for the n-th agent.
func agentKey(n int) market.PrivateKey {
	seed := make([]byte, 32)
	seed[0], seed[1], seed[2] = byte(n), byte(n>>8), 0xa9
	k, err := market.NewPrivateKeyFromSeed(seed)
	if err != nil {
		panic(err) // cannot fail: the seed is 32 bytes
	}
	return k
}

// NewAgent registers an agent under its own operator and returns its id.
func (m *Market) NewAgent(name string, roles ...market.Role) market.AgentID {
	m.T.Helper()
	m.mu.Lock()
	m.seeds++
	key := agentKey(m.seeds)
	m.mu.Unlock()
	reg := market.SignRegistration(market.Registration{Name: name, Operator: "op-" + name, Roles: roles}, key, m.Clock.Now())
	a, err := m.Register(context.Background(), reg)
	if err != nil {
		m.T.Fatalf("register %s: %v", name, err)
	}
	return a.ID
}

// Advance moves the clock on and runs the ledger's and the engine's
// deadlines.
func (m *Market) Advance(ctx context.Context, d time.Duration) error {
	m.Clock.mu.Lock()
	m.Clock.t = m.Clock.t.Add(d)
	m.Clock.mu.Unlock()
	if _, err := m.Ledger.Tick(ctx); err != nil {
		return err
	}
	_, err := m.Tick(ctx)
	return err
}

// Wallet returns an agent's wallet, read as the operator.
func (m *Market) Wallet(id market.AgentID) market.Balance {
	m.T.Helper()
	b, err := m.Engine.Balance(market.AsOperator(context.Background()), id)
	if err != nil {
		m.T.Fatal(err)
	}
	return b
}

// CheckMoney fails the test when the ledger's invariants break.
func (m *Market) CheckMoney() {
	m.T.Helper()
	if err := m.Ledger.CheckInvariants(context.Background()); err != nil {
		m.T.Fatalf("ledger invariants: %v", err)
	}
}
