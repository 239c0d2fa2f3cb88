package sim

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	agentpkg "github.com/agentmarket/agentmarket/agent"
	"github.com/agentmarket/agentmarket/market"
)

// Result is what a run produced.
type Result struct {
	// Metrics are the run's figures. In-process with one worker they are
	// a function of the seed and the scenario, byte for byte.
	Metrics Metrics
	// Series is the time series of the market's own statistics.
	Series []Sample
	// Wall holds wall-clock measurements, which vary from run to run and
	// so stay out of Metrics.
	Wall Wall
}

// Wall is how long a run took and how much memory it held.
type Wall struct {
	Setup, Run, Total time.Duration
	// LifecyclesPerSecond is contracts settled per second of the run.
	LifecyclesPerSecond float64
	// HeapSys and Sys are the Go runtime's memory obtained from the
	// system at the end of the run, in bytes.
	HeapSys, Sys uint64
}

// Metrics are a run's figures. Every amount is in microcredits; every
// time is market time.
type Metrics struct {
	Scenario      string `json:"scenario"`
	Seed          uint64 `json:"seed"`
	Agents        int    `json:"agents"`
	Workers       int    `json:"workers"`
	Deterministic bool   `json:"deterministic"`
	// DurationSeconds is the posting period; EndSeconds when the run
	// ended, after the wind-down.
	DurationSeconds float64        `json:"duration_seconds"`
	EndSeconds      float64        `json:"end_seconds"`
	Steps           int            `json:"steps"`
	Population      map[string]int `json:"population"`

	Volume     Volume            `json:"volume"`
	Prices     []PriceSummary    `json:"prices"`
	Welfare    Welfare           `json:"welfare"`
	Reputation ReputationMetrics `json:"reputation"`
	Attacks    []Attack          `json:"attacks"`
	// LLMInjection is the prompt-injection suite aimed at an LLM buyer,
	// in the adversarial scenario.
	LLMInjection *agentpkg.InjectionReport `json:"llm_injection,omitempty"`
	// StolenMicrocredits sums what the attacks gained, counting only gains.
	StolenMicrocredits int64        `json:"stolen_microcredits"`
	Wealth             Wealth       `json:"wealth"`
	Latency            Latency      `json:"latency"`
	Spike              *Spike       `json:"spike,omitempty"`
	Enterprise         *Enterprise  `json:"enterprise,omitempty"`
	Errors             []ErrorCount `json:"errors"`
}

// Volume is what traded.
type Volume struct {
	Intents   int `json:"intents"`
	Contracts int `json:"contracts"` // awarded
	Settled   int `json:"settled"`   // final: paid, partly paid or refunded
	Paid      int `json:"paid"`
	Partial   int `json:"partial"`
	Refunded  int `json:"refunded"`
	Expired   int `json:"expired"` // intents that expired or were cancelled unawarded
	Disputes  int `json:"disputes"`
	Audits    int `json:"audits"`
	// VolumeMicrocredits is what sellers were paid; FeesMicrocredits the
	// market's fees on it.
	VolumeMicrocredits int64          `json:"volume_microcredits"`
	FeesMicrocredits   int64          `json:"fees_microcredits"`
	ByIntent           []IntentVolume `json:"by_intent"`
}

// IntentVolume is one intent type's trade.
type IntentVolume struct {
	Intent             string `json:"intent"`
	Intents            int    `json:"intents"`
	Contracts          int    `json:"contracts"`
	Paid               int    `json:"paid"`
	Refunded           int    `json:"refunded"`
	VolumeMicrocredits int64  `json:"volume_microcredits"`
	MeanPrice          int64  `json:"mean_price_microcredits"`
}

// PriceSummary summarises an intent type's price index over the run.
type PriceSummary struct {
	Intent string `json:"intent"`
	First  int64  `json:"first_microcredits"`
	Mean   int64  `json:"mean_microcredits"`
	Min    int64  `json:"min_microcredits"`
	Max    int64  `json:"max_microcredits"`
	Final  int64  `json:"final_microcredits"`
}

// Welfare compares the surplus the market realised with the most it
// could have; see Definition.
type Welfare struct {
	Tasks                int     `json:"tasks"`
	Done                 int     `json:"done"`
	ValueMicrocredits    int64   `json:"value_microcredits"`
	RealisedMicrocredits int64   `json:"realised_microcredits"`
	CostMicrocredits     int64   `json:"cost_microcredits"`
	WelfareMicrocredits  int64   `json:"welfare_microcredits"`
	OptimumMicrocredits  int64   `json:"optimum_microcredits"`
	Ratio                float64 `json:"ratio"`
	Definition           string  `json:"definition"`
}

const welfareDefinition = "Over every task an honest buyer posted: welfare = realised value - true cost. " +
	"Realised value is the task's value to its buyer times the true quality delivered, once a contract for it paid; " +
	"true cost is what every seller's work on every attempt really cost (subcontractors' too, for a project). " +
	"Prices and fees are transfers and cancel out. The optimum gives each task to the honest seller present when it " +
	"was posted with the largest expected surplus (0 if none is positive): for prose, value x the seller's mean quality - its cost; " +
	"for checked work, which is retried until it passes, value - cost / (1 - the seller's error rate); " +
	"ignoring capacity and latency; for a project, value - the cheapest orchestrator's " +
	"overhead - the cheapest honest seller's cost of each part. It bounds the expected welfare; a small run can beat it by luck."

// ReputationMetrics measure how well reputation tracks hidden quality.
type ReputationMetrics struct {
	// Spearman is the rank correlation between the honest sellers' true
	// quality and their overall reputation score; SpearmanAll includes
	// the adversarial sellers.
	Spearman     float64    `json:"spearman"`
	SpearmanAll  float64    `json:"spearman_all"`
	Sellers      int        `json:"sellers"`
	MinContracts int        `json:"min_contracts"`
	Points       []RepPoint `json:"points"`
	// Buyer scores: the mean BuyerScore of honest buyers and of
	// free-riders who traded.
	HonestBuyerScore    float64 `json:"honest_buyer_score"`
	FreeRiderBuyerScore float64 `json:"free_rider_buyer_score,omitempty"`
}

// RepPoint is one seller's true quality and reputation.
type RepPoint struct {
	Agent       string  `json:"agent"`
	Class       string  `json:"class"`
	TrueQuality float64 `json:"true_quality"`
	Score       float64 `json:"score"`
	LowerBound  float64 `json:"lower_bound"`
	Contracts   int     `json:"contracts"`
	// Evidence is the weight of outcomes the score rests on
	// (Reputation.Evidence): the engine counts a buyer's k-th trade with
	// the same seller at 1/k, so it is well below Contracts for a seller
	// with loyal buyers, and it is what sets how precisely the score
	// can rank.
	Evidence float64 `json:"evidence"`
}

// Attack is one attack's tally.
type Attack struct {
	Name string `json:"name"`
	// Applicable is false for attacks that cannot happen in this mode,
	// such as replayed requests in-process.
	Applicable bool `json:"applicable"`
	Attempts   int  `json:"attempts"`
	// Blocked counts attempts the market refused or that gained nothing.
	Blocked int `json:"blocked"`
	// GainedMicrocredits is what the attack took that it was not owed;
	// negative when the attack cost the attacker.
	GainedMicrocredits int64 `json:"gained_microcredits"`
	// ReputationGain, for a sybil ring, is its members' mean reputation
	// score at the end less their score before any trade.
	ReputationGain *float64 `json:"reputation_gain,omitempty"`
	// RingClosed, for a sybil ring, says whether money went all the way
	// round it (every member sold at least once): only then can the
	// market tell its trades from independent ones.
	RingClosed *bool  `json:"ring_closed,omitempty"`
	Note       string `json:"note,omitempty"`
}

// Wealth is how the money ended up spread.
type Wealth struct {
	Gini float64 `json:"gini"`
	// Mean holdings (posted balance plus bond) by class of agent.
	MeanByClass map[string]int64 `json:"mean_by_class_microcredits"`
	// Lorenz is the cumulative share of wealth held by each decile.
	Lorenz []float64 `json:"lorenz"`
}

// Latency is how long contracts took, in milliseconds of market time.
type Latency struct {
	// Contract: award to settlement. Task: first posting to the
	// settlement that paid, retries included.
	Contract Percentiles `json:"contract_ms"`
	Task     Percentiles `json:"task_ms"`
}

// Percentiles summarise a distribution.
type Percentiles struct {
	N    int   `json:"n"`
	Mean int64 `json:"mean"`
	P50  int64 `json:"p50"`
	P90  int64 `json:"p90"`
	P99  int64 `json:"p99"`
	Max  int64 `json:"max"`
}

// Spike is the demand-spike scenario's verdict.
type Spike struct {
	AtSeconds float64       `json:"at_seconds"`
	Factor    float64       `json:"factor"`
	Intents   []SpikeIntent `json:"intents"`
	Entrants  int           `json:"entrants"`
	Entries   []Entry       `json:"entries"`
}

// SpikeIntent is one intent type's price index around the spike: the mean
// over the last 40% of the pre-spike period (once early entry has
// settled), the peak after it, and the mean over the last fifth of the
// posting period.
type SpikeIntent struct {
	Intent   string  `json:"intent"`
	Pre      int64   `json:"pre_microcredits"`
	Peak     int64   `json:"peak_microcredits"`
	PeakAt   float64 `json:"peak_at_seconds"`
	Final    int64   `json:"final_microcredits"`
	Rise     float64 `json:"rise"`      // peak / pre - 1
	FinalGap float64 `json:"final_gap"` // final / pre - 1
	Rose     bool    `json:"rose"`      // the peak is at least 5% above pre
	Settled  bool    `json:"settled"`   // the final is within 10% of pre
}

// Entry is an entrant joining the market.
type Entry struct {
	Agent                  string  `json:"agent"`
	Intent                 string  `json:"intent"`
	T                      float64 `json:"t_seconds"`
	PriceIndexMicrocredits int64   `json:"price_index_microcredits"`
	CostMicrocredits       int64   `json:"cost_microcredits"`
}

// Enterprise is the autonomous enterprise's account.
type Enterprise struct {
	Projects     int     `json:"projects"`
	Paid         int     `json:"paid"`
	MeanQuality  float64 `json:"mean_quality"`
	Subcontracts int     `json:"subcontracts"`
	SubPassed    int     `json:"subcontracts_passed"`
	// OrchestratorMarginMicrocredits is what the orchestrators earned from
	// projects less what they paid subcontractors and fees.
	OrchestratorMarginMicrocredits int64 `json:"orchestrator_margin_microcredits"`
}

// ErrorCount counts an agent's unexpected errors of one kind.
type ErrorCount struct {
	Op    string `json:"op"`
	Count int    `json:"count"`
}

// minContracts is the evidence a seller needs to be ranked.
const minContracts = 10

// finish computes the run's metrics from the world's truth and the
// market's own view of reputation and wallets.
func (s *sim) finish(ctx context.Context) (*Result, error) {
	w := s.world
	m := Metrics{Scenario: s.sc.Name, Seed: s.cfg.Seed, Agents: s.cfg.Agents, Workers: s.cfg.Workers,
		Deterministic:   s.cfg.Workers <= 1 && s.cfg.Market.Remote == nil,
		DurationSeconds: s.cfg.Duration.Seconds(), EndSeconds: s.elapsed().Seconds(), Steps: s.steps,
		Population: map[string]int{}}
	for _, a := range s.agents {
		if !a.base().dormant {
			m.Population[a.base().class]++
		}
	}
	deals := w.sortedDeals()
	m.Volume = volume(w, deals)
	m.Prices = prices(w.series, s.sc.kinds)
	m.Welfare = s.welfare(deals)
	var err error
	if m.Reputation, err = s.reputation(ctx, deals); err != nil {
		return nil, err
	}
	if m.Attacks, err = s.attacks(ctx, deals); err != nil {
		return nil, err
	}
	for _, a := range m.Attacks {
		m.StolenMicrocredits += max(0, a.GainedMicrocredits)
	}
	if m.Wealth, err = s.wealth(ctx); err != nil {
		return nil, err
	}
	m.Latency = latency(deals)
	if s.sc.SpikeAt > 0 {
		m.Spike = s.spike(w)
	}
	if s.sc.Name == "enterprise" {
		m.Enterprise = enterprise(deals)
	}
	m.Errors = w.sortedErrors()
	if m.Errors == nil {
		m.Errors = []ErrorCount{}
	}
	return &Result{Metrics: m, Series: w.series}, nil
}

func volume(w *world, deals []*deal) Volume {
	v := Volume{Disputes: w.disputes, Audits: w.audits}
	by := map[string]*IntentVolume{}
	get := func(intent string) *IntentVolume {
		if by[intent] == nil {
			by[intent] = &IntentVolume{Intent: intent}
		}
		return by[intent]
	}
	for intent, n := range w.posted {
		get(intent).Intents = n
		v.Intents += n
	}
	for _, n := range w.expired {
		v.Expired += n
	}
	var prices = map[string]int64{}
	for _, d := range deals {
		iv := get(d.intent)
		iv.Contracts++
		v.Contracts++
		prices[d.intent] += d.price
		if !d.final {
			continue
		}
		v.Settled++
		switch d.outcome.Result {
		case market.ResultPaid:
			v.Paid++
			iv.Paid++
		case market.ResultPartial:
			v.Partial++
			iv.Paid++
		default:
			v.Refunded++
			iv.Refunded++
		}
		v.VolumeMicrocredits += d.outcome.PaidMicrocredits
		v.FeesMicrocredits += d.outcome.FeeMicrocredits
		iv.VolumeMicrocredits += d.outcome.PaidMicrocredits
	}
	for _, iv := range by {
		if iv.Contracts > 0 {
			iv.MeanPrice = prices[iv.Intent] / int64(iv.Contracts)
		}
		v.ByIntent = append(v.ByIntent, *iv)
	}
	sort.Slice(v.ByIntent, func(i, j int) bool { return v.ByIntent[i].Intent < v.ByIntent[j].Intent })
	return v
}

func prices(series []Sample, kinds []*kind) []PriceSummary {
	var out []PriceSummary
	for _, k := range kinds {
		p := PriceSummary{Intent: k.Intent}
		var sum, n int64
		for _, r := range series {
			if r.Intent != k.Intent || r.PriceIndexMicrocredits == 0 {
				continue
			}
			v := r.PriceIndexMicrocredits
			if n == 0 {
				p.First, p.Min, p.Max = v, v, v
			}
			p.Min, p.Max, p.Final = min(p.Min, v), max(p.Max, v), v
			sum += v
			n++
		}
		if n > 0 {
			p.Mean = sum / n
		}
		out = append(out, p)
	}
	return out
}

// root is the task whose welfare account a task's costs go to.
func root(t *task) *task {
	for t != nil && t.parent != nil {
		t = t.parent
	}
	return t
}

func (s *sim) welfare(deals []*deal) Welfare {
	w := Welfare{Definition: welfareDefinition}
	costs := map[*task]int64{}
	for _, d := range deals {
		if r := root(d.t); r != nil && r.honest {
			costs[r] += d.cost
		}
	}
	var sellers []*seller
	var orchestrators []*orchestrator
	for _, a := range s.agents {
		switch x := a.(type) {
		case *seller:
			if x.honest && x.does == honestWork {
				sellers = append(sellers, x)
			}
		case *orchestrator:
			orchestrators = append(orchestrators, x)
		}
	}
	for _, t := range s.world.roots {
		w.Tasks++
		w.ValueMicrocredits += t.value
		if t.done {
			w.Done++
			w.RealisedMicrocredits += t.realised
		}
		w.CostMicrocredits += costs[t]
		w.OptimumMicrocredits += optimum(t, sellers, orchestrators)
	}
	w.WelfareMicrocredits = w.RealisedMicrocredits - w.CostMicrocredits
	if w.OptimumMicrocredits > 0 {
		w.Ratio = round6(float64(w.WelfareMicrocredits) / float64(w.OptimumMicrocredits))
	}
	return w
}

// optimum is the best expected surplus any honest seller present at the
// task's posting could have made of it.
func optimum(t *task, sellers []*seller, orchestrators []*orchestrator) int64 {
	present := func(b *agentBase) bool { return !b.dormant && !b.joined.After(t.postedAt) }
	cheapest := func(k *kind, work int64) (int64, bool) {
		best, ok := int64(0), false
		for _, sl := range sellers {
			if present(&sl.agentBase) && sl.servesIntent(k) {
				if c := sl.cost(k, work); !ok || c < best {
					best, ok = c, true
				}
			}
		}
		return best, ok
	}
	if t.kind.Project {
		var over int64 = -1
		for _, o := range orchestrators {
			if present(&o.agentBase) && (over < 0 || o.overhead < over) {
				over = o.overhead
			}
		}
		if over < 0 {
			return 0
		}
		total := over
		for _, p := range t.parts {
			_, work, _ := p.solve()
			c, ok := cheapest(p.kind, work)
			if !ok {
				return 0
			}
			total += c
		}
		return max(0, t.value-total)
	}
	_, work, _ := t.solve()
	var best float64
	for _, sl := range sellers {
		if !present(&sl.agentBase) || !sl.servesIntent(t.kind) {
			continue
		}
		v, c, q := float64(t.value), float64(sl.cost(t.kind, work)), sl.trueQuality()
		if t.kind.fuzzy() {
			best = max(best, v*q-c)
		} else if q > 0 {
			// A failed check is retried, so success costs c/q on average.
			best = max(best, v-c/q)
		}
	}
	return int64(best)
}

// servesIntent reports whether the seller sells work traded as k's intent.
func (s *seller) servesIntent(k *kind) bool {
	for _, x := range s.kinds {
		if x.Intent == k.Intent {
			return true
		}
	}
	return false
}

func (s *sim) reputation(ctx context.Context, deals []*deal) (ReputationMetrics, error) {
	r := ReputationMetrics{MinContracts: minContracts}
	contracts := map[*agentBase]int{}
	for _, d := range deals {
		if d.final && d.seller != nil {
			contracts[d.seller]++
		}
	}
	var xs, ys, xa, ya []float64
	for _, a := range s.agents {
		sl, ok := a.(*seller)
		if !ok || sl.dormant || contracts[&sl.agentBase] < minContracts {
			continue
		}
		rep, err := s.op.Service.Reputation(s.op.Ctx, sl.id, "")
		if err != nil {
			return r, fmt.Errorf("reputation of %s: %w", sl.name, err)
		}
		p := RepPoint{Agent: sl.name, Class: sl.class, TrueQuality: round6(sl.trueQuality()), Score: round6(rep.Score),
			LowerBound: round6(rep.LowerBound), Contracts: contracts[&sl.agentBase], Evidence: round6(rep.Evidence)}
		r.Points = append(r.Points, p)
		xa, ya = append(xa, p.TrueQuality), append(ya, rep.Score)
		if sl.honest {
			xs, ys = append(xs, p.TrueQuality), append(ys, rep.Score)
		}
	}
	r.Sellers = len(xs)
	r.Spearman = round6(spearman(xs, ys))
	r.SpearmanAll = round6(spearman(xa, ya))
	var honest, free []float64
	for _, a := range s.agents {
		b, ok := a.(*buyer)
		if !ok {
			continue
		}
		rep, err := s.op.Service.Reputation(s.op.Ctx, b.id, "")
		if err != nil {
			return r, fmt.Errorf("reputation of %s: %w", b.name, err)
		}
		switch {
		case b.variant == buyFreeRider:
			free = append(free, rep.BuyerScore)
		case b.variant == buyHonest && b.honest:
			honest = append(honest, rep.BuyerScore)
		}
	}
	r.HonestBuyerScore = round6(mean(honest))
	r.FreeRiderBuyerScore = round6(mean(free))
	return r, nil
}

// attackOrder is the order of the report's attack table.
var attackOrder = []string{AttackInjection, AttackSybil + " (3)", AttackSybil + " (5)", AttackNonDelivery,
	AttackFreeRide, AttackReplay, AttackForgery, AttackOverspend, AttackBidSpam}

func (s *sim) attacks(ctx context.Context, deals []*deal) ([]Attack, error) {
	w := s.world
	// What each attack gained, from the truth about each contract.
	var injGain, nonGain, spamGain, freeGain, freeGross int64
	var injContracts, injPaid, paidAbove, spamPaid int
	// Free-riders put an injection in a random half of their disputes:
	// comparing the halves measures what the injected text itself did.
	var abDisputes [2]int
	var abRefund [2]int64
	freeBlocked := 0
	for _, d := range deals {
		if d.bidPrice > 0 && d.price > d.bidPrice {
			paidAbove++
			injGain += d.price - d.bidPrice
		}
		if d.seller == nil || d.buyer == nil {
			continue
		}
		paid := d.outcome.PaidMicrocredits
		switch d.seller.class {
		case "injector":
			injContracts++
			if d.final && paid > 0 {
				injGain += paid
				injPaid++
			}
		case "non-deliverer":
			nonGain += paid
		case "spammer":
			spamGain += paid
			if paid > 0 {
				spamPaid++
			}
		}
		if d.buyer.class == "free-rider" && d.disputed && d.final {
			// What an exact arbiter, knowing the true quality, would have
			// paid; the difference is the attack's gain, signed, since an
			// arbiter's noise errs both ways; the fees are its cost.
			q := d.quality
			if !d.worked || d.garbage {
				q = 0
			}
			_, share := verdictFor(q)
			fair := int64(float64(d.price) * share)
			freeGross += fair - paid
			freeGain += fair - paid - d.outcome.ArbiterFeeMicrocredits
			if paid == d.price {
				freeBlocked++
			}
			arm := 0
			if d.disputeInjected {
				arm = 1
			}
			abDisputes[arm]++
			abRefund[arm] += fair - paid
		}
	}
	var out []Attack
	for _, name := range attackOrder {
		w.mu.Lock()
		a, seen := w.attacks[name]
		w.mu.Unlock()
		row := Attack{Name: name, Applicable: true}
		if seen {
			row = *a
		}
		switch {
		case name == AttackInjection:
			row.GainedMicrocredits = injGain
			row.Blocked = max(0, row.Attempts-injPaid-paidAbove)
			row.Note = fmt.Sprintf("%d contracts with an injecting seller: %d awarded above the bid's price, %d garbage deliveries paid. "+
				"Free-riders inject into a random half of their disputes: refunds beyond an exact verdict were %s credits over %d injected disputes "+
				"and %s over %d plain ones; arbiters never read the text, and their noise is counted under free-riding",
				injContracts, paidAbove, injPaid, credits(abRefund[1]), abDisputes[1], credits(abRefund[0]), abDisputes[0])
		case name == AttackNonDelivery:
			row.GainedMicrocredits = nonGain
			row.Blocked = row.Attempts
			row.Note = "contracts won and never delivered: the escrow returns to the buyer at the delivery deadline"
		case name == AttackBidSpam:
			row.GainedMicrocredits = spamGain
			refused := row.Blocked
			row.Blocked = row.Attempts - spamPaid
			row.Note = fmt.Sprintf("%d bids refused by the market (not eligible, duplicate, over budget); the rest were ignored or won and refunded", refused)
		case name == AttackFreeRide:
			row.GainedMicrocredits = freeGain
			row.Blocked = freeBlocked
			row.Note = fmt.Sprintf("blocked: disputes the arbiter released in full; gain: refunds beyond what an exact verdict on the true quality pays (%s credits, signed: arbiter noise errs both ways), less the arbiter fees the disputes cost",
				credits(freeGross))
		case name == AttackOverspend:
			row.GainedMicrocredits = s.overspent(deals)
			row.Note = "awards past the operator's mandate (a per-transfer cap and a budget); the ledger refuses them in the award's atomic step"
		case name == AttackReplay || name == AttackForgery:
			row.Applicable = s.cfg.Market.Remote != nil
			if !row.Applicable {
				row.Note = "n/a in-process: requests are neither signed nor transported"
				break
			}
			if name == AttackReplay {
				row.Note = "signed requests overheard on the wire, sent again verbatim: the nonce was used"
				break
			}
			gain, err := s.wireGain(ctx)
			if err != nil {
				return nil, err
			}
			row.GainedMicrocredits = gain
			row.Note = "a signed body altered, a request in a victim's name signed with the attacker's key, and a mint signed by a non-operator; gained: the attacker's wallet beyond its grant"
		case strings.HasPrefix(name, AttackSybil):
			if !s.hasRing(name) {
				continue
			}
			gain, net, grants, closed, err := s.ringOutcome(ctx, name)
			if err != nil {
				return nil, err
			}
			g := round6(gain)
			row.ReputationGain, row.RingClosed = &g, &closed
			row.GainedMicrocredits = net
			row.Note = fmt.Sprintf("blocked: wash trades that added no evidence to the seller's score. Credits: the ring's wallets less "+
				"its starting grants; its %d identities claimed %s credits of grants from the treasury", s.ringSize(name), credits(grants))
			if !closed {
				row.Note += ". The ring never closed (a member never sold): until money has gone round, its trades look like independent ones, and its reputation gain is theirs"
			}
		}
		if !seen && row.Applicable && name != AttackReplay && name != AttackForgery && !s.hasAttacker(name) {
			continue
		}
		out = append(out, row)
	}
	if len(out) == 2 && out[0].Name == AttackReplay && out[1].Name == AttackForgery && s.cfg.Market.Remote == nil {
		return []Attack{}, nil // no adversaries in this population
	}
	return out, nil
}

// hasAttacker reports whether the population includes the attack at all.
func (s *sim) hasAttacker(name string) bool {
	class := map[string]string{AttackInjection: "injector", AttackNonDelivery: "non-deliverer", AttackFreeRide: "free-rider",
		AttackOverspend: "overspender", AttackBidSpam: "spammer"}[name]
	for _, a := range s.agents {
		if a.base().class == class {
			return true
		}
	}
	return false
}

func (s *sim) hasRing(name string) bool { return s.ringSize(name) > 0 }

func (s *sim) ringSize(name string) int {
	n := 0
	for _, a := range s.agents {
		if r, ok := a.(*ringMember); ok && r.attack == name {
			n++
		}
	}
	return n
}

// ringOutcome returns a ring's mean reputation gain, its wallets' net
// change (without the grants), the grants its identities claimed, and
// whether the ring closed: every member sold at least once.
func (s *sim) ringOutcome(ctx context.Context, name string) (gain float64, net, grants int64, closed bool, err error) {
	var held int64
	n := 0
	closed = true
	for _, a := range s.agents {
		r, ok := a.(*ringMember)
		if !ok || r.attack != name {
			continue
		}
		rep, err := s.op.Service.Reputation(s.op.Ctx, r.id, "")
		if err != nil {
			return 0, 0, 0, false, err
		}
		ag, err := s.op.Service.Agent(s.op.Ctx, r.id)
		if err != nil {
			return 0, 0, 0, false, err
		}
		bal, err := s.op.Service.Balance(s.op.Ctx, r.id)
		if err != nil {
			return 0, 0, 0, false, err
		}
		gain += rep.Score - r.startRep
		closed = closed && r.settledAs > 0
		held += bal.PostedMicrocredits + bal.BondMicrocredits
		grants += ag.GrantMicrocredits
		n++
	}
	if n == 0 {
		return 0, 0, 0, false, nil
	}
	return gain / float64(n), held - grants, grants, closed, nil
}

// overspent is what overspenders spent past their mandates: a transfer
// over the per-transfer cap, or more debited in total than the budget.
// As in the ledger, a refund does not count as spent; the runs are
// shorter than the mandate's day-long window.
func (s *sim) overspent(deals []*deal) int64 {
	var over int64
	spent := map[*agentBase]int64{}
	var spenders []*buyer
	for _, a := range s.agents {
		if b, ok := a.(*buyer); ok && b.variant == buyOverspend {
			spenders = append(spenders, b)
		}
	}
	for _, d := range deals {
		for _, b := range spenders {
			if d.buyer == &b.agentBase {
				over += max(0, d.price-b.mandateCap)
				spent[d.buyer] += d.outcome.PaidMicrocredits + d.outcome.FeeMicrocredits + d.outcome.ArbiterFeeMicrocredits
			}
		}
	}
	for _, b := range spenders {
		over += max(0, spent[&b.agentBase]-b.mandateBudget)
	}
	return over
}

func (s *sim) wealth(ctx context.Context) (Wealth, error) {
	w := Wealth{MeanByClass: map[string]int64{}}
	var all []float64
	sums, counts := map[string]int64{}, map[string]int64{}
	for _, a := range s.agents {
		b := a.base()
		if b.dormant {
			continue
		}
		bal, err := s.op.Service.Balance(s.op.Ctx, b.id)
		if err != nil {
			return w, fmt.Errorf("balance of %s: %w", b.name, err)
		}
		v := bal.PostedMicrocredits + bal.BondMicrocredits
		all = append(all, float64(v))
		sums[b.class] += v
		counts[b.class]++
	}
	for c, sum := range sums {
		w.MeanByClass[c] = sum / counts[c]
	}
	w.Gini = round6(gini(all))
	w.Lorenz = lorenz(all, 10)
	return w, nil
}

func latency(deals []*deal) Latency {
	var contract, taskMs []int64
	seen := map[*task]bool{}
	for _, d := range deals {
		if !d.final {
			continue
		}
		contract = append(contract, d.settledAt.Sub(d.awardedAt).Milliseconds())
		if t := d.t; t != nil && t.parent == nil && d.outcome.PaidMicrocredits > 0 && !seen[t] {
			seen[t] = true
			taskMs = append(taskMs, d.settledAt.Sub(t.postedAt).Milliseconds())
		}
	}
	return Latency{Contract: percentiles(contract), Task: percentiles(taskMs)}
}

func (s *sim) spike(w *world) *Spike {
	at := s.sc.spikeTime(s.cfg.Duration)
	d := s.cfg.Duration.Seconds()
	sp := &Spike{AtSeconds: at, Factor: s.sc.SpikeFactor, Entries: append([]Entry{}, w.entries...)}
	sp.Entrants = len(sp.Entries)
	for _, k := range s.sc.kinds {
		si := SpikeIntent{Intent: k.Intent}
		var pre, fin []float64
		for _, r := range w.series {
			if r.Intent != k.Intent || r.PriceIndexMicrocredits == 0 {
				continue
			}
			v := r.PriceIndexMicrocredits
			switch {
			case r.T > 0.6*at && r.T <= at:
				pre = append(pre, float64(v))
			case r.T > at && r.T <= d && v > si.Peak:
				si.Peak, si.PeakAt = v, r.T
			}
			if r.T >= 0.8*d && r.T <= d {
				fin = append(fin, float64(v))
			}
		}
		si.Pre, si.Final = int64(mean(pre)), int64(mean(fin))
		if si.Pre > 0 {
			si.Rise = round6(float64(si.Peak)/float64(si.Pre) - 1)
			si.FinalGap = round6(float64(si.Final)/float64(si.Pre) - 1)
			si.Rose = si.Rise >= 0.05
			si.Settled = math.Abs(si.FinalGap) <= 0.10
		}
		sp.Intents = append(sp.Intents, si)
	}
	return sp
}

func enterprise(deals []*deal) *Enterprise {
	e := &Enterprise{}
	var q float64
	for _, d := range deals {
		if d.t == nil {
			continue
		}
		switch {
		case d.t.kind.Project:
			e.Projects++
			if d.final && d.outcome.PaidMicrocredits > 0 {
				e.Paid++
				q += d.quality
			}
			if d.final {
				e.OrchestratorMarginMicrocredits += d.outcome.PaidMicrocredits
			}
		case d.t.parent != nil:
			e.Subcontracts++
			if d.final && d.outcome.PaidMicrocredits > 0 {
				e.SubPassed++
			}
			if d.final {
				e.OrchestratorMarginMicrocredits -= d.outcome.PaidMicrocredits + d.outcome.FeeMicrocredits
			}
		}
	}
	if e.Paid > 0 {
		e.MeanQuality = round6(q / float64(e.Paid))
	}
	return e
}

// spearman is the rank correlation of xs and ys, with tied values given
// their mean rank; 0 with fewer than three points.
func spearman(xs, ys []float64) float64 {
	if len(xs) < 3 || len(xs) != len(ys) {
		return 0
	}
	rx, ry := ranks(xs), ranks(ys)
	mx, my := mean(rx), mean(ry)
	var sxy, sxx, syy float64
	for i := range rx {
		sxy += (rx[i] - mx) * (ry[i] - my)
		sxx += (rx[i] - mx) * (rx[i] - mx)
		syy += (ry[i] - my) * (ry[i] - my)
	}
	if sxx == 0 || syy == 0 {
		return 0
	}
	return sxy / math.Sqrt(sxx*syy)
}

func ranks(v []float64) []float64 {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return v[idx[a]] < v[idx[b]] })
	r := make([]float64, len(v))
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && v[idx[j+1]] == v[idx[i]] {
			j++
		}
		for k := i; k <= j; k++ {
			r[idx[k]] = float64(i+j)/2 + 1
		}
		i = j + 1
	}
	return r
}

// gini is the Gini coefficient of holdings (negative ones count as zero).
func gini(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	x := make([]float64, len(v))
	for i, a := range v {
		x[i] = max(0, a)
	}
	sort.Float64s(x)
	var cum, sum float64
	for i, a := range x {
		cum += float64(i+1) * a
		sum += a
	}
	if sum == 0 {
		return 0
	}
	n := float64(len(x))
	return (2*cum)/(n*sum) - (n+1)/n
}

// lorenz returns the cumulative share of the total held by each of n
// equal slices of the population, poorest first.
func lorenz(v []float64, n int) []float64 {
	x := append([]float64(nil), v...)
	sort.Float64s(x)
	var total float64
	for _, a := range x {
		total += max(0, a)
	}
	out := make([]float64, n)
	if total == 0 || len(x) == 0 {
		return out
	}
	var cum float64
	j := 0
	for i := 0; i < n; i++ {
		upto := (i + 1) * len(x) / n
		for ; j < upto; j++ {
			cum += max(0, x[j])
		}
		out[i] = round6(cum / total)
	}
	return out
}

func percentiles(v []int64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	x := append([]int64(nil), v...)
	sort.Slice(x, func(i, j int) bool { return x[i] < x[j] })
	var sum int64
	for _, a := range x {
		sum += a
	}
	at := func(q float64) int64 { return x[min(len(x)-1, int(q*float64(len(x))))] }
	return Percentiles{N: len(x), Mean: sum / int64(len(x)), P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: x[len(x)-1]}
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, a := range v {
		s += a
	}
	return s / float64(len(v))
}

// round6 rounds to six decimals, so that the metrics read cleanly.
func round6(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return math.Round(f*1e6) / 1e6
}
