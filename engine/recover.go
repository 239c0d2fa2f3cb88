package engine

import (
	"context"

	"github.com/agentmarket/agentmarket/market"
)

// recover reconciles the store with the ledger after a crash: every open
// contract whose escrow the ledger already resolved is settled to match.
//
// A hold whose award never committed (a crash between the ledger and the
// store) has no contract to find it by; its timeout, which outlasts every
// deadline of the contract it was for, returns it to the buyer.
func (e *Engine) recover(ctx context.Context) error {
	for _, st := range []market.ContractState{market.ContractAwarded, market.ContractDelivered, market.ContractInReview} {
		after := ""
		for {
			var page []market.Contract
			err := e.store.View(ctx, func(tx market.ReadTx) error {
				var err error
				page, err = tx.Contracts(market.ContractFilter{State: st, Page: market.Page{After: after, Limit: 500}})
				return err
			})
			if err != nil {
				return err
			}
			for _, c := range page {
				if _, err := e.reconcileContract(ctx, c.ID); err != nil {
					return err
				}
			}
			if len(page) < 500 {
				break
			}
			after = page[len(page)-1].ID
		}
	}
	return nil
}
