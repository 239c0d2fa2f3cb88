package sim_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/sim"
)

func TestDeterminism(t *testing.T) {
	// The adversarial scenario exercises the most: disputes, audits,
	// arbiters, rings, spam, mandates.
	cfg := sim.Config{Scenario: "adversarial", Agents: 40, Seed: 7, Duration: 60 * time.Second}
	first := MustRun(t, cfg)
	second := MustRun(t, cfg)
	a, err := first.MetricsJSON()
	if err != nil {
		t.Fatal(err)
	}
	b, err := second.MetricsJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("two runs of seed 7 gave different metrics.json:\n%s\n---\n%s", a, b)
	}
	if first.Metrics.Volume.Settled < 20 {
		t.Fatalf("only %d contracts settled; the run is too small to compare", first.Metrics.Volume.Settled)
	}
	var ca, cb bytes.Buffer
	first.WriteCSV(&ca)
	second.WriteCSV(&cb)
	if !bytes.Equal(ca.Bytes(), cb.Bytes()) {
		t.Fatal("two runs of one seed gave different time series")
	}
	t.Run("ReportFilesAreSelfContained", func(t *testing.T) {
		dir := t.TempDir()
		if err := first.WriteFiles(dir); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"report.html", "metrics.json", "timeseries.csv"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
				t.Fatalf("%s: %v", name, err)
			}
		}
		html, err := os.ReadFile(filepath.Join(dir, "report.html"))
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range []string{"http://", "https://", "<script", "<link", "@import", "url("} {
			if bytes.Contains(html, []byte(ref)) {
				t.Errorf("report.html contains %q: it must open offline", ref)
			}
		}
		if !bytes.Contains(html, []byte("<svg")) {
			t.Error("report.html has no inline SVG chart")
		}
		metrics, _ := os.ReadFile(filepath.Join(dir, "metrics.json"))
		if !bytes.Equal(metrics, a) {
			t.Error("metrics.json on disk differs from MetricsJSON")
		}
		var summary strings.Builder
		if err := first.WriteSummary(&summary); err != nil || !strings.Contains(summary.String(), "welfare") {
			t.Errorf("summary %q, %v", summary.String(), err)
		}
	})
}

// TestConcurrentAgents runs agents on several workers, as the scale
// scenario does: under -race it checks the driver's and the agents'
// shared state; the money still balances (MustMarket checks the ledger).
func TestConcurrentAgents(t *testing.T) {
	res := MustRun(t, sim.Config{Scenario: "adversarial", Agents: 40, Seed: 5, Duration: time.Minute, Workers: 4})
	m := res.Metrics
	if m.Deterministic || m.Volume.Settled == 0 || m.StolenMicrocredits != 0 {
		t.Errorf("deterministic %v, %d settled, %d µcr stolen", m.Deterministic, m.Volume.Settled, m.StolenMicrocredits)
	}
}
