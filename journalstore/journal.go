package journalstore

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// The journal is a sequence of segment files, journal-<first seq>.amj,
// each an append-only run of records. A record is a 96-byte header and a
// body of changes, as in the ledger's journal:
//
//	0  magic "AMS1"      4  version, reserved
//	8  seq               16 record time (unix ns)
//	24 body length       28 change count
//	32 previous record's hash
//	64 hash = sha256(header[0:64] || body)
//
// Each record's hash covers the previous record's hash, across segments,
// so the journal is one hash chain: changing, dropping or reordering an
// acknowledged change breaks every hash after it. The hash also detects a
// torn write at the tail. Record seq n holds version n of the state.
const (
	headerSize    = 96
	journalMagic  = 0x31534d41 // "AMS1" little-endian
	journalVer    = 1
	segmentPrefix = "journal-"
	segmentSuffix = ".amj"
)

type header struct {
	seq      uint64
	time     int64
	bodyLen  uint32
	count    uint32
	prevHash [32]byte
	hash     [32]byte
}

func (h *header) encode(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], journalMagic)
	binary.LittleEndian.PutUint16(b[4:], journalVer)
	binary.LittleEndian.PutUint16(b[6:], 0)
	binary.LittleEndian.PutUint64(b[8:], h.seq)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.time))
	binary.LittleEndian.PutUint32(b[24:], h.bodyLen)
	binary.LittleEndian.PutUint32(b[28:], h.count)
	copy(b[32:64], h.prevHash[:])
	copy(b[64:96], h.hash[:])
}

// decodeHeader parses a header; ok is false when b is not a header. A
// record's body may be as long as its length field allows: readers check
// the length against the bytes the file holds before they allocate.
func decodeHeader(b []byte) (h header, ok bool) {
	if len(b) < headerSize || binary.LittleEndian.Uint32(b[0:]) != journalMagic ||
		binary.LittleEndian.Uint16(b[4:]) != journalVer {
		return h, false
	}
	h.seq = binary.LittleEndian.Uint64(b[8:])
	h.time = int64(binary.LittleEndian.Uint64(b[16:]))
	h.bodyLen = binary.LittleEndian.Uint32(b[24:])
	h.count = binary.LittleEndian.Uint32(b[28:])
	copy(h.prevHash[:], b[32:64])
	copy(h.hash[:], b[64:96])
	return h, true
}

// sealRecord fills in the header of rec (header then body) and returns
// its hash.
func sealRecord(rec []byte, seq uint64, t int64, count int, prev [32]byte) [32]byte {
	h := header{seq: seq, time: t, bodyLen: uint32(len(rec) - headerSize), count: uint32(count), prevHash: prev}
	h.encode(rec)
	h.hash = recordHash(rec)
	copy(rec[64:96], h.hash[:])
	return h.hash
}

func recordHash(rec []byte) [32]byte { return hashRecord(rec[:headerSize], rec[headerSize:]) }

// hashRecord is recordHash of a record read as a header and a body.
func hashRecord(hdr, body []byte) [32]byte {
	d := sha256.New()
	d.Write(hdr[:64])
	d.Write(body)
	var sum [32]byte
	d.Sum(sum[:0])
	return sum
}

// CorruptError names the first bad place in a journal: a record that is
// not whole and valid with more records after it, or a break in the
// chain. A torn record at the very end is not corruption: it was never
// acknowledged, and recovery drops it.
type CorruptError struct {
	Segment string // the segment file
	Offset  int64  // offset of the bad record in it
	Seq     uint64 // the record's place in the chain
	Reason  string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal %s record %d (offset %d): %s", e.Segment, e.Seq, e.Offset, e.Reason)
}

// segment is one journal file.
type segment struct {
	path  string
	first uint64 // the seq of its first record, from its name
}

func segmentName(first uint64) string {
	return fmt.Sprintf("%s%020d%s", segmentPrefix, first, segmentSuffix)
}

// listSegments returns the journal's segments in order.
func listSegments(dir string) ([]segment, error) {
	names, err := filepath.Glob(filepath.Join(dir, segmentPrefix+"*"+segmentSuffix))
	if err != nil {
		return nil, fmt.Errorf("list journal segments: %w", err)
	}
	var segs []segment
	for _, p := range names {
		num := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), segmentPrefix), segmentSuffix)
		first, err := strconv.ParseUint(num, 10, 64)
		if err != nil || first == 0 {
			return nil, fmt.Errorf("journal segment %s: name must hold its first record's sequence number", p)
		}
		segs = append(segs, segment{path: p, first: first})
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmp.Compare(a.first, b.first) })
	return segs, nil
}

// record is one decoded journal record. body aliases the scanner's buffer
// and is valid only during the callback.
type record struct {
	header
	body []byte
}

// position is a place in the chain: the last record's seq and hash.
type position struct {
	seq  uint64
	hash [32]byte
}

// scanResult is where a scan of the journal ended.
type scanResult struct {
	last     position
	segment  segment // the last segment, whose tail takes the next record
	end      int64   // the offset in it after the last whole record
	segments []segment
}

// scanJournal reads the journal in dir and calls fn for every valid record
// after from, in order. from is a position the caller already holds (a
// snapshot's): the records up to it are checked against it, not replayed.
// The scan stops at the first record that is not whole and valid. If that
// record is the journal's last bytes, it is a torn write that was never
// acknowledged, and the scan ends there; if anything valid follows it, the
// journal is corrupt and scanJournal returns a *CorruptError.
func scanJournal(dir string, from position, fn func(r *record) error) (scanResult, error) {
	res := scanResult{last: from}
	segs, err := listSegments(dir)
	if err != nil {
		return res, err
	}
	res.segments = segs
	// Start from the segment that holds from.seq+1; the ones before it
	// hold only records the caller has.
	start := 0
	for i, sg := range segs {
		if sg.first <= from.seq+1 {
			start = i
		}
	}
	if len(segs) > 0 && segs[start].first > from.seq+1 {
		return res, &CorruptError{Segment: segs[start].path, Seq: from.seq + 1, Reason: fmt.Sprintf(
			"the journal starts at record %d: records %d to %d are missing", segs[start].first, from.seq+1, segs[start].first-1)}
	}
	var (
		prev     = from.hash
		seq      uint64 // the last record read
		haveSeq  = false
		verified = from.seq == 0
		body     []byte
		hdr      = make([]byte, headerSize)
	)
	for i := start; i < len(segs); i++ {
		sg := segs[i]
		lastSeg := i == len(segs)-1
		f, err := os.Open(sg.path)
		if err != nil {
			return res, fmt.Errorf("open journal segment: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return res, fmt.Errorf("stat journal segment: %w", err)
		}
		br := bufio.NewReaderSize(f, 1<<20)
		var off int64
		for {
			_, rerr := io.ReadFull(br, hdr)
			if rerr == io.EOF {
				break
			}
			bad := func(reason string) error {
				switch {
				case zeroTail(f, off):
					return nil // space written ahead and never used
				case !lastSeg || trailingRecord(f, off+1, seq+1):
					return &CorruptError{Segment: sg.path, Offset: off, Seq: seq + 1, Reason: reason}
				}
				return nil // a torn tail
			}
			var h header
			ok := false
			if rerr != nil {
				err = bad("truncated header")
			} else if h, ok = decodeHeader(hdr); !ok {
				err = bad("bad header")
			} else if int64(h.bodyLen) > fi.Size()-off-headerSize {
				ok = false
				err = bad("truncated body")
			} else {
				ok = false
				if cap(body) < int(h.bodyLen) {
					body = make([]byte, h.bodyLen)
				}
				body = body[:h.bodyLen]
				if _, rerr := io.ReadFull(br, body); rerr != nil {
					err = bad("truncated body")
				} else if hashRecord(hdr, body) != h.hash {
					err = bad("hash mismatch")
				} else {
					ok = true
				}
			}
			if !ok {
				f.Close()
				if err != nil {
					return res, err
				}
				if !lastSeg {
					break // the rest of this segment is zeros: the next goes on
				}
				res.segment, res.end = sg, off
				return res, nil
			}
			reason := ""
			switch {
			case off == 0 && h.seq != sg.first:
				reason = fmt.Sprintf("segment named for record %d starts with record %d", sg.first, h.seq)
			case haveSeq && h.seq != seq+1:
				reason = fmt.Sprintf("sequence %d follows %d", h.seq, seq)
			}
			if reason != "" {
				f.Close()
				return res, &CorruptError{Segment: sg.path, Offset: off, Seq: h.seq, Reason: reason}
			}
			// The chain: a record after from must link to the one before it,
			// and the record at from must be the one the caller holds.
			if h.seq == from.seq+1 || (haveSeq && h.seq > from.seq+1) {
				if h.prevHash != prev {
					f.Close()
					return res, &CorruptError{Segment: sg.path, Offset: off, Seq: h.seq,
						Reason: "previous hash does not match: the chain is broken"}
				}
			}
			if h.seq == from.seq && h.hash != from.hash {
				f.Close()
				return res, &CorruptError{Segment: sg.path, Offset: off, Seq: h.seq,
					Reason: "record does not match the snapshot taken at it"}
			}
			if h.seq == from.seq || h.seq == from.seq+1 {
				verified = true // it is, or links to, the record the caller holds
			}
			if h.seq > from.seq {
				if err := fn(&record{header: h, body: body}); err != nil {
					f.Close()
					return res, fmt.Errorf("replay record %d: %w", h.seq, err)
				}
				res.last = position{seq: h.seq, hash: h.hash}
			}
			prev, seq, haveSeq = h.hash, h.seq, true
			off += headerSize + int64(h.bodyLen)
		}
		f.Close()
		res.segment, res.end = sg, off
	}
	if !verified && haveSeq {
		return res, &CorruptError{Segment: res.segment.path, Seq: from.seq, Reason: "the journal does not hold the record the snapshot was taken at"}
	}
	return res, nil
}

// zeroTail reports whether the file holds only zero bytes from off to
// its end: space the journal wrote ahead of its records.
func zeroTail(f *os.File, off int64) bool {
	buf := make([]byte, 1<<20)
	for {
		n, err := f.ReadAt(buf, off)
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		off += int64(n)
		if err != nil {
			return err == io.EOF
		}
	}
}

// trailingRecord reports whether a valid record header with sequence seq or
// later appears anywhere in the file at or after from: evidence that a bad
// record is corruption in the middle, not a torn tail.
func trailingRecord(f *os.File, from int64, seq uint64) bool {
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], journalMagic)
	buf := make([]byte, 1<<20+headerSize)
	for pos := from; ; pos += 1 << 20 {
		n, _ := f.ReadAt(buf, pos)
		if n < headerSize {
			return false
		}
		chunk := buf[:n]
		for i := 0; i+headerSize <= len(chunk); {
			j := bytes.Index(chunk[i:], magic[:])
			if j < 0 || i+j+headerSize > len(chunk) {
				break
			}
			i += j
			if h, ok := decodeHeader(chunk[i:]); ok && h.seq >= seq && h.seq < seq+1<<32 {
				at := pos + int64(i) + headerSize
				if fi, err := f.Stat(); err != nil || int64(h.bodyLen) > fi.Size()-at {
					i++
					continue
				}
				body := make([]byte, h.bodyLen)
				if _, err := f.ReadAt(body, at); err == nil {
					rec := append(append([]byte{}, chunk[i:i+headerSize]...), body...)
					if recordHash(rec) == h.hash {
						return true
					}
				}
			}
			i++
		}
		if n < len(buf) {
			return false
		}
	}
}

// journal appends records to the newest segment. It is owned by the
// syncer goroutine once the store is open.
//
// It writes zeros ahead of its records, preallocChunk at a time, and then
// writes records over them: a sync of a write that does not grow the file
// need not commit the file's size, and takes about half as long.
type journal struct {
	dir        string
	f          *os.File
	seg        segment
	size       int64 // the offset after the last record
	alloc      int64 // the bytes of the segment written, zeros after size
	last       position
	segmentMax int64
}

const preallocChunk = 4 << 20

var zeros = make([]byte, 1<<20)

// openJournal opens the segment a scan ended in for appending, cutting a
// torn tail, or creates the first segment.
func openJournal(dir string, res scanResult, segmentMax int64) (*journal, error) {
	j := &journal{dir: dir, last: res.last, segmentMax: segmentMax}
	if res.segment.path == "" {
		return j, j.create(res.last.seq + 1)
	}
	f, err := os.OpenFile(res.segment.path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open journal segment: %w", err)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > res.end {
		if err := f.Truncate(res.end); err != nil {
			f.Close()
			return nil, fmt.Errorf("truncate torn journal tail: %w", err)
		}
	}
	// The records just replayed may sit only in the page cache, written
	// by a process that died before its fsync: sync them before answering
	// anything built on them.
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync journal: %w", err)
	}
	j.f, j.seg, j.size, j.alloc = f, res.segment, res.end, res.end
	return j, syncDir(dir)
}

// create starts a new segment whose first record will be first.
func (j *journal) create(first uint64) error {
	sg := segment{path: filepath.Join(j.dir, segmentName(first)), first: first}
	f, err := os.OpenFile(sg.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create journal segment: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		f.Close()
		return err
	}
	if j.f != nil {
		// The finished segment ends at its last record.
		if err := j.f.Truncate(j.size); err != nil {
			f.Close()
			return fmt.Errorf("truncate journal segment: %w", err)
		}
		j.f.Close()
	}
	j.f, j.seg, j.size, j.alloc = f, sg, 0, 0
	return nil
}

// append writes a sealed record and syncs it. A segment that has grown
// past segmentMax is closed first and the record starts a new one.
func (j *journal) append(rec []byte, pos position) error {
	if j.size > 0 && j.size+int64(len(rec)) > j.segmentMax {
		if err := j.create(pos.seq); err != nil {
			return err
		}
	}
	for j.size+int64(len(rec)) > j.alloc {
		n := min(int64(len(zeros)), preallocChunk-j.alloc%preallocChunk)
		if _, err := j.f.WriteAt(zeros[:n], j.alloc); err != nil {
			return fmt.Errorf("write journal: %w", err)
		}
		j.alloc += n
	}
	if _, err := j.f.WriteAt(rec, j.size); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := datasync(j.f); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	j.size += int64(len(rec))
	j.last = pos
	return nil
}

func (j *journal) close() error {
	if j.f == nil {
		return nil
	}
	// Leave no zeros after the last record: tidier for tools, though
	// recovery would drop them as it drops a torn tail.
	err := j.f.Truncate(j.size)
	return errors.Join(err, j.f.Close())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// lockDir takes the data directory's lock: one process at a time.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock store dir %s: another process has it open: %w", dir, err)
	}
	return f, nil
}
