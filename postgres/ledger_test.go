package postgres_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/ledgertest"
	"github.com/agentmarket/agentmarket/postgres"
	"github.com/agentmarket/agentmarket/postgres/pgtest"
)

// MustOpenLedger opens a ledger on the database at url and closes it when
// the test ends.
func MustOpenLedger(tb testing.TB, url string, opts postgres.LedgerOptions) *postgres.Ledger {
	tb.Helper()
	l, err := postgres.OpenLedger(context.Background(), url, opts)
	if err != nil {
		tb.Fatalf("open ledger: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("close ledger: %v", err)
		}
	})
	return l
}

func TestLedgerConformance(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T, now func() time.Time) ledgertest.Ledger {
		return MustOpenLedger(t, pgtest.Schema(t), postgres.LedgerOptions{Now: now})
	})
}

// nodes is a ledgertest.Ledger spread over several ledgers on one schema,
// as several serve nodes would be: each call goes to the next node in
// turn, so that every case of the suite runs across nodes.
type nodes struct {
	ls   []*postgres.Ledger
	next atomic.Uint64
}

func (n *nodes) node() *postgres.Ledger { return n.ls[n.next.Add(1)%uint64(len(n.ls))] }

func (n *nodes) CreateAccounts(ctx context.Context, as []ledger.Account) ([]ledger.Result, error) {
	return n.node().CreateAccounts(ctx, as)
}
func (n *nodes) CreateTransfers(ctx context.Context, xs []ledger.Transfer) ([]ledger.Result, error) {
	return n.node().CreateTransfers(ctx, xs)
}
func (n *nodes) LookupAccounts(ctx context.Context, ids []ledger.ID) ([]ledger.Account, error) {
	return n.node().LookupAccounts(ctx, ids)
}
func (n *nodes) LookupTransfer(ctx context.Context, id ledger.ID) (ledger.Transfer, error) {
	return n.node().LookupTransfer(ctx, id)
}
func (n *nodes) PendingStatus(ctx context.Context, id ledger.ID) (ledger.PendingStatus, error) {
	return n.node().PendingStatus(ctx, id)
}
func (n *nodes) SetMandate(ctx context.Context, m ledger.Mandate) error {
	return n.node().SetMandate(ctx, m)
}
func (n *nodes) Mandate(ctx context.Context, id ledger.ID) (ledger.Mandate, bool, error) {
	return n.node().Mandate(ctx, id)
}
func (n *nodes) Tick(ctx context.Context) (int, error)     { return n.node().Tick(ctx) }
func (n *nodes) CheckInvariants(ctx context.Context) error { return n.node().CheckInvariants(ctx) }

// TestLedgerConformanceAcrossNodes runs the suite with every call going to
// one of three ledgers sharing a schema.
func TestLedgerConformanceAcrossNodes(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T, now func() time.Time) ledgertest.Ledger {
		url := pgtest.Schema(t)
		n := &nodes{}
		for range 3 {
			n.ls = append(n.ls, MustOpenLedger(t, url, postgres.LedgerOptions{Now: now}))
		}
		return n
	})
}

// TestExpiryInterval checks that a ledger with an expiry interval expires
// due reservations by itself.
func TestExpiryInterval(t *testing.T) {
	clock := ledgertest.NewClock()
	l := MustOpenLedger(t, pgtest.Schema(t), postgres.LedgerOptions{Now: clock.Now, ExpiryInterval: time.Millisecond})
	treasury, bob := ledger.IDFromUint64(1), ledger.IDFromUint64(2)
	if _, err := l.CreateAccounts(t.Context(), []ledger.Account{{ID: treasury}, {ID: bob}}); err != nil {
		t.Fatal(err)
	}
	pid := ledger.IDFromUint64(10)
	res, err := l.CreateTransfers(t.Context(), []ledger.Transfer{{ID: pid, DebitAccountID: treasury, CreditAccountID: bob,
		Amount: 5, Flags: ledger.Pending, Timeout: time.Minute}})
	if err != nil || res[0] != ledger.OK {
		t.Fatalf("reserve: %v, %v", res, err)
	}
	clock.Advance(2 * time.Minute)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := l.PendingStatus(t.Context(), pid)
		if err != nil {
			t.Fatal(err)
		}
		if st == ledger.StatusExpired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reservation still %s after its timeout", st)
		}
		time.Sleep(time.Millisecond)
	}
	if err := l.CheckInvariants(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestClosedLedgerRefusesCalls(t *testing.T) {
	l, err := postgres.OpenLedger(t.Context(), pgtest.Schema(t), postgres.LedgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTransfers(t.Context(), []ledger.Transfer{{ID: ledger.IDFromUint64(1)}}); !errors.Is(err, ledger.ErrClosed) {
		t.Errorf("create transfers after close: got %v, want ErrClosed", err)
	}
	if _, err := l.LookupAccounts(t.Context(), []ledger.ID{ledger.IDFromUint64(1)}); !errors.Is(err, ledger.ErrClosed) {
		t.Errorf("lookup after close: got %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}
