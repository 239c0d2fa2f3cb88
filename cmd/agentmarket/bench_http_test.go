package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestBenchHTTPQuick runs "bench http --quick" end to end: the engine
// in-process, then agentmarket serve on a loopback port driven through the
// SDK, each for a moment.
func TestBenchHTTPQuick(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "http", "--quick", "--json", "--dir", t.TempDir()}
	if err := run(t.Context(), args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("bench http: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep struct {
		Runs []struct {
			System     string  `json:"system"`
			Lifecycles int64   `json:"lifecycles"`
			PerSec     float64 `json:"lifecycles_per_sec"`
			Check      string  `json:"check"`
		} `json:"runs"`
		Ratios []struct {
			Factor float64 `json:"factor"`
		} `json:"ratios"`
		Passed bool `json:"passed"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, stdout.String())
	}
	if !rep.Passed || len(rep.Runs) != 2 || rep.Runs[0].System != "in-process" || rep.Runs[1].System != "http" || len(rep.Ratios) != 1 {
		t.Fatalf("report %+v", rep)
	}
	for _, r := range rep.Runs {
		if r.Lifecycles <= 0 || r.PerSec <= 0 || r.Check != "passed" {
			t.Errorf("%s: %+v", r.System, r)
		}
	}
	if !strings.Contains(stderr.String(), "http http: done,") {
		t.Errorf("stderr lacks the progress lines:\n%s", stderr.String())
	}
}

// TestBenchHTTPQuickOnTheJournalStore runs the same lifecycles on the
// journal market store, in-process and through serve --store journal,
// compared with the SQLite baseline.
func TestBenchHTTPQuickOnTheJournalStore(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "http", "--quick", "--json", "--dir", t.TempDir(), "--systems", "in-process,in-process-journal,http-journal"}
	if err := run(t.Context(), args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("bench http: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep struct {
		Runs []struct {
			System     string `json:"system"`
			OverHTTP   bool   `json:"over_http"`
			Lifecycles int64  `json:"lifecycles"`
			Check      string `json:"check"`
		} `json:"runs"`
		Ratios []struct {
			System   string `json:"system"`
			Baseline string `json:"baseline"`
		} `json:"ratios"`
		Systems map[string]string `json:"systems"`
		Passed  bool              `json:"passed"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, stdout.String())
	}
	if !rep.Passed || len(rep.Runs) != 3 || len(rep.Ratios) != 2 {
		t.Fatalf("report %+v", rep)
	}
	for i, want := range []struct {
		system   string
		overHTTP bool
	}{{"in-process", false}, {"in-process-journal", false}, {"http-journal", true}} {
		r := rep.Runs[i]
		if r.System != want.system || r.OverHTTP != want.overHTTP || r.Lifecycles <= 0 || r.Check != "passed" {
			t.Errorf("run %d: got %+v, want %s", i, r, want.system)
		}
	}
	for _, q := range rep.Ratios {
		if q.Baseline != "in-process" {
			t.Errorf("%s is compared with %s, want the first system", q.System, q.Baseline)
		}
	}
	if !strings.Contains(rep.Systems["http-journal"], "journal") {
		t.Errorf("http-journal is described as %q", rep.Systems["http-journal"])
	}
}

func TestBenchHTTPRejectsUnknownSystems(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"bench", "http", "--systems", "grpc"}, func(string) string { return "" }, strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(err.Error(), `unknown system "grpc"`) {
		t.Fatalf("got %v", err)
	}
}
