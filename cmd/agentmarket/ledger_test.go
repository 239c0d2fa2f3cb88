package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/postgres"
	"github.com/agentmarket/agentmarket/postgres/pgtest"
)

// TestLedgerVerifyPostgres runs "ledger verify --db" on a PostgreSQL
// ledger with a posted and a pending transfer: it passes and counts them,
// as text and as JSON. Then a counter is altered behind the ledger's back
// and the command fails, naming the broken invariant.
func TestLedgerVerifyPostgres(t *testing.T) {
	db := pgtest.Schema(t)
	ctx := t.Context()
	l, err := postgres.OpenLedger(ctx, db, postgres.LedgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	treasury, wallet := ledger.IDFromUint64(1), ledger.IDFromUint64(2)
	if _, err := l.CreateAccounts(ctx, []ledger.Account{{ID: treasury}, {ID: wallet, Flags: ledger.DebitsMustNotExceedCredits}}); err != nil {
		t.Fatal(err)
	}
	res, err := l.CreateTransfers(ctx, []ledger.Transfer{
		{ID: ledger.IDFromUint64(10), DebitAccountID: treasury, CreditAccountID: wallet, Amount: 100},
		{ID: ledger.IDFromUint64(11), DebitAccountID: wallet, CreditAccountID: treasury, Amount: 30, Flags: ledger.Pending, Timeout: time.Hour},
	})
	if err != nil || res[0] != ledger.OK || res[1] != ledger.OK {
		t.Fatalf("transfers: %v, %v", res, err)
	}
	l.Close()

	verify := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"ledger", "verify", "--db", db}, args...), func(string) string { return "" }, nil, &out, &out)
		return out.String(), err
	}
	out, err := verify()
	if err != nil || !strings.Contains(out, "ledger ok: 2 accounts, 2 transfers, 1 pending open") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	out, err = verify("--json")
	var rep struct {
		Accounts, Transfers int64
		Pending             int64 `json:"pending_open"`
		OK                  bool
	}
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || rep.Accounts != 2 || rep.Transfers != 2 || rep.Pending != 1 {
		t.Fatalf("verify --json: %v, %+v\n%s", err, rep, out)
	}

	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `UPDATE ledger_accounts SET credits_posted = credits_posted + 1 WHERE id = $1`, wallet); err != nil {
		t.Fatal(err)
	}
	if out, err := verify(); err == nil || !strings.Contains(err.Error(), "credits not conserved") {
		t.Fatalf("verify after tampering: %v\n%s", err, out)
	}
	out, err = verify("--json")
	if err == nil || !strings.Contains(out, `"ok": false`) || !strings.Contains(out, "credits not conserved") {
		t.Fatalf("verify --json after tampering: %v\n%s", err, out)
	}
}
