package bench

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// outcome is how a system answered one op.
type outcome uint8

const (
	applied  outcome = iota // committed now
	exists                  // committed before: an idempotent resubmission
	rejected                // refused: insufficient funds, a resolved pending, ...
)

// target is one system, set up for one run: a fresh data directory,
// database or schema holding the treasury and the funded wallets.
type target interface {
	// apply submits ops as one call: one batch for the ledger, one
	// transaction for a naive baseline (which is given one op at a time).
	// worker is the caller's number, below the run's caller count. It
	// writes one outcome per op, and returns an error only when the call as
	// a whole failed.
	apply(ctx context.Context, worker int, ops []Op, out []outcome) error
	// expireDue resolves the reservations whose timeout has passed on the
	// benchmark's clock, and returns how many it expired.
	expireDue(ctx context.Context) (int, error)
	// check verifies conservation after the run: all balances sum to zero,
	// no wallet is below zero, no reservation is left open, and the system
	// holds exactly the transfers it acknowledged.
	check(ctx context.Context, acknowledged int64) error
	// close releases the target and deletes what it created.
	close() error
}

// rejections counts refusals by reason, for the report of a failed run.
type rejections map[string]int64

func (r rejections) String() string {
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, r[k]))
	}
	return strings.Join(parts, ", ")
}
