package ledger

import "os"

// FailJournalWrites makes every later journal write of l fail, as when the
// disk under a running ledger turns read-only: it swaps the journal's file
// descriptor for a read-only one on the same file. Call it while no call
// on l is in flight.
func FailJournalWrites(l *Ledger) error {
	f, err := os.Open(l.file.Name())
	if err != nil {
		return err
	}
	old := l.file
	l.file = f
	return old.Close()
}
