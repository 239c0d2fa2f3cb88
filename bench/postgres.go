package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgDB is system C's database: PostgreSQL through pgx, with a pool of one
// connection per client, in a schema made for the run and dropped after it.
type pgDB struct {
	pool   *pgxpool.Pool
	admin  *pgx.Conn
	schema string
}

var pgDialect = dialect{blob: "BYTEA", numbered: true}

func openPostgresTarget(ctx context.Context, url string, wallets, workers int, clk *clock) (*naiveTarget, error) {
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	var suffix [6]byte
	rand.Read(suffix[:])
	schema := "agentmarket_bench_" + hex.EncodeToString(suffix[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close(ctx)
		return nil, fmt.Errorf("create schema: %w", err)
	}
	p := &pgDB{admin: admin, schema: schema}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	cfg.MaxConns = int32(workers)
	cfg.MinConns = int32(workers)
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	if p.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		p.close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	t, err := newNaiveTarget(ctx, p, pgDialect, wallets, workers, clk)
	if err != nil {
		p.close()
		return nil, err
	}
	return t, nil
}

func (p *pgDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := p.pool.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (p *pgDB) queryRow(ctx context.Context, q string, args ...any) rowScanner {
	return pgRow{p.pool.QueryRow(ctx, q, args...)}
}

func (p *pgDB) queryIDs(ctx context.Context, q string, args ...any) ([][]byte, error) {
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[[]byte])
}

func (p *pgDB) begin(ctx context.Context) (sqlTx, error) {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return pgTx{tx}, nil
}

func (p *pgDB) uniqueViolation(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505"
}

func (p *pgDB) retryable(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && (e.Code == "40P01" || e.Code == "40001")
}

// close closes the pool and drops the run's schema.
func (p *pgDB) close() error {
	if p.pool != nil {
		p.pool.Close()
	}
	ctx := context.Background()
	_, err := p.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+p.schema+" CASCADE")
	if err != nil {
		err = fmt.Errorf("drop schema %s: %w", p.schema, err)
	}
	if cerr := p.admin.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

type pgTx struct{ tx pgx.Tx }

func (t pgTx) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (t pgTx) queryRow(ctx context.Context, q string, args ...any) rowScanner {
	return pgRow{t.tx.QueryRow(ctx, q, args...)}
}

func (t pgTx) commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t pgTx) rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

// pgRow maps pgx's no-rows error to errNoRow.
type pgRow struct{ row pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNoRow
	}
	return err
}
