package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/progress"
)

// System names one implementation under test.
type System string

const (
	// Ledger (A) is agentmarket's ledger: in-memory state, a hash-chained
	// journal fsynced with group commit.
	Ledger System = "A"
	// NaiveSQLite (B) is the naive baseline on SQLite, WAL, synchronous=FULL.
	NaiveSQLite System = "B"
	// NaivePostgres (C) is the same naive baseline on PostgreSQL.
	NaivePostgres System = "C"
	// PostgresLedger (D) is agentmarket's ledger on PostgreSQL
	// (postgres.Ledger), measured beside pgbench's TPC-B on the same server.
	PostgresLedger System = "D"
)

// Describe says what the system is, for the report.
func (s System) Describe() string {
	switch s {
	case Ledger:
		return "agentmarket ledger, durable: every acknowledged batch is fsynced to the hash-chained journal (group commit)"
	case NaiveSQLite:
		return "naive SQLite (modernc.org/sqlite, WAL, synchronous=FULL): one UPDATE, UPDATE, INSERT transaction per transfer, 1 client"
	case NaivePostgres:
		return "naive PostgreSQL (pgx): the same one transaction per transfer, concurrent clients"
	case PostgresLedger:
		return "agentmarket ledger on PostgreSQL (postgres.Ledger): one transaction per batch, account rows locked in id order"
	}
	return string(s)
}

// Config sets up a benchmark. DefaultConfig and QuickConfig give complete
// ones; the zero value is not useful.
type Config struct {
	// Dir is where runs create their data directories and databases.
	// Defaults to the system's temporary directory.
	Dir string
	// Wallets is how many funded wallets the workloads spread over.
	Wallets int
	// Duration is each run's time budget: a run stops at whichever of
	// Duration and Transfers comes first. An escrow run always finishes
	// the round it is in, so that every reservation it made is resolved.
	Duration time.Duration
	// Transfers caps the transfers each run submits.
	Transfers int64
	// Batches are the ledger's batch sizes for one caller.
	Batches []int
	// Callers is how many concurrent single-transfer callers ride the
	// ledger's group commit; 0 skips that run.
	Callers int
	// PostgresClients is how many concurrent clients the PostgreSQL
	// baseline runs.
	PostgresClients int
	// MinEscrowRound is the fewest reservations in an escrow round.
	MinEscrowRound int
	// Workloads and Systems select what runs; empty means all. System C
	// runs only when Postgres is set.
	Workloads []Workload
	Systems   []System
	// Postgres is the PostgreSQL URL for system C; empty skips it.
	Postgres string
	// LedgerDB is the PostgreSQL URL for system D, which is measured
	// beside pgbench's TPC-B on the same server; empty skips both.
	LedgerDB string
	// PgBenchDuration is how long pgbench runs (its -T).
	PgBenchDuration time.Duration
	// Seed makes the workloads reproducible.
	Seed uint64
	// Progress receives a progress display while runs go; nil shows none.
	Progress io.Writer
}

// DefaultConfig is the full benchmark: about two to three minutes on a
// two-core machine.
func DefaultConfig() Config {
	return Config{
		Wallets:         100_000,
		Duration:        4 * time.Second,
		Transfers:       2_000_000,
		Batches:         []int{1, 100, ledger.MaxBatch},
		Callers:         64,
		PostgresClients: 8,
		MinEscrowRound:  1000,
		PgBenchDuration: 10 * time.Second,
		Seed:            1,
	}
}

// QuickConfig runs every system and workload for a moment: it checks the
// harness end to end in seconds, and its figures mean little.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Wallets = 1_000
	c.Duration = 150 * time.Millisecond
	c.Transfers = 40_000
	c.MinEscrowRound = 100
	c.PgBenchDuration = time.Second
	return c
}

// Run is one system's run of one workload.
type Run struct {
	Workload Workload `json:"workload"`
	System   System   `json:"system"`
	Mode     string   `json:"mode"`
	Batch    int      `json:"batch"`   // transfers per call
	Callers  int      `json:"callers"` // concurrent callers

	Transfers       int64   `json:"transfers"` // submitted, resubmissions included
	Calls           int64   `json:"calls"`
	Seconds         float64 `json:"seconds"`
	TransfersPerSec float64 `json:"transfers_per_sec"`

	// Latencies in nanoseconds: per call, and per transfer (a call's
	// latency divided by the transfers in it).
	CallP50     time.Duration `json:"call_p50_ns"`
	CallP99     time.Duration `json:"call_p99_ns"`
	TransferP50 time.Duration `json:"transfer_p50_ns"`
	TransferP99 time.Duration `json:"transfer_p99_ns"`

	// Fsyncs is how many journal fsyncs the ledger made during the run,
	// and TransfersPerFsync how many transfers shared each: group commit
	// at work. Zero for the baselines, which sync once per transaction.
	Fsyncs            int64   `json:"fsyncs,omitempty"`
	TransfersPerFsync float64 `json:"transfers_per_fsync,omitempty"`

	Applied      int64 `json:"applied"`       // committed now
	Exists       int64 `json:"exists"`        // resubmissions answered exists
	Rejected     int64 `json:"rejected"`      // refused
	Expired      int64 `json:"expired"`       // reservations expired on the clock
	Resubmitted  int64 `json:"resubmitted"`   // resubmissions sent
	ExpiresDue   int64 `json:"expires_due"`   // reservations left to expire
	ExpirySweeps int64 `json:"expiry_sweeps"` // escrow rounds, each ending in one sweep

	Passed bool   `json:"passed"`          // the run completed and its checks held
	Check  string `json:"check"`           // "passed", or "FAILED: why"
	Error  string `json:"error,omitempty"` // why the run itself failed, if it did
}

// Label names the run's system and mode, e.g. "A batch=8190".
func (r *Run) Label() string { return string(r.System) + " " + r.Mode }

// Bench runs the benchmark described by cfg and returns the report. A run
// that fails its checks is reported as failed, not returned as an error;
// Bench returns an error only when it could not run at all.
func Bench(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Wallets < 2 {
		return nil, errors.New("bench: need at least 2 wallets")
	}
	if cfg.Duration <= 0 || cfg.Transfers <= 0 {
		return nil, errors.New("bench: need a positive duration and transfer count")
	}
	workloads := cfg.Workloads
	if len(workloads) == 0 {
		workloads = Workloads
	}
	systems := cfg.Systems
	if len(systems) == 0 {
		systems = []System{Ledger, NaiveSQLite, NaivePostgres, PostgresLedger}
	}
	rep := newReport(cfg)
	for _, sys := range systems {
		if sys == NaivePostgres && cfg.Postgres == "" {
			rep.Notes = append(rep.Notes, "C (PostgreSQL) skipped: no URL given (--pg or AGENTMARKET_BENCH_POSTGRES)")
			continue
		}
		if sys == PostgresLedger && cfg.LedgerDB == "" {
			rep.Notes = append(rep.Notes, "D (ledger on PostgreSQL) and pgbench skipped: no URL given (--db)")
			continue
		}
		for _, w := range workloads {
			for _, m := range modes(sys, cfg) {
				if err := ctx.Err(); err != nil {
					return rep, err
				}
				run := runOne(ctx, cfg, w, sys, m)
				rep.Runs = append(rep.Runs, run)
			}
		}
		if sys == Ledger {
			mem := ReadMemory()
			rep.MemoryAfterLedger = &mem
		}
		if sys == PostgresLedger {
			rep.measurePgBench(ctx, cfg)
		}
	}
	rep.finish()
	return rep, nil
}

// mode is how a system is driven in a run.
type mode struct {
	name           string
	batch, callers int
}

func modes(sys System, cfg Config) []mode {
	switch sys {
	case Ledger:
		var ms []mode
		for _, b := range cfg.Batches {
			ms = append(ms, mode{fmt.Sprintf("batch=%d", b), b, 1})
		}
		if cfg.Callers > 0 {
			ms = append(ms, mode{fmt.Sprintf("%d callers", cfg.Callers), 1, cfg.Callers})
		}
		return ms
	case NaiveSQLite:
		return []mode{{"1 client", 1, 1}}
	case NaivePostgres:
		return []mode{{fmt.Sprintf("%d clients", cfg.PostgresClients), 1, cfg.PostgresClients}}
	case PostgresLedger:
		var ms []mode
		for _, b := range cfg.Batches {
			ms = append(ms, mode{fmt.Sprintf("batch=%d", b), b, 1})
		}
		return append(ms, mode{fmt.Sprintf("%d callers", cfg.PostgresClients), 1, cfg.PostgresClients})
	}
	return nil
}

func openTarget(ctx context.Context, cfg Config, sys System, dir string, workers int, clk *clock) (target, error) {
	switch sys {
	case Ledger:
		return openLedgerTarget(ctx, dir, cfg.Wallets, workers, clk)
	case NaiveSQLite:
		return openSQLiteTarget(ctx, dir, cfg.Wallets, clk)
	case NaivePostgres:
		return openPostgresTarget(ctx, cfg.Postgres, cfg.Wallets, workers, clk)
	case PostgresLedger:
		return openPgLedgerTarget(ctx, cfg.LedgerDB, cfg.Wallets, workers, clk)
	}
	return nil, fmt.Errorf("unknown system %q", sys)
}

// worker is one caller's tally. Each caller owns one, so that recording
// costs no synchronisation.
type worker struct {
	ops                      []Op
	out                      []outcome
	calls, transfers         int64
	applied, exists, refused int64
	call, transfer           histogram
}

func (w *worker) record(d time.Duration, out []outcome) {
	w.calls++
	w.transfers += int64(len(out))
	w.call.add(d, 1)
	w.transfer.add(d/time.Duration(len(out)), uint64(len(out)))
	for _, o := range out {
		switch o {
		case applied:
			w.applied++
		case exists:
			w.exists++
		default:
			w.refused++
		}
	}
}

// runner drives one run's callers.
type runner struct {
	t        target
	workers  []*worker
	batch    int
	deadline time.Time
	limit    int64
	tracker  *progress.Tracker
	errOnce  sync.Once
	err      error
	cancel   context.CancelFunc
}

func (r *runner) fail(err error) {
	r.errOnce.Do(func() { r.err = err; r.cancel() })
}

// call submits ops from caller w and records its latency.
func (r *runner) call(ctx context.Context, w int, ops []Op) bool {
	st := r.workers[w]
	out := st.out[:len(ops)]
	start := time.Now()
	if err := r.t.apply(ctx, w, ops, out); err != nil {
		if ctx.Err() == nil {
			r.fail(err)
		}
		return false
	}
	st.record(time.Since(start), out)
	r.tracker.Add(int64(len(ops)))
	return true
}

// stream drives a plain workload: every caller generates and submits its
// own transfers until the budget is spent.
func (r *runner) stream(ctx context.Context, w Workload, wallets int, seed uint64) {
	var claimed atomic.Int64
	var wg sync.WaitGroup
	for i := range r.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gen := newStreamGen(w, wallets, seed, i)
			ops := r.workers[i].ops
			for ctx.Err() == nil && time.Now().Before(r.deadline) {
				end := claimed.Add(int64(r.batch))
				n := min(int64(r.batch), r.limit-(end-int64(r.batch)))
				if n <= 0 {
					return
				}
				gen.fill(ops[:n])
				if !r.call(ctx, i, ops[:n]) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// phase submits ops, split into batches, from every caller at once, and
// returns when all are answered.
func (r *runner) phase(ctx context.Context, ops []Op) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for i := range r.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				end := int(next.Add(int64(r.batch)))
				start := end - r.batch
				if start >= len(ops) {
					return
				}
				if !r.call(ctx, i, ops[start:min(end, len(ops))]) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// escrow drives the escrow workload in rounds until the budget is spent:
// each round's reservations, then their resolutions and resubmissions,
// then the clock moves past the timeouts and the system expires what is
// left open.
func (r *runner) escrow(ctx context.Context, gen *escrowGen, n int, clk *clock, run *Run) {
	for submitted := int64(0); ctx.Err() == nil; {
		rd := gen.round(n)
		r.phase(ctx, rd.reserve)
		r.phase(ctx, rd.resolve)
		if ctx.Err() != nil {
			return
		}
		clk.advance(2 * escrowTimeout)
		expired, err := r.t.expireDue(ctx)
		if err != nil {
			r.fail(err)
			return
		}
		run.Expired += int64(expired)
		run.ExpiresDue += int64(rd.toExpire)
		run.Resubmitted += int64(rd.dups)
		run.ExpirySweeps++
		submitted += int64(len(rd.reserve) + len(rd.resolve))
		if submitted >= r.limit || !time.Now().Before(r.deadline) {
			return
		}
	}
}

// tally adds up the callers' counts and latencies into run.
func (r *runner) tally(run *Run, elapsed time.Duration) {
	var call, transfer histogram
	for _, st := range r.workers {
		run.Calls += st.calls
		run.Transfers += st.transfers
		run.Applied += st.applied
		run.Exists += st.exists
		run.Rejected += st.refused
		call.merge(&st.call)
		transfer.merge(&st.transfer)
	}
	run.Seconds = elapsed.Seconds()
	if run.Seconds > 0 {
		run.TransfersPerSec = float64(run.Transfers) / run.Seconds
	}
	if run.Fsyncs > 0 {
		run.TransfersPerFsync = float64(run.Transfers) / float64(run.Fsyncs)
	}
	run.CallP50, run.CallP99 = call.quantile(0.50), call.quantile(0.99)
	run.TransferP50, run.TransferP99 = transfer.quantile(0.50), transfer.quantile(0.99)
}

// escrowRound is how many reservations an escrow round makes: enough to
// keep every caller busy through a phase, few enough to end near the budget.
func escrowRound(cfg Config, m mode) int {
	n := min(max(16*m.batch*m.callers, cfg.MinEscrowRound), 8*ledger.MaxBatch)
	return int(min(int64(n), max(cfg.Transfers/2, 100)))
}

// runOne sets up a fresh target, drives one workload through it within
// the budget, and checks the outcome: every resubmission answered exists,
// every reservation left open expired, and the target conserved money.
func runOne(ctx context.Context, cfg Config, w Workload, sys System, m mode) (run Run) {
	run = Run{Workload: w, System: sys, Mode: m.name, Batch: m.batch, Callers: m.callers}
	failed := func(format string, args ...any) Run {
		run.Passed = false
		run.Check = "FAILED: " + fmt.Sprintf(format, args...)
		return run
	}
	dir, err := os.MkdirTemp(cfg.Dir, "agentmarket-bench-")
	if err != nil {
		run.Error = err.Error()
		return failed("create data dir: %v", err)
	}
	defer os.RemoveAll(dir)
	label := fmt.Sprintf("%s %s %s", w, sys, m.name)
	tracker := progress.Discard()
	if cfg.Progress != nil {
		tracker = progress.Start(cfg.Progress, progress.Options{Label: label, Unit: "transfers", Total: cfg.Transfers, Budget: cfg.Duration})
	}
	defer tracker.Finish()
	tracker.Status(fmt.Sprintf("setting up %s funded wallets", progress.Count(int64(cfg.Wallets))))
	clk := &clock{}
	t, err := openTarget(ctx, cfg, sys, dir, m.callers, clk)
	if err != nil {
		run.Error = err.Error()
		return failed("set up: %v", err)
	}
	defer func() {
		if err := t.close(); err != nil && run.Passed {
			run.Error = err.Error()
			run = failed("close: %v", err)
		}
	}()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &runner{t: t, batch: m.batch, limit: cfg.Transfers, tracker: tracker, cancel: cancel}
	for range m.callers {
		r.workers = append(r.workers, &worker{ops: make([]Op, m.batch), out: make([]outcome, m.batch)})
	}
	sc, counts := t.(interface{ syncs() uint64 })
	var syncs0 uint64
	if counts {
		syncs0 = sc.syncs()
	}
	tracker.Begin()
	start := time.Now()
	r.deadline = start.Add(cfg.Duration)
	if w == Escrow {
		r.escrow(runCtx, newEscrowGen(cfg.Wallets, cfg.Seed), escrowRound(cfg, m), clk, &run)
	} else {
		r.stream(runCtx, w, cfg.Wallets, cfg.Seed)
	}
	elapsed := time.Since(start)
	tracker.Finish()
	if counts {
		run.Fsyncs = int64(sc.syncs() - syncs0)
	}

	r.tally(&run, elapsed)

	if r.err != nil {
		run.Error = r.err.Error()
		return failed("run: %v", r.err)
	}
	if err := ctx.Err(); err != nil {
		run.Error = err.Error()
		return failed("interrupted")
	}
	switch {
	case run.Rejected != 0:
		// The target's own check names the reasons.
	case run.Exists != run.Resubmitted:
		return failed("%d resubmissions answered exists, want %d", run.Exists, run.Resubmitted)
	case run.Expired != run.ExpiresDue:
		return failed("%d reservations expired, want %d", run.Expired, run.ExpiresDue)
	}
	if err := t.check(ctx, run.Applied); err != nil {
		return failed("conservation: %v", err)
	}
	run.Passed, run.Check = true, "passed"
	return run
}
