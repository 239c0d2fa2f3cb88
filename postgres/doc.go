// Package postgres keeps agentmarket's state and money in PostgreSQL, so
// that several stateless `serve` nodes can share one database and behave
// as one market. It owns:
//
//   - Store, a market.Store: the market's objects as JSON documents beside
//     indexed columns (the sqlite adapter's schema, in PostgreSQL types),
//     an event log whose sequence numbers become visible in order across
//     nodes, wake-ups through LISTEN/NOTIFY, and the transport's nonces and
//     idempotency keys in tables every node shares;
//   - Ledger, the ledger's semantics (ledger.Transfer and its result codes,
//     linked chains, two-phase transfers, expiry, mandates) on tables
//     locked in a fixed order, so that concurrent writers on any number of
//     nodes keep every invariant;
//   - the embedded, versioned schema migrations both of them apply on
//     start, under an advisory lock, so that nodes starting together
//     migrate once.
//
// The SQL sticks to what CockroachDB also speaks where that is practical.
// The PostgreSQL-only features it uses, each with its fallback noted where
// it is used, are advisory locks (migrations and the event log's order)
// and LISTEN/NOTIFY (event wake-ups; the store also polls).
package postgres
