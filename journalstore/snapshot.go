package journalstore

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/agentmarket/agentmarket/market"
)

// A snapshot is the state at one durable version S, written in the
// background so that recovery loads it and replays only the journal
// after S, and the journal before S can go. It is a file,
// snapshot-<S>.ams, of checksummed frames of records:
//
//   - every object's value at S, or, for a cold one, where its value is in
//     the archive (the snapshot makes the archive durable up to there);
//   - the ids of the sequenced objects;
//   - the entries of the large indexes, copied as they are while the writer
//     goes on, and the exclusions: the entries that belong to versions
//     other than S, which loading removes. An index entry of an object
//     comes from the index keys of a version in its chain; the snapshot
//     excludes the keys of the chains' versions that S's lacks, and the
//     keys the writer removed while the copy went on;
//   - the small indexes (arbiters, offers, pairs, nonce expiries) are
//     rebuilt from the values.
//
// The snapshot reads as a View at S would, so nothing it needs is
// collected meanwhile. It is written to a temporary file, synced and
// renamed into place; then older snapshots and the journal segments
// wholly before S are deleted.
const (
	snapshotPrefix = "snapshot-"
	snapshotSuffix = ".ams"
	snapshotMagic  = 0x53534d41 // "AMSS" little-endian
	snapshotVer    = 1
	snapshotFrame  = 1 << 20
	snapshotTrail  = 0xffffffff // the length of the trailer frame, which holds the checksum
	snapshotPiece  = 1024       // objects or entries copied per hold of the lock
)

// Record tags of a snapshot.
const (
	snapHeader = 1 + iota
	snapAgent
	snapGrant
	snapOffer
	snapScore
	snapPair
	snapArbiterRecord
	snapIdempotency
	snapIdempotencyCold
	snapNonce
	snapObject
	snapObjectCold
	snapObjectInline
	snapID
	snapIndex
	snapEventList
	snapExclude
	snapEnd
	snapRequest
)

// Kinds of sequenced objects in a snapshot, beside those of ref.
const (
	kEvent = 100 + iota
	kReceipt
)

// Kinds of event lists in a snapshot.
const (
	listIntent = 1 + iota
	listAgent
	listPublic
)

func snapshotName(ver uint64) string {
	return fmt.Sprintf("%s%020d%s", snapshotPrefix, ver, snapshotSuffix)
}

// snapWriter writes a snapshot's records in frames, and the checksum of
// the frames at the end.
type snapWriter struct {
	f   *os.File
	bw  *bufio.Writer
	sum hash.Hash
	e   enc
}

// end closes a record: the frame is written once it is full.
func (w *snapWriter) end() error {
	if len(w.e.b) >= snapshotFrame {
		return w.flush()
	}
	return nil
}

func (w *snapWriter) flush() error {
	if len(w.e.b) == 0 {
		return nil
	}
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(w.e.b)))
	w.sum.Write(hdr[:])
	w.sum.Write(w.e.b)
	if _, err := w.bw.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.bw.Write(w.e.b)
	w.e.b = w.e.b[:0]
	return err
}

// finish writes the last frame and the checksum, and syncs the file.
func (w *snapWriter) finish() error {
	if err := w.flush(); err != nil {
		return err
	}
	var trail [4 + sha256.Size]byte
	binary.LittleEndian.PutUint32(trail[:], snapshotTrail)
	w.sum.Sum(trail[4:4])
	if _, err := w.bw.Write(trail[:]); err != nil {
		return err
	}
	if err := w.bw.Flush(); err != nil {
		return err
	}
	return w.f.Sync()
}

// Snapshot writes a snapshot of the newest durable state and deletes the
// journal segments it makes unnecessary. The store goes on meanwhile. It
// returns once the snapshot is durable, or ctx ends.
func (s *Store) Snapshot(ctx context.Context) error {
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	// Close cancels a snapshot and waits for it to stop.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.closeCtx, cancel)
	defer stop()
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if err := s.snapshot(ctx); err != nil {
		return fmt.Errorf("snapshot store %s: %w", s.dir, err)
	}
	return nil
}

func (s *Store) snapshot(ctx context.Context) error {
	st := s.st
	s.mu.Lock()
	p := s.pub
	s.active[p.ver]++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.active[p.ver]--; s.active[p.ver] == 0 {
			delete(s.active, p.ver)
		}
		s.mu.Unlock()
	}()
	if p.ver == s.snapVer {
		return nil // nothing new since the last one
	}
	var removed []ikey
	st.mu.Lock()
	st.removed = &removed
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		st.removed = nil
		st.mu.Unlock()
	}()

	path := filepath.Join(s.dir, snapshotName(p.ver))
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(path + ".tmp")
		}
	}()
	sw := &snapWriter{f: f, bw: bufio.NewWriterSize(f, 1<<20), sum: sha256.New()}
	d := &snapDump{s: s, w: sw, snap: p.ver, ctx: ctx}
	if err := d.all(p, &removed); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("rename snapshot: %w", err)
	}
	ok = true
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.snapVer = p.ver
	s.log.Info("journalstore: snapshot written", "version", p.ver, "path", path)
	return s.pruneAfterSnapshot(p.ver)
}

// pruneAfterSnapshot deletes the snapshots before ver and the journal
// segments whose records are all at or before ver.
func (s *Store) pruneAfterSnapshot(ver uint64) error {
	snaps, err := listSnapshots(s.dir)
	if err != nil {
		return err
	}
	for _, sn := range snaps {
		if sn.ver < ver {
			if err := os.Remove(sn.path); err != nil {
				return fmt.Errorf("delete old snapshot: %w", err)
			}
		}
	}
	segs, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	for i := 0; i+1 < len(segs) && segs[i+1].first <= ver+1; i++ {
		if err := os.Remove(segs[i].path); err != nil {
			return fmt.Errorf("delete journal segment: %w", err)
		}
	}
	return syncDir(s.dir)
}

// snapshotFile is a snapshot found in the directory.
type snapshotFile struct {
	path string
	ver  uint64
}

// listSnapshots returns the directory's snapshots, oldest first, and
// deletes unfinished ones.
func listSnapshots(dir string) ([]snapshotFile, error) {
	tmps, _ := filepath.Glob(filepath.Join(dir, snapshotPrefix+"*"+snapshotSuffix+".tmp"))
	for _, p := range tmps {
		os.Remove(p)
	}
	names, err := filepath.Glob(filepath.Join(dir, snapshotPrefix+"*"+snapshotSuffix))
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []snapshotFile
	for _, p := range names {
		num := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), snapshotPrefix), snapshotSuffix)
		ver, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: name must hold its version", p)
		}
		out = append(out, snapshotFile{path: p, ver: ver})
	}
	return out, nil // Glob sorts names, and the numbers are zero-padded
}

// snapDump writes one snapshot.
type snapDump struct {
	s    *Store
	w    *snapWriter
	snap uint64
	ctx  context.Context
	last map[int]int64 // per sequenced kind, the newest object at snap
}

func (d *snapDump) all(p published, removed *[]ikey) error {
	st, e := d.s.st, &d.w.e
	d.last = make(map[int]int64)
	e.byte(snapHeader)
	e.uvarint(snapshotMagic)
	e.uvarint(snapshotVer)
	e.uvarint(p.ver)
	e.b = append(e.b, p.pos.hash[:]...)
	e.varint(p.events)
	e.varint(p.receipts)
	steps := []func() error{
		func() error {
			return dumpKeyed(d, st.agents, func(e *enc, _ market.AgentID, a *market.Agent) { e.byte(snapAgent); e.agent(a) })
		},
		func() error {
			return dumpKeyed(d, st.grants, func(e *enc, op string, n *int64) { e.byte(snapGrant); e.str(op); e.varint(*n) })
		},
		func() error {
			return dumpKeyed(d, st.offers, func(e *enc, _ string, o *market.Offer) { e.byte(snapOffer); e.offer(o) })
		},
		func() error {
			return dumpKeyed(d, st.scores, func(e *enc, _ scoreKey, sc *market.ScoreRecord) { e.byte(snapScore); e.score(sc) })
		},
		func() error {
			return dumpKeyed(d, st.pairs, func(e *enc, _ pairKey, pr *market.PairRecord) { e.byte(snapPair); e.pair(pr) })
		},
		func() error {
			return dumpKeyed(d, st.arbRecs, func(e *enc, _ market.AgentID, r *market.ArbiterRecord) {
				e.byte(snapArbiterRecord)
				e.arbiterRecord(r)
			})
		},
		func() error {
			return dumpKeyed(d, st.idem, func(e *enc, _ string, r *market.IdempotencyRecord) {
				e.byte(snapIdempotency)
				e.idempotency(r)
			})
		},
		d.idemCold,
		func() error {
			return dumpKeyed(d, st.nonces, func(e *enc, k nonceKey, exp *int64) {
				e.byte(snapNonce)
				e.str(string(k.agent))
				e.str(k.nonce)
				e.varint(*exp)
			})
		},
		func() error { return dumpSeq(d, kIntent, &st.intents, d.read(&st.intents.last), (*enc).intent) },
		func() error { return dumpSeq(d, kBid, &st.bids, d.read(&st.bids.last), (*enc).bidValue) },
		func() error { return dumpSeq(d, kMessage, &st.messages, d.read(&st.messages.last), (*enc).message) },
		func() error { return dumpSeq(d, kContract, &st.contracts, d.read(&st.contracts.last), (*enc).contract) },
		func() error { return dumpSeq(d, kEvent, &st.events, p.events, (*enc).event) },
		func() error { return dumpSeq(d, kReceipt, &st.receipts, p.receipts, (*enc).receipt) },
		func() error { return dumpIDs(d, kIntent, &st.intents) },
		func() error { return dumpIDs(d, kBid, &st.bids) },
		func() error { return dumpIDs(d, kMessage, &st.messages) },
		func() error { return dumpIDs(d, kContract, &st.contracts) },
		d.indexes,
		func() error { return d.eventLists(p.events) },
		func() error { return chainExclusions(d, &st.intents, intentKeys) },
		func() error { return chainExclusions(d, &st.bids, bidKeys) },
		func() error { return chainExclusions(d, &st.messages, messageKeys) },
		func() error { return chainExclusions(d, &st.contracts, contractKeys) },
	}
	for _, step := range steps {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		if err := step(); err != nil {
			return err
		}
	}
	// The keys the writer removed while the copy went on belong to
	// versions other than snap: the writer never removes a key that a
	// reader at or above the oldest reader, snap, still sees.
	st.mu.RLock()
	gone := append([]ikey(nil), *removed...)
	archived := st.archive.flushed
	st.mu.RUnlock()
	for i := range gone {
		d.exclude(&gone[i])
		if err := d.w.end(); err != nil {
			return err
		}
	}
	// Every archived value the snapshot points at is in the file by now,
	// below archived; make it durable.
	if err := st.archive.f.Sync(); err != nil {
		return fmt.Errorf("sync archive: %w", err)
	}
	e.byte(snapEnd)
	e.varint(d.last[kIntent])
	e.varint(d.last[kBid])
	e.varint(d.last[kMessage])
	e.varint(d.last[kContract])
	e.varint(archived)
	return d.w.finish()
}

// read reads a counter the writer changes.
func (d *snapDump) read(n *int64) int64 {
	d.s.st.mu.RLock()
	defer d.s.st.mu.RUnlock()
	return *n
}

func (d *snapDump) exclude(k *ikey) {
	e := &d.w.e
	e.byte(snapExclude)
	e.byte(k.idx)
	e.str(k.s1)
	e.str(k.s2)
	e.varint(k.n)
	e.varint(k.a)
	e.varint(k.b)
	e.varint(k.seq)
	e.str(k.id)
}

// dumpKeyed writes the values at snap of a keyed table, holding the lock
// for a piece of the map at a time. A map's iteration tolerates the
// writer's changes between pieces: entries it adds may or may not show,
// and those are of versions after snap.
func dumpKeyed[K comparable, T any](d *snapDump, m map[K]*version[T], write func(*enc, K, *T)) error {
	st := d.s.st
	type item struct {
		k K
		v *version[T]
	}
	var piece []item
	flush := func() error {
		for _, it := range piece {
			write(&d.w.e, it.k, &it.v.val)
			if err := d.w.end(); err != nil {
				return err
			}
		}
		piece = piece[:0]
		return nil
	}
	st.mu.RLock()
	for k, h := range m {
		if v := h.at(d.snap); v != nil {
			piece = append(piece, item{k, v})
		}
		if len(piece) == snapshotPiece {
			st.mu.RUnlock()
			if err := flush(); err != nil {
				return err
			}
			st.mu.RLock()
		}
	}
	st.mu.RUnlock()
	return flush()
}

// idemCold writes where the archived idempotency records are.
func (d *snapDump) idemCold() error {
	st := d.s.st
	type item struct {
		k      string
		off    int64
		inline []byte
	}
	var piece []item
	flush := func() error {
		for _, it := range piece {
			e := &d.w.e
			e.byte(snapIdempotencyCold)
			e.str(it.k)
			if it.inline != nil {
				e.byte(1)
				e.bytes(it.inline)
			} else {
				e.byte(0)
				e.varint(it.off)
			}
			if err := d.w.end(); err != nil {
				return err
			}
		}
		piece = piece[:0]
		return nil
	}
	st.mu.RLock()
	for k, ref := range st.idemCold {
		it := item{k: k, off: ref - 1}
		if it.off >= st.archive.flushed {
			b, _ := st.archive.read(it.off)
			it.inline = append([]byte{}, b...)
		}
		piece = append(piece, it)
		if len(piece) == snapshotPiece {
			st.mu.RUnlock()
			if err := flush(); err != nil {
				return err
			}
			st.mu.RLock()
		}
	}
	st.mu.RUnlock()
	return flush()
}

// dumpSeq writes the objects of a sequenced table up to last as a reader
// at snap sees them: a value, or where it is in the archive. A value
// still in the archive's buffer, not in its file, goes in whole.
func dumpSeq[T any](d *snapDump, kind int, t *seqTable[T], last int64, encode func(*enc, *T)) error {
	st := d.s.st
	type item struct {
		seq    int64
		v      *version[T]
		off    int64
		inline []byte
	}
	piece := make([]item, 0, snapshotPiece)
	for from := int64(1); from <= last; from += snapshotPiece {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		st.mu.RLock()
		for seq := from; seq < from+snapshotPiece && seq <= last; seq++ {
			sl := t.get(seq)
			switch {
			case sl.v != nil:
				if v := sl.v.at(d.snap); v != nil {
					piece = append(piece, item{seq: seq, v: v})
				}
			case sl.cold != 0:
				it := item{seq: seq, off: sl.cold - 1}
				if it.off >= st.archive.flushed {
					b, _ := st.archive.read(it.off)
					it.inline = append([]byte{}, b...)
				}
				piece = append(piece, it)
			}
		}
		st.mu.RUnlock()
		for _, it := range piece {
			e := &d.w.e
			switch {
			case it.v != nil:
				e.byte(snapObject)
				e.byte(byte(kind))
				e.varint(it.seq)
				encode(e, &it.v.val)
			case it.inline != nil:
				e.byte(snapObjectInline)
				e.byte(byte(kind))
				e.varint(it.seq)
				e.bytes(it.inline)
			default:
				e.byte(snapObjectCold)
				e.byte(byte(kind))
				e.varint(it.seq)
				e.varint(it.off)
			}
			d.last[kind] = max(d.last[kind], it.seq)
			if err := d.w.end(); err != nil {
				return err
			}
		}
		piece = piece[:0]
	}
	return nil
}

// dumpIDs writes the id index of the sequenced objects that exist at
// snap: the hashes, and the ids kept whole.
func dumpIDs[T any](d *snapDump, kind int, t *seqTable[T]) error {
	st := d.s.st
	type item struct {
		hash uint64
		id   string
		seq  int64
	}
	var piece []item
	flush := func() error {
		for _, it := range piece {
			e := &d.w.e
			e.byte(snapID)
			e.byte(byte(kind))
			if it.id != "" {
				e.byte(1)
				e.str(it.id)
			} else {
				e.byte(0)
				e.uvarint(it.hash)
			}
			e.varint(it.seq)
			if err := d.w.end(); err != nil {
				return err
			}
		}
		piece = piece[:0]
		return nil
	}
	exists := func(seq int64) bool {
		if seq > d.last[kind] {
			return false
		}
		sl := t.get(seq)
		return sl.cold != 0 || sl.v.at(d.snap) != nil
	}
	st.mu.RLock()
	for h, seq := range t.ids.byHash {
		if exists(seq) {
			piece = append(piece, item{hash: h, seq: seq})
		}
		if len(piece) == snapshotPiece {
			st.mu.RUnlock()
			if err := flush(); err != nil {
				return err
			}
			st.mu.RLock()
		}
	}
	for id, seq := range t.ids.clash {
		if exists(seq) {
			piece = append(piece, item{id: id, seq: seq})
		}
	}
	st.mu.RUnlock()
	return flush()
}

// group writes a run of entries of one index under one key.
func (d *snapDump) group(idx uint8, s1, s2 string, es []ikey) error {
	if len(es) == 0 {
		return nil
	}
	e := &d.w.e
	e.byte(snapIndex)
	e.byte(idx)
	e.str(s1)
	e.str(s2)
	e.uvarint(uint64(len(es)))
	for i := range es {
		e.varint(es[i].n)
		e.varint(es[i].a)
		e.varint(es[i].b)
		e.varint(es[i].seq)
	}
	return d.w.end()
}

// indexes writes the entries of the large indexes as they are.
func (d *snapDump) indexes() error {
	st := d.s.st
	for _, x := range []struct {
		idx uint8
		m   setMap[string, seqKey]
	}{
		{ixIntentType, st.intentByType}, {ixIntentState, st.intentByState}, {ixIntentBuyer, st.intentByBuyer},
		{ixContractState, st.contractByState},
		{ixContractType, st.contractByType}, {ixContractParent, st.contractByParen}, {ixContractParty, st.contractByParty},
	} {
		err := dumpSets(d, x.m, func(k string) (string, string) { return k, "" }, func(k seqKey) ikey { return ikey{seq: int64(k)} }, x.idx)
		if err != nil {
			return err
		}
	}
	for _, x := range []struct {
		idx uint8
		m   fewSets[string]
	}{{ixBidIntent, st.bidByIntent}, {ixMessageBid, st.messageByBid}} {
		if err := dumpFewSets(d, x.m, x.idx); err != nil {
			return err
		}
	}
	err := dumpSets(d, st.contractOpen, func(k [2]string) (string, string) { return k[0], k[1] },
		func(k seqKey) ikey { return ikey{seq: int64(k)} }, ixContractOpen)
	if err != nil {
		return err
	}
	// A buyer's paid contracts are grouped by seller.
	err = dumpSets(d, st.contractPaid, func(k string) (string, string) { return k, "" },
		func(k sellerKey) ikey { return ikey{id: k.seller, seq: k.seq} }, ixContractPaid)
	if err != nil {
		return err
	}
	if err := d.requests(); err != nil {
		return err
	}
	for _, x := range []struct {
		idx uint8
		set *sorted[dueKey]
	}{{ixIntentDue, &st.intentDue}, {ixContractDue, &st.contractDue}} {
		err := dumpSet(d, x.set, func(k dueKey) ikey { return ikey{n: k.at, seq: k.seq} }, x.idx, "", "")
		if err != nil {
			return err
		}
	}
	for _, x := range []struct {
		idx uint8
		m   map[string]*series[countKey]
	}{{ixIntentCreated, st.intentsCreated}, {ixBidCreated, st.bidsCreated}, {ixContractAwarded, st.contractsAwarded}} {
		if err := dumpSeries(d, x.m, func(k countKey) ikey { return ikey{n: k.at, seq: k.seq} }, x.idx); err != nil {
			return err
		}
	}
	return dumpSeries(d, st.contractFills, func(k fillKey) ikey { return ikey{n: k.at, a: k.price, b: k.paid, seq: k.seq} }, ixContractFill)
}

// dumpSets writes a family of sets, a piece of each at a time.
func dumpSets[K comparable, E element[E]](d *snapDump, m setMap[K, E], key func(K) (string, string), entry func(E) ikey, idx uint8) error {
	st := d.s.st
	var keys []K
	st.mu.RLock()
	for k := range m {
		keys = append(keys, k)
	}
	st.mu.RUnlock()
	for _, k := range keys {
		st.mu.RLock()
		set := m[k]
		st.mu.RUnlock()
		if set == nil {
			continue
		}
		s1, s2 := key(k)
		if err := dumpSet(d, set, entry, idx, s1, s2); err != nil {
			return err
		}
	}
	return nil
}

// dumpSet writes one set, snapshotPiece entries per hold of the lock. An
// entry whose ikey carries an id (a seller) starts a group of its own id.
func dumpSet[E element[E]](d *snapDump, set *sorted[E], entry func(E) ikey, idx uint8, s1, s2 string) error {
	st := d.s.st
	var piece []E
	var from E
	started := false
	for {
		piece = piece[:0]
		st.mu.RLock()
		collect := func(e E) bool {
			if started && e.compare(from) <= 0 {
				return true
			}
			piece = append(piece, e)
			return len(piece) < snapshotPiece
		}
		if started {
			set.ascend(from, collect)
		} else {
			set.ascendAll(collect)
		}
		st.mu.RUnlock()
		// groupKey is the group's second key: s2, or the entry's id.
		groupKey := func(k *ikey) string {
			if k.id != "" {
				return k.id
			}
			return s2
		}
		var run []ikey
		for _, e := range piece {
			k := entry(e)
			if len(run) > 0 && k.id != run[0].id {
				if err := d.group(idx, s1, groupKey(&run[0]), run); err != nil {
					return err
				}
				run = run[:0]
			}
			run = append(run, k)
		}
		if len(run) > 0 {
			if err := d.group(idx, s1, groupKey(&run[0]), run); err != nil {
				return err
			}
		}
		if len(piece) < snapshotPiece {
			return nil
		}
		from, started = piece[len(piece)-1], true
	}
}

// requests writes the request index: keys and intents.
func (d *snapDump) requests() error {
	st := d.s.st
	type item struct {
		k   uint64
		seq int64
	}
	var all []item
	st.mu.RLock()
	for k, seq := range st.intentByRequest.one {
		all = append(all, item{k, seq})
	}
	for k, set := range st.intentByRequest.more {
		set.ascendAll(func(seq seqKey) bool { all = append(all, item{k, int64(seq)}); return true })
	}
	st.mu.RUnlock()
	for _, it := range all {
		e := &d.w.e
		e.byte(snapRequest)
		e.uvarint(it.k)
		e.varint(it.seq)
		if err := d.w.end(); err != nil {
			return err
		}
	}
	return nil
}

// dumpFewSets writes a family of small sets, a piece of the map at a time.
func dumpFewSets(d *snapDump, m fewSets[string], idx uint8) error {
	st := d.s.st
	type group struct {
		k    string
		seqs []ikey
	}
	var piece []group
	flush := func() error {
		for _, g := range piece {
			if err := d.group(idx, g.k, "", g.seqs); err != nil {
				return err
			}
		}
		piece = piece[:0]
		return nil
	}
	st.mu.RLock()
	for k := range m {
		g := group{k: k}
		m.each(k, func(seq int64) bool { g.seqs = append(g.seqs, ikey{seq: seq}); return true })
		piece = append(piece, g)
		if len(piece) == snapshotPiece {
			st.mu.RUnlock()
			if err := flush(); err != nil {
				return err
			}
			st.mu.RLock()
		}
	}
	st.mu.RUnlock()
	return flush()
}

// dumpSeries writes the facts of a family of statistics.
func dumpSeries[K fact[K]](d *snapDump, m map[string]*series[K], entry func(K) ikey, idx uint8) error {
	st := d.s.st
	st.mu.RLock()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	st.mu.RUnlock()
	for _, intent := range keys {
		var facts []ikey
		st.mu.RLock()
		if sr := m[intent]; sr != nil {
			for _, c := range sr.chunks {
				for _, f := range c.e {
					facts = append(facts, entry(f))
				}
			}
		}
		st.mu.RUnlock()
		for i := 0; i < len(facts); i += snapshotPiece {
			if err := d.group(idx, intent, "", facts[i:min(len(facts), i+snapshotPiece)]); err != nil {
				return err
			}
		}
	}
	return nil
}

// eventLists writes the lists of events up to the last one at snap.
func (d *snapDump) eventLists(last int64) error {
	st := d.s.st
	write := func(kind byte, key string, l *seqList) error {
		from := int64(0)
		for {
			var seqs []int64
			st.mu.RLock()
			for c := l.cursor(from); len(seqs) < snapshotPiece*8; c.next() {
				seq, ok := c.peek()
				if !ok || seq > last {
					break
				}
				seqs = append(seqs, seq)
			}
			st.mu.RUnlock()
			if len(seqs) == 0 {
				return nil
			}
			e := &d.w.e
			e.byte(snapEventList)
			e.byte(kind)
			e.str(key)
			e.uvarint(uint64(len(seqs)))
			prev := int64(0)
			for _, seq := range seqs {
				e.uvarint(uint64(seq - prev))
				prev = seq
			}
			if err := d.w.end(); err != nil {
				return err
			}
			from = seqs[len(seqs)-1]
		}
	}
	if err := write(listPublic, "", &st.eventsPublic); err != nil {
		return err
	}
	st.mu.RLock()
	intents := make(map[string]*seqList, len(st.eventsByIntent))
	for k, l := range st.eventsByIntent {
		intents[k] = l
	}
	agents := make(map[market.AgentID]*seqList, len(st.eventsByAgent))
	for k, l := range st.eventsByAgent {
		agents[k] = l
	}
	st.mu.RUnlock()
	for k, l := range intents {
		if err := write(listIntent, k, l); err != nil {
			return err
		}
	}
	for k, l := range agents {
		if err := write(listAgent, string(k), l); err != nil {
			return err
		}
	}
	return nil
}

// chainExclusions writes, for every object in memory, the index keys of
// its versions that its version at snap lacks: entries of other versions.
func chainExclusions[T any](d *snapDump, t *seqTable[T], keys keysFunc[T]) error {
	st := d.s.st
	var ex []ikey
	var live, at [16]ikey
	for from := int64(1); ; from += snapshotPiece {
		st.mu.RLock()
		last := t.last
		for seq := from; seq < from+snapshotPiece && seq <= last; seq++ {
			h := t.get(seq).v
			if h == nil {
				continue
			}
			var atKeys []ikey
			if v := h.at(d.snap); v != nil {
				atKeys = keys(&v.val, seq, at[:0])
			}
			for v := h; v != nil; v = v.prev {
				for _, k := range keys(&v.val, seq, live[:0]) {
					if !containsKey(atKeys, k) && !containsKey(ex, k) {
						ex = append(ex, k)
					}
				}
			}
		}
		st.mu.RUnlock()
		for i := range ex {
			d.exclude(&ex[i])
			if err := d.w.end(); err != nil {
				return err
			}
		}
		ex = ex[:0]
		if from+snapshotPiece > last {
			return nil
		}
	}
}

func containsKey(ks []ikey, k ikey) bool {
	for i := range ks {
		if ks[i] == k {
			return true
		}
	}
	return false
}

// loadSnapshot rebuilds the state from a snapshot, and returns its
// position in the journal and how much of the archive it relies on.
func (s *Store) loadSnapshot(path string) (pos position, archived int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return pos, 0, fmt.Errorf("open snapshot: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return pos, 0, fmt.Errorf("stat snapshot: %w", err)
	}
	left := fi.Size() // bytes not yet read: no frame can claim more
	l := &snapLoad{s: s, w: s.w, st: s.st}
	br := bufio.NewReaderSize(f, 1<<20)
	sum := sha256.New()
	var hdr [4]byte
	var frame []byte
	ended := false
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return pos, 0, fmt.Errorf("snapshot %s: %w", path, errors.Join(errCorrupt, err))
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		if n == snapshotTrail {
			var want [sha256.Size]byte
			if _, err := io.ReadFull(br, want[:]); err != nil {
				return pos, 0, fmt.Errorf("snapshot %s: %w", path, errors.Join(errCorrupt, err))
			}
			var got [sha256.Size]byte
			if sum.Sum(got[:0]); got != want || !ended {
				return pos, 0, fmt.Errorf("snapshot %s: checksum does not match: %w", path, errCorrupt)
			}
			return l.pos, l.archived, l.finish()
		}
		if left -= 4; int64(n) > left {
			return pos, 0, fmt.Errorf("snapshot %s: frame of %d bytes: %w", path, n, errCorrupt)
		}
		left -= int64(n)
		if cap(frame) < int(n) {
			frame = make([]byte, n)
		}
		frame = frame[:n]
		if _, err := io.ReadFull(br, frame); err != nil {
			return pos, 0, fmt.Errorf("snapshot %s: %w", path, errors.Join(errCorrupt, err))
		}
		sum.Write(hdr[:])
		sum.Write(frame)
		d := dec{b: frame}
		for len(d.b) > 0 && d.err == nil {
			if ended, err = l.record(&d); err != nil {
				return pos, 0, fmt.Errorf("snapshot %s: %w", path, err)
			}
		}
		if d.err != nil {
			return pos, 0, fmt.Errorf("snapshot %s: %w", path, d.err)
		}
	}
}

// snapLoad rebuilds the state from a snapshot's records, through the
// writer at the snapshot's version.
type snapLoad struct {
	s        *Store
	w        *writer
	st       *state
	pos      position
	archived int64
	inline   []inlineValue // archived values the snapshot holds whole
	exclude  []ikey
}

type inlineValue struct {
	kind int
	seq  int64
	key  string
	b    []byte
}

func (l *snapLoad) record(d *dec) (ended bool, err error) {
	st, w := l.st, l.w
	switch tag := d.byte(); tag {
	case snapHeader:
		if d.uvarint() != snapshotMagic || d.uvarint() != snapshotVer {
			return false, fmt.Errorf("not a snapshot of this version: %w", errCorrupt)
		}
		l.pos.seq = d.uvarint()
		copy(l.pos.hash[:], d.take(32))
		w.ver = l.pos.seq
		st.events.last, st.receipts.last = d.varint(), d.varint()
	case snapAgent:
		w.putAgent(d.agent())
	case snapGrant:
		op := d.str()
		w.setGrant(op, d.varint())
	case snapOffer:
		w.putOffer(d.offer())
	case snapScore:
		w.putScore(d.score())
	case snapPair:
		w.putPair(d.pair())
	case snapArbiterRecord:
		w.putArbiterRecord(d.arbiterRecord())
	case snapIdempotency:
		rec := d.idempotency()
		w.putIdempotency(rec)
		w.mayEvict(w.ver, ref{kind: kIdempotency, k: [3]string{rec.Key}})
	case snapIdempotencyCold:
		k := d.str()
		if d.byte() == 1 {
			l.inline = append(l.inline, inlineValue{kind: kIdempotency, key: k, b: d.bytes()})
		} else {
			st.idemCold[k] = d.varint() + 1
		}
	case snapNonce:
		agent, nonce := d.str(), d.str()
		w.useNonce(nonceKey{market.AgentID(agent), nonce}, d.varint())
	case snapObject:
		kind, seq := int(d.byte()), d.varint()
		if err := l.object(d, kind, seq); err != nil {
			return false, err
		}
	case snapObjectCold:
		kind, seq := int(d.byte()), d.varint()
		l.setCold(kind, seq, d.varint()+1)
	case snapObjectInline:
		kind, seq := int(d.byte()), d.varint()
		l.inline = append(l.inline, inlineValue{kind: kind, seq: seq, b: d.bytes()})
	case snapID:
		var ids *idIndex
		switch kind := int(d.byte()); kind {
		case kIntent:
			ids = st.intents.ids
		case kBid:
			ids = st.bids.ids
		case kMessage:
			ids = st.messages.ids
		case kContract:
			ids = st.contracts.ids
		default:
			return false, fmt.Errorf("unknown kind %d: %w", kind, errCorrupt)
		}
		if d.byte() == 1 {
			id := d.str()
			ids.clash[id] = d.varint()
		} else {
			h := d.uvarint()
			ids.byHash[h] = d.varint()
		}
	case snapIndex:
		idx, s1, s2 := d.byte(), d.str(), d.str()
		n := d.length()
		for range n {
			k := ikey{idx: idx, s1: s1, s2: s2, n: d.varint(), a: d.varint(), b: d.varint(), seq: d.varint()}
			if d.err == nil {
				st.insert(&k, 0)
			}
		}
	case snapEventList:
		kind, key := d.byte(), d.str()
		n := d.length()
		list := &st.eventsPublic
		switch kind {
		case listIntent:
			if list = st.eventsByIntent[key]; list == nil {
				list = &seqList{}
				st.eventsByIntent[st.intern(key)] = list
			}
		case listAgent:
			if list = st.eventsByAgent[market.AgentID(key)]; list == nil {
				list = &seqList{}
				st.eventsByAgent[market.AgentID(st.intern(key))] = list
			}
		}
		seq := int64(0)
		for range n {
			seq += int64(d.uvarint())
			if d.err == nil {
				list.push(seq)
			}
		}
	case snapRequest:
		k := d.uvarint()
		st.intentByRequest.insert(k, d.varint())
	case snapExclude:
		l.exclude = append(l.exclude, ikey{idx: d.byte(), s1: d.str(), s2: d.str(), n: d.varint(), a: d.varint(),
			b: d.varint(), seq: d.varint(), id: d.str()})
	case snapEnd:
		st.intents.last, st.bids.last = d.varint(), d.varint()
		st.messages.last, st.contracts.last = d.varint(), d.varint()
		l.archived = d.varint()
		return true, nil
	default:
		return false, fmt.Errorf("unknown record %d: %w", tag, errCorrupt)
	}
	return false, nil
}

// object stores a sequenced object's value, as replay would, but without
// indexing it: the snapshot's index entries say where it belongs.
func (l *snapLoad) object(d *dec, kind int, seq int64) error {
	st := l.st
	ver := l.w.ver
	switch kind {
	case kIntent:
		setLoaded(&st.intents, seq, ver, d.intent())
	case kBid:
		setLoaded(&st.bids, seq, ver, d.bidValue())
	case kMessage:
		setLoaded(&st.messages, seq, ver, d.message())
	case kContract:
		setLoaded(&st.contracts, seq, ver, d.contract())
	case kEvent:
		setLoaded(&st.events, seq, 0, d.event())
	case kReceipt:
		setLoaded(&st.receipts, seq, 0, d.receipt())
	default:
		return fmt.Errorf("unknown kind %d: %w", kind, errCorrupt)
	}
	l.w.mayEvict(l.w.ver, ref{kind: uint8(kind), seq: seq})
	return nil
}

func setLoaded[T any](t *seqTable[T], seq int64, ver uint64, v T) {
	if seq <= 0 {
		return
	}
	t.set(seq, slot[T]{v: &version[T]{ver: ver, val: v}})
}

func (l *snapLoad) setCold(kind int, seq, ref int64) {
	st := l.st
	if seq <= 0 {
		return
	}
	switch kind {
	case kIntent:
		st.intents.set(seq, slot[market.Intent]{cold: ref})
	case kBid:
		st.bids.set(seq, slot[bidValue]{cold: ref})
	case kMessage:
		st.messages.set(seq, slot[market.Message]{cold: ref})
	case kContract:
		st.contracts.set(seq, slot[market.Contract]{cold: ref})
	case kEvent:
		st.events.set(seq, slot[market.Event]{cold: ref})
		st.eventsCold = max(st.eventsCold, seq)
	case kReceipt:
		st.receipts.set(seq, slot[market.Receipt]{cold: ref})
		st.receiptsCold = max(st.receiptsCold, seq)
	}
}

// finish removes the excluded index entries, rebuilds the small indexes,
// and puts the values the snapshot held whole back in the archive, which
// recovery has cut to what the snapshot relies on.
func (l *snapLoad) finish() error {
	st := l.st
	if err := st.archive.truncate(l.archived); err != nil {
		return err
	}
	for i := range l.exclude {
		st.remove(&l.exclude[i])
	}
	st.oldest = l.pos.seq
	st.clearSuspects()
	for _, v := range l.inline {
		off := st.archive.add(v.b) + 1
		if v.kind == kIdempotency {
			st.idemCold[v.key] = off
		} else {
			l.setCold(v.kind, v.seq, off)
		}
	}
	// The small indexes (arbiters, offers, pairs, nonce expiries) were
	// rebuilt as the values were stored.
	l.w.undo, l.w.dirty = l.w.undo[:0], l.w.dirty[:0]
	l.w.gc = fifo[gcItem]{}
	return nil
}
