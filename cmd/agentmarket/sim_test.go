package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

func TestDemoTradesOverHTTPAndRefusesWireAttacks(t *testing.T) {
	var stdout, stderr bytes.Buffer
	out := t.TempDir()
	args := []string{"demo", "--agents", "40", "--duration", "12s", "--out", out}
	start := time.Now()
	if err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("demo: %v\nstderr:\n%s", err, stderr.String())
	}
	// --duration bounds the demo, the LLM injection suite included; the
	// slack is for setup and a loaded machine, not a speed target.
	if took := time.Since(start); took > 12*time.Second+45*time.Second {
		t.Errorf("demo --duration 12s took %s", took)
	}
	for _, want := range []string{"the market's API is at http://127.0.0.1:", "scenario adversarial", "stolen", "report: "} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Volume struct {
			Contracts int `json:"contracts"`
		} `json:"volume"`
		Attacks []struct {
			Name       string `json:"name"`
			Applicable bool   `json:"applicable"`
			Attempts   int    `json:"attempts"`
			Blocked    int    `json:"blocked"`
		} `json:"attacks"`
		Stolen int64 `json:"stolen_microcredits"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Volume.Contracts == 0 || m.Stolen != 0 {
		t.Errorf("%d contracts over HTTP, %d µcr stolen", m.Volume.Contracts, m.Stolen)
	}
	for _, a := range m.Attacks {
		if (a.Name == "replay" || a.Name == "forgery" || a.Name == "LLM prompt injection") && (!a.Applicable || a.Attempts == 0 || a.Blocked != a.Attempts) {
			t.Errorf("%s over HTTP: %+v", a.Name, a)
		}
	}
}
