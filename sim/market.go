package sim

import (
	"context"

	"github.com/agentmarket/agentmarket/market"
)

// Session is how one agent reaches the market: the service, and the
// context that identifies the agent to it. In-process the context
// carries the principal; over HTTP the service signs as the agent.
type Session struct {
	Service market.Service
	Ctx     context.Context
}

// Market is the market a simulation runs against.
type Market struct {
	// Connect returns the session of the agent holding key. With a zero
	// key it returns the operator's session, which the simulation uses to
	// fund agents, set mandates and read the whole event stream for its
	// measurements and to hand each agent the events addressed to it.
	Connect func(ctx context.Context, key market.PrivateKey) (Session, error)
	// Clock is the market's clock: virtual in-process, the wall clock
	// against a server.
	Clock Clock
	// Tick runs the market's deadlines after the clock has moved: the
	// ledger's and the engine's Tick in-process. It is nil against a
	// server, which runs its own.
	Tick func(ctx context.Context) error
	// Remote describes a market reached over the network, where replayed
	// and forged requests are possible attacks; nil in-process, where
	// they do not apply.
	Remote *Remote
}

// InProcess returns a Market for an in-process service on a virtual
// clock. tick must run the ledger's and the engine's deadlines.
func InProcess(svc market.Service, clock *Virtual, tick func(context.Context) error) Market {
	return Market{
		Connect: func(ctx context.Context, key market.PrivateKey) (Session, error) {
			if key.IsZero() {
				return Session{Service: svc, Ctx: market.AsOperator(ctx)}, nil
			}
			return Session{Service: svc, Ctx: market.AsAgent(ctx, key.Public().DID())}, nil
		},
		Clock: clock,
		Tick:  tick,
	}
}
