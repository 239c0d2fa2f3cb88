package sim

import (
	"context"
	"sync"
	"time"
)

// Epoch is where a virtual clock starts, so that runs do not depend on
// the day they were made.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Clock is the simulation's time. In-process runs share a Virtual clock
// with the ledger and the engine; runs against a server use WallClock.
type Clock interface {
	Now() time.Time
	// Advance moves time forward by d: a virtual clock jumps, the wall
	// clock sleeps. It returns early with ctx's error if ctx ends.
	Advance(ctx context.Context, d time.Duration) error
}

// Virtual is a clock that moves only when the simulation advances it. It
// is safe for concurrent use, since the engine, the ledger and the store
// read it from their own goroutines.
type Virtual struct {
	mu sync.Mutex
	t  time.Time
}

// NewVirtual returns a virtual clock set to start.
func NewVirtual(start time.Time) *Virtual { return &Virtual{t: start} }

// Now returns the clock's time.
func (c *Virtual) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance jumps the clock forward by d.
func (c *Virtual) Advance(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
	return nil
}

// WallClock is the real clock, for runs against a server.
type WallClock struct{}

// Now returns the wall-clock time.
func (WallClock) Now() time.Time { return time.Now() }

// Advance sleeps for d.
func (WallClock) Advance(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
