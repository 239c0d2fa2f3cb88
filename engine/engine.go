// Package engine implements market.Service in-process, on a market.Store
// for state and a ledger for money.
//
// Every operation that moves money follows one protocol, so that the two
// stores never disagree for long and never lose a credit:
//
//  1. read and validate against committed state;
//  2. apply the money change to the ledger with ids derived from the
//     object (a contract's escrow, say), so that a retry is idempotent;
//  3. commit the state change in one store transaction that re-validates;
//     if re-validation fails, compensate in the ledger (void the hold).
//
// A crash between 2 and 3 leaves the ledger ahead of the store. Recovery
// closes the gap: a hold with no contract is voided, a contract whose
// escrow the ledger already resolved is settled to match. The ledger is
// the judge of money: a pending transfer resolves exactly once, so two
// racing settlements cannot both pay.
package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
)

// Ledger is what the engine needs of a ledger. *ledger.Ledger implements
// it, as will a PostgreSQL ledger.
type Ledger interface {
	CreateAccounts(ctx context.Context, accounts []ledger.Account) ([]ledger.Result, error)
	CreateTransfers(ctx context.Context, transfers []ledger.Transfer) ([]ledger.Result, error)
	LookupAccounts(ctx context.Context, ids []ledger.ID) ([]ledger.Account, error)
	LookupTransfer(ctx context.Context, id ledger.ID) (ledger.Transfer, error)
	PendingStatus(ctx context.Context, id ledger.ID) (ledger.PendingStatus, error)
	SetMandate(ctx context.Context, m ledger.Mandate) error
}

// Config configures an Engine. Zero fields take the defaults noted.
type Config struct {
	Store  market.Store
	Ledger Ledger
	// Key signs receipts. Required.
	Key market.PrivateKey
	// Now is the market's clock. Defaults to time.Now.
	Now func() time.Time
	// Seed seeds the engine's randomness (ids, arbiter assignment,
	// sampling), so that a simulation is a function of its seed.
	Seed   uint64
	Logger *slog.Logger

	// StartingGrant is credited to each new agent. Default 100 credits.
	StartingGrant int64
	// OperatorGrantCap caps the grants to all agents of one operator.
	// Default 10 starting grants.
	OperatorGrantCap int64
	// FeeBps is the market's fee on a contract's price, in basis points.
	// Default 100 (1%).
	FeeBps int64
	// ArbiterFeeBps is reserved at award for an arbiter, in basis points
	// of the price, at least 1 µcr. Default 200 (2%).
	ArbiterFeeBps int64
	// SampleRate is the fraction of buyer-reviewed deliveries that go to
	// an arbiter for audit. Default 0.05; negative disables.
	SampleRate float64
	// CrossCheckRate is the fraction of reviews that get a second
	// arbiter, to measure arbiters against each other. Default 0.1.
	CrossCheckRate float64
	// MinArbiterBond is the bond an arbiter needs to be assigned.
	// Default 10 credits.
	MinArbiterBond int64

	BidWindow     time.Duration // default 2s
	AwardWindow   time.Duration // default 30s
	ReviewWindow  time.Duration // default 60s
	ArbiterWindow time.Duration // default 60s
	// EscrowGrace is added to a hold's timeout beyond every deadline, as
	// a backstop: a hold the market lost track of still returns.
	EscrowGrace time.Duration // default 1h
	// MaxOutputBytes caps an inline delivery. Default 256 KiB.
	MaxOutputBytes int
	// HalfLife is how fast reputation evidence fades. Default 30 days.
	HalfLife time.Duration
	// TickWorkers is how many deadlines Tick handles at once, so that
	// they share group commits. Default 32. With 1, Tick handles them in
	// order, as a simulation that must be a function of its seed needs:
	// concurrent settlements commit, rate sellers and draw arbiters in
	// whatever order the scheduler picks.
	TickWorkers int
}

func (c *Config) defaults() error {
	if c.Store == nil || c.Ledger == nil {
		return errors.New("engine: Store and Ledger are required")
	}
	if c.Key.IsZero() {
		return errors.New("engine: Key is required")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.StartingGrant, 100*market.Credit)
	def(&c.OperatorGrantCap, 10*c.StartingGrant)
	def(&c.FeeBps, 100)
	def(&c.ArbiterFeeBps, 200)
	def(&c.MinArbiterBond, 10*market.Credit)
	if c.SampleRate == 0 {
		c.SampleRate = 0.05
	}
	if c.CrossCheckRate == 0 {
		c.CrossCheckRate = 0.1
	}
	dur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	dur(&c.BidWindow, 2*time.Second)
	dur(&c.AwardWindow, 30*time.Second)
	dur(&c.ReviewWindow, 60*time.Second)
	dur(&c.ArbiterWindow, 60*time.Second)
	dur(&c.EscrowGrace, time.Hour)
	dur(&c.HalfLife, 30*24*time.Hour)
	if c.TickWorkers <= 0 {
		c.TickWorkers = 32
	}
	if c.MaxOutputBytes == 0 {
		c.MaxOutputBytes = 256 << 10
	}
	return nil
}

// Engine is the market service, in-process.
type Engine struct {
	cfg    Config
	store  market.Store
	ledger Ledger
	now    func() time.Time
	log    *slog.Logger

	schemas schemas

	did   market.AgentID // the market's, which signs receipts
	chain receiptChain

	rngMu sync.Mutex
	rng   *rand.Rand

	indexMu    sync.Mutex
	priceIndex map[string]int64 // per intent type: an EWMA of settled prices
}

var _ market.Service = (*Engine)(nil)

// Ledger account ids and codes.
var (
	treasuryAccount = ledger.DeriveID("account", []byte("treasury"))
	feesAccount     = ledger.DeriveID("account", []byte("fees"))
	poolAccount     = ledger.DeriveID("account", []byte("arbiter-pool"))
	bondsAccount    = ledger.DeriveID("account", []byte("bonds"))
)

const (
	codeTreasury = 1
	codeFees     = 2
	codePool     = 3
	codeBonds    = 4
	// codeGeneration marks the empty accounts that number engine starts.
	codeGeneration = 5
	codeWallet     = 10

	xferGrant         = 1
	xferMint          = 2
	xferBond          = 3
	xferEscrowPrice   = 10
	xferEscrowFee     = 11
	xferEscrowArbiter = 12
	xferSettle        = 20
	xferArbiterPay    = 21
	xferCompensate    = 30
)

func walletAccount(id market.AgentID) ledger.ID { return ledger.DeriveID("wallet", []byte(id)) }

// New returns an engine, creating the market's ledger accounts if needed
// and reconciling the store with the ledger after a crash.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:        cfg,
		store:      cfg.Store,
		ledger:     cfg.Ledger,
		now:        cfg.Now,
		log:        cfg.Logger,
		did:        cfg.Key.Public().DID(),
		rng:        rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		priceIndex: make(map[string]int64),
	}
	sys := []ledger.Account{
		{ID: treasuryAccount, Code: codeTreasury},
		{ID: feesAccount, Code: codeFees},
		{ID: poolAccount, Code: codePool},
		{ID: bondsAccount, Code: codeBonds},
	}
	res, err := e.ledger.CreateAccounts(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("create market accounts: %w", err)
	}
	for i, r := range res {
		if !r.Committed() {
			return nil, fmt.Errorf("create market account %d: %s", i, r)
		}
	}
	gen, err := e.claimGeneration(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim engine generation: %w", err)
	}
	// Ids come from the seeded source, so that a simulation is a function
	// of its seed; mixing in the generation keeps an engine restarted on
	// the same data (or a second node) from repeating its predecessor's ids.
	// A fresh market (generation 1) keeps the plain seeded stream.
	stream := cfg.Seed ^ 0x9e3779b97f4a7c15
	if gen > 1 {
		stream = mix(stream, gen)
	}
	e.rng = rand.New(rand.NewPCG(cfg.Seed, stream))
	if err := e.recover(ctx); err != nil {
		return nil, fmt.Errorf("recover market: %w", err)
	}
	return e, nil
}

// claimGeneration numbers this engine start among all starts on the same
// ledger: it creates the first free account of a fixed series, and the
// ledger's idempotency makes the claim exclusive — of two nodes starting
// at once, only one sees ok for a number and the other moves on.
func (e *Engine) claimGeneration(ctx context.Context) (uint64, error) {
	for n := uint64(1); ; n++ {
		id := ledger.DeriveID("engine-generation", []byte(strconv.FormatUint(n, 10)))
		found, err := e.ledger.LookupAccounts(ctx, []ledger.ID{id})
		if err != nil {
			return 0, err
		}
		if len(found) > 0 {
			continue
		}
		res, err := e.ledger.CreateAccounts(ctx, []ledger.Account{{ID: id, Code: codeGeneration}})
		if err != nil {
			return 0, err
		}
		if res[0] == ledger.OK {
			return n, nil
		}
	}
}

func mix(a, b uint64) uint64 {
	h := sha256.Sum256([]byte(strconv.FormatUint(a, 16) + "/" + strconv.FormatUint(b, 16)))
	return binary.LittleEndian.Uint64(h[:8])
}

// MarketKey returns the public key that signs receipts.
func (e *Engine) MarketKey(ctx context.Context) (market.PublicKey, error) {
	return e.cfg.Key.Public(), nil
}

// newID returns a fresh id with a type prefix, such as "int_…".
func (e *Engine) newID(prefix string) string {
	var b [10]byte
	e.rngMu.Lock()
	for i := range b {
		b[i] = byte(e.rng.Uint32())
	}
	e.rngMu.Unlock()
	return prefix + "_" + hex.EncodeToString(b[:])
}

// opID returns the id of an object a request creates: derived from the
// transport's request key when there is one, so that a retried request
// finds what its first attempt created; fresh otherwise.
func (e *Engine) opID(ctx context.Context, prefix string) string {
	if key, ok := market.RequestKeyFrom(ctx); ok {
		sum := sha256.Sum256([]byte(prefix + "\x00" + key))
		return prefix + "_" + hex.EncodeToString(sum[:10])
	}
	return e.newID(prefix)
}

// chance returns true with probability p, from the engine's seeded source.
func (e *Engine) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	e.rngMu.Lock()
	defer e.rngMu.Unlock()
	return e.rng.Float64() < p
}

func (e *Engine) intn(n int) int {
	e.rngMu.Lock()
	defer e.rngMu.Unlock()
	return e.rng.IntN(n)
}

// derived returns a stable id for an object-bound ledger transfer.
func derived(purpose, key string) ledger.ID { return ledger.DeriveID(purpose, []byte(key)) }

// principal returns the caller, or Unauthenticated.
func principal(ctx context.Context, op string) (market.Principal, error) {
	p, ok := market.PrincipalFrom(ctx)
	if !ok || (p.Agent == "" && !p.Operator) {
		return p, market.E(market.Op(op), market.Unauthenticated, market.Code("unauthenticated"), "the request carries no authenticated caller")
	}
	return p, nil
}

// callerAgent returns the calling agent's record; it must be registered
// and hold role (when role is not empty).
func (e *Engine) callerAgent(ctx context.Context, op string, role market.Role) (market.Agent, error) {
	p, err := principal(ctx, op)
	if err != nil {
		return market.Agent{}, err
	}
	if p.Agent == "" {
		return market.Agent{}, market.E(market.Op(op), market.Permission, market.Code("agent_required"), "this operation is for agents, not the operator")
	}
	var a market.Agent
	err = e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		a, err = tx.Agent(p.Agent)
		return err
	})
	if market.Is(err, market.NotExist) {
		return a, market.E(market.Op(op), market.Permission, market.Code("not_registered"), fmt.Sprintf("agent %s is not registered", p.Agent))
	}
	if err != nil {
		return a, wrap(op, err)
	}
	if role != "" && !a.HasRole(role) {
		return a, market.E(market.Op(op), market.Permission, market.Code("role_required"), fmt.Sprintf("agent %s lacks the %s role", a.ID, role))
	}
	return a, nil
}

// wrap adds the operation to an error. Domain errors keep their kind;
// anything else becomes Internal.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var me *market.Error
	if errors.As(err, &me) {
		if me.Op == "" {
			c := *me
			c.Op = op
			return &c
		}
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return market.E(market.Op(op), market.Transient, market.Code("cancelled"), "the request was cancelled", err)
	}
	if errors.Is(err, ledger.ErrClosed) {
		return market.E(market.Op(op), market.Transient, market.Code("unavailable"), "the ledger is not available", err)
	}
	return market.E(market.Op(op), market.Internal, err)
}

// transfer applies a batch to the ledger and maps the first failure to a
// market error. Exists counts as success: every caller derives its ids,
// so a retry finds its own earlier work.
func (e *Engine) transfer(ctx context.Context, op string, xs []ledger.Transfer) error {
	res, err := e.ledger.CreateTransfers(ctx, xs)
	if err != nil {
		return wrap(op, err)
	}
	// In a failed linked chain one transfer carries the cause and the rest
	// say linked_event_failed: report the cause.
	for i, r := range res {
		if !r.Committed() && r != ledger.LinkedEventFailed {
			return ledgerError(op, r, xs[i])
		}
	}
	for i, r := range res {
		if !r.Committed() {
			return ledgerError(op, r, xs[i])
		}
	}
	return nil
}

// ledgerError turns a ledger result into a market error.
func ledgerError(op string, r ledger.Result, x ledger.Transfer) error {
	switch r {
	case ledger.InsufficientFunds:
		return market.E(market.Op(op), market.InsufficientFunds, market.Code("insufficient_funds"),
			fmt.Sprintf("the wallet cannot cover %d µcr", x.Amount))
	case ledger.MandateViolated:
		return market.E(market.Op(op), market.MandateViolated, market.Code("mandate_violated"),
			fmt.Sprintf("the wallet's spending mandate forbids a transfer of %d µcr to this counterparty", x.Amount))
	case ledger.PendingAlreadyPosted, ledger.PendingAlreadyVoided, ledger.PendingExpired:
		return &resolvedError{result: r}
	case ledger.ExistsWithDifferentFields:
		return market.E(market.Op(op), market.Conflict, market.Code("concurrent_update"),
			"a concurrent request changed this object; read it again and retry")
	}
	return market.E(market.Op(op), market.Internal, fmt.Sprintf("ledger refused transfer %s: %s", x.ID, r))
}

// resolvedError reports that an escrow was already resolved in the ledger,
// so the store must catch up with the ledger's outcome.
type resolvedError struct{ result ledger.Result }

func (r *resolvedError) Error() string { return "escrow already resolved: " + r.result.String() }

// accountBalance reads an agent's wallet.
func (e *Engine) walletBalance(ctx context.Context, id market.AgentID) (market.Balance, error) {
	accts, err := e.ledger.LookupAccounts(ctx, []ledger.ID{walletAccount(id)})
	if err != nil {
		return market.Balance{}, err
	}
	b := market.Balance{Agent: id}
	if len(accts) == 1 {
		a := accts[0]
		b.PostedMicrocredits = int64(a.CreditsPosted) - int64(a.DebitsPosted)
		b.HeldMicrocredits = int64(a.DebitsPending)
		b.IncomingMicrocredits = int64(a.CreditsPending)
		b.AvailableMicrocredits = b.PostedMicrocredits - b.HeldMicrocredits
	}
	return b, nil
}

// updateIndex folds a settled price into the intent type's price index
// (an exponentially weighted average, 1/16 per fill), which weights
// reputation evidence by value.
func (e *Engine) updateIndex(intent string, price int64) {
	e.indexMu.Lock()
	defer e.indexMu.Unlock()
	old := e.priceIndex[intent]
	if old == 0 {
		e.priceIndex[intent] = price
		return
	}
	e.priceIndex[intent] = old + (price-old)/16
}

func (e *Engine) index(intent string) int64 {
	e.indexMu.Lock()
	defer e.indexMu.Unlock()
	return e.priceIndex[intent]
}
