package bench

import (
	"context"
	"fmt"
)

// SQLiteBaseline is the naive SQLite baseline (system B) on its own, for
// `go test -bench` benchmarks that compare another system with it in the
// same run. It runs the uniform workload (W1): each Transfer is one
// transaction between two random wallets.
type SQLiteBaseline struct {
	t   *naiveTarget
	gen *streamGen
	op  [1]Op
	out [1]outcome
	n   int64
}

// OpenSQLiteBaseline creates the baseline's database in dir, with wallets
// funded wallets and the treasury.
func OpenSQLiteBaseline(ctx context.Context, dir string, wallets int) (*SQLiteBaseline, error) {
	t, err := openSQLiteTarget(ctx, dir, wallets, &clock{})
	if err != nil {
		return nil, err
	}
	return &SQLiteBaseline{t: t, gen: newStreamGen(Uniform, wallets, 1, 0)}, nil
}

// Transfer runs one uniform transfer as one durable transaction.
func (s *SQLiteBaseline) Transfer(ctx context.Context) error {
	s.gen.fill(s.op[:])
	if err := s.t.apply(ctx, 0, s.op[:], s.out[:]); err != nil {
		return err
	}
	if s.out[0] != applied {
		return fmt.Errorf("naive transfer %d was not applied", s.op[0].ID)
	}
	s.n++
	return nil
}

// Check verifies conservation over everything transferred so far.
func (s *SQLiteBaseline) Check(ctx context.Context) error { return s.t.check(ctx, s.n) }

// Close closes the database and deletes it.
func (s *SQLiteBaseline) Close() error { return s.t.close() }
