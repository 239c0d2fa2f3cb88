package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentmarket/agentmarket/ledger"
)

// LookupAccounts returns the accounts that exist among ids, in order.
func (l *Ledger) LookupAccounts(ctx context.Context, ids []ledger.ID) ([]ledger.Account, error) {
	if len(ids) > ledger.MaxBatch {
		return nil, ledger.ErrBatchTooLarge
	}
	if err := l.enter(); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := l.pool.Query(ctx, `SELECT id, user_data, code, flags, debits_pending, debits_posted,
		credits_pending, credits_posted, created_at, last_ts FROM ledger_accounts WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("look up accounts: %w", err)
	}
	b := newBatch(0)
	for rows.Next() {
		if err := b.scanAccount(rows); err != nil {
			rows.Close()
			return nil, fmt.Errorf("look up accounts: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up accounts: %w", err)
	}
	var out []ledger.Account
	for _, id := range ids {
		if a, ok := b.accounts[id]; ok {
			out = append(out, a.Account)
		}
	}
	return out, nil
}

// LookupTransfer returns the committed transfer with id, or
// ledger.ErrNotFound. A post's Amount is what it posted, and its accounts
// are the pending transfer's.
func (l *Ledger) LookupTransfer(ctx context.Context, id ledger.ID) (ledger.Transfer, error) {
	if err := l.enter(); err != nil {
		return ledger.Transfer{}, err
	}
	defer l.mu.RUnlock()
	x, err := scanTransfer(l.pool.QueryRow(ctx, `SELECT id, debit_account_id, credit_account_id, amount, requested,
		pending_id, user_data, timeout, code, flags, ts FROM ledger_transfers WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.Transfer{}, ledger.ErrNotFound
	}
	if err != nil {
		return ledger.Transfer{}, fmt.Errorf("look up transfer %s: %w", id, err)
	}
	return x.Transfer, nil
}

// PendingStatus returns the state of a pending transfer: StatusNone when
// id is no pending transfer, else pending, posted, voided or expired. A
// reservation past its timeout reads as pending until a batch or a Tick
// expires it.
func (l *Ledger) PendingStatus(ctx context.Context, id ledger.ID) (ledger.PendingStatus, error) {
	if err := l.enter(); err != nil {
		return ledger.StatusNone, err
	}
	defer l.mu.RUnlock()
	var status int16
	err := l.pool.QueryRow(ctx, `SELECT status FROM ledger_pending WHERE id = $1`, id).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.StatusNone, nil
	}
	if err != nil {
		return ledger.StatusNone, fmt.Errorf("look up pending transfer %s: %w", id, err)
	}
	return ledger.PendingStatus(status), nil
}

// Mandate returns the account's mandate, and false when it has none.
func (l *Ledger) Mandate(ctx context.Context, account ledger.ID) (ledger.Mandate, bool, error) {
	if err := l.enter(); err != nil {
		return ledger.Mandate{}, false, err
	}
	defer l.mu.RUnlock()
	m, err := scanMandate(l.pool.QueryRow(ctx, `SELECT account_id, max_per_transfer, budget, window_ns, counterparties,
		expires_at FROM ledger_mandates WHERE account_id = $1`, account))
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.Mandate{}, false, nil
	}
	if err != nil {
		return ledger.Mandate{}, false, fmt.Errorf("look up mandate of %s: %w", account, err)
	}
	return m, true, nil
}

// SetMandate sets or replaces the mandate on an account; a mandate with
// no limits removes it. Only the account's owner or the market operator
// may call it. It returns ledger.ErrNotFound for an unknown account and
// ledger.ErrInvalid for a malformed mandate. As in the embedded ledger,
// replacing a mandate keeps the spends that were still inside the old
// budget's window when it was replaced.
func (l *Ledger) SetMandate(ctx context.Context, m ledger.Mandate) error {
	m.Counterparties = slices.Clone(m.Counterparties)
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ledger.ErrInvalid, err)
	}
	if err := l.enter(); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	return retry(ctx, "set mandate", func() error { return l.setMandate(ctx, m) })
}

func (l *Ledger) setMandate(ctx context.Context, m ledger.Mandate) error {
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer rollback(tx)
	var last int64
	err = tx.QueryRow(ctx, `SELECT last_ts FROM ledger_accounts WHERE id = $1 FOR UPDATE`, m.AccountID).Scan(&last)
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.ErrNotFound
	}
	if err != nil {
		return err
	}
	ts := max(l.now().UnixNano(), last+1)
	var budget, window int64
	err = tx.QueryRow(ctx, `SELECT budget, window_ns FROM ledger_mandates WHERE account_id = $1`, m.AccountID).Scan(&budget, &window)
	hadMandate := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	b := &pgx.Batch{}
	if m.MaxPerTransfer == 0 && m.Budget == 0 && len(m.Counterparties) == 0 && m.ExpiresAt.IsZero() {
		b.Queue(`DELETE FROM ledger_mandates WHERE account_id = $1`, m.AccountID)
		b.Queue(`DELETE FROM ledger_spends WHERE account_id = $1`, m.AccountID)
	} else {
		if hadMandate && budget != 0 {
			// Spends that left the old window by now stay gone, however
			// wide the new one, as in the embedded ledger.
			b.Queue(`DELETE FROM ledger_spends WHERE account_id = $1 AND ts <= $2`,
				m.AccountID, windowStart(ts, time.Duration(window)))
		}
		var expires int64
		if !m.ExpiresAt.IsZero() {
			expires = m.ExpiresAt.UnixNano()
		}
		parties := m.Counterparties
		if parties == nil {
			parties = []ledger.ID{}
		}
		b.Queue(`INSERT INTO ledger_mandates (account_id, max_per_transfer, budget, window_ns, counterparties, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (account_id) DO UPDATE SET max_per_transfer = excluded.max_per_transfer,
			budget = excluded.budget, window_ns = excluded.window_ns, counterparties = excluded.counterparties,
			expires_at = excluded.expires_at`,
			m.AccountID, int64(m.MaxPerTransfer), int64(m.Budget), int64(m.Window), parties, expires)
	}
	b.Queue(`UPDATE ledger_accounts SET last_ts = $2 WHERE id = $1`, m.AccountID, ts)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	return tx.Commit(context.WithoutCancel(ctx))
}

// CheckInvariants verifies, on one snapshot, that credits are conserved,
// that no wallet is below zero, and that every account's pending counters
// match its open pending transfers. It returns an error describing the
// first breach.
func (l *Ledger) CheckInvariants(ctx context.Context) error {
	_, err := l.Verify(ctx)
	return err
}

// VerifyReport is what Verify counted, on the snapshot it checked.
type VerifyReport struct {
	Accounts  int64 `json:"accounts"`
	Transfers int64 `json:"transfers"`
	Pending   int64 `json:"pending_open"`
}

// Verify checks the invariants as CheckInvariants does and counts the
// accounts, transfers and open pending transfers on the same snapshot.
// There is no hash chain to check here: the database is the record, and
// its own durability is PostgreSQL's.
func (l *Ledger) Verify(ctx context.Context) (VerifyReport, error) {
	var rep VerifyReport
	if err := l.enter(); err != nil {
		return rep, err
	}
	defer l.mu.RUnlock()
	tx, err := l.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return rep, fmt.Errorf("check invariants: %w", err)
	}
	defer rollback(tx)
	if err := tx.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM ledger_accounts), (SELECT COUNT(*) FROM ledger_transfers),
		(SELECT COUNT(*) FROM ledger_pending WHERE status = 1)`).Scan(&rep.Accounts, &rep.Transfers, &rep.Pending); err != nil {
		return rep, fmt.Errorf("check invariants: count: %w", err)
	}
	return rep, checkInvariants(ctx, tx)
}

// checkInvariants is CheckInvariants on the snapshot tx reads.
func checkInvariants(ctx context.Context, tx pgx.Tx) error {
	var dp, dpo, cp, cpo string
	if err := tx.QueryRow(ctx, `SELECT COALESCE(SUM(debits_pending::NUMERIC), 0)::TEXT, COALESCE(SUM(debits_posted::NUMERIC), 0)::TEXT,
		COALESCE(SUM(credits_pending::NUMERIC), 0)::TEXT, COALESCE(SUM(credits_posted::NUMERIC), 0)::TEXT
		FROM ledger_accounts`).Scan(&dp, &dpo, &cp, &cpo); err != nil {
		return fmt.Errorf("check invariants: sum counters: %w", err)
	}
	if dpo != cpo {
		return fmt.Errorf("credits not conserved: posted debits %s != posted credits %s", dpo, cpo)
	}
	if dp != cp {
		return fmt.Errorf("credits not conserved: pending debits %s != pending credits %s", dp, cp)
	}
	var (
		id         ledger.ID
		a, b, c, e string
	)
	err := tx.QueryRow(ctx, `SELECT id, debits_pending::TEXT, debits_posted::TEXT, credits_posted::TEXT
		FROM ledger_accounts WHERE flags & $1 <> 0 AND debits_pending::NUMERIC + debits_posted > credits_posted LIMIT 1`,
		int32(ledger.DebitsMustNotExceedCredits)).Scan(&id, &a, &b, &c)
	if err == nil {
		return fmt.Errorf("wallet %s is below zero: debits %s pending + %s posted exceed credits %s", id, a, b, c)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("check invariants: wallets: %w", err)
	}
	err = tx.QueryRow(ctx, `SELECT a.id, a.debits_pending::TEXT, a.credits_pending::TEXT,
			COALESCE(d.total, 0)::TEXT, COALESCE(c.total, 0)::TEXT
		FROM ledger_accounts a
		LEFT JOIN (SELECT debit_account_id AS id, SUM(amount) AS total FROM ledger_pending WHERE status = 1 GROUP BY 1) d
			ON d.id = a.id
		LEFT JOIN (SELECT credit_account_id AS id, SUM(amount) AS total FROM ledger_pending WHERE status = 1 GROUP BY 1) c
			ON c.id = a.id
		WHERE a.debits_pending <> COALESCE(d.total, 0) OR a.credits_pending <> COALESCE(c.total, 0)
		LIMIT 1`).Scan(&id, &a, &b, &c, &e)
	if err == nil {
		return fmt.Errorf("account %s pending counters %s/%s do not match its open pending transfers %s/%s",
			id, a, b, c, e)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("check invariants: pending counters: %w", err)
	}
	return nil
}
