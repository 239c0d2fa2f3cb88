package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/postgres/pgtest"
)

// tripCounter counts the round trips a ledger makes: each statement sent
// alone, each pipeline of statements, and each statement prepared.
type tripCounter struct{ n, commits atomic.Int64 }

func (c *tripCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *tripCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *tripCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *tripCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	if data.SQL == "COMMIT" && data.Err == nil {
		c.commits.Add(1)
	}
}
func (c *tripCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}
func (c *tripCounter) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *tripCounter) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// TestFullBatchIsAFewRoundTrips checks that the size of a batch does not
// decide how many round trips it takes: a full batch of 8190 transfers,
// or of 8190 posts and voids, costs as many as a batch of one.
func TestFullBatchIsAFewRoundTrips(t *testing.T) {
	trips := &tripCounter{}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	l, err := OpenLedger(t.Context(), pgtest.Schema(t), LedgerOptions{tracer: trips, MaxConns: 1,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	const n = ledger.MaxBatch
	treasury := ledger.IDFromUint64(1 << 40)
	wallet := func(i int) ledger.ID { return ledger.IDFromUint64(uint64(i + 1)) }
	accounts := []ledger.Account{{ID: treasury}}
	for i := range 2 * n {
		accounts = append(accounts, ledger.Account{ID: wallet(i), Flags: ledger.DebitsMustNotExceedCredits})
	}
	for len(accounts) > 0 {
		k := min(len(accounts), n)
		if _, err := l.CreateAccounts(t.Context(), accounts[:k]); err != nil {
			t.Fatal(err)
		}
		accounts = accounts[k:]
	}
	next := uint64(1 << 41)
	batch := func(f func(i int, id ledger.ID) ledger.Transfer) []ledger.Transfer {
		xs := make([]ledger.Transfer, n)
		for i := range xs {
			next++
			xs[i] = f(i, ledger.IDFromUint64(next))
		}
		return xs
	}
	count := func(what string, xs []ledger.Transfer) int64 {
		t.Helper()
		before := trips.n.Load()
		res, err := l.CreateTransfers(t.Context(), xs)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for i, r := range res {
			if r != ledger.OK {
				t.Fatalf("%s: transfer %d: %s", what, i, r)
			}
		}
		return trips.n.Load() - before
	}
	fund := func(i int, id ledger.ID) ledger.Transfer {
		return ledger.Transfer{ID: id, DebitAccountID: treasury, CreditAccountID: wallet(i), Amount: 1000}
	}
	var reserved []ledger.ID
	reserve := func(i int, id ledger.ID) ledger.Transfer {
		reserved = append(reserved, id)
		return ledger.Transfer{ID: id, DebitAccountID: wallet(i), CreditAccountID: wallet(n + i), Amount: 100,
			Flags: ledger.Pending, Timeout: time.Hour}
	}
	resolve := func(i int, id ledger.ID) ledger.Transfer {
		if i%2 == 0 {
			return ledger.Transfer{ID: id, PendingID: reserved[i], Amount: 60, Flags: ledger.PostPending}
		}
		return ledger.Transfer{ID: id, PendingID: reserved[i], Flags: ledger.VoidPending}
	}
	// The first batch of each shape also prepares its statements.
	count("warm up", batch(fund))
	got := count("fund", batch(fund))
	t.Logf("plain: %d", got)
	if got > 3 {
		t.Errorf("a batch of %d plain transfers took %d round trips, want at most 3", n, got)
	}
	got = count("reserve", batch(reserve))
	t.Logf("reserve: %d", got)
	if got > 4 {
		t.Errorf("a batch of %d reservations took %d round trips, want at most 4", n, got)
	}
	got = count("resolve", batch(resolve))
	t.Logf("resolve: %d", got)
	if got > 6 {
		t.Errorf("a batch of %d posts and voids took %d round trips, want at most 6", n, got)
	}
	if err := l.CheckInvariants(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentCallsShareTransactions checks the ledger's group commit:
// many callers submitting one transfer each at once are served by fewer
// transactions than calls, and every call gets its own results.
func TestConcurrentCallsShareTransactions(t *testing.T) {
	trips := &tripCounter{}
	l, err := OpenLedger(t.Context(), pgtest.Schema(t), LedgerOptions{tracer: trips})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	treasury, wallet := ledger.IDFromUint64(1), ledger.IDFromUint64(2)
	if _, err := l.CreateAccounts(t.Context(), []ledger.Account{{ID: treasury}, {ID: wallet}}); err != nil {
		t.Fatal(err)
	}
	const callers, each = 32, 20
	before := trips.commits.Load()
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for i := range each {
				id := ledger.IDFromUint64(uint64(1000 + g*each + i))
				// Every caller also resubmits one id, which must answer
				// exists however the calls were grouped.
				xs := []ledger.Transfer{{ID: id, DebitAccountID: treasury, CreditAccountID: wallet, Amount: 1},
					{ID: ledger.IDFromUint64(7), DebitAccountID: treasury, CreditAccountID: wallet, Amount: 1}}
				res, err := l.CreateTransfers(t.Context(), xs)
				if err != nil {
					t.Error(err)
					return
				}
				if res[0] != ledger.OK || !res[1].Committed() {
					t.Errorf("results %v", res)
				}
			}
		})
	}
	wg.Wait()
	commits := trips.commits.Load() - before
	t.Logf("%d calls in %d transactions", callers*each, commits)
	if commits >= callers*each {
		t.Errorf("%d calls took %d transactions: no group commit", callers*each, commits)
	}
	as, err := l.LookupAccounts(t.Context(), []ledger.ID{wallet})
	if err != nil {
		t.Fatal(err)
	}
	if got := as[0].CreditsPosted; got != callers*each+1 {
		t.Errorf("wallet credited %d, want %d", got, callers*each+1)
	}
	if err := l.CheckInvariants(t.Context()); err != nil {
		t.Fatal(err)
	}
}
