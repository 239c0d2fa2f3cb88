package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/postgres"
)

// pgLedgerTarget is system D: agentmarket's ledger on PostgreSQL
// (postgres.Ledger), in a schema made for the run and dropped after it.
// Every call returns once the transaction holding it has committed (and
// so fsynced); concurrent calls share transactions.
type pgLedgerTarget struct {
	l       *postgres.Ledger
	admin   *pgx.Conn
	schema  string
	wallets int
	setup   int64 // transfers committed by the setup: the funding
	expired int64
	bufs    [][]ledger.Transfer

	mu       sync.Mutex
	rejected rejections
}

func openPgLedgerTarget(ctx context.Context, dbURL string, wallets, workers int, clk *clock) (*pgLedgerTarget, error) {
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	var suffix [6]byte
	rand.Read(suffix[:])
	t := &pgLedgerTarget{admin: admin, schema: "agentmarket_bench_" + hex.EncodeToString(suffix[:]), wallets: wallets,
		bufs: make([][]ledger.Transfer, workers), rejected: rejections{}}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+t.schema); err != nil {
		admin.Close(ctx)
		return nil, fmt.Errorf("create schema: %w", err)
	}
	u, err := withSearchPath(dbURL, t.schema)
	if err == nil {
		t.l, err = postgres.OpenLedger(ctx, u, postgres.LedgerOptions{Now: clk.Now, MaxConns: max(4, workers)})
	}
	if err == nil {
		err = t.fund(ctx)
	}
	if err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// withSearchPath returns the URL with its connections' search path set to
// schema.
func withSearchPath(dbURL, schema string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", fmt.Errorf("parse postgres url: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// fund creates the treasury and the wallets, and issues walletFunding to
// each wallet from the treasury, as system A's setup does.
func (t *pgLedgerTarget) fund(ctx context.Context) error {
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
		t.setup += int64(len(xs))
		xs = xs[:0]
		return nil
	}
	for n := 1; n <= t.wallets; n++ {
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

func (t *pgLedgerTarget) apply(ctx context.Context, worker int, ops []Op, out []outcome) error {
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

// syncs counts the ledger's commits, one fsync each, for the report's
// transfers per fsync: concurrent callers share them (group commit).
func (t *pgLedgerTarget) syncs() uint64 { return t.l.Stats().Commits }

func (t *pgLedgerTarget) expireDue(ctx context.Context) (int, error) {
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
// independently: it looks up every account and sums the balances, and
// counts the rows the run left: exactly the transfers acknowledged and
// the reservations expired.
func (t *pgLedgerTarget) check(ctx context.Context, acknowledged int64) error {
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
	var transfers, expired int64
	if err := t.admin.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM `+t.schema+`.ledger_transfers),
		(SELECT COUNT(*) FROM `+t.schema+`.ledger_pending WHERE status = $1)`, int16(ledger.StatusExpired)).
		Scan(&transfers, &expired); err != nil {
		return fmt.Errorf("count transfers: %w", err)
	}
	if want := t.setup + acknowledged; transfers != want {
		return fmt.Errorf("the ledger holds %d transfers, want %d (setup %d + acknowledged %d)",
			transfers, want, t.setup, acknowledged)
	}
	if expired != t.expired {
		return fmt.Errorf("the ledger holds %d expired reservations, want %d", expired, t.expired)
	}
	return nil
}

// close closes the ledger and drops the run's schema.
func (t *pgLedgerTarget) close() error {
	var err error
	if t.l != nil {
		err = t.l.Close()
	}
	ctx := context.Background()
	if _, dropErr := t.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+t.schema+" CASCADE"); err == nil && dropErr != nil {
		err = fmt.Errorf("drop schema %s: %w", t.schema, dropErr)
	}
	if cerr := t.admin.Close(ctx); err == nil {
		err = cerr
	}
	return err
}
