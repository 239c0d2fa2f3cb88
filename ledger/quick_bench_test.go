package ledger_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/agentmarket/agentmarket/ledger"
)

func setupAccounts(b *testing.B, l *ledger.Ledger, n int) {
	ctx := context.Background()
	var as []ledger.Account
	for i := 1; i <= n; i++ {
		as = append(as, ledger.Account{ID: ledger.IDFromUint64(uint64(i))})
		if len(as) == ledger.MaxBatch {
			l.CreateAccounts(ctx, as)
			as = nil
		}
	}
	l.CreateAccounts(ctx, as)
}

func BenchmarkQuickBatch(b *testing.B) {
	l, _ := ledger.Open(b.TempDir(), ledger.Options{})
	defer l.Close()
	setupAccounts(b, l, 100000)
	rng := rand.New(rand.NewPCG(1, 2))
	id := uint64(1 << 40)
	b.ResetTimer()
	ctx := context.Background()
	for done := 0; done < b.N; {
		n := min(ledger.MaxBatch, b.N-done)
		xs := make([]ledger.Transfer, n)
		for i := range xs {
			id++
			d := rng.Uint64N(100000) + 1
			c := rng.Uint64N(100000) + 1
			if c == d {
				c = d%100000 + 1
			}
			xs[i] = ledger.Transfer{ID: ledger.IDFromUint64(id), DebitAccountID: ledger.IDFromUint64(d), CreditAccountID: ledger.IDFromUint64(c), Amount: 1}
		}
		if _, err := l.CreateTransfers(ctx, xs); err != nil {
			b.Fatal(err)
		}
		done += n
	}
}

func BenchmarkQuickConcurrent(b *testing.B) {
	l, _ := ledger.Open(b.TempDir(), ledger.Options{})
	defer l.Close()
	setupAccounts(b, l, 100000)
	b.ResetTimer()
	ctx := context.Background()
	var wg sync.WaitGroup
	per := b.N/64 + 1
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			for i := 0; i < per; i++ {
				id := uint64(g)<<40 | uint64(i+1)
				d := rng.Uint64N(100000) + 1
				c := d%100000 + 1
				l.CreateTransfers(ctx, []ledger.Transfer{{ID: ledger.IDFromUint64(id), DebitAccountID: ledger.IDFromUint64(d), CreditAccountID: ledger.IDFromUint64(c), Amount: 1}})
			}
		}()
	}
	wg.Wait()
}
