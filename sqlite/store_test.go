package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/sqlite"
	"github.com/agentmarket/agentmarket/storetest"
)

// MustOpen opens a store at path and closes it when the test ends.
func MustOpen(tb testing.TB, path string, opts sqlite.Options) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(path, opts)
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
		return MustOpen(t, filepath.Join(t.TempDir(), "market.db"), sqlite.Options{})
	})
}

func TestConformanceWithoutGroupCommit(t *testing.T) {
	storetest.Run(t, func(t *testing.T) market.Store {
		return MustOpen(t, filepath.Join(t.TempDir(), "market.db"), sqlite.Options{MaxBatch: 1})
	})
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestDataSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "market.db")
	s, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	intent := market.Intent{ID: "i-1", RequestID: "r-1", Buyer: "did:key:zAlice", Intent: "TRANSLATE",
		State: market.IntentOpen, BidDeadline: t0, CreatedAt: t0}
	var seq int64
	err = s.Update(t.Context(), func(tx market.Tx) error {
		if err := tx.PutIntent(intent); err != nil {
			return err
		}
		if err := tx.PutReceipt(market.Receipt{Seq: 1, Contract: "c-1"}); err != nil {
			return err
		}
		if err := tx.UseNonce("did:key:zAlice", "n-1", time.Now().Add(time.Hour)); err != nil {
			return err
		}
		seq, err = tx.AppendEvent(market.Event{Type: market.EventIntentPosted, At: t0, Subject: "i-1"})
		return err
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = MustOpen(t, path, sqlite.Options{})
	var got market.Intent
	err = s.View(t.Context(), func(tx market.ReadTx) error {
		var err error
		got, err = tx.Intent("i-1")
		return err
	})
	if err != nil {
		t.Fatalf("Intent after reopening: %v", err)
	}
	if got.ID != intent.ID || got.State != intent.State || !got.CreatedAt.Equal(intent.CreatedAt) {
		t.Errorf("intent after reopening = %+v, want %+v", got, intent)
	}
	// The event sequence, the receipt chain, the nonces and the due index
	// carry on from where they were.
	if err := s.WaitEvents(t.Context(), seq-1); err != nil {
		t.Errorf("WaitEvents before the stored event: %v", err)
	}
	err = s.Update(t.Context(), func(tx market.Tx) error {
		if err := tx.UseNonce("did:key:zAlice", "n-1", time.Now().Add(time.Hour)); !market.Is(err, market.Exist) {
			t.Errorf("reused nonce after reopening: got %v, want an Exist error", err)
		}
		next, err := tx.AppendEvent(market.Event{Type: market.EventIntentClosed, At: t0, Subject: "i-1"})
		if err != nil {
			return err
		}
		if next <= seq {
			t.Errorf("event seq after reopening = %d, want more than %d", next, seq)
		}
		due, err := tx.IntentsDue(t0, 10)
		if err != nil {
			return err
		}
		if len(due) != 1 {
			t.Errorf("IntentsDue after reopening returned %d intents, want 1", len(due))
		}
		return tx.PutReceipt(market.Receipt{Seq: 2, Contract: "c-2"})
	})
	if err != nil {
		t.Fatalf("Update after reopening: %v", err)
	}
}

func TestMigrationsAreIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "market.db")
	for range 3 {
		s, err := sqlite.Open(path, sqlite.Options{})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	db := openRaw(t, path)
	var rows, distinct, newest int
	err := db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT version), MAX(version) FROM schema_migrations`).Scan(&rows, &distinct, &newest)
	if err != nil {
		t.Fatal(err)
	}
	if rows == 0 || rows != distinct || rows != newest {
		t.Errorf("schema_migrations has %d rows, %d versions, newest %d: want each version once, from 1", rows, distinct, newest)
	}
}

func TestOpenRefusesANewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "market.db")
	s, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := openRaw(t, path)
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := sqlite.Open(path, sqlite.Options{}); err == nil {
		s.Close()
		t.Fatal("Open accepted a database with a schema newer than it knows")
	}
}

// openRaw opens the store's file directly, to look at what Open wrote.
func openRaw(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPanicFailsOnlyThatUpdate(t *testing.T) {
	s := MustOpen(t, filepath.Join(t.TempDir(), "market.db"), sqlite.Options{})
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			errs[i] = s.Update(t.Context(), func(tx market.Tx) error {
				if err := tx.PutAgent(market.Agent{ID: market.AgentID(fmt.Sprintf("a-%02d", i))}); err != nil {
					return err
				}
				if i%4 == 0 {
					panic("fn bug")
				}
				return nil
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		id := market.AgentID(fmt.Sprintf("a-%02d", i))
		verr := s.View(t.Context(), func(tx market.ReadTx) error { _, err := tx.Agent(id); return err })
		if i%4 == 0 {
			if !market.Is(err, market.Internal) {
				t.Errorf("panicking update %d: got %v, want an Internal error", i, err)
			}
			if !market.Is(verr, market.NotExist) {
				t.Errorf("agent of panicking update %d: got %v, want NotExist", i, verr)
			}
			continue
		}
		if err != nil || verr != nil {
			t.Errorf("update %d: %v; reading its agent: %v", i, err, verr)
		}
	}
}

func TestExpiredNoncesAreForgotten(t *testing.T) {
	var now atomic.Int64
	now.Store(t0.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	s := MustOpen(t, filepath.Join(t.TempDir(), "market.db"), sqlite.Options{Now: clock})
	use := func(nonce string, expires time.Time) error {
		return s.Update(t.Context(), func(tx market.Tx) error { return tx.UseNonce("did:key:zAlice", nonce, expires) })
	}
	if err := use("n", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	now.Store(t0.Add(59 * time.Second).UnixNano())
	if err := use("n", t0.Add(2*time.Minute)); !market.Is(err, market.Exist) {
		t.Errorf("nonce reused before it expired: got %v, want an Exist error", err)
	}
	now.Store(t0.Add(time.Minute).UnixNano())
	if err := use("n", t0.Add(2*time.Minute)); err != nil {
		t.Errorf("nonce reused once expired: %v", err)
	}
}

func TestClosedStoreRefusesCalls(t *testing.T) {
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "market.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	waited := make(chan error, 1)
	go func() { waited <- s.WaitEvents(ctx, 0) }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := <-waited; !errors.Is(err, sqlite.ErrClosed) {
		t.Errorf("WaitEvents during Close: got %v, want ErrClosed", err)
	}
	if err := s.Update(ctx, func(market.Tx) error { return nil }); !errors.Is(err, sqlite.ErrClosed) {
		t.Errorf("Update after Close: got %v, want ErrClosed", err)
	}
	if err := s.View(ctx, func(market.ReadTx) error { return nil }); !errors.Is(err, sqlite.ErrClosed) {
		t.Errorf("View after Close: got %v, want ErrClosed", err)
	}
}

func TestTxUsedAfterFnFails(t *testing.T) {
	s := MustOpen(t, filepath.Join(t.TempDir(), "market.db"), sqlite.Options{})
	var kept market.Tx
	if err := s.Update(t.Context(), func(tx market.Tx) error { kept = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := kept.PutAgent(market.Agent{ID: "did:key:zLate"}); err == nil {
		t.Error("a Tx kept past its fn still wrote")
	}
}

func TestOpenRejectsInMemory(t *testing.T) {
	for _, path := range []string{"", ":memory:", "file::memory:"} {
		if s, err := sqlite.Open(path, sqlite.Options{}); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded; want an error", path)
		}
	}
}

func TestPathNeedsNoEscaping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd?name#with%chars.db")
	s := MustOpen(t, path, sqlite.Options{})
	if err := s.Update(context.Background(), func(tx market.Tx) error {
		return tx.PutAgent(market.Agent{ID: "did:key:zAlice"})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the store's file is not at the path given: %v", err)
	}
}
