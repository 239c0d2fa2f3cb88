package journalstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Backup writes a copy of the store into the directory dst, which must
// be empty or not exist, while the store goes on serving. The copy is the
// store at one durable version, the newest when Backup takes the
// snapshot lock, so it holds every Update acknowledged before Backup was
// called; Open recovers it as it would the store after a crash.
//
// The copy is the newest snapshot, the part of the archive it points
// into, and the journal segments after it, with the last one cut after
// that version's record. Snapshots are what delete segments, so Backup
// holds the snapshot lock while it copies: a snapshot triggered meanwhile
// waits, and Updates do not. Close cancels a Backup, which then returns
// an error; a Backup that fails deletes what it wrote. Backup returns ErrClosed on a closed
// store.
func (s *Store) Backup(ctx context.Context, dst string) error {
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	if err := emptyDir(dst); err != nil {
		return fmt.Errorf("backup store %s: %w", s.dir, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.closeCtx, cancel)
	defer stop()
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if err := s.backup(ctx, dst); err != nil {
		clearDir(dst)
		return fmt.Errorf("backup store %s to %s: %w", s.dir, dst, err)
	}
	return nil
}

// backup copies the files; the caller holds snapMu, so no snapshot is
// written or deleted and no segment is deleted meanwhile.
func (s *Store) backup(ctx context.Context, dst string) error {
	s.mu.Lock()
	p := s.pub
	s.mu.Unlock()
	snaps, err := listSnapshots(s.dir)
	if err != nil {
		return err
	}
	var from uint64 // the version of the snapshot copied; 0 when there is none
	if len(snaps) > 0 {
		newest := snaps[len(snaps)-1]
		from = newest.ver
		if err := copyFile(ctx, newest.path, filepath.Join(dst, filepath.Base(newest.path))); err != nil {
			return err
		}
		// The archive below what the snapshot relies on is synced and never
		// changes; bytes past it are cut when the copy opens.
		if err := copyFile(ctx, filepath.Join(s.dir, archiveFile), filepath.Join(dst, archiveFile)); err != nil {
			return err
		}
	}
	segs, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	var copied segment // the last segment copied, in dst
	for i, sg := range segs {
		if i+1 < len(segs) && segs[i+1].first <= from+1 {
			continue // wholly before the snapshot
		}
		if sg.first > p.pos.seq {
			break // after the version copied
		}
		copied = segment{path: filepath.Join(dst, filepath.Base(sg.path)), first: sg.first}
		if err := copyFile(ctx, sg.path, copied.path); err != nil {
			return err
		}
	}
	if copied.path != "" {
		// The last segment copied may be the one the writer appends to:
		// keep its records up to the version copied, and nothing
		// half-written or written ahead after them.
		if err := cutSegment(copied.path, copied.first, p.pos.seq); err != nil {
			return err
		}
	}
	return syncDir(dst)
}

// emptyDir makes sure dir exists and holds nothing.
func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create backup dir: %w", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open backup dir: %w", err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("backup dir %s is not empty", dir)
	}
	return nil
}

// clearDir deletes what a failed Backup wrote into dir, which was empty.
func clearDir(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, n := range names {
		os.Remove(n)
	}
}

// copyFile copies src to a new file dst and syncs it, checking ctx
// between chunks.
func copyFile(ctx context.Context, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			out.Close()
			return err
		}
		n, rerr := in.Read(buf)
		if _, err := out.Write(buf[:n]); err != nil {
			out.Close()
			return fmt.Errorf("copy %s: %w", src, err)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			out.Close()
			return fmt.Errorf("copy %s: %w", src, rerr)
		}
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// cutSegment truncates a copied segment whose first record is first
// after its record last. The records up to last were durable before the
// copy began, so they are whole in it; what follows may be a record
// half-written while the copy read it, or zeros written ahead.
func cutSegment(path string, first, last uint64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("cut segment: %w", err)
	}
	defer f.Close()
	var off int64
	hdr := make([]byte, headerSize)
	for seq := first; seq <= last; seq++ {
		if _, err := f.ReadAt(hdr, off); err != nil {
			return fmt.Errorf("cut segment %s: record %d: %w", path, seq, errors.Join(errCorrupt, err))
		}
		h, ok := decodeHeader(hdr)
		if !ok || h.seq != seq {
			return fmt.Errorf("cut segment %s: no record %d at offset %d: %w", path, seq, off, errCorrupt)
		}
		off += headerSize + int64(h.bodyLen)
	}
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("cut segment: %w", err)
	}
	return f.Sync()
}
