package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentmarket/agentmarket/bench"
	"github.com/agentmarket/agentmarket/httpapi/httpapitest"
)

// testMarkets are the two ways into a market, each a real market in the
// run's directory: its engine in-process, and the same served over HTTP.
func testMarkets() []bench.LifecycleSystem {
	open := func(viaHTTP bool) func(context.Context, string) (*bench.LifecycleMarket, error) {
		return func(_ context.Context, dir string) (*bench.LifecycleMarket, error) {
			m, err := httpapitest.Start(dir, httpapitest.Options{})
			if err != nil {
				return nil, err
			}
			if viaHTTP {
				return &bench.LifecycleMarket{URL: m.URL, Operator: m.Operator, Close: m.Close}, nil
			}
			return &bench.LifecycleMarket{Service: m.Engine, Close: m.Close}, nil
		}
	}
	return []bench.LifecycleSystem{
		{Name: "in-process", About: "the engine", Open: open(false)},
		{Name: "http", About: "the engine over HTTP", Open: open(true)},
	}
}

func TestHTTPBenchQuick(t *testing.T) {
	cfg := bench.QuickHTTPConfig()
	cfg.Dir, cfg.Systems = t.TempDir(), testMarkets()
	var progress bytes.Buffer
	cfg.Progress = &progress
	rep, err := bench.HTTPBench(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed || len(rep.Runs) != 2 {
		t.Fatalf("passed %v, %d runs: %+v", rep.Passed, len(rep.Runs), rep.Runs)
	}
	for _, run := range rep.Runs {
		if !run.Passed || run.Lifecycles <= 0 || run.PerSec <= 0 || run.LifecycleP50 < cfg.BidWindow || run.LifecycleP99 < run.LifecycleP50 {
			t.Errorf("%s: implausible run %+v", run.System, run)
		}
		for _, rs := range run.Requests {
			want := run.Lifecycles
			if rs.Op == "place_bid" {
				want *= int64(cfg.Bids)
			}
			if rs.Count < want || rs.P50 <= 0 || rs.P99 < rs.P50 {
				t.Errorf("%s %s: %+v, want at least %d requests", run.System, rs.Op, rs, want)
			}
		}
	}
	if len(rep.Ratios) != 1 || rep.Ratios[0].System != "http" || rep.Ratios[0].Factor <= 0 || len(rep.Targets) != 2 {
		t.Errorf("ratios %+v, targets %+v", rep.Ratios, rep.Targets)
	}
	if !strings.Contains(progress.String(), "http in-process: done,") || !strings.Contains(progress.String(), "http http: done,") {
		t.Errorf("no progress lines:\n%s", progress.String())
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lifecycles/s", "post_intent", "place_bid", "bids", "award", "deliver", "http/in-process p50", "http / in-process:", "every run passed"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back bench.HTTPReport
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Runs) != 2 || back.Runs[1].Lifecycles != rep.Runs[1].Lifecycles {
		t.Errorf("JSON does not carry the report: %v\n%s", err, js.String())
	}
}

func TestHTTPBenchRefusesABadConfig(t *testing.T) {
	for name, tweak := range map[string]func(*bench.HTTPConfig){
		"NoSystems":            func(c *bench.HTTPConfig) { c.Systems = nil },
		"FewerSellersThanBids": func(c *bench.HTTPConfig) { c.Sellers = c.Bids - 1 },
		"NoWindow":             func(c *bench.HTTPConfig) { c.BidWindow = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := bench.QuickHTTPConfig()
			cfg.Systems = testMarkets()
			tweak(&cfg)
			if _, err := bench.HTTPBench(context.Background(), cfg); err == nil {
				t.Fatal("no error")
			}
		})
	}
}
