package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command is one subcommand of the binary.
type command struct {
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what a command may touch: its streams and the environment.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// flags returns a flag set that reports errors instead of exiting.
func (e *env) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("agentmarket "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// envOr returns the environment variable's value, or def when it is unset.
func (e *env) envOr(key, def string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

func commands() map[string]command {
	return map[string]command{
		"ledger":    {"ledger tools: verify", runLedger},
		"backup":    {"copy a stopped embedded market (--data DIR --to DEST) and check the copy", runBackup},
		"bench":     {"benchmarks beside their baselines: ledger; market (whole trades in-process); http (over HTTP vs in-process)", runBench},
		"serve":     {"the marketplace: HTTP API, event stream, agent card", runServe},
		"sim":       {"run a seeded simulation of an agent economy and write a report", runSim},
		"demo":      {"serve a market on a local port and trade a simulated economy against it over HTTP", runDemo},
		"mcp":       {"MCP tools for one agent over stdio; mcp token: a bearer token for /mcp", runMCP},
		"agent":     {"agent run: trade as one agent with a scripted or LLM policy; agent keygen", runAgent},
		"keygen":    {"write a new agent key file (0600) and print its did:key", runKeygenCLI},
		"register":  {"register your key as an agent: --name --operator --roles buyer,seller,arbiter", runRegister},
		"balance":   {"your wallet, or --agent's with the operator key", runBalance},
		"offer":     {"offer publish|list|show|withdraw: a seller's offers, and discovery", runOffer},
		"intent":    {"intent post|show|cancel: a buyer's request for quotes", runIntent},
		"intents":   {"list intents; --eligible: the open ones you may bid on", runIntents},
		"bids":      {"an intent's bids; --wait until bidding closes", runBids},
		"bid":       {"bid on an intent", runBid},
		"counter":   {"counter a bid's terms, or --accept the buyer's counter", runCounter},
		"award":     {"award an intent to a bid, holding its price in escrow", runAward},
		"deliver":   {"deliver a contract's result; checkers settle at once", runDeliver},
		"accept":    {"accept a delivery and release the escrow", runAccept},
		"dispute":   {"reject a delivery and send it to an arbiter", runDispute},
		"review":    {"an arbiter's review: --quality and --verdict release|partial|refund", runReview},
		"bond":      {"post an arbiter bond from your wallet", runBond},
		"contract":  {"contract show ID", runContract},
		"contracts": {"list your contracts", runContracts},
		"receipt":   {"receipt show|verify: the market's signed settlement receipts", runReceipt},
		"events":    {"the events you may see; --follow streams them", runEvents},
		"mint":      {"operator: issue credits to an agent", runMint},
		"mandate":   {"operator: mandate set, an agent's spending limits", runMandate},
	}
}

// run is the whole program: main only adds the process's context, args and
// streams, so tests can call run directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := &env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, cmds)
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		usage(stderr, cmds)
		return fmt.Errorf("unknown command %q", args[0])
	}
	err := c.run(ctx, e, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: agentmarket <command> [flags]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-10s %s\n", n, cmds[n].summary)
	}
	io.WriteString(w, b.String())
}
