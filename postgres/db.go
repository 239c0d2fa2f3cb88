package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// connect opens a pool on url and returns it with the schema its
// connections work in: the first schema of the search path, which may be
// set in the URL (…&search_path=name), as tests do to get a fresh schema.
func connect(ctx context.Context, url string, maxConns int, tracer pgx.QueryTracer) (*pgxpool.Pool, string, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, "", fmt.Errorf("parse postgres url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(maxConns)
	}
	if tracer != nil {
		cfg.ConnConfig.Tracer = tracer
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("connect to postgres: %w", err)
	}
	var schema *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		pool.Close()
		return nil, "", fmt.Errorf("connect to postgres: %w", err)
	}
	if schema == nil {
		pool.Close()
		return nil, "", errors.New("connect to postgres: no schema of the search path exists")
	}
	return pool, *schema, nil
}

// lockKey derives a 64-bit advisory lock key from the schema and a
// purpose, so that stores on different schemas of one database never
// share a lock.
func lockKey(schema, purpose string) int64 {
	h := fnv.New64a()
	h.Write([]byte(schema))
	h.Write([]byte{0})
	h.Write([]byte(purpose))
	return int64(h.Sum64())
}

// PostgreSQL error codes the adapters act on.
const (
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	codeUniqueViolation      = "23505"
)

func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// retryable reports whether err means the transaction lost a race and
// may simply run again: a serialization failure (CockroachDB reports
// every retryable conflict this way too) or a detected deadlock.
func retryable(err error) bool {
	c := pgCode(err)
	return c == codeSerializationFailure || c == codeDeadlockDetected
}

// maxAttempts bounds how often a transaction that keeps losing races is
// tried before the caller gets a transient error.
const maxAttempts = 100

// backoff sleeps before attempt n+1 of a transaction: a jittered delay
// that grows with n, so that the losers of one race do not meet again at
// once. It returns ctx's error if ctx ends first.
func backoff(ctx context.Context, n int) error {
	d := time.Duration(min(n+1, 20)) * 500 * time.Microsecond
	d = d/2 + rand.N(d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rollback ends tx, ignoring the error: it runs after a failure that is
// already being returned, and a connection whose rollback failed is
// closed by the pool rather than reused.
func rollback(tx pgx.Tx) {
	tx.Rollback(context.Background())
}
