package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

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
