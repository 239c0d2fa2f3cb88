package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestBenchMarketQuick runs "bench market --quick" end to end: whole
// lifecycles in-process on the embedded SQLite store, with and without
// group commit, and on the journal store, each checked for conservation.
func TestBenchMarketQuick(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "market", "--quick", "--json", "--dir", t.TempDir()}
	if err := run(t.Context(), args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("bench market: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep struct {
		Runs []struct {
			System     string  `json:"system"`
			Lifecycles int     `json:"lifecycles"`
			PerSecond  float64 `json:"lifecycles_per_second"`
			Check      string  `json:"check"`
			Ops        []struct {
				Op    string `json:"op"`
				Count int64  `json:"count"`
			} `json:"requests"`
		} `json:"runs"`
		Ratios []struct {
			Factor float64 `json:"factor"`
		} `json:"ratios"`
		Targets []struct {
			Measured float64 `json:"measured"`
		} `json:"targets"`
		Passed bool `json:"passed"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, stdout.String())
	}
	if !rep.Passed || len(rep.Runs) != 3 || rep.Runs[0].System != "one-tx" || rep.Runs[1].System != "embedded" || rep.Runs[2].System != "journal" || len(rep.Ratios) != 2 || len(rep.Targets) != 1 {
		t.Fatalf("report %+v", rep)
	}
	for _, r := range rep.Runs {
		if r.Lifecycles != 64 || r.PerSecond <= 0 || r.Check != "passed" {
			t.Errorf("%s: %+v", r.System, r)
		}
		for _, op := range r.Ops {
			if op.Count == 0 {
				t.Errorf("%s: no %s requests were timed", r.System, op.Op)
			}
		}
	}
	if !strings.Contains(stderr.String(), "market embedded") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}
}
