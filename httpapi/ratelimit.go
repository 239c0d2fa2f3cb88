package httpapi

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter holds one token bucket per caller. Buckets idle long enough to
// have refilled are dropped, so the map stays as large as the set of
// recently active callers.
type limiter struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	now     func() time.Time
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(limit rate.Limit, burst int, now func() time.Time) *limiter {
	return &limiter{limit: limit, burst: burst, now: now, buckets: make(map[string]*bucket)}
}

// allow takes a token from key's bucket. When there is none it returns
// how long until there will be, and false.
func (l *limiter) allow(key string) (time.Duration, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Second, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// sweep drops buckets that have been idle for longer than a full refill,
// at most once a minute.
func (l *limiter) sweep(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	idle := time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second)) + time.Second
	for k, b := range l.buckets {
		if now.Sub(b.seen) > idle {
			delete(l.buckets, k)
		}
	}
}
