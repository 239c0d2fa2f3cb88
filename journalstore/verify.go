package journalstore

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// VerifyReport describes a verified store directory. Intents, Contracts
// and Events count those objects in the state at Version.
type VerifyReport struct {
	Snapshot  uint64 `json:"snapshot"` // the version of the newest snapshot, loaded; 0 when there is none
	Segments  int    `json:"segments"` // journal segment files in the directory
	Records   uint64 `json:"records"`  // journal records after the snapshot, replayed onto it
	Changes   uint64 `json:"changes"`  // the changes those records held
	Version   uint64 `json:"version"`  // the newest version: the last record's seq, or the snapshot's
	Head      string `json:"head"`     // hex hash of the last record: the chain's head
	Intents   int64  `json:"intents"`
	Contracts int64  `json:"contracts"`
	Events    int64  `json:"events"`
	TornBytes int64  `json:"torn_bytes"` // bytes after the last whole record: an unacknowledged write, dropped on open
	Open      bool   `json:"open"`       // a process held the directory's lock: the journal may have grown meanwhile
}

// Verify checks the store in dir as Open would recover it, without
// writing to dir: it loads the newest snapshot, checking its frames and
// checksum, then reads every journal record after it, checking each
// record's header, hash and link to the one before (across segments),
// that the sequence runs on from the snapshot's version, and that its
// changes apply to the state as recovery applies them. It returns a
// *CorruptError naming the first bad record, or an error naming what
// else is wrong. A record cut short at the very end of the last segment
// is a write that was never acknowledged: the report counts its bytes
// and Verify succeeds.
//
// Verify neither takes the directory's lock nor deletes a snapshot's
// unfinished temporary file, so it may run beside a server; but the
// journal may then grow or lose segments to a new snapshot while it
// reads, so a definitive answer needs a stopped store or a copy of one
// (Backup). The archive the snapshot points into is copied to an unnamed
// temporary file, which recovery truncates and appends to in place of
// the store's.
func Verify(dir string) (VerifyReport, error) {
	var rep VerifyReport
	if _, err := os.Stat(dir); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	rep.Open = lockHeld(dir)
	snap, err := newestSnapshot(dir)
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	arch, err := scratchArchive(dir, snap.path != "")
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	defer arch.close()
	s := &Store{
		dir:         dir,
		log:         slog.New(slog.DiscardHandler),
		st:          newState(arch),
		hotObjects:  defaultHotObjects,
		hotEvents:   defaultHotEvents,
		hotReceipts: defaultHotReceipts,
	}
	s.w = &writer{s: s.st, now: time.Now}

	// From here on, what recover does, but on the scratch archive and
	// without opening the journal for appending.
	var from position
	if snap.path != "" {
		if from, _, err = s.loadSnapshot(snap.path); err != nil {
			return rep, fmt.Errorf("verify: %w", err)
		}
		rep.Snapshot = from.seq
	}
	res, err := scanJournal(dir, from, func(r *record) error {
		if err := s.replay(r); err != nil {
			return badChanges(dir, r.seq, err)
		}
		rep.Records++
		rep.Changes += uint64(r.count)
		return nil
	})
	if ce := (*CorruptError)(nil); errors.As(err, &ce) {
		return rep, ce
	} else if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	rep.Segments = len(res.segments)
	if rep.Version = res.last.seq; rep.Version > 0 {
		rep.Head = hex.EncodeToString(res.last.hash[:])
	}
	rep.Intents, rep.Contracts, rep.Events = s.st.intents.last, s.st.contracts.last, s.st.events.last
	if rep.TornBytes, err = tornBytes(res); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	return rep, nil
}

// lockHeld reports whether a process has the store open. The probe takes
// a shared lock and drops it at once; a missing LOCK file is not created.
func lockHeld(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "LOCK"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// newestSnapshot finds the newest snapshot in dir, or none. Unlike
// listSnapshots, it leaves a snapshot being written alone.
func newestSnapshot(dir string) (snapshotFile, error) {
	names, err := filepath.Glob(filepath.Join(dir, snapshotPrefix+"*"+snapshotSuffix))
	if err != nil || len(names) == 0 {
		return snapshotFile{}, err
	}
	p := names[len(names)-1] // Glob sorts names, and the numbers are zero-padded
	ver, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), snapshotPrefix), snapshotSuffix), 10, 64)
	if err != nil {
		return snapshotFile{}, fmt.Errorf("snapshot %s: name must hold its version", p)
	}
	return snapshotFile{path: p, ver: ver}, nil
}

// scratchArchive returns an archive in an unnamed temporary file: a copy
// of the store's when a snapshot points into it, or empty, as recovery
// would leave it.
func scratchArchive(dir string, copyStore bool) (*archive, error) {
	f, err := os.CreateTemp("", "agentmarket-verify-*.amc")
	if err != nil {
		return nil, fmt.Errorf("scratch archive: %w", err)
	}
	os.Remove(f.Name()) // the open file lives on, and nothing is left behind
	if copyStore {
		src, err := os.Open(filepath.Join(dir, archiveFile))
		if err == nil {
			_, err = io.Copy(f, src)
			src.Close()
		}
		// A missing archive is left for loading the snapshot to refuse,
		// as Open would.
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			f.Close()
			return nil, fmt.Errorf("copy archive: %w", err)
		}
	}
	return &archive{f: f}, nil
}

// badChanges names the record seq whose changes do not apply: its
// segment, and its offset found by walking that segment's headers.
func badChanges(dir string, seq uint64, err error) error {
	ce := &CorruptError{Seq: seq, Offset: -1, Reason: fmt.Sprintf("changes do not apply: %v", err)}
	segs, lerr := listSegments(dir)
	if lerr != nil {
		return ce
	}
	for _, sg := range segs {
		if sg.first <= seq {
			ce.Segment = sg.path
		}
	}
	f, oerr := os.Open(ce.Segment)
	if oerr != nil {
		return ce
	}
	defer f.Close()
	hdr := make([]byte, headerSize)
	for off := int64(0); ; {
		if _, err := f.ReadAt(hdr, off); err != nil {
			return ce
		}
		h, ok := decodeHeader(hdr)
		if !ok || h.seq > seq {
			return ce
		}
		if h.seq == seq {
			ce.Offset = off
			return ce
		}
		off += headerSize + int64(h.bodyLen)
	}
}

// tornBytes counts the bytes after the last whole record of the last
// segment, unless they are all zeros: space a running journal wrote
// ahead of its records, not a write cut short.
func tornBytes(res scanResult) (int64, error) {
	if res.segment.path == "" {
		return 0, nil
	}
	f, err := os.Open(res.segment.path)
	if err != nil {
		return 0, fmt.Errorf("open journal segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat journal segment: %w", err)
	}
	if fi.Size() <= res.end || zeroTail(f, res.end) {
		return 0, nil
	}
	return fi.Size() - res.end, nil
}
