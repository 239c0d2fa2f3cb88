package bench

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Workload names one of the benchmark's transfer mixes.
type Workload string

const (
	// Uniform (W1) moves value between wallets chosen uniformly at random.
	Uniform Workload = "W1"
	// HotAccount (W2) debits one treasury account in every transfer, so
	// every transfer contends for the same row or counter.
	HotAccount Workload = "W2"
	// Escrow (W3) reserves value with pending transfers, then posts 70% of
	// them (half of those in part), voids 20% and lets 10% expire on the
	// clock; 5% of all submissions are resubmitted ids that must answer
	// "exists".
	Escrow Workload = "W3"
)

// Workloads lists every workload in report order.
var Workloads = []Workload{Uniform, HotAccount, Escrow}

// Describe says what the workload does, for the report.
func (w Workload) Describe() string {
	switch w {
	case Uniform:
		return "uniform transfers between random wallets"
	case HotAccount:
		return "every transfer debits one hot treasury account"
	case Escrow:
		return "escrow: pending, then 70% post (half partial), 20% void, 10% expire; 5% duplicate ids"
	}
	return string(w)
}

// ParseWorkload accepts a workload's name, W1 to W3, in any case.
func ParseWorkload(s string) (Workload, error) {
	for _, w := range Workloads {
		if equalFold(s, string(w)) {
			return w, nil
		}
	}
	return "", fmt.Errorf("unknown workload %q (want W1, W2 or W3)", s)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// OpKind is what a transfer request does.
type OpKind uint8

const (
	// Plain moves the amount at once.
	Plain OpKind = iota
	// Reserve holds the amount as a pending transfer with a timeout.
	Reserve
	// Post settles a pending transfer, in full or in part.
	Post
	// Void releases a pending transfer back to its debit account.
	Void
)

// Op is one transfer request in a system-neutral form. Every system maps it
// to its own: a ledger.Transfer, or rows in a naive SQL schema. Accounts
// are numbered: 0 is the treasury, 1 to n are wallets.
type Op struct {
	ID      uint64 // the transfer's number, its idempotency key
	Kind    OpKind
	Debit   uint32
	Credit  uint32
	Amount  uint64        // microcredits; for a post, what to settle
	Pending uint64        // for a post or a void: the pending transfer's number
	Timeout time.Duration // for a reservation
	Dup     bool          // a resubmission of an earlier op, which must answer exists
}

const (
	// treasury is the account that issues credits; it may go negative.
	treasury = 0
	// walletFunding is what the treasury issues to each wallet before a run:
	// a million credits, enough that no workload drains a wallet.
	walletFunding = 1_000_000 * 1_000_000
	// maxAmount bounds a transfer's amount: one credit.
	maxAmount = 1_000_000
	// escrowTimeout is how long a reservation lives on the benchmark's
	// clock. Each escrow round ends by moving the clock past it, so the
	// reservations left unresolved really expire.
	escrowTimeout = 5 * time.Minute
)

// streamGen generates an endless stream of plain transfers (W1 or W2) for
// one worker. Its ids carry the worker's number in their high bits, so
// workers never collide.
type streamGen struct {
	workload Workload
	wallets  uint32
	rng      *rand.Rand
	next     uint64
}

func newStreamGen(w Workload, wallets int, seed uint64, worker int) *streamGen {
	return &streamGen{
		workload: w,
		wallets:  uint32(wallets),
		rng:      rand.New(rand.NewPCG(seed, uint64(worker)+1)),
		next:     uint64(worker+1) << 40,
	}
}

func (g *streamGen) fill(ops []Op) {
	for i := range ops {
		g.next++
		var d, c uint32
		if g.workload == HotAccount {
			d, c = treasury, 1+g.rng.Uint32N(g.wallets)
		} else {
			d = 1 + g.rng.Uint32N(g.wallets)
			c = 1 + g.rng.Uint32N(g.wallets-1)
			if c >= d {
				c++
			}
		}
		ops[i] = Op{ID: g.next, Kind: Plain, Debit: d, Credit: c, Amount: 1 + g.rng.Uint64N(maxAmount)}
	}
}

// escrowGen generates the escrow workload (W3) in rounds. A round is two
// phases: first the reservations, then their resolutions mixed with the
// resubmissions; the round ends when the clock moves past the timeouts of
// the reservations left open, which then expire.
type escrowGen struct {
	wallets uint32
	rng     *rand.Rand
	next    uint64
}

// round is one escrow round's requests and what they must produce.
type round struct {
	reserve  []Op
	resolve  []Op
	dups     int // resubmissions, each of which must answer exists
	toExpire int // reservations left to expire
}

func newEscrowGen(wallets int, seed uint64) *escrowGen {
	return &escrowGen{wallets: uint32(wallets), rng: rand.New(rand.NewPCG(seed, 0xe5c))}
}

// round generates n reservations and their resolutions: 70% posted (half
// of those in part), 20% voided, 10% left to expire. It adds n/10
// resubmissions (n/20 reservations, n/20 posts), which makes them 5% of
// the 1.9n+n/10 requests, and shuffles the second phase so that
// resubmissions, posts and voids interleave.
func (g *escrowGen) round(n int) round {
	r := round{reserve: make([]Op, n)}
	for i := range r.reserve {
		g.next++
		d := 1 + g.rng.Uint32N(g.wallets)
		c := 1 + g.rng.Uint32N(g.wallets-1)
		if c >= d {
			c++
		}
		r.reserve[i] = Op{ID: g.next, Kind: Reserve, Debit: d, Credit: c, Amount: 1 + g.rng.Uint64N(maxAmount), Timeout: escrowTimeout}
	}
	order := g.rng.Perm(n)
	posts, voids := n*7/10, n*2/10
	r.toExpire = n - posts - voids
	var postOps []Op
	for k, i := range order[:posts+voids] {
		p := r.reserve[i]
		g.next++
		op := Op{ID: g.next, Kind: Void, Debit: p.Debit, Credit: p.Credit, Pending: p.ID}
		if k < posts {
			op.Kind, op.Amount = Post, p.Amount
			if k%2 == 1 {
				op.Amount = max(1, p.Amount/2)
			}
			postOps = append(postOps, op)
		}
		r.resolve = append(r.resolve, op)
	}
	for i := 0; i < n/20; i++ {
		dup := r.reserve[g.rng.IntN(n)]
		dup.Dup = true
		r.resolve = append(r.resolve, dup)
	}
	for i := 0; i < n/20 && len(postOps) > 0; i++ {
		dup := postOps[g.rng.IntN(len(postOps))]
		dup.Dup = true
		r.resolve = append(r.resolve, dup)
	}
	r.dups = len(r.resolve) - posts - voids
	g.rng.Shuffle(len(r.resolve), func(i, j int) { r.resolve[i], r.resolve[j] = r.resolve[j], r.resolve[i] })
	return r
}

// clock is the benchmark's clock: wall time plus a skew that escrow rounds
// advance to make reservations expire without waiting. Every system under
// test reads it, so expiry is driven the same way everywhere.
type clock struct {
	skew atomic.Int64
}

// Now returns the clock's time.
func (c *clock) Now() time.Time {
	return time.Now().Add(time.Duration(c.skew.Load()))
}

// advance moves the clock forward by d.
func (c *clock) advance(d time.Duration) { c.skew.Add(int64(d)) }
