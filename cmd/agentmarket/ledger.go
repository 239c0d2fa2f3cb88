package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentmarket/agentmarket/ledger"
)

func runLedger(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("usage: agentmarket ledger verify --data DIR [--json]")
	}
	fs := e.flags("ledger verify")
	data := fs.String("data", e.envOr("AGENTMARKET_DATA", "./agentmarket-data"), "data directory (env AGENTMARKET_DATA)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	rep, err := ledger.Verify(ledgerDir(*data))
	if *asJSON {
		out := struct {
			ledger.Report
			OK    bool   `json:"ok"`
			Error string `json:"error,omitempty"`
		}{Report: rep, OK: err == nil}
		if err != nil {
			out.Error = err.Error()
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if encErr := enc.Encode(out); encErr != nil {
			return encErr
		}
		if err != nil {
			return fmt.Errorf("ledger verify failed")
		}
		return nil
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
