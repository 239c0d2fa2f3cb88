package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/agentmarket/agentmarket/engine"
	"github.com/agentmarket/agentmarket/journalstore"
	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/sqlite"
)

// stack is a running market: a ledger, a market store and the engine over
// both. By default it is the embedded store, in one data directory:
//
//	DIR/ledger/     the ledger's journal and its SQLite projection
//	DIR/market.db   the market store
//	DIR/market/     the market store instead, with stackOptions.Store "journal"
//	DIR/market.key  the key that signs receipts (created on first start)
//
// With stackOptions.DB it is PostgreSQL instead (see openPostgresStack).
type stack struct {
	Engine *engine.Engine
	Ledger stackLedger // *ledger.Ledger, or *postgres.Ledger
	Store  market.Store
	Key    market.PrivateKey
}

// stackLedger is what the commands use of a ledger besides what the
// engine does: running its expiries on demand, checking its invariants,
// closing it.
type stackLedger interface {
	engine.Ledger
	Tick(ctx context.Context) (int, error)
	CheckInvariants(ctx context.Context) error
	Close() error
}

// stackOptions tune openStack; zero values take the engine's defaults.
type stackOptions struct {
	Now    func() time.Time
	Logger *slog.Logger
	Seed   uint64
	Tweak  func(*engine.Config)
	// DB, when set, is the URL of a PostgreSQL database that holds the
	// market instead of the data directory, and MarketKey signs its
	// receipts.
	DB        string
	MarketKey market.PrivateKey
	// StoreBatch caps how many updates share one SQLite commit; 0 is the
	// store's default, 1 turns group commit off (a benchmark baseline).
	StoreBatch int
	// Store names the embedded market store: storeSQLite (the default)
	// or storeJournal, the market's state in memory behind a journal.
	Store string
}

// The embedded market stores.
const (
	storeSQLite  = "sqlite"
	storeJournal = "journal"
)

// storeUsage documents the --store flag.
const storeUsage = "the embedded market store: sqlite, or journal (the market's state in memory behind a journal)"

// openEmbeddedStore opens the market store o.Store names in dir. It
// refuses a directory that holds the other store's files: the ledger
// beside it belongs to that market.
func openEmbeddedStore(dir string, o stackOptions) (market.Store, error) {
	sqlitePath, journalPath := filepath.Join(dir, "market.db"), filepath.Join(dir, "market")
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	switch o.Store {
	case "", storeSQLite:
		if exists(journalPath) {
			return nil, fmt.Errorf("data dir %s holds a journal market store; open it with --store %s", dir, storeJournal)
		}
		s, err := sqlite.Open(sqlitePath, sqlite.Options{Now: o.Now, Logger: o.Logger, MaxBatch: o.StoreBatch})
		if err != nil {
			return nil, err
		}
		return s, nil
	case storeJournal:
		if exists(sqlitePath) {
			return nil, fmt.Errorf("data dir %s holds a SQLite market store; open it with --store %s", dir, storeSQLite)
		}
		s, err := journalstore.Open(journalPath, journalstore.Options{Now: o.Now, Logger: o.Logger})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown market store %q: want %s or %s", o.Store, storeSQLite, storeJournal)
}

// openStack opens (or creates) the embedded market in dir, or with o.DB
// the market in that PostgreSQL database.
func openStack(ctx context.Context, dir string, o stackOptions) (*stack, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DB != "" {
		if o.Store != "" && o.Store != storeSQLite {
			return nil, fmt.Errorf("--store %s is for the embedded market, not --db", o.Store)
		}
		return openPostgresStack(ctx, o)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	key, err := loadOrCreateKey(filepath.Join(dir, "market.key"))
	if err != nil {
		return nil, err
	}
	l, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{Now: o.Now, Logger: o.Logger, ExpiryInterval: time.Second})
	if err != nil {
		return nil, err
	}
	s, err := openEmbeddedStore(dir, o)
	if err != nil {
		l.Close()
		return nil, err
	}
	cfg := engine.Config{Store: s, Ledger: l, Key: key, Now: o.Now, Logger: o.Logger, Seed: o.Seed}
	if o.Tweak != nil {
		o.Tweak(&cfg)
	}
	e, err := engine.New(ctx, cfg)
	if err != nil {
		s.Close()
		l.Close()
		return nil, err
	}
	return &stack{Engine: e, Ledger: l, Store: s, Key: key}, nil
}

// Close closes the store, then the ledger, which makes it durable.
func (s *stack) Close() error {
	return errors.Join(s.Store.Close(), s.Ledger.Close())
}

// loadOrCreateKey reads a private key file, or writes a new one (mode
// 0600) when it does not exist.
func loadOrCreateKey(path string) (market.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := market.GenerateKey(nil)
		if err != nil {
			return k, err
		}
		text, _ := k.MarshalText()
		if err := os.WriteFile(path, append(text, '\n'), 0o600); err != nil {
			return k, fmt.Errorf("write key %s: %w", path, err)
		}
		return k, nil
	}
	if err != nil {
		return market.PrivateKey{}, fmt.Errorf("read key %s: %w", path, err)
	}
	var k market.PrivateKey
	if err := k.UnmarshalText(b); err != nil {
		return k, fmt.Errorf("key %s: %w", path, err)
	}
	return k, nil
}
