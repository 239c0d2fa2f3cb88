package progress_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/progress"
)

// syncBuffer lets the test read what the drawing goroutine wrote.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPipedOutputIsPlainLines(t *testing.T) {
	var out syncBuffer
	clock := &fakeClock{now: time.Unix(1000, 0)}
	tr := progress.Start(&out, progress.Options{
		Label: "W1 A batch=100", Unit: "transfers", Total: 1000,
		Interval: time.Millisecond, Now: clock.Now,
	})
	clock.Advance(time.Second)
	tr.Add(250)
	waitFor(t, "a progress line", func() bool { return strings.Contains(out.String(), "250 transfers") })
	tr.Finish()
	tr.Finish() // A second Finish is harmless.
	got := out.String()
	if strings.ContainsAny(got, "\r\x1b") {
		t.Errorf("piped output has terminal control characters: %q", got)
	}
	for _, want := range []string{"W1 A batch=100: 250 transfers in 1s, 250/s, 25%, ETA 3s", "W1 A batch=100: done, 250 transfers in 1s, 250/s"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestTerminalOutputRedrawsOneBar(t *testing.T) {
	var out syncBuffer
	clock := &fakeClock{now: time.Unix(1000, 0)}
	tr := progress.Start(&out, progress.Options{
		Label: "sim", Unit: "steps", Budget: 10 * time.Second, Mode: progress.Bar,
		Interval: time.Millisecond, Width: 10, Now: clock.Now,
	})
	clock.Advance(5 * time.Second)
	tr.Add(1500)
	waitFor(t, "a half-full bar", func() bool { return strings.Contains(out.String(), "[=====>    ]  50%") })
	tr.Finish()
	got := out.String()
	if !strings.HasPrefix(got, "\r") || strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") {
		t.Errorf("bar output should redraw in place and end with one summary line: %q", got)
	}
	if !strings.Contains(got, "1,500 steps  300/s  ETA 5s") {
		t.Errorf("bar lacks count, rate and ETA: %q", got)
	}
}

func TestAutoModeOnABufferPrintsLines(t *testing.T) {
	if progress.IsTerminal(&bytes.Buffer{}) {
		t.Fatal("a buffer is not a terminal")
	}
	var out syncBuffer
	tr := progress.Start(&out, progress.Options{Label: "x", Interval: time.Hour})
	tr.Add(3)
	tr.Finish()
	if got := out.String(); !strings.HasPrefix(got, "x: done, 3 items in ") || strings.Contains(got, "\r") {
		t.Errorf("auto mode on a buffer: %q", got)
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -45000: "-45,000"} {
		if got := progress.Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestStatusShowsUntilBeginAndRestartsTheClock(t *testing.T) {
	var out syncBuffer
	clock := &fakeClock{now: time.Unix(1000, 0)}
	tr := progress.Start(&out, progress.Options{Label: "W3 B", Unit: "transfers", Interval: time.Millisecond, Now: clock.Now})
	tr.Status("setting up")
	clock.Advance(time.Minute) // Setup time must not count against the rate.
	tr.Begin()
	clock.Advance(2 * time.Second)
	tr.Add(100)
	tr.Finish()
	got := out.String()
	if !strings.HasPrefix(got, "W3 B: setting up\n") || strings.Count(got, "setting up") != 1 {
		t.Errorf("the status should print once, first: %q", got)
	}
	if !strings.HasSuffix(got, "W3 B: done, 100 transfers in 2s, 50/s\n") {
		t.Errorf("the summary should count from Begin: %q", got)
	}
}
