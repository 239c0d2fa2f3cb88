package sim

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// world is the simulation's ground truth, which the market never sees:
// what each task is worth and really takes, the true quality of every
// delivery, what each seller's work really cost. It also watches the
// whole event stream, as the researcher's instrument, to follow every
// contract from award to settlement.
type world struct {
	s  *sim
	mu sync.Mutex

	taskSeq   int
	tasks     map[string]*task // by intent id
	deals     map[string]*deal // by contract id
	dealOrder []*deal          // in award order
	artifacts map[string]float64
	roots     []*task // every task an honest buyer posted, in posting order

	openIntents map[string]bool
	open        int // contracts awarded and not yet final
	posted      map[string]int
	expired     map[string]int
	disputes    int
	audits      int

	pendingBidPrice map[string]int64 // bid prices of contracts not yet seen in the stream

	attacks map[string]*Attack
	errs    map[string]int

	series []Sample
	// entries records when each entrant joined and where.
	entries []Entry
}

// deal is a contract and the truth about it.
type deal struct {
	id, intent string
	t          *task
	buyer      *agentBase
	seller     *agentBase
	price      int64
	bidPrice   int64 // the seller's price when it placed the bid, before any negotiation
	postedAt   time.Time
	awardedAt  time.Time
	settledAt  time.Time
	final      bool
	state      market.ContractState
	outcome    market.Outcome
	disputed   bool
	audited    bool
	// disputeInjected marks a dispute whose reason carried an injection.
	disputeInjected bool

	// What the seller did, as only the seller and the world know.
	worked   bool
	cost     int64
	quality  float64 // the delivery's true quality, 0 to 1
	garbage  bool    // an injector's deliberately worthless output
	injected bool    // text in the bid, the delivery or the dispute carried an injection
}

func newWorld(s *sim) *world {
	return &world{
		s:               s,
		tasks:           map[string]*task{},
		deals:           map[string]*deal{},
		artifacts:       map[string]float64{},
		openIntents:     map[string]bool{},
		posted:          map[string]int{},
		expired:         map[string]int{},
		attacks:         map[string]*Attack{},
		pendingBidPrice: map[string]int64{},
		errs:            map[string]int{},
	}
}

// nextTask numbers a new task.
func (w *world) nextTask() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.taskSeq++
	return w.taskSeq
}

// posted records that intent id was posted for t. The first posting of
// an honest buyer's task makes it a root of the welfare account.
func (w *world) post(id string, t *task) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tasks[id] = t
	if t.attempts == 0 && t.honest && t.parent == nil {
		w.roots = append(w.roots, t)
	}
	t.attempts++
}

// task returns the task an intent was posted for.
func (w *world) task(intentID string) *task {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tasks[intentID]
}

// deal returns the truth about a contract, or nil.
func (w *world) deal(id string) *deal {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.deals[id]
}

// worked records what a seller did for a contract.
func (w *world) worked(contract string, cost int64, quality float64, garbage bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.deals[contract]; d != nil {
		d.worked, d.cost, d.quality, d.garbage = true, cost, quality, garbage
		if garbage {
			d.injected = true
		}
	}
}

// bidPrice records the price a contract's bid carried when the buyer
// chose it, before any counter-offer: the award must never exceed it.
func (w *world) bidPrice(contract string, price int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.deals[contract]; d != nil {
		d.bidPrice = price
	} else {
		w.pendingBidPrice[contract] = price
	}
}

// disputed records the text a buyer's dispute carried.
func (w *world) disputed(contract string, injected bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := w.deals[contract]; d != nil && injected {
		d.injected = true
		d.disputeInjected = true
	}
}

// artifact records a fuzzy delivery's true quality.
func (w *world) artifact(name string, q float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.artifacts[name] = q
}

// quality is what a careful reader of an artefact would find: its true
// quality. Judges add their own noise.
func (w *world) quality(name string) float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.artifacts[name]
}

// attack updates an attack's counters.
func (w *world) attack(name string, fn func(a *Attack)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := w.attacks[name]
	if a == nil {
		a = &Attack{Name: name, Applicable: true}
		w.attacks[name] = a
	}
	fn(a)
}

// countError counts an agent's unexpected error by operation and kind.
func (w *world) countError(op string, k market.Kind) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs[op+":"+k.String()]++
}

// entered records an entrant joining the market.
func (w *world) entered(e Entry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.entries = append(w.entries, e)
}

// observe follows the event stream. It sees every event, in order.
func (w *world) observe(ev *event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev.Type {
	case market.EventIntentPosted:
		w.openIntents[ev.Subject] = true
		w.posted[ev.Intent]++
	case market.EventIntentExpired, market.EventIntentCancelled:
		delete(w.openIntents, ev.Subject)
		w.expired[ev.Intent]++
	case market.EventContractAwarded:
		c := ev.contract
		delete(w.openIntents, c.IntentID)
		if w.deals[c.ID] != nil {
			return
		}
		d := &deal{id: c.ID, intent: c.Intent, t: w.tasks[c.IntentID], price: c.PriceMicrocredits,
			awardedAt: c.AwardedAt, state: c.State}
		if p, ok := w.pendingBidPrice[c.ID]; ok {
			d.bidPrice = p
			delete(w.pendingBidPrice, c.ID)
		}
		d.buyer = w.agentLocked(c.Buyer)
		d.seller = w.agentLocked(c.Seller)
		if d.t != nil {
			d.postedAt = d.t.postedAt
		}
		w.deals[c.ID] = d
		w.dealOrder = append(w.dealOrder, d)
		w.open++
	case market.EventContractDisputed:
		if d := w.deals[ev.contract.ID]; d != nil {
			d.disputed = true
			w.disputes++
		}
	case market.EventContractDelivered:
		if c := ev.contract; c.Audit && c.State == market.ContractInReview {
			if d := w.deals[c.ID]; d != nil && !d.audited {
				d.audited = true
				w.audits++
			}
		}
	case market.EventContractSettled, market.EventContractRefunded:
		c := ev.contract
		d := w.deals[c.ID]
		if d == nil || d.final {
			return
		}
		d.final, d.state, d.settledAt = true, c.State, c.Outcome.SettledAt
		d.outcome = *c.Outcome
		if c.Audit {
			d.audited = true
		}
		w.open--
		if t := d.t; t != nil && d.outcome.PaidMicrocredits > 0 {
			q := d.quality
			if !d.worked {
				q = 0
			}
			if !t.done {
				t.done = true
				t.realised = int64(float64(t.value) * q)
				t.release()
			}
		}
	}
}

func (w *world) agentLocked(id market.AgentID) *agentBase {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if a, ok := w.s.byID[id]; ok {
		return a.base()
	}
	return nil
}

// quiet reports whether nothing is left open: no intent awaiting an
// award and no contract awaiting settlement.
func (w *world) quiet() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.openIntents) == 0 && w.open == 0
}

// Sample is one row of the time series: the market's own statistics for
// an intent type over the sliding window ending at T.
type Sample struct {
	T                      float64 `json:"t_seconds"`
	Intent                 string  `json:"intent"`
	PriceIndexMicrocredits int64   `json:"price_index_microcredits"`
	Intents                int     `json:"intents"`
	Bids                   int     `json:"bids"`
	Awards                 int     `json:"awards"`
	Fills                  int     `json:"fills"`
	ActiveSellers          int     `json:"active_sellers"`
	VolumeMicrocredits     int64   `json:"volume_microcredits"`
	Demand                 float64 `json:"demand"`
}

// sample reads the market's statistics for every intent type of the
// scenario: the price index is Service.Stats, as any agent sees it.
func (w *world) sample(ctx context.Context) error {
	t := w.s.elapsed().Seconds()
	w.mu.Lock()
	if n := len(w.series); n > 0 && w.series[n-1].T == t {
		w.mu.Unlock()
		return nil
	}
	w.mu.Unlock()
	for _, k := range w.s.sc.kinds {
		st, err := w.s.op.Service.Stats(w.s.op.Ctx, k.Intent, w.s.sc.Window)
		if err != nil {
			return fmt.Errorf("stats %s: %w", k.Intent, err)
		}
		row := Sample{T: t, Intent: k.Intent, PriceIndexMicrocredits: st.PriceIndexMicrocredits, Intents: st.Intents,
			Bids: st.Bids, Awards: st.Awards, Fills: st.Fills, ActiveSellers: st.ActiveSellers,
			VolumeMicrocredits: st.VolumeMicrocredits, Demand: w.s.sc.demand(w.s.elapsed(), w.s.cfg.Duration)}
		w.mu.Lock()
		w.series = append(w.series, row)
		w.mu.Unlock()
	}
	return nil
}

// sortedDeals returns the deals in award order.
func (w *world) sortedDeals() []*deal {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append([]*deal(nil), w.dealOrder...)
	return out
}

// sortedErrors lists the error counters by name.
func (w *world) sortedErrors() []ErrorCount {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []ErrorCount
	for k, n := range w.errs {
		out = append(out, ErrorCount{Op: k, Count: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Op < out[j].Op })
	return out
}
