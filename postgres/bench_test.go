package postgres_test

import (
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/postgres"
	"github.com/agentmarket/agentmarket/postgres/pgtest"
)

// BenchmarkLedgerBatch measures batched transfers through the PostgreSQL
// ledger: uniform transfers between 100,000 funded wallets, in batches of
// 1, 100 and 8190. Compare with `agentmarket bench ledger --db`, which
// runs the same workloads beside pgbench's TPC-B.
func BenchmarkLedgerBatch(b *testing.B) {
	for _, size := range []int{1, 100, ledger.MaxBatch} {
		b.Run(benchName(size), func(b *testing.B) {
			l := MustOpenLedger(b, pgtest.Schema(b), postgres.LedgerOptions{})
			const wallets = 100_000
			fund(b, l, wallets)
			xs := make([]ledger.Transfer, size)
			next := uint64(1 << 40)
			rng := uint64(1)
			b.ResetTimer()
			start := time.Now()
			transfers := 0
			for b.Loop() {
				for i := range xs {
					rng = rng*6364136223846793005 + 1442695040888963407
					from, to := 1+rng>>33%wallets, 1+(rng>>13)%wallets
					if from == to {
						to = from%wallets + 1
					}
					next++
					xs[i] = ledger.Transfer{ID: ledger.IDFromUint64(next), DebitAccountID: ledger.IDFromUint64(from),
						CreditAccountID: ledger.IDFromUint64(to), Amount: 1}
				}
				res, err := l.CreateTransfers(b.Context(), xs)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					if r != ledger.OK {
						b.Fatalf("transfer: %s", r)
					}
				}
				transfers += len(xs)
			}
			b.ReportMetric(float64(transfers)/time.Since(start).Seconds(), "transfers/s")
		})
	}
}

func benchName(size int) string {
	switch size {
	case 1:
		return "batch=1"
	case 100:
		return "batch=100"
	}
	return "batch=8190"
}

// fund creates a treasury (account 0) and wallets 1..n, each funded with
// a million microcredits.
func fund(tb testing.TB, l *postgres.Ledger, n int) {
	tb.Helper()
	ctx := tb.Context()
	var as []ledger.Account
	var xs []ledger.Transfer
	flush := func() {
		if len(as) > 0 {
			if _, err := l.CreateAccounts(ctx, as); err != nil {
				tb.Fatal(err)
			}
			as = as[:0]
		}
		if len(xs) > 0 {
			if _, err := l.CreateTransfers(ctx, xs); err != nil {
				tb.Fatal(err)
			}
			xs = xs[:0]
		}
	}
	as = append(as, ledger.Account{ID: ledger.IDFromUint64(1 << 50)})
	for i := 1; i <= n; i++ {
		as = append(as, ledger.Account{ID: ledger.IDFromUint64(uint64(i)), Flags: ledger.DebitsMustNotExceedCredits})
		if len(as) == ledger.MaxBatch {
			flush()
		}
	}
	flush()
	for i := 1; i <= n; i++ {
		xs = append(xs, ledger.Transfer{ID: ledger.IDFromUint64(1<<45 + uint64(i)), DebitAccountID: ledger.IDFromUint64(1 << 50),
			CreditAccountID: ledger.IDFromUint64(uint64(i)), Amount: 1_000_000})
		if len(xs) == ledger.MaxBatch {
			flush()
		}
	}
	flush()
}
