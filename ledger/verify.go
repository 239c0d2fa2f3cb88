package ledger

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// Report describes a verified journal.
type Report struct {
	Records   uint64 // records in the chain
	Events    uint64 // events replayed
	Accounts  int
	Pending   int    // pending transfers still open
	TornBytes int64  // bytes after the last whole record: an unacknowledged tail
	Head      string // hex hash of the last record: the chain's head
}

// Verify checks the ledger in dir without opening it for writing: every
// record's hash and its link to the one before, that every event applies
// under the rules it was accepted by (funds, mandates, exactly-once
// resolution, ordering), and, at the end, conservation and non-negative
// wallets. It returns a *CorruptError naming the first bad record and
// event, or an error describing a broken invariant.
func Verify(dir string) (Report, error) {
	var rep Report
	path := filepath.Join(dir, journalFile)
	f, err := os.Open(path)
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	s := newState(0)
	s.readAt = func(b []byte, off int64) error {
		_, err := f.ReadAt(b, off)
		return err
	}
	end, last, err := scanJournal(path, s.replayRecord)
	if err != nil {
		return rep, err
	}
	rep.Records, rep.Events = last.seq, s.committed
	rep.Accounts, rep.Pending = len(s.accts), len(s.pending)
	rep.Head = hex.EncodeToString(last.hash[:])
	if fi, err := f.Stat(); err == nil {
		rep.TornBytes = fi.Size() - end
	}
	if err := s.checkInvariants(); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	return rep, nil
}
