package engine_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/engine"
	"github.com/agentmarket/agentmarket/market"
)

// BenchmarkLifecycle measures full durable lifecycles in-process: intent,
// three bids, award with escrow, delivery, checker, settlement. Lifecycles
// run in waves of concurrent buyers, the way a busy market runs them. It
// reports lifecycles per second.
func BenchmarkLifecycle(b *testing.B) {
	const wave = 128
	m := newMarket(b, func(c *engine.Config) { c.StartingGrant = 1_000_000 * market.Credit; c.OperatorGrantCap = 1 << 60 })
	var buyers, sellers []agent
	for i := range 16 {
		buyers = append(buyers, m.agent(fmt.Sprintf("buyer-%d", i), fmt.Sprintf("ob%d", i), market.RoleBuyer))
		s := m.agent(fmt.Sprintf("seller-%d", i), fmt.Sprintf("os%d", i), market.RoleSeller)
		must[market.Offer](b)(m.PublishOffer(s.Ctx, market.Offer{Intent: sortIntent, BasePriceMicrocredits: market.Credit, LatencyMs: 60_000}))
		sellers = append(sellers, s)
	}
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; done += wave {
		runLifecycles(b, m, buyers, sellers, min(wave, b.N-done))
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lifecycles/s")
	m.checkMoney()
}

var debugTiming = false

func runLifecycles(tb testing.TB, m *testMarket, buyers, sellers []agent, n int) {
	tStart := time.Now()
	var wg sync.WaitGroup
	ins := make([]market.Intent, n)
	errs := make(chan error, n*8)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buyer := buyers[i%len(buyers)]
			in, err := m.PostIntent(buyer.Ctx, market.IntentRequest{RequestID: fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i),
				Intent: sortIntent, Parameters: sortParams, Constraints: market.Constraints{MaxBudgetMicrocredits: 5 * market.Credit},
				Acceptance: market.Acceptance{Policy: market.AcceptChecker, Checker: "sort"}})
			if err != nil {
				errs <- err
				return
			}
			ins[i] = in
			for k := 0; k < 3; k++ {
				s := sellers[(i+k)%len(sellers)]
				if _, err := m.PlaceBid(s.Ctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: int64(1+k) * market.Credit / 10, LatencyMs: 60_000}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	t0 := time.Now()
	m.tick(3 * time.Second)
	if debugTiming {
		fmt.Println("post+bids", t0.Sub(tStart), "tick", time.Since(t0))
	}
	t1 := time.Now()
	defer func() {
		if debugTiming {
			fmt.Println("award+deliver", time.Since(t1))
		}
	}()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := ins[i]
			buyer := buyers[i%len(buyers)]
			bids, err := m.Bids(buyer.Ctx, in.ID)
			if err != nil || len(bids) == 0 {
				errs <- fmt.Errorf("bids: %v", err)
				return
			}
			c, err := m.Award(buyer.Ctx, in.ID, bids[0].ID)
			if err != nil {
				errs <- err
				return
			}
			seller := sellers[0]
			for _, s := range sellers {
				if s.ID == c.Seller {
					seller = s
				}
			}
			c, err = m.Deliver(seller.Ctx, market.DeliveryRequest{Contract: c.ID, Output: json.RawMessage(`{"items":[1,3,5,9]}`)})
			if err != nil || c.State != market.ContractSettled {
				errs <- fmt.Errorf("deliver: %v %s", err, c.State)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}
