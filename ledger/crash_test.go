package ledger_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/ledger"
)

const (
	crashChildEnv = "LEDGER_CRASH_CHILD" // "seed run dir"; set only in the child
	crashSeedEnv  = "LEDGER_CRASH_SEED"  // replays a logged seed
	crashRuns     = 24
	crashWorkers  = 8
	crashWallets  = 12
	crashMandated = 3 // wallets 0-2 get mandates, which the workload replaces
	crashMinDelay = 20 * time.Millisecond
	crashMaxDelay = 300 * time.Millisecond
	crashSample   = 1000 // older acknowledged transfers each check looks up again
)

// Transfer codes of the workload. A chain's legs are crashCodeLeg+0..2.
const (
	crashCodeMint = 1 + iota
	crashCodePay
	crashCodeHold
	crashCodeResolve
	crashCodeLeg = 10
)

var (
	crashTreasury = ledger.IDFromUint64(1)
	crashMarket   = ledger.IDFromUint64(2) // receives every chain's fee leg
	crashArbiter  = ledger.IDFromUint64(3) // receives every chain's arbiter leg
)

func crashWallet(i int) ledger.ID { return ledger.IDFromUint64(uint64(100 + i)) }

func crashAccounts() []ledger.Account {
	as := []ledger.Account{
		{ID: crashTreasury, Code: 1},
		{ID: crashMarket, Code: 2, Flags: ledger.DebitsMustNotExceedCredits},
		{ID: crashArbiter, Code: 2, Flags: ledger.DebitsMustNotExceedCredits},
	}
	for i := range crashWallets {
		as = append(as, ledger.Account{ID: crashWallet(i), Code: 3, Flags: ledger.DebitsMustNotExceedCredits})
	}
	return as
}

// crashID names transfer k of operation n of a worker in a run, so that a
// failure message can say where a transfer came from.
func crashID(run, worker int, n int64, k int) ledger.ID {
	var id ledger.ID
	binary.BigEndian.PutUint64(id[:8], 0xc1<<56|uint64(run)<<16|uint64(worker))
	binary.BigEndian.PutUint64(id[8:], uint64(n)<<8|uint64(k))
	return id
}

// A chain's id, the UserData of its legs, is crashID with k = crashChainK;
// its legs' ids follow it.
const crashChainK = 0xf0

func crashLeg(chain ledger.ID, leg int) ledger.ID {
	chain[15] = crashChainK + 1 + byte(leg)
	return chain
}

func crashName(id ledger.ID) string {
	hi, lo := binary.BigEndian.Uint64(id[:8]), binary.BigEndian.Uint64(id[8:])
	return fmt.Sprintf("%s (run %d worker %d op %d #%d)", id, hi>>16&0xffffffff, hi&0xffff, lo>>8, lo&0xff)
}

// crashOp is one call of the workload: CreateTransfers, or SetMandate
// when mandate is set.
type crashOp struct {
	n         int64
	transfers []ledger.Transfer
	chains    []ledger.ID // the linked chains among transfers
	mandate   *ledger.Mandate
}

// apply submits op to l and returns the results of its transfers.
func (op *crashOp) apply(ctx context.Context, l *ledger.Ledger) ([]ledger.Result, error) {
	if op.mandate != nil {
		return nil, l.SetMandate(ctx, *op.mandate)
	}
	return l.CreateTransfers(ctx, op.transfers)
}

func (op *crashOp) transfer(id ledger.ID) (ledger.Transfer, bool) {
	for _, x := range op.transfers {
		if x.ID == id {
			return x, true
		}
	}
	return ledger.Transfer{}, false
}

// crashWorkload generates one worker's operations: mints, payments,
// batches, reservations and their posts and voids, linked chains of three
// legs (payout, market fee, arbiter fee), and now and then a new mandate
// for one of the mandated wallets. One chain in eight cannot pay its
// arbiter fee, so that the legs before it must be rolled back. Whether an
// operation succeeds depends on the other workers; what it submits does
// not.
type crashWorkload struct {
	rng         *rand.Rand
	run, worker int
	n           int64
	holds       []crashHold // reservations submitted and not yet resolved, oldest first
}

type crashHold struct {
	id     ledger.ID
	seller ledger.ID // the hold's credit account
	amount uint64
}

func newCrashWorkload(seed uint64, run, worker int) *crashWorkload {
	return &crashWorkload{rng: rand.New(rand.NewPCG(seed, uint64(run)<<16|uint64(worker))), run: run, worker: worker}
}

func (w *crashWorkload) next() crashOp {
	op := crashOp{n: w.n}
	w.n++
	add := func(x ledger.Transfer) ledger.ID {
		x.ID = crashID(w.run, w.worker, op.n, len(op.transfers))
		op.transfers = append(op.transfers, x)
		return x.ID
	}
	switch r := w.rng.IntN(100); {
	case r < 2:
		op.mandate = w.mandate(w.rng.IntN(crashMandated))
	case r < 25:
		add(w.mint())
	case r < 45:
		for range 2 + w.rng.IntN(11) {
			if w.rng.IntN(3) == 0 {
				add(w.mint())
			} else {
				add(w.pay())
			}
		}
	case r < 60:
		x := w.pay()
		x.Code, x.Flags, x.Amount = crashCodeHold, ledger.Pending, 100+w.rng.Uint64N(20_000)
		switch w.rng.IntN(3) {
		case 0:
			x.Timeout = time.Hour
		case 1:
			x.Timeout = time.Millisecond + time.Duration(w.rng.Int64N(int64(300*time.Millisecond)))
		}
		w.holds = append(w.holds, crashHold{id: add(x), seller: x.CreditAccountID, amount: x.Amount})
	case r < 75 && len(w.holds) > 0:
		h := w.takeHold()
		x := ledger.Transfer{PendingID: h.id, Code: crashCodeResolve, Flags: ledger.PostPending}
		switch w.rng.IntN(3) {
		case 0:
			x.Amount = 1 + w.rng.Uint64N(h.amount)
		case 1:
			x.Flags = ledger.VoidPending
		}
		add(x)
	default:
		if w.rng.IntN(3) == 0 {
			add(w.mint())
		}
		w.chain(&op)
		if w.rng.IntN(3) == 0 {
			add(w.pay())
		}
	}
	return op
}

func (w *crashWorkload) takeHold() crashHold {
	h := w.holds[0]
	w.holds = w.holds[1:]
	return h
}

func (w *crashWorkload) mint() ledger.Transfer {
	return ledger.Transfer{DebitAccountID: crashTreasury, CreditAccountID: crashWallet(w.rng.IntN(crashWallets)),
		Amount: 10_000 + w.rng.Uint64N(200_000), Code: crashCodeMint}
}

func (w *crashWorkload) pay() ledger.Transfer {
	from := w.rng.IntN(crashWallets)
	to := (from + 1 + w.rng.IntN(crashWallets-1)) % crashWallets
	return ledger.Transfer{DebitAccountID: crashWallet(from), CreditAccountID: crashWallet(to),
		Amount: 1 + w.rng.Uint64N(2_000), Code: crashCodePay}
}

// mandate returns a new mandate for wallet i: a cap, a budget over a
// window of 10-500 ms, sometimes a list of payees; or, one time in four,
// none, which removes the wallet's mandate.
func (w *crashWorkload) mandate(i int) *ledger.Mandate {
	m := &ledger.Mandate{AccountID: crashWallet(i)}
	if w.rng.IntN(4) == 0 {
		return m
	}
	m.MaxPerTransfer = 5_000 + w.rng.Uint64N(100_000)
	m.Budget = 20_000 + w.rng.Uint64N(200_000)
	m.Window = time.Duration(10+w.rng.IntN(491)) * time.Millisecond
	if w.rng.IntN(2) == 0 {
		m.Counterparties = []ledger.ID{crashMarket, crashArbiter}
		for j := range crashWallets {
			if w.rng.IntN(2) == 0 {
				m.Counterparties = append(m.Counterparties, crashWallet(j))
			}
		}
	}
	return m
}

// chain appends a linked chain of three legs to op. It either settles a
// reservation (post it to the seller, who pays both fees out of it) or
// pays a seller and both fees from a buyer's wallet.
func (w *crashWorkload) chain(op *crashOp) {
	id := crashID(w.run, w.worker, op.n, crashChainK)
	var legs [3]ledger.Transfer
	if len(w.holds) > 0 && w.rng.IntN(2) == 0 {
		h := w.takeHold()
		legs[0] = ledger.Transfer{PendingID: h.id, Flags: ledger.PostPending}
		legs[1] = ledger.Transfer{DebitAccountID: h.seller, CreditAccountID: crashMarket, Amount: h.amount/10 + 1}
		legs[2] = ledger.Transfer{DebitAccountID: h.seller, CreditAccountID: crashArbiter, Amount: h.amount/20 + 1}
	} else {
		p := w.pay()
		fee, arb := p.Amount/10+1, p.Amount/20+1
		if w.rng.IntN(8) == 0 {
			arb = 1 << 40 // more than any wallet holds
		}
		legs[0] = p
		legs[1] = ledger.Transfer{DebitAccountID: p.DebitAccountID, CreditAccountID: crashMarket, Amount: fee}
		legs[2] = ledger.Transfer{DebitAccountID: p.DebitAccountID, CreditAccountID: crashArbiter, Amount: arb}
	}
	for i := range legs {
		legs[i].ID, legs[i].UserData, legs[i].Code = crashLeg(id, i), id, crashCodeLeg+uint16(i)
		if i < 2 {
			legs[i].Flags |= ledger.Linked
		}
	}
	op.transfers = append(op.transfers, legs[:]...)
	op.chains = append(op.chains, id)
}

// TestCrashChild is not a test. It is the child process that TestCrash
// starts and kills: it opens the ledger in the directory it is given and
// applies the workload from several goroutines until it is killed,
// writing a line to stdout each time a call returns, with the ids of the
// transfers it committed. It skips itself unless TestCrash set
// LEDGER_CRASH_CHILD.
func TestCrashChild(t *testing.T) {
	spec, ok := os.LookupEnv(crashChildEnv)
	if !ok {
		t.Skip("helper process for TestCrash; runs only when TestCrash starts it")
	}
	var seed uint64
	var run int
	var dir string
	if f := strings.SplitN(spec, " ", 3); len(f) == 3 {
		seed, _ = strconv.ParseUint(f[0], 10, 64)
		run, _ = strconv.Atoi(f[1])
		dir = f[2]
	} else {
		t.Fatalf("bad %s %q", crashChildEnv, spec)
	}
	ctx := context.Background()
	l, err := ledger.Open(dir, ledger.Options{})
	if err != nil {
		t.Fatalf("recover ledger: %v", err)
	}
	res, err := l.CreateAccounts(ctx, crashAccounts())
	if err != nil {
		t.Fatalf("create accounts: %v", err)
	}
	for i, r := range res {
		if !r.Committed() {
			t.Fatalf("create account %d: %s", i, r)
		}
	}
	out := &crashAcks{w: bufio.NewWriter(os.Stdout)}
	if err := out.line("ready"); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, crashWorkers)
	for w := range crashWorkers {
		go func() {
			wl := newCrashWorkload(seed, run, w)
			for {
				op := wl.next()
				res, err := op.apply(ctx, l)
				if err != nil {
					errs <- fmt.Errorf("worker %d op %d: %w", w, op.n, err)
					return
				}
				ids, err := crashCommitted(&op, res)
				if err == nil {
					err = out.ack(w, op.n, ids)
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d op %d: %w", w, op.n, err)
					return
				}
			}
		}()
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	case <-time.After(time.Minute):
		t.Fatal("not killed within a minute")
	}
}

// crashCommitted returns the ids of op's committed transfers. It fails on
// an answer that is wrong whatever the other workers did: a reused id, or
// a chain that was answered in part.
func crashCommitted(op *crashOp, res []ledger.Result) ([]ledger.ID, error) {
	var ids []ledger.ID
	for i, r := range res {
		if r == ledger.ExistsWithDifferentFields || r == ledger.LinkedEventChainOpen {
			return nil, fmt.Errorf("transfer %s: %s", crashName(op.transfers[i].ID), r)
		}
		if r.Committed() {
			ids = append(ids, op.transfers[i].ID)
		}
	}
	for _, c := range op.chains {
		n := 0
		for _, id := range ids {
			if id == crashLeg(c, 0) || id == crashLeg(c, 1) || id == crashLeg(c, 2) {
				n++
			}
		}
		if n != 0 && n != 3 {
			return nil, fmt.Errorf("chain %s: %d of 3 legs committed: %v", crashName(c), n, res)
		}
	}
	return ids, nil
}

// crashAcks writes the child's lines. Each line goes to the pipe in one
// write, so the parent reads whole lines or, at the kill, nothing more.
type crashAcks struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (a *crashAcks) line(s string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.w.WriteString(s)
	a.w.WriteByte('\n')
	return a.w.Flush()
}

func (a *crashAcks) ack(worker int, n int64, ids []ledger.ID) error {
	var b strings.Builder
	fmt.Fprintf(&b, "ack %d %d", worker, n)
	for _, id := range ids {
		b.WriteByte(' ')
		b.WriteString(id.String())
	}
	return a.line(b.String())
}

// TestCrash checks the durability promise the hard way. A child process
// applies transfers under load and is killed with SIGKILL at a random
// moment, again and again, on one data directory that keeps growing.
// After each kill the parent verifies the journal's hash chain, recovers
// the ledger, and checks that every transfer the child reported as
// acknowledged survived as submitted, that no linked chain survived in
// part, and that the money invariants hold. It then retries what the
// child had in flight, as a client that saw no answer would: whatever
// survived must answer exists.
//
// The child is this test binary, re-executed to run TestCrashChild. Its
// workload is a pure function of (seed, run, worker), so the parent can
// rebuild every operation the child may have submitted, including the one
// in flight at the kill, rather than trust the child to report it.
//
// Three children in four are killed a random 20-300 ms after they report
// the ledger open, so under load; every fourth 20-300 ms after it starts,
// which, as the journal grows, lands in its recovery. Timing all kills
// from the start would leave most children of a long journal under -race
// killed before they acknowledge anything.
func TestCrash(t *testing.T) {
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	ctx := context.Background()

	l, err := ledger.Open(dir, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateAccounts(ctx, crashAccounts()); err != nil {
		t.Fatal(err)
	}
	setup := newCrashWorkload(seed, -1, 0)
	for i := range crashMandated {
		if err := l.SetMandate(ctx, *setup.mandate(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	c := &crashCheck{seed: seed, rng: rand.New(rand.NewPCG(seed, 1)), acked: make(map[ledger.ID]ledger.Transfer)}
	var acks []int
	var totalAcks, totalRetried, progressed int
	var rep ledger.Report
	var torn int64
	for run := range crashRuns {
		delay := crashMinDelay + time.Duration(rng.Int64N(int64(crashMaxDelay-crashMinDelay)+1))
		fromStart := run%4 == 1
		child := runCrashChild(t, dir, seed, run, delay, fromStart)
		r := c.absorb(t, run, child.lines)

		rep, err = ledger.Verify(dir)
		if err != nil {
			t.Fatalf("run %d: verify after the kill: %v", run, err)
		}
		l, err := ledger.Open(dir, ledger.Options{})
		if err != nil {
			t.Fatalf("run %d: recover after the kill: %v", run, err)
		}
		t.Cleanup(func() { l.Close() })
		c.check(t, ctx, l, &r, run == crashRuns-1)
		if err := l.Close(); err != nil {
			t.Fatalf("run %d: close: %v", run, err)
		}
		if t.Failed() {
			t.FailNow()
		}

		when := "in recovery"
		if child.ready > 0 {
			when = fmt.Sprintf("%v after opening", (child.killed - child.ready).Round(time.Millisecond))
		}
		t.Logf("run %2d: killed %v after start, %s: %5d acks, %2d retried, %4d of %4d chains whole; journal %5d records, %6d events, torn tail %d bytes",
			run, child.killed.Round(time.Millisecond), when, r.acks, r.retried, r.whole, r.chains, rep.Records, rep.Events, rep.TornBytes)
		torn += rep.TornBytes
		acks = append(acks, r.acks)
		totalAcks += r.acks
		totalRetried += r.retried
		if r.acks > 0 {
			progressed++
		}
	}
	t.Logf("%d runs; acks per run %v; %d acknowledged to children, %d more by retries; %d chains submitted; %d events in the journal; %d torn bytes dropped",
		crashRuns, acks, totalAcks, totalRetried, len(c.chains), rep.Events, torn)
	if progressed < crashRuns/2 {
		t.Errorf("only %d of %d children saw a transfer acknowledged: the test is not loading the ledger", progressed, crashRuns)
	}
}

// crashSeed returns the seed of the kill times and workloads: a new one
// each time, logged, unless LEDGER_CRASH_SEED replays one.
func crashSeed(t *testing.T) uint64 {
	if s := os.Getenv(crashSeedEnv); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", crashSeedEnv, err)
		}
		t.Logf("seed %d, from %s", seed, crashSeedEnv)
		return seed
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (%s=%d replays the workload and kill times)", seed, crashSeedEnv, seed)
	return seed
}

// crashChild is what the parent saw of one child.
type crashChild struct {
	lines  []string
	ready  time.Duration // when it reported the ledger open, from its start; 0 if never
	killed time.Duration // when it was killed, from its start
}

// runCrashChild starts the child on dir and kills it with SIGKILL delay
// after it reports the ledger open, or after it starts if fromStart. It
// returns the whole lines the child wrote before it died: what it
// acknowledged. It fails the test if the child died any other way.
func runCrashChild(t *testing.T, dir string, seed uint64, run int, delay time.Duration, fromStart bool) crashChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %d %s", crashChildEnv, seed, run, dir))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("run %d: start child: %v", run, err)
	}
	ready, eof := make(chan struct{}), make(chan struct{})
	read := make(chan crashChild, 1)
	go func() {
		defer close(eof)
		var c crashChild
		br := bufio.NewReader(stdout)
		for {
			s, err := br.ReadString('\n')
			if err != nil {
				break // a line cut short was never whole, so never acknowledged
			}
			s = strings.TrimSuffix(s, "\n")
			if s == "ready" {
				c.ready = time.Since(start)
				close(ready)
			}
			c.lines = append(c.lines, s)
		}
		read <- c
	}()
	if !fromStart {
		select {
		case <-ready:
		case <-eof: // it died; reported below
		case <-time.After(time.Minute): // it hangs; reported below
		}
	}
	time.Sleep(delay)
	killed := time.Since(start)
	kill := cmd.Process.Kill()
	c := <-read
	c.killed = killed
	c.ready = min(c.ready, killed) // read late, but written before the kill
	cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("run %d: child died before the kill (%v, kill: %v)\nstdout:\n%s\nstderr:\n%s",
			run, cmd.ProcessState, kill, strings.Join(c.lines, "\n"), stderr.String())
	}
	if strings.Contains(stderr.String(), "DATA RACE") || strings.Contains(stderr.String(), "panic") {
		t.Fatalf("run %d: child reported:\n%s", run, stderr.String())
	}
	return c
}

// crashCheck is the parent's knowledge across runs. Each check looks up
// what was acknowledged and submitted since the last one, and a sample of
// the older acknowledged transfers; the last looks up everything. Looking
// up everything after every run would cost the square of the runs.
type crashCheck struct {
	seed   uint64
	rng    *rand.Rand
	acked  map[ledger.ID]ledger.Transfer // every acknowledged transfer, as submitted
	ids    []ledger.ID                   // the keys of acked, oldest first
	chains []ledger.ID                   // every chain a child may have submitted, oldest first

	checkedIDs, checkedChains int // ids[:checkedIDs] and chains[:checkedChains] were checked
}

func (c *crashCheck) ack(x ledger.Transfer) {
	if _, ok := c.acked[x.ID]; !ok {
		c.acked[x.ID] = x
		c.ids = append(c.ids, x.ID)
	}
}

// crashRun is one child's run as the parent rebuilt it.
type crashRun struct {
	run     int
	acks    int
	retried int
	chains  int                     // chains submitted, or maybe submitted, by the child
	whole   int                     // of those, the chains committed
	last    [crashWorkers]int64     // the last op each worker reported; -1 for none
	ops     [crashWorkers][]crashOp // ops 0 to last+2: all the worker could have submitted, and one more
}

// absorb reads a child's lines and rebuilds the operations it may have
// submitted. A worker submits op n+1 only after reporting op n, so besides
// the reported ops at most op last+1 was in flight.
func (c *crashCheck) absorb(t *testing.T, run int, lines []string) crashRun {
	t.Helper()
	r := crashRun{run: run}
	for w := range r.last {
		r.last[w] = -1
	}
	type ack struct {
		w   int
		n   int64
		ids []ledger.ID
	}
	var acks []ack
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) == 1 && f[0] == "ready" {
			continue
		}
		if len(f) < 3 || f[0] != "ack" {
			t.Fatalf("run %d: unexpected child output %q", run, line)
		}
		w, err1 := strconv.Atoi(f[1])
		n, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || w < 0 || w >= crashWorkers || n != r.last[w]+1 {
			t.Fatalf("run %d: bad or out-of-order ack %q", run, line)
		}
		r.last[w] = n
		a := ack{w: w, n: n}
		for _, s := range f[3:] {
			id, err := ledger.ParseID(s)
			if err != nil {
				t.Fatalf("run %d: ack %q: %v", run, line, err)
			}
			a.ids = append(a.ids, id)
		}
		acks = append(acks, a)
	}
	for w := range crashWorkers {
		wl := newCrashWorkload(c.seed, run, w)
		for n := int64(0); n <= r.last[w]+2; n++ {
			op := wl.next()
			r.ops[w] = append(r.ops[w], op)
			for _, id := range op.chains {
				c.chains = append(c.chains, id)
				r.chains++
			}
		}
	}
	for _, a := range acks {
		op := &r.ops[a.w][a.n]
		for _, id := range a.ids {
			x, ok := op.transfer(id)
			if !ok {
				t.Fatalf("run %d: child acknowledged %s, which it does not submit", run, crashName(id))
			}
			c.ack(x)
			r.acks++
		}
	}
	return r
}

// check runs the checks on the recovered ledger l, then retries the
// operations the child had in flight, as a client that saw no answer would.
// With all, it looks up every transfer acknowledged and every chain
// submitted so far, not only the new ones.
func (c *crashCheck) check(t *testing.T, ctx context.Context, l *ledger.Ledger, r *crashRun, all bool) {
	t.Helper()
	ids, chains := slices.Clone(c.ids[c.checkedIDs:]), c.chains[c.checkedChains:]
	if all {
		ids, chains = c.ids, c.chains
	} else if old := c.ids[:c.checkedIDs]; len(old) > 0 {
		for range crashSample {
			ids = append(ids, old[c.rng.IntN(len(old))])
		}
	}
	c.checkedIDs, c.checkedChains = len(c.ids), len(c.chains)

	// Every transfer acknowledged to a child is there, as submitted.
	found := lookupAll(t, ctx, l, ids)
	for _, id := range ids {
		got, ok := found[id]
		if !ok {
			t.Errorf("run %d: acknowledged transfer %s is lost", r.run, crashName(id))
			continue
		}
		if want, got := c.acked[id], asSubmitted(got, c.acked[id]); got != want {
			t.Errorf("run %d: transfer %s differs from what was acknowledged (-want +got):\n%s", r.run, crashName(id), cmp.Diff(want, got))
		}
	}

	// Every chain a child may have submitted is whole or absent.
	var legs []ledger.ID
	for _, id := range chains {
		for i := range 3 {
			legs = append(legs, crashLeg(id, i))
		}
	}
	found = lookupAll(t, ctx, l, legs)
	for k, id := range chains {
		var have []int
		for i := range 3 {
			if _, ok := found[crashLeg(id, i)]; ok {
				have = append(have, i)
			}
		}
		if len(have) == 3 && k >= len(chains)-r.chains { // this run's chains are the last
			r.whole++
		}
		if len(have) != 0 && len(have) != 3 {
			t.Errorf("run %d: chain %s is partial after recovery: only legs %v of 0-2", r.run, crashName(id), have)
		}
	}

	// Retrying what was in flight is idempotent: whatever survived the
	// crash answers exists, and whatever commits now is acknowledged.
	for w := range crashWorkers {
		op := &r.ops[w][r.last[w]+1]
		var ids []ledger.ID
		for _, x := range op.transfers {
			ids = append(ids, x.ID)
		}
		before := lookupAll(t, ctx, l, ids)
		res, err := op.apply(ctx, l)
		if err == nil {
			_, err = crashCommitted(op, res)
		}
		if err != nil {
			t.Fatalf("run %d: retry worker %d op %d: %v", r.run, w, op.n, err)
		}
		for i, x := range op.transfers {
			_, survived := before[x.ID]
			switch {
			case survived && res[i] != ledger.Exists:
				t.Errorf("run %d: retrying %s, which survived the crash, gave %s, want exists", r.run, crashName(x.ID), res[i])
			case res[i] == ledger.ExistsWithDifferentFields:
				t.Errorf("run %d: retrying %s gave %s", r.run, crashName(x.ID), res[i])
			case res[i].Committed():
				c.ack(x)
				r.retried++
			}
		}
	}

	if err := l.CheckInvariants(ctx); err != nil {
		t.Errorf("run %d: invariants after recovery: %v", r.run, err)
	}
}

// asSubmitted returns got, a transfer as the ledger stores it, with what
// the ledger fills in cleared where want, as submitted, left it open: the
// timestamp, and a post's or void's accounts and amount.
func asSubmitted(got, want ledger.Transfer) ledger.Transfer {
	got.Timestamp = 0
	if want.Flags&(ledger.PostPending|ledger.VoidPending) != 0 {
		if want.DebitAccountID.IsZero() {
			got.DebitAccountID = ledger.ID{}
		}
		if want.CreditAccountID.IsZero() {
			got.CreditAccountID = ledger.ID{}
		}
		if want.Amount == 0 {
			got.Amount = 0
		}
	}
	return got
}

// lookupAll looks ids up from several goroutines, so that the lookups
// share the ledger's rounds, and returns the transfers found.
func lookupAll(t *testing.T, ctx context.Context, l *ledger.Ledger, ids []ledger.ID) map[ledger.ID]ledger.Transfer {
	t.Helper()
	const par = 8
	found := make(map[ledger.ID]ledger.Transfer, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, par)
	for g := range par {
		wg.Go(func() {
			for i := g; i < len(ids); i += par {
				x, err := l.LookupTransfer(ctx, ids[i])
				if errors.Is(err, ledger.ErrNotFound) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				found[ids[i]] = x
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("look up transfers: %v", err)
	}
	return found
}
