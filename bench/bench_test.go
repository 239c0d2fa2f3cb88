package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/agentmarket/agentmarket/bench"
)

// quickConfig is the quick benchmark, writing into the test's temporary
// directory, on the given systems.
func quickConfig(t *testing.T, systems ...bench.System) bench.Config {
	t.Helper()
	cfg := bench.QuickConfig()
	cfg.Dir = t.TempDir()
	cfg.Systems = systems
	return cfg
}

// mustBench runs the benchmark and checks what every report must hold: a
// passed check on every run, one run per workload and mode, positive
// figures, and a table and JSON that carry them.
func mustBench(t *testing.T, cfg bench.Config, wantModes map[bench.System][]string) *bench.Report {
	t.Helper()
	rep, err := bench.Bench(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, run := range rep.Runs {
		got[string(run.Workload)+" "+run.Label()] = true
		if !run.Passed || run.Check != "passed" {
			t.Errorf("%s %s: check %q, error %q", run.Workload, run.Label(), run.Check, run.Error)
		}
		if run.Transfers <= 0 || run.Calls <= 0 || run.TransfersPerSec <= 0 || run.CallP50 <= 0 || run.CallP99 < run.CallP50 {
			t.Errorf("%s %s: implausible figures %+v", run.Workload, run.Label(), run)
		}
		if run.Workload == bench.Escrow && (run.Exists == 0 || run.Exists != run.Resubmitted || run.Expired == 0) {
			t.Errorf("%s %s: escrow run answered %d of %d resubmissions with exists and expired %d",
				run.Workload, run.Label(), run.Exists, run.Resubmitted, run.Expired)
		}
	}
	n := 0
	for sys, modes := range wantModes {
		for _, w := range bench.Workloads {
			for _, m := range modes {
				n++
				if label := string(w) + " " + string(sys) + " " + m; !got[label] {
					t.Errorf("no run %q in %v", label, got)
				}
			}
		}
	}
	if len(rep.Runs) != n {
		t.Errorf("%d runs, want %d", len(rep.Runs), n)
	}
	if !rep.Passed {
		t.Error("report did not pass")
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"workload", "transfers/s", "call p50", "call p99", "transfer p99", "ratios (transfers/s):",
		"all runs passed their conservation checks", "projection"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Runs []struct {
			Workload        string  `json:"workload"`
			System          string  `json:"system"`
			Mode            string  `json:"mode"`
			TransfersPerSec float64 `json:"transfers_per_sec"`
			CallP50         int64   `json:"call_p50_ns"`
			CallP99         int64   `json:"call_p99_ns"`
			Passed          bool    `json:"passed"`
		} `json:"runs"`
		Ratios []struct {
			Workload string  `json:"workload"`
			Ledger   string  `json:"ledger"`
			Baseline string  `json:"baseline"`
			Factor   float64 `json:"factor"`
		} `json:"ratios"`
		Passed bool `json:"passed"`
	}
	if err := json.Unmarshal(js.Bytes(), &decoded); err != nil {
		t.Fatalf("report JSON: %v\n%s", err, js.String())
	}
	if len(decoded.Runs) != len(rep.Runs) || !decoded.Passed {
		t.Errorf("JSON has %d runs and passed=%v, want %d and true", len(decoded.Runs), decoded.Passed, len(rep.Runs))
	}
	for i, run := range decoded.Runs {
		if run.TransfersPerSec <= 0 || run.CallP50 <= 0 || !run.Passed || run.System == "" || run.Mode == "" {
			t.Errorf("JSON run %d: %+v", i, run)
		}
	}
	if len(decoded.Ratios) != len(rep.Ratios) {
		t.Errorf("JSON has %d ratios, want %d", len(decoded.Ratios), len(rep.Ratios))
	}
	return rep
}

// wantRatios checks that every workload has the best batched ledger run
// and the concurrent one set against the baseline.
func wantRatios(t *testing.T, rep *bench.Report, baseline string) {
	t.Helper()
	for _, w := range bench.Workloads {
		var batched, concurrent bool
		for _, q := range rep.Ratios {
			if q.Workload != w || q.Baseline != baseline || q.Factor <= 0 {
				continue
			}
			switch {
			case strings.HasPrefix(q.Ledger, "A batch="):
				batched = true
			case strings.HasSuffix(q.Ledger, " callers"):
				concurrent = true
			}
		}
		if !batched || !concurrent {
			t.Errorf("%s: want ratios of A batched and A callers over %s, have %+v", w, baseline, rep.Ratios)
		}
	}
}

func TestQuickBenchLedgerAgainstSQLite(t *testing.T) {
	cfg := quickConfig(t, bench.Ledger, bench.NaiveSQLite)
	rep := mustBench(t, cfg, map[bench.System][]string{
		bench.Ledger:      {"batch=1", "batch=100", "batch=8190", "64 callers"},
		bench.NaiveSQLite: {"1 client"},
	})
	wantRatios(t, rep, "B 1 client")
	if m := rep.MemoryAfterLedger; m == nil || m.PeakRSS <= 0 || m.RSS <= 0 {
		t.Errorf("memory after the ledger runs: %+v", m)
	}
}

func TestQuickBenchLedgerAgainstPostgres(t *testing.T) {
	url := os.Getenv("AGENTMARKET_TEST_POSTGRES")
	if url == "" {
		t.Skip("AGENTMARKET_TEST_POSTGRES is not set; CI sets it")
	}
	cfg := quickConfig(t, bench.Ledger, bench.NaivePostgres)
	cfg.Postgres = url
	cfg.Batches = []int{100}
	cfg.Callers = 16
	rep := mustBench(t, cfg, map[bench.System][]string{
		bench.Ledger:        {"batch=100", "16 callers"},
		bench.NaivePostgres: {"8 clients"},
	})
	wantRatios(t, rep, "C 8 clients")
}

func TestPostgresIsSkippedWithoutAURL(t *testing.T) {
	cfg := quickConfig(t, bench.NaivePostgres)
	rep, err := bench.Bench(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 0 {
		t.Errorf("ran %d runs without a PostgreSQL URL", len(rep.Runs))
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "C (PostgreSQL) skipped") {
		t.Errorf("notes do not say C was skipped: %q", rep.Notes)
	}
}

func TestMemoryBenchReportsResidentMemory(t *testing.T) {
	cfg := quickConfig(t)
	rep, err := bench.MemoryBench(context.Background(), cfg, 30_000)
	if err != nil {
		t.Fatal(err)
	}
	m := rep.MemoryRun
	if m == nil {
		t.Fatal("no memory run in the report")
	}
	if m.Transfers != 30_000 || !m.Passed || m.After.PeakRSS <= 0 || m.After.RSS <= 0 || m.JournalBytes < 30_000*128 {
		t.Errorf("memory run: %+v", m)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"memory run: 30,000 transfers", "peak RSS", "< 1 GiB"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestSQLiteBaselineConservesMoney(t *testing.T) {
	ctx := context.Background()
	s, err := bench.OpenSQLiteBaseline(ctx, t.TempDir(), 100)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 50 {
		if err := s.Transfer(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
}
