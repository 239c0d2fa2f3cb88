package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/engine"
	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/sqlite"
)

// clock is a manual clock shared by the ledger and the engine, so that
// tests move time instead of sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testMarket is an engine on a real ledger journal and a real SQLite file.
type testMarket struct {
	t      testing.TB
	dir    string
	clock  *clock
	key    market.PrivateKey
	cfg    engine.Config
	ledger *ledger.Ledger
	store  *sqlite.Store
	*engine.Engine
}

func newMarket(t testing.TB, tweak ...func(*engine.Config)) *testMarket {
	t.Helper()
	key, err := market.NewPrivateKeyFromSeed(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	m := &testMarket{t: t, dir: t.TempDir(), clock: newClock(), key: key}
	m.cfg = engine.Config{Key: key, Seed: 1, SampleRate: -1, CrossCheckRate: -1}
	for _, f := range tweak {
		f(&m.cfg)
	}
	m.open()
	t.Cleanup(m.close)
	return m
}

func (m *testMarket) open() {
	m.t.Helper()
	l, err := ledger.Open(filepath.Join(m.dir, "ledger"), ledger.Options{Now: m.clock.Now})
	if err != nil {
		m.t.Fatal(err)
	}
	s, err := sqlite.Open(filepath.Join(m.dir, "market.db"), sqlite.Options{Now: m.clock.Now})
	if err != nil {
		l.Close()
		m.t.Fatal(err)
	}
	cfg := m.cfg
	cfg.Store, cfg.Ledger, cfg.Now = s, l, m.clock.Now
	e, err := engine.New(context.Background(), cfg)
	if err != nil {
		s.Close()
		l.Close()
		m.t.Fatal(err)
	}
	m.ledger, m.store, m.Engine = l, s, e
}

func (m *testMarket) close() {
	if m.Engine == nil {
		return
	}
	m.store.Close()
	m.ledger.Close()
	m.Engine = nil
}

// restart closes everything and opens it again on the same files.
func (m *testMarket) restart() {
	m.t.Helper()
	m.close()
	m.open()
}

// agent registers an agent and returns its id and a context acting as it.
type agent struct {
	ID  market.AgentID
	Key market.PrivateKey
	Ctx context.Context
}

var seedCounter struct {
	sync.Mutex
	n byte
}

func (m *testMarket) agent(name, operator string, roles ...market.Role) agent {
	m.t.Helper()
	seedCounter.Lock()
	seedCounter.n++
	seed := make([]byte, 32)
	seed[0], seed[1] = seedCounter.n, 0xa5
	copy(seed[2:], name)
	seedCounter.Unlock()
	key, err := market.NewPrivateKeyFromSeed(seed)
	if err != nil {
		m.t.Fatal(err)
	}
	reg := market.SignRegistration(market.Registration{Name: name, Operator: operator, Roles: roles}, key, m.clock.Now())
	a, err := m.Register(context.Background(), reg)
	if err != nil {
		m.t.Fatalf("register %s: %v", name, err)
	}
	return agent{ID: a.ID, Key: key, Ctx: market.AsAgent(context.Background(), a.ID)}
}

func operatorCtx() context.Context { return market.AsOperator(context.Background()) }

func (m *testMarket) balance(id market.AgentID) market.Balance {
	m.t.Helper()
	b, err := m.Balance(operatorCtx(), id)
	if err != nil {
		m.t.Fatal(err)
	}
	return b
}

// checkMoney asserts the ledger's invariants: conservation, no negative
// wallet, pending counters that match the open holds.
func (m *testMarket) checkMoney() {
	m.t.Helper()
	if err := m.ledger.CheckInvariants(context.Background()); err != nil {
		m.t.Fatalf("ledger invariants: %v", err)
	}
}

// tick advances the clock and runs the engine's deadlines.
func (m *testMarket) tick(d time.Duration) int {
	m.t.Helper()
	m.clock.Advance(d)
	if _, err := m.ledger.Tick(context.Background()); err != nil {
		m.t.Fatal(err)
	}
	n, err := m.Tick(context.Background())
	if err != nil {
		m.t.Fatal(err)
	}
	return n
}

func must[T any](t testing.TB) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// wantKind asserts that err is a market error of kind k (and code, if given).
func wantKind(t testing.TB, err error, k market.Kind, code ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", k)
	}
	if got := market.KindOf(err); got != k {
		t.Fatalf("got %s (%v), want %s", got, err, k)
	}
	if len(code) > 0 && market.CodeOf(err) != code[0] {
		t.Fatalf("got code %q (%v), want %q", market.CodeOf(err), err, code[0])
	}
}

func rawJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return b
}
