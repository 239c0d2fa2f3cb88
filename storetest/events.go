package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// eventCases check the event log: sequence numbers, filters, audience
// matching and WaitEvents.
func eventCases() []testCase {
	return []testCase{
		{"AppendEventAssignsIncreasingSeq", testEventSeq},
		{"EventsFilter", testEventsFilter},
		{"EventsLimitDefaultAndCap", testEventsLimits},
		{"WaitEventsReturnsAtOnceWhenThereIsOne", testWaitEventsExisting},
		{"WaitEventsWakesOnCommit", testWaitEventsWakes},
		{"WaitEventsIgnoresRolledBackEvents", testWaitEventsRolledBack},
	}
}

func newEvent(typ, intent, subject string, audience ...market.AgentID) market.Event {
	return market.Event{Type: typ, At: at(1), Intent: intent, Subject: subject, Audience: audience,
		Data: json.RawMessage(`{"subject":"` + subject + `"}`)}
}

func appendEvents(t *testing.T, s market.Store, es ...market.Event) []int64 {
	t.Helper()
	var seqs []int64
	update(t, s, func(tx market.Tx) error {
		for _, e := range es {
			seq, err := tx.AppendEvent(e)
			if err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		return nil
	})
	return seqs
}

func listEvents(t *testing.T, s market.Store, f market.EventFilter) []market.Event {
	t.Helper()
	return read(t, s, func(tx market.ReadTx) ([]market.Event, error) { return tx.Events(f) })
}

func subjects(es []market.Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Subject)
	}
	return out
}

func testEventSeq(t *testing.T, s market.Store) {
	e1 := newEvent(market.EventIntentPosted, "TRANSLATE", "i-1")
	e1.Seq = 999 // ignored: the store assigns it
	e2 := newEvent(market.EventBidPlaced, "TRANSLATE", "b-1", alice, bob)
	e2.Data = nil
	e2.At = time.Date(2026, 3, 1, 13, 0, 0, 123456789, time.FixedZone("CET", 3600))
	seqs := appendEvents(t, s, e1, e2)
	seqs = append(seqs, appendEvents(t, s, newEvent(market.EventContractAwarded, "TRANSLATE", "c-1"))...)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("sequence numbers %v do not increase", seqs)
		}
	}
	if seqs[0] <= 0 {
		t.Errorf("first sequence number %d, want positive", seqs[0])
	}
	got := listEvents(t, s, market.EventFilter{})
	e1.Seq, e2.Seq = seqs[0], seqs[1]
	e3 := newEvent(market.EventContractAwarded, "TRANSLATE", "c-1")
	e3.Seq = seqs[2]
	diff(t, "events, oldest first", []market.Event{e1, e2, e3}, got)
}

func testEventsFilter(t *testing.T, s market.Store) {
	appendEvents(t, s,
		newEvent(market.EventIntentPosted, "TRANSLATE", "public-intent"),
		newEvent(market.EventBidPlaced, "TRANSLATE", "to-alice", alice),
		newEvent(market.EventContractAwarded, "SUMMARISE", "to-alice-bob", alice, bob),
		newEvent(market.EventBidPlaced, "TRANSLATE", "to-abc", abc),
		newEvent(market.EventIntentPosted, "SUMMARISE", "public-summary"),
		newEvent(market.EventContractSettled, "TRANSLATE", "to-ab", ab),
	)
	all := listEvents(t, s, market.EventFilter{})
	seq := func(subject string) int64 {
		for _, e := range all {
			if e.Subject == subject {
				return e.Seq
			}
		}
		t.Fatalf("no event %s", subject)
		return 0
	}
	tests := []struct {
		name string
		f    market.EventFilter
		want []string
	}{
		{"OperatorSeesAll", market.EventFilter{},
			[]string{"public-intent", "to-alice", "to-alice-bob", "to-abc", "public-summary", "to-ab"}},
		{"AgentSeesPublicAndOwn", market.EventFilter{Agent: alice},
			[]string{"public-intent", "to-alice", "to-alice-bob", "public-summary"}},
		{"SecondOfTwoInAudience", market.EventFilter{Agent: bob},
			[]string{"public-intent", "to-alice-bob", "public-summary"}},
		{"PrefixIsNotAMatch", market.EventFilter{Agent: ab},
			[]string{"public-intent", "public-summary", "to-ab"}},
		{"LongerIDIsNotAMatch", market.EventFilter{Agent: abc},
			[]string{"public-intent", "to-abc", "public-summary"}},
		{"StrangerSeesPublic", market.EventFilter{Agent: "did:key:zStranger"},
			[]string{"public-intent", "public-summary"}},
		{"ByType", market.EventFilter{Types: []string{market.EventBidPlaced}},
			[]string{"to-alice", "to-abc"}},
		{"ByTypes", market.EventFilter{Types: []string{market.EventIntentPosted, market.EventContractSettled}},
			[]string{"public-intent", "public-summary", "to-ab"}},
		{"ByIntentType", market.EventFilter{Intent: "SUMMARISE"},
			[]string{"to-alice-bob", "public-summary"}},
		{"After", market.EventFilter{After: seq("to-abc")},
			[]string{"public-summary", "to-ab"}},
		{"Limit", market.EventFilter{Limit: 2},
			[]string{"public-intent", "to-alice"}},
		{"Combined", market.EventFilter{After: seq("public-intent"), Types: []string{market.EventBidPlaced},
			Intent: "TRANSLATE", Agent: alice, Limit: 5},
			[]string{"to-alice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diff(t, "event subjects", tt.want, subjects(listEvents(t, s, tt.f)))
		})
	}
}

func testEventsLimits(t *testing.T, s market.Store) {
	update(t, s, func(tx market.Tx) error {
		for range 1001 {
			if _, err := tx.AppendEvent(newEvent(market.EventIntentPosted, "TRANSLATE", "i")); err != nil {
				return err
			}
		}
		return nil
	})
	for _, tt := range []struct{ limit, want int }{{0, 100}, {1000, 1000}, {2000, 1000}} {
		if got := len(listEvents(t, s, market.EventFilter{Limit: tt.limit})); got != tt.want {
			t.Errorf("Events with limit %d returned %d, want %d", tt.limit, got, tt.want)
		}
	}
}

func testWaitEventsExisting(t *testing.T, s market.Store) {
	seqs := appendEvents(t, s, newEvent(market.EventIntentPosted, "TRANSLATE", "i-1"),
		newEvent(market.EventIntentPosted, "TRANSLATE", "i-2"))
	if err := s.WaitEvents(t.Context(), seqs[0]); err != nil {
		t.Errorf("WaitEvents after the first of two: %v", err)
	}
	if err := s.WaitEvents(t.Context(), 0); err != nil {
		t.Errorf("WaitEvents(0): %v", err)
	}
	ctx := ctxTimeout(t, 50*time.Millisecond)
	if err := s.WaitEvents(ctx, seqs[1]); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitEvents after the last: got %v, want the context's deadline", err)
	}
}

func testWaitEventsWakes(t *testing.T, s market.Store) {
	seqs := appendEvents(t, s, newEvent(market.EventIntentPosted, "TRANSLATE", "i-1"))
	ctx := ctxTimeout(t, time.Minute)
	woke := make(chan error, 1)
	go func() { woke <- s.WaitEvents(ctx, seqs[0]) }()
	next := appendEvents(t, s, newEvent(market.EventBidPlaced, "TRANSLATE", "b-1", bob))
	if err := <-woke; err != nil {
		t.Fatalf("WaitEvents: %v", err)
	}
	// What woke the waiter is committed and visible.
	got := listEvents(t, s, market.EventFilter{After: seqs[0]})
	if len(got) != 1 || got[0].Seq != next[0] {
		t.Errorf("events after %d: got %v, want the one with seq %d", seqs[0], subjects(got), next[0])
	}
}

func testWaitEventsRolledBack(t *testing.T, s market.Store) {
	err := s.Update(t.Context(), func(tx market.Tx) error {
		if _, err := tx.AppendEvent(newEvent(market.EventIntentPosted, "TRANSLATE", "i-1")); err != nil {
			return err
		}
		return errBoom
	})
	if err != errBoom {
		t.Fatalf("Update: got %v, want errBoom", err)
	}
	ctx := ctxTimeout(t, 50*time.Millisecond)
	if err := s.WaitEvents(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitEvents after a rolled-back event: got %v, want the context's deadline", err)
	}
	if got := listEvents(t, s, market.EventFilter{}); len(got) != 0 {
		t.Errorf("events after a rolled-back append: %v", subjects(got))
	}
}
