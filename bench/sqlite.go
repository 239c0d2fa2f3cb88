package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentmarket/agentmarket/ledger"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteDB is system B's database: SQLite in WAL mode with
// synchronous=FULL, through the driver and settings agentmarket uses
// (ledger.OpenSQLite), so every commit is fsynced as the ledger's are. It
// has one connection: SQLite has one writer.
type sqliteDB struct {
	db    *sql.DB
	dir   string
	stmts map[string]*sql.Stmt // written only while opening
}

var sqliteDialect = dialect{blob: "BLOB"}

func openSQLiteTarget(ctx context.Context, dir string, wallets int, clk *clock) (*naiveTarget, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create sqlite dir: %w", err)
	}
	db, err := ledger.OpenSQLite(filepath.Join(dir, "naive.db"), "FULL")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	s := &sqliteDB{db: db, dir: dir, stmts: map[string]*sql.Stmt{}}
	t, err := newNaiveTarget(ctx, s, sqliteDialect, wallets, 1, clk)
	if err == nil {
		q := t.sql
		err = s.prepare(ctx, q.debit, q.hold, q.credit, q.insert, q.resolve, q.settle, q.pay, q.lookup, q.expire, q.release)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return t, nil
}

// prepare prepares the naive baseline's statements once, so that each
// transfer only binds and steps them. The setup statements run unprepared.
func (s *sqliteDB) prepare(ctx context.Context, queries ...string) error {
	for _, q := range queries {
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		s.stmts[q] = st
	}
	return nil
}

func (s *sqliteDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s *sqliteDB) queryRow(ctx context.Context, q string, args ...any) rowScanner {
	return sqlRow{s.db.QueryRowContext(ctx, q, args...)}
}

func (s *sqliteDB) queryIDs(ctx context.Context, q string, args ...any) ([][]byte, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids [][]byte
	for rows.Next() {
		var id []byte
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (s *sqliteDB) begin(ctx context.Context) (sqlTx, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &sqliteTx{tx: tx, db: s}, nil
}

func (s *sqliteDB) uniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

func (s *sqliteDB) retryable(error) bool { return false }

func (s *sqliteDB) close() error {
	err := s.db.Close()
	if rmErr := os.RemoveAll(s.dir); err == nil {
		err = rmErr
	}
	return err
}

type sqliteTx struct {
	tx *sql.Tx
	db *sqliteDB
}

func (t *sqliteTx) exec(ctx context.Context, q string, args ...any) (int64, error) {
	var res sql.Result
	var err error
	if st, ok := t.db.stmts[q]; ok {
		res, err = t.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	} else {
		res, err = t.tx.ExecContext(ctx, q, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *sqliteTx) queryRow(ctx context.Context, q string, args ...any) rowScanner {
	if st, ok := t.db.stmts[q]; ok {
		return sqlRow{t.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)}
	}
	return sqlRow{t.tx.QueryRowContext(ctx, q, args...)}
}

func (t *sqliteTx) commit(context.Context) error   { return t.tx.Commit() }
func (t *sqliteTx) rollback(context.Context) error { return t.tx.Rollback() }

// sqlRow maps database/sql's no-rows error to errNoRow.
type sqlRow struct{ row *sql.Row }

func (r sqlRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return errNoRow
	}
	return err
}
