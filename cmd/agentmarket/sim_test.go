package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSimWritesTheReportAndPrintsTheSummary(t *testing.T) {
	var stdout, stderr bytes.Buffer
	out := t.TempDir()
	args := []string{"sim", "--scenario", "baseline", "--agents", "16", "--duration", "20s", "--seed", "3", "--out", out}
	if err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("sim: %v\nstderr:\n%s", err, stderr.String())
	}
	for _, want := range []string{"scenario baseline, seed 3, 16 agents", "welfare", "report: "} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "sim baseline: done,") {
		t.Errorf("stderr lacks the progress lines:\n%s", stderr.String())
	}
	for _, name := range []string{"report.html", "metrics.json", "timeseries.csv"} {
		if fi, err := os.Stat(filepath.Join(out, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSimRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"sim", "--scenario", "nope"},
		{"sim", "extra"},
		{"sim", "--scenario", "adversarial", "--agents", "5"},
		{"sim", "--server", "http://127.0.0.1:1"}, // no operator key
	} {
		var out bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &out); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
