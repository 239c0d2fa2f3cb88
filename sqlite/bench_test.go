package sqlite_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/sqlite"
)

// BenchmarkUpdateConcurrent measures b.N Updates from 64 goroutines
// twice in the same run: against a store that group-commits them, and
// against the baseline of one transaction (and one fsync) per Update.
// Each Update posts an intent and appends its event, as PostIntent does.
// It reports each side's time per Update and the speedup of group commit
// over the baseline.
func BenchmarkUpdateConcurrent(b *testing.B) {
	const writers = 64
	group := MustOpen(b, filepath.Join(b.TempDir(), "group.db"), sqlite.Options{})
	baseline := MustOpen(b, filepath.Join(b.TempDir(), "baseline.db"), sqlite.Options{MaxBatch: 1})
	var ids atomic.Int64
	run := func(s *sqlite.Store) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range writers {
			wg.Go(func() {
				for next.Add(1) <= int64(b.N) {
					if err := s.Update(b.Context(), postIntent(ids.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	b.ResetTimer()
	g := run(group)
	base := run(baseline)
	b.StopTimer()
	b.ReportMetric(float64(g.Nanoseconds())/float64(b.N), "ns/update-group")
	b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "ns/update-baseline")
	b.ReportMetric(float64(base)/float64(g), "speedup")
}

// postIntent is the fn of an Update that posts intent n.
func postIntent(n int64) func(market.Tx) error {
	id := fmt.Sprintf("i-%d", n)
	return func(tx market.Tx) error {
		in := market.Intent{ID: id, RequestID: "r-" + id, Buyer: "did:key:zBuyer", Intent: "TRANSLATE",
			Parameters: json.RawMessage(`{"word_count":5000}`), State: market.IntentOpen,
			BidDeadline: t0.Add(time.Minute), AwardDeadline: t0.Add(2 * time.Minute), CreatedAt: t0}
		if err := tx.PutIntent(in); err != nil {
			return err
		}
		_, err := tx.AppendEvent(market.Event{Type: market.EventIntentPosted, At: t0, Intent: in.Intent,
			Subject: id, Data: json.RawMessage(`{"id":"` + id + `"}`)})
		return err
	}
}
