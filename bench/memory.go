package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/agentmarket/agentmarket/ledger"
	"github.com/agentmarket/agentmarket/progress"
)

// Memory is the process's memory, read from /proc/self/status. Zero
// values mean the platform does not report them.
type Memory struct {
	PeakRSS int64  `json:"peak_rss_bytes"` // VmHWM: the most ever resident
	RSS     int64  `json:"rss_bytes"`      // VmRSS: resident now
	RSSAnon int64  `json:"rss_anon_bytes"` // resident heap and stacks
	RSSFile int64  `json:"rss_file_bytes"` // resident mapped files (SQLite's mmap)
	GoHeap  uint64 `json:"go_heap_bytes"`  // the Go heap in use
	// GoRetained is what the Go runtime holds from the OS for its heap,
	// in use or not: the gap to GoHeap is garbage-collector headroom.
	GoRetained uint64 `json:"go_retained_bytes"`
}

// ReadMemory reads the process's resident memory now.
func ReadMemory() Memory {
	var m Memory
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.GoHeap = ms.HeapInuse
	m.GoRetained = ms.HeapSys - ms.HeapReleased
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return m
	}
	defer f.Close()
	fields := map[string]*int64{"VmHWM:": &m.PeakRSS, "VmRSS:": &m.RSS, "RssAnon:": &m.RSSAnon, "RssFile:": &m.RSSFile}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Fields(sc.Text())
		if len(parts) < 3 || parts[2] != "kB" {
			continue
		}
		if p, ok := fields[parts[0]]; ok {
			if kb, err := strconv.ParseInt(parts[1], 10, 64); err == nil {
				*p = kb << 10
			}
		}
	}
	return m
}

// MemoryLimit is the bound on resident memory after 10M transfers.
const MemoryLimit = 1 << 30

// MemoryRun is the outcome of pushing many transfers through the ledger
// to see what stays resident.
type MemoryRun struct {
	Transfers       int64   `json:"transfers"`
	Batch           int     `json:"batch"`
	Seconds         float64 `json:"seconds"`
	TransfersPerSec float64 `json:"transfers_per_sec"`
	JournalBytes    int64   `json:"journal_bytes"`
	// After is the memory right after the last batch was acknowledged.
	After Memory `json:"after"`
	// Settled is the memory after a garbage collection that returns free
	// pages to the OS: what the ledger's state really needs.
	Settled    Memory `json:"settled"`
	LimitBytes int64  `json:"limit_bytes"`
	UnderLimit bool   `json:"under_limit"` // peak resident memory stayed under the limit
	Passed     bool   `json:"passed"`
	Check      string `json:"check"`
}

// MemoryBench pushes n transfers through a fresh durable ledger in full
// batches of the uniform workload (W1), then reads the process's memory,
// and reports it. Run it in a process of its own: the peak covers
// everything the process did before.
func MemoryBench(ctx context.Context, cfg Config, n int64) (*Report, error) {
	if cfg.Wallets < 2 || n <= 0 {
		return nil, fmt.Errorf("bench: memory run needs at least 2 wallets and a positive transfer count")
	}
	rep := newReport(cfg)
	m, err := memoryRun(ctx, cfg, n)
	if err != nil {
		return nil, err
	}
	rep.MemoryRun = m
	rep.finish()
	return rep, nil
}

func memoryRun(ctx context.Context, cfg Config, n int64) (*MemoryRun, error) {
	res := &MemoryRun{Batch: ledger.MaxBatch, LimitBytes: MemoryLimit}
	dir, err := os.MkdirTemp(cfg.Dir, "agentmarket-bench-memory-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tracker := progress.Discard()
	if cfg.Progress != nil {
		tracker = progress.Start(cfg.Progress, progress.Options{Label: "memory: W1 A batch=8190", Unit: "transfers", Total: n})
	}
	defer tracker.Finish()
	tracker.Status(fmt.Sprintf("setting up %s funded wallets", progress.Count(int64(cfg.Wallets))))
	t, err := openLedgerTarget(ctx, dir, cfg.Wallets, 1, &clock{})
	if err != nil {
		return nil, err
	}
	defer t.close()
	tracker.Begin()
	gen := newStreamGen(Uniform, cfg.Wallets, cfg.Seed, 0)
	ops := make([]Op, ledger.MaxBatch)
	out := make([]outcome, ledger.MaxBatch)
	var acked int64
	start := time.Now()
	for res.Transfers < n {
		k := int(min(int64(len(ops)), n-res.Transfers))
		gen.fill(ops[:k])
		if err := t.apply(ctx, 0, ops[:k], out[:k]); err != nil {
			return nil, err
		}
		for _, o := range out[:k] {
			if o == applied {
				acked++
			}
		}
		res.Transfers += int64(k)
		tracker.Add(int64(k))
	}
	elapsed := time.Since(start)
	res.After = ReadMemory()
	tracker.Finish()
	debug.FreeOSMemory()
	res.Settled = ReadMemory()
	res.Seconds = elapsed.Seconds()
	res.TransfersPerSec = float64(res.Transfers) / res.Seconds
	res.UnderLimit = res.After.PeakRSS > 0 && res.After.PeakRSS < MemoryLimit
	if fi, err := os.Stat(filepath.Join(dir, "journal.amj")); err == nil {
		res.JournalBytes = fi.Size()
	}
	res.Passed, res.Check = true, "passed"
	if err := t.check(ctx, acked); err != nil {
		res.Passed, res.Check = false, fmt.Sprintf("FAILED: conservation: %v", err)
	}
	return res, nil
}
