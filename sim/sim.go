package sim

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"time"

	agentpkg "github.com/agentmarket/agentmarket/agent"
	"github.com/agentmarket/agentmarket/market"
)

// Config configures a run. Zero fields take the scenario's defaults.
type Config struct {
	// Scenario names the scenario; see Scenarios. Default "baseline".
	Scenario string
	// Agents is the population size.
	Agents int
	// Seed seeds every agent's randomness. In-process, the engine must be
	// seeded with it too (engine.Config.Seed) for a run to be a function
	// of its seed.
	Seed uint64
	// Duration is how long buyers keep posting work, in market time. The
	// run then winds down until the open contracts settle.
	Duration time.Duration
	// WindDown bounds how long the run waits, after buyers stop posting,
	// for the open contracts to settle. Default 4 minutes.
	WindDown time.Duration
	// Workers is how many agents act at once. With one, agents act in a
	// fixed order and an in-process run is deterministic; with more, the
	// engine sees concurrent calls (and group-commits them) in whatever
	// order the scheduler picks, which is faster but not reproducible.
	Workers int
	// Market is what the agents trade on.
	Market Market
	// Progress, when set, is told of every step taken; Steps says how many
	// a run may take.
	Progress interface{ Add(n int64) }
	// Logger receives the agents' unexpected errors. Nil discards them.
	Logger *slog.Logger
}

// Resolve returns the config with the scenario's defaults filled in.
func (c Config) Resolve() (Config, *Scenario, error) {
	if c.Scenario == "" {
		c.Scenario = "baseline"
	}
	sc, ok := scenarioByName(c.Scenario)
	if !ok {
		return c, nil, fmt.Errorf("unknown scenario %q; the scenarios are %s", c.Scenario, scenarioNames())
	}
	if c.Agents <= 0 {
		c.Agents = sc.Agents
	}
	if c.Agents < sc.MinAgents {
		return c, nil, fmt.Errorf("scenario %s needs at least %d agents", sc.Name, sc.MinAgents)
	}
	if c.Duration <= 0 {
		c.Duration = sc.Duration
	}
	if c.Workers <= 0 {
		c.Workers = sc.Workers
	}
	if c.WindDown <= 0 {
		c.WindDown = windDown
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, sc, nil
}

// Steps returns how many steps a run of the config may take: the posting
// period and the longest wind-down.
func (c Config) Steps() int64 {
	c, sc, err := c.Resolve()
	if err != nil {
		return 0
	}
	return int64((c.Duration + c.WindDown) / sc.Step)
}

// windDown is the default wind-down.
const windDown = 4 * time.Minute

// Run runs a simulation and returns its result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg, sc, err := cfg.Resolve()
	if err != nil {
		return nil, err
	}
	if cfg.Market.Connect == nil || cfg.Market.Clock == nil {
		return nil, errors.New("sim: Config.Market needs Connect and Clock")
	}
	s := &sim{
		cfg:   cfg,
		sc:    sc,
		clock: cfg.Market.Clock,
		byID:  make(map[market.AgentID]agent),
		kinds: make(map[string]*kind),
		rng:   rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
	}
	s.world = newWorld(s)
	for _, k := range allKinds {
		s.kinds[k.Intent] = k
	}
	wallStart := time.Now()
	if s.op, err = cfg.Market.Connect(ctx, market.PrivateKey{}); err != nil {
		return nil, fmt.Errorf("connect as operator: %w", err)
	}
	s.start = s.clock.Now()
	s.end = s.start.Add(cfg.Duration)
	if err := sc.build(s, cfg.Agents); err != nil {
		return nil, fmt.Errorf("build %s population: %w", sc.Name, err)
	}
	if err := s.setup(ctx); err != nil {
		return nil, err
	}
	setupWall := time.Since(wallStart)
	runStart := time.Now()
	if err := s.loop(ctx); err != nil {
		return nil, err
	}
	runWall := time.Since(runStart)
	res, err := s.finish(ctx)
	if err != nil {
		return nil, err
	}
	if sc.LLMInjection {
		if err := s.injectLLM(ctx, &res.Metrics); err != nil {
			return nil, err
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.Wall = Wall{Setup: setupWall, Run: runWall, Total: time.Since(wallStart), HeapSys: ms.HeapSys, Sys: ms.Sys}
	if secs := runWall.Seconds(); secs > 0 {
		res.Wall.LifecyclesPerSecond = float64(res.Metrics.Volume.Settled) / secs
	}
	return res, nil
}

// sim is one run.
type sim struct {
	cfg   Config
	sc    *Scenario
	clock Clock
	op    Session
	world *world
	rng   *rand.Rand // the scenario's own draws, such as when entrants look

	agents []agent
	byID   map[market.AgentID]agent
	// kinds are the intent types traded, by name: the standard ones and
	// any variants the scenario adds. Read-only once the run starts.
	kinds map[string]*kind
	mu    sync.Mutex // guards byID and agents once agents act concurrently

	timerMu  sync.Mutex
	timers   timerHeap
	timerSeq uint64

	cursor     int64 // the last event handed out
	start, end time.Time
	steps      int
	nextSample time.Time

	errMu sync.Mutex
	fatal error
}

// kindOf returns the kind traded as intent, or nil.
func (s *sim) kindOf(intent string) *kind { return s.kinds[intent] }

// now is the market's time.
func (s *sim) now() time.Time { return s.clock.Now() }

// posting reports whether buyers still post new work.
func (s *sim) posting() bool { return s.now().Before(s.end) }

// elapsed is the market time since the run began.
func (s *sim) elapsed() time.Duration { return s.now().Sub(s.start) }

// add puts an agent in the population. It registers when setup runs, or
// at once if the run is under way.
func (s *sim) add(a agent) {
	b := a.base()
	b.idx = len(s.agents)
	b.sim = s
	b.rng = rand.New(rand.NewPCG(s.cfg.Seed, uint64(b.idx)+1))
	seed := sha256.Sum256(fmt.Appendf(nil, "agentmarket/sim/%d/%d", s.cfg.Seed, b.idx))
	b.key, _ = market.NewPrivateKeyFromSeed(seed[:])
	b.id = b.key.Public().DID()
	s.agents = append(s.agents, a)
}

// setup registers the population that is there from the start and lets
// each agent prepare: offers, bonds, funds, first timers.
func (s *sim) setup(ctx context.Context) error {
	var live []agent
	for _, a := range s.agents {
		if !a.base().dormant {
			live = append(live, a)
		}
	}
	errs := make([]error, len(live))
	s.parallel(len(live), func(i int) {
		errs[i] = s.join(ctx, live[i])
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, a := range s.agents {
		if d, ok := a.(interface{ wake() }); ok {
			d.wake() // dormant agents wake to decide whether to join
		}
	}
	return nil
}

// join registers an agent and runs its preparation.
func (s *sim) join(ctx context.Context, a agent) error {
	b := a.base()
	sess, err := s.cfg.Market.Connect(ctx, b.key)
	if err != nil {
		return fmt.Errorf("connect %s: %w", b.name, err)
	}
	b.sess = sess
	reg := market.SignRegistration(market.Registration{Name: b.name, Operator: b.operator, Roles: b.roles}, b.key, s.now())
	if _, err := sess.Service.Register(sess.Ctx, reg); err != nil {
		return fmt.Errorf("register %s: %w", b.name, err)
	}
	s.mu.Lock()
	s.byID[b.id] = a
	s.mu.Unlock()
	b.joined = s.now()
	b.dormant = false
	if p, ok := a.(interface{ prepare(context.Context) error }); ok {
		if err := p.prepare(ctx); err != nil {
			return fmt.Errorf("prepare %s: %w", b.name, err)
		}
	}
	return nil
}

// loop steps market time until the posting period is over and the open
// work has settled, or the wind-down runs out.
func (s *sim) loop(ctx context.Context) error {
	s.nextSample = s.start
	limit := s.end.Add(s.cfg.WindDown)
	for s.now().Before(limit) {
		if err := s.clock.Advance(ctx, s.sc.Step); err != nil {
			return err
		}
		if s.cfg.Market.Tick != nil {
			if err := s.cfg.Market.Tick(ctx); err != nil {
				return fmt.Errorf("tick: %w", err)
			}
		}
		if err := s.runTimers(); err != nil {
			return err
		}
		if err := s.pump(ctx); err != nil {
			return err
		}
		if !s.now().Before(s.nextSample) {
			if err := s.world.sample(ctx); err != nil {
				return err
			}
			s.nextSample = s.nextSample.Add(s.sc.Sample)
		}
		s.steps++
		if s.cfg.Progress != nil {
			s.cfg.Progress.Add(1)
		}
		if err := s.failed(); err != nil {
			return err
		}
		if !s.posting() && s.world.quiet() {
			break
		}
	}
	return s.world.sample(ctx)
}

// fail records an error no agent can handle: the market is broken.
func (s *sim) fail(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.fatal == nil {
		s.fatal = err
	}
}

func (s *sim) failed() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.fatal
}

// parallel runs fn(0..n-1) on the configured workers; with one worker,
// in order.
func (s *sim) parallel(n int, fn func(i int)) {
	w := min(s.cfg.Workers, n)
	if w <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// perAgent runs each agent's work in order, and different agents' work
// on the workers.
func (s *sim) perAgent(order []agent, work map[agent][]func()) {
	s.parallel(len(order), func(i int) {
		for _, fn := range work[order[i]] {
			fn()
		}
	})
}

// timer is an agent's action scheduled at a market time. Timers due at
// the same time run in the order they were set.
type timer struct {
	at  time.Time
	seq uint64
	a   agent
	fn  func()
}

type timerHeap []timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// after schedules fn for agent a, d from now.
func (s *sim) after(a agent, d time.Duration, fn func()) {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	s.timerSeq++
	heap.Push(&s.timers, timer{at: s.now().Add(d), seq: s.timerSeq, a: a, fn: fn})
}

// runTimers runs every timer that is due, including those that due
// timers set for now.
func (s *sim) runTimers() error {
	now := s.now()
	for {
		var order []agent
		work := map[agent][]func(){}
		s.timerMu.Lock()
		for s.timers.Len() > 0 && !s.timers[0].at.After(now) {
			t := heap.Pop(&s.timers).(timer)
			if _, ok := work[t.a]; !ok {
				order = append(order, t.a)
			}
			work[t.a] = append(work[t.a], t.fn)
		}
		s.timerMu.Unlock()
		if len(order) == 0 {
			return nil
		}
		s.perAgent(order, work)
		if err := s.failed(); err != nil {
			return err
		}
	}
}

// event is a market event with its data decoded once for every agent it
// is addressed to. Agents must treat it as read-only.
type event struct {
	market.Event
	intent   *market.Intent
	contract *market.Contract
	bid      *market.Bid
	msg      *market.Message

	estOnce sync.Once
	est     int64
}

func decodeEvent(e market.Event) (*event, error) {
	ev := &event{Event: e}
	var dst any
	switch e.Type {
	case market.EventIntentPosted, market.EventIntentClosed, market.EventIntentCancelled, market.EventIntentExpired:
		ev.intent = new(market.Intent)
		dst = ev.intent
	case market.EventBidPlaced, market.EventBidWithdrawn:
		ev.bid = new(market.Bid)
		dst = ev.bid
	case market.EventBidCountered:
		ev.msg = new(market.Message)
		dst = ev.msg
	case market.EventContractAwarded, market.EventContractDelivered, market.EventContractDisputed,
		market.EventReviewAssigned, market.EventContractSettled, market.EventContractRefunded:
		ev.contract = new(market.Contract)
		dst = ev.contract
	default:
		return ev, nil
	}
	if err := json.Unmarshal(e.Data, dst); err != nil {
		return nil, fmt.Errorf("decode %s event %d: %w", e.Type, e.Seq, err)
	}
	return ev, nil
}

// estimate is the work an intent's parameters promise, computed once
// for all the sellers it is routed to.
func (ev *event) estimate(k *kind) int64 {
	ev.estOnce.Do(func() { ev.est = estimateWork(k, ev.intent.Parameters) })
	return ev.est
}

// pump reads the market's event stream and hands each event to the
// agents in its audience, in stream order, until the agents have nothing
// more to say. This is the transport's fan-out: each agent sees exactly
// the events the market addresses to it.
func (s *sim) pump(ctx context.Context) error {
	for round := 0; round < 64; round++ {
		raw, err := s.op.Service.Events(s.op.Ctx, market.EventFilter{After: s.cursor, Limit: 1000})
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		if len(raw) == 0 {
			return nil
		}
		s.cursor = raw[len(raw)-1].Seq
		evs := make([]*event, len(raw))
		for i, e := range raw {
			if evs[i], err = decodeEvent(e); err != nil {
				return err
			}
			s.world.observe(evs[i])

		}
		if s.cfg.Workers <= 1 {
			// Strict stream order across agents, so that a run is a
			// function of its seed.
			for _, ev := range evs {
				for _, id := range ev.Audience {
					if a, ok := s.byID[id]; ok {
						a.handle(ev)
					}
				}
			}
		} else {
			// Each agent sees its events in stream order; agents run
			// side by side.
			var order []agent
			work := map[agent][]func(){}
			s.mu.Lock()
			for _, ev := range evs {
				for _, id := range ev.Audience {
					a, ok := s.byID[id]
					if !ok {
						continue
					}
					if _, ok := work[a]; !ok {
						order = append(order, a)
					}
					work[a] = append(work[a], func() { a.handle(ev) })
				}
			}
			s.mu.Unlock()
			s.perAgent(order, work)
		}
		if err := s.failed(); err != nil {
			return err
		}
	}
	return nil
}

// agent is a participant: a program that reacts to the market events
// addressed to it and to its own timers.
type agent interface {
	base() *agentBase
	handle(ev *event)
}

// agentBase is what every agent has: an identity, a session and its own
// seeded randomness.
type agentBase struct {
	idx      int
	name     string
	class    string // the agent's kind in reports: "buyer", "seller", "sybil", ...
	operator string
	roles    []market.Role
	honest   bool
	// dormant agents (entrants) register only when they decide to join.
	dormant bool
	joined  time.Time

	sim  *sim
	key  market.PrivateKey
	id   market.AgentID
	sess Session
	rng  *rand.Rand
	reps map[repKey]cachedRep
}

type repKey struct {
	agent  market.AgentID
	intent string
}

type cachedRep struct {
	rep market.Reputation
	at  time.Time
}

// repTTL is how long an agent trusts a reputation it read: reputations
// move slowly, and reading one for every bid is most of a buyer's load
// on the market.
const repTTL = 30 * time.Second

// reputation returns another agent's reputation for an intent type, read
// from the market at most once per repTTL.
func (b *agentBase) reputation(id market.AgentID, intent string) (market.Reputation, error) {
	k := repKey{id, intent}
	now := b.sim.now()
	if c, ok := b.reps[k]; ok && now.Sub(c.at) < repTTL {
		return c.rep, nil
	}
	rep, err := b.svc().Reputation(b.ctx(), id, intent)
	if err != nil {
		return rep, err
	}
	if b.reps == nil {
		b.reps = map[repKey]cachedRep{}
	}
	b.reps[k] = cachedRep{rep, now}
	return rep, nil
}

func (b *agentBase) base() *agentBase { return b }

// svc and ctx are the agent's view of the market.
func (b *agentBase) svc() market.Service  { return b.sess.Service }
func (b *agentBase) ctx() context.Context { return b.sess.Ctx }

// unexpected handles an error an agent has no plan for: infrastructure
// failures stop the run; anything else is counted and logged.
func (b *agentBase) unexpected(op string, err error) {
	k := market.KindOf(err)
	b.sim.world.countError(op, k)
	if k == market.Internal || k == market.Other || k == market.Unauthenticated {
		b.sim.fail(fmt.Errorf("%s %s: %w", b.name, op, err))
		return
	}
	b.sim.cfg.Logger.Debug("sim: unexpected error", "agent", b.name, "op", op, "err", err)
}

// exp draws an exponential interval with the given mean.
func (b *agentBase) exp(mean time.Duration) time.Duration {
	return time.Duration(b.rng.ExpFloat64() * float64(mean))
}

// noise draws a normal deviation with standard deviation sd.
func (b *agentBase) noise(sd float64) float64 { return b.rng.NormFloat64() * sd }

// sortedAgents returns the agents of a class, in population order.
func (s *sim) sortedAgents(class string) []agent {
	var out []agent
	for _, a := range s.agents {
		if a.base().class == class {
			out = append(out, a)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].base().idx < out[j].base().idx })
	return out
}

// injectLLM runs the prompt-injection suite aimed at an LLM buyer (package
// agent) against the same market once the economy has run: an attacker
// plants injections in bid notes, counter notes and deliveries; the
// buyer's model (a seeded fake that obeys a planted instruction half the
// time, since no real model is reachable here) decides through validated
// tool calls, and the operator's mandate bounds what it may pay. It runs
// after the measurements so that it cannot disturb them; against a server
// it takes at most the run's wind-down again.
func (s *sim) injectLLM(ctx context.Context, m *Metrics) error {
	suite := &agentpkg.InjectionSuite{
		Connect: func(ctx context.Context, k market.PrivateKey) (market.Service, context.Context, error) {
			sess, err := s.cfg.Market.Connect(ctx, k)
			return sess.Service, sess.Ctx, err
		},
		Now: s.clock.Now,
		Advance: func(ctx context.Context, d time.Duration) error {
			if err := s.clock.Advance(ctx, d); err != nil {
				return err
			}
			if s.cfg.Market.Tick != nil {
				return s.cfg.Market.Tick(ctx)
			}
			return nil
		},
		Seed:   s.cfg.Seed,
		Rounds: 12,
	}
	if _, wall := s.clock.(WallClock); wall {
		// Against a server, market time is the wall clock: short windows,
		// and no longer than the run's wind-down.
		suite.BidWindow, suite.Poll, suite.Step = 500*time.Millisecond, 100*time.Millisecond, 200*time.Millisecond
		suite.Deadline = s.clock.Now().Add(s.cfg.WindDown)
	}
	rep, err := suite.Run(ctx)
	if err != nil {
		return fmt.Errorf("llm injection suite: %w", err)
	}
	m.LLMInjection = &rep
	unblocked := max(0, rep.ActionsBeyondIntent-rep.Blocked)
	m.Attacks = append(m.Attacks, Attack{
		Name: "LLM prompt injection", Applicable: true,
		Attempts: rep.InjectionsAttempted, Blocked: max(0, rep.InjectionsAttempted-unblocked),
		GainedMicrocredits: rep.CreditsLostBeyondMandate,
		Note: fmt.Sprintf("aimed at an LLM buyer: its model obeyed %d of %d injections and proposed %d actions beyond its intent; "+
			"%d were blocked (%d by the policy's validation, %d by the mandate); credits lost beyond the mandate: %s",
			rep.ModelObeyed, rep.InjectionsAttempted, rep.ActionsBeyondIntent, rep.Blocked, rep.BlockedByValidation,
			rep.BlockedByMandate, credits(rep.CreditsLostBeyondMandate)),
	})
	m.StolenMicrocredits += max(0, rep.CreditsLostBeyondMandate)
	return nil
}
