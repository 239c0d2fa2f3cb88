package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/ledger"
)

func TestSmoke(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := ledger.Open(dir, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.CreateAccounts(ctx, []ledger.Account{{ID: ledger.IDFromUint64(1)}, {ID: ledger.IDFromUint64(2), Flags: ledger.DebitsMustNotExceedCredits}, {ID: ledger.IDFromUint64(3), Flags: ledger.DebitsMustNotExceedCredits}})
	t.Log(res, err)
	res, err = l.CreateTransfers(ctx, []ledger.Transfer{
		{ID: ledger.IDFromUint64(10), DebitAccountID: ledger.IDFromUint64(1), CreditAccountID: ledger.IDFromUint64(2), Amount: 100},
		{ID: ledger.IDFromUint64(11), DebitAccountID: ledger.IDFromUint64(2), CreditAccountID: ledger.IDFromUint64(3), Amount: 60, Flags: ledger.Pending, Timeout: time.Hour},
		{ID: ledger.IDFromUint64(12), PendingID: ledger.IDFromUint64(11), Amount: 50, Flags: ledger.PostPending},
		{ID: ledger.IDFromUint64(12), PendingID: ledger.IDFromUint64(11), Amount: 50, Flags: ledger.PostPending},
		{ID: ledger.IDFromUint64(13), PendingID: ledger.IDFromUint64(11), Flags: ledger.VoidPending},
		{ID: ledger.IDFromUint64(14), DebitAccountID: ledger.IDFromUint64(2), CreditAccountID: ledger.IDFromUint64(3), Amount: 60},
	})
	t.Log(res, err)
	accts, _ := l.LookupAccounts(ctx, []ledger.ID{ledger.IDFromUint64(1), ledger.IDFromUint64(2), ledger.IDFromUint64(3)})
	for _, a := range accts {
		t.Logf("%+v %+v", a, a.Balance())
	}
	if err := l.CheckInvariants(ctx); err != nil {
		t.Fatal(err)
	}
	xs, err := l.AccountTransfers(ctx, ledger.IDFromUint64(2), ledger.TransferPage{})
	t.Log(len(xs), err)
	l.Close()
	l, err = ledger.Open(dir, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	accts, _ = l.LookupAccounts(ctx, []ledger.ID{ledger.IDFromUint64(1), ledger.IDFromUint64(2), ledger.IDFromUint64(3)})
	for _, a := range accts {
		t.Logf("%+v %+v", a, a.Balance())
	}
	st, _ := l.PendingStatus(ctx, ledger.IDFromUint64(11))
	t.Log(st)
	l.Close()
}
