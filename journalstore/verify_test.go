package journalstore_test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/journalstore"
	"github.com/agentmarket/agentmarket/market"
)

// verifyReadOnly runs Verify on dir and fails the test if it changed,
// created or deleted any file there.
func verifyReadOnly(t *testing.T, dir string) (journalstore.VerifyReport, error) {
	t.Helper()
	before := dirContents(t, dir)
	rep, err := journalstore.Verify(dir)
	if d := cmp.Diff(before, dirContents(t, dir)); d != "" {
		t.Errorf("Verify changed the directory (-before +after):\n%s", d)
	}
	return rep, err
}

// dirContents maps each file in dir to its size and the hash of its bytes.
func dirContents(t *testing.T, dir string) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = fmt.Sprintf("%d bytes, sha256 %x", len(b), sha256.Sum256(b))
	}
	return out
}

// recordOffsets returns where each record of a closed store's segment
// starts, and the segment's length.
func recordOffsets(t *testing.T, path string) (offs []int64, size int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < int64(len(b)); {
		offs = append(offs, off)
		off += 96 + int64(binary.LittleEndian.Uint32(b[off+24:]))
	}
	return offs, int64(len(b))
}

// closedStoreWithAgents writes n agents, one record each, to a new store
// and closes it.
func closedStoreWithAgents(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s, err := journalstore.Open(dir, journalstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	putAgents(t, s, 0, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestVerify(t *testing.T) {
	t.Run("ClosedStoreCountsEveryRecord", func(t *testing.T) {
		dir := closedStoreWithAgents(t, 5)
		rep, err := verifyReadOnly(t, dir)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		want := journalstore.VerifyReport{Segments: 1, Records: 5, Changes: 5, Version: 5, Head: rep.Head}
		if d := cmp.Diff(want, rep); d != "" || len(rep.Head) != 64 {
			t.Errorf("report (-want +got):\n%s", d)
		}
	})

	t.Run("EmptyDirectoryIsAnEmptyStore", func(t *testing.T) {
		rep, err := verifyReadOnly(t, t.TempDir())
		if err != nil || rep != (journalstore.VerifyReport{}) {
			t.Errorf("Verify of an empty directory: %+v, %v", rep, err)
		}
	})

	t.Run("ByteChangedInTheMiddleNamesTheRecord", func(t *testing.T) {
		dir := closedStoreWithAgents(t, 5)
		path := segments(t, dir)[0]
		offs, _ := recordOffsets(t, path)
		flipByte(t, path, offs[2]+96+3) // in the body of record 3
		_, err := verifyReadOnly(t, dir)
		var ce *journalstore.CorruptError
		if !errors.As(err, &ce) {
			t.Fatalf("Verify: got %v, want a *CorruptError", err)
		}
		if ce.Seq != 3 || ce.Offset != offs[2] || ce.Segment != path {
			t.Errorf("corruption reported at %s record %d offset %d, want %s record 3 offset %d", ce.Segment, ce.Seq, ce.Offset, path, offs[2])
		}
	})

	t.Run("TruncatedLastRecordIsATornTail", func(t *testing.T) {
		dir := closedStoreWithAgents(t, 5)
		path := segments(t, dir)[0]
		offs, size := recordOffsets(t, path)
		if err := os.Truncate(path, size-10); err != nil {
			t.Fatal(err)
		}
		rep, err := verifyReadOnly(t, dir)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if rep.Records != 4 || rep.Version != 4 || rep.TornBytes != size-10-offs[4] {
			t.Errorf("got %d records to version %d, %d torn bytes; want 4, 4, %d", rep.Records, rep.Version, rep.TornBytes, size-10-offs[4])
		}
	})

	t.Run("ChangesThatDoNotDecodeNameTheRecord", func(t *testing.T) {
		// The last record's first change gets an unknown op, and its hash
		// is sealed again, as a bug in the writer would have left it.
		dir := closedStoreWithAgents(t, 5)
		path := segments(t, dir)[0]
		offs, _ := recordOffsets(t, path)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rec := b[offs[4]:]
		rec[96] = 0xff
		d := sha256.New()
		d.Write(rec[:64])
		d.Write(rec[96:])
		copy(rec[64:96], d.Sum(nil))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = verifyReadOnly(t, dir)
		var ce *journalstore.CorruptError
		if !errors.As(err, &ce) || ce.Seq != 5 || ce.Offset != offs[4] || !strings.Contains(ce.Reason, "changes do not apply") {
			t.Errorf("Verify: got %v, want record 5 at offset %d named for its changes", err, offs[4])
		}
	})

	t.Run("AfterASnapshotWalksFromIt", func(t *testing.T) {
		dir := t.TempDir()
		s, err := journalstore.Open(dir, journalstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		putAgents(t, s, 0, 5)
		if err := s.Snapshot(t.Context()); err != nil {
			t.Fatal(err)
		}
		putAgents(t, s, 5, 3)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		rep, err := verifyReadOnly(t, dir)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if rep.Snapshot != 5 || rep.Records != 3 || rep.Version != 8 {
			t.Errorf("got snapshot %d, %d records to version %d; want 5, 3, 8", rep.Snapshot, rep.Records, rep.Version)
		}
	})

	t.Run("ArchivedValuesReplayOntoTheSnapshot", func(t *testing.T) {
		// Cancelled intents go cold at once, and enough of them fill the
		// archive's file; after the snapshot one changes again, so replay
		// reads its value back from the archive the snapshot points into.
		dir := t.TempDir()
		opts := journalstore.Options{HotObjects: 1, HotEvents: 1, SnapshotBytes: -1}
		s, err := journalstore.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		params := json.RawMessage(`"` + strings.Repeat("x", 128<<10) + `"`)
		intent := func(n int, state market.IntentState) market.Intent {
			return market.Intent{ID: fmt.Sprintf("i-%d", n), RequestID: fmt.Sprintf("r-%d", n), Buyer: "did:key:zA",
				Intent: "SORT", Parameters: params, State: state}
		}
		put := func(in market.Intent) {
			t.Helper()
			if err := s.Update(t.Context(), func(tx market.Tx) error { return tx.PutIntent(in) }); err != nil {
				t.Fatal(err)
			}
		}
		for n := range 12 {
			put(intent(n, market.IntentCancelled))
		}
		if err := s.Snapshot(t.Context()); err != nil {
			t.Fatal(err)
		}
		put(intent(0, market.IntentExpired))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(dir, "archive.amc")); err != nil || fi.Size() == 0 {
			t.Fatalf("the archive's file holds nothing (%v): the test would not read it", err)
		}
		rep, err := verifyReadOnly(t, dir)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if rep.Snapshot != 12 || rep.Records != 1 || rep.Version != 13 || rep.Intents != 12 {
			t.Errorf("report %+v: want snapshot 12, 1 record, version 13, 12 intents", rep)
		}
	})

	t.Run("OpenStoreIsReadBeside", func(t *testing.T) {
		dir := t.TempDir()
		s := MustOpen(t, dir, journalstore.Options{})
		putAgents(t, s, 0, 3)
		rep, err := verifyReadOnly(t, dir)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if !rep.Open || rep.Records != 3 || rep.TornBytes != 0 {
			t.Errorf("report %+v: want the store seen open, 3 records and the space written ahead not counted as torn", rep)
		}
		putAgents(t, s, 3, 1) // the store still writes: Verify took no lock
	})
}

// flipByte changes the byte at off in the file at path.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x55
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
