package ledger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/bench"
	"github.com/agentmarket/agentmarket/ledger"
)

// The benchmarks here measure the durable ledger on the uniform workload
// (W1 of `agentmarket bench ledger`) and report each result as a multiple
// of the naive SQLite baseline, measured in the same process. They assert
// nothing about speed: run them with
//
//	go test -run '^$' -bench . ./ledger
//
// and read the transfers/s and x_naive_sqlite columns.

const benchWallets = 100_000

// benchNaiveRate is the naive SQLite baseline's transfers per second, measured
// once per process.
var benchNaiveRate = sync.OnceValues(func() (float64, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "agentmarket-ledger-bench-")
	if err != nil {
		return 0, err
	}
	s, err := bench.OpenSQLiteBaseline(ctx, dir, benchWallets)
	if err != nil {
		return 0, err
	}
	defer s.Close() // Close deletes dir.
	n, start := 0, time.Now()
	for time.Since(start) < 2*time.Second {
		if err := s.Transfer(ctx); err != nil {
			return 0, err
		}
		n++
	}
	rate := float64(n) / time.Since(start).Seconds()
	return rate, s.Check(ctx)
})

func benchReportRate(b *testing.B, transfers int) {
	b.Helper()
	rate := float64(transfers) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "transfers/s")
	base, err := benchNaiveRate()
	if err != nil {
		b.Fatalf("naive sqlite baseline: %v", err)
	}
	b.ReportMetric(base, "naive_sqlite_transfers/s")
	b.ReportMetric(rate/base, "x_naive_sqlite")
}

// benchMustFundedLedger opens a durable ledger in a temporary directory with a
// treasury (account 0) and benchWallets funded wallets (1 to benchWallets).
func benchMustFundedLedger(tb testing.TB) *ledger.Ledger {
	tb.Helper()
	ctx := context.Background()
	l, err := ledger.Open(tb.TempDir(), ledger.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	var accounts []ledger.Account
	var xs []ledger.Transfer
	for n := 0; n <= benchWallets; n++ {
		a := ledger.Account{ID: benchAccount(n)}
		if n > 0 {
			a.Flags = ledger.DebitsMustNotExceedCredits
			xs = append(xs, ledger.Transfer{ID: ledger.IDFromUint64(1<<62 | uint64(n)), DebitAccountID: benchAccount(0),
				CreditAccountID: a.ID, Amount: 1_000_000 * 1_000_000})
		}
		accounts = append(accounts, a)
	}
	for len(accounts) > 0 {
		k := min(len(accounts), ledger.MaxBatch)
		benchMustAllOK(tb, ledger.OK)(l.CreateAccounts(ctx, accounts[:k]))
		accounts = accounts[k:]
	}
	for len(xs) > 0 {
		k := min(len(xs), ledger.MaxBatch)
		benchMustAllOK(tb, ledger.OK)(l.CreateTransfers(ctx, xs[:k]))
		xs = xs[k:]
	}
	return l
}

func benchAccount(n int) ledger.ID { return ledger.IDFromUint64(uint64(n) + 1) }

func benchMustAllOK(tb testing.TB, want ledger.Result) func([]ledger.Result, error) {
	return func(res []ledger.Result, err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		for i, r := range res {
			if r != want {
				tb.Fatalf("event %d: %s, want %s", i, r, want)
			}
		}
	}
}

// uniform fills xs with transfers between random wallets, numbered from
// *next on.
func benchUniform(rng *rand.Rand, next *uint64, xs []ledger.Transfer) {
	for i := range xs {
		*next++
		d := 1 + rng.IntN(benchWallets)
		c := 1 + rng.IntN(benchWallets-1)
		if c >= d {
			c++
		}
		xs[i] = ledger.Transfer{ID: ledger.IDFromUint64(*next), DebitAccountID: benchAccount(d), CreditAccountID: benchAccount(c),
			Amount: 1 + rng.Uint64N(1_000_000)}
	}
}

// BenchmarkCreateTransfers is one caller submitting batches; an op is one
// transfer.
func BenchmarkCreateTransfers(b *testing.B) {
	for _, batch := range []int{1, 100, ledger.MaxBatch} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			l := benchMustFundedLedger(b)
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(1, uint64(batch)))
			next := uint64(1) << 40
			xs := make([]ledger.Transfer, batch)
			b.ResetTimer()
			for done := 0; done < b.N; {
				k := min(batch, b.N-done)
				benchUniform(rng, &next, xs[:k])
				res, err := l.CreateTransfers(ctx, xs[:k])
				if err != nil {
					b.Fatal(err)
				}
				if res[0] != ledger.OK {
					b.Fatalf("transfer: %s", res[0])
				}
				done += k
			}
			b.StopTimer()
			benchReportRate(b, b.N)
		})
	}
}

// BenchmarkConcurrentCallers is 64 callers each submitting one transfer at
// a time, riding the ledger's group commit; an op is one transfer.
func BenchmarkConcurrentCallers(b *testing.B) {
	l := benchMustFundedLedger(b)
	ctx := context.Background()
	var seed atomic.Uint64
	b.SetParallelism(max(1, 64/max(1, runtime.GOMAXPROCS(0))))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		s := seed.Add(1)
		rng := rand.New(rand.NewPCG(s, 7))
		next := s << 40
		xs := make([]ledger.Transfer, 1)
		for pb.Next() {
			benchUniform(rng, &next, xs)
			res, err := l.CreateTransfers(ctx, xs)
			if err != nil {
				b.Error(err)
				return
			}
			if res[0] != ledger.OK {
				b.Errorf("transfer: %s", res[0])
				return
			}
		}
	})
	b.StopTimer()
	benchReportRate(b, b.N)
}

// BenchmarkNaiveSQLite is the baseline itself: one SQLite transaction per
// transfer, synchronous=FULL; an op is one transfer.
func BenchmarkNaiveSQLite(b *testing.B) {
	ctx := context.Background()
	s, err := bench.OpenSQLiteBaseline(ctx, b.TempDir(), benchWallets)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for range b.N {
		if err := s.Transfer(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transfers/s")
	if err := s.Check(ctx); err != nil {
		b.Fatal(err)
	}
}
