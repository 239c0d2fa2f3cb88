// Package bench owns agentmarket's side-by-side benchmarks: the workloads,
// the naive baselines a user would otherwise write (one SQL transaction per
// transfer on SQLite or PostgreSQL), agentmarket's ledger on PostgreSQL
// with pgbench's TPC-B measured beside it, the harness that drives every system
// through the same workloads in one process, and the report, with ratios
// and a conservation check after every run.
//
// Speed is measured here, never asserted: tests run the harness in quick
// mode to check that it works and that every run conserves money, and the
// `agentmarket bench ledger` command prints the figures.
package bench
