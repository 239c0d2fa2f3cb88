// Package sim owns agentmarket's simulator: seeded economies of agents
// that trade through market.Service, and the report on what happened.
//
// It owns the agents (buyers, orchestrators, sellers with pricing
// strategies, arbiters, entrants and the adversaries), the tasks they
// trade (checked tasks that do real work through the checker package, and
// fuzzy tasks with a hidden true quality), the scenarios that mix them,
// the driver that steps time and hands each agent the market events
// addressed to it, and the metrics, CSV time series and self-contained
// HTML report of a run.
//
// Agents see the market only through market.Service and a Clock, so the
// same code runs in-process on a virtual clock, where a run is a pure
// function of its seed and scenario, or against a server on the wall
// clock. The package imports no storage, ledger or transport: the caller
// wires a market and passes it in as a Market.
package sim
