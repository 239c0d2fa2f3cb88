package journalstore

import (
	"encoding/binary"
	"fmt"
	"os"
)

// The archive holds the values of cold objects, so that memory holds only
// what hot work needs: a settled contract's value goes to the archive,
// and memory keeps its index entries and where its value is. The archive
// is one append-only file of length-prefixed encodings, archive.amc. It is
// a cache, not a source of truth: the journal holds every value, Open
// truncates the archive and the store archives again as it recovers. So
// the archive is never synced.
//
// The writer appends under the state's lock into a buffer and writes the
// buffer to the file when it grows past archiveFlush; readers read the
// file, or the buffer under the state's read lock.
const (
	archiveFile  = "archive.amc"
	archiveFlush = 1 << 20
	archiveRead  = 4096 // most values fit one read of this size
)

type archive struct {
	f       *os.File
	flushed int64  // bytes in the file
	buf     []byte // bytes after flushed, not yet in the file
}

// openArchive opens the archive; recovery truncates it to what the
// snapshot it loads relies on, or to nothing.
func openArchive(path string) (*archive, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	return &archive{f: f}, nil
}

// truncate cuts the archive to its first n bytes, which must be in the
// file; it is for recovery, before anything reads the archive.
func (a *archive) truncate(n int64) error {
	fi, err := a.f.Stat()
	if err != nil {
		return fmt.Errorf("truncate archive: %w", err)
	}
	if fi.Size() < n {
		return fmt.Errorf("archive has %d bytes; the snapshot needs %d: %w", fi.Size(), n, errCorrupt)
	}
	if err := a.f.Truncate(n); err != nil {
		return fmt.Errorf("truncate archive: %w", err)
	}
	a.flushed, a.buf = n, a.buf[:0]
	return nil
}

// add appends an encoding and returns where it is. The caller holds the
// state's lock for writing.
func (a *archive) add(b []byte) int64 {
	off := a.flushed + int64(len(a.buf))
	a.buf = binary.LittleEndian.AppendUint32(a.buf, uint32(len(b)))
	a.buf = append(a.buf, b...)
	return off
}

// pending reports whether the buffer should be written to the file.
func (a *archive) pending() bool { return len(a.buf) >= archiveFlush }

// write writes the buffer to the file. Only the writer goroutine calls
// it, without the lock: it only reads the buffer, as readers do. Then
// it calls written with the lock held.
func (a *archive) write() (int, error) {
	if _, err := a.f.WriteAt(a.buf, a.flushed); err != nil {
		return 0, fmt.Errorf("write archive: %w", err)
	}
	return len(a.buf), nil
}

// written records that n bytes of the buffer are in the file. The caller
// holds the state's lock for writing.
func (a *archive) written(n int) {
	a.flushed += int64(n)
	a.buf = append(a.buf[:0], a.buf[n:]...)
}

// read returns the encoding at off. The caller holds the state's lock,
// for reading at least, or is the writer.
func (a *archive) read(off int64) ([]byte, error) {
	if off >= a.flushed {
		b := a.buf[off-a.flushed:]
		n := binary.LittleEndian.Uint32(b)
		return b[4 : 4+n], nil
	}
	b := make([]byte, archiveRead)
	got, err := a.f.ReadAt(b, off)
	if got < 4 {
		return nil, fmt.Errorf("read archive at %d: %w", off, err)
	}
	n := int(binary.LittleEndian.Uint32(b))
	if 4+n <= got {
		return b[4 : 4+n], nil
	}
	b = make([]byte, n)
	if _, err := a.f.ReadAt(b, off+4); err != nil {
		return nil, fmt.Errorf("read archive at %d: %w", off, err)
	}
	return b, nil
}

func (a *archive) close() error { return a.f.Close() }
