package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
)

// backupStore is a market store that can copy itself while it serves:
// *sqlite.Store and *journalstore.Store.
type backupStore interface {
	Backup(ctx context.Context, dst string) error
}

// runBackup copies a stopped embedded market: the market store first,
// through its Backup, then the ledger's journal and the key files, and
// checks the copy. It opens the market as serve does, so it takes the
// data directory's locks and refuses a market a server is running.
func runBackup(ctx context.Context, e *env, args []string) error {
	fs := e.flags("backup")
	data := fs.String("data", e.envOr("AGENTMARKET_DATA", "./agentmarket-data"), "data directory of a stopped market (env AGENTMARKET_DATA)")
	to := fs.String("to", "", "where to write the copy: a new or empty directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *to == "" || fs.NArg() > 0 {
		return fmt.Errorf("usage: agentmarket backup --data DIR --to DEST")
	}
	kind, err := embeddedStoreKind(*data)
	if err != nil {
		return err
	}
	if err := emptyDir(*to); err != nil {
		return err
	}
	if err := backupMarket(ctx, *data, *to, kind); err != nil {
		return fmt.Errorf("backup %s: %w", *data, err)
	}
	fmt.Fprintf(e.stdout, "backup of %s (%s store) written to %s\n", *data, kind, *to)
	return checkBackup(ctx, e, *to, kind)
}

// embeddedStoreKind says which market store the data directory holds.
func embeddedStoreKind(dir string) (string, error) {
	exists := func(name string) bool { _, err := os.Stat(filepath.Join(dir, name)); return err == nil }
	switch {
	case exists("market"):
		return storeJournal, nil
	case exists("market.db"):
		return storeSQLite, nil
	}
	return "", fmt.Errorf("data dir %s holds no market store (market.db or market/)", dir)
}

// emptyDir makes sure dir exists and holds nothing.
func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(names) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	return nil
}

// backupMarket writes the copy. The store goes first: the engine writes
// money to the ledger before it records the change in the store, so a
// ledger copied after the store is at or ahead of it, which the engine's
// recovery repairs on start; a store ahead of its ledger is not.
func backupMarket(ctx context.Context, data, to, kind string) error {
	st, err := openStack(ctx, data, stackOptions{Store: kind, Seed: rand.Uint64()})
	if err != nil {
		return fmt.Errorf("open market: %w", err)
	}
	return errors.Join(copyMarket(ctx, st, data, to, kind), st.Close())
}

// copyMarket copies the open market st of the data directory data.
func copyMarket(ctx context.Context, st *stack, data, to, kind string) error {
	bs, ok := st.Store.(backupStore)
	if !ok {
		return fmt.Errorf("the %s store cannot back itself up", kind)
	}
	storeDst := to
	if kind == storeJournal {
		storeDst = filepath.Join(to, "market")
	}
	if err := bs.Backup(ctx, storeDst); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(to, "ledger"), 0o755); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(data, "ledger", "journal.amj"), filepath.Join(to, "ledger", "journal.amj"), 0o644); err != nil {
		return err
	}
	for _, key := range []string{"market.key", "operator.key"} {
		err := copyFile(filepath.Join(data, key), filepath.Join(to, key), 0o600)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// copyFile copies src to a new file dst with mode perm, and syncs it.
func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// checkBackup runs ledger verify on the copy's ledger and opens its
// store, as a restore would, and prints what they hold.
func checkBackup(ctx context.Context, e *env, to, kind string) error {
	rep, err := ledger.Verify(filepath.Join(to, "ledger"))
	if err != nil {
		return fmt.Errorf("check backup: ledger verify %s: %w", to, err)
	}
	fmt.Fprintf(e.stdout, "ledger ok: %d records, %d events, %d accounts, %d pending open, head %s\n",
		rep.Records, rep.Events, rep.Accounts, rep.Pending, rep.Head)
	s, err := openEmbeddedStore(to, stackOptions{Store: kind})
	if err != nil {
		return fmt.Errorf("check backup: open store: %w", err)
	}
	defer s.Close()
	var last market.Receipt
	err = s.View(ctx, func(tx market.ReadTx) error {
		var err error
		if last, err = tx.LastReceipt(); market.Is(err, market.NotExist) {
			err = nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("check backup: read store: %w", err)
	}
	fmt.Fprintf(e.stdout, "store ok: last receipt %d\n", last.Seq)
	return s.Close()
}
