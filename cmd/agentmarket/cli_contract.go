package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/market"
)

// The client commands after the award: delivery, acceptance, disputes,
// arbiters' reviews, contracts, receipts and the event stream.

func runDeliver(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("deliver", false)
	var r market.DeliveryRequest
	fs.StringVar(&r.Contract, "contract", "", "the contract you deliver")
	output := fs.String("output", "", "the result: JSON, or @file (@- for standard input)")
	fs.StringVar(&r.Digest, "digest", "", `instead of --output: the result's digest, "sha256:<hex>", with --uri`)
	fs.StringVar(&r.URI, "uri", "", "instead of --output: where the result is, with --digest")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := o.require(map[string]string{"contract": r.Contract}); err != nil {
		return err
	}
	switch {
	case *output != "" && (r.Digest != "" || r.URI != ""):
		return errors.New("deliver: give --output, or --digest and --uri, not both")
	case *output != "":
		out, err := jsonArg(e, "output", *output)
		if err != nil {
			return fmt.Errorf("deliver: %w", err)
		}
		r.Output = out
	case r.Digest == "" || r.URI == "":
		return errors.New("deliver: --output, or --digest and --uri, required")
	}
	return contractCall(ctx, e, o, func(c *client.Client) (market.Contract, error) { return c.Deliver(ctx, r) })
}

func runAccept(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("accept", false)
	var r market.AcceptRequest
	fs.StringVar(&r.Contract, "contract", "", "the delivered contract you accept")
	fs.Float64Var(&r.Quality, "quality", 0, "your rating of the work, 0 to 1 (default 1)")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := o.require(map[string]string{"contract": r.Contract}); err != nil {
		return err
	}
	return contractCall(ctx, e, o, func(c *client.Client) (market.Contract, error) { return c.Accept(ctx, r) })
}

func runDispute(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("dispute", false)
	var r market.DisputeRequest
	fs.StringVar(&r.Contract, "contract", "", "the delivered contract you reject")
	fs.StringVar(&r.Reason, "reason", "", "why, for the arbiter")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := o.require(map[string]string{"contract": r.Contract, "reason": r.Reason}); err != nil {
		return err
	}
	return contractCall(ctx, e, o, func(c *client.Client) (market.Contract, error) { return c.Dispute(ctx, r) })
}

func runReview(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("review", false)
	var r market.ReviewRequest
	fs.StringVar(&r.Contract, "contract", "", "the contract you were assigned to review")
	quality := fs.String("quality", "", "the work's quality, 0 to 1")
	fs.StringVar(&r.Verdict, "verdict", "", "release (pay in full), partial (pay in proportion to quality) or refund")
	fs.StringVar(&r.Note, "note", "", "a note on the review")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := o.require(map[string]string{"contract": r.Contract, "quality": *quality, "verdict": r.Verdict}); err != nil {
		return err
	}
	q, err := strconv.ParseFloat(*quality, 64)
	if err != nil {
		return fmt.Errorf("review --quality %q: want a number from 0 to 1", *quality)
	}
	r.Quality = q
	return contractCall(ctx, e, o, func(c *client.Client) (market.Contract, error) { return c.SubmitReview(ctx, r) })
}

// contractCall runs a signed call that returns a contract, and shows it.
func contractCall(ctx context.Context, e *env, o *cliOptions, call func(*client.Client) (market.Contract, error)) error {
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	k, err := call(c)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, k, k.ID, func(w io.Writer) { writeContractSummary(w, k) })
}

// writeContractSummary says where a contract stands, in a line or three.
func writeContractSummary(w io.Writer, k market.Contract) {
	switch k.State {
	case market.ContractAwarded:
		fmt.Fprintf(w, "contract %s awarded: %s held in escrow; awaiting delivery by %s\n", k.ID, credits(k.HoldMicrocredits), clock(k.DeliverBy))
	case market.ContractDelivered:
		fmt.Fprintf(w, "contract %s delivered: awaiting the buyer's review until %s (silence accepts)\n", k.ID, clock(k.ReviewBy))
	case market.ContractInReview:
		fmt.Fprintf(w, "contract %s in review by %d arbiter(s) until %s\n", k.ID, len(k.Arbiters), clock(k.ReviewBy))
	default:
		fmt.Fprintf(w, "contract %s %s\n", k.ID, k.State)
	}
	if d := k.Delivery; d != nil && d.Check != nil {
		verdict := "failed"
		if d.Check.Passed {
			verdict = "passed"
		}
		what := "the " + d.Check.Policy + " check"
		if k.Acceptance.Checker != "" {
			what = "the " + k.Acceptance.Checker + " checker"
		}
		fmt.Fprintf(w, "  %s %s", what, verdict)
		if d.Check.Detail != "" {
			fmt.Fprintf(w, ": %s", d.Check.Detail)
		}
		fmt.Fprintln(w)
	}
	if out := k.Outcome; out != nil {
		fmt.Fprintf(w, "  %s (%s): paid %s to the seller, refunded %s to the buyer, market fee %s",
			out.Result, out.Reason, credits(out.PaidMicrocredits), credits(out.RefundedMicrocredits), credits(out.FeeMicrocredits))
		if out.ArbiterFeeMicrocredits > 0 {
			fmt.Fprintf(w, ", arbiter fee %s", credits(out.ArbiterFeeMicrocredits))
		}
		fmt.Fprintf(w, "; receipt %d\n", out.Receipt)
	}
}

func runContract(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "show" {
		return errors.New("usage: agentmarket contract show CONTRACT [flags]")
	}
	fs, o := e.clientFlags("contract show", false)
	id, err := o.parseOneArg(fs, args[1:], "CONTRACT")
	if err != nil {
		return err
	}
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	k, err := c.Contract(ctx, id)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, k, k.ID, func(w io.Writer) {
		writeContractSummary(w, k)
		rows := [][]string{
			{"  intent", k.IntentID + " (" + k.Intent + ")"},
			{"  buyer", string(k.Buyer)},
			{"  seller", string(k.Seller)},
			{"  bid", k.Bid},
			{"  price", credits(k.PriceMicrocredits)},
			{"  held", credits(k.HoldMicrocredits)},
			{"  acceptance", acceptanceText(k.Acceptance)},
			{"  awarded", clock(k.AwardedAt)},
			{"  deliver by", clock(k.DeliverBy)},
		}
		if d := k.Delivery; d != nil {
			got := string(d.Output)
			if got == "" {
				got = d.URI
			}
			rows = append(rows, []string{"  delivered", clock(d.DeliveredAt) + " " + d.Digest}, []string{"  output", got})
		}
		if d := k.Dispute; d != nil {
			rows = append(rows, []string{"  disputed", clock(d.OpenedAt) + ": " + d.Reason})
		}
		for _, r := range k.Reviews {
			rows = append(rows, []string{"  review", fmt.Sprintf("%s: %s, quality %.2f", r.Arbiter, r.Verdict, r.Quality)})
		}
		if k.ParentContract != "" {
			rows = append(rows, []string{"  parent", k.ParentContract})
		}
		if len(k.Children) > 0 {
			rows = append(rows, []string{"  subcontracts", strings.Join(k.Children, ", ")})
		}
		table(w, "", rows)
	})
}

func runContracts(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("contracts", false)
	var f market.ContractFilter
	state := fs.String("state", "", "only contracts in this state: awarded, delivered, in_review, settled or refunded")
	fs.StringVar(&f.Intent, "intent", "", "only this intent type")
	agent := fs.String("agent", "", "operator: only this agent's contracts")
	fs.StringVar(&f.Parent, "parent", "", "only the subcontracts of this contract")
	fs.IntVar(&f.Limit, "limit", 0, "at most this many")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	f.State, f.Agent = market.ContractState(*state), market.AgentID(*agent)
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	ks, err := c.Contracts(ctx, f)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, ks, "", func(w io.Writer) {
		if len(ks) == 0 {
			fmt.Fprintln(w, "no contracts")
			return
		}
		var rows [][]string
		for _, k := range ks {
			role := "seller"
			if k.Buyer == c.ID() {
				role = "buyer"
			}
			rows = append(rows, []string{k.ID, string(k.State), k.Intent, credits(k.PriceMicrocredits), role, clock(k.AwardedAt)})
		}
		table(w, "CONTRACT\tSTATE\tTYPE\tPRICE\tYOU ARE\tAWARDED", rows)
	})
}

func runReceipt(ctx context.Context, e *env, args []string) error {
	sub, rest := "", args
	if len(args) > 0 {
		sub, rest = args[0], args[1:]
	}
	switch sub {
	case "show":
		return runReceiptShow(ctx, e, rest)
	case "verify":
		return runReceiptVerify(ctx, e, rest)
	}
	return errors.New("usage: agentmarket receipt show SEQ | receipt verify (SEQ | --contract ID | --file FILE) [--market-key DID]")
}

func parseSeq(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("receipt %q: want a receipt's sequence number, 1 or more", s)
	}
	return n, nil
}

func runReceiptShow(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("receipt show", false)
	arg, err := o.parseOneArg(fs, args, "SEQ")
	if err != nil {
		return err
	}
	seq, err := parseSeq(arg)
	if err != nil {
		return err
	}
	c, err := o.connect(false)
	if err != nil {
		return err
	}
	r, err := c.Receipt(ctx, seq)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, r, strconv.FormatUint(r.Seq, 10), func(w io.Writer) { writeReceipt(w, r) })
}

func writeReceipt(w io.Writer, r market.Receipt) {
	rows := [][]string{
		{"  contract", r.Contract + " (" + r.Intent + ", intent " + r.IntentID + ")"},
		{"  buyer", string(r.Buyer)},
		{"  seller", string(r.Seller)},
		{"  price", credits(r.PriceMicrocredits)},
		{"  result", fmt.Sprintf("%s (%s), quality %d.%02d%%", r.Result, r.Reason, r.QualityBps/100, r.QualityBps%100)},
		{"  paid", credits(r.PaidMicrocredits)},
		{"  refunded", credits(r.RefundedMicrocredits)},
		{"  market fee", credits(r.FeeMicrocredits)},
		{"  settled", clock(r.SettledAt)},
		{"  signed by", string(r.Market)},
	}
	if r.Arbiter != "" {
		rows = append(rows, []string{"  arbiter", string(r.Arbiter) + ", fee " + credits(r.ArbiterFeeMicrocredits)})
	}
	fmt.Fprintf(w, "receipt %d\n", r.Seq)
	table(w, "", rows)
}

// receiptCheck is what "receipt verify --json" prints.
type receiptCheck struct {
	Receipt   market.Receipt `json:"receipt"`
	MarketKey market.AgentID `json:"market_key"`
	// KeySource says where the key came from: "flag" (--market-key) or
	// the server's URL. A key fetched from the server that issued the
	// receipt proves only that the server still holds that key.
	KeySource string `json:"key_source"`
	Verified  bool   `json:"verified"`
	// PreviousLinked reports that the previous receipt, fetched from the
	// server and verified too, is the one this receipt's prev_hash names.
	// It is absent for the first receipt and when checking a file offline.
	PreviousLinked *bool `json:"previous_linked,omitempty"`
}

func runReceiptVerify(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("receipt verify", false)
	file := fs.String("file", "", "verify the receipt in this JSON file (as receipt show --json writes it)")
	contract := fs.String("contract", "", "verify the receipt of this settled contract (needs --key of a party)")
	marketKey := fs.String("market-key", "", "the market's did:key to verify against (default: ask the server)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	sources := len(pos)
	if *file != "" {
		sources++
	}
	if *contract != "" {
		sources++
	}
	if sources != 1 || len(pos) > 1 {
		return errors.New("usage: agentmarket receipt verify (SEQ | --contract ID | --file FILE) [--market-key DID]")
	}
	offline := *file != "" && *marketKey != ""
	var cl *client.Client // nil when offline
	if !offline {
		if cl, err = o.connect(*contract != ""); err != nil {
			return err
		}
	}

	var r market.Receipt
	switch {
	case *file != "":
		b, err := os.ReadFile(*file)
		if err != nil {
			return fmt.Errorf("receipt verify: %w", err)
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("receipt verify: %s is not a receipt: %w", *file, err)
		}
	default:
		var seq uint64
		if *contract != "" {
			k, err := cl.Contract(ctx, *contract)
			if err != nil {
				return o.fail(err)
			}
			if k.Outcome == nil {
				return fmt.Errorf("receipt verify: contract %s is %s: it has no receipt until it settles", k.ID, k.State)
			}
			seq = k.Outcome.Receipt
		} else if seq, err = parseSeq(pos[0]); err != nil {
			return err
		}
		if r, err = cl.Receipt(ctx, seq); err != nil {
			return o.fail(err)
		}
	}

	check := receiptCheck{Receipt: r, KeySource: "flag"}
	var key market.PublicKey
	if *marketKey != "" {
		if key, err = market.ParseDID(market.AgentID(*marketKey)); err != nil {
			return fmt.Errorf("receipt verify --market-key: %w", err)
		}
	} else {
		if key, err = cl.MarketKey(ctx); err != nil {
			return o.fail(err)
		}
		check.KeySource = o.server
	}
	check.MarketKey = key.DID()
	if err := market.VerifyReceipt(r, key); err != nil {
		return o.fail(err)
	}
	check.Verified = true
	if !offline && r.Seq > 1 {
		prev, err := cl.Receipt(ctx, r.Seq-1)
		if err != nil {
			return o.fail(err)
		}
		if err := market.VerifyReceiptChain([]market.Receipt{prev, r}, key); err != nil {
			return o.fail(err)
		}
		linked := true
		check.PreviousLinked = &linked
	}
	return o.show(e, check, "", func(w io.Writer) {
		fmt.Fprintf(w, "receipt %d verified: signed by %s (key from %s)\n", r.Seq, key.DID(), check.KeySource)
		switch {
		case check.PreviousLinked != nil:
			fmt.Fprintf(w, "  it links to receipt %d, which verifies too\n", r.Seq-1)
		case r.Seq == 1:
			fmt.Fprintln(w, "  it is the first receipt of the market's chain")
		}
		writeReceipt(w, r)
	})
}

func runEvents(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("events", false)
	var f market.EventFilter
	var types listFlag
	fs.Var(&types, "types", "only these event types, comma-separated (such as intent.posted,contract.settled)")
	fs.StringVar(&f.Intent, "intent", "", "only events of this intent type")
	agent := fs.String("agent", "", "operator: only the events this agent may see")
	fs.Int64Var(&f.After, "after", 0, "only events after this sequence number")
	fs.IntVar(&f.Limit, "limit", 0, "without --follow: at most this many (default and cap 1000)")
	follow := fs.Bool("follow", false, "stream events as they happen until interrupted; with --json, one JSON object a line")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	f.Types, f.Agent = types, market.AgentID(*agent)
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	if !*follow {
		evs, err := c.Events(ctx, f)
		if err != nil {
			return o.fail(err)
		}
		return o.show(e, evs, "", func(w io.Writer) {
			for _, ev := range evs {
				writeEvent(w, ev)
			}
		})
	}
	ch, err := c.Subscribe(ctx, f)
	if err != nil {
		return o.fail(err)
	}
	for ev := range ch {
		var b strings.Builder
		if o.json {
			line, err := json.Marshal(ev)
			if err != nil {
				return fmt.Errorf("events: encode JSON: %w", err)
			}
			b.Write(append(line, '\n'))
		} else {
			writeEvent(&b, ev)
		}
		if _, err := io.WriteString(e.stdout, b.String()); err != nil {
			return err
		}
	}
	// The stream ends when ctx does (an interrupt), or when the server
	// refuses to resume it for good.
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("events: the market ended the stream")
}

func writeEvent(w io.Writer, ev market.Event) {
	fmt.Fprintf(w, "%d\t%s\t%-20s\t%s", ev.Seq, clock(ev.At), ev.Type, ev.Subject)
	if ev.Intent != "" {
		fmt.Fprintf(w, "\t%s", ev.Intent)
	}
	fmt.Fprintln(w)
}
