package bench

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/agentmarket/agentmarket/ledger"
)

// ledgerTarget is system A: the embedded ledger, durable, on a fresh data
// directory. Every acknowledged batch is fsynced to the journal; the SQLite
// projection lags behind on purpose and is not part of what is timed.
type ledgerTarget struct {
	l        *ledger.Ledger
	dir      string
	wallets  int
	setup    uint64 // events committed by the setup: accounts and funding
	expired  int64
	bufs     [][]ledger.Transfer // one per worker, reused between calls
	mu       sync.Mutex
	rejected rejections
}

// accountID is account n's id; the same bytes key the naive baselines' rows.
func accountID(n uint32) ledger.ID { return ledger.IDFromUint64(uint64(n) + 1) }

// transferID is transfer n's id.
func transferID(n uint64) ledger.ID { return ledger.IDFromUint64(n) }

func openLedgerTarget(ctx context.Context, dir string, wallets, workers int, clk *clock) (*ledgerTarget, error) {
	l, err := ledger.Open(dir, ledger.Options{Now: clk.Now})
	if err != nil {
		return nil, err
	}
	t := &ledgerTarget{l: l, dir: dir, wallets: wallets, bufs: make([][]ledger.Transfer, workers), rejected: rejections{}}
	if err := t.fund(ctx); err != nil {
		t.close()
		return nil, err
	}
	t.setup = l.Stats().Events
	// Let the projection take in the setup before the clock starts, as it
	// would have in a ledger that has been running: a query waits for it.
	if _, err := l.AccountTransfers(ctx, accountID(treasury), ledger.TransferPage{Limit: 1}); err != nil {
		t.close()
		return nil, fmt.Errorf("wait for the projection: %w", err)
	}
	return t, nil
}

// fund creates the treasury and the wallets, and issues walletFunding to
// each wallet from the treasury.
func (t *ledgerTarget) fund(ctx context.Context) error {
	accounts := make([]ledger.Account, 0, ledger.MaxBatch)
	flush := func() error {
		res, err := t.l.CreateAccounts(ctx, accounts)
		if err != nil {
			return fmt.Errorf("create accounts: %w", err)
		}
		for i, r := range res {
			if r != ledger.OK {
				return fmt.Errorf("create account %s: %s", accounts[i].ID, r)
			}
		}
		accounts = accounts[:0]
		return nil
	}
	for n := 0; n <= t.wallets; n++ {
		a := ledger.Account{ID: accountID(uint32(n))}
		if n != treasury {
			a.Flags = ledger.DebitsMustNotExceedCredits
		}
		if accounts = append(accounts, a); len(accounts) == ledger.MaxBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	xs := make([]ledger.Transfer, 0, ledger.MaxBatch)
	send := func() error {
		res, err := t.l.CreateTransfers(ctx, xs)
		if err != nil {
			return fmt.Errorf("fund wallets: %w", err)
		}
		for i, r := range res {
			if r != ledger.OK {
				return fmt.Errorf("fund wallet %s: %s", xs[i].CreditAccountID, r)
			}
		}
		xs = xs[:0]
		return nil
	}
	for n := 1; n <= t.wallets; n++ {
		// Funding ids live below every worker's range (see streamGen).
		xs = append(xs, ledger.Transfer{ID: transferID(1<<62 | uint64(n)), DebitAccountID: accountID(treasury),
			CreditAccountID: accountID(uint32(n)), Amount: walletFunding})
		if len(xs) == ledger.MaxBatch {
			if err := send(); err != nil {
				return err
			}
		}
	}
	return send()
}

// toTransfer maps an op to the ledger's request. Posts and voids name only
// the pending transfer, as a client would.
func (op *Op) toTransfer() ledger.Transfer {
	x := ledger.Transfer{ID: transferID(op.ID)}
	switch op.Kind {
	case Plain:
		x.DebitAccountID, x.CreditAccountID, x.Amount = accountID(op.Debit), accountID(op.Credit), op.Amount
	case Reserve:
		x.DebitAccountID, x.CreditAccountID, x.Amount = accountID(op.Debit), accountID(op.Credit), op.Amount
		x.Flags, x.Timeout = ledger.Pending, op.Timeout
	case Post:
		x.PendingID, x.Amount, x.Flags = transferID(op.Pending), op.Amount, ledger.PostPending
	case Void:
		x.PendingID, x.Flags = transferID(op.Pending), ledger.VoidPending
	}
	return x
}

func (t *ledgerTarget) apply(ctx context.Context, worker int, ops []Op, out []outcome) error {
	xs := t.bufs[worker][:0]
	for i := range ops {
		xs = append(xs, ops[i].toTransfer())
	}
	t.bufs[worker] = xs
	res, err := t.l.CreateTransfers(ctx, xs)
	if err != nil {
		return err
	}
	for i, r := range res {
		switch r {
		case ledger.OK:
			out[i] = applied
		case ledger.Exists:
			out[i] = exists
		default:
			out[i] = rejected
			t.mu.Lock()
			t.rejected[r.String()]++
			t.mu.Unlock()
		}
	}
	return nil
}

func (t *ledgerTarget) expireDue(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := t.l.Tick(ctx)
		if err != nil {
			return total, err
		}
		if n == 0 {
			t.expired += int64(total)
			return total, nil
		}
		total += n
	}
}

// check verifies the run with the ledger's own invariant check, then
// independently: it looks up every account, sums the balances, and checks
// that the engine committed exactly the events it acknowledged.
func (t *ledgerTarget) check(ctx context.Context, acknowledged int64) error {
	if len(t.rejected) > 0 {
		return fmt.Errorf("unexpected rejections: %s", t.rejected)
	}
	if err := t.l.CheckInvariants(ctx); err != nil {
		return err
	}
	var posted, pending int64
	var found, open int
	ids := make([]ledger.ID, 0, ledger.MaxBatch)
	lookup := func() error {
		as, err := t.l.LookupAccounts(ctx, ids)
		if err != nil {
			return err
		}
		for _, a := range as {
			b := a.Balance()
			posted += b.Posted
			pending += b.Pending
			if a.DebitsPending != 0 {
				open++
			}
			if a.Flags&ledger.DebitsMustNotExceedCredits != 0 && b.Available < 0 {
				return fmt.Errorf("wallet %s is below zero: available %d", a.ID, b.Available)
			}
		}
		found += len(as)
		ids = ids[:0]
		return nil
	}
	for n := 0; n <= t.wallets; n++ {
		if ids = append(ids, accountID(uint32(n))); len(ids) == ledger.MaxBatch {
			if err := lookup(); err != nil {
				return err
			}
		}
	}
	if err := lookup(); err != nil {
		return err
	}
	switch {
	case found != t.wallets+1:
		return fmt.Errorf("found %d accounts, want %d", found, t.wallets+1)
	case posted != 0 || pending != 0:
		return fmt.Errorf("balances sum to %d posted, %d pending; want 0", posted, pending)
	case open != 0:
		return fmt.Errorf("%d accounts still hold reservations", open)
	}
	if got, want := t.l.Stats().Events, t.setup+uint64(acknowledged)+uint64(t.expired); got != want {
		return fmt.Errorf("ledger committed %d events, want %d (setup %d + acknowledged %d + expired %d)",
			got, want, t.setup, acknowledged, t.expired)
	}
	return nil
}

// syncs returns the journal fsyncs so far.
func (t *ledgerTarget) syncs() uint64 { return t.l.Stats().Syncs }

func (t *ledgerTarget) close() error {
	err := t.l.Close()
	if rmErr := os.RemoveAll(t.dir); err == nil {
		err = rmErr
	}
	return err
}
