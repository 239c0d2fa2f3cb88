// Package progress owns agentmarket's progress display for long-running
// commands (benchmarks, simulations): a redrawn bar with rate and ETA when
// the output is a terminal, and plain periodic lines when it is piped to a
// file or another program, so logs stay readable.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// Mode chooses how a Bar draws itself.
type Mode uint8

const (
	// Auto draws a bar on a terminal and lines elsewhere.
	Auto Mode = iota
	// Bar redraws one line in place with carriage returns.
	Bar
	// Lines prints a plain line every Interval, and one at the end.
	Lines
	// Off prints nothing.
	Off
)

// Options configure a Tracker.
type Options struct {
	// Label names the task on every line, e.g. "W1 A batch=8190".
	Label string
	// Unit names what is counted, e.g. "transfers". Defaults to "items".
	Unit string
	// Total is the count at which the task is complete; 0 means unknown.
	Total int64
	// Budget, when positive, is the wall-clock time the task may take: the
	// fraction done is whichever of count and time is further along, so a
	// task bounded by either shows a truthful bar and ETA.
	Budget time.Duration
	// Mode chooses the display; Auto looks at the writer.
	Mode Mode
	// Interval is how often the display is redrawn. Defaults to 100ms on a
	// terminal and 2s for lines.
	Interval time.Duration
	// Width is the bar's width in cells. Defaults to 30.
	Width int
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// Tracker follows one task's progress and draws it to a writer from its
// own goroutine. Add is safe for concurrent use by many workers and costs
// one atomic add.
type Tracker struct {
	w     io.Writer
	opts  Options
	mode  Mode
	start atomic.Int64 // unix nanoseconds when counting began
	count atomic.Int64
	// status, when set, is shown instead of the counts: what the task is
	// doing before it starts counting.
	status atomic.Pointer[string]
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	wmu    sync.Mutex // serialises writes to w
}

// IsTerminal reports whether w is a terminal: an *os.File (or anything with
// an Fd method) whose descriptor is a tty.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// Start begins tracking a task and starts drawing it to w. The caller must
// call Finish, which stops the drawing goroutine.
func Start(w io.Writer, opts Options) *Tracker {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Unit == "" {
		opts.Unit = "items"
	}
	if opts.Width <= 0 {
		opts.Width = 30
	}
	mode := opts.Mode
	if mode == Auto {
		mode = Lines
		if IsTerminal(w) {
			mode = Bar
		}
	}
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
		if mode == Bar {
			opts.Interval = 100 * time.Millisecond
		}
	}
	t := &Tracker{w: w, opts: opts, mode: mode, stop: make(chan struct{}), done: make(chan struct{})}
	t.start.Store(opts.Now().UnixNano())
	if mode == Off {
		close(t.done)
		return t
	}
	go t.loop()
	return t
}

// Discard returns a Tracker that counts but never draws, for callers that
// were given no writer.
func Discard() *Tracker {
	return Start(io.Discard, Options{Mode: Off})
}

// Status shows what the task is doing before it starts counting, such as
// "setting up"; the display shows it until Begin.
func (t *Tracker) Status(s string) {
	t.status.Store(&s)
	if t.mode == Lines {
		t.print(t.opts.Label + ": " + s + "\n")
	}
}

func (t *Tracker) print(s string) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	io.WriteString(t.w, s)
}

// Begin clears the status and restarts the clock, so that rate and ETA
// cover only the counted work.
func (t *Tracker) Begin() {
	t.start.Store(t.opts.Now().UnixNano())
	t.status.Store(nil)
}

// Add counts n more units done.
func (t *Tracker) Add(n int64) { t.count.Add(n) }

// Count returns the units counted so far.
func (t *Tracker) Count() int64 { return t.count.Load() }

// Finish stops the display and draws the final state: on a terminal the
// bar is replaced by a summary line. It is safe to call more than once.
func (t *Tracker) Finish() {
	t.once.Do(func() {
		if t.mode == Off {
			return
		}
		close(t.stop)
		<-t.done
		line := t.summary(t.opts.Now())
		if t.mode == Bar {
			t.print("\r" + line + "\x1b[K\n")
			return
		}
		t.print(line + "\n")
	})
}

func (t *Tracker) loop() {
	defer close(t.done)
	tick := time.NewTicker(t.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			now := t.opts.Now()
			switch st := t.status.Load(); {
			case st != nil && t.mode == Bar:
				t.print("\r" + t.opts.Label + ": " + *st + "\x1b[K")
			case st != nil:
				// Lines mode printed the status once, when it was set.
			case t.mode == Bar:
				t.print("\r" + t.bar(now) + "\x1b[K")
			default:
				t.print(t.line(now) + "\n")
			}
		}
	}
}

// state is what every rendering shows.
type state struct {
	count    int64
	elapsed  time.Duration
	rate     float64 // units per second
	fraction float64 // 0..1, or -1 when unknown
	eta      time.Duration
}

func (t *Tracker) state(now time.Time) state {
	s := state{count: t.count.Load(), elapsed: now.Sub(time.Unix(0, t.start.Load())), fraction: -1, eta: -1}
	if secs := s.elapsed.Seconds(); secs > 0 {
		s.rate = float64(s.count) / secs
	}
	if t.opts.Total > 0 {
		s.fraction = float64(s.count) / float64(t.opts.Total)
	}
	if t.opts.Budget > 0 {
		s.fraction = max(s.fraction, float64(s.elapsed)/float64(t.opts.Budget))
	}
	if s.fraction >= 0 {
		s.fraction = min(s.fraction, 1)
		if s.fraction > 0 {
			s.eta = time.Duration(float64(s.elapsed) * (1 - s.fraction) / s.fraction)
		}
	}
	return s
}

func (t *Tracker) bar(now time.Time) string {
	s := t.state(now)
	var b strings.Builder
	b.WriteString(t.opts.Label)
	b.WriteString(" ")
	if s.fraction >= 0 {
		full := int(s.fraction * float64(t.opts.Width))
		b.WriteString("[")
		b.WriteString(strings.Repeat("=", full))
		if full < t.opts.Width {
			b.WriteString(">")
			b.WriteString(strings.Repeat(" ", t.opts.Width-full-1))
		}
		fmt.Fprintf(&b, "] %3.0f%% ", s.fraction*100)
	}
	fmt.Fprintf(&b, "%s %s  %s/s", Count(s.count), t.opts.Unit, Count(int64(s.rate)))
	if s.eta >= 0 {
		fmt.Fprintf(&b, "  ETA %s", s.eta.Round(time.Second))
	}
	return b.String()
}

func (t *Tracker) line(now time.Time) string {
	s := t.state(now)
	line := fmt.Sprintf("%s: %s %s in %s, %s/s", t.opts.Label, Count(s.count), t.opts.Unit,
		s.elapsed.Round(time.Millisecond), Count(int64(s.rate)))
	if s.fraction >= 0 {
		line += fmt.Sprintf(", %.0f%%", s.fraction*100)
	}
	if s.eta >= 0 {
		line += fmt.Sprintf(", ETA %s", s.eta.Round(time.Second))
	}
	return line
}

func (t *Tracker) summary(now time.Time) string {
	s := t.state(now)
	return fmt.Sprintf("%s: done, %s %s in %s, %s/s", t.opts.Label, Count(s.count), t.opts.Unit,
		s.elapsed.Round(time.Millisecond), Count(int64(s.rate)))
}

// Count formats n with thousands separators: 1234567 is "1,234,567".
func Count(n int64) string {
	if n < 0 {
		return "-" + Count(-n)
	}
	s := fmt.Sprint(n)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	if pre > 0 {
		b.WriteString(s[:pre])
	}
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}
