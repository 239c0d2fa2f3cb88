package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentmarket/agentmarket/progress"
)

// Report is a benchmark's outcome: every run, the ratios between the
// ledger and the baselines, and the targets the issue sets.
type Report struct {
	Machine           Machine             `json:"machine"`
	Config            ReportConfig        `json:"config"`
	Systems           map[System]string   `json:"systems"`
	Workloads         map[Workload]string `json:"workloads"`
	Notes             []string            `json:"notes"`
	Runs              []Run               `json:"runs"`
	Ratios            []Ratio             `json:"ratios"`
	Targets           []Target            `json:"targets"`
	MemoryAfterLedger *Memory             `json:"memory_after_ledger,omitempty"`
	MemoryRun         *MemoryRun          `json:"memory_run,omitempty"`
	PgBench           *PgBench            `json:"pgbench,omitempty"`
	Passed            bool                `json:"passed"` // every run passed its checks
}

// Machine is where the benchmark ran. The load averages say whether other
// processes competed for the CPUs while it ran.
type Machine struct {
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	CPUs        int    `json:"cpus"`
	GoVersion   string `json:"go_version"`
	LoadAtStart string `json:"load_at_start,omitempty"` // /proc/loadavg's 1, 5 and 15 minute figures
	LoadAtEnd   string `json:"load_at_end,omitempty"`
}

// loadAverage returns the 1, 5 and 15 minute load averages, or "" where
// the platform does not report them.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// ReportConfig is the part of the Config a reader needs.
type ReportConfig struct {
	Wallets         int     `json:"wallets"`
	DurationSeconds float64 `json:"duration_seconds"`
	Transfers       int64   `json:"transfers"`
	Seed            uint64  `json:"seed"`
}

// Ratio compares a ledger run with a baseline run on one workload.
type Ratio struct {
	Workload Workload `json:"workload"`
	Ledger   string   `json:"ledger"`   // the ledger run, e.g. "A batch=8190"
	Baseline string   `json:"baseline"` // the baseline run, e.g. "B 1 client"
	Factor   float64  `json:"factor"`   // ledger transfers/s over baseline transfers/s
}

// Target is one of the goals, and what was measured against it.
type Target struct {
	Name     string  `json:"name"`
	Want     float64 `json:"want"`
	Measured float64 `json:"measured"`
	Met      bool    `json:"met"`
}

// durabilityNote says what A's figures include, and what they leave out.
const durabilityNote = "A's figures include durability: a call returns only after its journal record is fsynced " +
	"(fdatasync). The ledger's SQLite projection (history queries) is deliberately lazy: it catches up when the " +
	"ledger is idle, when a query needs it, or past 1 GiB of lag, so it is not in A's figures."

func newReport(cfg Config) *Report {
	r := &Report{
		Machine: Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
			LoadAtStart: loadAverage()},
		Config: ReportConfig{Wallets: cfg.Wallets, DurationSeconds: cfg.Duration.Seconds(),
			Transfers: cfg.Transfers, Seed: cfg.Seed},
		Systems:   map[System]string{},
		Workloads: map[Workload]string{},
		Notes: []string{durabilityNote,
			"A run stops at its time budget or transfer cap, whichever comes first; an escrow (W3) run finishes its round, " +
				"and its time includes the expiry sweep that ends each round.",
			"Per-transfer latency is a call's latency divided by the transfers in it. \"per fsync\" is how many transfers " +
				"shared one journal fsync (group commit); the baselines commit, and sync, once per transfer.",
		},
	}
	for _, s := range []System{Ledger, NaiveSQLite, NaivePostgres, PostgresLedger} {
		r.Systems[s] = s.Describe()
	}
	for _, w := range Workloads {
		r.Workloads[w] = w.Describe()
	}
	return r
}

// finish computes the ratios, the targets and the overall verdict.
func (r *Report) finish() {
	r.Machine.LoadAtEnd = loadAverage()
	r.Passed = true
	for _, run := range r.Runs {
		if !run.Passed {
			r.Passed = false
		}
	}
	if r.MemoryRun != nil && !r.MemoryRun.Passed {
		r.Passed = false
	}
	r.Ratios, r.Targets = nil, nil
	for _, w := range Workloads {
		var batched, concurrent *Run
		var baselines []*Run
		for i := range r.Runs {
			run := &r.Runs[i]
			if run.Workload != w || !run.Passed {
				continue
			}
			switch {
			case run.System == Ledger && run.Callers == 1:
				if batched == nil || run.TransfersPerSec > batched.TransfersPerSec {
					batched = run
				}
			case run.System == Ledger:
				concurrent = run
			case run.System == PostgresLedger:
				// Compared with pgbench and C in finishPostgres.
			default:
				baselines = append(baselines, run)
			}
		}
		for _, a := range []*Run{batched, concurrent} {
			for _, b := range baselines {
				if a != nil && b.TransfersPerSec > 0 {
					r.Ratios = append(r.Ratios, Ratio{Workload: w, Ledger: a.Label(), Baseline: b.Label(),
						Factor: a.TransfersPerSec / b.TransfersPerSec})
				}
			}
		}
		for i := range r.Runs {
			run := &r.Runs[i]
			if run.Workload != w || run.System != Ledger || !run.Passed {
				continue
			}
			switch {
			case run.Callers == 1 && run.Batch >= 8190:
				r.Targets = append(r.Targets, goal(fmt.Sprintf("%s %s ≥ 1,000,000 transfers/s", w, run.Label()), 1e6, run.TransfersPerSec))
			case run.Callers >= 64:
				r.Targets = append(r.Targets, goal(fmt.Sprintf("%s %s ≥ 100,000 transfers/s", w, run.Label()), 1e5, run.TransfersPerSec))
			}
		}
	}
	for _, q := range r.Ratios {
		if strings.HasPrefix(q.Baseline, string(NaiveSQLite)+" ") {
			r.Targets = append(r.Targets, goal(fmt.Sprintf("%s %s / %s ≥ 100×", q.Workload, q.Ledger, q.Baseline), 100, q.Factor))
		}
	}
	r.finishPostgres()
	if m := r.MemoryRun; m != nil {
		r.Targets = append(r.Targets, Target{Name: fmt.Sprintf("peak resident memory after %s transfers < 1 GiB", progress.Count(m.Transfers)),
			Want: MemoryLimit, Measured: float64(m.After.PeakRSS), Met: m.UnderLimit})
	}
}

func goal(name string, want, measured float64) Target {
	return Target{Name: name, Want: want, Measured: measured, Met: measured >= want}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people: the runs, the ratios, the
// targets, memory and notes.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "agentmarket bench ledger: %s/%s, %d CPUs, %s; %s wallets, %s per run, at most %s transfers per run\n\n",
		r.Machine.OS, r.Machine.Arch, r.Machine.CPUs, r.Machine.GoVersion, progress.Count(int64(r.Config.Wallets)),
		time.Duration(r.Config.DurationSeconds*float64(time.Second)), progress.Count(r.Config.Transfers))
	if r.Machine.LoadAtStart != "" {
		fmt.Fprintf(&b, "load average (1, 5, 15 min) at start %s, at end %s: above %d means other processes competed for the CPUs\n\n",
			r.Machine.LoadAtStart, r.Machine.LoadAtEnd, r.Machine.CPUs)
	}
	for _, s := range []System{Ledger, NaiveSQLite, NaivePostgres, PostgresLedger} {
		fmt.Fprintf(&b, "  %s  %s\n", s, r.Systems[s])
	}
	for _, wl := range Workloads {
		fmt.Fprintf(&b, "  %s %s\n", wl, r.Workloads[wl])
	}
	b.WriteString("\n")
	if len(r.Runs) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "workload\tsystem\tmode\ttransfers\tseconds\ttransfers/s\tcall p50\tcall p99\ttransfer p50\ttransfer p99\tper fsync\tcheck\t")
		for _, run := range r.Runs {
			perSync := "1"
			if run.Fsyncs > 0 {
				perSync = progress.Count(int64(run.TransfersPerFsync + 0.5))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", run.Workload, run.System, run.Mode,
				progress.Count(run.Transfers), run.Seconds, progress.Count(int64(run.TransfersPerSec)),
				formatLatency(run.CallP50), formatLatency(run.CallP99), formatLatency(run.TransferP50),
				formatLatency(run.TransferP99), perSync, run.Check)
		}
		tw.Flush()
		b.WriteString("\n")
	}
	r.writePgBench(&b)
	if len(r.Ratios) > 0 {
		b.WriteString("ratios (transfers/s):\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, q := range r.Ratios {
			fmt.Fprintf(tw, "  %s\t%s / %s\t%s×\n", q.Workload, q.Ledger, q.Baseline, formatFactor(q.Factor))
		}
		tw.Flush()
		b.WriteString("\n")
	}
	if m := r.MemoryAfterLedger; m != nil {
		fmt.Fprintf(&b, "memory after the A runs: peak RSS %s, RSS now %s (anon %s, file %s), Go heap %s in use of %s held\n\n",
			formatBytes(m.PeakRSS), formatBytes(m.RSS), formatBytes(m.RSSAnon), formatBytes(m.RSSFile),
			formatBytes(int64(m.GoHeap)), formatBytes(int64(m.GoRetained)))
	}
	if m := r.MemoryRun; m != nil {
		fmt.Fprintf(&b, "memory run: %s transfers through A in batches of %d (W1) in %.1fs, %s transfers/s; journal %s\n",
			progress.Count(m.Transfers), m.Batch, m.Seconds, progress.Count(int64(m.TransfersPerSec)), formatBytes(m.JournalBytes))
		fmt.Fprintf(&b, "  afterwards: peak RSS %s, RSS %s (anon %s, file %s), Go heap %s in use of %s held; limit %s; check %s\n",
			formatBytes(m.After.PeakRSS), formatBytes(m.After.RSS), formatBytes(m.After.RSSAnon), formatBytes(m.After.RSSFile),
			formatBytes(int64(m.After.GoHeap)), formatBytes(int64(m.After.GoRetained)), formatBytes(m.LimitBytes), m.Check)
		fmt.Fprintf(&b, "  after a GC that returns free pages to the OS: RSS %s (anon %s, file %s), Go heap %s in use of %s held\n\n",
			formatBytes(m.Settled.RSS), formatBytes(m.Settled.RSSAnon), formatBytes(m.Settled.RSSFile),
			formatBytes(int64(m.Settled.GoHeap)), formatBytes(int64(m.Settled.GoRetained)))
	}
	if len(r.Targets) > 0 {
		b.WriteString("targets:\n")
		for _, t := range r.Targets {
			verdict := "met"
			if !t.Met {
				verdict = fmt.Sprintf("SHORT (%.0f%% of target)", 100*t.Measured/t.Want)
				if t.Want == MemoryLimit {
					verdict = "NOT MET"
				}
			}
			measured := progress.Count(int64(t.Measured))
			switch {
			case strings.HasSuffix(t.Name, "×"):
				measured = formatFactor(t.Measured) + "×"
			case t.Want == MemoryLimit:
				measured = formatBytes(int64(t.Measured))
			}
			fmt.Fprintf(&b, "  %s: %s, %s\n", t.Name, measured, verdict)
		}
		b.WriteString("\n")
	}
	b.WriteString("notes:\n")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  - %s\n", n)
	}
	verdict := "all runs passed their conservation checks"
	if !r.Passed {
		verdict = "SOME RUNS FAILED (see the check column)"
	}
	fmt.Fprintf(&b, "\n%s\n", verdict)
	_, err := io.WriteString(w, b.String())
	return err
}

// formatLatency prints a duration with three significant digits.
func formatLatency(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return trim3(float64(d)/float64(time.Microsecond)) + "µs"
	case d < time.Second:
		return trim3(float64(d)/float64(time.Millisecond)) + "ms"
	}
	return trim3(d.Seconds()) + "s"
}

func trim3(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func formatFactor(f float64) string {
	if f >= 10 {
		return progress.Count(int64(f + 0.5))
	}
	return fmt.Sprintf("%.1f", f)
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
