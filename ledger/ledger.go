package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options configure an embedded ledger.
type Options struct {
	// Now is the ledger's clock. It drives timestamps and pending expiry.
	// Defaults to time.Now.
	Now func() time.Time
	// Logger receives operational messages. Defaults to discarding them.
	Logger *slog.Logger
	// ExpiryInterval, when positive, expires due pending transfers on a
	// timer. Whatever the setting, every batch first expires what is due,
	// and Tick does so on demand.
	ExpiryInterval time.Duration
	// ExpectedTransfers sizes the id index up front, to avoid regrowth.
	ExpectedTransfers int
	// NoProjection disables the SQLite projection; AccountTransfers then
	// returns an error. For tools that only need the journal.
	NoProjection bool
	// CommitDelay bounds how long a record waits, once the journal is
	// free, for the callers the last fsync released to call again, so
	// that they share the next fsync instead of the one after (see
	// applier). Zero means 100µs; negative never waits.
	CommitDelay time.Duration
}

// Ledger is the embedded ledger engine. All its methods are safe for
// concurrent use. Concurrent calls are batched into one journal record
// and one fsync (group commit); no call returns before the record holding
// its effects, and the effects it observed, is durable.
type Ledger struct {
	dir    string
	now    func() time.Time
	log    *slog.Logger
	lock   *os.File
	file   *os.File
	reqs   chan *request
	toSync chan *syncItem
	free   chan []byte
	stop   chan struct{}
	done   chan struct{}

	// Owned by the applier goroutine.
	st       *state
	seq      uint64
	prevHash [32]byte
	end      int64       // journal offset after the last record built
	inflight []*syncItem // records handed to the syncer, maybe unwritten
	inflMu   sync.Mutex

	// Group commit's wait for returning callers: the syncer counts the
	// requests each fsync released (relCount, then relEpoch); the applier
	// counts the requests that arrived since (arrivals) against how many
	// were released (expect).
	commitDelay      time.Duration
	relEpoch         atomic.Uint64
	relCount         atomic.Int64
	seenEpoch        uint64
	expect, arrivals int

	durable atomic.Int64 // journal offset up to which records are synced
	failed  atomic.Pointer[error]
	closing sync.Once
	closeMu sync.RWMutex
	closed  bool

	stats struct {
		records, syncs, events atomic.Uint64
	}

	proj *projection
}

type reqKind uint8

const (
	reqAccounts reqKind = iota
	reqTransfers
	reqSetMandate
	reqGetMandate
	reqLookupAccounts
	reqLookupTransfer
	reqPendingStatus
	reqTick
	reqCheck
)

type request struct {
	kind      reqKind
	accounts  []Account
	transfers []Transfer
	mandate   Mandate
	ids       []ID
	results   []Result
	found     bool
	transfer  Transfer
	status    PendingStatus
	n         int
	err       error
	done      chan struct{}
}

// size bounds the journal bytes a request can add, expiries aside.
func (r *request) size() int {
	switch r.kind {
	case reqAccounts:
		return accountEventSize * len(r.accounts)
	case reqTransfers:
		return transferEventSize * len(r.transfers)
	case reqSetMandate:
		return mandateEventBase + 16*len(r.mandate.Counterparties)
	}
	return 0
}

type syncItem struct {
	buf  []byte // the sealed record, or nil when it holds no events
	off  int64
	end  int64
	reqs []*request
}

const (
	recordTarget   = 4 << 20 // hand a record to the syncer once it is this big
	maxExpiryBatch = MaxBatch
)

// Open opens or creates the ledger in dir, replaying its journal. Only one
// process may have a data directory open; a second Open fails.
func Open(dir string, opts Options) (*Ledger, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create ledger dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	l := &Ledger{
		dir:    dir,
		now:    opts.Now,
		log:    opts.Logger,
		lock:   lock,
		reqs:   make(chan *request, 1024),
		toSync: make(chan *syncItem),
		free:   make(chan []byte, 4),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		st:     newState(opts.ExpectedTransfers),
	}
	switch {
	case opts.CommitDelay == 0:
		l.commitDelay = 100 * time.Microsecond
	case opts.CommitDelay > 0:
		l.commitDelay = opts.CommitDelay
	}
	fail := func(err error) (*Ledger, error) {
		if l.file != nil {
			l.file.Close()
		}
		lock.Close()
		return nil, err
	}
	path := filepath.Join(dir, journalFile)
	rf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fail(fmt.Errorf("open journal: %w", err))
	}
	l.file = rf
	l.st.readAt = l.readAt
	start := time.Now()
	end, last, err := scanJournal(path, l.st.replayRecord)
	if err != nil {
		return fail(fmt.Errorf("recover ledger %s: %w", dir, err))
	}
	if fi, err := rf.Stat(); err == nil && fi.Size() > end {
		l.log.Warn("ledger: dropping torn journal tail", "offset", end, "bytes", fi.Size()-end)
		if err := rf.Truncate(end); err != nil {
			return fail(fmt.Errorf("truncate journal tail: %w", err))
		}
	}
	// The records just replayed may sit only in the page cache, written by
	// a process that died before its fsync. Sync them before answering
	// anything built on them: a lookup or an Exists answer writes no
	// record, so no later fsync would come first.
	if err := rf.Sync(); err != nil {
		return fail(fmt.Errorf("sync journal: %w", err))
	}
	if err := syncDir(dir); err != nil {
		return fail(err)
	}
	l.seq, l.prevHash, l.end = last.seq, last.hash, end
	l.durable.Store(end)
	l.log.Info("ledger: recovered", "records", last.seq, "events", l.st.committed,
		"accounts", len(l.st.accts), "pending", len(l.st.pending), "elapsed", time.Since(start))
	if !opts.NoProjection {
		p, err := openProjection(dir, path, l.log)
		if err != nil {
			return fail(err)
		}
		l.proj = p
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.applier() }()
	go func() { defer wg.Done(); l.syncer() }()
	if l.proj != nil {
		wg.Add(1)
		go func() { defer wg.Done(); l.proj.run(l.stop, l.durable.Load) }()
	}
	if opts.ExpiryInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); l.ticker(opts.ExpiryInterval) }()
	}
	go func() { wg.Wait(); close(l.done) }()
	return l, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock ledger dir %s: another process has it open: %w", dir, err)
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// readAt reads journal bytes for the applier: from a record still in
// flight to the syncer, or from the file.
func (l *Ledger) readAt(b []byte, off int64) error {
	l.inflMu.Lock()
	for _, it := range l.inflight {
		if it.buf != nil && off >= it.off && off < it.end {
			copy(b, it.buf[off-it.off:])
			l.inflMu.Unlock()
			return nil
		}
	}
	l.inflMu.Unlock()
	_, err := l.file.ReadAt(b, off)
	return err
}

// Close stops the ledger. Requests being applied finish and become durable;
// requests still queued fail with ErrClosed, having changed nothing.
func (l *Ledger) Close() error {
	l.closing.Do(func() {
		l.closeMu.Lock()
		l.closed = true
		l.closeMu.Unlock()
		close(l.stop)
		<-l.done
		if l.proj != nil {
			l.proj.close()
		}
		l.file.Close()
		l.lock.Close()
	})
	if p := l.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (l *Ledger) err() error {
	if p := l.failed.Load(); p != nil {
		return fmt.Errorf("%w: %v", ErrClosed, *p)
	}
	return ErrClosed
}

// submit hands r to the applier and waits until it is durable.
func (l *Ledger) submit(ctx context.Context, r *request) error {
	r.done = make(chan struct{})
	l.closeMu.RLock()
	if l.closed || l.failed.Load() != nil {
		l.closeMu.RUnlock()
		return l.err()
	}
	select {
	case l.reqs <- r:
	case <-ctx.Done():
		l.closeMu.RUnlock()
		return ctx.Err()
	}
	l.closeMu.RUnlock()
	// Once submitted, the request completes even if ctx ends: its effects
	// may already be journaled. Waiting out ctx would lose the answer.
	<-r.done
	return r.err
}

// CreateAccounts creates accounts, one result per account. An existing id
// with the same flags, code and user data gives Exists.
func (l *Ledger) CreateAccounts(ctx context.Context, accounts []Account) ([]Result, error) {
	if len(accounts) > MaxBatch {
		return nil, ErrBatchTooLarge
	}
	r := &request{kind: reqAccounts, accounts: accounts, results: make([]Result, len(accounts))}
	if err := l.submit(ctx, r); err != nil {
		return nil, err
	}
	return r.results, nil
}

// CreateTransfers applies a batch of transfers, one result per transfer,
// and returns once the committed ones are durable. Linked chains commit
// all or nothing. A transfer whose id exists with the same fields gives
// Exists and changes nothing, so retrying a batch is always safe.
func (l *Ledger) CreateTransfers(ctx context.Context, transfers []Transfer) ([]Result, error) {
	if len(transfers) > MaxBatch {
		return nil, ErrBatchTooLarge
	}
	r := &request{kind: reqTransfers, transfers: transfers, results: make([]Result, len(transfers))}
	if err := l.submit(ctx, r); err != nil {
		return nil, err
	}
	return r.results, nil
}

// SetMandate sets or replaces the mandate on an account; a mandate with no
// limits removes it. Only the account's owner or the market operator may
// call it. It returns ErrNotFound for an unknown account and ErrInvalid for
// a malformed mandate.
func (l *Ledger) SetMandate(ctx context.Context, m Mandate) error {
	// The ledger keeps the mandate; the caller keeps its slice.
	m.Counterparties = slices.Clone(m.Counterparties)
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	r := &request{kind: reqSetMandate, mandate: m}
	if err := l.submit(ctx, r); err != nil {
		return err
	}
	if r.results[0] == AccountNotFound {
		return ErrNotFound
	}
	return nil
}

// Mandate returns the account's mandate, and false when it has none.
func (l *Ledger) Mandate(ctx context.Context, account ID) (Mandate, bool, error) {
	r := &request{kind: reqGetMandate, ids: []ID{account}}
	if err := l.submit(ctx, r); err != nil {
		return Mandate{}, false, err
	}
	return r.mandate, r.found, nil
}

// LookupAccounts returns the accounts that exist among ids, in order.
func (l *Ledger) LookupAccounts(ctx context.Context, ids []ID) ([]Account, error) {
	if len(ids) > MaxBatch {
		return nil, ErrBatchTooLarge
	}
	r := &request{kind: reqLookupAccounts, ids: ids}
	if err := l.submit(ctx, r); err != nil {
		return nil, err
	}
	return r.accounts, nil
}

// LookupTransfer returns the committed transfer with id, or ErrNotFound.
// A post's Amount is what it posted, and its accounts are the pending
// transfer's.
func (l *Ledger) LookupTransfer(ctx context.Context, id ID) (Transfer, error) {
	r := &request{kind: reqLookupTransfer, ids: []ID{id}}
	if err := l.submit(ctx, r); err != nil {
		return Transfer{}, err
	}
	if !r.found {
		return Transfer{}, ErrNotFound
	}
	return r.transfer, nil
}

// PendingStatus returns the state of a pending transfer: StatusNone when id
// is no pending transfer, else pending, posted, voided or expired.
func (l *Ledger) PendingStatus(ctx context.Context, id ID) (PendingStatus, error) {
	r := &request{kind: reqPendingStatus, ids: []ID{id}}
	if err := l.submit(ctx, r); err != nil {
		return StatusNone, err
	}
	return r.status, nil
}

// Tick expires the pending transfers whose timeout has passed on the
// ledger's clock, and returns how many it expired.
func (l *Ledger) Tick(ctx context.Context) (int, error) {
	// A request expires at most maxExpiryBatch, to bound its record; a
	// full batch means more may be due.
	total := 0
	for {
		r := &request{kind: reqTick}
		if err := l.submit(ctx, r); err != nil {
			return total, err
		}
		total += r.n
		if r.n < maxExpiryBatch {
			return total, nil
		}
	}
}

// CheckInvariants verifies, on the live state, that credits are conserved,
// that no wallet is below zero, and that pending counters match the open
// pending transfers. It returns an error describing the first breach.
func (l *Ledger) CheckInvariants(ctx context.Context) error {
	r := &request{kind: reqCheck}
	if err := l.submit(ctx, r); err != nil {
		return err
	}
	return r.err
}

// Stats are the engine's counters.
type Stats struct {
	Records uint64 // journal records written
	Syncs   uint64 // fsyncs
	Events  uint64 // events committed since open
}

// Stats returns the engine's counters.
func (l *Ledger) Stats() Stats {
	return Stats{Records: l.stats.records.Load(), Syncs: l.stats.syncs.Load(), Events: l.stats.events.Load()}
}

// applier owns the state. It folds requests into the record being built
// and hands the record to the syncer as soon as the syncer is free, so
// that requests arriving during an fsync share the next one.
//
// With callers that each wait for their last call before the next (the
// usual shape: an agent, a handler), handing over at once splits them in
// two halves that alternate between fsyncs. So when the syncer is free but
// fewer requests have arrived since the last fsync released its callers
// than it released, the applier waits up to commitDelay for the rest: the
// next fsync then carries all of them. A caller that does not come back
// costs the record at most that delay.
func (l *Ledger) applier() {
	defer close(l.toSync)
	var (
		cur     *syncItem
		buffers = 0
		linger  *time.Timer
	)
	newRecord := func() {
		var buf []byte
		select {
		case buf = <-l.free:
		default:
			if buffers < 3 {
				buffers++
				buf = make([]byte, 0, recordTarget+2<<20)
			} else {
				buf = <-l.free
			}
		}
		l.reclaim()
		cur = &syncItem{off: l.end}
		l.st.buf = append(buf[:0], make([]byte, headerSize)...)
		l.st.base = l.end
		l.st.count = 0
	}
	handOff := func() {
		it := cur
		cur = nil
		if l.st.count > 0 {
			l.seq++
			l.prevHash = sealRecord(l.st.buf, l.seq, l.st.now, l.st.count, l.prevHash)
			it.buf = l.st.buf
			it.end = l.end + int64(len(it.buf))
			l.end = it.end
			l.stats.events.Add(uint64(l.st.count))
		} else {
			l.free <- l.st.buf
			it.end = it.off
		}
		l.st.buf = nil
		l.inflMu.Lock()
		l.inflight = append(l.inflight, it)
		l.inflMu.Unlock()
		l.toSync <- it
	}
	// take folds a request into the record being built, starting a
	// record if there is none, or the next one if the request does not
	// fit; it reports whether it handed the record over for that.
	take := func(r *request) (handed bool) {
		l.arrived()
		if l.failed.Load() != nil {
			l.refuse(r)
			return false
		}
		switch {
		case cur == nil:
			newRecord()
		case len(l.st.buf)+r.size() > recordTarget+1<<20:
			handOff()
			newRecord()
			handed = true
		}
		l.apply(r, cur)
		return handed
	}
	// wait lets the record, once the syncer is free, absorb returning
	// callers before it is handed over. It reports whether it handed the
	// record over itself, and false in ok if the ledger is stopping.
	wait := func() (handed, ok bool) {
		if l.commitDelay <= 0 {
			return false, true
		}
		if e := l.relEpoch.Load(); e != l.seenEpoch {
			// The fsync that just ended released its callers; none of
			// them has called again yet.
			l.seenEpoch, l.expect, l.arrivals = e, int(l.relCount.Load()), 0
		}
		if l.arrivals >= l.expect {
			return false, true
		}
		if linger == nil {
			linger = time.NewTimer(l.commitDelay)
		} else {
			linger.Reset(l.commitDelay)
		}
		defer linger.Stop()
		for l.arrivals < l.expect && len(l.st.buf) < recordTarget {
			select {
			case r := <-l.reqs:
				if take(r) {
					return true, true
				}
			case <-linger.C:
				return false, true
			case <-l.stop:
				return false, false
			}
		}
		return false, true
	}
	for {
		if cur == nil {
			select {
			case r := <-l.reqs:
				take(r)
			case <-l.stop:
				l.drain()
				return
			}
			continue
		}
		if len(l.st.buf) >= recordTarget {
			handOff()
			continue
		}
		select {
		case l.toSync <- nil:
			// The syncer took the nil, so it is idle: seal the record and
			// hand it over. Sealing only when the syncer is free lets the
			// record keep absorbing requests during the previous fsync.
			handed, ok := wait()
			if !ok {
				handOff()
				l.drain()
				return
			}
			if !handed {
				handOff()
			}
		case r := <-l.reqs:
			take(r)
		case <-l.stop:
			handOff()
			l.drain()
			return
		}
	}
}

// arrived counts a request the applier received toward the callers the
// last fsync released (see applier).
func (l *Ledger) arrived() {
	if e := l.relEpoch.Load(); e != l.seenEpoch {
		l.seenEpoch = e
		l.expect = int(l.relCount.Load())
		l.arrivals = 0
	}
	l.arrivals++
}

// refuse fails a request without applying it, once a journal write has
// failed. Nothing can be made durable any more, and the record buffers
// that failed writes held never return to the pool: building another
// record could wait for one forever, and Close with it.
func (l *Ledger) refuse(r *request) {
	r.err = l.err()
	close(r.done)
}

// drain fails the requests still queued at shutdown.
func (l *Ledger) drain() {
	for {
		select {
		case r := <-l.reqs:
			r.err = ErrClosed
			close(r.done)
		default:
			return
		}
	}
}

// reclaim drops in-flight records that the syncer has written.
func (l *Ledger) reclaim() {
	d := l.durable.Load()
	l.inflMu.Lock()
	n := 0
	for _, it := range l.inflight {
		if it.buf != nil && it.end > d {
			l.inflight[n] = it
			n++
		}
	}
	clear(l.inflight[n:])
	l.inflight = l.inflight[:n]
	l.inflMu.Unlock()
}

func (l *Ledger) apply(r *request, it *syncItem) {
	s := l.st
	s.now = l.now().UnixNano()
	it.reqs = append(it.reqs, r)
	if len(s.expiry) > 0 && s.expiry[0].at <= s.now {
		r.n = s.expireDueMax(maxExpiryBatch)
	}
	switch r.kind {
	case reqAccounts:
		s.createAccounts(r.accounts, r.results)
	case reqTransfers:
		s.createTransfers(r.transfers, r.results)
	case reqSetMandate:
		r.results = []Result{s.setMandate(&r.mandate, s.nextTS())}
	case reqGetMandate:
		if i, ok := s.accounts[r.ids[0]]; ok && s.mandate[i] != nil {
			r.mandate, r.found = s.mandate[i].Mandate, true
			r.mandate.Counterparties = append([]ID(nil), r.mandate.Counterparties...)
		}
	case reqLookupAccounts:
		for _, id := range r.ids {
			if i, ok := s.accounts[id]; ok {
				r.accounts = append(r.accounts, s.accts[i])
			}
		}
	case reqLookupTransfer:
		if off, ok := s.findTransfer(r.ids[0]); ok {
			r.transfer, _ = s.transferAt(off)
			r.found = true
		}
	case reqPendingStatus:
		r.status = s.pendingStatusOf(r.ids[0])
	case reqTick:
		// Expired above.
	case reqCheck:
		r.err = s.checkInvariants()
	}
}

func (s *state) expireDueMax(max int) int {
	n := 0
	for n < max && len(s.expiry) > 0 && s.expiry[0].at <= s.now {
		n += s.expireOne()
	}
	return n
}

// syncer writes and fsyncs records in order and releases their requests.
func (l *Ledger) syncer() {
	for it := range l.toSync {
		if it == nil {
			continue
		}
		if it.buf != nil && l.failed.Load() == nil {
			if err := l.writeSync(it); err != nil {
				l.log.Error("ledger: journal write failed; stopping", "err", err)
				l.failed.Store(&err)
			}
		}
		if l.failed.Load() != nil {
			for _, r := range it.reqs {
				r.err = l.err()
				close(r.done)
			}
			continue
		}
		l.durable.Store(it.end)
		if l.proj != nil {
			l.proj.notify()
		}
		l.relCount.Store(int64(len(it.reqs)))
		l.relEpoch.Add(1)
		for _, r := range it.reqs {
			close(r.done)
		}
		if it.buf != nil {
			select {
			case l.free <- it.buf:
			default:
			}
		}
	}
}

func (l *Ledger) writeSync(it *syncItem) error {
	if _, err := l.file.WriteAt(it.buf, it.off); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := datasync(l.file); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	l.stats.records.Add(1)
	l.stats.syncs.Add(1)
	return nil
}

func (l *Ledger) ticker(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if _, err := l.Tick(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
				l.log.Error("ledger: expiry tick", "err", err)
			}
		case <-l.stop:
			return
		}
	}
}
