package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/postgres"
)

func runLedger(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("usage: agentmarket ledger verify (--data DIR | --db URL) [--json]")
	}
	fs := e.flags("ledger verify")
	data := fs.String("data", e.envOr("AGENTMARKET_DATA", "./agentmarket-data"), "data directory (env AGENTMARKET_DATA)")
	db := fs.String("db", e.getenv("AGENTMARKET_DB"), "PostgreSQL URL of a market (env AGENTMARKET_DB), instead of --data")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *db != "" {
		return verifyPostgresLedger(ctx, e, *db, *asJSON)
	}
	rep, err := ledger.Verify(ledgerDir(*data))
	if *asJSON {
		return writeVerifyJSON(e, rep, err)
	}
	if err != nil {
		return fmt.Errorf("ledger verify %s: %w", *data, err)
	}
	fmt.Fprintf(e.stdout, "ledger ok: %d records, %d events, %d accounts, %d pending open, head %s\n",
		rep.Records, rep.Events, rep.Accounts, rep.Pending, rep.Head)
	if rep.TornBytes > 0 {
		fmt.Fprintf(e.stdout, "note: %d bytes after the last whole record (an unacknowledged write cut short; dropped on next open)\n", rep.TornBytes)
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
		return writeVerifyJSON(e, rep, err)
	}
	if err != nil {
		return fmt.Errorf("ledger verify --db: %w", err)
	}
	fmt.Fprintf(e.stdout, "ledger ok: %d accounts, %d transfers, %d pending open; credits conserved, no wallet below zero, pending counters match\n",
		rep.Accounts, rep.Transfers, rep.Pending)
	return nil
}

// writeVerifyJSON prints a verification report as one JSON object: the
// report's fields, ok, and the error if any. A failed verification still
// fails the command.
func writeVerifyJSON(e *env, rep any, verr error) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		return err
	}
	out["ok"] = verr == nil
	if verr != nil {
		out["error"] = verr.Error()
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if verr != nil {
		return fmt.Errorf("ledger verify failed")
	}
	return nil
}
