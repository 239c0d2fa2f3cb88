package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/agentmarket/agentmarket/engine"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/postgres"
)

// openPostgresStack opens the market kept in the PostgreSQL database at
// o.DB: the store and the ledger on its tables, which each brings up to
// date on open, and an engine over both. Any number of nodes may open
// one database at once; each runs its own engine, and every fact they
// share lives in the database. The receipt key, o.MarketKey, comes from
// the caller, since no data directory holds it, and must be the same on
// every node.
func openPostgresStack(ctx context.Context, o stackOptions) (*stack, error) {
	if o.MarketKey.IsZero() {
		return nil, errors.New("a market on PostgreSQL needs the key that signs its receipts")
	}
	s, err := postgres.Open(ctx, o.DB, postgres.Options{Now: o.Now, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	// Every node expires the ledger's due reservations on its own timer;
	// each one is claimed by a single node.
	l, err := postgres.OpenLedger(ctx, o.DB, postgres.LedgerOptions{Now: o.Now, Logger: o.Logger, ExpiryInterval: time.Second})
	if err != nil {
		s.Close()
		return nil, err
	}
	cfg := engine.Config{Store: s, Ledger: l, Key: o.MarketKey, Now: o.Now, Logger: o.Logger, Seed: o.Seed}
	if o.Tweak != nil {
		o.Tweak(&cfg)
	}
	e, err := engine.New(ctx, cfg)
	if err != nil {
		s.Close()
		l.Close()
		return nil, err
	}
	return &stack{Engine: e, Ledger: l, Store: s, Key: o.MarketKey}, nil
}

// keysRecord is the key under which the database pins the public halves
// of the market's keys. It lives among the transport's idempotency
// records, whose keys all start "http/", because pinning is an idempotent
// request: every node's start repeats it, and only the same keys match.
const keysRecord = "serve/keys"

// pinnedKeys is the body of the keys record.
type pinnedKeys struct {
	Market   market.AgentID `json:"market"`
	Operator market.AgentID `json:"operator"`
}

// pinKeys records the market's receipt key and the operator's key in the
// store on the first start of a market on it (the first writer wins), and
// on every later start checks that this node was given the same keys. A
// node with other keys would sign receipts that break the market's chain,
// or let a different operator mint, so it must not start.
func pinKeys(ctx context.Context, s market.Store, marketKey, operator market.PublicKey, now time.Time) error {
	want := pinnedKeys{Market: marketKey.DID(), Operator: operator.DID()}
	body, err := json.Marshal(want)
	if err != nil {
		return fmt.Errorf("pin keys: %w", err)
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	var pinned *market.IdempotencyRecord
	err = s.Update(ctx, func(tx market.Tx) error {
		pinned = nil
		rec, err := tx.Idempotency(keysRecord)
		if market.Is(err, market.NotExist) {
			return tx.PutIdempotency(market.IdempotencyRecord{Key: keysRecord, RequestHash: hash, Status: 200, Body: body, CreatedAt: now})
		}
		if err != nil {
			return err
		}
		pinned = &rec
		return nil
	})
	if err != nil {
		return fmt.Errorf("pin keys: %w", err)
	}
	if pinned != nil && pinned.RequestHash != hash {
		var got pinnedKeys
		if err := json.Unmarshal(pinned.Body, &got); err != nil {
			return fmt.Errorf("pin keys: read the pinned keys: %w", err)
		}
		return fmt.Errorf("this database's market runs with market key %s and operator %s, but this node was given %s and %s: "+
			"give every node the same --market-key and --operator-key files", got.Market, got.Operator, want.Market, want.Operator)
	}
	return nil
}

// databaseName names the database of a PostgreSQL URL for logs and
// errors: its host and path, without the user, the password or the
// parameters, where a password may hide too.
func databaseName(db string) string {
	u, err := url.Parse(db)
	if err != nil || u.Host == "" {
		return "the PostgreSQL database"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
