package ledgertest

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/ledger"
)

// applied is a batch a goroutine submitted and the results it got.
type applied struct {
	xs  []ledger.Transfer
	res []ledger.Result
}

// model recomputes every account's counters from the transfers that
// committed (result OK), starting from the counters before them. Counters
// are sums, so the order in which concurrent batches committed does not
// matter. reserved holds every reservation that may be resolved, by id.
func model(start map[ledger.ID]counters, reserved map[ledger.ID]ledger.Transfer, log []applied) map[ledger.ID]counters {
	m := make(map[ledger.ID]counters, len(start))
	for k, v := range start {
		m[k] = v
	}
	for _, a := range log {
		for i, x := range a.xs {
			if a.res[i] != ledger.OK {
				continue
			}
			switch {
			case x.Flags&ledger.Pending != 0:
				d, c := m[x.DebitAccountID], m[x.CreditAccountID]
				d.DebitsPending += x.Amount
				c.CreditsPending += x.Amount
				m[x.DebitAccountID], m[x.CreditAccountID] = d, c
			case x.Flags&(ledger.PostPending|ledger.VoidPending) != 0:
				p := reserved[x.PendingID]
				amount := p.Amount
				d, c := m[p.DebitAccountID], m[p.CreditAccountID]
				d.DebitsPending -= amount
				c.CreditsPending -= amount
				if x.Flags&ledger.PostPending != 0 {
					moved := x.Amount
					if moved == 0 {
						moved = amount
					}
					d.DebitsPosted += moved
					c.CreditsPosted += moved
				}
				m[p.DebitAccountID], m[p.CreditAccountID] = d, c
			default:
				d, c := m[x.DebitAccountID], m[x.CreditAccountID]
				d.DebitsPosted += x.Amount
				c.CreditsPosted += x.Amount
				m[x.DebitAccountID], m[x.CreditAccountID] = d, c
			}
		}
	}
	return m
}

// snapshot returns the counters of the accounts.
func snapshot(t *testing.T, l Ledger, ns ...uint64) map[ledger.ID]counters {
	t.Helper()
	out := make(map[ledger.ID]counters)
	for _, a := range mustLookupAccounts(t, l, ns...) {
		out[a.ID] = countersOf(a)
	}
	if len(out) != len(ns) {
		t.Fatalf("found %d of %d accounts", len(out), len(ns))
	}
	return out
}

// wantConserved checks the ledger's invariants, that all balances sum to
// zero, and that every account holds what the model says.
func wantConserved(t *testing.T, l Ledger, want map[ledger.ID]counters, ns ...uint64) {
	t.Helper()
	mustCheckInvariants(t, l)
	got := snapshot(t, l, ns...)
	var sum int64
	for _, a := range mustLookupAccounts(t, l, ns...) {
		sum += a.Balance().Posted + a.Balance().Pending
	}
	if sum != 0 {
		t.Errorf("balances sum to %d, want 0", sum)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counters differ from the committed transfers (-model +ledger):\n%s", diff)
	}
}

func testConcurrency(t *testing.T, open Opener) {
	t.Run("HotAccountsConserveCredits", func(t *testing.T) { testHotAccounts(t, open) })
	t.Run("BatchesOnAHotAccount", func(t *testing.T) { testHotBatches(t, open) })
	t.Run("ConcurrentTicksExpireEachReservationOnce", func(t *testing.T) { testConcurrentTicks(t, open, false) })
	t.Run("TicksRacingResolutions", func(t *testing.T) { testConcurrentTicks(t, open, true) })
}

// testHotAccounts has many goroutines move money between four wallets at
// once: plain transfers, linked chains, reservations they resolve
// themselves, reservations they all race to resolve, and transfers they
// all submit under one id. Each shared reservation resolves once, each
// shared id commits once, and the counters are what the committed
// transfers add up to.
func testHotAccounts(t *testing.T, open Opener) {
	clock := NewClock()
	l := open(t, clock.Now)
	const (
		goroutines = 12
		rounds     = 30
		wallets    = 4
		shared     = 24 // reservations every goroutine tries to resolve
		dups       = 24 // transfers every goroutine submits under one id
	)
	wallet := func(n int) uint64 { return 10 + uint64(n%wallets) }
	accounts := []uint64{treasury}
	as := []ledger.Account{{ID: id(treasury)}}
	for n := range wallets {
		accounts = append(accounts, wallet(n))
		as = append(as, ledger.Account{ID: id(wallet(n)), Flags: ledger.DebitsMustNotExceedCredits})
	}
	mustCreateAccounts(t, l, as...)
	var setup []ledger.Transfer
	for n := range wallets {
		setup = append(setup, plain(100+uint64(n), treasury, wallet(n), 5000))
	}
	reserved := map[ledger.ID]ledger.Transfer{}
	for k := range shared {
		x := pending(200+uint64(k), wallet(k), wallet(k+1), 100, 0)
		setup = append(setup, x)
		reserved[x.ID] = x
	}
	mustTransfer(t, l, setup...)
	start := snapshot(t, l, accounts...)

	var (
		mu  sync.Mutex
		log []applied
		wg  sync.WaitGroup
	)
	submit := func(xs ...ledger.Transfer) []ledger.Result {
		res, err := l.CreateTransfers(t.Context(), xs)
		if err != nil {
			t.Errorf("create transfers: %v", err)
			return nil
		}
		mu.Lock()
		log = append(log, applied{xs, res})
		mu.Unlock()
		return res
	}
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			next := uint64(g+1) << 32
			uid := func() uint64 { next++; return next }
			var mine []ledger.Transfer // own open reservations
			for i := range rounds {
				a, b := rng.IntN(wallets), rng.IntN(wallets-1)
				if b >= a {
					b++
				}
				switch rng.IntN(6) {
				case 0:
					submit(plain(uid(), wallet(a), wallet(b), 1+rng.Uint64N(400)))
				case 1:
					submit(linked(plain(uid(), wallet(a), wallet(b), 1+rng.Uint64N(300))),
						linked(plain(uid(), wallet(b), wallet(a), 1+rng.Uint64N(300))),
						plain(uid(), treasury, wallet(b), 1+rng.Uint64N(50)))
				case 2:
					x := pending(uid(), wallet(a), wallet(b), 1+rng.Uint64N(300), 0)
					mu.Lock()
					reserved[x.ID] = x
					mu.Unlock()
					if res := submit(x); len(res) == 1 && res[0] == ledger.OK {
						mine = append(mine, x)
					}
				case 3:
					if len(mine) == 0 {
						continue
					}
					x := mine[0]
					mine = mine[1:]
					if rng.IntN(2) == 0 {
						submit(with(post(uid(), 0, rng.Uint64N(x.Amount+1)), func(p *ledger.Transfer) { p.PendingID = x.ID }))
					} else {
						submit(with(void(uid(), 0), func(p *ledger.Transfer) { p.PendingID = x.ID }))
					}
				case 4:
					k := uint64((g + i) % shared)
					if rng.IntN(2) == 0 {
						submit(post(uid(), 200+k, 0))
					} else {
						submit(void(uid(), 200+k))
					}
				case 5:
					k := uint64((g*7 + i) % dups)
					submit(plain(1000+k, treasury, wallet(int(k)), 7))
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	wantConserved(t, l, model(start, reserved, log), accounts...)
	resolved := map[ledger.ID]int{}
	dupOK := map[ledger.ID]int{}
	for k := range uint64(dups) {
		dupOK[id(1000+k)] = 0
	}
	for _, a := range log {
		for i, x := range a.xs {
			switch {
			case a.res[i] == ledger.OK && x.Flags&(ledger.PostPending|ledger.VoidPending) != 0:
				resolved[x.PendingID]++
			case a.res[i] == ledger.OK && x.Flags == 0:
				if _, ok := dupOK[x.ID]; ok {
					dupOK[x.ID]++
				}
			}
		}
	}
	for k := range uint64(shared) {
		pid := id(200 + k)
		st, err := l.PendingStatus(t.Context(), pid)
		if err != nil {
			t.Fatal(err)
		}
		switch n := resolved[pid]; {
		case n > 1:
			t.Errorf("reservation %s resolved %d times", pid, n)
		case n == 1 && st != ledger.StatusPosted && st != ledger.StatusVoided:
			t.Errorf("reservation %s resolved but its status is %s", pid, st)
		case n == 0 && st != ledger.StatusPending:
			t.Errorf("reservation %s never resolved but its status is %s", pid, st)
		}
	}
	for id, n := range dupOK {
		if n > 1 {
			t.Errorf("transfer %s submitted by many committed %d times", id, n)
		}
	}
}

// testHotBatches has several goroutines send large batches at once, every
// one of which debits the treasury, as a market's grants would.
func testHotBatches(t *testing.T, open Opener) {
	clock := NewClock()
	l := open(t, clock.Now)
	const (
		goroutines = 4
		batches    = 6
		size       = 250
		wallets    = 64
	)
	accounts := []uint64{treasury}
	as := []ledger.Account{{ID: id(treasury)}}
	for n := range uint64(wallets) {
		accounts = append(accounts, 100+n)
		as = append(as, ledger.Account{ID: id(100 + n), Flags: ledger.DebitsMustNotExceedCredits})
	}
	mustCreateAccounts(t, l, as...)
	start := snapshot(t, l, accounts...)
	var (
		mu  sync.Mutex
		log []applied
		wg  sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			next := uint64(g+1) << 32
			for range batches {
				xs := make([]ledger.Transfer, 0, size)
				for range size {
					next++
					from, to := uint64(treasury), 100+rng.Uint64N(wallets)
					if rng.IntN(2) == 0 {
						from = 100 + rng.Uint64N(wallets)
					}
					if from == to {
						to = treasury
					}
					xs = append(xs, plain(next, from, to, 1+rng.Uint64N(100)))
				}
				res, err := l.CreateTransfers(t.Context(), xs)
				if err != nil {
					t.Errorf("create transfers: %v", err)
					return
				}
				mu.Lock()
				log = append(log, applied{xs, res})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	wantConserved(t, l, model(start, nil, log), accounts...)
}

// testConcurrentTicks has several goroutines tick at once over many due
// reservations, and, with resolve, others try to post them at the same
// time. Each reservation expires exactly once and none is posted.
func testConcurrentTicks(t *testing.T, open Opener, resolve bool) {
	clock := NewClock()
	l := open(t, clock.Now)
	const reservations, tickers = 200, 6
	mustCreateAccounts(t, l, ledger.Account{ID: id(treasury)},
		ledger.Account{ID: id(alice), Flags: ledger.DebitsMustNotExceedCredits},
		ledger.Account{ID: id(bob), Flags: ledger.DebitsMustNotExceedCredits})
	mustTransfer(t, l, plain(1, treasury, alice, 10*reservations))
	var xs []ledger.Transfer
	for n := range uint64(reservations) {
		xs = append(xs, pending(100+n, alice, bob, 10, time.Duration(n%7+1)*time.Second))
	}
	mustTransfer(t, l, xs...)
	clock.Advance(time.Hour)

	var (
		mu      sync.Mutex
		expired int
		wg      sync.WaitGroup
	)
	for range tickers {
		wg.Go(func() {
			for {
				n, err := l.Tick(t.Context())
				if err != nil {
					t.Errorf("tick: %v", err)
					return
				}
				mu.Lock()
				expired += n
				mu.Unlock()
				if n == 0 {
					return
				}
			}
		})
	}
	if resolve {
		for g := range 4 {
			wg.Go(func() {
				for n := uint64(g); n < reservations; n += 4 {
					res, err := l.CreateTransfers(t.Context(), []ledger.Transfer{post(10_000+n, 100+n, 0)})
					if err != nil {
						t.Errorf("post: %v", err)
						return
					}
					if res[0] != ledger.PendingExpired {
						t.Errorf("post of reservation %d past its timeout: %s", 100+n, res[0])
					}
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if n := mustTick(t, l); n != 0 {
		t.Errorf("a tick after all the tickers finished expired %d", n)
	}
	if !resolve && expired != reservations {
		t.Errorf("ticks expired %d reservations, want %d", expired, reservations)
	}
	for n := range uint64(reservations) {
		wantStatus(t, l, 100+n, ledger.StatusExpired)
	}
	mustCheckInvariants(t, l)
	wantCounters(t, l, alice, counters{CreditsPosted: 10 * reservations})
	wantCounters(t, l, bob, counters{})
}
