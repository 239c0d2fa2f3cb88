package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
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
			data, to := simulatedMarket(t, kind), filepath.Join(t.TempDir(), "backup")
			var out bytes.Buffer
			args := []string{"backup", "--data", data, "--to", to}
			if err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &out); err != nil {
				t.Fatalf("backup: %v\n%s", err, out.String())
			}
			for _, want := range []string{"(" + kind + " store)", "ledger ok:", "store ok:"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("backup output lacks %q:\n%s", want, out.String())
				}
			}
			checkCopy(t, data, to, kind)
		})
	}
}

// simulatedMarket trades a small simulated economy into a new data
// directory with the market store kind, and returns the directory.
func simulatedMarket(t *testing.T, kind string) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	var out bytes.Buffer
	sim := []string{"sim", "--scenario", "baseline", "--agents", "16", "--duration", "20s", "--seed", "5",
		"--out", t.TempDir(), "--data", data, "--store", kind}
	if err := run(context.Background(), sim, func(string) string { return "" }, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("sim: %v\n%s", err, out.String())
	}
	return data
}

// checkCopy checks a backup to of the stopped market in data: its store
// holds every contract and receipt the market's does, its keys and
// ledger journal came along, its ledger verifies, and a market opens on
// it with the ledger's invariants holding.
func checkCopy(t *testing.T, data, to, kind string) {
	t.Helper()
	var out bytes.Buffer
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
}

// TestServeBacksUpOnSIGUSR1 runs serve with --backup-dir on a market
// with trades, for each store, sends the process SIGUSR1, and checks the
// backup it writes while serving as the backup command's is checked.
func TestServeBacksUpOnSIGUSR1(t *testing.T) {
	for _, kind := range []string{storeSQLite, storeJournal} {
		t.Run(kind, func(t *testing.T) {
			data, backups := simulatedMarket(t, kind), t.TempDir()
			srv := startServe(t, data, "127.0.0.1:0", "--store", kind, "--backup-dir", backups)
			if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			var to string
			waitFor(t, "the backup", func() bool {
				m := backupWrittenRE.FindStringSubmatch(srv.out.String())
				if m != nil {
					to = m[1]
				}
				return m != nil || strings.Contains(srv.out.String(), "backup to ")
			})
			if to == "" || filepath.Dir(to) != backups {
				t.Fatalf("serve's backup: %q\n%s", to, srv.out.String())
			}
			srv.stop(t)
			checkCopy(t, data, to, kind)
		})
	}
}

var backupWrittenRE = regexp.MustCompile(`backup written to (\S+)`)

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
