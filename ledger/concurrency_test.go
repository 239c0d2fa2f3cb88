package ledger_test

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/ledger"
)

// The concurrency tests run many goroutines against a few hot accounts,
// under -race in CI. Each goroutine keeps its own account of what the
// ledger acknowledged to it, and the totals must match the ledger's.

const (
	hotTreasury = 1
	hotMarket   = 2 // a plain account that collects fees
	hotFirst    = 10
	hotWallets  = 4
	hotFunds    = 5_000
)

func hotWallet(i int) uint64 { return uint64(hotFirst + i) }

func hotAccounts() []uint64 {
	ns := []uint64{hotTreasury, hotMarket}
	for i := range hotWallets {
		ns = append(ns, hotWallet(i))
	}
	return ns
}

// newHotLedger opens a ledger with the hot accounts, each wallet funded.
func newHotLedger(t *testing.T, dir string) *ledger.Ledger {
	t.Helper()
	l := mustOpen(t, dir, ledger.Options{})
	fundHotAccounts(t, l)
	return l
}

func fundHotAccounts(t *testing.T, l *ledger.Ledger) {
	t.Helper()
	as := []ledger.Account{{ID: id(hotTreasury)}, {ID: id(hotMarket)}}
	var funding []ledger.Transfer
	for i := range hotWallets {
		as = append(as, ledger.Account{ID: id(hotWallet(i)), Flags: ledger.DebitsMustNotExceedCredits})
		funding = append(funding, plain(uint64(1+i), hotTreasury, hotWallet(i), hotFunds))
	}
	mustCreateAccounts(t, l, as...)
	mustTransfer(t, l, funding...)
}

// tally is what one goroutine saw acknowledged: the counters it moved.
type tally map[ledger.ID]counters

func (tl tally) post(from, to ledger.ID, amount uint64) {
	d, c := tl[from], tl[to]
	d.DebitsPosted += amount
	c.CreditsPosted += amount
	tl[from], tl[to] = d, c
}

func TestConcurrentTransfersOnHotAccounts(t *testing.T) {
	const (
		workers = 16
		ops     = 200
	)
	dir := t.TempDir()
	l := newHotLedger(t, dir)
	initial := mustLookupAccounts(t, l, hotAccounts()...)

	// A reader checks every snapshot while the writers run: each is
	// taken between two batches, so money must be conserved in each.
	stop := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		readerDone <- func() error {
			for {
				select {
				case <-stop:
					return nil
				default:
				}
				as, err := l.LookupAccounts(t.Context(), []ledger.ID{id(hotTreasury), id(hotMarket),
					id(hotWallet(0)), id(hotWallet(1)), id(hotWallet(2)), id(hotWallet(3))})
				if err != nil {
					return err
				}
				var sum int64
				for _, a := range as {
					sum += a.Balance().Posted + a.Balance().Pending
					if a.Flags&ledger.DebitsMustNotExceedCredits != 0 && a.Balance().Available < 0 {
						return errors.New("a wallet went below zero: " + a.ID.String())
					}
				}
				if sum != 0 {
					return errors.New("a snapshot's balances do not sum to zero")
				}
			}
		}()
	}()

	tallies := make([]tally, workers)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		tallies[w] = tally{}
		wg.Go(func() {
			errs <- hotWorker(t, l, w, ops, tallies[w])
		})
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := <-readerDone; err != nil {
		t.Fatalf("reader: %v", err)
	}

	want := map[ledger.ID]counters{}
	for _, a := range initial {
		want[a.ID] = countersOf(a)
	}
	for _, tl := range tallies {
		for x, c := range tl {
			w := want[x]
			w.DebitsPosted += c.DebitsPosted
			w.CreditsPosted += c.CreditsPosted
			want[x] = w
		}
	}
	check := func(stage string) {
		t.Helper()
		got := map[ledger.ID]counters{}
		for _, a := range mustLookupAccounts(t, l, hotAccounts()...) {
			got[a.ID] = countersOf(a)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: counters against what the workers saw acknowledged (-want +got):\n%s", stage, diff)
		}
		mustCheckInvariants(t, l)
	}
	check("live")
	mustClose(t, l)
	if _, err := ledger.Verify(dir); err != nil {
		t.Fatalf("verify: %v", err)
	}
	l = mustOpen(t, dir, ledger.Options{})
	check("after restart")
}

// hotWorker runs a mix of transfers on the hot accounts and tallies what
// was acknowledged. Ids are unique to the worker.
func hotWorker(t *testing.T, l *ledger.Ledger, w, ops int, tl tally) error {
	rng := rand.New(rand.NewPCG(uint64(w), 7))
	n := uint64(w+1) << 32
	next := func() uint64 { n++; return n }
	wallet := func() ledger.ID { return id(hotWallet(rng.IntN(hotWallets))) }
	two := func() (ledger.ID, ledger.ID) {
		a := rng.IntN(hotWallets)
		b := (a + 1 + rng.IntN(hotWallets-1)) % hotWallets
		return id(hotWallet(a)), id(hotWallet(b))
	}
	submit := func(xs ...ledger.Transfer) ([]ledger.Result, error) {
		return l.CreateTransfers(t.Context(), xs)
	}
	for range ops {
		switch rng.IntN(4) {
		case 0: // plain
			from, to := two()
			x := ledger.Transfer{ID: id(next()), DebitAccountID: from, CreditAccountID: to, Amount: 1 + rng.Uint64N(500)}
			res, err := submit(x)
			if err != nil {
				return err
			}
			if res[0] == ledger.OK {
				tl.post(from, to, x.Amount)
				// Read your writes, while others' records are in flight.
				got, err := l.LookupTransfer(t.Context(), x.ID)
				if err != nil {
					return err
				}
				got.Timestamp = 0
				if got != x {
					return errors.New("an acknowledged transfer reads back changed: " + x.ID.String())
				}
			} else if res[0] != ledger.InsufficientFunds {
				return errors.New("plain transfer: " + res[0].String())
			}
			// A retry of an acknowledged transfer is idempotent.
			if res[0] == ledger.OK {
				again, err := submit(x)
				if err != nil {
					return err
				}
				if again[0] != ledger.Exists {
					return errors.New("retry: " + again[0].String())
				}
			}
		case 1, 2: // reserve, then post part of it or void it
			from, to := two()
			p := ledger.Transfer{ID: id(next()), DebitAccountID: from, CreditAccountID: to,
				Amount: 1 + rng.Uint64N(500), Flags: ledger.Pending}
			res, err := submit(p)
			if err != nil {
				return err
			}
			if res[0] != ledger.OK {
				continue
			}
			r := ledger.Transfer{ID: id(next()), PendingID: p.ID, Flags: ledger.VoidPending}
			if rng.IntN(2) == 0 {
				r.Flags, r.Amount = ledger.PostPending, rng.Uint64N(p.Amount+1)
			}
			res, err = submit(r)
			if err != nil {
				return err
			}
			if res[0] != ledger.OK {
				return errors.New("resolving an own reservation: " + res[0].String())
			}
			if r.Flags == ledger.PostPending {
				posted := r.Amount
				if posted == 0 {
					posted = p.Amount
				}
				tl.post(from, to, posted)
			}
		case 3: // a payment with a fee, linked
			from, to := two()
			pay := ledger.Transfer{ID: id(next()), DebitAccountID: from, CreditAccountID: to,
				Amount: 1 + rng.Uint64N(2000), Flags: ledger.Linked}
			fee := ledger.Transfer{ID: id(next()), DebitAccountID: wallet(), CreditAccountID: id(hotMarket), Amount: 1 + rng.Uint64N(50)}
			res, err := submit(pay, fee)
			if err != nil {
				return err
			}
			switch {
			case res[0] == ledger.OK && res[1] == ledger.OK:
				tl.post(pay.DebitAccountID, pay.CreditAccountID, pay.Amount)
				tl.post(fee.DebitAccountID, fee.CreditAccountID, fee.Amount)
			case res[0] == ledger.OK || res[1] == ledger.OK:
				return errors.New("a linked chain committed in part")
			}
		}
	}
	return nil
}

func TestConcurrentRetriesCommitOnce(t *testing.T) {
	const goroutines = 32
	l := newHotLedger(t, t.TempDir())
	x := plain(100, hotWallet(0), hotWallet(1), 7)
	results := make([]ledger.Result, goroutines)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			<-start
			res, err := l.CreateTransfers(t.Context(), []ledger.Transfer{x})
			if err != nil {
				t.Error(err)
				return
			}
			results[g] = res[0]
		})
	}
	close(start)
	wg.Wait()
	count := map[ledger.Result]int{}
	for _, r := range results {
		count[r]++
	}
	if diff := cmp.Diff(map[ledger.Result]int{ledger.OK: 1, ledger.Exists: goroutines - 1}, count); diff != "" {
		t.Errorf("results of one transfer sent %d times at once (-want +got):\n%s", goroutines, diff)
	}
	wantCounters(t, l, hotWallet(1), counters{CreditsPosted: hotFunds + 7})
}

func TestConcurrentResolutionsResolveOnce(t *testing.T) {
	const goroutines = 16
	l := newHotLedger(t, t.TempDir())
	for round := range uint64(5) {
		pid := 1000 + round*100
		mustTransfer(t, l, pending(pid, hotWallet(0), hotWallet(1), 10, 0))
		results := make([]ledger.Result, goroutines)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				<-start
				r := void(pid+1+uint64(g), pid)
				if g%2 == 0 {
					r = post(pid+1+uint64(g), pid, 0)
				}
				res, err := l.CreateTransfers(t.Context(), []ledger.Transfer{r})
				if err != nil {
					t.Error(err)
					return
				}
				results[g] = res[0]
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for g, r := range results {
			if r == ledger.OK {
				if winner >= 0 {
					t.Fatalf("round %d: reservation resolved twice, by %d and %d", round, winner, g)
				}
				winner = g
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody resolved the reservation: %v", round, codes(results))
		}
		want, status := ledger.PendingAlreadyVoided, ledger.StatusVoided
		if winner%2 == 0 {
			want, status = ledger.PendingAlreadyPosted, ledger.StatusPosted
		}
		for g, r := range results {
			if g != winner && r != want {
				t.Errorf("round %d: loser %d got %s, want %s", round, g, r, want)
			}
		}
		wantStatus(t, l, pid, status)
	}
	mustCheckInvariants(t, l)
}

func TestConcurrentExpiryAndPostResolveOnce(t *testing.T) {
	c := newClock()
	l := mustOpen(t, t.TempDir(), ledger.Options{Now: c.Now})
	mustCreateAccounts(t, l, ledger.Account{ID: id(treasury)}, ledger.Account{ID: id(bob)})
	for round := range uint64(20) {
		pid := 100 + round*10
		mustTransfer(t, l, pending(pid, treasury, bob, 10, time.Second))
		start := make(chan struct{})
		var wg sync.WaitGroup
		var posted ledger.Result
		var expired int
		wg.Go(func() {
			<-start
			c.Advance(2 * time.Second)
			n, err := l.Tick(t.Context())
			if err != nil {
				t.Error(err)
			}
			expired = n
		})
		wg.Go(func() {
			<-start
			res, err := l.CreateTransfers(t.Context(), []ledger.Transfer{post(pid+1, pid, 0)})
			if err != nil {
				t.Error(err)
				return
			}
			posted = res[0]
		})
		close(start)
		wg.Wait()
		switch {
		case posted == ledger.OK && expired == 0:
			wantStatus(t, l, pid, ledger.StatusPosted)
		case posted == ledger.PendingExpired && expired <= 1:
			// The tick, or the post's own request, expired it.
			wantStatus(t, l, pid, ledger.StatusExpired)
		default:
			t.Fatalf("round %d: post %s and %d expired", round, posted, expired)
		}
	}
	mustCheckInvariants(t, l)
}

func TestCloseUnderLoad(t *testing.T) {
	// Calls racing Close either succeed, durably, or fail with ErrClosed
	// having changed nothing.
	const goroutines = 8
	dir := t.TempDir()
	l := newHotLedger(t, dir)
	type outcome struct {
		x   ledger.Transfer
		err error
	}
	outcomes := make(chan outcome, 10_000)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := uint64(1); ; i++ {
				x := plain(uint64(g+1)<<32|i, hotTreasury, hotMarket, 1)
				res, err := l.CreateTransfers(t.Context(), []ledger.Transfer{x})
				if err == nil && res[0] != ledger.OK {
					t.Errorf("transfer %s: %s", x.ID, res[0])
				}
				outcomes <- outcome{x, err}
				if err != nil || i == 1000 {
					return
				}
			}
		})
	}
	// History queries race the close too: they answer, or say the ledger
	// is closed.
	wg.Go(func() {
		for {
			_, err := l.AccountTransfers(t.Context(), id(hotMarket), ledger.TransferPage{Limit: 1})
			if err != nil {
				if !errors.Is(err, ledger.ErrClosed) {
					t.Errorf("account transfers racing close: %v, want ErrClosed", err)
				}
				return
			}
		}
	})
	// Let some transfers through before closing.
	waitFor(t, func() bool { return len(outcomes) >= 50 })
	mustClose(t, l)
	wg.Wait()
	close(outcomes)

	l = mustOpen(t, dir, ledger.Options{})
	var ok, closed int
	for o := range outcomes {
		_, err := l.LookupTransfer(t.Context(), o.x.ID)
		switch {
		case o.err == nil:
			ok++
			if err != nil {
				t.Errorf("acknowledged transfer %s lost: %v", o.x.ID, err)
			}
		case errors.Is(o.err, ledger.ErrClosed):
			closed++
			if !errors.Is(err, ledger.ErrNotFound) {
				t.Errorf("transfer %s failed with ErrClosed but is in the ledger: %v", o.x.ID, err)
			}
		default:
			t.Errorf("transfer %s: %v", o.x.ID, o.err)
		}
	}
	if closed == 0 {
		t.Logf("no call raced the close (%d succeeded)", ok)
	}
	wantCounters(t, l, hotMarket, counters{CreditsPosted: uint64(ok)})
	mustCheckInvariants(t, l)
}

func TestJournalWriteFailureStopsTheLedger(t *testing.T) {
	// When the journal cannot be written, every call fails from then on,
	// none hangs, Close reports the failure, and a restart finds exactly
	// what was acknowledged before it.
	const goroutines = 32
	dir := t.TempDir()
	// Not mustOpen: a Close that hangs must fail this test, not hang its
	// cleanup too.
	l, err := ledger.Open(dir, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fundHotAccounts(t, l)
	mustTransfer(t, l, plain(100, hotTreasury, hotMarket, 1))
	if err := ledger.FailJournalWrites(l); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		x   ledger.Transfer
		err error
	}
	outcomes := make(chan outcome, goroutines*50)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := uint64(1); i <= 50; i++ {
				x := plain(uint64(g+1)<<32|i, hotTreasury, hotMarket, 1)
				_, err := l.CreateTransfers(t.Context(), []ledger.Transfer{x})
				outcomes <- outcome{x, err}
			}
		})
	}
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("calls still hang 30s after the journal stopped taking writes")
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case err := <-closed:
		if err == nil {
			t.Error("Close after a failed journal write returned no error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs after a failed journal write")
	}
	close(outcomes)
	for o := range outcomes {
		if !errors.Is(o.err, ledger.ErrClosed) {
			t.Fatalf("transfer %s after the journal failed: %v, want ErrClosed", o.x.ID, o.err)
		}
	}

	l = mustOpen(t, dir, ledger.Options{})
	wantCounters(t, l, hotMarket, counters{CreditsPosted: 1})
	mustCheckInvariants(t, l)
}

func TestConcurrentReadsOfRecordsInFlight(t *testing.T) {
	// Racers submit the same transfers in different orders, and each also
	// resubmits and reads the transfer its neighbour is sending right now.
	// That one is often in a record still being written, and must be read
	// back exactly from there: a resubmission is OK or Exists, never
	// exists_with_different_fields, and a lookup gives the fields sent.
	const (
		racers    = 6
		transfers = 150
	)
	l := newHotLedger(t, t.TempDir())
	want := func(i int) ledger.Transfer {
		return ledger.Transfer{ID: id(uint64(1_000 + i)), DebitAccountID: id(hotTreasury), CreditAccountID: id(hotMarket),
			Amount: uint64(i + 1), Code: uint16(i), UserData: id(uint64(i))}
	}
	var current [racers]atomic.Int64
	var committed sync.Map // transfer index -> racer that committed it
	submit := func(g, i int) {
		res, err := l.CreateTransfers(t.Context(), []ledger.Transfer{want(i)})
		if err != nil {
			t.Error(err)
			return
		}
		switch res[0] {
		case ledger.OK:
			if other, dup := committed.LoadOrStore(i, g); dup {
				t.Errorf("transfer %d committed by %d and %d", i, other, g)
			}
		case ledger.Exists:
		default:
			t.Errorf("racer %d, transfer %d: %s", g, i, res[0])
		}
	}
	var wg sync.WaitGroup
	for g := range racers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			for _, i := range rng.Perm(transfers) {
				current[g].Store(int64(i))
				submit(g, i)
				j := int(current[(g+1)%racers].Load())
				submit(g, j)
				got, err := l.LookupTransfer(t.Context(), want(j).ID)
				if err != nil {
					t.Errorf("transfer %d after it was submitted: %v", j, err)
					continue
				}
				got.Timestamp = 0
				if got != want(j) {
					t.Errorf("transfer %d read back as %+v", j, got)
				}
			}
		})
	}
	wg.Wait()
	var total uint64
	for i := range transfers {
		if _, ok := committed.Load(i); !ok {
			t.Errorf("transfer %d never committed", i)
		}
		total += want(i).Amount
	}
	wantCounters(t, l, hotMarket, counters{CreditsPosted: total})
	mustCheckInvariants(t, l)
}

// TestGroupCommitWaitsForReturningCallers runs callers that each wait for
// their last call before the next, as agents and handlers do. With a long
// CommitDelay, a record waits for every caller the previous fsync
// released, so each fsync carries all of them rather than alternating
// halves; the last record, whose callers do not come back, still goes
// out when the delay ends.
func TestGroupCommitWaitsForReturningCallers(t *testing.T) {
	const callers, calls = 16, 40
	l := mustOpen(t, t.TempDir(), ledger.Options{CommitDelay: time.Second})
	mustCreateAccounts(t, l, ledger.Account{ID: id(1)}, ledger.Account{ID: id(2)})
	before := l.Stats().Syncs
	var next atomic.Uint64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range calls {
				n := 1000 + next.Add(1)
				res, err := l.CreateTransfers(t.Context(), []ledger.Transfer{plain(n, 1, 2, 1)})
				if err != nil || res[0] != ledger.OK {
					t.Errorf("transfer %d: %v %v", n, res, err)
					return
				}
			}
		})
	}
	wg.Wait()
	syncs := l.Stats().Syncs - before
	// callers*calls transfers; full records would take calls fsyncs, the
	// alternating halves twice that. A few records form while the
	// callers first line up.
	if syncs > calls+calls/4 {
		t.Errorf("%d fsyncs for %d callers × %d calls: want about %d, one per round", syncs, callers, calls, calls)
	}
	mustCheckInvariants(t, l)
}
