package journalstore

import "github.com/agentmarket/agentmarket/market"

// Eviction moves the values of cold objects to the archive. An object is
// cold when it can no longer change in the market's normal course (a
// settled or refunded contract, an awarded or expired intent, a bid that
// is no longer active, a message, an idempotency record) and no write in
// the last hotObjects writes touched it; events and receipts are cold once
// hotEvents and hotReceipts newer ones follow them. Memory keeps a cold
// object's index entries and where its value is; a read of the value goes
// to the archive. Only an object with one version, which every reader
// sees, is evicted: its index entries are then exactly its own, which
// lets some queries trust an entry without reading the value back.
const (
	defaultHotObjects  = 1 << 13
	defaultHotEvents   = 1 << 13
	defaultHotReceipts = 1 << 10
	evictChunk         = 256 // objects evicted per hold of the lock
)

// evictItem is an object that version ver wrote: a candidate for
// eviction once enough writes follow it, if ver is still its newest.
type evictItem struct {
	ver uint64
	r   ref
}

// evictable reports whether r's object is of a kind that goes cold.
func evictable(kind uint8) bool {
	switch kind {
	case kIntent, kBid, kMessage, kContract, kIdempotency:
		return true
	}
	return false
}

// evict archives what is cold: the objects written before the last
// hotObjects writes, if no newer write touched them and every reader
// sees their value (oldest is the oldest version read), and the events
// and receipts before the newest hotEvents and hotReceipts durable ones.
func (s *Store) evict(oldest uint64, durableEvents, durableReceipts int64) error {
	w, st := s.w, s.st
	n := 0
	for w.evictQ.len()-n > s.hotObjects && w.evictQ.at(n).ver <= oldest {
		n++
	}
	items := w.evictQ.front(n)
	archived := 0
	for i := 0; i < n; i += evictChunk {
		st.mu.Lock()
		for _, it := range items[i:min(n, i+evictChunk)] {
			var ok bool
			if w.buf, ok = st.evictObject(it, w.buf); ok {
				archived++
			}
		}
		st.mu.Unlock()
	}
	w.evictQ.drop(n)

	archived += evictSeqs(s, &st.events, &st.eventsCold, durableEvents-int64(s.hotEvents), (*enc).event)
	archived += evictSeqs(s, &st.receipts, &st.receiptsCold, durableReceipts-int64(s.hotReceipts), (*enc).receipt)
	s.stats.archived.Add(uint64(archived))

	if st.archive.pending() {
		n, err := st.archive.write()
		if err != nil {
			return err
		}
		st.mu.Lock()
		st.archive.written(n)
		st.mu.Unlock()
	}
	return nil
}

// evictSeqs archives the events or receipts after *cold up to upTo, and
// returns how many.
func evictSeqs[T any](s *Store, t *seqTable[T], cold *int64, upTo int64, encode func(*enc, *T)) int {
	st, w := s.st, s.w
	n := max(0, int(upTo-*cold))
	for *cold < upTo {
		st.mu.Lock()
		for end := min(upTo, *cold+evictChunk); *cold < end; {
			*cold++
			e := enc{b: w.buf[:0]}
			encode(&e, &t.head(*cold).val)
			w.buf = e.b
			t.set(*cold, slot[T]{cold: st.archive.add(e.b) + 1})
		}
		st.mu.Unlock()
	}
	return n
}

// evictObject archives it's object if it is still as version it.ver left
// it, with no older value kept for a reader, and can no longer change. It
// returns the encoding buffer for reuse and whether it archived. The
// caller holds mu.
func (s *state) evictObject(it evictItem, buf []byte) ([]byte, bool) {
	e := enc{b: buf[:0]}
	switch it.r.kind {
	case kIntent:
		if v := evictableHead(&s.intents, it); v != nil && v.val.State != market.IntentOpen && v.val.State != market.IntentSelecting {
			e.intent(&v.val)
			s.intents.set(it.r.seq, slot[market.Intent]{cold: s.archive.add(e.b) + 1})
		}
	case kBid:
		if v := evictableHead(&s.bids, it); v != nil && v.val.State != market.BidActive {
			e.bidValue(&v.val)
			s.bids.set(it.r.seq, slot[bidValue]{cold: s.archive.add(e.b) + 1})
		}
	case kMessage:
		if v := evictableHead(&s.messages, it); v != nil {
			e.message(&v.val)
			s.messages.set(it.r.seq, slot[market.Message]{cold: s.archive.add(e.b) + 1})
		}
	case kContract:
		if v := evictableHead(&s.contracts, it); v != nil && v.val.State.Terminal() {
			e.contract(&v.val)
			s.contracts.set(it.r.seq, slot[market.Contract]{cold: s.archive.add(e.b) + 1})
		}
	case kIdempotency:
		k := it.r.k[0]
		if v := s.idem[k]; v != nil && v.ver == it.ver && v.prev == nil {
			e.idempotency(&v.val)
			s.idemCold[k] = s.archive.add(e.b) + 1
			delete(s.idem, k)
		}
	}
	return e.b, len(e.b) > 0
}

// evictableHead returns the object's one version if version it.ver wrote
// it and no reader needs an older one; nil otherwise.
func evictableHead[T any](t *seqTable[T], it evictItem) *version[T] {
	v := t.head(it.r.seq)
	if v == nil || v.ver != it.ver || v.prev != nil {
		return nil
	}
	return v
}
