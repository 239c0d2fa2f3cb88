package journalstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/agentmarket/agentmarket/journalstore"
	"github.com/agentmarket/agentmarket/market"
)

// runWorkload runs updates Updates of the workload on each of workers
// goroutines, with Views reading every list beside them, and checks that
// each Update ended as its fn meant to.
func runWorkload(t *testing.T, s market.Store, seed uint64, workers, updates int) {
	t.Helper()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			wl := newWorkload(seed, w)
			for range updates {
				fn, how := wl.next()
				err := s.Update(context.Background(), fn)
				switch {
				case how != succeed && market.Is(err, market.Exist):
					// It failed before it meant to: a reused request_id.
				case how == fail && !errors.Is(err, errWorkload),
					how == panics && market.CodeOf(err) != "update_panicked":
					t.Errorf("worker %d update %d: got %v, want it to fail as its fn did", w, wl.n, err)
				case how == succeed && err != nil && !market.Is(err, market.Exist):
					t.Errorf("worker %d update %d: %v", w, wl.n, err)
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := s.View(context.Background(), readEverything); err != nil {
					t.Errorf("View: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
}

// readEverything runs every query of ReadTx once.
func readEverything(tx market.ReadTx) error {
	_, err := everything(tx)
	return err
}

// everything returns the results of every query over the workload's ids.
func everything(tx market.ReadTx) (map[string]any, error) {
	out := map[string]any{}
	var errs []error
	add := func(name string, v any, err error) {
		if err != nil && !market.Is(err, market.NotExist) {
			errs = append(errs, err)
		}
		out[name] = v
	}
	add2 := func(name string) func(v any, err error) { return func(v any, err error) { add(name, v, err) } }
	t := wlT0.Add(300 * time.Second)
	for _, a := range wlAgents {
		n := string(a)
		add2("agent " + n)(tx.Agent(a))
		add2("offers by " + n)(tx.OffersBySeller(a))
		add2("intents by " + n)(tx.Intents(market.IntentFilter{Buyer: a}))
		add2("contracts of " + n)(tx.Contracts(market.ContractFilter{Agent: a, Page: market.Page{Limit: 1000}}))
		add2("paid by " + n)(tx.PaidBy(a))
		add2("arbiter " + n)(tx.ArbiterRecord(a))
		add2("events of " + n)(tx.Events(market.EventFilter{Agent: a, Limit: 1000}))
		for _, b := range wlAgents {
			add2("pairs " + n + " " + string(b))(tx.PairsBetween(a, b))
		}
		for _, typ := range wlTypes {
			add2("open " + n + " " + typ)(tx.OpenContracts(a, typ))
			add2("score " + n + " " + typ)(tx.Score(a, typ))
		}
	}
	for _, typ := range wlTypes {
		add2("active " + typ)(tx.ActiveOffers(typ))
		add2("stats " + typ)(tx.StatsSince(typ, t))
		add2("all stats " + typ)(tx.StatsSince(typ, time.Time{}))
		add2("intents " + typ)(tx.Intents(market.IntentFilter{Intent: typ, Page: market.Page{Limit: 1000}}))
		add2("contracts " + typ)(tx.Contracts(market.ContractFilter{Intent: typ, Page: market.Page{Limit: 1000}}))
		add2("events " + typ)(tx.Events(market.EventFilter{Intent: typ, Limit: 1000}))
	}
	for _, st := range wlIntentS {
		add2("intents " + string(st))(tx.Intents(market.IntentFilter{State: st, Page: market.Page{Limit: 1000}}))
	}
	for _, st := range wlContractS {
		add2("contracts " + string(st))(tx.Contracts(market.ContractFilter{State: st, Page: market.Page{Limit: 1000}}))
	}
	add2("arbiters")(tx.Arbiters(5 * market.Credit))
	add2("intents due")(tx.IntentsDue(t, 1000))
	add2("contracts due")(tx.ContractsDue(t, 1000))
	add2("all intents")(tx.Intents(market.IntentFilter{Page: market.Page{Limit: 1000}}))
	add2("all contracts")(tx.Contracts(market.ContractFilter{Page: market.Page{Limit: 1000}}))
	add2("all events")(tx.Events(market.EventFilter{Limit: 1000}))
	add2("last receipt")(tx.LastReceipt())
	add2("grants")(tx.OperatorGrants("op-1"))
	for _, p := range []string{"i-1", "i-7", "b-3", "c-2", "c-9"} {
		add2("bids " + p)(tx.Bids(p))
		add2("messages " + p)(tx.Messages(p))
		add2("children " + p)(tx.Contracts(market.ContractFilter{Parent: p}))
		add2("intent " + p)(tx.Intent(p))
		add2("contract " + p)(tx.Contract(p))
		add2("bid " + p)(tx.Bid(p))
	}
	return out, errors.Join(errs...)
}

// settle makes the store collect everything no reader can see: one
// Update that writes makes a version that the next Update's batch, which
// collects before it starts, finds durable.
func settle(t *testing.T, s market.Store) {
	t.Helper()
	for _, fn := range []func(market.Tx) error{
		func(tx market.Tx) error { return tx.AddOperatorGrant("settle", 1) },
		func(market.Tx) error { return nil },
	} {
		if err := s.Update(t.Context(), fn); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplayEqualsLive runs the workload, closes the store, and checks
// that the state recovered from its journal is the state it had: every
// object's value and sequence number, every counter, every index entry.
// Nonces that have expired may be forgotten at any time, so those are
// left out of the comparison.
// It also checks that the live store kept no value and no index entry
// that no reader could see any more.
func TestReplayEqualsLive(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts journalstore.Options
	}{
		{"InMemory", journalstore.Options{HotObjects: -1}},
		{"Archiving", archiveAll},
	} {
		t.Run(tt.name, func(t *testing.T) { testReplayEqualsLive(t, tt.opts) })
	}
}

func testReplayEqualsLive(t *testing.T, opts journalstore.Options) {
	dir := t.TempDir()
	s, err := journalstore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	runWorkload(t, s, 42, 8, 300)
	settle(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	live := journalstore.DumpState(s, now)
	if len(live.Unfindable) > 0 {
		t.Errorf("objects that a lookup by id does not find: %v", live.Unfindable)
	}
	if live.OldVersions != 0 || live.SuspectSeries != 0 {
		t.Errorf("live store keeps %d old values and %d series with suspects after every reader is gone",
			live.OldVersions, live.SuspectSeries)
	}
	if len(live.Contracts) == 0 || len(live.Events) == 0 || len(live.Receipts) == 0 || len(live.Nonces) == 0 {
		t.Fatalf("the workload wrote too little: %d contracts, %d events, %d receipts, %d nonces",
			len(live.Contracts), len(live.Events), len(live.Receipts), len(live.Nonces))
	}

	s2, err := journalstore.Open(dir, opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(live, journalstore.DumpState(s2, now), cmpopts.EquateEmpty()); d != "" {
		t.Errorf("replayed state differs from the live one (-live +replayed):\n%s", d)
	}
}

// TestViewsSeeASnapshotOfEveryQuery holds a View open while the workload
// changes everything, and checks that every query in it answers as it
// did at the start, including the statistics, whose sums are kept
// across versions.
func TestViewsSeeASnapshotOfEveryQuery(t *testing.T) {
	t.Run("InMemory", func(t *testing.T) { testViewsSeeASnapshot(t, journalstore.Options{HotObjects: -1}) })
	t.Run("Archiving", func(t *testing.T) { testViewsSeeASnapshot(t, archiveAll) })
}

func testViewsSeeASnapshot(t *testing.T, opts journalstore.Options) {
	s := MustOpen(t, t.TempDir(), opts)
	runWorkload(t, s, 7, 4, 100)
	err := s.View(t.Context(), func(tx market.ReadTx) error {
		before, err := everything(tx)
		if err != nil {
			return err
		}
		runWorkload(t, s, 8, 4, 100)
		after, err := everything(tx)
		if err != nil {
			return err
		}
		if d := cmp.Diff(before, after, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("a View's queries changed while it was open (-before +after):\n%s", d)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A new View sees the changes.
	var now map[string]any
	err = s.View(t.Context(), func(tx market.ReadTx) error {
		var err error
		now, err = everything(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if now["all events"] == nil {
		t.Error("no events after the workload")
	}
}
