// Package journalstore implements market.Store in memory, behind a
// hash-chained journal, as the ledger keeps money. It owns the in-memory
// state (every object, in versions, with the indexes each query needs),
// the journal that makes it durable (one record per group commit, fsynced
// before any Update of the batch is answered), the archive file that
// holds the values of objects that can no longer change, the snapshots
// that bound recovery, and the data directory's lock.
//
// One writer goroutine runs the Updates' fns one after another against the
// newest state, undoing a fn that fails, and gathers them into batches. A
// syncer goroutine encodes each batch into a journal record, writes and
// fsyncs it, and only then makes it visible to Views and answers its
// Updates; meanwhile the writer runs the next batch. Views read a
// snapshot, the newest durable version, and never wait for the writer.
// Open recovers the state from the newest snapshot and the journal after
// it.
package journalstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// Options configure a Store. The zero value is ready to use.
type Options struct {
	// Logger receives what the store cannot return to a caller, such as
	// a failed journal write or a panic in an Update's fn. Nil discards
	// it.
	Logger *slog.Logger
	// Now is the clock that decides when a nonce has expired. Nil means
	// time.Now.
	Now func() time.Time
	// MaxBatch bounds how many Updates share one journal record. Zero
	// means 1024.
	MaxBatch int
	// SegmentBytes is the size past which the journal starts a new
	// segment file. Zero means 64 MiB.
	SegmentBytes int64
	// HotObjects is how many of the latest writes keep the objects they
	// wrote in memory; older objects that can no longer change move to
	// the archive file. Zero means 8192; negative keeps everything in
	// memory.
	HotObjects int
	// HotEvents is how many of the newest events stay in memory; older
	// ones move to the archive. Zero means 8192; negative keeps all.
	HotEvents int
	// SnapshotBytes is how much journal the store writes before it takes
	// a snapshot in the background, which bounds how much recovery
	// replays and lets the journal before it go. Zero means 256 MiB;
	// negative takes none but those asked for with Snapshot.
	SnapshotBytes int64
}

const (
	defaultMaxBatch      = 1024
	defaultSegmentBytes  = 64 << 20
	defaultSnapshotBytes = 256 << 20
)

// ErrClosed is returned by calls on a closed Store.
var ErrClosed = market.E(market.Transient, market.Code("store_closed"), "the store is closed")

// Store is a market.Store in memory behind a journal in a directory. It
// is safe for concurrent use. Only one process may have a directory
// open.
type Store struct {
	dir      string
	log      *slog.Logger
	maxBatch int
	lock     *os.File

	hotObjects, hotEvents, hotReceipts int
	st                                 *state
	w                                  *writer // the writer goroutine's
	j                                  *journal
	lastVer                            uint64 // the newest version the writer sealed; the writer's

	requests  chan *request // unbuffered: a request sent is one the writer owns and will answer
	toSync    chan *batch
	closing   chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error
	failed    atomic.Pointer[error]

	// Snapshots: one at a time, started by the syncer every snapBytes of
	// journal, or by Snapshot.
	snapMu      sync.Mutex
	snapVer     uint64 // the version of the newest snapshot; under snapMu
	snapBytes   int64
	journalLen  int64 // journal bytes since the last trigger; the syncer's
	snapTrigger chan struct{}
	snapDone    chan struct{}
	closeCtx    context.Context // ends when Close begins
	cancelClose context.CancelFunc

	stats struct {
		records, changes, archived atomic.Uint64
	}

	mu     sync.Mutex
	pub    published      // the newest durable version
	active map[uint64]int // open Views, by the version they read
	newSeq chan struct{}  // closed and replaced whenever pub.events advances
}

var _ market.Store = (*Store)(nil)

// published is a durable version of the state: what a View reads.
type published struct {
	ver      uint64
	events   int64
	receipts int64
	pos      position
}

// request is one Update waiting for the writer.
type request struct {
	ctx  context.Context
	fn   func(market.Tx) error
	done chan error // buffered: the syncer never blocks answering
}

// outcome is what one fn of a batch came to: nil when its writes are in
// the batch, or its own error when they were undone.
type outcome struct {
	req *request
	err error
}

// batch is the Updates of one journal record: their outcomes, and the
// changes of those that succeeded.
type batch struct {
	ver      uint64
	reqs     []outcome
	changes  []change
	signs    []receiptSign // receipts to sign before the record is written
	events   int64         // the newest event once the batch is durable
	receipts int64
}

// Open opens or creates the store in the directory dir, recovering its
// state from the journal.
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	arch, err := openArchive(filepath.Join(dir, archiveFile))
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{
		dir:      dir,
		log:      opts.Logger,
		maxBatch: opts.MaxBatch,
		lock:     lock,
		st:       newState(arch),
		requests: make(chan *request),
		toSync:   make(chan *batch),
		closing:  make(chan struct{}),
		stopped:  make(chan struct{}),
		active:   make(map[uint64]int),
		newSeq:   make(chan struct{}),

		snapBytes:   opts.SnapshotBytes,
		snapTrigger: make(chan struct{}, 1),
		snapDone:    make(chan struct{}),
	}
	if s.snapBytes == 0 {
		s.snapBytes = defaultSnapshotBytes
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if s.maxBatch <= 0 {
		s.maxBatch = defaultMaxBatch
	}
	s.hotObjects, s.hotEvents, s.hotReceipts = opts.HotObjects, opts.HotEvents, defaultHotReceipts
	if s.hotObjects == 0 {
		s.hotObjects = defaultHotObjects
	}
	if s.hotEvents == 0 {
		s.hotEvents = defaultHotEvents
	}
	s.hotReceipts = min(s.hotReceipts, s.hotEvents)
	if opts.HotObjects < 0 || opts.HotEvents < 0 {
		s.hotObjects, s.hotEvents, s.hotReceipts = math.MaxInt, math.MaxInt/2, math.MaxInt/2
	}
	segmentBytes := opts.SegmentBytes
	if segmentBytes <= 0 {
		segmentBytes = defaultSegmentBytes
	}
	s.w = &writer{s: s.st, now: now, keepAll: opts.HotObjects < 0}
	if err := s.recover(segmentBytes); err != nil {
		arch.close()
		lock.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	go s.write()
	go s.sync()
	s.closeCtx, s.cancelClose = context.WithCancel(context.Background())
	go s.snapshotter(s.closeCtx)
	return s, nil
}

// snapshotter takes a snapshot whenever the syncer asks for one.
func (s *Store) snapshotter(ctx context.Context) {
	defer close(s.snapDone)
	for {
		select {
		case <-s.snapTrigger:
			if err := s.Snapshot(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("journalstore: snapshot failed", "err", err)
			}
		case <-ctx.Done():
			return
		}
	}
}

// recover rebuilds the state from the newest snapshot and the journal
// after it, and opens the journal for appending.
func (s *Store) recover(segmentBytes int64) error {
	start := time.Now()
	var from position
	snaps, err := listSnapshots(s.dir)
	if err != nil {
		return err
	}
	if len(snaps) > 0 {
		newest := snaps[len(snaps)-1]
		if from, _, err = s.loadSnapshot(newest.path); err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		s.snapVer = from.seq
	} else if err := s.st.archive.truncate(0); err != nil {
		return err
	}
	loaded := time.Since(start)
	res, err := scanJournal(s.dir, from, s.replay)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	s.j, err = openJournal(s.dir, res, segmentBytes)
	if err != nil {
		return err
	}
	st := s.st
	st.forgetNonces(nanos(s.w.now()))
	s.lastVer = res.last.seq
	s.pub = published{ver: res.last.seq, events: st.events.last, receipts: st.receipts.last, pos: res.last}
	s.log.Info("journalstore: recovered", "snapshot", from.seq, "records", res.last.seq, "intents", st.intents.last,
		"contracts", st.contracts.last, "events", st.events.last, "snapshot_load", loaded, "elapsed", time.Since(start))
	return nil
}

// replay applies one journal record during recovery. Nothing reads the
// state yet, so its old values are collected at once.
func (s *Store) replay(r *record) error {
	w := s.w
	w.ver = r.seq
	if err := w.apply(r.body, int(r.count)); err != nil {
		return err
	}
	for _, ref := range w.dirty {
		w.mayEvict(r.seq, ref)
	}
	w.undo, w.dirty = w.undo[:0], w.dirty[:0]
	return s.collect(r.seq, s.st.events.last, s.st.receipts.last)
}

// Close stops the writer after the batch it is building, which becomes
// durable, and closes the journal. Updates still waiting to be taken
// return ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.cancelClose()
		<-s.stopped
		<-s.snapDone
		s.snapMu.Lock() // wait for a Snapshot call to see it is cancelled
		s.snapMu.Unlock()
		var errs []error
		errs = append(errs, s.j.close(), s.st.archive.close(), s.lock.Close())
		if p := s.failed.Load(); p != nil {
			errs = append(errs, *p)
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("close store: %w", err)
		}
	})
	return s.closeErr
}

// failure returns the error that stopped the store's writes, or nil.
func (s *Store) failure() error {
	if p := s.failed.Load(); p != nil {
		return market.E(market.Internal, market.Code("store_failed"), "the store cannot write its journal", *p)
	}
	return nil
}

// Update runs fn in the writer goroutine against the newest state, and
// returns once the journal record holding its writes, and every write it
// read, is durable. If fn fails or panics, its writes are undone and the
// other fns of the batch are unaffected. Once the writer has taken fn,
// Update waits for the outcome even if ctx ends, so that it never returns
// while its writes may still become durable. fn must not call Update.
func (s *Store) Update(ctx context.Context, fn func(market.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.failure(); err != nil {
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

// write is the writer goroutine. It runs requests into the batch being
// built and hands the batch to the syncer as soon as the syncer is free,
// so that requests arriving during an fsync share the next one.
func (s *Store) write() {
	defer close(s.toSync)
	var cur *batch
	for {
		if cur == nil {
			select {
			case r := <-s.requests:
				cur = s.begin()
				s.run(cur, r)
			case <-s.closing:
				return
			}
			continue
		}
		if len(cur.reqs) >= s.maxBatch {
			s.handOff(cur)
			cur = nil
			continue
		}
		select {
		case s.toSync <- nil:
			// The syncer took the nil, so it is idle: seal the batch and
			// hand it over.
			s.handOff(cur)
			cur = nil
		case r := <-s.requests:
			s.run(cur, r)
		case <-s.closing:
			s.handOff(cur)
			return
		}
	}
}

// begin starts a batch at the next version, first collecting the old
// values that no View can see any more.
func (s *Store) begin() *batch {
	if err := s.collect(s.oldestRead()); err != nil {
		s.log.Error("journalstore: archive write failed; refusing writes", "err", err)
		s.failed.CompareAndSwap(nil, &err)
	}
	w := s.w
	w.ver = s.lastVer + 1
	w.batchEvents, w.batchReceipts = s.st.events.last, s.st.receipts.last
	return &batch{ver: w.ver}
}

// collectChunk bounds how many objects one hold of the lock collects, so
// that a View's read waits little behind it.
const collectChunk = 256

// collect drops what no reader at or above oldest can see: the old
// values of the objects that versions up to oldest replaced, and their
// index entries. Then it archives what has gone cold.
func (s *Store) collect(oldest uint64, durableEvents, durableReceipts int64) error {
	w, st := s.w, s.st
	st.oldest = oldest
	n := 0
	for n < w.gc.len() && w.gc.at(n).ver <= oldest {
		n++
	}
	items := w.gc.front(n)
	for i := 0; i < n; i += collectChunk {
		st.mu.Lock()
		for _, it := range items[i:min(n, i+collectChunk)] {
			st.collect(it.r)
		}
		st.mu.Unlock()
	}
	w.gc.drop(n)
	if len(st.suspectSeries) > 0 {
		st.mu.Lock()
		st.clearSuspects()
		st.mu.Unlock()
	}
	return s.evict(oldest, durableEvents, durableReceipts)
}

// run runs one request's fn into the batch.
func (s *Store) run(b *batch, r *request) {
	if err := r.ctx.Err(); err != nil {
		b.reqs = append(b.reqs, outcome{r, err})
		return
	}
	if err := s.failure(); err != nil {
		b.reqs = append(b.reqs, outcome{r, err})
		return
	}
	w := s.w
	w.startFn()
	tx := &writeTx{reader: reader{s: s.st, snap: latest}, w: w}
	err := s.call(r.fn, tx)
	tx.done = true
	if err != nil {
		w.rollback()
	}
	b.reqs = append(b.reqs, outcome{r, err})
}

// call runs fn, turning a panic into an Internal error so that one bad
// fn cannot stop the writer.
func (s *Store) call(fn func(market.Tx) error, tx market.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("journalstore: update panicked", "panic", p, "stack", string(debug.Stack()))
			err = panicError(p)
		}
	}()
	return fn(tx)
}

// handOff seals the batch and gives it to the syncer.
func (s *Store) handOff(b *batch) {
	w := s.w
	b.changes = w.changes()
	w.dirty = w.dirty[:0]
	b.signs, w.signs = w.signs, nil
	if len(b.changes) > 0 {
		s.lastVer = b.ver
	}
	b.events, b.receipts = s.st.events.last, s.st.receipts.last
	s.toSync <- b
}

// sync is the syncer goroutine: it journals batches in order, makes each
// visible once it is durable, and answers its Updates.
func (s *Store) sync() {
	defer close(s.stopped)
	var buf []byte
	for b := range s.toSync {
		if b == nil {
			continue
		}
		err := s.failure()
		if err == nil && len(b.changes) > 0 {
			s.signReceipts(b.signs)
			buf = append(buf[:0], make([]byte, headerSize)...)
			buf = encodeChanges(buf, b.changes)
			pos := position{seq: b.ver}
			pos.hash = sealRecord(buf, b.ver, time.Now().UnixNano(), len(b.changes), s.j.last.hash)
			s.stats.records.Add(1)
			s.stats.changes.Add(uint64(len(b.changes)))
			if werr := s.j.append(buf, pos); werr != nil {
				s.log.Error("journalstore: journal write failed; refusing writes", "err", werr)
				s.failed.Store(&werr)
				err = s.failure()
			} else {
				s.publish(published{ver: b.ver, events: b.events, receipts: b.receipts, pos: pos})
				s.journalLen += int64(len(buf))
				if s.snapBytes > 0 && s.journalLen >= s.snapBytes {
					s.journalLen = 0
					select {
					case s.snapTrigger <- struct{}{}:
					default: // one is running
					}
				}
			}
		}
		for _, o := range b.reqs {
			if o.err == nil && err != nil {
				o.req.done <- err
			} else {
				o.req.done <- o.err
			}
		}
		if cap(buf) > 16<<20 {
			buf = nil // do not keep a huge record's buffer
		}
	}
}

// signReceipts signs a batch's receipts that wait for it, on all CPUs
// when there are many, and sets their signatures under mu, for the writer
// may be reading them.
func (s *Store) signReceipts(rs []receiptSign) {
	if len(rs) == 0 {
		return
	}
	sigs := make([]string, len(rs))
	const perWorker = 16
	workers := min(runtime.GOMAXPROCS(0), (len(rs)+perWorker-1)/perWorker)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(rs); i += workers {
				sigs[i] = rs[i].sign()
			}
		})
	}
	wg.Wait()
	s.st.mu.Lock()
	for i := range rs {
		rs[i].v.val.Signature = sigs[i]
	}
	s.st.mu.Unlock()
}

// publish makes a durable version the one new Views read, and wakes
// WaitEvents if it has new events.
func (s *Store) publish(p published) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.events > s.pub.events {
		close(s.newSeq)
		s.newSeq = make(chan struct{})
	}
	s.pub = p
}

// oldestRead returns the oldest version that an open View reads, or the
// newest durable one if none is open, and how many events and receipts
// are durable.
func (s *Store) oldestRead() (oldest uint64, events, receipts int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.pub.ver
	for v := range s.active {
		o = min(o, v)
	}
	return o, s.pub.events, s.pub.receipts
}

// View runs fn against the newest durable version of the state. The
// version holds until fn returns; Updates that commit meanwhile do not
// change what fn reads.
func (s *Store) View(ctx context.Context, fn func(market.ReadTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	s.mu.Lock()
	p := s.pub
	s.active[p.ver]++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.active[p.ver]--; s.active[p.ver] == 0 {
			delete(s.active, p.ver)
		}
		s.mu.Unlock()
	}()
	r := &reader{s: s.st, snap: p.ver, events: p.events, receipts: p.receipts, locked: true}
	defer func() { r.done = true }()
	return fn(r)
}

// Stats are the store's counters.
type Stats struct {
	Records  uint64 // journal records written since Open, each with one fsync
	Changes  uint64 // object values, events and receipts they held
	Archived uint64 // values moved to the archive since Open
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{Records: s.stats.records.Load(), Changes: s.stats.changes.Load(), Archived: s.stats.archived.Load()}
}

// WaitEvents blocks until an event with a sequence number above after is
// durable, ctx ends, or the store closes.
func (s *Store) WaitEvents(ctx context.Context, after int64) error {
	for {
		s.mu.Lock()
		last, ch := s.pub.events, s.newSeq
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
