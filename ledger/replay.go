package ledger

import "fmt"

// replayRecord applies one journal record's events. Every event must apply
// with result OK and a timestamp later than the one before it; anything
// else is corruption, named by record and event.
func (s *state) replayRecord(r *record) error {
	s.replaying = true
	defer func() { s.replaying = false }()
	bad := func(i int, format string, args ...any) error {
		return &CorruptError{Offset: r.offset, Seq: r.seq, Event: i, Reason: fmt.Sprintf(format, args...)}
	}
	pos := 0
	for i := 0; i < int(r.count); i++ {
		b := r.body[pos:]
		n := eventSize(b)
		if n == 0 {
			return bad(i, "malformed event")
		}
		s.replayOff = r.offset + headerSize + int64(pos)
		s.undo = s.undo[:0]
		var ts int64
		var res Result
		switch b[0] {
		case evAccount:
			a := decodeAccount(b)
			ts = a.Timestamp
			if ts <= s.ts {
				return bad(i, "timestamp %d does not follow %d", ts, s.ts)
			}
			res = s.createAccount(&a)
		case evTransfer:
			t, requested, reserved := decodeTransferEvent(b)
			ts = t.Timestamp
			s.floor = s.ts
			if p, ok := s.pending[t.PendingID]; ok && t.Flags&(PostPending|VoidPending) != 0 && p.amount != reserved {
				return bad(i, "resolution records pending amount %d, not %d", reserved, p.amount)
			}
			if ts <= s.ts {
				return bad(i, "timestamp %d does not follow %d", ts, s.ts)
			}
			t.Amount = requested
			res = s.transfer(&t)
		case evExpire:
			if err := s.replayExpire(decodeExpire(b)); err != nil {
				return bad(i, "%v", err)
			}
		case evMandate:
			m, ts := decodeMandate(b)
			if ts <= s.ts {
				return bad(i, "timestamp %d does not follow %d", ts, s.ts)
			}
			if err := m.Validate(); err != nil {
				return bad(i, "%v", err)
			}
			res = s.setMandate(&m, ts)
		}
		if res != OK {
			return bad(i, "event does not apply: %s", res)
		}
		pos += n
	}
	if pos != len(r.body) {
		return bad(-1, "%d bytes after the last event", len(r.body)-pos)
	}
	return nil
}
