package engine

import (
	"context"
	"slices"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// Stats returns market data for an intent type over a sliding window.
func (e *Engine) Stats(ctx context.Context, intent string, window time.Duration) (market.IntentStats, error) {
	const op = "stats"
	if !intentTypeRE.MatchString(intent) {
		return market.IntentStats{}, market.E(market.Op(op), market.Invalid, market.Code("invalid_intent"), "intent must be 1-64 letters, digits and _.:-")
	}
	if window <= 0 || window > 90*24*time.Hour {
		return market.IntentStats{}, market.E(market.Op(op), market.Invalid, market.Code("invalid_window"), "window must be positive and at most 90 days")
	}
	var st market.IntentStats
	err := e.store.View(ctx, func(tx market.ReadTx) error {
		var err error
		st, err = tx.StatsSince(intent, e.now().Add(-window))
		return err
	})
	st.Intent, st.Window = intent, market.Duration(window)
	return st, wrap(op, err)
}

// Events returns the events after f.After that the caller may see.
func (e *Engine) Events(ctx context.Context, f market.EventFilter) ([]market.Event, error) {
	const op = "events"
	p, err := principal(ctx, op)
	if err != nil {
		return nil, err
	}
	if !p.Operator {
		f.Agent = p.Agent
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 1000
	}
	if f.Wait <= 0 {
		var out []market.Event
		err := e.store.View(ctx, func(tx market.ReadTx) error {
			var err error
			out, err = tx.Events(f)
			return err
		})
		return out, wrap(op, err)
	}
	// Long poll: scan forward until an event the caller may see arrives.
	wctx, cancel := context.WithTimeout(ctx, time.Duration(f.Wait))
	defer cancel()
	cursor := f.After
	for {
		var all []market.Event
		err := e.store.View(ctx, func(tx market.ReadTx) error {
			var err error
			all, err = tx.Events(market.EventFilter{After: cursor, Limit: 1000})
			return err
		})
		if err != nil {
			return nil, wrap(op, err)
		}
		var out []market.Event
		for _, ev := range all {
			if visible(ev, f) {
				out = append(out, ev)
				if len(out) == f.Limit {
					break
				}
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		if len(all) > 0 {
			cursor = all[len(all)-1].Seq
			continue
		}
		if err := e.store.WaitEvents(wctx, cursor); err != nil {
			if wctx.Err() != nil && ctx.Err() == nil {
				return nil, nil // the wait passed with nothing new
			}
			return nil, wrap(op, err)
		}
	}
}

// visible reports whether an event matches a filter, as the store would.
func visible(ev market.Event, f market.EventFilter) bool {
	if len(f.Types) > 0 && !slices.Contains(f.Types, ev.Type) {
		return false
	}
	if f.Intent != "" && ev.Intent != f.Intent {
		return false
	}
	return f.Agent == "" || len(ev.Audience) == 0 || slices.Contains(ev.Audience, f.Agent)
}
