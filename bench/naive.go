package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// The naive baseline is the ledger a user would write on a SQL database:
// an accounts table with a balance (and a held amount for reservations), a
// transfers table keyed by the transfer's id, and one transaction per
// transfer that updates the debit row with a balance check, updates the
// credit row and inserts the transfer. A resubmitted id fails the insert's
// primary key, and the transfer is then looked up and compared, which is
// how such code answers "exists". The same code runs on SQLite (system B)
// and PostgreSQL (system C); only the driver and the placeholders differ.
//
// It is not a straw man: statements are prepared once and reused, rows are
// locked in account order so that concurrent clients do not deadlock, and
// the expiry sweep uses a partial index on open reservations.

// Transfer kinds and statuses in the naive schema.
const (
	naivePlain   = 0
	naiveReserve = 1
	naivePost    = 2
	naiveVoid    = 3

	statusNone    = 0
	statusPending = 1
	statusPosted  = 2
	statusVoided  = 3
	statusExpired = 4
)

// errNoRow is what a naive adapter's scan returns when a query matched no
// row, whatever its driver calls it.
var errNoRow = errors.New("no row")

// rowScanner reads one row.
type rowScanner interface {
	Scan(dest ...any) error
}

// sqlRunner runs statements, in a transaction or outside one.
type sqlRunner interface {
	exec(ctx context.Context, query string, args ...any) (int64, error)
	queryRow(ctx context.Context, query string, args ...any) rowScanner
}

// sqlTx is one transaction of a naive baseline.
type sqlTx interface {
	sqlRunner
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
}

// sqlDB is a naive baseline's database: one adapter per driver.
type sqlDB interface {
	sqlRunner
	begin(ctx context.Context) (sqlTx, error)
	// queryIDs returns the first column of every row, as bytes.
	queryIDs(ctx context.Context, query string, args ...any) ([][]byte, error)
	// uniqueViolation reports whether err is a duplicate primary key.
	uniqueViolation(err error) bool
	// retryable reports whether err is a deadlock or serialization failure,
	// after which the transaction may simply be run again.
	retryable(err error) bool
	close() error
}

// dialect is what differs in the SQL text between databases.
type dialect struct {
	blob     string // the column type of a 16-byte id
	numbered bool   // placeholders are $1, $2, ... rather than ?
}

// bind rewrites ? placeholders as $n when the dialect numbers them.
func (d dialect) bind(q string) string {
	if !d.numbered {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// naiveSQL holds the naive baseline's statements, bound for one dialect.
type naiveSQL struct {
	schema                                       []string
	debit, hold, credit, insert                  string
	resolve, settle, pay, lookup                 string
	openDue, expire, release                     string
	sumAccounts, negativeWallets, transferTotals string
	insertAccounts                               func(rows int) string
}

func newNaiveSQL(d dialect) *naiveSQL {
	q := d.bind
	return &naiveSQL{
		schema: []string{
			`CREATE TABLE accounts (
				id      ` + d.blob + ` PRIMARY KEY,
				wallet  INTEGER NOT NULL,
				balance BIGINT NOT NULL,
				held    BIGINT NOT NULL DEFAULT 0
			)`,
			`CREATE TABLE transfers (
				id         ` + d.blob + ` PRIMARY KEY,
				debit_id   ` + d.blob + ` NOT NULL,
				credit_id  ` + d.blob + ` NOT NULL,
				amount     BIGINT NOT NULL,
				kind       INTEGER NOT NULL,
				pending_id ` + d.blob + `,
				status     INTEGER NOT NULL,
				expires_at BIGINT NOT NULL
			)`,
			`CREATE INDEX transfers_open ON transfers (expires_at) WHERE status = 1`,
		},
		debit:  q(`UPDATE accounts SET balance = balance - ? WHERE id = ? AND (wallet = 0 OR balance >= ?)`),
		hold:   q(`UPDATE accounts SET balance = balance - ?, held = held + ? WHERE id = ? AND (wallet = 0 OR balance >= ?)`),
		credit: q(`UPDATE accounts SET balance = balance + ? WHERE id = ?`),
		insert: q(`INSERT INTO transfers (id, debit_id, credit_id, amount, kind, pending_id, status, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		resolve: q(`UPDATE transfers SET status = ? WHERE id = ? AND status = 1 AND expires_at > ?
			RETURNING debit_id, credit_id, amount`),
		settle:  q(`UPDATE accounts SET held = held - ?, balance = balance + ? WHERE id = ?`),
		pay:     q(`UPDATE accounts SET balance = balance + ? WHERE id = ?`),
		lookup:  q(`SELECT debit_id, credit_id, amount, kind, pending_id FROM transfers WHERE id = ?`),
		openDue: q(`SELECT id FROM transfers WHERE status = 1 AND expires_at <= ?`),
		expire: q(`UPDATE transfers SET status = 4 WHERE id = ? AND status = 1 AND expires_at <= ?
			RETURNING debit_id, amount`),
		release: q(`UPDATE accounts SET held = held - ?, balance = balance + ? WHERE id = ?`),
		sumAccounts: `SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT), CAST(COALESCE(SUM(held), 0) AS BIGINT), COUNT(*)
			FROM accounts`,
		negativeWallets: `SELECT COUNT(*) FROM accounts WHERE wallet = 1 AND (balance < 0 OR held < 0)`,
		transferTotals: `SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN status = 1 THEN amount ELSE 0 END), 0) AS BIGINT)
			FROM transfers`,
		insertAccounts: func(rows int) string {
			var b strings.Builder
			b.WriteString("INSERT INTO accounts (id, wallet, balance) VALUES ")
			for i := range rows {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString("(?, ?, ?)")
			}
			return q(b.String())
		},
	}
}

// naiveTarget is a naive baseline set up for one run.
type naiveTarget struct {
	db      sqlDB
	sql     *naiveSQL
	clk     *clock
	wallets int
	workers int

	mu       sync.Mutex
	rejected rejections
}

func idBytes(n uint32) []byte   { id := accountID(n); return id[:] }
func xferBytes(n uint64) []byte { id := transferID(n); return id[:] }

// newNaiveTarget creates the schema in db and the funded accounts: the
// treasury holds minus what the wallets hold, so balances sum to zero.
func newNaiveTarget(ctx context.Context, db sqlDB, d dialect, wallets, workers int, clk *clock) (*naiveTarget, error) {
	t := &naiveTarget{db: db, sql: newNaiveSQL(d), clk: clk, wallets: wallets, workers: workers, rejected: rejections{}}
	for _, s := range t.sql.schema {
		if _, err := db.exec(ctx, s); err != nil {
			return nil, fmt.Errorf("create naive schema: %w", err)
		}
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("fund naive accounts: %w", err)
	}
	defer tx.rollback(ctx)
	const perStatement = 500
	full := t.sql.insertAccounts(perStatement)
	args := make([]any, 0, 3*perStatement)
	for n := 0; n <= wallets; n++ {
		wallet, balance := 1, int64(walletFunding)
		if n == treasury {
			wallet, balance = 0, -int64(walletFunding)*int64(wallets)
		}
		args = append(args, idBytes(uint32(n)), wallet, balance)
		if rows := len(args) / 3; rows == perStatement || n == wallets {
			stmt := full
			if rows != perStatement {
				stmt = t.sql.insertAccounts(rows)
			}
			if _, err := tx.exec(ctx, stmt, args...); err != nil {
				return nil, fmt.Errorf("fund naive accounts: %w", err)
			}
			args = args[:0]
		}
	}
	if err := tx.commit(ctx); err != nil {
		return nil, fmt.Errorf("fund naive accounts: %w", err)
	}
	return t, nil
}

func (t *naiveTarget) reject(reason string) outcome {
	t.mu.Lock()
	t.rejected[reason]++
	t.mu.Unlock()
	return rejected
}

func (t *naiveTarget) apply(ctx context.Context, _ int, ops []Op, out []outcome) error {
	for i := range ops {
		for attempt := 0; ; attempt++ {
			o, err := t.transfer(ctx, &ops[i])
			if err != nil && t.db.retryable(err) && attempt < 10 {
				continue
			}
			if err != nil {
				return err
			}
			out[i] = o
			break
		}
	}
	return nil
}

// transfer runs one op as one transaction.
func (t *naiveTarget) transfer(ctx context.Context, op *Op) (outcome, error) {
	tx, err := t.db.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.rollback(ctx)
	if op.Kind == Post || op.Kind == Void {
		return t.resolve(ctx, tx, op)
	}
	amount := int64(op.Amount)
	debit := func() (bool, error) {
		var n int64
		var err error
		if op.Kind == Reserve {
			n, err = tx.exec(ctx, t.sql.hold, amount, amount, idBytes(op.Debit), amount)
		} else {
			n, err = tx.exec(ctx, t.sql.debit, amount, idBytes(op.Debit), amount)
		}
		return n == 1, err
	}
	credit := func() (bool, error) {
		if op.Kind == Reserve {
			return true, nil // A reservation credits nothing until it is posted.
		}
		n, err := tx.exec(ctx, t.sql.credit, amount, idBytes(op.Credit))
		return n == 1, err
	}
	first, second := debit, credit
	if op.Credit < op.Debit {
		first, second = credit, debit // Lock rows in account order.
	}
	for _, step := range []func() (bool, error){first, second} {
		ok, err := step()
		if err != nil {
			return 0, err
		}
		if !ok {
			tx.rollback(ctx)
			return t.reject("insufficient_funds_or_account_not_found"), nil
		}
	}
	kind, status, expiresAt := naivePlain, statusNone, int64(0)
	if op.Kind == Reserve {
		kind, status, expiresAt = naiveReserve, statusPending, t.clk.Now().Add(op.Timeout).UnixNano()
	}
	return t.finish(ctx, tx, op, func() error {
		_, err := tx.exec(ctx, t.sql.insert, xferBytes(op.ID), idBytes(op.Debit), idBytes(op.Credit), amount,
			kind, nil, status, expiresAt)
		return err
	})
}

// resolve posts or voids a reservation: it claims the pending row, returns
// the hold to the debit account less what is posted, and pays the credit
// account what is posted.
func (t *naiveTarget) resolve(ctx context.Context, tx sqlTx, op *Op) (outcome, error) {
	status, kind := statusPosted, naivePost
	if op.Kind == Void {
		status, kind = statusVoided, naiveVoid
	}
	var debitID, creditID []byte
	var held int64
	err := tx.queryRow(ctx, t.sql.resolve, status, xferBytes(op.Pending), t.clk.Now().UnixNano()).Scan(&debitID, &creditID, &held)
	if errors.Is(err, errNoRow) {
		// Resolved already, by this op's first submission or another.
		tx.rollback(ctx)
		return t.existing(ctx, op, "pending_not_open")
	}
	if err != nil {
		return 0, err
	}
	posted := int64(0)
	if op.Kind == Post {
		posted = int64(op.Amount)
		if posted == 0 {
			posted = held
		}
		if posted > held {
			tx.rollback(ctx)
			return t.reject("exceeds_pending_amount"), nil
		}
	}
	settle := func() error { _, err := tx.exec(ctx, t.sql.settle, held, held-posted, debitID); return err }
	pay := func() error {
		if posted == 0 {
			return nil
		}
		_, err := tx.exec(ctx, t.sql.pay, posted, creditID)
		return err
	}
	first, second := settle, pay
	if string(creditID) < string(debitID) {
		first, second = pay, settle
	}
	if err := first(); err != nil {
		return 0, err
	}
	if err := second(); err != nil {
		return 0, err
	}
	amount := posted
	if op.Kind == Void {
		amount = held
	}
	return t.finish(ctx, tx, op, func() error {
		_, err := tx.exec(ctx, t.sql.insert, xferBytes(op.ID), debitID, creditID, amount, kind, xferBytes(op.Pending),
			statusNone, int64(0))
		return err
	})
}

// finish inserts the transfer row and commits; a duplicate id rolls back
// and answers by comparing with the transfer already there.
func (t *naiveTarget) finish(ctx context.Context, tx sqlTx, op *Op, insert func() error) (outcome, error) {
	if err := insert(); err != nil {
		if t.db.uniqueViolation(err) {
			tx.rollback(ctx)
			return t.existing(ctx, op, "exists_with_different_fields")
		}
		return 0, err
	}
	if err := tx.commit(ctx); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return applied, nil
}

// existing answers an op whose id may be taken: exists when the stored
// transfer has the op's fields, else a rejection for the given reason.
func (t *naiveTarget) existing(ctx context.Context, op *Op, reason string) (outcome, error) {
	var debitID, creditID, pendingID []byte
	var amount int64
	var kind int
	err := t.db.queryRow(ctx, t.sql.lookup, xferBytes(op.ID)).Scan(&debitID, &creditID, &amount, &kind, &pendingID)
	if errors.Is(err, errNoRow) {
		return t.reject(reason), nil
	}
	if err != nil {
		return 0, err
	}
	var same bool
	switch op.Kind {
	case Plain, Reserve:
		want := naivePlain
		if op.Kind == Reserve {
			want = naiveReserve
		}
		same = kind == want &&
			string(debitID) == string(idBytes(op.Debit)) && string(creditID) == string(idBytes(op.Credit)) &&
			amount == int64(op.Amount)
	case Post:
		same = kind == naivePost && string(pendingID) == string(xferBytes(op.Pending)) &&
			(op.Amount == 0 || amount == int64(op.Amount))
	case Void:
		same = kind == naiveVoid && string(pendingID) == string(xferBytes(op.Pending))
	}
	if !same {
		return t.reject("exists_with_different_fields"), nil
	}
	return exists, nil
}

// expireDue finds the reservations past their timeout and expires each in
// its own transaction, spread over the run's clients.
func (t *naiveTarget) expireDue(ctx context.Context) (int, error) {
	now := t.clk.Now().UnixNano()
	ids, err := t.db.queryIDs(ctx, t.sql.openDue, now)
	if err != nil {
		return 0, fmt.Errorf("find due reservations: %w", err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		expired int
		first   error
	)
	for w := range t.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(ids); i += t.workers {
				n, err := t.expireOne(ctx, ids[i], now)
				mu.Lock()
				expired += n
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return expired, first
}

func (t *naiveTarget) expireOne(ctx context.Context, id []byte, now int64) (int, error) {
	for attempt := 0; ; attempt++ {
		n, err := func() (int, error) {
			tx, err := t.db.begin(ctx)
			if err != nil {
				return 0, err
			}
			defer tx.rollback(ctx)
			var debitID []byte
			var amount int64
			err = tx.queryRow(ctx, t.sql.expire, id, now).Scan(&debitID, &amount)
			if errors.Is(err, errNoRow) {
				return 0, nil // Resolved meanwhile.
			}
			if err != nil {
				return 0, err
			}
			if _, err := tx.exec(ctx, t.sql.release, amount, amount, debitID); err != nil {
				return 0, err
			}
			return 1, tx.commit(ctx)
		}()
		if err != nil && t.db.retryable(err) && attempt < 10 {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("expire reservation: %w", err)
		}
		return n, nil
	}
}

// check verifies conservation with SQL sums.
func (t *naiveTarget) check(ctx context.Context, acknowledged int64) error {
	if len(t.rejected) > 0 {
		return fmt.Errorf("unexpected rejections: %s", t.rejected)
	}
	var balance, held, accounts, negative, rows, open int64
	if err := t.db.queryRow(ctx, t.sql.sumAccounts).Scan(&balance, &held, &accounts); err != nil {
		return fmt.Errorf("sum balances: %w", err)
	}
	if err := t.db.queryRow(ctx, t.sql.negativeWallets).Scan(&negative); err != nil {
		return fmt.Errorf("count negative wallets: %w", err)
	}
	if err := t.db.queryRow(ctx, t.sql.transferTotals).Scan(&rows, &open); err != nil {
		return fmt.Errorf("count transfers: %w", err)
	}
	switch {
	case accounts != int64(t.wallets)+1:
		return fmt.Errorf("found %d accounts, want %d", accounts, t.wallets+1)
	case balance+held != 0:
		return fmt.Errorf("balances sum to %d (held %d); want 0", balance+held, held)
	case negative != 0:
		return fmt.Errorf("%d wallets are below zero", negative)
	case held != open:
		return fmt.Errorf("accounts hold %d but open reservations total %d", held, open)
	case open != 0:
		return fmt.Errorf("reservations totalling %d are still open", open)
	case rows != acknowledged:
		return fmt.Errorf("%d transfer rows, want the %d acknowledged", rows, acknowledged)
	}
	return nil
}

func (t *naiveTarget) close() error { return t.db.close() }
