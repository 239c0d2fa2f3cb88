// Package ledger owns agentmarket's money: a double-entry engine of accounts
// and immutable transfers in integer microcredits, after TigerBeetle.
//
// Accounts carry four counters (debits and credits, pending and posted).
// Transfers move value between two accounts; a transfer may reserve value
// (pending), and a later transfer posts or voids the reservation, or the
// reservation expires on an injected clock. Transfers may be linked into
// chains that commit all or nothing. Mandates limit what a wallet may spend,
// checked in the same atomic step as the transfer they limit.
//
// The embedded engine (Open) keeps the live state in memory, acknowledges a
// batch only once it is fsynced to a hash-chained journal, and projects the
// journal into SQLite for history queries. Recovery replays the journal.
// Verify checks a data directory's chain and invariants offline.
package ledger
