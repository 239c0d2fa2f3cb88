package journalstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// workload generates random Updates over a small space of ids, so that
// they keep replacing one another's objects: every Tx method, requests
// that reuse a request_id, receipts read and written in sequence, events
// for varied audiences, and fns that fail or panic after writing. Its
// Updates are a function of its seed; what they find depends on the
// others running beside them.
type workload struct {
	rng  *rand.Rand
	name string
	n    int
}

func newWorkload(seed uint64, worker int) *workload {
	return &workload{rng: rand.New(rand.NewPCG(seed, uint64(worker))), name: fmt.Sprintf("w%d", worker)}
}

var (
	wlT0      = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	wlTypes   = []string{"SORT", "FACTOR", "TRANSLATE"}
	wlAgents  = []market.AgentID{"did:key:zA", "did:key:zB", "did:key:zC", "did:key:zAb", "did:key:zD"}
	wlIntentS = []market.IntentState{market.IntentOpen, market.IntentSelecting, market.IntentAwarded,
		market.IntentCancelled, market.IntentExpired}
	wlContractS = market.ContractStates()
	errWorkload = errors.New("workload: this update fails")
)

func (w *workload) pick(n int) int { return w.rng.IntN(n) }

func (w *workload) agent() market.AgentID { return wlAgents[w.pick(len(wlAgents))] }
func (w *workload) typ() string           { return wlTypes[w.pick(len(wlTypes))] }
func (w *workload) at() time.Time         { return wlT0.Add(time.Duration(w.pick(600)) * time.Second) }

// failure says how the next Update ends: nil, an error, or a panic.
type failure int

const (
	succeed failure = iota
	fail
	panics
)

// next returns the next Update's fn and how it will end.
func (w *workload) next() (func(market.Tx) error, failure) {
	w.n++
	ops := 1 + w.pick(6)
	how := succeed
	switch r := w.pick(100); {
	case r < 15:
		how = fail
	case r < 17:
		how = panics
	}
	// Decide every step now, so that the fn does the same whatever it
	// finds when it runs.
	type step func(tx market.Tx) error
	var steps []step
	for range ops {
		steps = append(steps, w.step())
	}
	return func(tx market.Tx) error {
		for _, s := range steps {
			if err := s(tx); err != nil {
				return err
			}
		}
		switch how {
		case fail:
			return errWorkload
		case panics:
			panic("workload: this update panics")
		}
		return nil
	}, how
}

func (w *workload) step() func(tx market.Tx) error {
	id := func(prefix string, n int) string { return fmt.Sprintf("%s-%d", prefix, w.pick(n)) }
	switch w.pick(16) {
	case 0:
		a := market.Agent{ID: w.agent(), Name: w.name, Operator: "op-" + fmt.Sprint(w.pick(3)),
			BondMicrocredits: int64(w.pick(20)) * market.Credit, RegisteredAt: w.at()}
		a.Roles = []market.Role{market.RoleBuyer}
		if w.pick(2) == 0 {
			a.Roles = append(a.Roles, market.RoleArbiter)
		}
		return func(tx market.Tx) error { return tx.PutAgent(a) }
	case 1:
		op, n := "op-"+fmt.Sprint(w.pick(3)), int64(1+w.pick(100))
		return func(tx market.Tx) error { return tx.AddOperatorGrant(op, n) }
	case 2:
		o := market.Offer{ID: id("o", 12), Seller: w.agent(), Intent: w.typ(), BasePriceMicrocredits: int64(w.pick(1000)),
			Tags: []string{"t"}, State: market.OfferActive, CreatedAt: w.at(), ParameterSchema: json.RawMessage(`{"type":"object"}`)}
		if w.pick(3) == 0 {
			o.State = market.OfferWithdrawn
		}
		return func(tx market.Tx) error { return tx.PutOffer(o) }
	case 3, 4:
		in := market.Intent{ID: id("i", 40), RequestID: id("r", 30), Buyer: w.agent(), Intent: w.typ(),
			Parameters: json.RawMessage(`{"n":1}`), State: wlIntentS[w.pick(len(wlIntentS))], CreatedAt: w.at(),
			BidDeadline: w.at(), AwardDeadline: w.at()}
		if w.pick(4) == 0 {
			in.RequestID = ""
		}
		tolerate := w.pick(2) == 0 // handle a reused request_id inside the Update, as the engine does
		return func(tx market.Tx) error {
			err := tx.PutIntent(in)
			if tolerate && market.Is(err, market.Exist) {
				_, err = tx.IntentByRequest(in.Buyer, in.RequestID)
			}
			return err
		}
	case 5:
		b := market.Bid{ID: id("b", 60), Intent: id("i", 45), Seller: w.agent(), PriceMicrocredits: int64(w.pick(500)),
			State: market.BidActive, CreatedAt: w.at()}
		return func(tx market.Tx) error { return tx.PutBid(b) }
	case 6:
		m := market.Message{ID: id("m", 40), Bid: id("b", 60), From: w.agent(), Round: w.pick(4), CreatedAt: w.at()}
		return func(tx market.Tx) error { return tx.PutMessage(m) }
	case 7, 8:
		c := market.Contract{ID: id("c", 40), IntentID: id("i", 40), Intent: w.typ(), Buyer: w.agent(), Seller: w.agent(),
			PriceMicrocredits: int64(1 + w.pick(5000)), State: wlContractS[w.pick(len(wlContractS))], AwardedAt: w.at(),
			DeliverBy: w.at(), ReviewBy: w.at()}
		if w.pick(3) == 0 {
			c.ParentContract = id("c", 40)
		}
		if w.pick(2) == 0 {
			c.Arbiters = []market.AgentID{w.agent()}
		}
		if w.pick(3) == 0 {
			c.Reviews = []market.Review{{Arbiter: w.agent(), Quality: 0.5, Verdict: market.VerdictRelease, ReviewedAt: w.at()}}
		}
		if c.State.Terminal() || w.pick(4) == 0 {
			res := []string{market.ResultPaid, market.ResultPartial, market.ResultRefunded}[w.pick(3)]
			c.Outcome = &market.Outcome{Result: res, PaidMicrocredits: int64(w.pick(3)) * c.PriceMicrocredits / 2, SettledAt: w.at()}
		}
		return func(tx market.Tx) error { return tx.PutContract(c) }
	case 9:
		return func(tx market.Tx) error {
			last, err := tx.LastReceipt()
			if err != nil && !market.Is(err, market.NotExist) {
				return err
			}
			return tx.PutReceipt(market.Receipt{Seq: last.Seq + 1, Contract: "c", PrevHash: last.Hash(), SettledAt: wlT0})
		}
	case 10:
		sc := market.ScoreRecord{Agent: w.agent(), Intent: w.typ(), Good: float64(w.pick(10)), UpdatedAt: w.at()}
		return func(tx market.Tx) error { return tx.PutScore(sc) }
	case 11:
		p := market.PairRecord{Buyer: w.agent(), Seller: w.agent(), Intent: w.typ(), Trades: w.pick(9), UpdatedAt: w.at()}
		return func(tx market.Tx) error { return tx.PutPair(p) }
	case 12:
		a := w.agent()
		return func(tx market.Tx) error {
			r, err := tx.ArbiterRecord(a)
			if err != nil {
				return err
			}
			r.Reviews++
			return tx.PutArbiterRecord(r)
		}
	case 13:
		r := market.IdempotencyRecord{Key: id("k", 20), Status: 200 + w.pick(3), Body: []byte(`{}`), CreatedAt: w.at()}
		return func(tx market.Tx) error { return tx.PutIdempotency(r) }
	case 14:
		e := market.Event{Type: market.EventBidPlaced, At: w.at(), Intent: w.typ(), Subject: id("b", 60),
			Data: json.RawMessage(`{"x":1}`)}
		for range w.pick(3) {
			e.Audience = append(e.Audience, w.agent())
		}
		return func(tx market.Tx) error { _, err := tx.AppendEvent(e); return err }
	default:
		a, nonce := w.agent(), id("n", 1000)
		expires := time.Now().Add(time.Duration(w.pick(3)-1) * time.Hour)
		return func(tx market.Tx) error {
			if err := tx.UseNonce(a, nonce, expires); err != nil && !market.Is(err, market.Exist) {
				return err
			}
			return nil
		}
	}
}
