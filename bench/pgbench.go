package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/progress"
)

// PgBench is pgbench's built-in TPC-B-like script measured on the server
// that system D runs on, in the same benchmark: the yardstick for what a
// PostgreSQL server does with one small read-write transaction at a time.
type PgBench struct {
	Scale      int           `json:"scale"` // pgbench -i's default, 1
	Clients    int           `json:"clients"`
	Jobs       int           `json:"jobs"`
	Seconds    float64       `json:"seconds"`
	TPS        float64       `json:"tps"` // transactions per second, without connection time
	LatencyAvg time.Duration `json:"latency_avg_ns"`
	// SynchronousCommit is the server's setting: whether a commit, pgbench's
	// and system D's alike, waits for its WAL to reach the disk.
	SynchronousCommit string `json:"synchronous_commit"`
	Error             string `json:"error,omitempty"` // why it could not run, if it could not
}

// pgbench's clients and threads: the pgbench -c 8 -j 2.
const (
	pgBenchClients = 8
	pgBenchJobs    = 2
)

// pgBenchTarget is D's ratio target over pgbench's TPC-B tps.
const pgBenchTarget = 10

var (
	tpsLine     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	latencyLine = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
)

// runPgBench initialises pgbench's tables in a scratch database on the
// server at dbURL (pgbench -i), runs its default TPC-B-like script with
// the given clients and jobs for d (pgbench -c -j -T), and drops the
// database. An error means the measurement could not be made.
func runPgBench(ctx context.Context, dbURL string, clients, jobs int, d time.Duration) (*PgBench, error) {
	pb := &PgBench{Scale: 1, Clients: clients, Jobs: jobs}
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		return pb, fmt.Errorf("pgbench is not installed: %w", err)
	}
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return pb, fmt.Errorf("connect to postgres: %w", err)
	}
	defer admin.Close(context.Background())
	if err := admin.QueryRow(ctx, "SHOW synchronous_commit").Scan(&pb.SynchronousCommit); err != nil {
		return pb, fmt.Errorf("read synchronous_commit: %w", err)
	}
	var suffix [6]byte
	rand.Read(suffix[:])
	name := "agentmarket_pgbench_" + hex.EncodeToString(suffix[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return pb, fmt.Errorf("create scratch database: %w", err)
	}
	defer admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name)
	target, err := libpqURL(dbURL, name)
	if err != nil {
		return pb, err
	}
	if out, err := exec.CommandContext(ctx, bin, "-i", "-q", target).CombinedOutput(); err != nil {
		return pb, fmt.Errorf("pgbench -i: %w: %s", err, bytes.TrimSpace(out))
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	out, err := exec.CommandContext(ctx, bin, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(jobs),
		"-T", strconv.Itoa(secs), target).CombinedOutput()
	if err != nil {
		return pb, fmt.Errorf("pgbench: %w: %s", err, bytes.TrimSpace(out))
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return pb, fmt.Errorf("pgbench printed no tps: %s", bytes.TrimSpace(out))
	}
	pb.Seconds = float64(secs)
	pb.TPS, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := latencyLine.FindSubmatch(out); m != nil {
		ms, _ := strconv.ParseFloat(string(m[1]), 64)
		pb.LatencyAvg = time.Duration(ms * float64(time.Millisecond))
	}
	return pb, nil
}

// libpqParams are the URL parameters libpq, and so pgbench, understands;
// others (pgx's runtime parameters, say) would make it refuse the URL.
var libpqParams = map[string]bool{"sslmode": true, "sslrootcert": true, "sslcert": true, "sslkey": true,
	"connect_timeout": true, "application_name": true, "target_session_attrs": true, "host": true, "port": true,
	"user": true, "password": true, "passfile": true}

// libpqURL returns dbURL naming database name, with only the parameters
// libpq knows.
func libpqURL(dbURL, name string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", fmt.Errorf("parse postgres url: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", errors.New("pgbench needs a postgres:// URL")
	}
	q := url.Values{}
	for k, v := range u.Query() {
		if libpqParams[strings.ToLower(k)] {
			q[k] = v
		}
	}
	u.Path, u.RawQuery = "/"+name, q.Encode()
	return u.String(), nil
}

// measurePgBench runs pgbench on system D's server and records it; a
// pgbench that cannot run is noted, and leaves D without its yardstick.
func (r *Report) measurePgBench(ctx context.Context, cfg Config) {
	tracker := progress.Discard()
	if cfg.Progress != nil {
		tracker = progress.Start(cfg.Progress, progress.Options{Label: "pgbench TPC-B", Unit: "seconds"})
	}
	tracker.Status(fmt.Sprintf("pgbench -i, then pgbench -c %d -j %d -T %d", pgBenchClients, pgBenchJobs,
		int(cfg.PgBenchDuration.Round(time.Second)/time.Second)))
	pb, err := runPgBench(ctx, cfg.LedgerDB, pgBenchClients, pgBenchJobs, cfg.PgBenchDuration)
	tracker.Finish()
	if err != nil {
		pb.Error = err.Error()
		r.Notes = append(r.Notes, "pgbench could not run, so D has no ratio to it: "+err.Error())
	}
	r.PgBench = pb
	r.Notes = append(r.Notes, fmt.Sprintf("D's figures include durability: a call returns once its transaction "+
		"commits, with the server's synchronous_commit=%s, as pgbench's transactions do. pgbench's TPC-B-like "+
		"transaction updates three balances, reads one and appends a history row, at scale %d (pgbench -i's "+
		"default); one D transfer updates two balances and appends a transfer.", pb.SynchronousCommit, pb.Scale))
}

// finishPostgres compares system D, per workload, with pgbench's TPC-B
// and with the naive PostgreSQL baseline C, and sets D's target: a batch
// of 8190 at ten times pgbench's transactions per second or more.
func (r *Report) finishPostgres() {
	for _, w := range Workloads {
		var best, full, concurrent, naive *Run
		for i := range r.Runs {
			run := &r.Runs[i]
			if run.Workload != w || !run.Passed {
				continue
			}
			switch {
			case run.System == PostgresLedger && run.Callers == 1:
				if best == nil || run.TransfersPerSec > best.TransfersPerSec {
					best = run
				}
				if run.Batch >= ledger.MaxBatch {
					full = run
				}
			case run.System == PostgresLedger:
				concurrent = run
			case run.System == NaivePostgres:
				naive = run
			}
		}
		if pb := r.PgBench; pb != nil && pb.TPS > 0 {
			label := fmt.Sprintf("pgbench TPC-B %d clients", pb.Clients)
			for _, d := range []*Run{best, concurrent} {
				if d != nil {
					r.Ratios = append(r.Ratios, Ratio{Workload: w, Ledger: d.Label(), Baseline: label,
						Factor: d.TransfersPerSec / pb.TPS})
				}
			}
			if full != nil {
				r.Targets = append(r.Targets, goal(fmt.Sprintf("%s %s / %s ≥ %d×", w, full.Label(), label, pgBenchTarget),
					pgBenchTarget, full.TransfersPerSec/pb.TPS))
			}
		}
		for _, d := range []*Run{best, concurrent} {
			if d != nil && naive != nil && naive.TransfersPerSec > 0 {
				r.Ratios = append(r.Ratios, Ratio{Workload: w, Ledger: d.Label(), Baseline: naive.Label(),
					Factor: d.TransfersPerSec / naive.TransfersPerSec})
			}
		}
	}
}

// writePgBench writes pgbench's line of the table.
func (r *Report) writePgBench(b *strings.Builder) {
	pb := r.PgBench
	if pb == nil {
		return
	}
	if pb.Error != "" {
		fmt.Fprintf(b, "pgbench TPC-B: could not run: %s\n\n", pb.Error)
		return
	}
	fmt.Fprintf(b, "pgbench TPC-B on D's server (scale %d, -c %d -j %d -T %.0f, synchronous_commit=%s): %s tps, latency average %s\n\n",
		pb.Scale, pb.Clients, pb.Jobs, pb.Seconds, pb.SynchronousCommit, progress.Count(int64(pb.TPS+0.5)),
		formatLatency(pb.LatencyAvg))
}
