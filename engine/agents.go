package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/market"
)

// proofWindow is how far a registration's timestamp may be from the clock.
const proofWindow = 5 * time.Minute

func validText(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// Register adds an agent; see market.Service.
func (e *Engine) Register(ctx context.Context, r market.Registration) (market.Agent, error) {
	const op = "register"
	pk, err := market.ParseDID(r.ID)
	if err != nil {
		return market.Agent{}, wrap(op, err)
	}
	if !validText(r.Name, 100) || !validText(r.Operator, 100) {
		return market.Agent{}, market.E(market.Op(op), market.Invalid, market.Code("invalid_field"), "name and operator must be printable text of at most 100 bytes")
	}
	if len(r.Roles) == 0 || len(r.Roles) > 3 {
		return market.Agent{}, market.E(market.Op(op), market.Invalid, market.Code("invalid_roles"), "roles must list one to three of buyer, seller, arbiter")
	}
	seen := map[market.Role]bool{}
	for _, role := range r.Roles {
		if role != market.RoleBuyer && role != market.RoleSeller && role != market.RoleArbiter || seen[role] {
			return market.Agent{}, market.E(market.Op(op), market.Invalid, market.Code("invalid_roles"), fmt.Sprintf("role %q is unknown or repeated", role))
		}
		seen[role] = true
	}
	now := e.now()
	if d := now.Sub(r.Timestamp); d > proofWindow || d < -proofWindow {
		return market.Agent{}, market.E(market.Op(op), market.Invalid, market.Code("stale_proof"), "the registration timestamp is more than five minutes from the market's clock")
	}
	if !pk.Verify(market.RegistrationMessage(r), r.Proof) {
		return market.Agent{}, market.E(market.Op(op), market.Unauthenticated, market.Code("bad_proof"), "the proof is not the key's signature of the registration")
	}
	if err := e.ensureWallet(ctx, r.ID); err != nil {
		return market.Agent{}, wrap(op, err)
	}
	var agent market.Agent
	err = e.store.Update(ctx, func(tx market.Tx) error {
		existing, err := tx.Agent(r.ID)
		if err == nil {
			if existing.Name == r.Name && existing.Operator == r.Operator && slices.Equal(existing.Roles, r.Roles) {
				agent = existing
				return nil
			}
			return market.E(market.Exist, market.Code("agent_exists"), fmt.Sprintf("agent %s is registered with different fields", r.ID))
		}
		if !market.Is(err, market.NotExist) {
			return err
		}
		opKey := operatorKey(r.Operator, r.ID)
		used, err := tx.OperatorGrants(opKey)
		if err != nil {
			return err
		}
		grant := min(e.cfg.StartingGrant, max(0, e.cfg.OperatorGrantCap-used))
		agent = market.Agent{ID: r.ID, Name: r.Name, Operator: r.Operator, Roles: r.Roles,
			GrantMicrocredits: grant, RegisteredAt: now}
		if err := tx.PutAgent(agent); err != nil {
			return err
		}
		if grant > 0 {
			if err := tx.AddOperatorGrant(opKey, grant); err != nil {
				return err
			}
		}
		data, _ := json.Marshal(agent)
		_, err = tx.AppendEvent(market.Event{Type: market.EventAgentRegistered, At: now, Subject: string(r.ID), Data: data})
		return err
	})
	if err != nil {
		return market.Agent{}, wrap(op, err)
	}
	if err := e.payGrant(ctx, agent); err != nil {
		return market.Agent{}, wrap(op, err)
	}
	return agent, nil
}

// operatorKey groups agents for the grant cap; an agent without an
// operator is its own.
func operatorKey(operator string, id market.AgentID) string {
	if operator == "" {
		return "agent:" + string(id)
	}
	return "operator:" + operator
}

func (e *Engine) ensureWallet(ctx context.Context, id market.AgentID) error {
	res, err := e.ledger.CreateAccounts(ctx, []ledger.Account{{ID: walletAccount(id), Code: codeWallet, Flags: ledger.DebitsMustNotExceedCredits}})
	if err != nil {
		return err
	}
	if !res[0].Committed() {
		return fmt.Errorf("create wallet for %s: %s", id, res[0])
	}
	return nil
}

// payGrant credits the agent's starting grant; its id is derived from the
// agent, so it is paid once however often it is retried.
func (e *Engine) payGrant(ctx context.Context, a market.Agent) error {
	if a.GrantMicrocredits <= 0 {
		return nil
	}
	return e.transfer(ctx, "grant", []ledger.Transfer{{ID: derived("grant", string(a.ID)), DebitAccountID: treasuryAccount,
		CreditAccountID: walletAccount(a.ID), Amount: uint64(a.GrantMicrocredits), Code: xferGrant}})
}

// Agent returns a registered agent.
func (e *Engine) Agent(ctx context.Context, id market.AgentID) (market.Agent, error) {
	var a market.Agent
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		a, err = tx.Agent(id)
		return err
	})
	return a, wrap("agent", err)
}

// AgentOffers returns an agent's active offers, by id. Anyone may call it.
func (e *Engine) AgentOffers(ctx context.Context, id market.AgentID) ([]market.Offer, error) {
	var out []market.Offer
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		if _, err := tx.Agent(id); err != nil {
			return err
		}
		offers, err := tx.OffersBySeller(id)
		if err != nil {
			return err
		}
		out = make([]market.Offer, 0, len(offers))
		for _, o := range offers {
			if o.State == market.OfferActive {
				out = append(out, o)
			}
		}
		return nil
	})
	return out, wrap("agent_offers", err)
}

// Balance returns an agent's wallet, to the agent or the operator.
func (e *Engine) Balance(ctx context.Context, id market.AgentID) (market.Balance, error) {
	const op = "balance"
	p, err := principal(ctx, op)
	if err != nil {
		return market.Balance{}, err
	}
	if !p.Operator && p.Agent != id {
		return market.Balance{}, market.E(market.Op(op), market.Permission, market.Code("not_your_wallet"), "an agent may read only its own wallet")
	}
	a, err := e.Agent(ctx, id)
	if err != nil {
		return market.Balance{}, wrap(op, err)
	}
	b, err := e.walletBalance(ctx, id)
	if err != nil {
		return market.Balance{}, wrap(op, err)
	}
	b.BondMicrocredits = a.BondMicrocredits
	return b, nil
}

// Mint issues credits from the treasury. Operator only.
func (e *Engine) Mint(ctx context.Context, id market.AgentID, amount int64) (market.Balance, error) {
	const op = "mint"
	p, err := principal(ctx, op)
	if err != nil {
		return market.Balance{}, err
	}
	if !p.Operator {
		return market.Balance{}, market.E(market.Op(op), market.Permission, market.Code("operator_required"), "only the market operator may mint credits")
	}
	if amount <= 0 {
		return market.Balance{}, market.E(market.Op(op), market.Invalid, market.Code("invalid_amount"), "the amount must be positive")
	}
	if _, err := e.Agent(ctx, id); err != nil {
		return market.Balance{}, wrap(op, err)
	}
	if err := e.transfer(ctx, op, []ledger.Transfer{{ID: ledger.DeriveID("mint", []byte(e.opID(ctx, "mint"))), DebitAccountID: treasuryAccount,
		CreditAccountID: walletAccount(id), Amount: uint64(amount), Code: xferMint}}); err != nil {
		return market.Balance{}, err
	}
	return e.Balance(ctx, id)
}

// SetMandate sets an agent's spending mandate. Operator only.
func (e *Engine) SetMandate(ctx context.Context, m market.Mandate) error {
	const op = "set_mandate"
	p, err := principal(ctx, op)
	if err != nil {
		return err
	}
	if !p.Operator {
		return market.E(market.Op(op), market.Permission, market.Code("operator_required"), "only the market operator may set a mandate; an agent can never widen its own")
	}
	if m.MaxPerTransferMicrocredits < 0 || m.BudgetMicrocredits < 0 || m.Window < 0 {
		return market.E(market.Op(op), market.Invalid, market.Code("invalid_mandate"), "limits must not be negative")
	}
	if m.BudgetMicrocredits > 0 && m.Window <= 0 {
		return market.E(market.Op(op), market.Invalid, market.Code("invalid_mandate"), "a budget needs a window")
	}
	if _, err := e.Agent(ctx, m.Agent); err != nil {
		return wrap(op, err)
	}
	lm := ledger.Mandate{AccountID: walletAccount(m.Agent), MaxPerTransfer: uint64(m.MaxPerTransferMicrocredits),
		Budget: uint64(m.BudgetMicrocredits), Window: time.Duration(m.Window), ExpiresAt: m.ExpiresAt}
	if len(m.Counterparties) > 0 {
		for _, c := range m.Counterparties {
			if !c.Valid() {
				return market.E(market.Op(op), market.Invalid, market.Code("invalid_did"), fmt.Sprintf("counterparty %q is not a did:key", c))
			}
			lm.Counterparties = append(lm.Counterparties, walletAccount(c))
		}
		// The market's own accounts take the fee and the arbiter reserve
		// of every contract; a mandate restricts whom the agent pays.
		lm.Counterparties = append(lm.Counterparties, feesAccount, poolAccount, bondsAccount)
	}
	if err := e.ledger.SetMandate(ctx, lm); err != nil {
		if err == ledger.ErrNotFound {
			return market.E(market.Op(op), market.NotExist, market.Code("wallet_not_found"), "the agent has no wallet")
		}
		return market.E(market.Op(op), market.Invalid, market.Code("invalid_mandate"), err.Error())
	}
	return nil
}

// PostBond moves credits from the caller's wallet into its arbiter bond.
func (e *Engine) PostBond(ctx context.Context, amount int64) (market.Balance, error) {
	const op = "post_bond"
	a, err := e.callerAgent(ctx, op, market.RoleArbiter)
	if err != nil {
		return market.Balance{}, err
	}
	if amount <= 0 {
		return market.Balance{}, market.E(market.Op(op), market.Invalid, market.Code("invalid_amount"), "the amount must be positive")
	}
	n := a.BondPosts + 1
	x := ledger.Transfer{ID: bondTransferID(a.ID, n), DebitAccountID: walletAccount(a.ID), CreditAccountID: bondsAccount,
		Amount: uint64(amount), Code: xferBond}
	if err := e.transfer(ctx, op, []ledger.Transfer{x}); err != nil {
		return market.Balance{}, err
	}
	if err := e.store.Update(ctx, func(tx market.Tx) error {
		cur, err := tx.Agent(a.ID)
		if err != nil {
			return err
		}
		if cur.BondPosts >= n {
			return nil // a concurrent or earlier call recorded it
		}
		cur.BondPosts = n
		cur.BondMicrocredits += amount
		return tx.PutAgent(cur)
	}); err != nil {
		return market.Balance{}, wrap(op, err)
	}
	return e.Balance(ctx, a.ID)
}

func bondTransferID(id market.AgentID, n int) ledger.ID {
	return ledger.DeriveID("bond", []byte(string(id)+"#"+strconv.Itoa(n)))
}
