// Package sqlite stores the market's state in one SQLite file: it
// implements market.Store on modernc.org/sqlite, a pure-Go SQLite, in WAL
// mode. It owns the schema and its embedded, versioned migrations, and the
// single writer goroutine that group-commits concurrent Updates: many
// Updates share one transaction and one fsync, each isolated in its own
// savepoint, while Views read committed snapshots on a pool of read
// connections beside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// Options configure a Store. The zero value is ready to use.
type Options struct {
	// Logger receives what the store cannot return to a caller, such as
	// a failed commit's detail or a panic in an Update's fn. Nil discards
	// it.
	Logger *slog.Logger
	// Now is the clock that decides when a nonce has expired. Nil means
	// time.Now.
	Now func() time.Time
	// MaxBatch bounds how many Updates share one commit. Zero means 256;
	// 1 turns group commit off (one transaction and one fsync per
	// Update), which is the baseline benchmarks compare against.
	MaxBatch int
}

const (
	defaultMaxBatch = 256
	// maxBatchDelay bounds how long a batch keeps taking new Updates, so
	// that the first fn of a busy batch is not kept waiting for its
	// commit. It is measured on the wall clock: it schedules work and
	// decides nothing about market state.
	maxBatchDelay = 2 * time.Millisecond
	// savepoint names the savepoint each fn of a batch runs in.
	savepoint = "update_fn"
)

// ErrClosed is returned by calls on a closed Store.
var ErrClosed = market.E(market.Transient, market.Code("store_closed"), "the store is closed")

// Store is a market.Store in one SQLite file. It is safe for concurrent
// use. Only one Store may have a file open at a time: the writer's event
// sequence and wake-ups live in memory.
type Store struct {
	log      *slog.Logger
	now      func() time.Time
	maxBatch int

	wdb   *sql.DB              // the writer's database handle: one connection, synchronous=FULL
	wconn *sql.Conn            // the writer's connection, used only by the writer goroutine
	stmts map[string]*sql.Stmt // statements prepared on wconn, by query
	rdb   *sql.DB              // the readers' pool, for View

	requests  chan *request // unbuffered: a request sent is a request the writer owns and will answer
	closing   chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	lastSeq int64         // the newest committed event's sequence number
	newSeq  chan struct{} // closed and replaced whenever lastSeq advances
}

var _ market.Store = (*Store)(nil)

// Open opens or creates the store in the SQLite file at path and brings
// its schema up to date.
func Open(path string, opts Options) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open store %q: want the path of a file", path)
	}
	s := &Store{
		log:      opts.Logger,
		now:      opts.Now,
		maxBatch: opts.MaxBatch,
		requests: make(chan *request),
		closing:  make(chan struct{}),
		stopped:  make(chan struct{}),
		newSeq:   make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxBatch <= 0 {
		s.maxBatch = defaultMaxBatch
	}
	if err := s.open(path); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	go s.write()
	return s, nil
}

func (s *Store) open(path string) error {
	ctx := context.Background()
	var err error
	// Acknowledged means durable: the writer syncs the WAL on every commit.
	s.wdb, err = openDB(path, "immediate", "journal_mode(WAL)", "synchronous(FULL)")
	if err != nil {
		return err
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	if err := migrate(ctx, s.wdb, s.now); err != nil {
		return err
	}
	if s.wconn, err = s.wdb.Conn(ctx); err != nil {
		return fmt.Errorf("connect writer: %w", err)
	}
	if err := s.wconn.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM events`).Scan(&s.lastSeq); err != nil {
		return fmt.Errorf("read last event: %w", err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	s.rdb, err = openDB(path, "deferred", "query_only(1)")
	if err != nil {
		return err
	}
	s.rdb.SetMaxOpenConns(readers)
	s.rdb.SetMaxIdleConns(readers)
	return nil
}

// openDB opens a database/sql handle on the file with the given
// transaction lock mode and pragmas.
func openDB(path, txlock string, pragmas ...string) (*sql.DB, error) {
	var b strings.Builder
	b.WriteString("file:")
	// The path is a URI path: escape what SQLite would read as URI syntax.
	b.WriteString(strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path))
	b.WriteString("?_txlock=" + txlock + "&_pragma=busy_timeout(10000)")
	for _, p := range pragmas {
		b.WriteString("&_pragma=" + p)
	}
	db, err := sql.Open("sqlite", b.String())
	if err != nil {
		return nil, err
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close stops the writer after the batch it is committing, then closes
// the database. Updates still waiting to be taken return ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.stopped
		s.closeErr = s.closeDBs()
	})
	return s.closeErr
}

func (s *Store) closeDBs() error {
	var errs []error
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	if s.wconn != nil {
		errs = append(errs, s.wconn.Close())
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// request is one Update waiting for the writer.
type request struct {
	ctx  context.Context
	fn   func(market.Tx) error
	done chan error // buffered: the writer never blocks answering
}

// Update runs fn in the writer goroutine, inside a savepoint of a
// transaction that it may share with other Updates, and returns once that
// transaction has committed durably. If fn fails or panics, its savepoint
// is rolled back and the other fns of the batch are unaffected. Once the
// writer has taken fn, Update waits for the outcome even if ctx ends, so
// that it never returns while its writes may still commit. fn must not
// call Update: the writer is busy running it.
func (s *Store) Update(ctx context.Context, fn func(market.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case s.requests <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrClosed
	}
	return <-r.done
}

// write is the writer goroutine: it takes one request, then commits a
// batch that starts with it.
func (s *Store) write() {
	defer close(s.stopped)
	for {
		select {
		case <-s.closing:
			return
		case r := <-s.requests:
			s.commitBatch(r)
		}
	}
}

// outcome is what one fn of a batch came to: nil when its writes are in
// the batch, or its own error when they were rolled back.
type outcome struct {
	req *request
	err error
}

// commitBatch runs first and whatever other Updates are waiting, up to
// maxBatch of them or maxBatchDelay, in one transaction, each in its own
// savepoint, then commits once and answers every one of them.
func (s *Store) commitBatch(first *request) {
	start := time.Now()
	tx, err := s.begin()
	if err != nil {
		s.fail([]outcome{{req: first}}, fmt.Errorf("begin batch: %w", err))
		return
	}
	var (
		batch  []outcome
		maxSeq int64
	)
	r := first
	for {
		fnErr, seq, fatal := s.apply(tx, r)
		batch = append(batch, outcome{r, fnErr})
		if fatal != nil {
			tx.Rollback()
			s.fail(batch, fatal)
			return
		}
		maxSeq = max(maxSeq, seq)
		if len(batch) >= s.maxBatch || time.Since(start) >= maxBatchDelay {
			break
		}
		next, ok := s.waiting()
		if !ok {
			break
		}
		r = next
	}
	if err := tx.Commit(); err != nil {
		tx.Rollback() // a failed COMMIT can leave the transaction open
		s.fail(batch, fmt.Errorf("commit batch of %d updates: %w", len(batch), err))
		return
	}
	if maxSeq > 0 {
		s.publish(maxSeq)
	}
	for _, o := range batch {
		o.req.done <- o.err
	}
}

// waiting returns an Update that is waiting to be taken, if there is one.
func (s *Store) waiting() (*request, bool) {
	select {
	case r := <-s.requests:
		return r, true
	default:
		return nil, false
	}
}

// fail answers every fn of a batch that could not commit. A fn that had
// failed on its own keeps its own error, since none of its writes were
// going to commit anyway; the others get err.
func (s *Store) fail(batch []outcome, err error) {
	s.log.Error("sqlite: update batch failed", "updates", len(batch), "err", err)
	for _, o := range batch {
		if o.err != nil {
			o.req.done <- o.err
		} else {
			o.req.done <- err
		}
	}
}

// apply runs one request's fn in a savepoint of tx. It returns fn's own
// error (its writes rolled back), the highest event sequence number fn
// appended, and a fatal error when the transaction itself broke and the
// whole batch must be abandoned.
func (s *Store) apply(tx *batchTx, r *request) (fnErr error, seq int64, fatal error) {
	if err := r.ctx.Err(); err != nil {
		return err, 0, nil
	}
	ctx := context.Background() // never r.ctx: interrupting a statement can roll back the whole batch
	if _, err := tx.ExecContext(ctx, "SAVEPOINT "+savepoint); err != nil {
		return nil, 0, fmt.Errorf("open savepoint: %w", err)
	}
	w := &writeTx{readTx: readTx{ctx: ctx, q: tx}, now: s.now}
	fnErr = s.call(r.fn, w)
	w.q = doneTx{}
	if fnErr != nil {
		if _, err := tx.ExecContext(ctx, "ROLLBACK TO "+savepoint); err != nil {
			return fnErr, 0, fmt.Errorf("roll back savepoint: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "RELEASE "+savepoint); err != nil {
			return fnErr, 0, fmt.Errorf("release savepoint: %w", err)
		}
		return fnErr, 0, nil
	}
	if _, err := tx.ExecContext(ctx, "RELEASE "+savepoint); err != nil {
		return nil, 0, fmt.Errorf("release savepoint: %w", err)
	}
	return nil, w.maxSeq, nil
}

// call runs fn, turning a panic into an Internal error so that one bad
// fn cannot stop the writer.
func (s *Store) call(fn func(market.Tx) error, tx market.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("sqlite: update panicked", "panic", p, "stack", string(debug.Stack()))
			err = market.Errorf(market.Internal, "update_panicked", "update panicked: %v", p)
		}
	}()
	return fn(tx)
}

// publish records that events up to seq are committed and wakes
// WaitEvents.
func (s *Store) publish(seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.lastSeq {
		s.lastSeq = seq
		close(s.newSeq)
		s.newSeq = make(chan struct{})
	}
}

// WaitEvents blocks until an event with a sequence number above after is
// committed, ctx ends, or the store closes.
func (s *Store) WaitEvents(ctx context.Context, after int64) error {
	for {
		s.mu.Lock()
		last, ch := s.lastSeq, s.newSeq
		s.mu.Unlock()
		if last > after {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closing:
			return ErrClosed
		}
	}
}

// View runs fn in a read-only transaction on a read connection. The
// snapshot is taken at fn's first read and holds until fn returns; it
// never includes the writes of a batch that has not committed.
func (s *Store) View(ctx context.Context, fn func(market.ReadTx) error) error {
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin view: %w", err)
	}
	defer tx.Rollback()
	r := &readTx{ctx: ctx, q: tx}
	defer func() { r.q = doneTx{} }()
	return fn(r)
}

// batchTx is the writer's transaction. It runs BEGIN and COMMIT as
// statements on the writer's dedicated connection rather than through
// database/sql's Tx, so that the statements it executes can be prepared
// once per connection and reused by every batch: parsing SQL was a fifth
// of the writer's time.
type batchTx struct {
	s *Store
}

func (s *Store) begin() (*batchTx, error) {
	if _, err := s.wconn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		return nil, err
	}
	return &batchTx{s: s}, nil
}

func (t *batchTx) Commit() error {
	_, err := t.s.wconn.ExecContext(context.Background(), "COMMIT")
	return err
}

func (t *batchTx) Rollback() error {
	_, err := t.s.wconn.ExecContext(context.Background(), "ROLLBACK")
	return err
}

// stmt returns the statement for query, prepared on the writer's
// connection the first time it is seen.
func (t *batchTx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := t.s.stmts[query]; ok {
		return st, nil
	}
	st, err := t.s.wconn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if t.s.stmts == nil {
		t.s.stmts = make(map[string]*sql.Stmt)
	}
	t.s.stmts[query] = st
	return st, nil
}

func (t *batchTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if len(args) == 0 {
		return t.s.wconn.ExecContext(ctx, query)
	}
	st, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (t *batchTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}
