package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentmarket/agentmarket/journalstore"
	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/postgres"
)

func runLedger(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("usage: agentmarket ledger verify (--data DIR | --db URL) [--json]")
	}
	fs := e.flags("ledger verify")
	data := fs.String("data", e.envOr("AGENTMARKET_DATA", "./agentmarket-data"), "data directory (env AGENTMARKET_DATA): its ledger, and its market/ journal store if it has one")
	db := fs.String("db", e.getenv("AGENTMARKET_DB"), "PostgreSQL URL of a market (env AGENTMARKET_DB), instead of --data")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *db != "" {
		return verifyPostgresLedger(ctx, e, *db, *asJSON)
	}
	rep, err := ledger.Verify(ledgerDir(*data))
	store := verifyMarketStore(*data)
	if *asJSON {
		return writeVerifyJSON(e, rep, err, store)
	}
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("ledger verify %s: %w", *data, err))
	} else {
		fmt.Fprintf(e.stdout, "ledger ok: %d records, %d events, %d accounts, %d pending open, head %s\n",
			rep.Records, rep.Events, rep.Accounts, rep.Pending, rep.Head)
		if rep.TornBytes > 0 {
			fmt.Fprintf(e.stdout, "note: %d bytes after the last whole record (an unacknowledged write cut short; dropped on next open)\n", rep.TornBytes)
		}
	}
	if store != nil {
		errs = append(errs, printStoreCheck(e, *data, store))
	}
	return errors.Join(errs...)
}

// storeCheck is the outcome of verifying a data directory's journal
// store.
type storeCheck struct {
	rep journalstore.VerifyReport
	err error
}

// verifyMarketStore verifies the journal store in the data directory, and
// returns nil when there is none: the market is in SQLite, or data is the
// ledger directory itself.
func verifyMarketStore(data string) *storeCheck {
	dir := filepath.Join(data, "market")
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil
	}
	rep, err := journalstore.Verify(dir)
	return &storeCheck{rep: rep, err: err}
}

// printStoreCheck prints the journal store's line and notes, or returns
// its verification's error.
func printStoreCheck(e *env, data string, store *storeCheck) error {
	if store.rep.Open {
		fmt.Fprintf(e.stdout, "note: a process has the market store open: its journal may have moved while it was read; verify a stopped store or a backup for a definitive answer\n")
	}
	if store.err != nil {
		return fmt.Errorf("ledger verify %s: market store: %w", data, store.err)
	}
	r := store.rep
	from := "no snapshot"
	if r.Snapshot > 0 {
		from = fmt.Sprintf("snapshot %d", r.Snapshot)
	}
	fmt.Fprintf(e.stdout, "market store ok: version %d (%s, then %d records of %d changes in %d segments), %d intents, %d contracts, %d events, head %s\n",
		r.Version, from, r.Records, r.Changes, r.Segments, r.Intents, r.Contracts, r.Events, r.Head)
	if r.TornBytes > 0 {
		fmt.Fprintf(e.stdout, "note: market store: %d bytes after the last whole record (an unacknowledged write cut short; dropped on next open)\n", r.TornBytes)
	}
	return nil
}

// ledgerDir is where the ledger lives inside a data directory. It accepts
// the ledger directory itself too.
func ledgerDir(data string) string {
	if _, err := os.Stat(filepath.Join(data, "journal.amj")); err == nil {
		return data
	}
	return filepath.Join(data, "ledger")
}

// verifyPostgresLedger checks the invariants of the ledger in the
// PostgreSQL database at url. Opening it applies the schema's migrations,
// as serve does.
func verifyPostgresLedger(ctx context.Context, e *env, url string, asJSON bool) error {
	l, err := postgres.OpenLedger(ctx, url, postgres.LedgerOptions{})
	if err != nil {
		return fmt.Errorf("ledger verify --db: %w", err)
	}
	defer l.Close()
	rep, err := l.Verify(ctx)
	if asJSON {
		return writeVerifyJSON(e, rep, err, nil)
	}
	if err != nil {
		return fmt.Errorf("ledger verify --db: %w", err)
	}
	fmt.Fprintf(e.stdout, "ledger ok: %d accounts, %d transfers, %d pending open; credits conserved, no wallet below zero, pending counters match\n",
		rep.Accounts, rep.Transfers, rep.Pending)
	return nil
}

// writeVerifyJSON prints a verification report as one JSON object: the
// report's fields, ok, and the error if any; a data directory's journal
// store, when store is not nil, as another such object under
// market_store, and then ok is true only if both passed. A failed
// verification still fails the command.
func writeVerifyJSON(e *env, rep any, verr error, store *storeCheck) error {
	out, err := verifyObject(rep, verr)
	if err != nil {
		return err
	}
	failed := verr != nil
	if store != nil {
		if out["market_store"], err = verifyObject(store.rep, store.err); err != nil {
			return err
		}
		failed = failed || store.err != nil
	}
	out["ok"] = !failed
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if failed {
		return fmt.Errorf("ledger verify failed")
	}
	return nil
}

// verifyObject is a report's fields as a JSON object, with ok and the
// error if any.
func verifyObject(rep any, verr error) (map[string]any, error) {
	b, err := json.Marshal(rep)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	out["ok"] = verr == nil
	if verr != nil {
		out["error"] = verr.Error()
	}
	return out, nil
}
