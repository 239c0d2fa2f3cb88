package engine

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
)

// settlement is how a contract ends: what the seller is paid, the quality
// the outcome records, why, and which arbiters earn the fee.
type settlement struct {
	step      market.Step
	paid      int64 // to the seller, from 0 to the price
	quality   float64
	reason    string
	arbiters  []market.AgentID // arbiters who reviewed and earn the fee
	reviewers []market.Review
}

// settle resolves a contract's escrow in the ledger, then records the
// outcome. If the ledger shows the escrow already resolved another way
// (a racing settlement, or the backstop expiry), the store is made to
// match the ledger and Conflict is returned.
func (e *Engine) settle(ctx context.Context, op string, c market.Contract, s settlement, mutate func(*market.Contract)) (market.Contract, error) {
	if err := e.transfer(ctx, op, e.settleLegs(&c, &s)); err != nil {
		var re *resolvedError
		if errors.As(err, &re) || market.CodeOf(err) == "concurrent_update" {
			cur, rerr := e.reconcileContract(ctx, c.ID)
			if rerr != nil {
				return cur, wrap(op, rerr)
			}
			return cur, market.E(market.Op(op), market.Conflict, market.Code("illegal_transition"), fmt.Sprintf("the contract is already %s", cur.State))
		}
		return market.Contract{}, err
	}
	return e.commitSettlement(ctx, op, c.ID, s, mutate)
}

// feePaid is the market's fee on what the seller is paid.
func feePaid(c *market.Contract, paid int64) int64 {
	if c.PriceMicrocredits == 0 {
		return 0
	}
	return c.FeeMicrocredits * paid / c.PriceMicrocredits
}

// settleLegs are the linked transfers that resolve a contract's escrow:
// post or void each hold, and pay the arbiters. Their ids depend only on
// the contract, so two attempts at one outcome are one settlement, and
// attempts at different outcomes collide in the ledger.
func (e *Engine) settleLegs(c *market.Contract, s *settlement) []ledger.Transfer {
	uid := derived("contract", c.ID)
	resolve := func(purpose string, pending ledger.ID, amount int64) ledger.Transfer {
		x := ledger.Transfer{ID: derived(purpose, c.ID), PendingID: pending, Code: xferSettle, UserData: uid, Flags: ledger.VoidPending}
		if amount > 0 {
			x.Flags, x.Amount = ledger.PostPending, uint64(amount)
		}
		return x
	}
	xs := []ledger.Transfer{resolve("settle/price", escrowPrice(c.ID), s.paid)}
	if c.FeeMicrocredits > 0 {
		xs = append(xs, resolve("settle/fee", escrowFee(c.ID), feePaid(c, s.paid)))
	}
	buyerPays := len(s.arbiters) > 0 && !c.Audit
	if c.ArbiterFeeMicrocredits > 0 {
		reserve := int64(0)
		if buyerPays {
			reserve = c.ArbiterFeeMicrocredits
		}
		xs = append(xs, resolve("settle/arbiter", escrowArbiter(c.ID), reserve))
	}
	if len(s.arbiters) > 0 {
		from, total := poolAccount, c.ArbiterFeeMicrocredits
		if c.Audit {
			// The market sampled this review on its own account.
			from, total = feesAccount, max(1, c.PriceMicrocredits*e.cfg.ArbiterFeeBps/10_000)*int64(len(s.arbiters))
		}
		share, rest := total/int64(len(s.arbiters)), total%int64(len(s.arbiters))
		for i, a := range s.arbiters {
			amt := share
			if i == 0 {
				amt += rest
			}
			if amt <= 0 {
				continue
			}
			xs = append(xs, ledger.Transfer{ID: derived("settle/arbiter-pay", c.ID+"#"+string(a)), DebitAccountID: from,
				CreditAccountID: walletAccount(a), Amount: uint64(amt), Code: xferArbiterPay, UserData: uid})
		}
	}
	return link(xs)
}

// commitSettlement records a settlement the ledger has applied. The
// ledger is the judge: if the contract moved on meanwhile (a dispute
// raced an acceptance, say), the ledger's outcome still stands.
func (e *Engine) commitSettlement(ctx context.Context, op, id string, s settlement, mutate func(*market.Contract)) (market.Contract, error) {
	now := e.now()
	var out market.Contract
	err := e.store.Update(ctx, func(tx market.Tx) error {
		c, err := tx.Contract(id)
		if err != nil {
			return err
		}
		if c.State.Terminal() {
			out = c
			return nil
		}
		to, err := market.Transition(c.State, s.step)
		if err != nil {
			e.log.Warn("engine: settlement overtook a state change", "contract", id, "state", c.State, "step", s.step)
			to = market.ContractSettled
			if s.paid == 0 {
				to = market.ContractRefunded
			}
		}
		c.State = to
		if mutate != nil {
			mutate(&c)
		}
		o := e.outcome(&c, &s, now)
		seq, err := e.appendReceipt(tx, &c, &o)
		if err != nil {
			return err
		}
		o.Receipt = seq
		c.Outcome = &o
		if err := tx.PutContract(c); err != nil {
			return err
		}
		if c.ParentContract != "" && s.paid == 0 {
			// A refunded subcontract gives its budget back to the parent.
			p, err := tx.Contract(c.ParentContract)
			if err != nil {
				return err
			}
			p.ChildBudgetMicrocredits = max(0, p.ChildBudgetMicrocredits-c.PriceMicrocredits)
			if err := tx.PutContract(p); err != nil {
				return err
			}
		}
		if err := e.rate(tx, &c, &s, now); err != nil {
			return err
		}
		if err := e.scoreArbiters(tx, &c, &s); err != nil {
			return err
		}
		event := market.EventContractSettled
		if to == market.ContractRefunded {
			event = market.EventContractRefunded
		}
		out = c
		return e.emit(tx, event, c.Intent, c.ID, append([]market.AgentID{c.Buyer, c.Seller}, s.arbiters...), c)
	})
	if err != nil {
		return market.Contract{}, wrap(op, err)
	}
	if s.paid > 0 {
		e.updateIndex(out.Intent, out.PriceMicrocredits)
	}
	return out, nil
}

func (e *Engine) outcome(c *market.Contract, s *settlement, now time.Time) market.Outcome {
	o := market.Outcome{PaidMicrocredits: s.paid, FeeMicrocredits: feePaid(c, s.paid), Quality: s.quality, Reason: s.reason, SettledAt: now}
	if len(s.arbiters) > 0 && !c.Audit {
		o.ArbiterFeeMicrocredits = c.ArbiterFeeMicrocredits
	}
	o.RefundedMicrocredits = c.HoldMicrocredits - o.PaidMicrocredits - o.FeeMicrocredits - o.ArbiterFeeMicrocredits
	switch {
	case s.paid == c.PriceMicrocredits:
		o.Result = market.ResultPaid
	case s.paid == 0:
		o.Result = market.ResultRefunded
	default:
		o.Result = market.ResultPartial
	}
	return o
}

// receiptChain remembers the newest receipt the engine stored, unsigned,
// and its hash. appendReceipt runs inside a store transaction, on the
// store's one writer; with the hash at hand it chains the next receipt to
// that one without marshalling and hashing it again.
type receiptChain struct {
	mu   sync.Mutex
	last market.Receipt // Signature empty
	hash string
}

// prevHash returns the hash of last, the newest stored receipt: the one
// remembered if last is that receipt, else computed. Every field of a
// receipt but its Signature is signed and hashed, so equal fields are
// equal hashes; a receipt whose transaction failed, or one another
// engine stored, does not compare equal and is hashed afresh.
func (ch *receiptChain) prevHash(last market.Receipt) string {
	last.Signature = ""
	ch.mu.Lock()
	hash := ch.hash
	known := hash != "" && ch.last == last
	ch.mu.Unlock()
	if known {
		return hash
	}
	return last.Hash()
}

func (ch *receiptChain) remember(r market.Receipt, hash string) {
	r.Signature = ""
	ch.mu.Lock()
	ch.last, ch.hash = r, hash
	ch.mu.Unlock()
}

// appendReceipt stores the settlement's receipt, chained to the last one
// and signed. It is market.Receipt.Sign with the receipt's signed bytes
// marshalled once, for the signature and for the next receipt's PrevHash.
// A store whose Tx is a market.ReceiptSigningTx signs it off its writer.
func (e *Engine) appendReceipt(tx market.Tx, c *market.Contract, o *market.Outcome) (uint64, error) {
	r := market.Receipt{Seq: 1, Contract: c.ID, IntentID: c.IntentID, Intent: c.Intent, Buyer: c.Buyer, Seller: c.Seller,
		PriceMicrocredits: c.PriceMicrocredits, PaidMicrocredits: o.PaidMicrocredits, RefundedMicrocredits: o.RefundedMicrocredits,
		FeeMicrocredits: o.FeeMicrocredits, ArbiterFeeMicrocredits: o.ArbiterFeeMicrocredits, Result: o.Result,
		QualityBps: int64(math.Round(o.Quality * 10_000)), Reason: o.Reason, SettledAt: o.SettledAt.UTC()}
	if len(c.Reviews) > 0 {
		r.Arbiter = c.Reviews[len(c.Reviews)-1].Arbiter
	}
	last, err := tx.LastReceipt()
	switch {
	case err == nil:
		r.Seq, r.PrevHash = last.Seq+1, e.chain.prevHash(last)
	case !market.Is(err, market.NotExist):
		return 0, err
	}
	r.Market = e.did
	signed := r.SignedBytes()
	key := e.cfg.Key
	sign := func() string { return base64.RawURLEncoding.EncodeToString(key.Sign(signed)) }
	if stx, ok := tx.(market.ReceiptSigningTx); ok {
		err = stx.PutReceiptSigning(r, sign)
	} else {
		r.Signature = sign()
		err = tx.PutReceipt(r)
	}
	if err != nil {
		return 0, err
	}
	sum := sha256.Sum256(signed)
	e.chain.remember(r, hex.EncodeToString(sum[:]))
	return r.Seq, nil
}

// Receipt returns a signed receipt.
func (e *Engine) Receipt(ctx context.Context, seq uint64) (market.Receipt, error) {
	var r market.Receipt
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		r, err = tx.Receipt(seq)
		return err
	})
	return r, wrap("receipt", err)
}

func sameOperator(a, b *market.Agent) bool { return a.Operator != "" && a.Operator == b.Operator }

// rate folds a settled outcome into the seller's and the buyer's
// reputation; see market/reputation.go for the rules.
func (e *Engine) rate(tx market.Tx, c *market.Contract, s *settlement, now time.Time) error {
	buyer, err := tx.Agent(c.Buyer)
	if err != nil {
		return err
	}
	seller, err := tx.Agent(c.Seller)
	if err != nil {
		return err
	}
	hl := e.cfg.HalfLife
	w := market.ValueWeight(c.PriceMicrocredits, e.index(c.Intent))
	pair, err := tx.Pair(c.Buyer, c.Seller, c.Intent)
	if err != nil {
		return err
	}
	pair = pair.At(now, hl)
	pair.Buyer, pair.Seller, pair.Intent = c.Buyer, c.Seller, c.Intent
	pair.Trades++
	if s.paid > 0 {
		pair.Paid++
	}
	independence := 1 / float64(pair.Trades)
	if sameOperator(&buyer, &seller) || pair.Circular {
		independence = 0
	}
	good, bad := w*independence*s.quality, w*independence*(1-s.quality)
	pair.Good += good
	pair.Bad += bad
	if err := tx.PutPair(pair); err != nil {
		return err
	}
	lostDispute := c.Dispute != nil && s.paid*2 >= c.PriceMicrocredits
	for _, intent := range []string{c.Intent, ""} {
		sc, err := tx.Score(c.Seller, intent)
		if err != nil {
			return err
		}
		sc = sc.At(now, hl)
		sc.Agent, sc.Intent = c.Seller, intent
		sc.Good += good
		sc.Bad += bad
		sc.Contracts++
		if err := tx.PutScore(sc); err != nil {
			return err
		}
		bs, err := tx.Score(c.Buyer, intent)
		if err != nil {
			return err
		}
		bs = bs.At(now, hl)
		bs.Agent, bs.Intent = c.Buyer, intent
		switch {
		case lostDispute:
			// The buyer rejected work the arbiters passed: free-riding.
			bs.BuyerBad += w
			bs.DisputesLost++
		case c.Delivery != nil:
			bs.BuyerGood += w
		}
		if err := tx.PutScore(bs); err != nil {
			return err
		}
	}
	if s.paid > 0 && independence > 0 {
		return e.breakCycles(tx, c.Buyer, c.Seller, now)
	}
	return nil
}

// The payment-graph search one settlement makes is bounded: paths of at
// most cycleSearchDepth payments, and at most cycleSearchBudget agents
// visited. Wash-trading rings are small and tight, so a deep, narrow
// search finds them; honest agents with many counterparties hit the
// budget before they cost much.
const (
	cycleSearchDepth  = 6
	cycleSearchBudget = 512
)

// breakCycles looks for a payment path from seller back to buyer of at
// most cycleSearchDepth hops. With the payment just made it closes a cycle: money
// going round, the mark of wash trading. Every pair on the cycle is
// marked circular and its contribution withdrawn from the payee's score.
func (e *Engine) breakCycles(tx market.Tx, buyer, seller market.AgentID, now time.Time) error {
	type node struct {
		id    market.AgentID
		from  int // index of the parent in seen, -1 at the root
		depth int
	}
	seen := []node{{id: seller, from: -1}}
	visited := map[market.AgentID]bool{seller: true}
	found := -1
	for i := 0; i < len(seen) && found < 0 && len(seen) < cycleSearchBudget; i++ {
		n := seen[i]
		if n.depth == cycleSearchDepth {
			continue
		}
		next, err := tx.PaidBy(n.id)
		if err != nil {
			return err
		}
		for _, m := range next {
			if m == buyer {
				seen = append(seen, node{id: m, from: i, depth: n.depth + 1})
				found = len(seen) - 1
				break
			}
			if !visited[m] {
				visited[m] = true
				seen = append(seen, node{id: m, from: i, depth: n.depth + 1})
			}
		}
	}
	if found < 0 {
		return nil
	}
	edges := [][2]market.AgentID{{buyer, seller}}
	for i := found; seen[i].from >= 0; i = seen[i].from {
		edges = append(edges, [2]market.AgentID{seen[seen[i].from].id, seen[i].id})
	}
	hl := e.cfg.HalfLife
	for _, ed := range edges {
		pairs, err := tx.PairsBetween(ed[0], ed[1])
		if err != nil {
			return err
		}
		for _, p := range pairs {
			if p.Circular {
				continue
			}
			p = p.At(now, hl)
			for _, intent := range []string{p.Intent, ""} {
				sc, err := tx.Score(p.Seller, intent)
				if err != nil {
					return err
				}
				sc = sc.At(now, hl)
				sc.Agent, sc.Intent = p.Seller, intent
				sc.Good = max(0, sc.Good-p.Good)
				sc.Bad = max(0, sc.Bad-p.Bad)
				if err := tx.PutScore(sc); err != nil {
					return err
				}
			}
			p.Circular, p.Good, p.Bad = true, 0, 0
			if err := tx.PutPair(p); err != nil {
				return err
			}
		}
	}
	e.log.Info("engine: payment cycle found; its ratings no longer count", "buyer", buyer, "seller", seller, "length", len(edges))
	return nil
}

// scoreArbiters updates the accuracy of the arbiters who reviewed: against
// a gold task's known answer, and against each other.
func (e *Engine) scoreArbiters(tx market.Tx, c *market.Contract, s *settlement) error {
	if len(s.reviewers) == 0 {
		return nil
	}
	var mean float64
	for _, r := range s.reviewers {
		mean += r.Quality
	}
	mean /= float64(len(s.reviewers))
	for _, r := range s.reviewers {
		rec, err := tx.ArbiterRecord(r.Arbiter)
		if err != nil {
			return err
		}
		rec.Arbiter = r.Arbiter
		rec.Reviews++
		if c.GoldQuality != nil {
			rec.Compared++
			rec.AbsError += math.Abs(r.Quality - *c.GoldQuality)
		}
		if len(s.reviewers) > 1 {
			rec.Compared++
			rec.AbsError += math.Abs(r.Quality - mean)
		}
		if err := tx.PutArbiterRecord(rec); err != nil {
			return err
		}
	}
	return nil
}

// reconcileContract makes a contract's record match its escrow in the
// ledger, after a crash or a race left the store behind.
func (e *Engine) reconcileContract(ctx context.Context, id string) (market.Contract, error) {
	c, err := e.loadContract(ctx, id)
	if err != nil || c.State.Terminal() {
		return c, err
	}
	st, err := e.ledger.PendingStatus(ctx, escrowPrice(c.ID))
	if err != nil {
		return c, err
	}
	s := settlement{step: market.StepDeliveryMissed, reason: "reconciled"}
	switch st {
	case ledger.StatusPending, ledger.StatusNone:
		return c, nil
	case ledger.StatusPosted:
		x, err := e.ledger.LookupTransfer(ctx, derived("settle/price", c.ID))
		if err != nil {
			return c, err
		}
		s.paid = int64(x.Amount)
		s.step = market.StepVerdictRelease
	case ledger.StatusExpired:
		s.reason = "escrow_expired"
	}
	if c.PriceMicrocredits > 0 {
		s.quality = float64(s.paid) / float64(c.PriceMicrocredits)
	}
	for _, a := range c.Arbiters {
		if _, err := e.ledger.LookupTransfer(ctx, derived("settle/arbiter-pay", c.ID+"#"+string(a))); err == nil {
			s.arbiters = append(s.arbiters, a)
		}
	}
	return e.commitSettlement(ctx, "reconcile", c.ID, s, nil)
}
