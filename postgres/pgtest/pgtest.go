// Package pgtest gives tests a PostgreSQL to run against: the server named
// by AGENTMARKET_TEST_POSTGRES, and a fresh schema on it for each test, so
// that tests never see each other's rows and leave nothing behind.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env is the environment variable holding the test server's URL, such as
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable. CI sets it;
// where it is unset, tests that need PostgreSQL skip.
const Env = "AGENTMARKET_TEST_POSTGRES"

// URL returns the test server's URL, or skips the test when there is none.
func URL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(Env)
	if u == "" {
		tb.Skipf("%s is not set: no PostgreSQL to test against", Env)
	}
	return u
}

// Schema creates a schema with a random name on the test server, drops it
// (and everything in it) when the test ends, and returns a URL whose
// connections work in it. Register cleanups that close connections after
// calling Schema, so that they run before the drop.
func Schema(tb testing.TB) string {
	tb.Helper()
	base := URL(tb)
	var b [8]byte
	rand.Read(b[:])
	name := "test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("pgtest: connect to %s: %v", base, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		tb.Fatalf("pgtest: create schema: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("pgtest: connect to drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			tb.Errorf("pgtest: drop schema %s: %v", name, err)
		}
	})
	u, err := WithSchema(base, name)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return u
}

// WithSchema returns the URL with its search path set to schema.
func WithSchema(base, schema string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}
