package postgres

import (
	"context"
	"slices"

	"github.com/agentmarket/agentmarket/ledger"
)

// call is one CreateTransfers call waiting for, or riding in, a
// transaction.
type call struct {
	xs   []ledger.Transfer
	res  []ledger.Result
	err  error
	done chan struct{} // closed once res or err is final
}

// submit applies c's batch and returns once it has committed: group
// commit, as the embedded ledger does it. Calls queue up; a caller that
// finds a transaction slot free leads: it takes the queued calls, as many
// as fit in ledger.MaxBatch transfers, applies each one's batch after the
// other in one transaction (each with its own linked chains and results,
// as if they had run one after another), commits once and answers them
// all. So under load one commit, and one fsync, serves many callers, and
// the slots bound how many transactions one node has in flight.
//
// A call still queued when ctx ends is withdrawn; once a leader has taken
// it, its caller waits for the outcome, which may already be committed.
func (l *Ledger) submit(ctx context.Context, c *call) error {
	l.qmu.Lock()
	l.queue = append(l.queue, c)
	l.qmu.Unlock()
	for {
		select {
		case <-c.done:
			return c.err
		case l.slots <- struct{}{}:
			took := l.lead()
			<-l.slots
			if !took {
				// The queue was empty, so another leader has c.
				<-c.done
				return c.err
			}
		case <-ctx.Done():
			l.qmu.Lock()
			i := slices.Index(l.queue, c)
			if i >= 0 {
				l.queue = slices.Delete(l.queue, i, i+1)
			}
			l.qmu.Unlock()
			if i >= 0 {
				return ctx.Err()
			}
			<-c.done
			return c.err
		}
	}
}

// lead takes the calls at the head of the queue that fit in one batch,
// runs them in one transaction, and answers them. It reports whether
// there were any.
func (l *Ledger) lead() bool {
	l.qmu.Lock()
	n, total := 0, 0
	for n < len(l.queue) && total+len(l.queue[n].xs) <= ledger.MaxBatch {
		total += len(l.queue[n].xs)
		n++
	}
	calls := slices.Clone(l.queue[:n])
	l.queue = slices.Delete(l.queue, 0, n)
	l.qmu.Unlock()
	if n == 0 {
		return false
	}
	// The transaction serves callers whose contexts differ; once taken,
	// their calls run to an outcome whatever any one context does.
	err := retry(context.Background(), "create transfers", func() error {
		for _, c := range calls {
			clear(c.res)
		}
		_, err := l.run(context.Background(), calls)
		return err
	})
	for _, c := range calls {
		c.err = err
		close(c.done)
	}
	return true
}
