package sim

import (
	"fmt"
	"strings"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// Scenario is a population of agents and the conditions they trade in.
type Scenario struct {
	Name        string
	Description string
	// Agents is the default population; MinAgents the smallest that
	// makes sense.
	Agents, MinAgents int
	// Duration is the default posting period, in market time.
	Duration time.Duration
	// Step is how far market time moves between the agents' turns.
	Step time.Duration
	// Sample is how often the time series reads the market's statistics,
	// over the sliding Window.
	Sample, Window time.Duration
	// Workers is the default number of agents acting at once.
	Workers int
	// kinds are the intent types the time series follows.
	kinds []*kind
	// SpikeAt, when positive, is the fraction of the posting period after
	// which demand is multiplied by SpikeFactor, and stays so.
	SpikeAt, SpikeFactor float64
	// LLMInjection runs the prompt-injection suite aimed at an LLM buyer
	// after the economy, and reports it as an attack.
	LLMInjection bool

	build func(s *sim, n int) error
}

// demand is the scenario's demand multiplier at a point of the run.
func (sc *Scenario) demand(elapsed, duration time.Duration) float64 {
	if sc.SpikeAt > 0 && float64(elapsed) >= sc.SpikeAt*float64(duration) {
		return sc.SpikeFactor
	}
	return 1
}

// spikeTime is when the spike comes, in seconds from the start.
func (sc *Scenario) spikeTime(duration time.Duration) float64 {
	return sc.SpikeAt * duration.Seconds()
}

var checkedKinds = []*kind{kindSort, kindFactor, kindPow, kindMatmul}
var fuzzyKinds = []*kind{kindTranslate, kindSummarize}
var tradedKinds = []*kind{kindSort, kindFactor, kindPow, kindMatmul, kindTranslate, kindSummarize}

// Scenarios lists the built-in scenarios.
func Scenarios() []*Scenario {
	return []*Scenario{
		{
			Name:        "baseline",
			Description: "honest buyers, sellers of checked and fuzzy work with three pricing strategies, bonded arbiters",
			Agents:      60, MinAgents: 16, Duration: 10 * time.Minute, Step: time.Second,
			Sample: 15 * time.Second, Window: 2 * time.Minute, Workers: 1, kinds: tradedKinds,
			build: buildBaseline,
		},
		{
			Name:        "demand-spike",
			Description: "demand jumps 2.5-fold 45% of the way in; incumbents reprice; entrants join where the price index pays",
			Agents:      60, MinAgents: 20, Duration: 15 * time.Minute, Step: time.Second,
			Sample: 15 * time.Second, Window: 2 * time.Minute, Workers: 1, kinds: []*kind{kindSort, kindTranslate},
			SpikeAt: 0.45, SpikeFactor: 2.5,
			build: buildSpike,
		},
		{
			Name:        "adversarial",
			Description: "the baseline economy under attack: prompt injectors, sybil rings, non-deliverers, free-riders, overspenders, bid spammers",
			Agents:      80, MinAgents: 40, Duration: 10 * time.Minute, Step: time.Second,
			Sample: 15 * time.Second, Window: 2 * time.Minute, Workers: 1, kinds: tradedKinds,
			LLMInjection: true,
			build:        buildAdversarial,
		},
		{
			Name:        "enterprise",
			Description: "clients buy whole projects; orchestrators subcontract the parts under the project's escrow and pay on passing checks",
			Agents:      50, MinAgents: 16, Duration: 10 * time.Minute, Step: time.Second,
			Sample: 15 * time.Second, Window: 2 * time.Minute, Workers: 1,
			kinds: []*kind{kindProject, kindSort, kindFactor, kindPow, kindMatmul},
			build: buildEnterprise,
		},
		{
			Name:        "scale",
			Description: "a benchmark: ten thousand agents trading checked work as fast as the market settles it",
			Agents:      10_000, MinAgents: 100, Duration: time.Minute, Step: time.Second,
			Sample: 15 * time.Second, Window: time.Minute, Workers: 32, kinds: []*kind{kindSort, kindPow},
			build: buildScale,
		},
	}
}

func scenarioByName(name string) (*Scenario, bool) {
	for _, sc := range Scenarios() {
		if sc.Name == name {
			return sc, true
		}
	}
	return nil, false
}

func scenarioNames() string {
	var names []string
	for _, sc := range Scenarios() {
		names = append(names, sc.Name)
	}
	return strings.Join(names, ", ")
}

// uniform draws from [lo, hi) with the scenario's randomness.
func (s *sim) uniform(lo, hi float64) float64 { return lo + s.rng.Float64()*(hi-lo) }

// honestSeller returns a seller of kinds with drawn skill, cost, speed,
// capacity and a pricing strategy in rotation.
func (s *sim) honestSeller(name string, kinds []*kind, i int) *seller {
	sl := &seller{
		agentBase: agentBase{name: name, class: "seller", honest: true, operator: "op-" + name,
			roles: []market.Role{market.RoleSeller}},
		kinds: kinds, costMult: s.uniform(0.85, 1.25), errRate: s.uniform(0, 0.4), quality: s.uniform(0.45, 0.97),
		speed: s.uniform(0.7, 1.5), capacity: 3 + s.rng.IntN(4), attention: 1,
	}
	switch i % 3 {
	case 0:
		sl.pricing = &fixedPricing{m: s.uniform(1.15, 1.35)}
	case 1:
		sl.pricing = &demandPricing{base: s.uniform(1.15, 1.3), slope: 0.5}
	default:
		sl.pricing = &learningPricing{m: s.uniform(1.15, 1.4), up: 1.02, down: 0.98, lo: 1.05, hi: 3}
	}
	return sl
}

// honestBuyer returns a buyer of kinds posting every interval on average.
func (s *sim) honestBuyer(name string, kinds []*kind, interval time.Duration) *buyer {
	return &buyer{
		agentBase: agentBase{name: name, class: "buyer", honest: true, operator: "op-" + name,
			roles: []market.Role{market.RoleBuyer}},
		mix: kinds, interval: interval, valueMult: s.uniform(2.5, 4), funds: 100 * market.Credit,
		speedWeight: 0.02, haggle: s.rng.IntN(4) == 0, perceiveSD: 0.08, acceptAt: acceptBar,
	}
}

func (s *sim) arbiterAgent(name string) *arbiter {
	return &arbiter{agentBase: agentBase{name: name, class: "arbiter", honest: true, operator: "op-" + name,
		roles: []market.Role{market.RoleArbiter}}, bond: 20 * market.Credit, sd: 0.05}
}

// pickKinds returns one to three of kinds for a buyer.
func (s *sim) pickKinds(kinds []*kind) []*kind {
	n := 1 + s.rng.IntN(min(3, len(kinds)))
	perm := s.rng.Perm(len(kinds))
	var out []*kind
	for _, i := range perm[:n] {
		out = append(out, kinds[i])
	}
	return out
}

// buildMarket adds the honest core of a market: sellers spread over
// kinds, buyers, arbiters.
func buildMarket(s *sim, sellers, buyers, arbiters int, kinds []*kind, interval time.Duration) {
	for i := 0; i < arbiters; i++ {
		s.add(s.arbiterAgent(fmt.Sprintf("arbiter-%d", i)))
	}
	for i := 0; i < sellers; i++ {
		k := kinds[i%len(kinds)]
		s.add(s.honestSeller(fmt.Sprintf("seller-%s-%d", strings.ToLower(k.Intent), i), []*kind{k}, i/len(kinds)))
	}
	for i := 0; i < buyers; i++ {
		s.add(s.honestBuyer(fmt.Sprintf("buyer-%d", i), s.pickKinds(kinds), interval))
	}
}

func buildBaseline(s *sim, n int) error {
	arbiters := max(3, n/15)
	sellers := max(len(tradedKinds), n*35/100)
	buyers := n - arbiters - sellers
	// About two contracts per buyer a minute: 35 buyers make a thousand
	// in a ten-minute run.
	buildMarket(s, sellers, buyers, arbiters, tradedKinds, 18*time.Second)
	return nil
}

// buildSpike is a market of two kinds whose sellers have little spare
// capacity, so that when demand jumps, capacity binds: fewer sellers are
// free to bid, demand-driven and learning sellers raise their prices, and
// the price index rises until it pays dormant entrants to join. Entrants
// watch from the start, so the market before the spike is already one of
// free entry.
func buildSpike(s *sim, n int) error {
	kinds := []*kind{kindSort, kindTranslate}
	arbiters := 3
	sellers := max(4, n/6)
	entrants := max(4, n/3)
	buyers := n - arbiters - sellers - entrants
	for i := 0; i < arbiters; i++ {
		s.add(s.arbiterAgent(fmt.Sprintf("arbiter-%d", i)))
	}
	spikeSeller := func(name string, k *kind, i int) *seller {
		sl := s.honestSeller(name, []*kind{k}, 1+i%2) // demand-driven and learning pricing
		sl.errRate, sl.quality, sl.capacity = s.uniform(0, 0.08), s.uniform(0.75, 0.97), 2
		return sl
	}
	for i := 0; i < sellers; i++ {
		k := kinds[i%len(kinds)]
		s.add(spikeSeller(fmt.Sprintf("seller-%s-%d", strings.ToLower(k.Intent), i), k, i/len(kinds)))
	}
	for i := 0; i < entrants; i++ {
		k := kinds[i%len(kinds)]
		sl := spikeSeller(fmt.Sprintf("entrant-%s-%d", strings.ToLower(k.Intent), i), k, i/len(kinds))
		// A deep pool of similar would-be sellers: free entry holds the
		// long-run price near their common threshold, before the spike
		// and after it.
		sl.class, sl.entrant, sl.dormant = "entrant", true, true
		sl.costMult, sl.hurdle = s.uniform(0.9, 1.1), s.uniform(0.3, 0.4)
		s.add(sl)
	}
	for i := 0; i < buyers; i++ {
		s.add(s.honestBuyer(fmt.Sprintf("buyer-%d", i), kinds, 25*time.Second))
	}
	return nil
}

// Attack names, as the report shows them.
const (
	AttackInjection   = "prompt injection"
	AttackSybil       = "sybil ring"
	AttackNonDelivery = "non-delivery"
	AttackFreeRide    = "free-riding"
	AttackReplay      = "replay"
	AttackForgery     = "forgery"
	AttackOverspend   = "overspending"
	AttackBidSpam     = "bid spam"
)

func buildAdversarial(s *sim, n int) error {
	honest := n * 60 / 100
	arbiters := max(3, honest/15)
	sellers := max(len(tradedKinds), honest*35/100)
	buildMarket(s, sellers, honest-arbiters-sellers, arbiters, tradedKinds, 18*time.Second)
	adv := n - honest
	// The wire attacker acts only against a server.
	s.add(&wireAttacker{agentBase: agentBase{name: "wire-attacker", class: "wire-attacker", operator: "op-wire",
		roles: []market.Role{market.RoleSeller}}})
	adv--
	// A fixed cast, then more of each in turn while agents remain.
	add := func(i int) int {
		switch i % 7 {
		case 0:
			k := tradedKinds[(i/7)%len(tradedKinds)]
			if i/7%2 == 0 {
				k = fuzzyKinds[(i/14)%len(fuzzyKinds)]
			}
			sl := s.honestSeller(fmt.Sprintf("injector-%d", i), []*kind{k}, 0)
			sl.class, sl.honest, sl.does = "injector", false, injectWork
			s.add(sl)
			return 1
		case 1:
			size := 3
			if i/7%2 == 1 {
				size = 5
			}
			s.addRing(fmt.Sprintf("ring%d", i), size)
			return size
		case 2:
			k := checkedKinds[(i/7)%len(checkedKinds)]
			sl := s.honestSeller(fmt.Sprintf("nondeliverer-%d", i), []*kind{k}, 0)
			sl.class, sl.honest, sl.does = "non-deliverer", false, noDelivery
			s.add(sl)
			return 1
		case 3, 4:
			b := s.honestBuyer(fmt.Sprintf("freerider-%d", i), fuzzyKinds, 18*time.Second)
			b.class, b.honest, b.variant = "free-rider", false, buyFreeRider
			s.add(b)
			return 1
		case 5:
			b := s.honestBuyer(fmt.Sprintf("overspender-%d", i), checkedKinds, 15*time.Second)
			b.class, b.honest, b.variant = "overspender", false, buyOverspend
			b.mandateCap, b.mandateBudget = market.Credit, 20*market.Credit
			s.add(b)
			return 1
		default:
			k := checkedKinds[(i/7)%len(checkedKinds)]
			sl := s.honestSeller(fmt.Sprintf("spammer-%d", i), []*kind{k}, 0)
			sl.class, sl.honest, sl.does = "spammer", false, spamBids
			s.add(sl)
			return 1
		}
	}
	for i := 0; adv > 0; i++ {
		if i%7 == 1 && adv < 5 {
			continue
		}
		adv -= add(i)
	}
	return nil
}

// addRing adds a sybil ring of size members, each claiming its own operator.
func (s *sim) addRing(name string, size int) {
	attack := fmt.Sprintf("%s (%d)", AttackSybil, size)
	ring := make([]*ringMember, size)
	for i := range ring {
		ring[i] = &ringMember{agentBase: agentBase{name: fmt.Sprintf("%s-%d", name, i), class: "sybil",
			operator: fmt.Sprintf("op-%s-%d", name, i), roles: []market.Role{market.RoleBuyer, market.RoleSeller}},
			pos: i, interval: 15 * time.Second, attack: attack}
	}
	for _, m := range ring {
		m.ring = ring
		s.add(m)
	}
}

func buildEnterprise(s *sim, n int) error {
	arbiters := 3
	orchestrators := max(2, n/12)
	sellers := max(len(checkedKinds), n*40/100)
	clients := n - arbiters - orchestrators - sellers
	for i := 0; i < arbiters; i++ {
		s.add(s.arbiterAgent(fmt.Sprintf("arbiter-%d", i)))
	}
	for i := 0; i < sellers; i++ {
		k := checkedKinds[i%len(checkedKinds)]
		sl := s.honestSeller(fmt.Sprintf("coder-%s-%d", strings.ToLower(k.Intent), i), []*kind{k}, i/len(checkedKinds))
		sl.capacity += 2
		s.add(sl)
	}
	for i := 0; i < orchestrators; i++ {
		s.add(&orchestrator{agentBase: agentBase{name: fmt.Sprintf("orchestrator-%d", i), class: "orchestrator", honest: true,
			operator: fmt.Sprintf("op-orchestrator-%d", i), roles: []market.Role{market.RoleBuyer, market.RoleSeller}},
			markup: s.uniform(1.15, 1.3), capacity: 8, overhead: 200_000})
	}
	for i := 0; i < clients; i++ {
		b := s.honestBuyer(fmt.Sprintf("client-%d", i), []*kind{kindProject}, 50*time.Second)
		b.class = "client"
		s.add(b)
	}
	// The orchestrators pay subcontractors from their own wallets before
	// their clients pay them.
	return nil
}

// buildScale splits a large market into segments of about a hundred
// agents, each trading one variant of sorting or proof-of-work under its
// own intent type, as a large market splits by specialty: an intent is
// routed to its segment's sellers, not to thousands.
func buildScale(s *sim, n int) error {
	arbiters := max(3, n/100)
	segments := max(1, (n-arbiters)/100)
	var kinds []*kind
	for i := 0; i < segments; i++ {
		base := kindSort
		if i%2 == 1 {
			base = kindPow
		}
		k := base.variant(fmt.Sprintf("%s.%03d", base.Intent, i))
		s.kinds[k.Intent] = k
		kinds = append(kinds, k)
	}
	s.sc.kinds = kinds[:min(4, len(kinds))]
	for i := 0; i < arbiters; i++ {
		s.add(s.arbiterAgent(fmt.Sprintf("arbiter-%d", i)))
	}
	rest := n - arbiters
	for i := 0; i < rest; i++ {
		k := kinds[(i/100)%segments]
		if i%100 < 28 {
			sl := s.honestSeller(fmt.Sprintf("seller-%d", i), []*kind{k}, i/segments)
			sl.attention = 0.15 // about four of a segment's 28 sellers bid on each intent
			s.add(sl)
			continue
		}
		b := s.honestBuyer(fmt.Sprintf("buyer-%d", i), []*kind{k}, 10*time.Second)
		b.funds, b.haggle = 0, false
		s.add(b)
	}
	return nil
}
