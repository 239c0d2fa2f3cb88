package ledger

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"
)

// The projection copies the journal into SQLite (ledger.db in the data
// directory) so that history can be queried: an account's transfers, paged.
// The journal stays the source of truth; the projection is derived, records
// how far it got in the same transaction as the rows, and can be rebuilt by
// deleting the file.
//
// It runs behind the journal on purpose: it catches up when a query needs
// it, when the ledger has been idle for a moment, or when it lags by more
// than projectLagLimit. Keeping it off the hot path is what lets the
// journal take a million transfers a second; queries still read their own
// writes, because they wait for the projection to reach the journal's end.
const (
	projectionFile  = "ledger.db"
	projectIdle     = 500 * time.Millisecond
	projectLagLimit = 1 << 30 // journal bytes
	projectTxEvents = 50_000
)

const projectionSchema = `
CREATE TABLE IF NOT EXISTS ledger_meta (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_accounts (
	id              BLOB PRIMARY KEY,
	user_data       BLOB NOT NULL,
	code            INTEGER NOT NULL,
	flags           INTEGER NOT NULL,
	debits_pending  INTEGER NOT NULL DEFAULT 0,
	debits_posted   INTEGER NOT NULL DEFAULT 0,
	credits_pending INTEGER NOT NULL DEFAULT 0,
	credits_posted  INTEGER NOT NULL DEFAULT 0,
	timestamp       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_transfers (
	timestamp         INTEGER PRIMARY KEY,
	id                BLOB NOT NULL UNIQUE,
	debit_account_id  BLOB NOT NULL,
	credit_account_id BLOB NOT NULL,
	amount            INTEGER NOT NULL,
	pending_id        BLOB NOT NULL,
	user_data         BLOB NOT NULL,
	timeout           INTEGER NOT NULL,
	code              INTEGER NOT NULL,
	flags             INTEGER NOT NULL,
	status            INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_transfers_debit ON ledger_transfers (debit_account_id, timestamp);
CREATE INDEX IF NOT EXISTS ledger_transfers_credit ON ledger_transfers (credit_account_id, timestamp);
CREATE TABLE IF NOT EXISTS ledger_mandates (
	account_id       BLOB PRIMARY KEY,
	max_per_transfer INTEGER NOT NULL,
	budget           INTEGER NOT NULL,
	window_ns        INTEGER NOT NULL,
	counterparties   BLOB NOT NULL,
	expires_at       INTEGER NOT NULL,
	timestamp        INTEGER NOT NULL
) WITHOUT ROWID;
`

type projection struct {
	db      *sql.DB
	journal *os.File
	log     *slog.Logger
	wake    chan struct{}
	demand  chan struct{}

	mu        sync.Mutex
	off       int64         // journal offset projected so far
	progress  chan struct{} // closed and replaced whenever off advances
	lastError error
}

// OpenSQLite opens a SQLite database with the settings agentmarket uses:
// WAL, a busy timeout, foreign keys on.
func OpenSQLite(path string, synchronous string) (*sql.DB, error) {
	dsn := fmt.Sprintf("file:%s?_pragma=journal_mode(WAL)&_pragma=synchronous(%s)&_pragma=busy_timeout(10000)"+
		"&_pragma=foreign_keys(ON)&_pragma=cache_size(-65536)&_pragma=mmap_size(1073741824)&_txlock=immediate", path, synchronous)
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return db, nil
}

func openProjection(dir, journalPath string, log *slog.Logger) (*projection, error) {
	// The projection is rebuilt from the journal after a crash, so it
	// need not sync every commit: NORMAL keeps WAL commits atomic.
	db, err := OpenSQLite(filepath.Join(dir, projectionFile), "NORMAL")
	if err != nil {
		return nil, err
	}
	if _, err := db.Exec(projectionSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create projection schema: %w", err)
	}
	p := &projection{db: db, log: log, wake: make(chan struct{}, 1), demand: make(chan struct{}, 1), progress: make(chan struct{})}
	if err := db.QueryRow(`SELECT COALESCE((SELECT value FROM ledger_meta WHERE key = 'offset'), 0)`).Scan(&p.off); err != nil {
		db.Close()
		return nil, fmt.Errorf("read projection offset: %w", err)
	}
	f, err := os.Open(journalPath)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open journal for projection: %w", err)
	}
	p.journal = f
	if fi, err := f.Stat(); err == nil && p.off > fi.Size() {
		// The projection is ahead of the journal, which cannot happen with
		// the journal it was built from: rebuild it.
		log.Warn("ledger: projection ahead of journal; rebuilding", "projected", p.off, "journal", fi.Size())
		if _, err := db.Exec(`DELETE FROM ledger_meta; DELETE FROM ledger_accounts; DELETE FROM ledger_transfers; DELETE FROM ledger_mandates;`); err != nil {
			p.close()
			return nil, fmt.Errorf("reset projection: %w", err)
		}
		p.off = 0
	}
	return p, nil
}

func (p *projection) close() {
	p.journal.Close()
	p.db.Close()
}

// notify tells the projection that the journal grew.
func (p *projection) notify() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *projection) projected() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.off
}

func (p *projection) run(stop <-chan struct{}, durable func() int64) {
	idle := time.NewTimer(projectIdle)
	defer idle.Stop()
	for {
		select {
		case <-stop:
			return
		case <-p.wake:
			if durable()-p.projected() > projectLagLimit {
				p.catchUp(stop, durable())
			}
			idle.Reset(projectIdle)
		case <-idle.C:
			p.catchUp(stop, durable())
		case <-p.demand:
			p.catchUp(stop, durable())
		}
	}
}

// waitFor blocks until the projection covers the journal up to off.
func (p *projection) waitFor(ctx context.Context, off int64) error {
	for {
		p.mu.Lock()
		done, ch, err := p.off >= off, p.progress, p.lastError
		p.mu.Unlock()
		if done {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case p.demand <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (p *projection) advance(off int64, err error) {
	p.mu.Lock()
	if err == nil {
		p.off = off
	}
	p.lastError = err
	close(p.progress)
	p.progress = make(chan struct{})
	p.mu.Unlock()
}

// catchUp projects the journal from where the projection stands to target.
func (p *projection) catchUp(stop <-chan struct{}, target int64) {
	from := p.projected()
	if from >= target {
		return
	}
	r := bufio.NewReaderSize(io.NewSectionReader(p.journal, from, target-from), 1<<20)
	tx := &projTx{p: p, off: from}
	hdr := make([]byte, headerSize)
	var body []byte
	for tx.off < target {
		if _, err := io.ReadFull(r, hdr); err != nil {
			p.fail(fmt.Errorf("read journal at %d: %w", tx.off, err))
			return
		}
		h, ok := decodeHeader(hdr)
		if !ok {
			p.fail(fmt.Errorf("bad journal header at %d", tx.off))
			return
		}
		if cap(body) < int(h.bodyLen) {
			body = make([]byte, h.bodyLen)
		}
		body = body[:h.bodyLen]
		if _, err := io.ReadFull(r, body); err != nil {
			p.fail(fmt.Errorf("read journal at %d: %w", tx.off, err))
			return
		}
		if err := tx.record(body); err != nil {
			p.fail(err)
			return
		}
		tx.off += headerSize + int64(h.bodyLen)
		if tx.events >= projectTxEvents || tx.off >= target {
			if err := tx.commit(); err != nil {
				p.fail(err)
				return
			}
			p.advance(tx.off, nil)
			select {
			case <-stop:
				return
			default:
			}
		}
	}
}

func (p *projection) fail(err error) {
	p.log.Error("ledger: projection stopped", "err", err)
	p.advance(0, fmt.Errorf("ledger projection: %w", err))
}

// projTx batches journal events into one SQLite transaction.
type projTx struct {
	p         *projection
	tx        *sql.Tx
	off       int64
	events    int
	deltas    map[ID]*[4]int64
	insXfer   *sql.Stmt
	updStatus *sql.Stmt
}

func (t *projTx) begin() error {
	if t.tx != nil {
		return nil
	}
	tx, err := t.p.db.Begin()
	if err != nil {
		return fmt.Errorf("begin projection: %w", err)
	}
	t.tx = tx
	t.deltas = make(map[ID]*[4]int64)
	t.insXfer, err = tx.Prepare(`INSERT INTO ledger_transfers (timestamp, id, debit_account_id, credit_account_id,
		amount, pending_id, user_data, timeout, code, flags, status) VALUES (?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return fmt.Errorf("prepare projection: %w", err)
	}
	t.updStatus, err = tx.Prepare(`UPDATE ledger_transfers SET status = ? WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("prepare projection: %w", err)
	}
	return nil
}

func (t *projTx) delta(id ID) *[4]int64 {
	d := t.deltas[id]
	if d == nil {
		d = new([4]int64)
		t.deltas[id] = d
	}
	return d
}

func (t *projTx) record(body []byte) error {
	if err := t.begin(); err != nil {
		return err
	}
	for pos := 0; pos < len(body); {
		b := body[pos:]
		n := eventSize(b)
		if n == 0 {
			return fmt.Errorf("projection: malformed event at %d", t.off)
		}
		pos += n
		t.events++
		var err error
		switch b[0] {
		case evAccount:
			a := decodeAccount(b)
			_, err = t.tx.Exec(`INSERT INTO ledger_accounts (id, user_data, code, flags, timestamp) VALUES (?,?,?,?,?)`,
				a.ID[:], a.UserData[:], a.Code, a.Flags, a.Timestamp)
		case evTransfer:
			err = t.transfer(b)
		case evExpire:
			e := decodeExpire(b)
			err = t.release(e.pendingID, e.debit, e.credit, e.amount, StatusExpired)
		case evMandate:
			m, ts := decodeMandate(b)
			cps := make([]byte, 0, 16*len(m.Counterparties))
			for _, c := range m.Counterparties {
				cps = append(cps, c[:]...)
			}
			var exp int64
			if !m.ExpiresAt.IsZero() {
				exp = m.ExpiresAt.UnixNano()
			}
			_, err = t.tx.Exec(`INSERT OR REPLACE INTO ledger_mandates VALUES (?,?,?,?,?,?,?)`,
				m.AccountID[:], m.MaxPerTransfer, m.Budget, int64(m.Window), cps, exp, ts)
		}
		if err != nil {
			return fmt.Errorf("project event: %w", err)
		}
	}
	return nil
}

func (t *projTx) transfer(b []byte) error {
	x, _, reserved := decodeTransferEvent(b)
	status := StatusNone
	switch {
	case x.Flags&Pending != 0:
		status = StatusPending
		d, c := t.delta(x.DebitAccountID), t.delta(x.CreditAccountID)
		d[0] += int64(x.Amount)
		c[2] += int64(x.Amount)
	case x.Flags&(PostPending|VoidPending) != 0:
		st := StatusVoided
		if x.Flags&PostPending != 0 {
			st = StatusPosted
			d, c := t.delta(x.DebitAccountID), t.delta(x.CreditAccountID)
			d[1] += int64(x.Amount)
			c[3] += int64(x.Amount)
		}
		if err := t.release(x.PendingID, x.DebitAccountID, x.CreditAccountID, reserved, st); err != nil {
			return err
		}
	default:
		d, c := t.delta(x.DebitAccountID), t.delta(x.CreditAccountID)
		d[1] += int64(x.Amount)
		c[3] += int64(x.Amount)
	}
	_, err := t.insXfer.Exec(x.Timestamp, x.ID[:], x.DebitAccountID[:], x.CreditAccountID[:], int64(x.Amount),
		x.PendingID[:], x.UserData[:], int64(x.Timeout), x.Code, x.Flags, status)
	return err
}

// release takes a resolved pending transfer's amount off the pending
// counters and records its final status.
func (t *projTx) release(pid, debit, credit ID, amount uint64, st PendingStatus) error {
	t.delta(debit)[0] -= int64(amount)
	t.delta(credit)[2] -= int64(amount)
	_, err := t.updStatus.Exec(st, pid[:])
	return err
}

func (t *projTx) commit() error {
	if t.tx == nil {
		return nil
	}
	upd, err := t.tx.Prepare(`UPDATE ledger_accounts SET debits_pending = debits_pending + ?, debits_posted = debits_posted + ?,
		credits_pending = credits_pending + ?, credits_posted = credits_posted + ? WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("prepare projection: %w", err)
	}
	for id, d := range t.deltas {
		if _, err := upd.Exec(d[0], d[1], d[2], d[3], id[:]); err != nil {
			return fmt.Errorf("project account %s: %w", id, err)
		}
	}
	if _, err := t.tx.Exec(`INSERT INTO ledger_meta (key, value) VALUES ('offset', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, t.off); err != nil {
		return fmt.Errorf("project offset: %w", err)
	}
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("commit projection: %w", err)
	}
	t.tx, t.events = nil, 0
	return nil
}

// TransferPage selects an account's transfers in ledger order.
type TransferPage struct {
	// After is the timestamp of the last transfer already seen; 0 starts
	// at the beginning.
	After int64
	// Limit caps the page; 0 means 100, and at most 8190 are returned.
	Limit int
}

// AccountTransfers returns a page of the transfers that debit or credit
// account, oldest first, as committed at the time of the call.
func (l *Ledger) AccountTransfers(ctx context.Context, account ID, page TransferPage) ([]Transfer, error) {
	if l.proj == nil {
		return nil, errors.New("ledger: projection disabled")
	}
	// Close waits for the query, and a closed ledger answers at once:
	// its projection no longer advances, and its database is closed.
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	if err := l.proj.waitFor(ctx, l.durable.Load()); err != nil {
		return nil, err
	}
	limit := page.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxBatch)
	rows, err := l.proj.db.QueryContext(ctx, `
		SELECT timestamp, id, debit_account_id, credit_account_id, amount, pending_id, user_data, timeout, code, flags
		FROM ledger_transfers WHERE timestamp > ? AND (debit_account_id = ? OR credit_account_id = ?)
		ORDER BY timestamp LIMIT ?`, page.After, account[:], account[:], limit)
	if err != nil {
		return nil, fmt.Errorf("query transfers: %w", err)
	}
	defer rows.Close()
	var out []Transfer
	for rows.Next() {
		var t Transfer
		var id, d, c, p, u []byte
		var amount, timeout int64
		if err := rows.Scan(&t.Timestamp, &id, &d, &c, &amount, &p, &u, &timeout, &t.Code, &t.Flags); err != nil {
			return nil, fmt.Errorf("scan transfer: %w", err)
		}
		t.ID, t.DebitAccountID, t.CreditAccountID, t.PendingID, t.UserData = getID(id), getID(d), getID(c), getID(p), getID(u)
		t.Amount, t.Timeout = uint64(amount), time.Duration(timeout)
		out = append(out, t)
	}
	return out, rows.Err()
}
