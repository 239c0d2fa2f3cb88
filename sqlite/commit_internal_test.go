package sqlite

// This test is internal because the only way to make a COMMIT fail on
// purpose is to write, through the batch's own transaction, something
// that SQLite checks only at COMMIT: a deferred foreign key violation.

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/agentmarket/agentmarket/market"
)

func TestFailedCommitFailsTheWholeBatch(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "market.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	// The writer is idle, so the test may use its connection.
	for _, q := range []string{
		`PRAGMA foreign_keys = ON`,
		`CREATE TEMP TABLE parents (id INTEGER PRIMARY KEY)`,
		`CREATE TEMP TABLE children (parent INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)`,
	} {
		if _, err := s.wconn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	const n = 30
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(ctx, func(tx market.Tx) error {
				if err := tx.PutAgent(market.Agent{ID: agentID(i)}); err != nil {
					return err
				}
				if i == n/2 {
					// An orphan child: fine until COMMIT.
					_, err := tx.(*writeTx).exec("orphan", `INSERT INTO children (parent) VALUES (42)`)
					return err
				}
				return nil
			})
		})
	}
	wg.Wait()

	// Whatever batches formed, an Update acknowledged nil must have its
	// write, and one that failed must have none; the orphan's batch failed.
	if errs[n/2] == nil {
		t.Fatalf("the Update whose batch could not commit returned nil")
	}
	failed := 0
	for i, uerr := range errs {
		verr := s.View(ctx, func(tx market.ReadTx) error { _, err := tx.Agent(agentID(i)); return err })
		switch {
		case uerr == nil && verr != nil:
			t.Errorf("update %d was acknowledged but its agent reads %v", i, verr)
		case uerr != nil && !market.Is(verr, market.NotExist):
			t.Errorf("update %d failed with %v but its agent reads %v", i, uerr, verr)
		}
		if uerr != nil {
			failed++
		}
	}
	t.Logf("%d of %d updates shared the failed commit: %v", failed, n, errs[n/2])

	// The writer carries on.
	if err := s.Update(ctx, func(tx market.Tx) error { return tx.PutAgent(market.Agent{ID: "did:key:zAfter"}) }); err != nil {
		t.Fatalf("Update after a failed commit: %v", err)
	}
}

func agentID(i int) market.AgentID { return market.AgentID(fmt.Sprintf("did:key:z%02d", i)) }
