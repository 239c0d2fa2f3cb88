package sqlite_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/sqlite"
)

// numberedAgent is the agent a backup test writes as Update i.
func numberedAgent(i int) market.Agent {
	return market.Agent{ID: market.AgentID(fmt.Sprintf("did:key:z%d", i)), Roles: []market.Role{market.RoleBuyer}}
}

// TestBackupDuringWrites backs up a store again and again while writers
// number their Updates. Every copy must open and hold every Update
// acknowledged before its Backup began, and the last, taken once the
// writers stop, all of them.
func TestBackupDuringWrites(t *testing.T) {
	s := MustOpen(t, filepath.Join(t.TempDir(), "market.db"), sqlite.Options{})
	const writers = 4
	var acked [writers]atomic.Int64 // writer w's agents w, w+writers, … below acked[w] are durable
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				a := numberedAgent(n*writers + w)
				if err := s.Update(t.Context(), func(tx market.Tx) error { return tx.PutAgent(a) }); err != nil {
					t.Errorf("put agent: %v", err)
					return
				}
				acked[w].Store(int64(n + 1))
			}
		})
	}
	type backup struct {
		dir  string
		want [writers]int64
	}
	var backups []backup
	for k := range 5 {
		b := backup{dir: filepath.Join(t.TempDir(), fmt.Sprint("backup ", k, " it's"))} // a quote the SQL must not see
		for w := range writers {
			b.want[w] = acked[w].Load()
		}
		if err := s.Backup(t.Context(), b.dir); err != nil {
			t.Fatalf("Backup %d: %v", k, err)
		}
		backups = append(backups, b)
		time.Sleep(5 * time.Millisecond) // let the writers get ahead before the next
	}
	close(stop)
	wg.Wait()
	last := backup{dir: t.TempDir()}
	for w := range writers {
		last.want[w] = acked[w].Load()
	}
	if err := s.Backup(t.Context(), last.dir); err != nil {
		t.Fatalf("Backup after the writes: %v", err)
	}
	backups = append(backups, last)

	for k, b := range backups {
		c := MustOpen(t, filepath.Join(b.dir, sqlite.BackupFile), sqlite.Options{})
		err := c.View(t.Context(), func(tx market.ReadTx) error {
			for w := range writers {
				for n := range b.want[w] {
					if _, err := tx.Agent(numberedAgent(int(n)*writers + w).ID); err != nil {
						return fmt.Errorf("writer %d's agent %d: %w", w, n, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("backup %d lacks an acknowledged Update: %v", k, err)
		}
	}
}

func TestBackupRefusesToOverwrite(t *testing.T) {
	s := MustOpen(t, filepath.Join(t.TempDir(), "market.db"), sqlite.Options{})
	dst := t.TempDir()
	if err := os.WriteFile(filepath.Join(dst, sqlite.BackupFile), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Backup(t.Context(), dst); err == nil {
		t.Fatal("Backup overwrote a file")
	}
	if b, err := os.ReadFile(filepath.Join(dst, sqlite.BackupFile)); err != nil || string(b) != "mine" {
		t.Errorf("the file: %q, %v", b, err)
	}
}

func TestBackupOfAClosedStoreFails(t *testing.T) {
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "market.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Backup(t.Context(), t.TempDir()); !errors.Is(err, sqlite.ErrClosed) {
		t.Errorf("Backup of a closed store: got %v, want ErrClosed", err)
	}
}
