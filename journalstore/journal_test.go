package journalstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentmarket/agentmarket/journalstore"
	"github.com/agentmarket/agentmarket/market"
)

// segments returns the paths of the journal's segment files.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "journal-*.amj"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no journal segments in %s: %v", dir, err)
	}
	return paths
}

// putAgents writes n agents named from first, one Update (and so one
// journal record) each.
func putAgents(t *testing.T, s market.Store, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		a := market.Agent{ID: market.AgentID(fmt.Sprintf("did:key:z%d", i)), Roles: []market.Role{market.RoleBuyer}}
		if err := s.Update(t.Context(), func(tx market.Tx) error { return tx.PutAgent(a) }); err != nil {
			t.Fatalf("put agent %d: %v", i, err)
		}
	}
}

// agentsPresent returns which of the agents numbered below n exist.
func agentsPresent(t *testing.T, s market.Store, n int) []bool {
	t.Helper()
	out := make([]bool, n)
	err := s.View(t.Context(), func(tx market.ReadTx) error {
		for i := range n {
			_, err := tx.Agent(market.AgentID(fmt.Sprintf("did:key:z%d", i)))
			if err != nil && !market.Is(err, market.NotExist) {
				return err
			}
			out[i] = err == nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTornTailIsDropped(t *testing.T) {
	tests := []struct {
		name string
		tear func(t *testing.T, path string)
	}{
		{"LastRecordCutShort", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()-7); err != nil {
				t.Fatal(err)
			}
		}},
		{"HeaderOfAnUnwrittenRecord", func(t *testing.T, path string) {
			appendBytes(t, path, []byte("AMS1\x01\x00\x00\x00 half a header"))
		}},
		{"ZeroesAfterTheLastRecord", func(t *testing.T, path string) {
			appendBytes(t, path, make([]byte, 4096))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := journalstore.Open(dir, journalstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			putAgents(t, s, 0, 10)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tt.tear(t, segments(t, dir)[0])

			s = MustOpen(t, dir, journalstore.Options{})
			got := agentsPresent(t, s, 10)
			for i := range 9 {
				if !got[i] {
					t.Errorf("agent %d, before the torn tail, is missing", i)
				}
			}
			if torn := tt.name == "LastRecordCutShort"; got[9] == torn {
				t.Errorf("agent 9 present = %v after %s", got[9], tt.name)
			}
			// The journal goes on after the cut: new records follow and
			// survive another reopen.
			putAgents(t, s, 10, 3)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = MustOpen(t, dir, journalstore.Options{})
			if got := agentsPresent(t, s, 13); !got[10] || !got[11] || !got[12] {
				t.Errorf("agents written after recovery: %v", got[10:])
			}
		})
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptionIsRefused(t *testing.T) {
	tests := []struct {
		name   string
		offset int64 // of the byte to change, from the start of the segment
	}{
		{"BodyOfTheFirstRecord", 100},
		{"HeaderOfTheFirstRecord", 10},
		{"PreviousHashOfTheFirstRecord", 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := journalstore.Open(dir, journalstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			putAgents(t, s, 0, 5)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			path := segments(t, dir)[0]
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			if _, err := f.ReadAt(b, tt.offset); err != nil {
				t.Fatal(err)
			}
			b[0] ^= 0x55
			if _, err := f.WriteAt(b, tt.offset); err != nil {
				t.Fatal(err)
			}
			f.Close()

			s, err = journalstore.Open(dir, journalstore.Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open accepted a journal with a changed record in the middle")
			}
			var ce *journalstore.CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Open: got %v, want a *CorruptError", err)
			}
			if ce.Seq != 1 {
				t.Errorf("corruption reported at record %d, want 1: %v", ce.Seq, err)
			}
		})
	}
}

func TestSecondOpenOfADirectoryFails(t *testing.T) {
	dir := t.TempDir()
	MustOpen(t, dir, journalstore.Options{})
	if s, err := journalstore.Open(dir, journalstore.Options{}); err == nil {
		s.Close()
		t.Fatal("a second Open of one directory succeeded")
	}
}

func TestClosedStoreRefusesCalls(t *testing.T) {
	s, err := journalstore.Open(t.TempDir(), journalstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	putAgents(t, s, 0, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err = s.Update(t.Context(), func(tx market.Tx) error { return nil })
	if !errors.Is(err, journalstore.ErrClosed) {
		t.Errorf("Update after Close: got %v, want ErrClosed", err)
	}
	err = s.View(t.Context(), func(tx market.ReadTx) error { return nil })
	if !errors.Is(err, journalstore.ErrClosed) {
		t.Errorf("View after Close: got %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestZerosAfterAFinishedSegmentAreNotCorruption leaves the zeros the
// journal writes ahead of its records at the end of a segment that has a
// successor, as a crash between starting a segment and cutting the last
// one would, and checks that recovery reads on into the next segment.
func TestZerosAfterAFinishedSegmentAreNotCorruption(t *testing.T) {
	dir := t.TempDir()
	opts := journalstore.Options{SegmentBytes: 2 << 10, SnapshotBytes: -1}
	s, err := journalstore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	putAgents(t, s, 0, 40)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segments(t, dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	appendBytes(t, segs[1], make([]byte, 1<<20))
	s = MustOpen(t, dir, opts)
	for i, ok := range agentsPresent(t, s, 40) {
		if !ok {
			t.Errorf("agent %d is missing", i)
		}
	}
}

// TestLargeValuesSurviveRecoveryAndSnapshots writes values of several
// megabytes, well beyond a snapshot frame, and reads them back after
// recovery from the journal and from a snapshot.
func TestLargeValuesSurviveRecoveryAndSnapshots(t *testing.T) {
	dir := t.TempDir()
	big := json.RawMessage(`"` + strings.Repeat("x", 6<<20) + `"`)
	opts := journalstore.Options{SnapshotBytes: -1}
	s, err := journalstore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(t.Context(), func(tx market.Tx) error {
		if err := tx.PutIntent(market.Intent{ID: "i-big", Buyer: "did:key:zA", Intent: "SORT", Parameters: big}); err != nil {
			return err
		}
		_, err := tx.AppendEvent(market.Event{Type: market.EventIntentPosted, Subject: "i-big", Data: big})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(s market.Store, when string) {
		t.Helper()
		err := s.View(t.Context(), func(tx market.ReadTx) error {
			in, err := tx.Intent("i-big")
			if err != nil {
				return err
			}
			es, err := tx.Events(market.EventFilter{})
			if err != nil {
				return err
			}
			if len(in.Parameters) != len(big) || len(es) != 1 || len(es[0].Data) != len(big) {
				t.Errorf("%s: got parameters of %d bytes and %d events, want %d bytes and one", when, len(in.Parameters), len(es), len(big))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = journalstore.Open(dir, opts)
	if err != nil {
		t.Fatalf("recover from the journal: %v", err)
	}
	check(s, "after replaying the journal")
	if err := s.Snapshot(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = MustOpen(t, dir, opts)
	check(s, "after loading the snapshot")
}
