package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentmarket/agentmarket/ledger"
)

// LedgerOptions configure a Ledger. The zero value is ready to use.
type LedgerOptions struct {
	// Logger receives what the ledger cannot return to a caller, such as
	// a failed background expiry. Nil discards it.
	Logger *slog.Logger
	// Now is the ledger's clock: it stamps events and decides expiry. Nil
	// means time.Now. Nodes sharing a database should run NTP; a node
	// whose clock lags still stamps every account's events in order.
	Now func() time.Time
	// ExpiryInterval, when positive, runs Tick on a timer until nothing
	// is due. Every node may run it: each due reservation is claimed by
	// one of them. Whatever the setting, a batch first expires the due
	// reservations it touches, and Tick does so on demand.
	ExpiryInterval time.Duration
	// MaxConns bounds the ledger's connection pool. Zero takes pgxpool's
	// default (the larger of 4 and the number of CPUs).
	MaxConns int

	// tracer, set by this package's tests, sees every statement and
	// pipeline, so that they can count round trips.
	tracer pgx.QueryTracer
}

// Ledger is the ledger on PostgreSQL. It implements engine.Ledger with
// the embedded ledger's semantics (ledger.Ledger) and is safe for
// concurrent use by any number of goroutines, processes and nodes.
//
// Each call runs in one READ COMMITTED transaction (concurrent
// CreateTransfers calls may share one: see submit) that locks what it
// will change before it reads it, always in one order: the pending transfers
// it resolves (by id), then every account it touches (SELECT … ORDER BY
// id FOR UPDATE). Under those locks it reads the accounts' counters, the
// transfers whose ids it uses, and the mandates and spends that bind its
// debits; applies the embedded ledger's rules to them in memory, linked
// chains and all; and writes back what changed, one statement per table,
// before it commits. Locks taken in one order cannot deadlock, a pending
// transfer changes only under its row lock and both its accounts' locks,
// so it resolves exactly once, and an id is a primary key, so a transfer
// commits at most once. A transaction that loses a race (two new
// transfers with one id on different accounts, say) is rolled back and
// run again, and then finds the winner's transfer.
//
// A batch costs a few round trips whatever its size: BEGIN and the
// pending locks; the account locks and reads; the spends, when a mandate
// has a budget; the writes and COMMIT.
//
// Timestamps increase along every account's history (each account keeps
// the last one it saw), and within a batch; two batches on disjoint
// accounts may share one.
type Ledger struct {
	log  *slog.Logger
	now  func() time.Time
	pool *pgxpool.Pool

	mu     sync.RWMutex // held for reading by calls, for writing by Close
	closed bool

	// Concurrent CreateTransfers calls share transactions: see submit.
	qmu   sync.Mutex
	queue []*call
	slots chan struct{} // one token per transaction in flight

	commits atomic.Uint64 // transactions of transfers and expiries committed
	stop    chan struct{}
	done    sync.WaitGroup
}

// OpenLedger connects to the database at url, brings the schema up to
// date, and starts the expiry timer if one is set. The schema is the
// first one of the connection's search path.
func OpenLedger(ctx context.Context, url string, opts LedgerOptions) (*Ledger, error) {
	l := &Ledger{log: opts.Logger, now: opts.Now, stop: make(chan struct{})}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	pool, schema, err := connect(ctx, url, opts.MaxConns, opts.tracer)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	if err := migrate(ctx, pool, schema, l.now); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	l.pool = pool
	l.slots = make(chan struct{}, max(2, pool.Config().MaxConns/2))
	if opts.ExpiryInterval > 0 {
		l.done.Add(1)
		go l.ticker(opts.ExpiryInterval)
	}
	return l, nil
}

// Close waits for the calls in progress, stops the expiry timer and
// closes the connections. Later calls return ledger.ErrClosed.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.stop)
	l.mu.Unlock()
	l.done.Wait()
	l.pool.Close()
	return nil
}

// enter admits a call, or refuses it once the ledger is closed; the call
// must leave with l.mu.RUnlock.
func (l *Ledger) enter() error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ledger.ErrClosed
	}
	return nil
}

func (l *Ledger) ticker(every time.Duration) {
	defer l.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-l.stop; cancel() }()
	for {
		select {
		case <-t.C:
		case <-l.stop:
			return
		}
		for {
			n, err := l.Tick(ctx)
			if err != nil {
				if !errors.Is(err, ledger.ErrClosed) && ctx.Err() == nil {
					l.log.Error("postgres: ledger expiry tick", "err", err)
				}
				break
			}
			if n < ledger.MaxBatch {
				break
			}
		}
	}
}

// retryableLedger reports whether a ledger transaction lost a race and
// may run again: besides serialization failures and deadlocks, a unique
// violation, which means another transaction committed an id this one
// was about to take.
func retryableLedger(err error) bool {
	return retryable(err) || pgCode(err) == codeUniqueViolation
}

// retry runs attempt until it succeeds, fails for good, or has lost
// maxAttempts races.
func retry(ctx context.Context, what string, attempt func() error) error {
	for n := 0; ; n++ {
		err := attempt()
		if err == nil {
			return nil
		}
		if !retryableLedger(err) || ctx.Err() != nil || n+1 >= maxAttempts {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := backoff(ctx, n); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
}

// CreateAccounts creates accounts, one result per account, as the
// embedded ledger does: an existing id with the same flags, code and user
// data gives Exists, with others ExistsWithDifferentFields.
func (l *Ledger) CreateAccounts(ctx context.Context, accounts []ledger.Account) ([]ledger.Result, error) {
	if len(accounts) > ledger.MaxBatch {
		return nil, ledger.ErrBatchTooLarge
	}
	if err := l.enter(); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	res := make([]ledger.Result, len(accounts))
	if len(accounts) == 0 {
		return res, nil
	}
	err := retry(ctx, "create accounts", func() error { return l.createAccounts(ctx, accounts, res) })
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (l *Ledger) createAccounts(ctx context.Context, as []ledger.Account, res []ledger.Result) error {
	var ids []ledger.ID
	for i := range as {
		if !as[i].ID.IsZero() {
			ids = append(ids, as[i].ID)
		}
	}
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer rollback(tx)
	known := make(map[ledger.ID]ledger.Account)
	rows, err := tx.Query(ctx, `SELECT id, user_data, code, flags FROM ledger_accounts WHERE id = ANY($1)`, ids)
	if err != nil {
		return err
	}
	for rows.Next() {
		var a ledger.Account
		var code, flags int32
		if err := rows.Scan(&a.ID, &a.UserData, &code, &flags); err != nil {
			rows.Close()
			return err
		}
		a.Code, a.Flags = uint16(code), ledger.AccountFlags(flags)
		known[a.ID] = a
	}
	if err := rows.Err(); err != nil {
		return err
	}
	now, ts := l.now().UnixNano(), int64(0)
	var created []ledger.Account
	for i := range as {
		a := &as[i]
		switch {
		case a.ID.IsZero():
			res[i] = ledger.IDMustNotBeZero
			continue
		case a.Flags&^accountFlagsKnown != 0:
			res[i] = ledger.FlagsInvalid
			continue
		case a.DebitsPending|a.DebitsPosted|a.CreditsPending|a.CreditsPosted != 0:
			res[i] = ledger.AccountCountersMustBeZero
			continue
		}
		if e, ok := known[a.ID]; ok {
			if e.Flags == a.Flags && e.Code == a.Code && e.UserData == a.UserData {
				res[i] = ledger.Exists
			} else {
				res[i] = ledger.ExistsWithDifferentFields
			}
			continue
		}
		ts = max(now, ts+1)
		n := ledger.Account{ID: a.ID, UserData: a.UserData, Code: a.Code, Flags: a.Flags, Timestamp: ts}
		known[n.ID] = n
		created = append(created, n)
		res[i] = ledger.OK
	}
	if len(created) > 0 {
		cols := struct {
			id, user  []ledger.ID
			code, flg []int32
			ts        []int64
		}{}
		for _, a := range created {
			cols.id = append(cols.id, a.ID)
			cols.user = append(cols.user, a.UserData)
			cols.code = append(cols.code, int32(a.Code))
			cols.flg = append(cols.flg, int32(a.Flags))
			cols.ts = append(cols.ts, a.Timestamp)
		}
		// A concurrent call that created one of these ids first makes the
		// insert fail with a unique violation, and this call run again.
		if _, err := tx.Exec(ctx, `INSERT INTO ledger_accounts (id, user_data, code, flags,
			debits_pending, debits_posted, credits_pending, credits_posted, created_at, last_ts)
			SELECT id, user_data, code, flags, 0, 0, 0, 0, ts, ts
			FROM unnest($1::UUID[], $2::UUID[], $3::INTEGER[], $4::INTEGER[], $5::BIGINT[]) AS u(id, user_data, code, flags, ts)`,
			cols.id, cols.user, cols.code, cols.flg, cols.ts); err != nil {
			return err
		}
	}
	return tx.Commit(context.WithoutCancel(ctx))
}

// CreateTransfers applies a batch of transfers, one result per transfer,
// and returns once the committed ones are durable, with the embedded
// ledger's semantics: linked chains commit all or nothing, and a transfer
// whose id exists with the same fields gives Exists and changes nothing,
// so retrying a batch, on this node or another, is always safe. Before
// the transfers, the batch expires the due reservations it resolves or
// whose debit accounts it debits.
func (l *Ledger) CreateTransfers(ctx context.Context, transfers []ledger.Transfer) ([]ledger.Result, error) {
	if len(transfers) > ledger.MaxBatch {
		return nil, ledger.ErrBatchTooLarge
	}
	if err := l.enter(); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	res := make([]ledger.Result, len(transfers))
	if len(transfers) == 0 {
		return res, nil
	}
	c := &call{xs: transfers, res: res, done: make(chan struct{})}
	if err := l.submit(ctx, c); err != nil {
		return nil, err
	}
	return res, nil
}

// Tick expires up to ledger.MaxBatch reservations whose timeout has
// passed on the ledger's clock, and returns how many it expired. Ticks on
// several nodes claim disjoint reservations (FOR UPDATE SKIP LOCKED), so
// each expires once.
func (l *Ledger) Tick(ctx context.Context) (int, error) {
	if err := l.enter(); err != nil {
		return 0, err
	}
	defer l.mu.RUnlock()
	var n int
	err := retry(ctx, "expire", func() error {
		var err error
		n, err = l.run(ctx, nil)
		return err
	})
	return n, err
}

// run makes one attempt at the calls' batches, one after another in one
// transaction, or at a tick when there are no calls, and returns how many
// reservations it expired.
func (l *Ledger) run(ctx context.Context, calls []*call) (int, error) {
	var xs []ledger.Transfer
	if len(calls) == 1 {
		xs = calls[0].xs
	} else if len(calls) > 1 {
		for _, c := range calls {
			xs = append(xs, c.xs...)
		}
	}
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	t := &txn{conn: conn.Conn(), b: newBatch(l.now().UnixNano())}
	defer t.end()
	if err := t.lockPending(ctx, xs); err != nil {
		return 0, err
	}
	if xs == nil && len(t.b.pending) == 0 {
		return 0, t.commit(ctx, &pgx.Batch{})
	}
	if err := t.lockAccounts(ctx, xs); err != nil {
		return 0, err
	}
	if err := t.loadSpends(ctx); err != nil {
		return 0, err
	}
	t.b.expireDue()
	for _, c := range calls {
		t.b.createTransfers(c.xs, c.res)
	}
	if err := t.commit(ctx, t.writes()); err != nil {
		return 0, err
	}
	l.commits.Add(1)
	return t.b.expired, nil
}

// LedgerStats are a Ledger's counters, for this process only.
type LedgerStats struct {
	// Commits counts the transactions that committed transfers or
	// expiries: with group commit, one may carry many calls.
	Commits uint64
}

// Stats returns the ledger's counters.
func (l *Ledger) Stats() LedgerStats { return LedgerStats{Commits: l.commits.Load()} }

// txn is one attempt's transaction, run by hand on a connection so that
// BEGIN and COMMIT ride in the same round trips as the statements next to
// them.
type txn struct {
	conn *pgx.Conn
	b    *batch
	open bool
}

// end rolls back a transaction that did not commit. A connection whose
// rollback fails is not idle, and the pool closes it on release.
func (t *txn) end() {
	if t.open {
		t.conn.Exec(context.Background(), "ROLLBACK")
	}
}

// send runs a pipeline of statements in one round trip and hands each
// query's rows to its scanner in order; Exec statements have a nil
// scanner.
func (t *txn) send(ctx context.Context, b *pgx.Batch, scans ...func(pgx.Rows) error) error {
	br := t.conn.SendBatch(ctx, b)
	for i, scan := range scans {
		if scan == nil {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return err
			}
			continue
		}
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return err
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				br.Close()
				return fmt.Errorf("statement %d: %w", i, err)
			}
		}
		if err := rows.Err(); err != nil {
			br.Close()
			return err
		}
	}
	return br.Close()
}

const pendingColumns = `id, debit_account_id, credit_account_id, amount, expires_at, status, resolved_at`

func (b *batch) scanPending(rows pgx.Rows) error {
	var (
		p      pendingRow
		amount int64
		status int16
	)
	if err := rows.Scan(&p.id, &p.debit, &p.credit, &amount, &p.expiresAt, &status, &p.resolvedAt); err != nil {
		return err
	}
	if _, ok := b.pending[p.id]; ok {
		return nil
	}
	p.amount, p.status = uint64(amount), ledger.PendingStatus(status)
	p.loadedStatus = p.status
	b.pending[p.id] = &p
	return nil
}

// lockPending begins the transaction and locks the pending transfers it
// will change: for a batch, those it resolves (waiting for them) and the
// due ones on the accounts it debits (skipping those another transaction
// holds: that one will expire them); for a tick, up to MaxBatch due ones
// that no other transaction holds.
func (t *txn) lockPending(ctx context.Context, xs []ledger.Transfer) error {
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	scans := []func(pgx.Rows) error{nil}
	t.open = true
	if xs == nil {
		b.Queue(`SELECT `+pendingColumns+` FROM ledger_pending
			WHERE status = 1 AND expires_at <> 0 AND expires_at <= $1
			ORDER BY expires_at, id LIMIT $2 FOR UPDATE SKIP LOCKED`, t.b.now, ledger.MaxBatch)
		scans = append(scans, t.b.scanPending)
		return t.send(ctx, b, scans...)
	}
	var refs, debits []ledger.ID
	for i := range xs {
		x := &xs[i]
		if x.Flags&(ledger.PostPending|ledger.VoidPending) != 0 {
			if !x.PendingID.IsZero() {
				refs = append(refs, x.PendingID)
			}
		} else if !x.DebitAccountID.IsZero() {
			debits = append(debits, x.DebitAccountID)
		}
	}
	if len(refs) > 0 {
		b.Queue(`SELECT `+pendingColumns+` FROM ledger_pending WHERE id = ANY($1) ORDER BY id FOR UPDATE`, sortedSet(refs))
		scans = append(scans, t.b.scanPending)
	}
	if len(debits) > 0 {
		b.Queue(`SELECT `+pendingColumns+` FROM ledger_pending
			WHERE debit_account_id = ANY($1) AND status = 1 AND expires_at <> 0 AND expires_at <= $2
			ORDER BY id FOR UPDATE SKIP LOCKED`, sortedSet(debits), t.b.now)
		scans = append(scans, t.b.scanPending)
	}
	return t.send(ctx, b, scans...)
}

// sortedSet sorts ids and drops duplicates, in place.
func sortedSet(ids []ledger.ID) []ledger.ID {
	slices.SortFunc(ids, compareIDs)
	return slices.Compact(ids)
}

// lockAccounts locks every account the batch may change, in id order,
// and reads them with the transfers whose ids the batch uses and the
// mandates of the accounts it may debit.
func (t *txn) lockAccounts(ctx context.Context, xs []ledger.Transfer) error {
	var accounts, xfers, debits []ledger.ID
	for i := range xs {
		x := &xs[i]
		xfers = append(xfers, x.ID)
		if x.Flags&(ledger.PostPending|ledger.VoidPending) != 0 {
			xfers = append(xfers, x.PendingID)
			continue
		}
		accounts = append(accounts, x.DebitAccountID, x.CreditAccountID)
		debits = append(debits, x.DebitAccountID)
	}
	for _, p := range t.b.pending {
		accounts = append(accounts, p.debit, p.credit)
		debits = append(debits, p.debit)
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT id, user_data, code, flags, debits_pending, debits_posted, credits_pending, credits_posted,
		created_at, last_ts FROM ledger_accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE`, sortedSet(accounts))
	scans := []func(pgx.Rows) error{t.b.scanAccount}
	if len(xfers) > 0 {
		b.Queue(`SELECT id, debit_account_id, credit_account_id, amount, requested, pending_id, user_data,
			timeout, code, flags, ts FROM ledger_transfers WHERE id = ANY($1)`, sortedSet(xfers))
		scans = append(scans, t.b.scanTransfer)
	}
	b.Queue(`SELECT account_id, max_per_transfer, budget, window_ns, counterparties, expires_at
		FROM ledger_mandates WHERE account_id = ANY($1)`, sortedSet(debits))
	scans = append(scans, t.b.scanMandate)
	if err := t.send(ctx, b, scans...); err != nil {
		return err
	}
	for _, a := range t.b.accounts {
		t.b.ts = max(t.b.ts, a.lastTS)
	}
	return nil
}

func (b *batch) scanAccount(rows pgx.Rows) error {
	var (
		a                accountRow
		code, flags      int32
		dp, dpo, cp, cpo int64
	)
	if err := rows.Scan(&a.ID, &a.UserData, &code, &flags, &dp, &dpo, &cp, &cpo, &a.Timestamp, &a.lastTS); err != nil {
		return err
	}
	a.Code, a.Flags = uint16(code), ledger.AccountFlags(flags)
	a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted = uint64(dp), uint64(dpo), uint64(cp), uint64(cpo)
	a.loaded, a.loadedTS = a.counters(), a.lastTS
	b.accounts[a.ID] = &a
	return nil
}

func (b *batch) scanTransfer(rows pgx.Rows) error {
	x, err := scanTransfer(rows)
	if err != nil {
		return err
	}
	b.transfers[x.ID] = x
	return nil
}

func scanTransfer(rows pgx.Row) (*transferRow, error) {
	var (
		x                 transferRow
		amount, requested int64
		timeout           int64
		code, flags       int32
	)
	if err := rows.Scan(&x.ID, &x.DebitAccountID, &x.CreditAccountID, &amount, &requested, &x.PendingID, &x.UserData,
		&timeout, &code, &flags, &x.Timestamp); err != nil {
		return nil, err
	}
	x.Amount, x.requested = uint64(amount), uint64(requested)
	x.Timeout, x.Code, x.Flags = time.Duration(timeout), uint16(code), ledger.TransferFlags(flags)
	return &x, nil
}

func (b *batch) scanMandate(rows pgx.Rows) error {
	m, err := scanMandate(rows)
	if err != nil {
		return err
	}
	b.mandates[m.AccountID] = newMandateRow(m)
	return nil
}

func scanMandate(rows pgx.Row) (ledger.Mandate, error) {
	var (
		m                      ledger.Mandate
		maxPer, budget, window int64
		expires                int64
	)
	if err := rows.Scan(&m.AccountID, &maxPer, &budget, &window, &m.Counterparties, &expires); err != nil {
		return m, err
	}
	m.MaxPerTransfer, m.Budget, m.Window = uint64(maxPer), uint64(budget), time.Duration(window)
	if len(m.Counterparties) == 0 {
		m.Counterparties = nil
	}
	if expires != 0 {
		m.ExpiresAt = time.Unix(0, expires).UTC()
	}
	return m, nil
}

// windowStart is the timestamp at or before which an account's spends
// can no longer count against a budget with the window: every event the
// batch stamps on the account comes after its last one.
func windowStart(lastTS int64, window time.Duration) int64 {
	if lastTS < 0 && int64(window) > lastTS-minInt64 {
		return minInt64
	}
	return lastTS - int64(window)
}

const minInt64 = -1 << 63

// loadSpends reads the spends the batch may count or release: those still
// inside each budget's window, and those of the reservations it holds.
func (t *txn) loadSpends(ctx context.Context) error {
	var accounts []ledger.ID
	var after []int64
	for id, ms := range t.b.mandates {
		if a, ok := t.b.accounts[id]; ok && ms.Budget > 0 {
			accounts = append(accounts, id)
			after = append(after, windowStart(a.loadedTS, ms.Window))
		}
	}
	var reserved []ledger.ID
	for id, p := range t.b.pending {
		if p.status == ledger.StatusPending {
			reserved = append(reserved, id)
		}
	}
	if len(accounts) == 0 && len(reserved) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT s.transfer_id, s.account_id, s.ts, s.amount
		FROM unnest($1::UUID[], $2::BIGINT[]) AS w(account_id, after)
		JOIN ledger_spends s ON s.account_id = w.account_id AND s.ts > w.after
		UNION
		SELECT transfer_id, account_id, ts, amount FROM ledger_spends WHERE transfer_id = ANY($3)`,
		accounts, after, reserved)
	return t.send(ctx, b, func(rows pgx.Rows) error {
		var sp spendRow
		var amount int64
		if err := rows.Scan(&sp.id, &sp.account, &sp.ts, &amount); err != nil {
			return err
		}
		sp.amount, sp.loadedAmount = uint64(amount), uint64(amount)
		t.b.spends[sp.id] = &sp
		if ms, ok := t.b.mandates[sp.account]; ok {
			ms.spends = append(ms.spends, &sp)
		}
		return nil
	})
}

// writes queues the statements that store what the batch changed, one
// per table and kind of change.
func (t *txn) writes() *pgx.Batch {
	b := t.b
	out := &pgx.Batch{}
	var acc struct {
		id                   []ledger.ID
		dp, dpo, cp, cpo, ts []int64
	}
	for _, a := range b.accounts {
		if !a.changed() {
			continue
		}
		acc.id = append(acc.id, a.ID)
		acc.dp = append(acc.dp, int64(a.DebitsPending))
		acc.dpo = append(acc.dpo, int64(a.DebitsPosted))
		acc.cp = append(acc.cp, int64(a.CreditsPending))
		acc.cpo = append(acc.cpo, int64(a.CreditsPosted))
		acc.ts = append(acc.ts, a.lastTS)
	}
	if len(acc.id) > 0 {
		out.Queue(`UPDATE ledger_accounts AS a SET debits_pending = u.dp, debits_posted = u.dpo,
			credits_pending = u.cp, credits_posted = u.cpo, last_ts = u.ts
			FROM unnest($1::UUID[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::BIGINT[])
				AS u(id, dp, dpo, cp, cpo, ts)
			WHERE a.id = u.id`, acc.id, acc.dp, acc.dpo, acc.cp, acc.cpo, acc.ts)
	}
	if n := len(b.made); n > 0 {
		var (
			id, debit, credit, pid, user   = make([]ledger.ID, n), make([]ledger.ID, n), make([]ledger.ID, n), make([]ledger.ID, n), make([]ledger.ID, n)
			amount, requested, timeout, ts = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
			code, flags                    = make([]int32, n), make([]int32, n)
		)
		for i, x := range b.made {
			id[i], debit[i], credit[i], pid[i], user[i] = x.ID, x.DebitAccountID, x.CreditAccountID, x.PendingID, x.UserData
			amount[i], requested[i], timeout[i], ts[i] = int64(x.Amount), int64(x.requested), int64(x.Timeout), x.Timestamp
			code[i], flags[i] = int32(x.Code), int32(x.Flags)
		}
		out.Queue(`INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount, requested,
			pending_id, user_data, timeout, code, flags, ts)
			SELECT * FROM unnest($1::UUID[], $2::UUID[], $3::UUID[], $4::BIGINT[], $5::BIGINT[], $6::UUID[], $7::UUID[],
				$8::BIGINT[], $9::INTEGER[], $10::INTEGER[], $11::BIGINT[])`,
			id, debit, credit, amount, requested, pid, user, timeout, code, flags, ts)
	}
	var made, changed struct {
		id, debit, credit   []ledger.ID
		amount, expires, at []int64
		status              []int16
	}
	for _, p := range b.pending {
		switch {
		case p.loadedStatus == ledger.StatusNone:
			made.id = append(made.id, p.id)
			made.debit = append(made.debit, p.debit)
			made.credit = append(made.credit, p.credit)
			made.amount = append(made.amount, int64(p.amount))
			made.expires = append(made.expires, p.expiresAt)
			made.status = append(made.status, int16(p.status))
			made.at = append(made.at, p.resolvedAt)
		case p.status != p.loadedStatus:
			changed.id = append(changed.id, p.id)
			changed.status = append(changed.status, int16(p.status))
			changed.at = append(changed.at, p.resolvedAt)
		}
	}
	if len(made.id) > 0 {
		out.Queue(`INSERT INTO ledger_pending (`+pendingColumns+`)
			SELECT * FROM unnest($1::UUID[], $2::UUID[], $3::UUID[], $4::BIGINT[], $5::BIGINT[], $6::SMALLINT[], $7::BIGINT[])`,
			made.id, made.debit, made.credit, made.amount, made.expires, made.status, made.at)
	}
	if len(changed.id) > 0 {
		out.Queue(`UPDATE ledger_pending AS p SET status = u.status, resolved_at = u.at
			FROM unnest($1::UUID[], $2::SMALLINT[], $3::BIGINT[]) AS u(id, status, at) WHERE p.id = u.id`,
			changed.id, changed.status, changed.at)
	}
	var cut struct {
		account []ledger.ID
		before  []int64
	}
	for id, ms := range b.mandates {
		if a, ok := b.accounts[id]; ok && ms.Budget > 0 {
			cut.account = append(cut.account, id)
			cut.before = append(cut.before, windowStart(a.loadedTS, ms.Window))
		}
	}
	if len(cut.account) > 0 {
		// Spends that left the window before this batch began can never
		// count again: forget them.
		out.Queue(`DELETE FROM ledger_spends AS s USING unnest($1::UUID[], $2::BIGINT[]) AS c(account_id, before)
			WHERE s.account_id = c.account_id AND s.ts <= c.before`, cut.account, cut.before)
	}
	var newSpends, adjusted struct {
		id, account []ledger.ID
		ts, amount  []int64
	}
	for _, sp := range b.spends {
		switch {
		case sp.made:
			newSpends.id = append(newSpends.id, sp.id)
			newSpends.account = append(newSpends.account, sp.account)
			newSpends.ts = append(newSpends.ts, sp.ts)
			newSpends.amount = append(newSpends.amount, int64(sp.amount))
		case sp.amount != sp.loadedAmount:
			adjusted.id = append(adjusted.id, sp.id)
			adjusted.amount = append(adjusted.amount, int64(sp.amount))
		}
	}
	if len(newSpends.id) > 0 {
		out.Queue(`INSERT INTO ledger_spends (transfer_id, account_id, ts, amount)
			SELECT * FROM unnest($1::UUID[], $2::UUID[], $3::BIGINT[], $4::BIGINT[])`,
			newSpends.id, newSpends.account, newSpends.ts, newSpends.amount)
	}
	if len(adjusted.id) > 0 {
		out.Queue(`UPDATE ledger_spends AS s SET amount = u.amount
			FROM unnest($1::UUID[], $2::BIGINT[]) AS u(id, amount) WHERE s.transfer_id = u.id`,
			adjusted.id, adjusted.amount)
	}
	return out
}

// commit sends the batch's writes and COMMIT in one round trip. Once it
// is sent, its outcome is read whatever ctx does.
func (t *txn) commit(ctx context.Context, b *pgx.Batch) error {
	b.Queue("COMMIT")
	scans := make([]func(pgx.Rows) error, b.Len())
	if err := t.send(context.WithoutCancel(ctx), b, scans...); err != nil {
		return err
	}
	t.open = false
	return nil
}
