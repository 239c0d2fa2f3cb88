package journalstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/agentmarket/agentmarket/journalstore"
	"github.com/agentmarket/agentmarket/market"
)

// snapshots returns the paths of the directory's snapshot files.
func snapshots(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "snapshot-*.ams"))
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// TestSnapshotAndReplayEqualLive takes snapshots while the workload runs
// and Views read, then checks that the state recovered from the newest
// snapshot and the journal after it is the live state, every index entry
// included, and that the journal segments before the snapshot are gone.
func TestSnapshotAndReplayEqualLive(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts journalstore.Options
	}{
		{"InMemory", journalstore.Options{HotObjects: -1, SegmentBytes: 16 << 10, SnapshotBytes: -1}},
		{"Archiving", journalstore.Options{HotObjects: 1, HotEvents: 1, SegmentBytes: 16 << 10, SnapshotBytes: -1}},
		{"ClashingIDs", journalstore.Options{HotObjects: 1, HotEvents: 1, SegmentBytes: 16 << 10, SnapshotBytes: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "ClashingIDs" {
				defer journalstore.WeakIDHash()()
			}
			dir := t.TempDir()
			s, err := journalstore.Open(dir, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			runWorkload(t, s, 11, 4, 150)
			// Snapshots race the workload: what they copy keeps changing.
			var wg sync.WaitGroup
			wg.Go(func() { runWorkload(t, s, 12, 4, 150) })
			for range 3 {
				if err := s.Snapshot(t.Context()); err != nil {
					t.Fatalf("Snapshot: %v", err)
				}
			}
			wg.Wait()
			segsAtSnapshot := len(segments(t, dir))
			if err := s.Snapshot(t.Context()); err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if n := len(snapshots(t, dir)); n != 1 {
				t.Errorf("%d snapshots in the directory, want the newest only", n)
			}
			if n := len(segments(t, dir)); n >= segsAtSnapshot || n > 2 {
				t.Errorf("%d journal segments after the snapshot (%d before it): the ones it covers should go", n, segsAtSnapshot)
			}
			runWorkload(t, s, 13, 4, 50) // a journal tail after the snapshot
			settle(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			live := journalstore.DumpState(s, now)
			if len(live.Unfindable) > 0 {
				t.Errorf("objects that a lookup by id does not find: %v", live.Unfindable)
			}

			s2, err := journalstore.Open(dir, tt.opts)
			if err != nil {
				t.Fatalf("reopen from the snapshot: %v", err)
			}
			// The recovered store works on: it writes and snapshots again.
			if err := s2.Snapshot(t.Context()); err != nil {
				t.Fatalf("Snapshot after recovery: %v", err)
			}
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(live, journalstore.DumpState(s2, now), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("state recovered from the snapshot differs from the live one (-live +recovered):\n%s", d)
			}
			s3 := MustOpen(t, dir, tt.opts)
			err = s3.View(t.Context(), func(tx market.ReadTx) error { _, err := everything(tx); return err })
			if err != nil {
				t.Errorf("reading everything after recovering from a snapshot of a snapshot: %v", err)
			}
		})
	}
}

func TestCorruptSnapshotIsRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := journalstore.Open(dir, journalstore.Options{SnapshotBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	runWorkload(t, s, 21, 2, 50)
	if err := s.Snapshot(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := snapshots(t, dir)[0]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := journalstore.Open(dir, journalstore.Options{}); err == nil {
		s.Close()
		t.Fatal("Open accepted a corrupt snapshot")
	}
}

func TestSnapshotsAreTakenAsTheJournalGrows(t *testing.T) {
	dir := t.TempDir()
	s := MustOpen(t, dir, journalstore.Options{SnapshotBytes: 32 << 10})
	runWorkload(t, s, 31, 4, 200)
	deadline := time.Now().Add(10 * time.Second)
	for len(snapshots(t, dir)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no snapshot after the journal grew past SnapshotBytes")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSnapshotOfAClosedStoreFails(t *testing.T) {
	s, err := journalstore.Open(t.TempDir(), journalstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Snapshot(t.Context()); !errors.Is(err, journalstore.ErrClosed) {
		t.Errorf("Snapshot of a closed store: got %v, want ErrClosed", err)
	}
}
