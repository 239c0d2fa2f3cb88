package journalstore_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/journalstore"
	"github.com/agentmarket/agentmarket/market"
	"github.com/agentmarket/agentmarket/sqlite"
)

// BenchmarkUpdateConcurrent measures b.N Updates from 64 goroutines
// against the journal store and, as the baseline in the same run,
// against the SQLite store with its group commit. Each Update posts an
// intent and appends its event, as PostIntent does. It reports each
// side's time per Update and the journal store's speedup.
//
// The benchmark imports the sqlite adapter only to compare against it.
func BenchmarkUpdateConcurrent(b *testing.B) {
	const writers = 64
	journal := MustOpen(b, b.TempDir(), journalstore.Options{})
	lite, err := sqlite.Open(filepath.Join(b.TempDir(), "market.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lite.Close() })
	var ids atomic.Int64
	run := func(s market.Store) time.Duration {
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
	j := run(journal)
	l := run(lite)
	b.StopTimer()
	b.ReportMetric(float64(j.Nanoseconds())/float64(b.N), "ns/update-journal")
	b.ReportMetric(float64(l.Nanoseconds())/float64(b.N), "ns/update-sqlite")
	b.ReportMetric(float64(l)/float64(j), "speedup")
	st := journal.Stats()
	b.ReportMetric(float64(b.N)/float64(st.Records), "updates/record")
}

// postIntent is the fn of an Update that posts intent n.
func postIntent(n int64) func(market.Tx) error {
	id := fmt.Sprintf("i-%d", n)
	return func(tx market.Tx) error {
		in := market.Intent{ID: id, RequestID: "r-" + id, Buyer: "did:key:zBuyer", Intent: "TRANSLATE",
			Parameters: json.RawMessage(`{"word_count":5000}`), State: market.IntentOpen,
			BidDeadline: wlT0.Add(time.Minute), AwardDeadline: wlT0.Add(2 * time.Minute), CreatedAt: wlT0}
		if err := tx.PutIntent(in); err != nil {
			return err
		}
		_, err := tx.AppendEvent(market.Event{Type: market.EventIntentPosted, At: wlT0, Intent: in.Intent,
			Subject: id, Data: json.RawMessage(`{"id":"` + id + `"}`)})
		return err
	}
}
