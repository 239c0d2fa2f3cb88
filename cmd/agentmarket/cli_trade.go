package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// The client commands of trading: offers, intents, bids, counter-offers
// and the award.

func runOffer(ctx context.Context, e *env, args []string) error {
	sub, rest := "", args
	if len(args) > 0 {
		sub, rest = args[0], args[1:]
	}
	switch sub {
	case "publish":
		return runOfferPublish(ctx, e, rest)
	case "list":
		return runOfferList(ctx, e, rest)
	case "show":
		return runOfferShow(ctx, e, rest, false)
	case "withdraw":
		return runOfferShow(ctx, e, rest, true)
	}
	return errors.New("usage: agentmarket offer publish|list|show|withdraw [flags]")
}

func runOfferPublish(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("offer publish", true)
	intent := fs.String("intent", "", "the intent type you serve, such as SORT_LIST")
	base := amount(fs, "base-price", "your price per task")
	latency := fs.Int64("latency-ms", 0, "the latency you promise, in milliseconds")
	schema := fs.String("schema", "", "a file holding the JSON Schema that intents' parameters must satisfy")
	unit := fs.String("unit", "", "a numeric intent parameter you charge per unit of, such as word_count")
	unitPrice := amount(fs, "unit-price", "the price per --unit")
	capacity := fs.Int("capacity", 0, "contracts you take at once; 0 means unlimited")
	var tags listFlag
	fs.Var(&tags, "tag", "a tag for discovery; repeat for more")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := o.require(map[string]string{"intent": *intent}); err != nil {
		return err
	}
	if *latency <= 0 {
		return errors.New("offer publish: --latency-ms is required and must be positive")
	}
	off := market.Offer{Intent: *intent, BasePriceMicrocredits: *base, UnitPriceMicrocredits: *unitPrice, Unit: *unit,
		LatencyMs: *latency, Capacity: *capacity, Tags: tags}
	if *schema != "" {
		s, err := jsonArg(e, "schema", "@"+*schema)
		if err != nil {
			return fmt.Errorf("offer publish: %w", err)
		}
		off.ParameterSchema = s
	}
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	off, err = c.PublishOffer(ctx, off)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, off, off.ID, func(w io.Writer) {
		fmt.Fprintf(w, "offer %s published: %s at %s", off.ID, off.Intent, credits(off.BasePriceMicrocredits))
		if off.Unit != "" {
			fmt.Fprintf(w, " + %s per %s", credits(off.UnitPriceMicrocredits), off.Unit)
		}
		fmt.Fprintf(w, ", within %d ms\n", off.LatencyMs)
	})
}

func runOfferList(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("offer list", false)
	var q market.OfferQuery
	fs.StringVar(&q.Intent, "intent", "", "the intent type")
	maxPrice := amount(fs, "max-price", "only offers at most this price for --params")
	fs.Int64Var(&q.MaxLatencyMs, "max-latency-ms", 0, "only offers promising at most this latency")
	fs.Float64Var(&q.MinimumReputationScore, "min-reputation", 0, "only sellers whose reputation lower bound reaches this (0 to 1)")
	params := fs.String("params", "", "only offers whose schema accepts these parameters: JSON, or @file")
	fs.IntVar(&q.Limit, "limit", 0, "at most this many offers")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := o.require(map[string]string{"intent": q.Intent}); err != nil {
		return err
	}
	q.MaxPriceMicrocredits = *maxPrice
	if *params != "" {
		p, err := jsonArg(e, "params", *params)
		if err != nil {
			return fmt.Errorf("offer list: %w", err)
		}
		q.Parameters = p
	}
	c, err := o.connect(false)
	if err != nil {
		return err
	}
	ms, err := c.FindOffers(ctx, q)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, ms, "", func(w io.Writer) {
		if len(ms) == 0 {
			fmt.Fprintf(w, "no active offers for %s match\n", q.Intent)
			return
		}
		var rows [][]string
		for _, m := range ms {
			rows = append(rows, []string{m.Offer.ID, credits(m.PriceMicrocredits), fmt.Sprintf("%d ms", m.Offer.LatencyMs),
				fmt.Sprintf("%.2f", m.Reputation.LowerBound), fmt.Sprintf("%.3f", m.Score), string(m.Offer.Seller)})
		}
		table(w, "OFFER\tPRICE\tLATENCY\tREPUTATION\tSCORE\tSELLER", rows)
	})
}

// runOfferShow shows an offer, or withdraws it.
func runOfferShow(ctx context.Context, e *env, args []string, withdraw bool) error {
	name := "offer show"
	if withdraw {
		name = "offer withdraw"
	}
	fs, o := e.clientFlags(name, false)
	id, err := o.parseOneArg(fs, args, "OFFER")
	if err != nil {
		return err
	}
	c, err := o.connect(withdraw)
	if err != nil {
		return err
	}
	var off market.Offer
	if withdraw {
		off, err = c.WithdrawOffer(ctx, id)
	} else {
		off, err = c.Offer(ctx, id)
	}
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, off, off.ID, func(w io.Writer) {
		table(w, "", [][]string{
			{"offer", off.ID},
			{"state", string(off.State)},
			{"seller", string(off.Seller)},
			{"intent", off.Intent},
			{"base price", credits(off.BasePriceMicrocredits)},
			{"unit price", unitPrice(off)},
			{"latency", fmt.Sprintf("%d ms", off.LatencyMs)},
			{"capacity", capacityText(off.Capacity)},
			{"tags", fmt.Sprint(off.Tags)},
			{"schema", string(off.ParameterSchema)},
		})
	})
}

func unitPrice(o market.Offer) string {
	if o.Unit == "" {
		return "-"
	}
	return credits(o.UnitPriceMicrocredits) + " per " + o.Unit
}

func capacityText(n int) string {
	if n == 0 {
		return "unlimited"
	}
	return strconv.Itoa(n)
}

func runIntent(ctx context.Context, e *env, args []string) error {
	sub, rest := "", args
	if len(args) > 0 {
		sub, rest = args[0], args[1:]
	}
	switch sub {
	case "post":
		return runIntentPost(ctx, e, rest)
	case "show":
		return runIntentShow(ctx, e, rest, false)
	case "cancel":
		return runIntentShow(ctx, e, rest, true)
	}
	return errors.New("usage: agentmarket intent post|show|cancel [flags]")
}

func runIntentPost(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("intent post", true)
	var r market.IntentRequest
	fs.StringVar(&r.Intent, "intent", "", "the intent type, such as SORT_LIST")
	params := fs.String("params", "", "the task's parameters: JSON, or @file (@- for standard input)")
	budget := amount(fs, "budget", "the most you will pay")
	fs.Int64Var(&r.Constraints.MaxLatencyMs, "max-latency-ms", 0, "the slowest latency you accept")
	fs.Float64Var(&r.Constraints.MinimumReputationScore, "min-reputation", 0, "the reputation lower bound sellers need (0 to 1)")
	checkerName := fs.String("checker", "", "pay when this built-in checker passes the delivery: factor, pow, sort or matmul")
	policy := fs.String("policy", "", "how deliveries are verified: buyer_review (default), checker, schema, digest or arbiter")
	outSchema := fs.String("output-schema", "", "with --policy schema: a file holding the JSON Schema the output must satisfy")
	digest := fs.String("digest", "", `with --policy digest: the output's digest, "sha256:<hex>"`)
	review := fs.Duration("review", 0, "with buyer_review: how long you have to accept or dispute (default the market's, 60s)")
	auto := fs.Bool("auto", false, "let the market award the best-scoring bid when bidding closes")
	bidWindow := fs.Duration("bid-window", 0, "how long bidding stays open (default the market's, 2s)")
	awardWindow := fs.Duration("award-window", 0, "how long after bidding closes you may award (default the market's, 30s)")
	fs.IntVar(&r.MaxRounds, "max-rounds", 0, "the most counter-offers per bid (default the market's)")
	fs.StringVar(&r.RequestID, "request-id", "", "your idempotency key: posting the same request again returns the first intent (default random)")
	fs.StringVar(&r.ParentContract, "parent", "", "the contract this intent subcontracts part of")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := o.require(map[string]string{"intent": r.Intent, "params": *params}); err != nil {
		return err
	}
	if *budget <= 0 {
		return errors.New("intent post: --budget is required and must be positive")
	}
	p, err := jsonArg(e, "params", *params)
	if err != nil {
		return fmt.Errorf("intent post: %w", err)
	}
	r.Parameters, r.Constraints.MaxBudgetMicrocredits = p, *budget
	r.BidWindowMs, r.AwardWindowMs = bidWindow.Milliseconds(), awardWindow.Milliseconds()
	if *auto {
		r.Selection.Mode = market.SelectAuto
	}
	r.Acceptance = market.Acceptance{Policy: *policy, Checker: *checkerName, Digest: *digest, ReviewMs: review.Milliseconds()}
	if r.Acceptance.Policy == "" && *checkerName != "" {
		r.Acceptance.Policy = market.AcceptChecker
	}
	if *outSchema != "" {
		s, err := jsonArg(e, "output-schema", "@"+*outSchema)
		if err != nil {
			return fmt.Errorf("intent post: %w", err)
		}
		r.Acceptance.Schema = s
	}
	if r.RequestID == "" {
		var b [8]byte
		if _, err := crand.Read(b[:]); err != nil {
			return fmt.Errorf("intent post: request id: %w", err)
		}
		r.RequestID = "cli-" + hex.EncodeToString(b[:])
	}
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	in, err := c.PostIntent(ctx, r)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, in, in.ID, func(w io.Writer) {
		fmt.Fprintf(w, "intent %s posted: %s for at most %s, %s\n", in.ID, in.Intent,
			credits(in.Constraints.MaxBudgetMicrocredits), acceptanceText(in.Acceptance))
		fmt.Fprintf(w, "  routed to %d eligible seller(s); bidding closes %s; award by %s\n",
			in.EligibleSellers, clock(in.BidDeadline), clock(in.AwardDeadline))
	})
}

func acceptanceText(a market.Acceptance) string {
	switch a.Policy {
	case market.AcceptChecker:
		return "paid when the " + a.Checker + " checker passes"
	case market.AcceptSchema:
		return "paid when the output satisfies your schema"
	case market.AcceptDigest:
		return "paid when the output's digest is " + a.Digest
	case market.AcceptArbiter:
		return "paid on an arbiter's review"
	}
	return "paid when you accept (silence accepts)"
}

// runIntentShow shows an intent, or cancels it.
func runIntentShow(ctx context.Context, e *env, args []string, cancel bool) error {
	name := "intent show"
	if cancel {
		name = "intent cancel"
	}
	fs, o := e.clientFlags(name, false)
	id, err := o.parseOneArg(fs, args, "INTENT")
	if err != nil {
		return err
	}
	c, err := o.connect(cancel)
	if err != nil {
		return err
	}
	var in market.Intent
	if cancel {
		in, err = c.CancelIntent(ctx, id)
	} else {
		in, err = c.Intent(ctx, id)
	}
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, in, in.ID, func(w io.Writer) {
		rows := [][]string{
			{"intent", in.ID},
			{"state", string(in.State)},
			{"type", in.Intent},
			{"buyer", string(in.Buyer)},
			{"request id", in.RequestID},
			{"parameters", string(in.Parameters)},
			{"budget", credits(in.Constraints.MaxBudgetMicrocredits)},
			{"acceptance", acceptanceText(in.Acceptance)},
			{"selection", in.Selection.Mode},
			{"eligible sellers", strconv.Itoa(in.EligibleSellers)},
			{"bidding closes", clock(in.BidDeadline)},
			{"award by", clock(in.AwardDeadline)},
		}
		if in.Constraints.MaxLatencyMs > 0 {
			rows = append(rows, []string{"max latency", fmt.Sprintf("%d ms", in.Constraints.MaxLatencyMs)})
		}
		if in.Constraints.MinimumReputationScore > 0 {
			rows = append(rows, []string{"min reputation", fmt.Sprint(in.Constraints.MinimumReputationScore)})
		}
		if in.Contract != "" {
			rows = append(rows, []string{"contract", in.Contract})
		}
		if in.ParentContract != "" {
			rows = append(rows, []string{"parent contract", in.ParentContract})
		}
		table(w, "", rows)
	})
}

func runIntents(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("intents", false)
	var f market.IntentFilter
	fs.BoolVar(&f.Eligible, "eligible", false, "only open intents you, a seller, may bid on")
	fs.StringVar(&f.Intent, "intent", "", "only this intent type")
	state := fs.String("state", "", "only intents in this state: open, selecting, awarded, cancelled or expired")
	buyer := fs.String("buyer", "", "only this buyer's intents")
	mine := fs.Bool("mine", false, "only your own intents")
	fs.IntVar(&f.Limit, "limit", 0, "at most this many")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	f.State, f.Buyer = market.IntentState(*state), market.AgentID(*buyer)
	c, err := o.connect(f.Eligible || *mine)
	if err != nil {
		return err
	}
	if *mine {
		f.Buyer = c.ID()
	}
	ins, err := c.Intents(ctx, f)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, ins, "", func(w io.Writer) {
		if len(ins) == 0 {
			fmt.Fprintln(w, "no intents")
			return
		}
		var rows [][]string
		for _, in := range ins {
			rows = append(rows, []string{in.ID, string(in.State), in.Intent, credits(in.Constraints.MaxBudgetMicrocredits),
				clock(in.BidDeadline), string(in.Buyer)})
		}
		table(w, "INTENT\tSTATE\tTYPE\tBUDGET\tBIDDING CLOSES\tBUYER", rows)
	})
}

// bidPoll is how often "bids --wait" looks whether bidding has closed.
const bidPoll = 250 * time.Millisecond

func runBids(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("bids", false)
	wait := fs.Bool("wait", false, "wait until bidding closes, then list the bids")
	id, err := o.parseOneArg(fs, args, "INTENT")
	if err != nil {
		return err
	}
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	if *wait {
		said := false
		for {
			in, err := c.Intent(ctx, id)
			if err != nil {
				return o.fail(err)
			}
			if in.State != market.IntentOpen {
				break
			}
			if !said {
				fmt.Fprintf(e.stderr, "waiting for bidding on %s to close at %s…\n", id, clock(in.BidDeadline))
				said = true
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("bids: %w", ctx.Err())
			case <-time.After(bidPoll):
			}
		}
	}
	bids, err := c.Bids(ctx, id)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, bids, "", func(w io.Writer) {
		if len(bids) == 0 {
			fmt.Fprintf(w, "no bids on %s\n", id)
			return
		}
		var rows [][]string
		for _, b := range bids {
			offer := "-"
			if b.BuyerOfferMicrocredits > 0 {
				offer = credits(b.BuyerOfferMicrocredits)
			}
			rows = append(rows, []string{b.ID, credits(b.PriceMicrocredits), fmt.Sprintf("%d ms", b.LatencyMs), string(b.State),
				strconv.Itoa(b.Rounds), offer, string(b.Seller), b.Note})
		}
		table(w, "BID\tPRICE\tLATENCY\tSTATE\tROUNDS\tYOUR COUNTER\tSELLER\tNOTE", rows)
	})
}

func runBid(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("bid", true)
	var r market.BidRequest
	fs.StringVar(&r.Intent, "intent", "", "the intent to bid on")
	price := amount(fs, "price", "your price")
	fs.Int64Var(&r.LatencyMs, "latency-ms", 0, "the latency you promise, in milliseconds")
	fs.StringVar(&r.Note, "note", "", "a note to the buyer")
	fs.StringVar(&r.Offer, "offer", "", "the offer the bid is made under (default the market picks yours)")
	validFor := fs.Duration("valid-for", 0, "how long the bid stands (default until the award deadline)")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := o.require(map[string]string{"intent": r.Intent}); err != nil {
		return err
	}
	if *price <= 0 || r.LatencyMs <= 0 {
		return errors.New("bid: --price and --latency-ms are required and must be positive")
	}
	r.PriceMicrocredits, r.ValidForMs = *price, validFor.Milliseconds()
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	b, err := c.PlaceBid(ctx, r)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, b, b.ID, func(w io.Writer) {
		fmt.Fprintf(w, "bid %s placed on %s: %s within %d ms; it stands until %s\n", b.ID, b.Intent,
			credits(b.PriceMicrocredits), b.LatencyMs, clock(b.ExpiresAt))
	})
}

func runCounter(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("counter", true)
	var r market.CounterRequest
	fs.StringVar(&r.Bid, "bid", "", "the bid whose negotiation you answer")
	price := amount(fs, "price", "your price (with --accept, default the buyer's counter)")
	fs.Int64Var(&r.LatencyMs, "latency-ms", 0, "your latency, for a seller's counter")
	fs.BoolVar(&r.Accept, "accept", false, "seller: accept the buyer's counter-offer")
	fs.StringVar(&r.InReplyTo, "reply-to", "", "the message you answer (default the newest)")
	fs.StringVar(&r.Note, "note", "", "a note to the other side")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := o.require(map[string]string{"bid": r.Bid}); err != nil {
		return err
	}
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	r.PriceMicrocredits = *price
	if r.InReplyTo == "" || (r.Accept && r.PriceMicrocredits == 0) {
		b, err := c.Bid(ctx, r.Bid)
		if err != nil {
			return o.fail(err)
		}
		if r.InReplyTo == "" {
			r.InReplyTo = b.LastMessage
		}
		if r.Accept && r.PriceMicrocredits == 0 {
			r.PriceMicrocredits = b.BuyerOfferMicrocredits
		}
	}
	if r.PriceMicrocredits <= 0 {
		return errors.New("counter: --price is required and must be positive")
	}
	m, err := c.Counter(ctx, r)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, m, m.ID, func(w io.Writer) {
		if m.Accept {
			fmt.Fprintf(w, "accepted %s on bid %s (message %s, round %d)\n", credits(m.PriceMicrocredits), m.Bid, m.ID, m.Round)
			return
		}
		fmt.Fprintf(w, "countered bid %s with %s (message %s, round %d)\n", m.Bid, credits(m.PriceMicrocredits), m.ID, m.Round)
	})
}

func runAward(ctx context.Context, e *env, args []string) error {
	fs, o := e.clientFlags("award", true)
	intent := fs.String("intent", "", "your intent")
	bid := fs.String("bid", "", "the winning bid")
	if err := o.parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := o.require(map[string]string{"intent": *intent, "bid": *bid}); err != nil {
		return err
	}
	c, err := o.connect(true)
	if err != nil {
		return err
	}
	k, err := c.Award(ctx, *intent, *bid)
	if err != nil {
		return o.fail(err)
	}
	return o.show(e, k, k.ID, func(w io.Writer) {
		fmt.Fprintf(w, "contract %s awarded to %s at %s\n", k.ID, k.Seller, credits(k.PriceMicrocredits))
		fmt.Fprintf(w, "  held in escrow: %s (price, market fee %s, arbiter reserve %s); deliver by %s\n",
			credits(k.HoldMicrocredits), credits(k.FeeMicrocredits), credits(k.ArbiterFeeMicrocredits), clock(k.DeliverBy))
	})
}
