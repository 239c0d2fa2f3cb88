package journalstore_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/agentmarket/agentmarket/journalstore"
)

// backupOptions make small segments and frequent background snapshots,
// so that a backup races both.
var backupOptions = []struct {
	name string
	opts journalstore.Options
}{
	{"InMemory", journalstore.Options{HotObjects: -1, SegmentBytes: 16 << 10, SnapshotBytes: 32 << 10}},
	{"Archiving", journalstore.Options{HotObjects: 1, HotEvents: 1, SegmentBytes: 16 << 10, SnapshotBytes: 32 << 10}},
}

// TestBackupEqualsLive backs up a quiet store whose state is a snapshot
// and a journal after it, and checks that the copy recovers to exactly
// the live state, every index entry included, and works on.
func TestBackupEqualsLive(t *testing.T) {
	for _, tt := range backupOptions {
		t.Run(tt.name, func(t *testing.T) {
			dir, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
			s, err := journalstore.Open(dir, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			runWorkload(t, s, 51, 4, 150)
			if err := s.Snapshot(t.Context()); err != nil {
				t.Fatal(err)
			}
			runWorkload(t, s, 52, 4, 30) // a journal tail after the snapshot
			settle(t, s)
			if err := s.Backup(t.Context(), dst); err != nil {
				t.Fatalf("Backup: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			live := journalstore.DumpState(s, now)
			if len(snapshots(t, dst)) != 1 {
				t.Errorf("backup holds %d snapshots, want the newest", len(snapshots(t, dst)))
			}

			c, err := journalstore.Open(dst, tt.opts)
			if err != nil {
				t.Fatalf("open the backup: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(live, journalstore.DumpState(c, now), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("backup differs from the live store (-live +backup):\n%s", d)
			}
			c = MustOpen(t, dst, tt.opts)
			putAgents(t, c, 0, 3)
			if err := c.View(t.Context(), readEverything); err != nil {
				t.Errorf("reading everything in the restored store: %v", err)
			}
		})
	}
}

// TestBackupDuringWritesAndSnapshots backs up a store again and again
// while writers run the workload, a writer numbers its Updates, and
// snapshots are taken both in the background and by hand, deleting
// segments. Every copy must open, and hold every numbered Update that
// was acknowledged before its Backup began.
func TestBackupDuringWritesAndSnapshots(t *testing.T) {
	for _, tt := range backupOptions {
		t.Run(tt.name, func(t *testing.T) {
			s := MustOpen(t, t.TempDir(), tt.opts)
			backupDir := func(k int) string { return filepath.Join(t.TempDir(), fmt.Sprint("backup", k)) }
			dsts := make([]string, 0)
			runWorkload(t, s, 61, 2, 50)

			var acked atomic.Int64 // the numbered agents 0..acked-1 are durable
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					putAgents(t, s, i, 1)
					acked.Store(int64(i + 1))
				}
			})
			wg.Go(func() { runWorkload(t, s, 62, 4, 150) })
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := s.Snapshot(t.Context()); err != nil {
						t.Errorf("Snapshot during backups: %v", err)
						return
					}
				}
			})

			for deadline := time.Now().Add(10 * time.Second); acked.Load() == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no numbered Update acknowledged")
				}
			}
			const backups = 6
			want := make([]int, backups)
			for k := range backups {
				want[k] = int(acked.Load())
				dsts = append(dsts, backupDir(k))
				if err := s.Backup(t.Context(), dsts[k]); err != nil {
					t.Fatalf("Backup %d: %v", k, err)
				}
				time.Sleep(5 * time.Millisecond) // let the writers get ahead before the next
			}
			close(stop)
			wg.Wait()

			fromSnapshot := 0
			for k := range backups {
				c, err := journalstore.Open(dsts[k], tt.opts)
				if err != nil {
					t.Fatalf("open backup %d: %v", k, err)
				}
				for i, ok := range agentsPresent(t, c, want[k]) {
					if !ok {
						t.Errorf("backup %d lacks agent %d, acknowledged before it began", k, i)
					}
				}
				if len(snapshots(t, dsts[k])) > 0 {
					fromSnapshot++
				}
				if err := c.View(t.Context(), readEverything); err != nil {
					t.Errorf("reading everything in backup %d: %v", k, err)
				}
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if fromSnapshot == 0 {
				t.Error("no backup copied a snapshot: the test did not race the snapshots")
			}
		})
	}
}

func TestBackupIntoANonEmptyDirectoryFails(t *testing.T) {
	s := MustOpen(t, t.TempDir(), journalstore.Options{})
	dst := t.TempDir()
	if err := os.WriteFile(filepath.Join(dst, "keep"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Backup(t.Context(), dst); err == nil {
		t.Fatal("Backup wrote into a directory that holds a file")
	}
	if b, err := os.ReadFile(filepath.Join(dst, "keep")); err != nil || string(b) != "mine" {
		t.Errorf("the file in the directory: %q, %v", b, err)
	}
}

func TestBackupOfAnEmptyStoreOpens(t *testing.T) {
	s := MustOpen(t, t.TempDir(), journalstore.Options{})
	dst := t.TempDir()
	if err := s.Backup(t.Context(), dst); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	c := MustOpen(t, dst, journalstore.Options{})
	putAgents(t, c, 0, 1)
}

func TestBackupOfAClosedStoreFails(t *testing.T) {
	s, err := journalstore.Open(t.TempDir(), journalstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Backup(t.Context(), t.TempDir()); !errors.Is(err, journalstore.ErrClosed) {
		t.Errorf("Backup of a closed store: got %v, want ErrClosed", err)
	}
}
