package bench_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/agentmarket/agentmarket/bench"
)

// TestQuickBenchLedgerOnPostgres runs system D through every workload and
// pgbench beside it, and checks the ratios and the target they produce.
func TestQuickBenchLedgerOnPostgres(t *testing.T) {
	url := os.Getenv("AGENTMARKET_TEST_POSTGRES")
	if url == "" {
		t.Skip("AGENTMARKET_TEST_POSTGRES is not set; CI sets it")
	}
	cfg := quickConfig(t, bench.PostgresLedger)
	cfg.LedgerDB = url
	cfg.Batches = []int{100, 8190}
	rep := mustBench(t, cfg, map[bench.System][]string{
		bench.PostgresLedger: {"batch=100", "batch=8190", "8 callers"},
	})
	pb := rep.PgBench
	if pb == nil {
		t.Fatal("no pgbench measurement in the report")
	}
	if _, err := exec.LookPath("pgbench"); err != nil {
		if pb.Error == "" {
			t.Errorf("pgbench is not installed, but the report has no error: %+v", pb)
		}
		return
	}
	if pb.Error != "" || pb.TPS <= 0 || pb.Clients != 8 || pb.Jobs != 2 || pb.SynchronousCommit == "" {
		t.Fatalf("pgbench: %+v", pb)
	}
	for _, w := range bench.Workloads {
		var ratio, target bool
		for _, q := range rep.Ratios {
			ratio = ratio || q.Workload == w && q.Ledger == "D batch=8190" && q.Baseline == "pgbench TPC-B 8 clients" && q.Factor > 0
		}
		for _, g := range rep.Targets {
			target = target || strings.HasPrefix(g.Name, string(w)+" D batch=8190 / pgbench TPC-B 8 clients ≥ 10×")
		}
		if !ratio || !target {
			t.Errorf("%s: want D's ratio and target over pgbench; ratios %+v, targets %+v", w, rep.Ratios, rep.Targets)
		}
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "pgbench TPC-B on D's server") {
		t.Errorf("table lacks pgbench's line:\n%s", table.String())
	}
}

func TestLedgerOnPostgresIsSkippedWithoutAURL(t *testing.T) {
	rep, err := bench.Bench(context.Background(), quickConfig(t, bench.PostgresLedger))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 0 || rep.PgBench != nil {
		t.Errorf("ran %d runs and pgbench %+v without a URL", len(rep.Runs), rep.PgBench)
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "D (ledger on PostgreSQL) and pgbench skipped") {
		t.Errorf("notes do not say D was skipped: %q", rep.Notes)
	}
}
