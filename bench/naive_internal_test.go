package bench

import (
	"context"
	"strings"
	"testing"
)

// mustSQLiteTarget opens the naive SQLite baseline with a few wallets.
func mustSQLiteTarget(t *testing.T, wallets int) *naiveTarget {
	t.Helper()
	tg, err := openSQLiteTarget(context.Background(), t.TempDir(), wallets, &clock{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.close() })
	return tg
}

func mustApply(t *testing.T, tg target, ops ...Op) []outcome {
	t.Helper()
	out := make([]outcome, len(ops))
	for i := range ops {
		if err := tg.apply(context.Background(), 0, ops[i:i+1], out[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestNaiveBaselineAnswersLikeALedger(t *testing.T) {
	ctx := context.Background()
	tg := mustSQLiteTarget(t, 3)
	clk := tg.clk
	reserve := Op{ID: 1, Kind: Reserve, Debit: 1, Credit: 2, Amount: 100, Timeout: escrowTimeout}
	post := Op{ID: 2, Kind: Post, Pending: 1, Amount: 40}
	expiring := Op{ID: 3, Kind: Reserve, Debit: 2, Credit: 3, Amount: 7, Timeout: escrowTimeout}
	got := mustApply(t, tg,
		Op{ID: 10, Kind: Plain, Debit: 1, Credit: 3, Amount: 5},
		reserve, reserve, post, post, expiring,
		Op{ID: 4, Kind: Void, Pending: 1}, // Already posted.
	)
	want := []outcome{applied, applied, exists, applied, exists, applied, rejected}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("op %d: outcome %d, want %d", i, got[i], want[i])
		}
	}
	clk.advance(2 * escrowTimeout)
	if n, err := tg.expireDue(ctx); err != nil || n != 1 {
		t.Fatalf("expireDue = %d, %v; want 1", n, err)
	}
	// The void above was refused, so the check must say so.
	err := tg.check(ctx, 4)
	if err == nil || !strings.Contains(err.Error(), "pending_not_open×1") {
		t.Fatalf("check = %v, want the refused void named", err)
	}
	delete(tg.rejected, "pending_not_open")
	if err := tg.check(ctx, 4); err != nil {
		t.Fatal(err)
	}
	var balance int64
	if err := tg.db.queryRow(ctx, `SELECT balance FROM accounts WHERE id = ?`, idBytes(2)).Scan(&balance); err != nil {
		t.Fatal(err)
	}
	if balance != walletFunding+40 {
		t.Errorf("wallet 2 holds %d, want funding + 40 posted (its own 7 reserved then expired back)", balance-walletFunding)
	}
}

func TestNaiveCheckCatchesLostMoney(t *testing.T) {
	ctx := context.Background()
	tg := mustSQLiteTarget(t, 3)
	mustApply(t, tg, Op{ID: 1, Kind: Plain, Debit: 1, Credit: 2, Amount: 5})
	if err := tg.check(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.db.exec(ctx, `UPDATE accounts SET balance = balance - 1 WHERE id = ?`, idBytes(3)); err != nil {
		t.Fatal(err)
	}
	if err := tg.check(ctx, 1); err == nil || !strings.Contains(err.Error(), "sum to -1") {
		t.Errorf("check after losing a microcredit = %v, want a conservation failure", err)
	}
}

func TestEscrowRoundMix(t *testing.T) {
	g := newEscrowGen(1000, 1)
	r := g.round(1000)
	count := map[OpKind]int{}
	dups := 0
	for _, op := range r.resolve {
		if op.Dup {
			dups++
			continue
		}
		count[op.Kind]++
	}
	if len(r.reserve) != 1000 || count[Post] != 700 || count[Void] != 200 || r.toExpire != 100 {
		t.Errorf("round: %d reservations, %d posts, %d voids, %d to expire; want 1000, 700, 200, 100",
			len(r.reserve), count[Post], count[Void], r.toExpire)
	}
	total := len(r.reserve) + len(r.resolve)
	if dups != r.dups || dups*100/total != 5 {
		t.Errorf("%d resubmissions of %d requests (%d%%), want 5%%", dups, total, dups*100/total)
	}
}
