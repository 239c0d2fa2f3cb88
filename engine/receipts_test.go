package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/agentmarket/agentmarket/engine"
	"github.com/agentmarket/agentmarket/market"
)

// TestConcurrentSettlementsChainTheirReceipts settles many contracts at
// once on each store and checks the receipts they leave: one per
// settlement, consecutive, each signed and linked to the one before, and
// each the receipt its contract's outcome names.
func TestConcurrentSettlementsChainTheirReceipts(t *testing.T) {
	for _, st := range benchStores {
		t.Run(st.name, func(t *testing.T) {
			m := newMarketOn(t, st.open, func(c *engine.Config) {
				c.StartingGrant = 1_000_000 * market.Credit
				c.OperatorGrantCap = 1 << 60
			})
			var buyers, sellers []agent
			for i := range 8 {
				buyers = append(buyers, m.agent(fmt.Sprintf("buyer-%d", i), fmt.Sprintf("ob%d", i), market.RoleBuyer))
				s := m.agent(fmt.Sprintf("seller-%d", i), fmt.Sprintf("os%d", i), market.RoleSeller)
				must[market.Offer](t)(m.PublishOffer(s.Ctx, market.Offer{Intent: sortIntent, BasePriceMicrocredits: market.Credit, LatencyMs: 60_000}))
				sellers = append(sellers, s)
			}
			const waves, wave = 3, 48
			for range waves {
				runLifecycles(t, m, buyers, sellers, wave)
			}
			var receipts []market.Receipt
			for seq := uint64(1); ; seq++ {
				r, err := m.Receipt(context.Background(), seq)
				if market.Is(err, market.NotExist) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				receipts = append(receipts, r)
			}
			if len(receipts) != waves*wave {
				t.Fatalf("%d receipts after %d settlements", len(receipts), waves*wave)
			}
			if err := market.VerifyReceiptChain(receipts, m.key.Public()); err != nil {
				t.Fatal(err)
			}
			for _, r := range receipts {
				c := must[market.Contract](t)(m.Contract(operatorCtx(), r.Contract))
				if c.Outcome == nil || c.Outcome.Receipt != r.Seq {
					t.Fatalf("receipt %d is for contract %s, whose outcome is %+v", r.Seq, c.ID, c.Outcome)
				}
			}
		})
	}
}
