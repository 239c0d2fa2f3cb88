package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentmarket/agentmarket/market"
)

// Options configure a Store. The zero value is ready to use.
type Options struct {
	// Logger receives what the store cannot return to a caller: a lost
	// listener connection, a panic in an Update's fn. Nil discards it.
	Logger *slog.Logger
	// Now is the clock that decides when a nonce has expired. Nil means
	// time.Now.
	Now func() time.Time
	// MaxConns bounds the store's connection pool. Zero takes pgxpool's
	// default (the larger of 4 and the number of CPUs).
	MaxConns int
	// PollInterval is how often the store reads the newest event sequence
	// number even without a notification, as a safety net for a listener
	// that lost its connection. Zero means one second.
	PollInterval time.Duration
}

// ErrClosed is returned by calls on a closed Store.
var ErrClosed = market.E(market.Transient, market.Code("store_closed"), "the store is closed")

// nonceSweepInterval is how often a store deletes expired nonces. A
// nonce that has expired may be used again whether or not it was swept;
// sweeping only keeps the table small.
const nonceSweepInterval = time.Minute

// Store is a market.Store in PostgreSQL. It is safe for concurrent use,
// and any number of Stores, in one process or on many nodes, may share
// one schema: every fact they share lives in the database.
//
// Update runs fn in a SERIALIZABLE transaction and retries it when
// PostgreSQL reports a serialization failure or a deadlock. Serializable
// isolation, rather than READ COMMITTED with row locks, is the choice
// because fn is arbitrary engine code: it reads objects, lists and
// aggregates (the next receipt's sequence number, a seller's open
// contracts) and decides on them, and only serializable execution makes
// every such decision safe against a concurrent Update without the
// engine naming the rows to lock. It is also the isolation CockroachDB
// runs by default, with the same retry error.
type Store struct {
	log     *slog.Logger
	now     func() time.Time
	pool    *pgxpool.Pool
	schema  string
	channel string // the NOTIFY channel of this schema's event log
	// eventLock is the advisory lock that an Update holds from its first
	// AppendEvent until it commits, so that events commit in the order of
	// their sequence numbers (see AppendEvent).
	eventLock int64
	poll      time.Duration

	closing   chan struct{}
	stopped   sync.WaitGroup
	closeOnce sync.Once
	cancel    context.CancelFunc

	mu      sync.Mutex
	lastSeq int64         // the newest committed event's sequence number known here
	newSeq  chan struct{} // closed and replaced whenever lastSeq advances
}

var _ market.Store = (*Store)(nil)

// Open connects to the database at url, brings the schema up to date and
// starts listening for events committed by any node. The schema is the
// first one of the connection's search path; a URL may set it with
// search_path=name.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	s := &Store{
		log:     opts.Logger,
		now:     opts.Now,
		poll:    opts.PollInterval,
		closing: make(chan struct{}),
		newSeq:  make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.poll <= 0 {
		s.poll = time.Second
	}
	var err error
	s.pool, s.schema, err = connect(ctx, url, opts.MaxConns, nil)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.channel = fmt.Sprintf("agentmarket_events_%016x", uint64(lockKey(s.schema, "events")))
	s.eventLock = lockKey(s.schema, "event log")
	if err := migrate(ctx, s.pool, s.schema, s.now); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	// Listen before reading the newest sequence number, so that no event
	// commits unseen in between.
	listener, err := s.listen(ctx)
	if err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.refresh(ctx); err != nil {
		listener.Close(context.Background())
		s.pool.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.stopped.Add(2)
	go s.listenLoop(bg, listener)
	go s.pollLoop(bg)
	return s, nil
}

// Close stops listening and closes the connections, after the Updates and
// Views in progress return.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.cancel()
		s.stopped.Wait()
		s.pool.Close()
	})
	return nil
}

func (s *Store) closed() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// Update runs fn in a serializable transaction and commits it. When the
// transaction loses a race with another (a serialization failure or a
// deadlock, whether fn saw the error or the commit did), Update rolls it
// back and runs fn again after a short, jittered pause, up to maxAttempts
// times. fn's own errors are returned as they are.
func (s *Store) Update(ctx context.Context, fn func(market.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed() {
		return ErrClosed
	}
	for attempt := 0; ; attempt++ {
		seq, err := s.update(ctx, fn)
		if err == nil {
			if seq > 0 {
				s.publish(seq)
			}
			return nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return err
		}
		if attempt+1 >= maxAttempts {
			return market.E(market.Transient, market.Code("store_conflict"),
				fmt.Sprintf("the update lost %d races with concurrent updates; retry later", maxAttempts), err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// update makes one attempt at an Update. It returns the highest event
// sequence number fn appended, once committed.
func (s *Store) update(ctx context.Context, fn func(market.Tx) error) (int64, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return 0, fmt.Errorf("begin update: %w", err)
	}
	defer rollback(tx)
	w := &writeTx{readTx: readTx{ctx: ctx, q: tx}, s: s}
	fnErr := s.call(fn, w)
	w.q = doneTx{}
	if fnErr != nil {
		return 0, fnErr
	}
	if w.maxSeq > 0 {
		// The notification is delivered when, and only if, the
		// transaction commits, in commit order.
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, strconv.FormatInt(w.maxSeq, 10)); err != nil {
			return 0, fmt.Errorf("notify events: %w", err)
		}
	}
	// Once COMMIT is sent its outcome must be read, whatever ctx does.
	if err := tx.Commit(context.WithoutCancel(ctx)); err != nil {
		return 0, fmt.Errorf("commit update: %w", err)
	}
	return w.maxSeq, nil
}

// call runs fn, turning a panic into an Internal error.
func (s *Store) call(fn func(market.Tx) error, tx market.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("postgres: update panicked", "panic", p, "stack", string(debug.Stack()))
			err = market.Errorf(market.Internal, "update_panicked", "update panicked: %v", p)
		}
	}()
	return fn(tx)
}

// View runs fn in a read-only REPEATABLE READ transaction: one snapshot,
// taken at fn's first read, that holds until fn returns. A read-only
// transaction needs no serializable guarantees to read consistently, and
// at this level it never fails with a serialization error.
func (s *Store) View(ctx context.Context, fn func(market.ReadTx) error) error {
	if s.closed() {
		return ErrClosed
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin view: %w", err)
	}
	defer rollback(tx)
	r := &readTx{ctx: ctx, q: tx}
	defer func() { r.q = doneTx{} }()
	return fn(r)
}

// WaitEvents blocks until an event with a sequence number above after is
// committed, by this node or any other, or ctx ends, or the store closes.
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

// refresh reads the newest committed event's sequence number.
func (s *Store) refresh(ctx context.Context) error {
	var seq int64
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM events`).Scan(&seq); err != nil {
		return fmt.Errorf("read the newest event: %w", err)
	}
	s.publish(seq)
	return nil
}

// listen opens the store's listener connection, outside the pool, and
// subscribes it to the event channel.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connect listener: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("listen for events: %w", err)
	}
	return conn, nil
}

// listenLoop wakes WaitEvents on every notification. When the connection
// fails it reconnects, and catches up on what it missed by reading the
// newest sequence number again.
func (s *Store) listenLoop(ctx context.Context, conn *pgx.Conn) {
	defer s.stopped.Done()
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			var err error
			if conn, err = s.listen(ctx); err != nil {
				s.log.Warn("postgres: event listener cannot reconnect", "err", err)
				sleep(ctx, time.Second)
				continue
			}
			if err := s.refresh(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("postgres: event listener cannot catch up", "err", err)
			}
		}
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("postgres: event listener lost its connection", "err", err)
			}
			conn.Close(context.Background())
			conn = nil
			continue
		}
		seq, err := strconv.ParseInt(n.Payload, 10, 64)
		if err != nil {
			s.log.Warn("postgres: bad event notification", "payload", n.Payload)
			continue
		}
		s.publish(seq)
	}
}

// pollLoop reads the newest sequence number every poll interval, in case
// a notification was lost with a connection, and sweeps expired nonces.
// On CockroachDB, which has no LISTEN/NOTIFY, polling is how events reach
// other nodes; a shorter PollInterval shortens their wait.
func (s *Store) pollLoop(ctx context.Context) {
	defer s.stopped.Done()
	t := time.NewTicker(s.poll)
	defer t.Stop()
	lastSweep := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.refresh(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("postgres: poll events", "err", err)
		}
		if time.Since(lastSweep) >= nonceSweepInterval {
			lastSweep = time.Now()
			if _, err := s.pool.Exec(ctx, `DELETE FROM nonces WHERE expires <= $1`, nanos(s.now())); err != nil && ctx.Err() == nil {
				s.log.Warn("postgres: sweep expired nonces", "err", err)
			}
		}
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// errTxDone is returned by a transaction used after its fn returned.
var errTxDone = errors.New("transaction used after its function returned")
