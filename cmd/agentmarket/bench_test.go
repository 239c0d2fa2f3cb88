package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestBenchLedgerQuickPrintsJSONAndProgress(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "ledger", "--quick", "--json", "--systems", "A,B", "--workloads", "W1",
		"--batches", "8190", "--callers", "8", "--dir", t.TempDir()}
	err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench ledger: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep struct {
		Runs []struct {
			System string `json:"system"`
			Mode   string `json:"mode"`
			Check  string `json:"check"`
		} `json:"runs"`
		Ratios []struct {
			Factor float64 `json:"factor"`
		} `json:"ratios"`
		Passed bool `json:"passed"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, stdout.String())
	}
	var modes []string
	for _, r := range rep.Runs {
		modes = append(modes, r.System+" "+r.Mode+" "+r.Check)
	}
	want := "A batch=8190 passed,A 8 callers passed,B 1 client passed"
	if got := strings.Join(modes, ","); got != want || !rep.Passed || len(rep.Ratios) != 2 {
		t.Errorf("runs %q, passed %v, %d ratios; want %q, true, 2", got, rep.Passed, len(rep.Ratios), want)
	}
	if !strings.Contains(stderr.String(), "W1 A batch=8190: done,") {
		t.Errorf("stderr lacks the progress lines:\n%s", stderr.String())
	}
}

func TestBenchRejectsUnknownSubcommandsAndFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "nonsense"},
		{"bench", "market", "extra"},
		{"bench", "ledger", "--systems", "Z"},
		{"bench", "ledger", "--workloads", "W9"},
		{"bench", "ledger", "--batches", "9000"},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &out); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
