package ledger_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentmarket/agentmarket/ledger"
)

// The journal's file name and record header layout, as journal.go
// documents them: a 96-byte header whose bytes 8..16 hold the sequence
// number, 24..28 the body length, 32..64 the previous record's hash and
// 64..96 sha256(header[0:64] || body).
const (
	journalName = "journal.amj"
	headerSize  = 96
)

func journalPath(dir string) string { return filepath.Join(dir, journalName) }

func mustFileSize(t tester, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	return fi.Size()
}

// snapshot is everything a client can read back from a ledger.
type snapshot struct {
	Accounts  []ledger.Account
	Transfers map[ledger.ID]ledger.Transfer
	Status    map[ledger.ID]ledger.PendingStatus
	Mandates  map[ledger.ID]ledger.Mandate
}

// takeSnapshot reads the fixture's accounts and mandates, and every
// transfer among ids.
func takeSnapshot(t tester, l *ledger.Ledger, ids []ledger.ID) snapshot {
	t.Helper()
	s := snapshot{
		Accounts:  mustLookupAccounts(t, l, fixtureAccounts...),
		Transfers: map[ledger.ID]ledger.Transfer{},
		Status:    map[ledger.ID]ledger.PendingStatus{},
		Mandates:  map[ledger.ID]ledger.Mandate{},
	}
	for _, x := range ids {
		got, err := l.LookupTransfer(t.Context(), x)
		if errors.Is(err, ledger.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("lookup transfer %s: %v", x, err)
		}
		s.Transfers[x] = got
		st, err := l.PendingStatus(t.Context(), x)
		if err != nil {
			t.Fatalf("pending status %s: %v", x, err)
		}
		s.Status[x] = st
	}
	for _, n := range fixtureAccounts {
		m, ok, err := l.Mandate(t.Context(), id(n))
		if err != nil {
			t.Fatalf("mandate %d: %v", n, err)
		}
		if ok {
			s.Mandates[id(n)] = m
		}
	}
	return s
}

func idRange(from, to uint64) []ledger.ID {
	var ids []ledger.ID
	for n := from; n <= to; n++ {
		ids = append(ids, id(n))
	}
	return ids
}

// recordEnds walks the journal's headers and returns the offset after each
// whole record: ends[k] is where record k+1 begins, ends[0] being 0.
func recordEnds(t tester, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read journal: %v", err)
	}
	ends := []int64{0}
	for off := int64(0); off+headerSize <= int64(len(b)); {
		off += headerSize + int64(binary.LittleEndian.Uint32(b[off+24:]))
		if off > int64(len(b)) {
			break
		}
		ends = append(ends, off)
	}
	return ends
}

// commitRecords commits each batch on a quiet ledger, which makes one journal
// record of each, and returns the journal's record ends.
func commitRecords(t *testing.T, f *fixture, batches [][]ledger.Transfer) []int64 {
	t.Helper()
	path := journalPath(f.dir)
	before := len(recordEnds(t, path))
	for _, b := range batches {
		mustTransfer(t, f.l, b...)
	}
	ends := recordEnds(t, path)
	if len(ends) != before+len(batches) {
		t.Fatalf("%d batches made %d records", len(batches), len(ends)-before)
	}
	return ends
}

var sampleBatches = [][]ledger.Transfer{
	{plain(10, alice, bob, 100), pending(11, alice, carol, 200, time.Hour)},
	{post(12, 11, 150), pending(13, bob, carol, 50, 0)},
	{linked(plain(14, treasury, carol, 5)), void(15, 13)},
	{plain(16, carol, bob, 30)},
}

func TestRestartPreservesStateExactly(t *testing.T) {
	f := newFixture(t, t.TempDir())
	mustSetMandate(t, f.l, ledger.Mandate{AccountID: id(alice), MaxPerTransfer: 400, Budget: 900, Window: time.Hour,
		Counterparties: []ledger.ID{id(bob), id(carol)}, ExpiresAt: epoch.Add(48 * time.Hour)})
	commitRecords(t, f, sampleBatches)
	mustTransfer(t, f.l, pending(20, alice, bob, 10, time.Minute), pending(21, alice, bob, 20, 0), pending(22, carol, bob, 1, 0))
	f.clock.Advance(2 * time.Minute)
	if n := mustTick(t, f.l); n != 1 {
		t.Fatalf("tick expired %d, want 1", n)
	}
	wantResults(t, f.l, []ledger.Transfer{linked(plain(23, alice, bob, 1)), plain(24, bob, alice, 1<<20)},
		ledger.LinkedEventFailed, ledger.InsufficientFunds)
	ids := idRange(1, 30)
	want := takeSnapshot(t, f.l, ids)
	repBefore, err := ledger.Verify(f.dir)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}

	// The clock going back must not make timestamps go back.
	f.clock.Advance(-time.Hour)
	f.reopen(t)
	got := takeSnapshot(t, f.l, ids)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("state after restart (-before +after):\n%s", diff)
	}
	mustCheckInvariants(t, f.l)
	repAfter, err := ledger.Verify(f.dir)
	if err != nil {
		t.Fatalf("verify after restart: %v", err)
	}
	if diff := cmp.Diff(repBefore, repAfter); diff != "" {
		t.Errorf("verify report changed by a restart (-before +after):\n%s", diff)
	}
	// Records: accounts, funding, mandate, four batches, the reservations
	// and the expiry; the failed chain wrote none. Events: 6 accounts, the
	// funding, the mandate, 7 transfers, 3 reservations and 1 expiry.
	wantReport := ledger.Report{Records: 9, Events: 19, Accounts: len(fixtureAccounts), Pending: 2, Head: repBefore.Head}
	if diff := cmp.Diff(wantReport, repBefore); diff != "" {
		t.Errorf("verify report (-want +got):\n%s", diff)
	}

	mustTransfer(t, f.l, plain(30, alice, bob, 1))
	last := mustLookupTransfer(t, f.l, 30).Timestamp
	for x, tr := range want.Transfers {
		if tr.Timestamp >= last {
			t.Errorf("transfer %s stamped %d, not before the post-restart transfer's %d", x, tr.Timestamp, last)
		}
	}
	// The ledger keeps going where it stopped: the open reservation with
	// a timeout still expires, and resolves exactly once.
	wantResults(t, f.l, []ledger.Transfer{post(31, 21, 0), void(32, 21)}, ledger.OK, ledger.PendingAlreadyPosted)
}

func TestTornTailIsDropped(t *testing.T) {
	tests := []struct {
		name string
		// tear damages the journal, whose records end at ends, and
		// returns how many whole records remain.
		tear func(t *testing.T, path string, ends []int64) int
	}{
		{"TruncatedInsideTheLastBody", func(t *testing.T, path string, ends []int64) int {
			mustTruncate(t, path, ends[len(ends)-2]+headerSize+5)
			return len(ends) - 2
		}},
		{"TruncatedInsideTheLastHeader", func(t *testing.T, path string, ends []int64) int {
			mustTruncate(t, path, ends[len(ends)-2]+10)
			return len(ends) - 2
		}},
		{"LastBodyMissing", func(t *testing.T, path string, ends []int64) int {
			mustTruncate(t, path, ends[len(ends)-2]+headerSize)
			return len(ends) - 2
		}},
		{"LastRecordHalfWrittenAsZeros", func(t *testing.T, path string, ends []int64) int {
			start, end := ends[len(ends)-2], ends[len(ends)-1]
			mid := start + (end-start)/2
			mustWriteAt(t, path, make([]byte, end-mid), mid)
			return len(ends) - 2
		}},
		{"GarbageAppended", func(t *testing.T, path string, ends []int64) int {
			junk := make([]byte, 1000)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range junk {
				junk[i] = byte(rng.Uint32())
			}
			mustWriteAt(t, path, junk, ends[len(ends)-1])
			return len(ends) - 1
		}},
		{"ZerosAppended", func(t *testing.T, path string, ends []int64) int {
			mustWriteAt(t, path, make([]byte, 4096), ends[len(ends)-1])
			return len(ends) - 1
		}},
		{"AHeaderOfTheNextRecordAppended", func(t *testing.T, path string, ends []int64) int {
			// The first bytes of a record that looks valid, as if the
			// header reached the disk and the body did not.
			b := mustReadFile(t, path)
			hdr := slices.Clone(b[ends[len(ends)-2]:][:headerSize])
			binary.LittleEndian.PutUint64(hdr[8:], uint64(len(ends)))
			mustWriteAt(t, path, hdr, ends[len(ends)-1])
			return len(ends) - 1
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, t.TempDir())
			ends := commitRecords(t, f, sampleBatches[:2])
			// What a client saw after each record, by record count.
			states := map[int]snapshot{len(ends) - 1: takeSnapshot(t, f.l, idRange(1, 20))}
			mustClose(t, f.l)
			// Rebuild the state before the last record on a second ledger.
			g := newFixture(t, t.TempDir())
			commitRecords(t, g, sampleBatches[:1])
			states[len(ends)-2] = takeSnapshot(t, g.l, idRange(1, 20))
			mustClose(t, g.l)

			path := journalPath(f.dir)
			records := tc.tear(t, path, ends)
			valid := ends[records]
			torn := mustFileSize(t, path) - valid

			rep, err := ledger.Verify(f.dir)
			if err != nil {
				t.Fatalf("verify a torn journal: %v", err)
			}
			if rep.TornBytes != torn || rep.Records != uint64(records) {
				t.Fatalf("verify: %d records and %d torn bytes, want %d and %d", rep.Records, rep.TornBytes, records, torn)
			}

			f.l = mustOpen(t, f.dir, ledger.Options{Now: f.clock.Now})
			if got := mustFileSize(t, path); got != valid {
				t.Errorf("journal is %d bytes after open, want the torn tail cut at %d", got, valid)
			}
			want := states[records]
			if diff := cmp.Diff(want, takeSnapshot(t, f.l, idRange(1, 20))); diff != "" {
				t.Fatalf("state after recovery (-want +got):\n%s", diff)
			}
			wantAccountTransfers(t, f.l, alice, want)

			// The ledger appends after the cut, and that survives.
			mustTransfer(t, f.l, plain(40, alice, bob, 7))
			f.reopen(t)
			if got := mustLookupTransfer(t, f.l, 40).Amount; got != 7 {
				t.Errorf("transfer after recovery: amount %d", got)
			}
			mustClose(t, f.l)
			if rep, err := ledger.Verify(f.dir); err != nil || rep.TornBytes != 0 {
				t.Errorf("verify after recovery: %+v, %v", rep, err)
			}
		})
	}
}

// wantAccountTransfers checks the projection's history of an account
// against the transfers in a snapshot.
func wantAccountTransfers(t tester, l *ledger.Ledger, account uint64, s snapshot) {
	t.Helper()
	var want []ledger.Transfer
	for _, x := range s.Transfers {
		if x.DebitAccountID == id(account) || x.CreditAccountID == id(account) {
			want = append(want, x)
		}
	}
	slices.SortFunc(want, func(a, b ledger.Transfer) int { return int(a.Timestamp - b.Timestamp) })
	got, err := l.AccountTransfers(t.Context(), id(account), ledger.TransferPage{Limit: ledger.MaxBatch})
	if err != nil {
		t.Fatalf("account transfers: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("account %d transfers (-want +got):\n%s", account, diff)
	}
}

func mustTruncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustWriteAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// reseal recomputes the hash of the record at off in b.
func reseal(b []byte, off int64) {
	rec := b[off:]
	n := binary.LittleEndian.Uint32(rec[24:])
	h := sha256.New()
	h.Write(rec[:64])
	h.Write(rec[headerSize : headerSize+int(n)])
	copy(rec[64:96], h.Sum(nil))
}

func TestCorruptionIsReported(t *testing.T) {
	tests := []struct {
		name string
		// damage changes the journal b, whose records end at ends, and
		// returns the error Open and Verify must report.
		damage func(b []byte, ends []int64) ledger.CorruptError
	}{
		{"FlippedByteInAnEarlyBody", func(b []byte, ends []int64) ledger.CorruptError {
			b[ends[1]+headerSize+20] ^= 0x40
			return ledger.CorruptError{Seq: 2, Offset: ends[1], Event: -1}
		}},
		{"FlippedByteInAnEarlyHeaderTime", func(b []byte, ends []int64) ledger.CorruptError {
			b[ends[2]+17] ^= 0x01
			return ledger.CorruptError{Seq: 3, Offset: ends[2], Event: -1}
		}},
		{"FlippedByteInAnEarlySequenceNumber", func(b []byte, ends []int64) ledger.CorruptError {
			b[ends[2]+8] ^= 0x10
			return ledger.CorruptError{Seq: 3, Offset: ends[2], Event: -1}
		}},
		{"FlippedByteInAnEarlyPreviousHash", func(b []byte, ends []int64) ledger.CorruptError {
			b[ends[2]+40] ^= 0x01
			return ledger.CorruptError{Seq: 3, Offset: ends[2], Event: -1}
		}},
		{"FlippedByteInAnEarlyHash", func(b []byte, ends []int64) ledger.CorruptError {
			b[ends[2]+70] ^= 0x01
			return ledger.CorruptError{Seq: 3, Offset: ends[2], Event: -1}
		}},
		{"FlippedByteInAnEarlyMagic", func(b []byte, ends []int64) ledger.CorruptError {
			b[ends[2]] ^= 0x01
			return ledger.CorruptError{Seq: 3, Offset: ends[2], Event: -1}
		}},
		{"EarlyRecordRewrittenAndResealed", func(b []byte, ends []int64) ledger.CorruptError {
			// Whoever rewrites a record must rewrite every later one:
			// the next record's link gives the rewrite away.
			b[ends[2]+headerSize+20] ^= 0x40
			reseal(b, ends[2])
			return ledger.CorruptError{Seq: 4, Offset: ends[3], Event: -1}
		}},
		{"RecordsSwapped", func(b []byte, ends []int64) ledger.CorruptError {
			r3, r4 := slices.Clone(b[ends[2]:ends[3]]), slices.Clone(b[ends[3]:ends[4]])
			copy(b[ends[2]:], r4)
			copy(b[ends[2]+int64(len(r4)):], r3)
			return ledger.CorruptError{Seq: 4, Offset: ends[2], Event: -1}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, t.TempDir())
			ends := commitRecords(t, f, sampleBatches)
			want := takeSnapshot(t, f.l, idRange(1, 20))
			mustClose(t, f.l)
			path := journalPath(f.dir)
			good := mustReadFile(t, path)
			bad := slices.Clone(good)
			wantErr := tc.damage(bad, ends)
			if err := os.WriteFile(path, bad, 0o644); err != nil {
				t.Fatal(err)
			}

			_, err := ledger.Open(f.dir, ledger.Options{Now: f.clock.Now})
			wantCorrupt(t, "open", err, wantErr)
			_, err = ledger.Verify(f.dir)
			wantCorrupt(t, "verify", err, wantErr)

			// A failed Open changes nothing: with the damage undone the
			// ledger opens whole.
			if got := mustReadFile(t, path); !slices.Equal(got, bad) {
				t.Fatalf("open changed a corrupt journal")
			}
			if err := os.WriteFile(path, good, 0o644); err != nil {
				t.Fatal(err)
			}
			f.l = mustOpen(t, f.dir, ledger.Options{Now: f.clock.Now})
			if diff := cmp.Diff(want, takeSnapshot(t, f.l, idRange(1, 20))); diff != "" {
				t.Errorf("state after repair (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("ReplayedRecordIsRejected", func(t *testing.T) {
		// A copy of an old record, appended with a valid header and link,
		// passes the chain; replay must still refuse to apply its
		// transfers twice.
		f := newFixture(t, t.TempDir())
		ends := commitRecords(t, f, sampleBatches)
		mustClose(t, f.l)
		path := journalPath(f.dir)
		b := mustReadFile(t, path)
		n := len(ends) - 1
		last := b[ends[n-1]:ends[n]]
		dup := slices.Clone(b[ends[2]:ends[3]])
		binary.LittleEndian.PutUint64(dup[8:], uint64(n+1))
		copy(dup[32:64], last[64:96])
		reseal(dup, 0)
		mustWriteAt(t, path, dup, ends[n])
		wantErr := ledger.CorruptError{Seq: uint64(n + 1), Offset: ends[n], Event: 0}
		_, err := ledger.Verify(f.dir)
		wantCorrupt(t, "verify", err, wantErr)
		_, err = ledger.Open(f.dir, ledger.Options{})
		wantCorrupt(t, "open", err, wantErr)
	})
}

func wantCorrupt(t *testing.T, op string, err error, want ledger.CorruptError) {
	t.Helper()
	var ce *ledger.CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: got %v, want a *ledger.CorruptError", op, err)
	}
	if ce.Reason == "" {
		t.Errorf("%s: corrupt error without a reason", op)
	}
	got := *ce
	got.Reason = ""
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: %v (-want +got):\n%s", op, err, diff)
	}
}

func TestSecondOpenFails(t *testing.T) {
	f := newFixture(t, t.TempDir())
	size := mustFileSize(t, journalPath(f.dir))
	if l, err := ledger.Open(f.dir, ledger.Options{}); err == nil {
		l.Close()
		t.Fatal("a second Open of an open directory succeeded")
	}
	if got := mustFileSize(t, journalPath(f.dir)); got != size {
		t.Fatalf("a failed Open changed the journal from %d to %d bytes", size, got)
	}
	// The first ledger goes on, and the directory opens once it closes.
	mustTransfer(t, f.l, plain(10, alice, bob, 5))
	f.reopen(t)
	if got := mustLookupTransfer(t, f.l, 10).Amount; got != 5 {
		t.Errorf("amount %d after reopen, want 5", got)
	}
}

func TestVerifyEmptyLedger(t *testing.T) {
	dir := t.TempDir()
	mustClose(t, mustOpen(t, dir, ledger.Options{}))
	rep, err := ledger.Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 0 || rep.Events != 0 || rep.TornBytes != 0 {
		t.Errorf("verify an empty ledger: %+v", rep)
	}
	if _, err := ledger.Verify(filepath.Join(dir, "missing")); err == nil {
		t.Error("verify a directory without a journal succeeded")
	}
}

func TestAccountTransfers(t *testing.T) {
	f := newFixture(t, t.TempDir())
	mustTransfer(t, f.l, plain(2, treasury, carol, 1000))
	// want is alice's history in ledger order, as LookupTransfer has it.
	want := []ledger.Transfer{mustLookupTransfer(t, f.l, 1)}
	readBack := func(ns ...uint64) {
		t.Helper()
		for _, n := range ns {
			want = append(want, mustLookupTransfer(t, f.l, n))
		}
	}
	n := uint64(100)
	for i := range 12 {
		var batch []ledger.Transfer
		var mine []uint64
		switch i % 4 {
		case 0:
			batch = []ledger.Transfer{plain(n, alice, bob, 3), plain(n+1, treasury, bob, 9), plain(n+2, carol, alice, 2)}
			mine = []uint64{n, n + 2}
		case 1:
			batch = []ledger.Transfer{pending(n, alice, bob, 10, 0), post(n+1, n, 4)}
			mine = []uint64{n, n + 1}
		case 2:
			batch = []ledger.Transfer{pending(n, carol, alice, 10, 0), void(n+1, n), plain(n+2, bob, carol, 1)}
			mine = []uint64{n, n + 1}
		case 3:
			batch = []ledger.Transfer{linked(plain(n, alice, carol, 1)), plain(n+1, alice, treasury, 1)}
			mine = []uint64{n, n + 1}
		}
		mustTransfer(t, f.l, batch...)
		readBack(mine...)
		n += 10
		// Read your writes: the history has the batch at once.
		got, err := f.l.AccountTransfers(t.Context(), id(alice), ledger.TransferPage{Limit: ledger.MaxBatch})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("after batch %d (-want +got):\n%s", i, diff)
		}
	}
	wantResults(t, f.l, []ledger.Transfer{plain(n, alice, bob, 1<<30)}, ledger.InsufficientFunds)

	pages := func(limit int) []ledger.Transfer {
		t.Helper()
		var all []ledger.Transfer
		page := ledger.TransferPage{Limit: limit}
		for range 100 {
			got, err := f.l.AccountTransfers(t.Context(), id(alice), page)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > limit {
				t.Fatalf("page of %d with limit %d", len(got), limit)
			}
			if len(got) == 0 {
				return all
			}
			all = append(all, got...)
			page.After = got[len(got)-1].Timestamp
		}
		t.Fatal("paging did not end")
		return nil
	}
	check := func(stage string) {
		t.Helper()
		for _, limit := range []int{1, 7, len(want), 1000} {
			if diff := cmp.Diff(want, pages(limit)); diff != "" {
				t.Errorf("%s, pages of %d (-want +got):\n%s", stage, limit, diff)
			}
		}
		got, err := f.l.AccountTransfers(t.Context(), id(alice), ledger.TransferPage{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s, default page (-want +got):\n%s", stage, diff)
		}
		got, err = f.l.AccountTransfers(t.Context(), id(alice), ledger.TransferPage{After: want[len(want)-1].Timestamp})
		if err != nil || len(got) != 0 {
			t.Errorf("%s, page after the last: %v, %v", stage, got, err)
		}
		got, err = f.l.AccountTransfers(t.Context(), id(77), ledger.TransferPage{})
		if err != nil || len(got) != 0 {
			t.Errorf("%s, unknown account: %v, %v", stage, got, err)
		}
	}
	check("live")
	f.reopen(t)
	check("after restart")

	// The projection is derived: deleted, it is rebuilt from the journal.
	mustClose(t, f.l)
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(f.dir, "ledger.db"+suffix)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	f.l = mustOpen(t, f.dir, ledger.Options{Now: f.clock.Now})
	check("after rebuild")
}

func TestAccountTransfersDefaultLimit(t *testing.T) {
	f := newFixture(t, t.TempDir())
	var batch []ledger.Transfer
	for i := range 150 {
		batch = append(batch, plain(uint64(100+i), alice, bob, 1))
	}
	mustTransfer(t, f.l, batch...)
	got, err := f.l.AccountTransfers(t.Context(), id(bob), ledger.TransferPage{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 || got[0].ID != id(100) || got[99].ID != id(199) {
		t.Errorf("default page: %d transfers", len(got))
	}
}

func TestProjectionDisabled(t *testing.T) {
	l := mustOpen(t, t.TempDir(), ledger.Options{NoProjection: true})
	if _, err := l.AccountTransfers(t.Context(), id(1), ledger.TransferPage{}); err == nil {
		t.Error("AccountTransfers without a projection succeeded")
	}
}
