package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// BackupFile is the name of the database file Backup writes in its
// directory, the name a data directory gives the market store.
const BackupFile = "market.db"

// Backup writes a copy of the store to BackupFile in the directory dst,
// which must not hold that file yet, while the store goes on serving.
// It runs VACUUM INTO on a read connection: the copy is the committed
// state at one instant, so it holds every Update acknowledged before
// Backup was called, and writers are not held up. The copy is one
// self-contained file, synced; it opens with Open. Backup returns
// ErrClosed on a closed store.
func (s *Store) Backup(ctx context.Context, dst string) error {
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("backup store: %w", err)
	}
	path := filepath.Join(dst, BackupFile)
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("backup store: %s exists", path)
	}
	if err := s.vacuumInto(ctx, path); err != nil {
		os.Remove(path)
		return fmt.Errorf("backup store to %s: %w", path, err)
	}
	if err := syncFile(path); err != nil {
		return fmt.Errorf("backup store: %w", err)
	}
	if err := syncFile(dst); err != nil {
		return fmt.Errorf("backup store: %w", err)
	}
	return nil
}

// vacuumInto writes the copy on a connection of its own: VACUUM INTO only
// reads the store's file, but the readers' pool is query_only, which
// refuses it, and lifting that on a pooled connection would risk handing
// a writable one to a View.
func (s *Store) vacuumInto(ctx context.Context, path string) error {
	var seq int
	var name, file string
	if err := s.rdb.QueryRowContext(ctx, `PRAGMA database_list`).Scan(&seq, &name, &file); err != nil {
		return fmt.Errorf("find the store's file: %w", err)
	}
	db, err := openDB(file, "deferred")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	_, err = db.ExecContext(ctx, `VACUUM INTO ?`, path)
	return err
}

// syncFile makes a file, or a directory's entries, durable.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
