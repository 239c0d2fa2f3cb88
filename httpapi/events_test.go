package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/httpapi"
	"github.com/agentmarket/agentmarket/httpapi/httpapitest"
	"github.com/agentmarket/agentmarket/market"
)

// sseLine reads a stream's lines into a channel.
func sseLines(t *testing.T, r *http.Request) (<-chan string, *http.Response) {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines, resp
}

// nextEvent reads lines up to the next event and returns its id, type and
// data; comments it passes are counted.
func nextEvent(t *testing.T, lines <-chan string, comments *int) (int64, string, market.Event) {
	t.Helper()
	var id int64
	var typ string
	var ev market.Event
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the stream ended")
			}
			switch {
			case strings.HasPrefix(l, ":"):
				*comments++
			case strings.HasPrefix(l, "id: "):
				id, _ = strconv.ParseInt(strings.TrimPrefix(l, "id: "), 10, 64)
			case strings.HasPrefix(l, "event: "):
				typ = strings.TrimPrefix(l, "event: ")
			case strings.HasPrefix(l, "data: "):
				if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &ev); err != nil {
					t.Fatal(err)
				}
			case l == "" && typ != "":
				return id, typ, ev
			}
		case <-timeout:
			t.Fatal("no event")
		}
	}
}

func TestEventStream(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{API: func(c *httpapi.Config) { c.Heartbeat = 50 * time.Millisecond }})
	ctx := t.Context()
	buyer := mustAgent(t, m.URL, "buyer", "op-b", market.RoleBuyer)
	seller := mustAgent(t, m.URL, "seller", "op-s", market.RoleSeller)
	must[market.Offer](t)(seller.PublishOffer(ctx, market.Offer{Intent: sortIntent, BasePriceMicrocredits: 1, LatencyMs: 1000}))
	all := must[[]market.Event](t)(buyer.Events(ctx, market.EventFilter{}))
	last := all[len(all)-1].Seq

	stream := func(key market.PrivateKey, query string, lastID int64) (<-chan string, *http.Response) {
		r := rawRequest(t, "GET", m.URL+"/v1/events"+query, nil, signing{key: key})
		r.Header.Set("Accept", "text/event-stream")
		if lastID > 0 {
			r.Header.Set("Last-Event-ID", strconv.FormatInt(lastID, 10))
		}
		return sseLines(t, r)
	}

	buyerLines, resp := stream(buyer.Key, "", last)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	opLines, _ := stream(m.Operator, "?types=intent.posted,bid.placed", last)

	in := must[market.Intent](t)(buyer.PostIntent(ctx, market.IntentRequest{RequestID: "r", Intent: sortIntent,
		Parameters: json.RawMessage(`{}`), Constraints: market.Constraints{MaxBudgetMicrocredits: 10}}))
	must[market.Bid](t)(seller.PlaceBid(ctx, market.BidRequest{Intent: in.ID, PriceMicrocredits: 5, LatencyMs: 1000}))
	must[market.Intent](t)(buyer.CancelIntent(ctx, in.ID))

	var comments int
	id, typ, ev := nextEvent(t, buyerLines, &comments)
	if typ != market.EventIntentPosted || id != ev.Seq || id <= last || ev.Subject != in.ID || ev.Audience != nil {
		t.Fatalf("buyer's first event: id %d %s %+v", id, typ, ev)
	}
	// The seller's sealed bid is not the buyer's to see: the next event
	// the buyer gets is the cancellation.
	if _, typ, _ = nextEvent(t, buyerLines, &comments); typ != market.EventIntentCancelled {
		t.Fatalf("buyer's second event %s, want %s", typ, market.EventIntentCancelled)
	}

	_, typ, ev = nextEvent(t, opLines, &comments)
	if typ != market.EventIntentPosted || len(ev.Audience) == 0 {
		t.Fatalf("operator's first event %s, audience %v: the operator sees audiences", typ, ev.Audience)
	}
	if _, typ, _ = nextEvent(t, opLines, &comments); typ != market.EventBidPlaced {
		t.Fatalf("operator's second event %s, want %s (the filter drops the cancellation)", typ, market.EventBidPlaced)
	}

	comments = 0
	deadline := time.After(5 * time.Second)
	for comments < 2 {
		select {
		case l := <-buyerLines:
			if l == ": heartbeat" {
				comments++
			}
		case <-deadline:
			t.Fatal("no heartbeats on an idle stream")
		}
	}

	t.Run("ABadLastEventIDIsRefused", func(t *testing.T) {
		r := rawRequest(t, "GET", m.URL+"/v1/events", nil, signing{key: buyer.Key})
		r.Header.Set("Accept", "text/event-stream")
		r.Header.Set("Last-Event-ID", "yesterday")
		if got := send(t, r); got.status != 400 || got.problem.Code != "invalid_last_event_id" {
			t.Fatalf("got %d %s", got.status, got.body)
		}
	})

	t.Run("LongPoll", func(t *testing.T) {
		evs := must[[]market.Event](t)(buyer.Events(ctx, market.EventFilter{After: last}))
		head := evs[len(evs)-1].Seq
		got := make(chan []market.Event, 1)
		go func() {
			evs, _ := buyer.Events(context.Background(), market.EventFilter{After: head, Wait: market.Duration(10 * time.Second)})
			got <- evs
		}()
		time.Sleep(100 * time.Millisecond)
		mustAgent(t, m.URL, "late", "", market.RoleBuyer)
		select {
		case evs := <-got:
			if len(evs) != 1 || evs[0].Type != market.EventAgentRegistered {
				t.Fatalf("long poll got %+v", evs)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the long poll did not return on a new event")
		}
	})
}

// TestStreamsOutliveTheWriteTimeout checks that an event stream extends
// its write deadline, so that a server's WriteTimeout, which guards
// ordinary responses, does not cut streams.
func TestStreamsOutliveTheWriteTimeout(t *testing.T) {
	m := httpapitest.New(t, httpapitest.Options{API: func(c *httpapi.Config) { c.Heartbeat = 50 * time.Millisecond }})
	buyer := mustAgent(t, m.URL, "buyer", "", market.RoleBuyer)
	srv := httptest.NewUnstartedServer(m.Handler)
	srv.Config.WriteTimeout = 300 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close) // after the stream's body closes: cleanups run last first
	r := rawRequest(t, "GET", srv.URL+"/v1/events", nil, signing{key: buyer.Key})
	r.Header.Set("Accept", "text/event-stream")
	lines, _ := sseLines(t, r)
	beats := 0
	timeout := time.After(10 * time.Second)
	for beats < 20 { // a second of heartbeats: three write timeouts
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the stream ended after %d heartbeats", beats)
			}
			if l == ": heartbeat" {
				beats++
			}
		case <-timeout:
			t.Fatal("too few heartbeats")
		}
	}
}
