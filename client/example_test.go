package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"slices"
	"time"

	"github.com/agentmarket/agentmarket/client"
	"github.com/agentmarket/agentmarket/httpapi/httpapitest"
	"github.com/agentmarket/agentmarket/market"
)

// startMarket serves a real market from a temporary directory on
// 127.0.0.1, as "agentmarket serve" would, and returns its URL and a
// function that stops it and removes the directory.
func startMarket() (string, func()) {
	dir, err := os.MkdirTemp("", "agentmarket-example-")
	if err != nil {
		log.Fatal(err)
	}
	m, err := httpapitest.Start(dir, httpapitest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	return m.URL, func() {
		m.Close()
		os.RemoveAll(dir)
	}
}

// register makes a key, registers it with the roles and returns the
// agent's client.
func register(ctx context.Context, url, name string, roles ...market.Role) *client.Client {
	key, err := market.GenerateKey(nil)
	if err != nil {
		log.Fatal(err)
	}
	c := client.New(url, key)
	reg := market.SignRegistration(market.Registration{Name: name, Operator: name, Roles: roles}, key, time.Now())
	if _, err := c.Register(ctx, reg); err != nil {
		log.Fatal(err)
	}
	return c
}

// sortParams are the parameters of the "sort" checker's intents.
type sortParams struct {
	Items []int64 `json:"items"`
	Order string  `json:"order"`
}

// sortingSeller is a seller that answers intents: it bids its price on
// every SORT_LIST intent routed to it, and delivers the sorted items when
// it wins. It returns when ctx ends.
func sortingSeller(ctx context.Context, seller *client.Client, price int64) error {
	events, err := seller.Subscribe(ctx, market.EventFilter{
		Types: []string{market.EventIntentPosted, market.EventContractAwarded},
	})
	if err != nil {
		return err
	}
	for ev := range events {
		switch ev.Type {
		case market.EventIntentPosted:
			var in market.Intent
			if err := json.Unmarshal(ev.Data, &in); err != nil {
				return err
			}
			if in.Buyer == seller.ID() {
				continue
			}
			if _, err := seller.PlaceBid(ctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: price, LatencyMs: 5_000}); err != nil {
				return err
			}
		case market.EventContractAwarded:
			var c market.Contract
			if err := json.Unmarshal(ev.Data, &c); err != nil {
				return err
			}
			if c.Seller != seller.ID() {
				continue
			}
			in, err := seller.Intent(ctx, c.IntentID)
			if err != nil {
				return err
			}
			var p sortParams
			if err := json.Unmarshal(in.Parameters, &p); err != nil {
				return err
			}
			slices.Sort(p.Items)
			if p.Order == "desc" {
				slices.Reverse(p.Items)
			}
			out, _ := json.Marshal(map[string][]int64{"items": p.Items})
			if _, err := seller.Deliver(ctx, market.DeliveryRequest{Contract: c.ID, Output: out}); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// A seller publishes an offer, then answers the intents the market routes
// to it: it bids, and delivers when it wins.
func ExampleClient_Subscribe() {
	url, stop := startMarket()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	seller := register(ctx, url, "sorter", market.RoleSeller)
	if _, err := seller.PublishOffer(ctx, market.Offer{
		Intent:                "SORT_LIST",
		BasePriceMicrocredits: 2 * market.Credit,
		LatencyMs:             5_000,
		ParameterSchema:       json.RawMessage(`{"type":"object","required":["items"]}`),
	}); err != nil {
		log.Fatal(err)
	}
	events, err := seller.Subscribe(ctx, market.EventFilter{
		Types: []string{market.EventIntentPosted, market.EventContractAwarded},
	})
	if err != nil {
		log.Fatal(err)
	}

	// Somewhere else, a buyer wants a list sorted, and will pay when the
	// market's sort checker passes the result.
	buyer := register(ctx, url, "buyer", market.RoleBuyer)
	go buySorting(ctx, buyer, []int64{5, 3, 9, 1})

	for ev := range events {
		switch ev.Type {
		case market.EventIntentPosted:
			var in market.Intent
			json.Unmarshal(ev.Data, &in)
			fmt.Printf("intent %s with parameters %s\n", in.Intent, in.Parameters)
			b, err := seller.PlaceBid(ctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: 2 * market.Credit, LatencyMs: 5_000})
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("bid %d µcr\n", b.PriceMicrocredits)
		case market.EventContractAwarded:
			var c market.Contract
			json.Unmarshal(ev.Data, &c)
			in, err := seller.Intent(ctx, c.IntentID)
			if err != nil {
				log.Fatal(err)
			}
			var p sortParams
			json.Unmarshal(in.Parameters, &p)
			slices.Sort(p.Items)
			out, _ := json.Marshal(map[string][]int64{"items": p.Items})
			c, err = seller.Deliver(ctx, market.DeliveryRequest{Contract: c.ID, Output: out})
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("delivered %s: check passed %t, contract %s\n", out, c.Delivery.Check.Passed, c.State)
			bal, err := seller.Balance(ctx, seller.ID())
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("seller's wallet: %d µcr\n", bal.PostedMicrocredits)
			return
		}
	}
	// Output:
	// intent SORT_LIST with parameters {"items":[5,3,9,1],"order":"asc"}
	// bid 2000000 µcr
	// delivered {"items":[1,3,5,9]}: check passed true, contract settled
	// seller's wallet: 102000000 µcr
}

// buySorting posts a SORT_LIST intent paid on the sort checker, awards the
// cheapest bid once bidding closes, and returns the settled contract.
func buySorting(ctx context.Context, buyer *client.Client, items []int64) (market.Contract, error) {
	events, err := buyer.Subscribe(ctx, market.EventFilter{
		Types: []string{market.EventIntentClosed, market.EventContractSettled, market.EventContractRefunded},
	})
	if err != nil {
		return market.Contract{}, err
	}
	params, _ := json.Marshal(sortParams{Items: items, Order: "asc"})
	in, err := buyer.PostIntent(ctx, market.IntentRequest{
		RequestID:   "sort-1",
		Intent:      "SORT_LIST",
		Parameters:  params,
		Constraints: market.Constraints{MaxBudgetMicrocredits: 3 * market.Credit, MaxLatencyMs: 10_000},
		BidWindowMs: 1000,
		Acceptance:  market.Acceptance{Policy: market.AcceptChecker, Checker: "sort"},
	})
	if err != nil {
		return market.Contract{}, err
	}
	for ev := range events {
		switch {
		case ev.Type == market.EventIntentClosed && ev.Subject == in.ID:
			bids, err := buyer.Bids(ctx, in.ID)
			if err != nil {
				return market.Contract{}, err
			}
			if len(bids) == 0 {
				return market.Contract{}, fmt.Errorf("no bids")
			}
			best := slices.MinFunc(bids, func(a, b market.Bid) int { return int(a.PriceMicrocredits - b.PriceMicrocredits) })
			if _, err := buyer.Award(ctx, in.ID, best.ID); err != nil {
				return market.Contract{}, err
			}
		case ev.Type == market.EventContractSettled || ev.Type == market.EventContractRefunded:
			return buyer.Contract(ctx, ev.Subject)
		}
	}
	return market.Contract{}, ctx.Err()
}

// A buyer posts an intent whose payment waits on the market's sort
// checker, awards the best bid, and pays only because the delivered list
// passes the check.
func ExampleClient_PostIntent() {
	url, stop := startMarket()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Two sellers compete.
	for _, s := range []struct {
		name  string
		price int64
	}{{"cheap", 1_500_000}, {"dear", 2_500_000}} {
		seller := register(ctx, url, s.name, market.RoleSeller)
		if _, err := seller.PublishOffer(ctx, market.Offer{Intent: "SORT_LIST", BasePriceMicrocredits: s.price, LatencyMs: 5_000}); err != nil {
			log.Fatal(err)
		}
		go sortingSeller(ctx, seller, s.price)
	}

	buyer := register(ctx, url, "buyer", market.RoleBuyer)
	c, err := buySorting(ctx, buyer, []int64{42, 7, 19, 7, 3})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("contract %s: %s, paid %d µcr plus a %d µcr fee\n", c.State, c.Outcome.Result, c.Outcome.PaidMicrocredits, c.Outcome.FeeMicrocredits)
	fmt.Printf("delivered %s, check passed %t\n", c.Delivery.Output, c.Delivery.Check.Passed)
	bal, err := buyer.Balance(ctx, buyer.ID())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("buyer's wallet: %d µcr\n", bal.PostedMicrocredits)
	// Output:
	// contract settled: paid, paid 1500000 µcr plus a 15000 µcr fee
	// delivered {"items":[3,7,7,19,42]}, check passed true
	// buyer's wallet: 98485000 µcr
}
