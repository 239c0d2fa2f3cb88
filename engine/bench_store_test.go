package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/agentmarket/agentmarket/engine"
	"github.com/agentmarket/agentmarket/journalstore"
	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/sqlite"
)

// openStore opens a market store in dir on the clock now.
type openStore func(dir string, now func() time.Time) (market.Store, error)

var benchStores = []struct {
	name string
	open openStore
}{
	{"sqlite", func(dir string, now func() time.Time) (market.Store, error) {
		return sqlite.Open(filepath.Join(dir, "market.db"), sqlite.Options{Now: now})
	}},
	{"journal", func(dir string, now func() time.Time) (market.Store, error) {
		return journalstore.Open(filepath.Join(dir, "market"), journalstore.Options{Now: now})
	}},
}

// newMarketOn is newMarket on the store that open returns. Its store is
// closed when the test ends, not by testMarket.close.
func newMarketOn(t testing.TB, open openStore, tweak ...func(*engine.Config)) *testMarket {
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
	l, err := ledger.Open(filepath.Join(m.dir, "ledger"), ledger.Options{Now: m.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s, err := open(m.dir, m.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	m.cfg.Store = s
	cfg := m.cfg
	cfg.Store, cfg.Ledger, cfg.Now = s, l, m.clock.Now
	e, err := engine.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.ledger, m.Engine = l, e
	return m
}

// BenchmarkLifecycleStores runs BenchmarkLifecycle's lifecycles, b.N of
// them, on each market store in the same run: SQLite, and the journal
// store that keeps the market's state in memory. It reports each one's
// lifecycles per second and the journal store's speedup over SQLite.
func BenchmarkLifecycleStores(b *testing.B) {
	const wave = 128
	rates := make(map[string]float64)
	b.StopTimer()
	for _, st := range benchStores {
		m := newMarketOn(b, st.open, func(c *engine.Config) {
			c.StartingGrant = 1_000_000 * market.Credit
			c.OperatorGrantCap = 1 << 60
		})
		var buyers, sellers []agent
		for i := range 16 {
			buyers = append(buyers, m.agent(fmt.Sprintf("buyer-%d", i), fmt.Sprintf("ob%d", i), market.RoleBuyer))
			s := m.agent(fmt.Sprintf("seller-%d", i), fmt.Sprintf("os%d", i), market.RoleSeller)
			must[market.Offer](b)(m.PublishOffer(s.Ctx, market.Offer{Intent: sortIntent, BasePriceMicrocredits: market.Credit, LatencyMs: 60_000}))
			sellers = append(sellers, s)
		}
		b.StartTimer()
		start := time.Now()
		for done := 0; done < b.N; done += wave {
			runLifecycles(b, m, buyers, sellers, min(wave, b.N-done))
		}
		rates[st.name] = float64(b.N) / time.Since(start).Seconds()
		b.StopTimer()
		m.checkMoney()
	}
	b.ReportMetric(rates["sqlite"], "sqlite-lifecycles/s")
	b.ReportMetric(rates["journal"], "journal-lifecycles/s")
	b.ReportMetric(rates["journal"]/rates["sqlite"], "speedup")
}

// BenchmarkJournalStoreAtScale runs b.N lifecycles on the journal store
// and reports what keeping them costs: the live heap per lifecycle of the
// whole process (ledger and engine included) between the middle and the
// end of the run, when the hot windows are full and what is added is
// what each lifecycle leaves behind; the time to snapshot the state; and
// the time to recover it by opening the store again.
func BenchmarkJournalStoreAtScale(b *testing.B) {
	const wave = 128
	m := newMarketOn(b, benchStores[1].open, func(c *engine.Config) {
		c.StartingGrant = 1_000_000 * market.Credit
		c.OperatorGrantCap = 1 << 60
	})
	var buyers, sellers []agent
	for i := range 16 {
		buyers = append(buyers, m.agent(fmt.Sprintf("buyer-%d", i), fmt.Sprintf("ob%d", i), market.RoleBuyer))
		s := m.agent(fmt.Sprintf("seller-%d", i), fmt.Sprintf("os%d", i), market.RoleSeller)
		must[market.Offer](b)(m.PublishOffer(s.Ctx, market.Offer{Intent: sortIntent, BasePriceMicrocredits: market.Credit, LatencyMs: 60_000}))
		sellers = append(sellers, s)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	b.ResetTimer()
	start := time.Now()
	var half uint64
	for done := 0; done < b.N; done += wave {
		if done >= b.N/2 && half == 0 {
			b.StopTimer()
			half = heap()
			b.StartTimer()
		}
		runLifecycles(b, m, buyers, sellers, min(wave, b.N-done))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "lifecycles/s")
	if n := b.N - b.N/2; n > 0 && half > 0 {
		b.ReportMetric(float64(int64(heap())-int64(half))/float64(n), "heap-B/lifecycle")
	}
	store := m.cfg.Store.(*journalstore.Store)
	t0 := time.Now()
	if err := store.Snapshot(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(time.Since(t0).Seconds(), "snapshot-s")
	if err := store.Close(); err != nil {
		b.Fatal(err)
	}
	t0 = time.Now()
	again, err := journalstore.Open(filepath.Join(m.dir, "market"), journalstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(time.Since(t0).Seconds(), "recovery-s")
	again.Close()
}

// TestStoresAgree runs one sequence of market operations on SQLite and on
// the journal store, on the same clock and seed, and checks that the
// engine answers the same on both: every contract, every event, the
// sellers' reputations and the market data. The engine's ids come from
// its seeded source and the agents' keys from their names, so a store
// that kept something differently, or listed it in another order, shows
// up as a difference.
func TestStoresAgree(t *testing.T) {
	type outcome struct {
		Contracts  []market.Contract
		Events     []market.Event
		Reputation []market.Reputation
		Stats      market.IntentStats
	}
	run := func(open openStore) outcome {
		m := newMarketOn(t, open, func(c *engine.Config) { c.TickWorkers = 1 })
		agentNamed := func(name string, roles ...market.Role) agent {
			seed := make([]byte, 32)
			copy(seed, "agree/"+name)
			key, err := market.NewPrivateKeyFromSeed(seed)
			if err != nil {
				t.Fatal(err)
			}
			reg := market.SignRegistration(market.Registration{Name: name, Operator: "op-" + name, Roles: roles}, key, m.clock.Now())
			a, err := m.Register(context.Background(), reg)
			if err != nil {
				t.Fatalf("register %s: %v", name, err)
			}
			return agent{ID: a.ID, Key: key, Ctx: market.AsAgent(context.Background(), a.ID)}
		}
		buyers := []agent{agentNamed("b0", market.RoleBuyer), agentNamed("b1", market.RoleBuyer)}
		var sellers []agent
		for i := range 3 {
			s := agentNamed(fmt.Sprintf("s%d", i), market.RoleSeller)
			must[market.Offer](t)(m.PublishOffer(s.Ctx, market.Offer{Intent: sortIntent,
				BasePriceMicrocredits: int64(1+i) * market.Credit, LatencyMs: 60_000}))
			sellers = append(sellers, s)
		}
		for i := range 24 {
			buyer := buyers[i%2]
			acceptance := market.Acceptance{Policy: market.AcceptChecker, Checker: "sort"}
			if i%3 == 1 {
				acceptance = market.Acceptance{Policy: market.AcceptBuyer}
			}
			in := must[market.Intent](t)(m.PostIntent(buyer.Ctx, market.IntentRequest{RequestID: fmt.Sprintf("agree-%d", i),
				Intent: sortIntent, Parameters: sortParams, Acceptance: acceptance,
				Constraints: market.Constraints{MaxBudgetMicrocredits: 5 * market.Credit}}))
			for k, s := range sellers {
				must[market.Bid](t)(m.PlaceBid(s.Ctx, market.BidRequest{Intent: in.ID,
					PriceMicrocredits: int64(1+(i+k)%3) * market.Credit / 10, LatencyMs: 60_000}))
			}
			m.tick(3 * time.Second)
			bids := must[[]market.Bid](t)(m.Bids(buyer.Ctx, in.ID))
			c := must[market.Contract](t)(m.Award(buyer.Ctx, in.ID, bids[i%len(bids)].ID))
			seller := sellers[0]
			for _, s := range sellers {
				if s.ID == c.Seller {
					seller = s
				}
			}
			output := json.RawMessage(`{"items":[1,3,5,9]}`)
			if i%5 == 4 {
				output = json.RawMessage(`{"items":[9,1]}`) // fails the checker
			}
			c = must[market.Contract](t)(m.Deliver(seller.Ctx, market.DeliveryRequest{Contract: c.ID, Output: output}))
			if c.State == market.ContractDelivered && i%2 == 0 {
				must[market.Contract](t)(m.Accept(buyer.Ctx, market.AcceptRequest{Contract: c.ID, Quality: 0.8}))
			}
		}
		m.tick(2 * time.Minute) // the buyers who stayed silent accept
		m.checkMoney()
		var out outcome
		op := operatorCtx()
		for after := ""; ; {
			page := must[[]market.Contract](t)(m.Contracts(op, market.ContractFilter{Page: market.Page{After: after, Limit: 10}}))
			out.Contracts = append(out.Contracts, page...)
			if len(page) < 10 {
				break
			}
			after = page[len(page)-1].ID
		}
		for after := int64(0); ; {
			page := must[[]market.Event](t)(m.Events(op, market.EventFilter{After: after, Limit: 50}))
			out.Events = append(out.Events, page...)
			if len(page) < 50 {
				break
			}
			after = page[len(page)-1].Seq
		}
		for _, s := range sellers {
			out.Reputation = append(out.Reputation, must[market.Reputation](t)(m.Reputation(op, s.ID, sortIntent)))
		}
		out.Stats = must[market.IntentStats](t)(m.Stats(op, sortIntent, time.Hour))
		return out
	}
	lite, journal := run(benchStores[0].open), run(benchStores[1].open)
	if len(lite.Contracts) != 24 || len(lite.Events) == 0 {
		t.Fatalf("the run made %d contracts and %d events, want 24 and some", len(lite.Contracts), len(lite.Events))
	}
	if d := cmp.Diff(lite, journal, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("the engine answers differently on the journal store (-sqlite +journal):\n%s", d)
	}
}
