package ledger

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// The journal is one append-only file of records. A record is a 96-byte
// header and a body of events:
//
//	0  magic "AMJ1"      4  version, reserved
//	8  seq               16 record time (unix ns)
//	24 body length       28 event count
//	32 previous record's hash
//	64 hash = sha256(header[0:64] || body)
//
// Each record's hash covers the previous record's hash, so the journal is a
// hash chain: changing, dropping or reordering any acknowledged event breaks
// every hash after it. The hash also detects a torn write at the tail.
//
// Only committed events are journaled: failed transfers change nothing and
// leave no trace. Events are little-endian and fixed-size by kind, except a
// mandate, which carries its counterparty list.
const (
	journalFile   = "journal.amj"
	headerSize    = 96
	journalMagic  = 0x314a4d41 // "AMJ1" little-endian
	journalVer    = 1
	maxRecordBody = 8 << 20

	evAccount  = 1
	evTransfer = 2
	evExpire   = 3
	evMandate  = 4

	accountEventSize  = 64
	transferEventSize = 128
	expireEventSize   = 80
	mandateEventBase  = 64
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

// decodeHeader parses a header; ok is false when b is not a header.
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
	return h, h.bodyLen <= maxRecordBody
}

// sealRecord fills in the header of rec (header then body) and returns its hash.
func sealRecord(rec []byte, seq uint64, t int64, count int, prev [32]byte) [32]byte {
	h := header{seq: seq, time: t, bodyLen: uint32(len(rec) - headerSize), count: uint32(count), prevHash: prev}
	h.encode(rec)
	h.hash = recordHash(rec)
	copy(rec[64:96], h.hash[:])
	return h.hash
}

func recordHash(rec []byte) [32]byte {
	d := sha256.New()
	d.Write(rec[:64])
	d.Write(rec[headerSize:])
	var sum [32]byte
	d.Sum(sum[:0])
	return sum
}

func putID(b []byte, id ID) { copy(b, id[:]) }
func getID(b []byte) (id ID) {
	copy(id[:], b)
	return id
}

func appendAccount(buf []byte, a *Account) []byte {
	n := len(buf)
	buf = append(buf, make([]byte, accountEventSize)...)
	b := buf[n:]
	b[0] = evAccount
	binary.LittleEndian.PutUint16(b[2:], uint16(a.Flags))
	binary.LittleEndian.PutUint16(b[4:], a.Code)
	putID(b[8:], a.ID)
	putID(b[24:], a.UserData)
	binary.LittleEndian.PutUint64(b[40:], uint64(a.Timestamp))
	return buf
}

func decodeAccount(b []byte) Account {
	return Account{
		Flags:     AccountFlags(binary.LittleEndian.Uint16(b[2:])),
		Code:      binary.LittleEndian.Uint16(b[4:]),
		ID:        getID(b[8:]),
		UserData:  getID(b[24:]),
		Timestamp: int64(binary.LittleEndian.Uint64(b[40:])),
	}
}

// appendTransfer journals t as committed. requested is the amount the
// client asked for, kept so that an idempotent retry compares like with
// like; reserved is, for a post or void, the pending amount it released,
// kept so that readers of the journal need no lookups.
func appendTransfer(buf []byte, t *Transfer, requested, reserved uint64) []byte {
	n := len(buf)
	buf = append(buf, make([]byte, transferEventSize)...)
	b := buf[n:]
	b[0] = evTransfer
	binary.LittleEndian.PutUint16(b[2:], uint16(t.Flags))
	binary.LittleEndian.PutUint16(b[4:], t.Code)
	putID(b[8:], t.ID)
	putID(b[24:], t.DebitAccountID)
	putID(b[40:], t.CreditAccountID)
	putID(b[56:], t.PendingID)
	putID(b[72:], t.UserData)
	binary.LittleEndian.PutUint64(b[88:], t.Amount)
	binary.LittleEndian.PutUint64(b[96:], uint64(t.Timeout))
	binary.LittleEndian.PutUint64(b[104:], uint64(t.Timestamp))
	binary.LittleEndian.PutUint64(b[112:], requested)
	binary.LittleEndian.PutUint64(b[120:], reserved)
	return buf
}

func decodeTransfer(b []byte) (t Transfer, requested uint64) {
	t, requested, _ = decodeTransferEvent(b)
	return t, requested
}

func decodeTransferEvent(b []byte) (t Transfer, requested, reserved uint64) {
	t = Transfer{
		Flags:           TransferFlags(binary.LittleEndian.Uint16(b[2:])),
		Code:            binary.LittleEndian.Uint16(b[4:]),
		ID:              getID(b[8:]),
		DebitAccountID:  getID(b[24:]),
		CreditAccountID: getID(b[40:]),
		PendingID:       getID(b[56:]),
		UserData:        getID(b[72:]),
		Amount:          binary.LittleEndian.Uint64(b[88:]),
		Timeout:         time.Duration(binary.LittleEndian.Uint64(b[96:])),
		Timestamp:       int64(binary.LittleEndian.Uint64(b[104:])),
	}
	return t, binary.LittleEndian.Uint64(b[112:]), binary.LittleEndian.Uint64(b[120:])
}

// expiry is a journaled expiry of a pending transfer. The accounts and the
// amount are the pending transfer's, kept so that readers need no lookups.
type expiry struct {
	pendingID     ID
	debit, credit ID
	amount        uint64
	timestamp     int64
}

func appendExpire(buf []byte, e *expiry) []byte {
	n := len(buf)
	buf = append(buf, make([]byte, expireEventSize)...)
	b := buf[n:]
	b[0] = evExpire
	putID(b[8:], e.pendingID)
	binary.LittleEndian.PutUint64(b[24:], uint64(e.timestamp))
	putID(b[32:], e.debit)
	putID(b[48:], e.credit)
	binary.LittleEndian.PutUint64(b[64:], e.amount)
	return buf
}

func decodeExpire(b []byte) expiry {
	return expiry{
		pendingID: getID(b[8:]),
		timestamp: int64(binary.LittleEndian.Uint64(b[24:])),
		debit:     getID(b[32:]),
		credit:    getID(b[48:]),
		amount:    binary.LittleEndian.Uint64(b[64:]),
	}
}

func appendMandate(buf []byte, m *Mandate, ts int64) []byte {
	n := len(buf)
	buf = append(buf, make([]byte, mandateEventBase+16*len(m.Counterparties))...)
	b := buf[n:]
	b[0] = evMandate
	binary.LittleEndian.PutUint16(b[2:], uint16(len(m.Counterparties)))
	putID(b[8:], m.AccountID)
	binary.LittleEndian.PutUint64(b[24:], m.MaxPerTransfer)
	binary.LittleEndian.PutUint64(b[32:], m.Budget)
	binary.LittleEndian.PutUint64(b[40:], uint64(m.Window))
	var exp int64
	if !m.ExpiresAt.IsZero() {
		exp = m.ExpiresAt.UnixNano()
	}
	binary.LittleEndian.PutUint64(b[48:], uint64(exp))
	binary.LittleEndian.PutUint64(b[56:], uint64(ts))
	for i, c := range m.Counterparties {
		putID(b[mandateEventBase+16*i:], c)
	}
	return buf
}

func decodeMandate(b []byte) (m Mandate, ts int64) {
	n := int(binary.LittleEndian.Uint16(b[2:]))
	m.AccountID = getID(b[8:])
	m.MaxPerTransfer = binary.LittleEndian.Uint64(b[24:])
	m.Budget = binary.LittleEndian.Uint64(b[32:])
	m.Window = time.Duration(binary.LittleEndian.Uint64(b[40:]))
	if exp := int64(binary.LittleEndian.Uint64(b[48:])); exp != 0 {
		m.ExpiresAt = time.Unix(0, exp).UTC()
	}
	ts = int64(binary.LittleEndian.Uint64(b[56:]))
	for i := range n {
		m.Counterparties = append(m.Counterparties, getID(b[mandateEventBase+16*i:]))
	}
	return m, ts
}

// eventSize returns the size of the event at the start of b, or 0 when b
// does not start with a whole, known event.
func eventSize(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	var n int
	switch b[0] {
	case evAccount:
		n = accountEventSize
	case evTransfer:
		n = transferEventSize
	case evExpire:
		n = expireEventSize
	case evMandate:
		if len(b) < mandateEventBase {
			return 0
		}
		n = mandateEventBase + 16*int(binary.LittleEndian.Uint16(b[2:]))
	default:
		return 0
	}
	if n > len(b) {
		return 0
	}
	return n
}

// CorruptError names the first bad place in a journal.
type CorruptError struct {
	Offset int64  // file offset of the bad record
	Seq    uint64 // the record's place in the chain, or the sequence number an authentic header out of place claims
	Event  int    // index of the bad event in the record, or -1
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Event >= 0 {
		return fmt.Sprintf("journal record %d (offset %d) event %d: %s", e.Seq, e.Offset, e.Event, e.Reason)
	}
	return fmt.Sprintf("journal record %d (offset %d): %s", e.Seq, e.Offset, e.Reason)
}

// record is one decoded journal record. body aliases the scanner's buffer
// and is valid only during the callback.
type record struct {
	offset int64
	header
	body []byte
}

// scanJournal reads the journal at path from the start and calls fn for
// every valid record in order. It stops at the first record that is not
// whole and valid. If that record is the journal's last bytes, it is a torn
// write that was never acknowledged (at most one record is ever unsynced),
// and scan returns its offset as the end. If anything valid follows it, the
// journal is corrupt and scan returns a *CorruptError.
func scanJournal(path string, fn func(r *record) error) (end int64, last header, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, last, nil
	}
	if err != nil {
		return 0, last, fmt.Errorf("open journal %s: %w", path, err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var (
		off  int64
		hdr  = make([]byte, headerSize)
		body []byte
		prev [32]byte
		seq  uint64
	)
	for {
		n, rerr := io.ReadFull(br, hdr)
		if rerr == io.EOF {
			return off, last, nil
		}
		// bad names a record that is not whole and valid by its place in
		// the chain: its header is as untrusted as the rest of it.
		bad := func(reason string) (int64, header, error) {
			if trailingRecord(f, off+1, seq+1) {
				return off, last, &CorruptError{Offset: off, Seq: seq + 1, Event: -1, Reason: reason}
			}
			return off, last, nil
		}
		if rerr != nil {
			_ = n
			return bad("truncated header")
		}
		h, ok := decodeHeader(hdr)
		if !ok {
			return bad("bad header")
		}
		if cap(body) < int(h.bodyLen) {
			body = make([]byte, h.bodyLen)
		}
		body = body[:h.bodyLen]
		if _, rerr := io.ReadFull(br, body); rerr != nil {
			return bad("truncated body")
		}
		rec := make([]byte, 0, headerSize)
		rec = append(rec, hdr[:64]...)
		d := sha256.New()
		d.Write(rec)
		d.Write(body)
		var sum [32]byte
		d.Sum(sum[:0])
		if sum != h.hash {
			return bad("hash mismatch")
		}
		if h.seq != seq+1 {
			return off, last, &CorruptError{Offset: off, Seq: h.seq, Event: -1, Reason: fmt.Sprintf("sequence %d follows %d", h.seq, seq)}
		}
		if h.prevHash != prev {
			return off, last, &CorruptError{Offset: off, Seq: h.seq, Event: -1, Reason: "previous hash does not match: the chain is broken"}
		}
		if err := fn(&record{offset: off, header: h, body: body}); err != nil {
			return off, last, err
		}
		prev, seq, last = h.hash, h.seq, h
		off += headerSize + int64(h.bodyLen)
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
				body := make([]byte, h.bodyLen)
				if _, err := f.ReadAt(body, pos+int64(i)+headerSize); err == nil {
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
