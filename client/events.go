package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentmarket/agentmarket/market"
)

// eventQuery encodes an event filter for GET /v1/events; paging fields
// only for the JSON form.
func eventQuery(f market.EventFilter, page bool) url.Values {
	v := url.Values{}
	if len(f.Types) > 0 {
		v.Set("types", strings.Join(f.Types, ","))
	}
	set(v, "intent", f.Intent)
	set(v, "agent", string(f.Agent))
	if page {
		setInt(v, "after", f.After)
		setInt(v, "limit", int64(f.Limit))
		if f.Wait > 0 {
			v.Set("wait", strconv.FormatInt(time.Duration(f.Wait).Milliseconds(), 10))
		}
	}
	return v
}

// maxEventBytes bounds one event's data line on a stream.
const maxEventBytes = 8 << 20

// Subscribe streams the events the client may see that match f (its
// Types, Intent and, for the operator, Agent), starting after f.After.
// It returns once the server has accepted the subscription; a refusal
// (a bad filter, a bad signature) is its error. When the connection
// drops, the client reconnects with Last-Event-ID set to the last event
// it delivered, so no event is lost or repeated. The channel closes when
// ctx ends, or when the server refuses a reconnection for good (a 4xx
// other than 429).
func (c *Client) Subscribe(ctx context.Context, f market.EventFilter) (<-chan market.Event, error) {
	resp, err := c.openStream(ctx, f, f.After)
	for attempt := 0; err != nil; attempt++ {
		if market.KindOf(err) != market.Transient && market.KindOf(err) != market.RateLimited || attempt >= c.retries {
			return nil, err
		}
		if err := c.sleep(ctx, c.backoff(attempt)); err != nil {
			return nil, cancelled("subscribe", err)
		}
		resp, err = c.openStream(ctx, f, f.After)
	}
	ch := make(chan market.Event, 64)
	go func() {
		defer close(ch)
		last := f.After
		for {
			last = readStream(ctx, resp.Body, ch, last)
			resp.Body.Close()
			for attempt := 0; ; attempt++ {
				if c.sleep(ctx, c.backoff(attempt)) != nil {
					return
				}
				resp, err = c.openStream(ctx, f, last)
				if err == nil {
					break
				}
				if k := market.KindOf(err); k != market.Transient && k != market.RateLimited {
					return
				}
			}
		}
	}()
	return ch, nil
}

// openStream connects to the event stream after seq after.
func (c *Client) openStream(ctx context.Context, f market.EventFilter, after int64) (*http.Response, error) {
	q := eventQuery(f, false)
	resp, err := c.send(ctx, http.MethodGet, "/v1/events", q, nil, "", "text/event-stream", after)
	if err != nil {
		if ctx.Err() != nil {
			return nil, cancelled("subscribe", ctx.Err())
		}
		return nil, market.E(market.Op("subscribe"), market.Transient, market.Code("unavailable"), "the market is unreachable", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, problemError("subscribe", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		return nil, market.E(market.Op("subscribe"), market.Internal, market.Code("bad_response"), fmt.Sprintf("the market answered %q, not an event stream", ct))
	}
	return resp, nil
}

// readStream delivers a stream's events to ch until the stream or ctx
// ends, and returns the seq of the last event delivered.
func readStream(ctx context.Context, body io.Reader, ch chan<- market.Event, last int64) int64 {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), maxEventBytes)
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() == 0 {
				continue
			}
			var ev market.Event
			err := json.Unmarshal([]byte(data.String()), &ev)
			data.Reset()
			if err != nil || ev.Seq <= last {
				continue // not an event of ours, or one already delivered
			}
			select {
			case ch <- ev:
				last = ev.Seq
			case <-ctx.Done():
				return last
			}
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
		// Comments (heartbeats), id, event and retry lines carry nothing
		// the JSON data does not.
	}
	return last
}

// sleep waits d, or returns ctx's error if it ends first.
func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
