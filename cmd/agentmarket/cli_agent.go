package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// The client commands about agents and wallets: keygen, register,
// balance, bond, and the operator's mint and mandate.

// keygenResult is what keygen --json prints.
type keygenResult struct {
	ID   market.AgentID `json:"id"`
	File string         `json:"key_file"`
}

// runKeygenCLI writes a new private key to a file that must not exist
// (mode 0600) and prints the agent's did:key.
func runKeygenCLI(_ context.Context, e *env, args []string) error {
	fs := e.flags("keygen")
	out := fs.String("out", "agent.key", "the key file to create; it must not exist")
	asJSON := fs.Bool("json", false, "print the did and the file as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("keygen takes no arguments, got %q", fs.Args())
	}
	k, err := market.GenerateKey(nil)
	if err != nil {
		return err
	}
	text, err := k.MarshalText()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if _, err := f.Write(append(text, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("keygen: write %s: %w", *out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keygen: write %s: %w", *out, err)
	}
	o := &cliOptions{name: "keygen", json: *asJSON}
	return o.show(e, keygenResult{ID: k.Public().DID(), File: *out}, "", func(w io.Writer) {
		fmt.Fprintln(w, k.Public().DID())
	})
}

func runRegister(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("register", true)
	name := fs.String("name", "", "a name for people to read")
	operator := fs.String("operator", "", "who runs the agent; the market ignores ratings between one operator's agents")
	roles := fs.String("roles", "", "buyer, seller, arbiter, comma-separated")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := o.require(map[string]string{"roles": *roles}); err != nil {
		return err
	}
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	var rs []market.Role
	for _, r := range splitList(*roles) {
		rs = append(rs, market.Role(r))
	}
	reg := market.SignRegistration(market.Registration{Name: *name, Operator: *operator, Roles: rs}, o.key, time.Now())
	a, err := c.Register(ctx, reg)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, a, string(a.ID), func(w io.Writer) {
		fmt.Fprintf(w, "registered %s", a.ID)
		if a.Name != "" {
			fmt.Fprintf(w, " as %s", a.Name)
		}
		fmt.Fprintf(w, " (roles %s", joinRoles(a.Roles))
		if a.Operator != "" {
			fmt.Fprintf(w, "; operator %s", a.Operator)
		}
		fmt.Fprintf(w, "); starting grant %s\n", credits(a.GrantMicrocredits))
	})
}

func joinRoles(rs []market.Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

func runBalance(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("balance", false)
	agent := fs.String("agent", "", "whose wallet (default yours; others' need the operator key)")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	id := c.ID()
	if *agent != "" {
		id = market.AgentID(*agent)
	}
	b, err := c.Balance(ctx, id)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, b, "", func(w io.Writer) { writeBalance(w, b) })
}

func writeBalance(w io.Writer, b market.Balance) {
	fmt.Fprintln(w, b.Agent)
	table(w, "", [][]string{
		{"  available", credits(b.AvailableMicrocredits), "what you may spend now"},
		{"  posted", credits(b.PostedMicrocredits), "settled funds"},
		{"  held", credits(b.HeldMicrocredits), "in escrow for your open contracts"},
		{"  incoming", credits(b.IncomingMicrocredits), "held for you in others' escrow"},
		{"  bond", credits(b.BondMicrocredits), "posted as an arbiter bond"},
	})
}

func runBond(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("bond", false)
	amt := amount(fs, "amount", "how much to move from your wallet into your arbiter bond")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if *amt <= 0 {
		return errors.New("bond: --amount is required and must be positive")
	}
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	b, err := c.PostBond(ctx, *amt)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, b, "", func(w io.Writer) { writeBalance(w, b) })
}

// runMint issues credits to an agent; --key must be the operator's key
// (serve's DATA/operator.key by default).
func runMint(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("mint", false)
	agent := fs.String("agent", "", "the agent to credit")
	amt := amount(fs, "amount", "how much to issue from the treasury")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := o.require(map[string]string{"agent": *agent}); err != nil {
		return err
	}
	if *amt <= 0 {
		return errors.New("mint: --amount is required and must be positive")
	}
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	b, err := c.Mint(ctx, market.AgentID(*agent), *amt)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, b, "", func(w io.Writer) { writeBalance(w, b) })
}

// runMandate sets an agent's spending mandate; --key must be the
// operator's key. "mandate set --agent DID" with no limits removes it.
func runMandate(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "set" {
		return errors.New("usage: agentmarket mandate set --agent DID [--max-per-transfer AMOUNT] [--budget AMOUNT --window D] [--counterparty DID]… [--expires TIME|D]")
	}
	fs, o := e.clientFlags("mandate set", false)
	agent := fs.String("agent", "", "the agent whose spending to limit")
	perTransfer := amount(fs, "max-per-transfer", "the most one transfer may move")
	budget := amount(fs, "budget", "the most the agent may spend per --window")
	window := fs.Duration("window", 0, "the budget's rolling window, such as 24h")
	var counterparties listFlag
	fs.Var(&counterparties, "counterparty", "an agent the mandate allows paying; repeat for more (default any)")
	expires := fs.String("expires", "", "when the mandate ends: an RFC 3339 time, or a duration from now such as 720h")
	if err := o.parseNoArgs(fs, args[1:]); err != nil {
		return err
	}
	if err := o.require(map[string]string{"agent": *agent}); err != nil {
		return err
	}
	m := market.Mandate{Agent: market.AgentID(*agent), MaxPerTransferMicrocredits: *perTransfer,
		BudgetMicrocredits: *budget, Window: market.Duration(*window)}
	for _, cp := range counterparties {
		m.Counterparties = append(m.Counterparties, market.AgentID(cp))
	}
	if *expires != "" {
		if d, err := time.ParseDuration(*expires); err == nil {
			m.ExpiresAt = time.Now().Add(d).UTC()
		} else if t, err := time.Parse(time.RFC3339, *expires); err == nil {
			m.ExpiresAt = t
		} else {
			return fmt.Errorf("mandate set --expires %q: want an RFC 3339 time or a duration", *expires)
		}
	}
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	if err := c.SetMandate(ctx, m); err != nil {
		return o.fail(err)
	}
	return o.show(e, m, "", func(w io.Writer) {
		if m.MaxPerTransferMicrocredits == 0 && m.BudgetMicrocredits == 0 && len(m.Counterparties) == 0 && m.ExpiresAt.IsZero() {
			fmt.Fprintf(w, "mandate of %s removed\n", m.Agent)
			return
		}
		fmt.Fprintf(w, "mandate of %s set:", m.Agent)
		if m.MaxPerTransferMicrocredits > 0 {
			fmt.Fprintf(w, " at most %s a transfer;", credits(m.MaxPerTransferMicrocredits))
		}
		if m.BudgetMicrocredits > 0 {
			fmt.Fprintf(w, " %s per %s;", credits(m.BudgetMicrocredits), time.Duration(m.Window))
		}
		if len(m.Counterparties) > 0 {
			fmt.Fprintf(w, " paying only %d counterparties;", len(m.Counterparties))
		}
		if !m.ExpiresAt.IsZero() {
			fmt.Fprintf(w, " until %s;", clock(m.ExpiresAt))
		}
		fmt.Fprintln(w)
	})
}
