// Package market is agentmarket's domain: the types agents trade with
// (agents, offers, intents, bids, negotiation messages, contracts,
// receipts, reputation), the Service interface that the engine, the Go SDK
// and every transport share, the Store interface that persistence
// adapters implement, the contract state machine, and the one error type
// with its append-only Kind.
//
// It imports only the standard library.
package market
