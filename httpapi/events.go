package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// maxEventWait bounds a long poll on the JSON form of GET /v1/events.
const maxEventWait = 60 * time.Second

// handleEvents serves GET /v1/events: a server-sent event stream when the
// client accepts text/event-stream, else a JSON array (a long poll with
// ?wait=). Either way the caller sees public events and its own, as the
// engine decides; the operator sees all. A stream resumes after the
// Last-Event-ID header (an event's seq), or after ?after=.
func handleEvents(svc market.Service, heartbeat time.Duration, closing <-chan struct{}) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		f, err := eventFilter(r)
		if err != nil {
			return err
		}
		if !acceptsEventStream(r) {
			if f.Wait > market.Duration(maxEventWait) {
				f.Wait = market.Duration(maxEventWait)
			}
			if f.Wait > 0 {
				extendWrite(w, time.Duration(f.Wait)+10*time.Second)
			}
			evs, err := svc.Events(r.Context(), f)
			if err != nil {
				return err
			}
			p, _ := market.PrincipalFrom(r.Context())
			return encode(w, http.StatusOK, redactEvents(evs, p))
		}
		return streamEvents(w, r, svc, f, heartbeat, closing)
	}
}

// streamEvents writes events as they come, with a heartbeat comment when
// none has come for a while, until the client leaves or the server closes.
func streamEvents(w http.ResponseWriter, r *http.Request, svc market.Service, f market.EventFilter, heartbeat time.Duration, closing <-chan struct{}) error {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		seq, err := strconv.ParseInt(strings.TrimSpace(id), 10, 64)
		if err != nil || seq < 0 {
			return problem(market.Invalid, "invalid_last_event_id", "Last-Event-ID must be an event's seq, a non-negative integer")
		}
		f.After = seq
	}
	// A first read without waiting surfaces authentication and filter
	// errors as a problem, before the stream's headers go out.
	first := f
	first.Wait = 0
	evs, err := svc.Events(r.Context(), first)
	if err != nil {
		return err
	}
	p, _ := market.PrincipalFrom(r.Context())

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if closing != nil {
		go func() {
			select {
			case <-closing:
				cancel()
			case <-ctx.Done():
			}
		}()
	}

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	extendWrite(w, heartbeat+10*time.Second)
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 1000\n\n")
	for {
		for _, ev := range redactEvents(evs, p) {
			data, err := json.Marshal(ev)
			if err != nil {
				return fmt.Errorf("encode event %d: %w", ev.Seq, err)
			}
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Type, data)
			f.After = ev.Seq
		}
		if len(evs) == 0 {
			fmt.Fprint(w, ": heartbeat\n\n")
		}
		if err := rc.Flush(); err != nil {
			return nil // the client left
		}
		if ctx.Err() != nil {
			return nil
		}
		f.Wait = market.Duration(heartbeat)
		evs, err = svc.Events(ctx, f)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(w, ": error %s\n\n", market.CodeOf(err))
				rc.Flush()
			}
			return nil // headers are gone; the client reconnects and resumes
		}
		extendWrite(w, heartbeat+10*time.Second)
	}
}

// eventFilter reads GET /v1/events's query.
func eventFilter(r *http.Request) (market.EventFilter, error) {
	q := queryOf(r)
	f := market.EventFilter{
		After:  q.int64("after"),
		Intent: q.str("intent"),
		Agent:  market.AgentID(q.str("agent")),
		Limit:  int(q.int64("limit")),
		Wait:   market.Duration(q.duration("wait")),
	}
	for _, v := range r.URL.Query()["types"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				f.Types = append(f.Types, t)
			}
		}
	}
	if f.After < 0 {
		return f, problem(market.Invalid, "invalid_parameter", "after must not be negative")
	}
	return f, q.err
}

// acceptsEventStream reports whether the client asked for server-sent
// events.
func acceptsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/event-stream" {
				return true
			}
		}
	}
	return false
}

// redactEvents hides an event's audience from everyone but the operator:
// a seller must not learn which competitors an intent was routed to.
func redactEvents(evs []market.Event, p market.Principal) []market.Event {
	if p.Operator {
		return evs
	}
	out := make([]market.Event, len(evs))
	for i, ev := range evs {
		ev.Audience = nil
		out[i] = ev
	}
	return out
}

// extendWrite moves the response's write deadline, which the server's
// WriteTimeout would otherwise impose on a long poll or a stream.
func extendWrite(w http.ResponseWriter, d time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}
