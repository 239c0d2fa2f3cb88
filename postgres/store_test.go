package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/postgres"
	"github.com/agentmarket/agentmarket/postgres/pgtest"
	"github.com/agentmarket/agentmarket/storetest"
)

// MustOpen opens a store on the database at url and closes it when the
// test ends.
func MustOpen(tb testing.TB, url string, opts postgres.Options) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), url, opts)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) market.Store {
		return MustOpen(t, pgtest.Schema(t), postgres.Options{})
	})
}

// TestStoresShareOneSchema runs two stores on one schema, as two nodes
// would, and checks what they must share: events wake waiters on the
// other node, and a nonce used on one is used on both.
func TestStoresShareOneSchema(t *testing.T) {
	url := pgtest.Schema(t)
	a := MustOpen(t, url, postgres.Options{PollInterval: time.Hour})
	b := MustOpen(t, url, postgres.Options{PollInterval: time.Hour})

	t.Run("EventsWakeTheOtherNode", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		woke := make(chan error, 1)
		go func() { woke <- b.WaitEvents(ctx, 0) }()
		var seq int64
		err := a.Update(ctx, func(tx market.Tx) error {
			var err error
			seq, err = tx.AppendEvent(market.Event{Type: market.EventIntentPosted, At: time.Now(), Subject: "i-1"})
			return err
		})
		if err != nil {
			t.Fatalf("Update on a: %v", err)
		}
		if err := <-woke; err != nil {
			t.Fatalf("WaitEvents on b: %v", err)
		}
		var got []market.Event
		err = b.View(ctx, func(tx market.ReadTx) error {
			var err error
			got, err = tx.Events(market.EventFilter{})
			return err
		})
		if err != nil || len(got) != 1 || got[0].Seq != seq {
			t.Fatalf("events on b: %v, %v; want the one with seq %d", got, err, seq)
		}
	})
	t.Run("NonceUsedOnOneIsUsedOnBoth", func(t *testing.T) {
		expires := time.Now().Add(time.Hour)
		use := func(s *postgres.Store) error {
			return s.Update(t.Context(), func(tx market.Tx) error { return tx.UseNonce("did:key:zAlice", "n-1", expires) })
		}
		if err := use(a); err != nil {
			t.Fatalf("first use on a: %v", err)
		}
		if err := use(b); !market.Is(err, market.Exist) {
			t.Fatalf("replay on b: got %v, want an Exist error", err)
		}
	})
}

// TestEventsCommitInSequenceOrder has many Updates append events at once
// while a reader follows the log: a reader must never see a sequence
// number and later find a smaller one it had not seen.
func TestEventsCommitInSequenceOrder(t *testing.T) {
	s := MustOpen(t, pgtest.Schema(t), postgres.Options{})
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range each {
				err := s.Update(t.Context(), func(tx market.Tx) error {
					_, err := tx.AppendEvent(market.Event{Type: market.EventBidPlaced, At: time.Now(), Subject: "w"})
					return err
				})
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var cursor int64
	seen, finished := 0, false
	for !finished {
		select {
		case <-done:
			finished = true // one last read, which must see every event
		default:
		}
		var got []market.Event
		err := s.View(t.Context(), func(tx market.ReadTx) error {
			var err error
			got, err = tx.Events(market.EventFilter{Limit: 1000})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// What a reader saw up to its cursor must be all there ever is up
		// to it.
		n := 0
		for _, e := range got {
			if e.Seq <= cursor {
				n++
			}
		}
		if n != seen {
			t.Fatalf("a read up to seq %d held %d events; a later one holds %d up to it", cursor, seen, n)
		}
		if len(got) > 0 {
			cursor, seen = got[len(got)-1].Seq, len(got)
		}
	}
	if seen != writers*each {
		t.Errorf("read %d events, want %d", seen, writers*each)
	}
}

// TestConcurrentOpensMigrateOnce opens several stores on a fresh schema
// at once, as nodes starting together would.
func TestConcurrentOpensMigrateOnce(t *testing.T) {
	url := pgtest.Schema(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), url, postgres.Options{})
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func TestClosedStoreRefusesCalls(t *testing.T) {
	s, err := postgres.Open(t.Context(), pgtest.Schema(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(t.Context(), func(market.Tx) error { return nil }); !errors.Is(err, postgres.ErrClosed) {
		t.Errorf("Update after Close: got %v, want ErrClosed", err)
	}
	if err := s.WaitEvents(t.Context(), 0); !errors.Is(err, postgres.ErrClosed) {
		t.Errorf("WaitEvents after Close: got %v, want ErrClosed", err)
	}
}
