package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/agentmarket/agentmarket/market"
)

// txCases check Update and View: atomicity, isolation between concurrent
// Updates, reads of one's own writes, snapshots and cancellation.
func txCases() []testCase {
	return []testCase{
		{"UpdateErrorRollsBackEverything", testUpdateRollback},
		{"ConcurrentUpdatesIsolateFailures", testConcurrentIsolation},
		{"ConcurrentUpdatesSeeEachOthersWrites", testConcurrentReadModifyWrite},
		{"ReadsYourWritesInUpdate", testReadsYourWrites},
		{"ViewSeesASnapshot", testViewSnapshot},
		{"ViewDoesNotSeeUncommittedWrites", testViewUncommitted},
		{"CanceledContextSkipsUpdate", testCanceledUpdate},
	}
}

func testUpdateRollback(t *testing.T, s market.Store) {
	err := s.Update(t.Context(), func(tx market.Tx) error {
		for _, o := range []any{
			newAgent(alice, 0, market.RoleBuyer),
			newOffer("o-1", bob, "TRANSLATE", market.OfferActive),
			newIntent("i-1", alice, "TRANSLATE", market.IntentOpen, at(0)),
			newBid("b-1", "i-1", bob, at(1)),
			newMessage("m-1", "b-1", alice, 1),
			newContract("c-1", alice, bob, "TRANSLATE", market.ContractAwarded, at(2)),
			newReceipt(1),
			market.ScoreRecord{Agent: bob, Intent: "TRANSLATE", Good: 1},
			market.PairRecord{Buyer: alice, Seller: bob, Intent: "TRANSLATE", Trades: 1},
			market.ArbiterRecord{Arbiter: carol, Reviews: 1},
			market.IdempotencyRecord{Key: "k", Status: 200},
			newEvent(market.EventIntentPosted, "TRANSLATE", "i-1"),
		} {
			if err := putOne(tx, o); err != nil {
				return err
			}
		}
		if err := tx.AddOperatorGrant("acme", 5); err != nil {
			return err
		}
		return fmt.Errorf("award: %w", errBoom)
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update: got %v, want fn's error", err)
	}
	nothing := func(name string, get func(tx market.ReadTx) error) {
		t.Helper()
		err := s.View(t.Context(), get)
		wantKind(t, name+" after a failed Update", err, market.NotExist)
	}
	nothing("Agent", func(tx market.ReadTx) error { _, err := tx.Agent(alice); return err })
	nothing("Offer", func(tx market.ReadTx) error { _, err := tx.Offer("o-1"); return err })
	nothing("Intent", func(tx market.ReadTx) error { _, err := tx.Intent("i-1"); return err })
	nothing("Bid", func(tx market.ReadTx) error { _, err := tx.Bid("b-1"); return err })
	nothing("Contract", func(tx market.ReadTx) error { _, err := tx.Contract("c-1"); return err })
	nothing("Receipt", func(tx market.ReadTx) error { _, err := tx.Receipt(1); return err })
	nothing("Idempotency", func(tx market.ReadTx) error { _, err := tx.Idempotency("k"); return err })
	type rest struct {
		Messages []market.Message
		Score    market.ScoreRecord
		Pair     market.PairRecord
		Arbiter  market.ArbiterRecord
		Grants   int64
		Events   []market.Event
	}
	got := read(t, s, func(tx market.ReadTx) (rest, error) {
		var r rest
		var errs [6]error
		r.Messages, errs[0] = tx.Messages("b-1")
		r.Score, errs[1] = tx.Score(bob, "TRANSLATE")
		r.Pair, errs[2] = tx.Pair(alice, bob, "TRANSLATE")
		r.Arbiter, errs[3] = tx.ArbiterRecord(carol)
		r.Grants, errs[4] = tx.OperatorGrants("acme")
		r.Events, errs[5] = tx.Events(market.EventFilter{})
		return r, firstErr(errs[:]...)
	})
	diff(t, "records after a failed Update", rest{
		Score:   market.ScoreRecord{Agent: bob, Intent: "TRANSLATE"},
		Pair:    market.PairRecord{Buyer: alice, Seller: bob, Intent: "TRANSLATE"},
		Arbiter: market.ArbiterRecord{Arbiter: carol},
	}, got)
	// The receipt sequence did not advance either.
	update(t, s, func(tx market.Tx) error { return tx.PutReceipt(newReceipt(1)) })
}

// testConcurrentIsolation runs many Updates at once, so that a store that
// batches them puts several in one transaction. Every third fails after
// writing; its writes must vanish and the others' must all be there.
func testConcurrentIsolation(t *testing.T, s market.Store) {
	const n = 50
	fails := func(i int) bool { return i%3 == 0 }
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(t.Context(), func(tx market.Tx) error {
				id := fmt.Sprintf("i-%02d", i)
				if err := tx.PutIntent(newIntent(id, alice, "TRANSLATE", market.IntentOpen, at(i))); err != nil {
					return err
				}
				if _, err := tx.AppendEvent(newEvent(market.EventIntentPosted, "TRANSLATE", id)); err != nil {
					return err
				}
				if err := tx.UseNonce(alice, id, at(0).AddDate(100, 0, 0)); err != nil {
					return err
				}
				if fails(i) {
					return fmt.Errorf("update %d: %w", i, errBoom)
				}
				return nil
			})
		})
	}
	wg.Wait()
	var wantIntents, wantEvents []string
	for i := range n {
		id := fmt.Sprintf("i-%02d", i)
		if fails(i) {
			if !errors.Is(errs[i], errBoom) {
				t.Errorf("update %d: got %v, want its own error", i, errs[i])
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("update %d: %v", i, errs[i])
		}
		wantIntents = append(wantIntents, id)
		wantEvents = append(wantEvents, id)
	}
	got := read(t, s, func(tx market.ReadTx) ([]market.Intent, error) {
		return tx.Intents(market.IntentFilter{Page: market.Page{Limit: 1000}})
	})
	gotIDs := intentIDs(got)
	slices.Sort(gotIDs)
	diff(t, "intents of the successful updates", wantIntents, gotIDs)
	events := subjects(listEvents(t, s, market.EventFilter{Limit: 1000}))
	slices.Sort(events)
	diff(t, "events of the successful updates", wantEvents, events)
	// The failed updates' nonces were rolled back, so they can be used now.
	for i := range n {
		err := s.Update(t.Context(), func(tx market.Tx) error {
			return tx.UseNonce(alice, fmt.Sprintf("i-%02d", i), at(0).AddDate(100, 0, 0))
		})
		if fails(i) && err != nil {
			t.Errorf("nonce of failed update %d: %v", i, err)
		}
		if !fails(i) && !market.Is(err, market.Exist) {
			t.Errorf("nonce of update %d: got %v, want an Exist error", i, err)
		}
	}
}

// testConcurrentReadModifyWrite has many Updates increment one counter at
// once: each must see the writes of those that ran before it, in the same
// batch or not, or increments are lost.
func testConcurrentReadModifyWrite(t *testing.T, s market.Store) {
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := s.Update(t.Context(), func(tx market.Tx) error {
				r, err := tx.ArbiterRecord(carol)
				if err != nil {
					return err
				}
				r.Reviews++
				if err := tx.PutArbiterRecord(r); err != nil {
					return err
				}
				if i%5 == 0 {
					return errBoom // a failed increment in between counts for nothing
				}
				return nil
			})
			if err != nil && !errors.Is(err, errBoom) {
				t.Errorf("update %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	got := read(t, s, func(tx market.ReadTx) (market.ArbiterRecord, error) { return tx.ArbiterRecord(carol) })
	if want := n - n/5; got.Reviews != want {
		t.Errorf("counter = %d after %d successful increments", got.Reviews, want)
	}
}

func testReadsYourWrites(t *testing.T, s market.Store) {
	put(t, s, newIntent("i-0", alice, "TRANSLATE", market.IntentOpen, at(0)))
	update(t, s, func(tx market.Tx) error {
		i := newIntent("i-1", alice, "TRANSLATE", market.IntentOpen, at(1))
		if err := tx.PutIntent(i); err != nil {
			return err
		}
		got, err := tx.Intent("i-1")
		if err != nil {
			return fmt.Errorf("read own intent: %w", err)
		}
		diff(t, "own intent", i, got)
		list, err := tx.Intents(market.IntentFilter{})
		if err != nil {
			return err
		}
		diff(t, "intents listed in the Update", []string{"i-1", "i-0"}, intentIDs(list))
		byReq, err := tx.IntentByRequest(alice, i.RequestID)
		if err != nil {
			return fmt.Errorf("read own intent by request: %w", err)
		}
		diff(t, "own intent by request", i, byReq)
		seq, err := tx.AppendEvent(newEvent(market.EventIntentPosted, "TRANSLATE", "i-1"))
		if err != nil {
			return err
		}
		es, err := tx.Events(market.EventFilter{})
		if err != nil {
			return err
		}
		if len(es) != 1 || es[0].Seq != seq {
			t.Errorf("events in the Update: %v, want the one appended", subjects(es))
		}
		if err := tx.PutReceipt(newReceipt(1)); err != nil {
			return err
		}
		return tx.PutReceipt(newReceipt(2))
	})
}

func testViewSnapshot(t *testing.T, s market.Store) {
	first := newIntent("i-1", alice, "TRANSLATE", market.IntentOpen, at(0))
	put(t, s, first)
	err := s.View(t.Context(), func(tx market.ReadTx) error {
		before, err := tx.Intent("i-1")
		if err != nil {
			return err
		}
		// Another transaction commits while this View is open.
		changed := first
		changed.State = market.IntentCancelled
		put(t, s, changed, newIntent("i-2", bob, "TRANSLATE", market.IntentOpen, at(1)))

		after, err := tx.Intent("i-1")
		if err != nil {
			return err
		}
		diff(t, "intent read again in the same View", before, after)
		list, err := tx.Intents(market.IntentFilter{})
		if err != nil {
			return err
		}
		diff(t, "intents listed in the same View", []string{"i-1"}, intentIDs(list))
		return nil
	})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	// A new View sees the commit.
	got := read(t, s, func(tx market.ReadTx) (market.Intent, error) { return tx.Intent("i-1") })
	if got.State != market.IntentCancelled {
		t.Errorf("state in a new View = %s, want cancelled", got.State)
	}
}

func testViewUncommitted(t *testing.T, s market.Store) {
	written := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Update(t.Context(), func(tx market.Tx) error {
			if err := tx.PutIntent(newIntent("i-1", alice, "TRANSLATE", market.IntentOpen, at(0))); err != nil {
				return err
			}
			close(written)
			<-release
			return nil
		})
	}()
	<-written
	err := s.View(t.Context(), func(tx market.ReadTx) error { _, err := tx.Intent("i-1"); return err })
	wantKind(t, "intent written by an Update still running", err, market.NotExist)
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Update: %v", err)
	}
	read(t, s, func(tx market.ReadTx) (market.Intent, error) { return tx.Intent("i-1") })
}

func testCanceledUpdate(t *testing.T, s market.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ran := false
	err := s.Update(ctx, func(tx market.Tx) error {
		ran = true
		return tx.PutAgent(newAgent(alice, 0))
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a canceled context: got %v, want context.Canceled", err)
	}
	if ran {
		t.Error("Update ran fn with a canceled context")
	}
	err = s.View(t.Context(), func(tx market.ReadTx) error { _, err := tx.Agent(alice); return err })
	wantKind(t, "agent of a canceled Update", err, market.NotExist)
}
