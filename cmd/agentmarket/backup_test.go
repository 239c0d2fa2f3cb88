package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/market"
)

// marketContents is what a backup test compares between a market and its
// copy: every contract, and the newest receipt.
type marketContents struct {
	Contracts   []market.Contract
	LastReceipt market.Receipt
}

// readMarket reads a stopped market's contents through its store.
func readMarket(t *testing.T, dir, kind string) marketContents {
	t.Helper()
	s, err := openEmbeddedStore(dir, stackOptions{Store: kind})
	if err != nil {
		t.Fatalf("open store in %s: %v", dir, err)
	}
	defer s.Close()
	var c marketContents
	err = s.View(t.Context(), func(tx market.ReadTx) error {
		for page := (market.Page{Limit: 500}); ; {
			cs, err := tx.Contracts(market.ContractFilter{Page: page})
			if err != nil {
				return err
			}
			c.Contracts = append(c.Contracts, cs...)
			if len(cs) < page.Limit {
				break
			}
			page.After = cs[len(cs)-1].ID
		}
		c.LastReceipt, err = tx.LastReceipt()
		return err
	})
	if err != nil {
		t.Fatalf("read market in %s: %v", dir, err)
	}
	return c
}

// TestBackupCopiesAStoppedMarket trades a simulated economy into a data
// directory with each market store, backs it up, and checks that the
// command detected the store, that the copy's ledger verifies and its
// store holds every contract and receipt the market does, that the keys
// came along, and that a market opens on the copy.
func TestBackupCopiesAStoppedMarket(t *testing.T) {
	for _, kind := range []string{storeSQLite, storeJournal} {
		t.Run(kind, func(t *testing.T) {
			data, to := filepath.Join(t.TempDir(), "data"), filepath.Join(t.TempDir(), "backup")
			var out bytes.Buffer
			sim := []string{"sim", "--scenario", "baseline", "--agents", "16", "--duration", "20s", "--seed", "5",
				"--out", t.TempDir(), "--data", data, "--store", kind}
			if err := run(context.Background(), sim, func(string) string { return "" }, strings.NewReader(""), &out, &out); err != nil {
				t.Fatalf("sim: %v\n%s", err, out.String())
			}
			out.Reset()
			args := []string{"backup", "--data", data, "--to", to}
			if err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &out); err != nil {
				t.Fatalf("backup: %v\n%s", err, out.String())
			}
			for _, want := range []string{"(" + kind + " store)", "ledger ok:", "store ok:"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("backup output lacks %q:\n%s", want, out.String())
				}
			}

			live, copied := readMarket(t, data, kind), readMarket(t, to, kind)
			if len(live.Contracts) == 0 || live.LastReceipt.Seq == 0 {
				t.Fatalf("the simulation traded too little: %d contracts, last receipt %d", len(live.Contracts), live.LastReceipt.Seq)
			}
			if d := cmp.Diff(live, copied); d != "" {
				t.Errorf("the copy differs from the market (-market +copy):\n%s", d)
			}
			// The ledger's journal only grows: its expiries may have added to
			// it since the copy.
			for _, name := range []string{"market.key", filepath.Join("ledger", "journal.amj")} {
				want, err := os.ReadFile(filepath.Join(data, name))
				if err != nil {
					t.Fatal(err)
				}
				if got, err := os.ReadFile(filepath.Join(to, name)); err != nil || len(got) == 0 || !bytes.HasPrefix(want, got) {
					t.Errorf("%s in the copy: %d bytes, %v; want the market's (%d bytes) or a start of it", name, len(got), err, len(want))
				}
			}

			out.Reset()
			verify := []string{"ledger", "verify", "--data", to}
			if err := run(context.Background(), verify, func(string) string { return "" }, strings.NewReader(""), &out, &out); err != nil {
				t.Errorf("ledger verify on the copy: %v\n%s", err, out.String())
			}
			st, err := openStack(t.Context(), to, stackOptions{Store: kind})
			if err != nil {
				t.Fatalf("open a market on the copy: %v", err)
			}
			if err := st.Ledger.CheckInvariants(t.Context()); err != nil {
				t.Errorf("the copy's ledger: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBackupRefuses(t *testing.T) {
	data := t.TempDir()
	notEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(notEmpty, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	withStore := t.TempDir()
	if err := os.WriteFile(filepath.Join(withStore, "market.db"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"NoDestination":        {"backup", "--data", data},
		"NoMarketInTheDataDir": {"backup", "--data", data, "--to", filepath.Join(t.TempDir(), "b")},
		"ADestinationInUse":    {"backup", "--data", withStore, "--to", notEmpty},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &out); err == nil {
				t.Errorf("%q: no error", args)
			}
		})
	}
}
