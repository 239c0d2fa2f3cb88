package journalstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/journalstore"
	"github.com/agentmarket/agentmarket/market"
)

const (
	crashChildEnv = "JOURNALSTORE_CRASH_CHILD" // "run dir"; set only in the child
	crashSeedEnv  = "JOURNALSTORE_CRASH_SEED"  // replays a logged seed
	crashRuns     = 12
	crashWorkers  = 8
	crashMinDelay = 20 * time.Millisecond
	crashMaxDelay = 300 * time.Millisecond
)

// crashOptions make the child snapshot, start segments and archive often,
// so that kills land in all of them.
var crashOptions = journalstore.Options{SegmentBytes: 64 << 10, SnapshotBytes: 256 << 10, HotObjects: 64, HotEvents: 64}

// crashUpdate is update n of a worker in a run: it posts an intent,
// appends an event about it, and increments the worker's counter (an
// arbiter record), reading it first. One in seven fails after writing all
// of that, and must leave no trace.
func crashUpdate(run, worker, n int) (id string, fails bool, fn func(market.Tx) error) {
	id = fmt.Sprintf("r%d-w%d-%d", run, worker, n)
	fails = n%7 == 3
	return id, fails, func(tx market.Tx) error {
		in := market.Intent{ID: id, RequestID: id, Buyer: crashWorker(worker), Intent: "CRASH",
			State: market.IntentOpen, CreatedAt: wlT0, BidDeadline: wlT0.Add(time.Duration(n) * time.Second)}
		if err := tx.PutIntent(in); err != nil {
			return err
		}
		if _, err := tx.AppendEvent(market.Event{Type: market.EventIntentPosted, At: wlT0, Intent: "CRASH", Subject: id,
			Audience: []market.AgentID{crashWorker(worker)}}); err != nil {
			return err
		}
		r, err := tx.ArbiterRecord(crashWorker(worker))
		if err != nil {
			return err
		}
		r.Reviews++
		if err := tx.PutArbiterRecord(r); err != nil {
			return err
		}
		if fails {
			return errWorkload
		}
		return nil
	}
}

func crashWorker(w int) market.AgentID { return market.AgentID(fmt.Sprintf("did:key:zWorker%d", w)) }

// TestCrashChild is not a test. It is the child process that TestCrash
// starts and kills: it opens the store in the directory it is given and
// runs Updates from several goroutines until it is killed, writing a line
// to stdout each time an Update returns. It skips itself unless TestCrash
// set JOURNALSTORE_CRASH_CHILD.
func TestCrashChild(t *testing.T) {
	spec, ok := os.LookupEnv(crashChildEnv)
	if !ok {
		t.Skip("helper process for TestCrash; runs only when TestCrash starts it")
	}
	runStr, dir, _ := strings.Cut(spec, " ")
	run, err := strconv.Atoi(runStr)
	if err != nil || dir == "" {
		t.Fatalf("bad %s %q", crashChildEnv, spec)
	}
	s, err := journalstore.Open(dir, crashOptions)
	if err != nil {
		t.Fatalf("recover store: %v", err)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	line := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush() // one write per line: the parent reads whole lines or nothing
	}
	line("ready")
	errs := make(chan error, crashWorkers)
	for w := range crashWorkers {
		go func() {
			for n := 0; ; n++ {
				_, fails, fn := crashUpdate(run, w, n)
				err := s.Update(context.Background(), fn)
				switch {
				case fails && errors.Is(err, errWorkload):
					line("fail %d %d", w, n)
				case !fails && err == nil:
					line("ack %d %d", w, n)
				default:
					errs <- fmt.Errorf("worker %d update %d: %v", w, n, err)
					return
				}
			}
		}()
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	case <-time.After(time.Minute):
		t.Fatal("not killed within a minute")
	}
}

// TestCrash checks the durability promise the hard way. A child process
// runs Updates under load and is killed with SIGKILL at a random moment,
// again and again, on one directory that keeps growing, while it
// snapshots, starts journal segments and archives. After each kill
// the parent recovers the store and checks that every Update the child
// saw acknowledged is there, whole; that no failed Update left a trace;
// that no increment of a counter was lost; and that the events have no
// gaps. The Update in flight at the kill may or may not have survived,
// but only whole.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes for a few seconds")
	}
	seed := crashSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	counters := make([]int, crashWorkers) // each worker's counter after the last recovery
	var acks []int
	for run := range crashRuns {
		delay := crashMinDelay + time.Duration(rng.Int64N(int64(crashMaxDelay-crashMinDelay)+1))
		lines := runCrashChild(t, dir, run, delay)
		acked := make([]map[int]bool, crashWorkers)
		failed := make([]map[int]bool, crashWorkers)
		for w := range crashWorkers {
			acked[w], failed[w] = map[int]bool{}, map[int]bool{}
		}
		for _, l := range lines {
			var w, n int
			if _, err := fmt.Sscanf(l, "ack %d %d", &w, &n); err == nil {
				acked[w][n] = true
			} else if _, err := fmt.Sscanf(l, "fail %d %d", &w, &n); err == nil {
				failed[w][n] = true
			}
		}

		s, err := journalstore.Open(dir, crashOptions)
		if err != nil {
			t.Fatalf("run %d: recover after the kill: %v", run, err)
		}
		total := 0
		err = s.View(t.Context(), func(tx market.ReadTx) error {
			for w := range crashWorkers {
				for n := range acked[w] {
					id, _, _ := crashUpdate(run, w, n)
					if _, err := tx.Intent(id); err != nil {
						t.Errorf("run %d: acknowledged intent %s: %v", run, id, err)
					}
				}
				for n := range failed[w] {
					id, _, _ := crashUpdate(run, w, n)
					if _, err := tx.Intent(id); !market.Is(err, market.NotExist) {
						t.Errorf("run %d: intent %s of a failed Update: got %v, want NotExist", run, id, err)
					}
				}
				r, err := tx.ArbiterRecord(crashWorker(w))
				if err != nil {
					return err
				}
				// The worker's Update in flight at the kill may have
				// survived, whole, or not.
				if want := counters[w] + len(acked[w]); r.Reviews != want && r.Reviews != want+1 {
					t.Errorf("run %d: worker %d counter is %d after %d acknowledged increments from %d",
						run, w, r.Reviews, len(acked[w]), counters[w])
				}
				counters[w] = r.Reviews
				total += len(acked[w])
			}
			events, err := tx.Events(market.EventFilter{Limit: 1000})
			for len(events) > 0 && err == nil {
				for i, e := range events {
					if i > 0 && e.Seq != events[i-1].Seq+1 {
						t.Errorf("run %d: event %d follows event %d", run, e.Seq, events[i-1].Seq)
					}
				}
				events, err = tx.Events(market.EventFilter{After: events[len(events)-1].Seq, Limit: 1000})
			}
			return err
		})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("run %d: close: %v", run, err)
		}
		if t.Failed() {
			t.FailNow()
		}
		acks = append(acks, total)
	}
	t.Logf("acknowledged Updates per run: %v; %d snapshots, %d journal segments left", acks,
		len(snapshots(t, dir)), len(segments(t, dir)))
	progressed := 0
	for _, n := range acks {
		if n > 0 {
			progressed++
		}
	}
	if progressed < crashRuns/2 {
		t.Errorf("only %d of %d children saw an Update acknowledged: the test is not loading the store", progressed, crashRuns)
	}
}

// crashSeed returns the seed of the kill times: a new one each time,
// logged, unless JOURNALSTORE_CRASH_SEED replays one.
func crashSeed(t *testing.T) uint64 {
	if s := os.Getenv(crashSeedEnv); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", crashSeedEnv, err)
		}
		return seed
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (%s=%d replays the kill times)", seed, crashSeedEnv, seed)
	return seed
}

// runCrashChild starts the child on dir, kills it with SIGKILL delay after
// it reports the store open, and returns the whole lines it wrote.
func runCrashChild(t *testing.T, dir string, run int, delay time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %s", crashChildEnv, run, dir))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("run %d: start child: %v", run, err)
	}
	ready := make(chan struct{})
	read := make(chan []string, 1)
	go func() {
		var lines []string
		br := bufio.NewReader(stdout)
		for {
			s, err := br.ReadString('\n')
			if err != nil {
				break // a line cut short was never whole, so never acknowledged
			}
			s = strings.TrimSuffix(s, "\n")
			if s == "ready" {
				close(ready)
			}
			lines = append(lines, s)
		}
		read <- lines
	}()
	select {
	case <-ready:
	case <-time.After(time.Minute):
	}
	time.Sleep(delay)
	kill := cmd.Process.Kill()
	lines := <-read
	cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("run %d: child died before the kill (%v, kill: %v)\nstdout:\n%s\nstderr:\n%s",
			run, cmd.ProcessState, kill, strings.Join(lines, "\n"), stderr.String())
	}
	if strings.Contains(stderr.String(), "DATA RACE") || strings.Contains(stderr.String(), "panic") {
		t.Fatalf("run %d: child reported:\n%s", run, stderr.String())
	}
	return lines
}
