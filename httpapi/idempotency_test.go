package httpapi_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentmarket/agentmarket/httpapi"
	"github.com/agentmarket/agentmarket/httpapi/httpapitest"
	"github.com/agentmarket/agentmarket/market"
)

// gatedIntents holds PostIntent calls whose request_id is "slow" until
// the test releases them, and fails those whose request_id is "flaky"
// with a transient error the first time: decorators at the outer edge of
// a real engine.
type gatedIntents struct {
	market.Service
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	failed  bool
}

func (g *gatedIntents) PostIntent(ctx context.Context, r market.IntentRequest) (market.Intent, error) {
	switch r.RequestID {
	case "slow":
		g.entered <- struct{}{}
		<-g.release
	case "flaky":
		g.mu.Lock()
		first := !g.failed
		g.failed = true
		g.mu.Unlock()
		if first {
			return market.Intent{}, market.E(market.Transient, market.Code("unavailable"), "the ledger is busy")
		}
	}
	return g.Service.PostIntent(ctx, r)
}

func TestIdempotency(t *testing.T) {
	gate := &gatedIntents{entered: make(chan struct{}), release: make(chan struct{})}
	m := httpapitest.New(t, httpapitest.Options{Service: func(s market.Service) market.Service {
		gate.Service = s
		return gate
	}})
	buyer := mustAgent(t, m.URL, "buyer", "", market.RoleBuyer)
	other := mustAgent(t, m.URL, "other", "", market.RoleBuyer)
	intentURL := m.URL + "/v1/intents"
	intent := func(requestID string) []byte {
		return []byte(`{"request_id":"` + requestID + `","intent":"SORT_LIST","parameters":{"items":[1]},"constraints":{"max_budget_microcredits":100}}`)
	}

	t.Run("SameKeySameBodyReplaysTheResponse", func(t *testing.T) {
		first := send(t, rawRequest(t, "POST", intentURL, intent("r-1"), signing{key: buyer.Key, idem: "k-1"}))
		if first.status != http.StatusCreated || first.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("first: %d %s replayed=%q", first.status, first.body, first.header.Get("Idempotent-Replayed"))
		}
		again := send(t, rawRequest(t, "POST", intentURL, intent("r-1"), signing{key: buyer.Key, idem: "k-1"}))
		if again.status != first.status || !bytes.Equal(again.body, first.body) || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %d %s replayed=%q; want the first response again", again.status, again.body, again.header.Get("Idempotent-Replayed"))
		}
		if again.header.Get("Content-Type") != "application/json" {
			t.Fatalf("replay Content-Type %q", again.header.Get("Content-Type"))
		}
	})

	t.Run("SameKeyDifferentBodyIs422", func(t *testing.T) {
		r := send(t, rawRequest(t, "POST", intentURL, intent("r-2"), signing{key: buyer.Key, idem: "k-1"}))
		if r.status != http.StatusUnprocessableEntity || r.problem.Code != "idempotency_key_reused" {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})

	t.Run("KeysAreScopedPerAgent", func(t *testing.T) {
		r := send(t, rawRequest(t, "POST", intentURL, intent("r-3"), signing{key: other.Key, idem: "k-1"}))
		if r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("another agent's k-1: %d %s", r.status, r.body)
		}
	})

	t.Run("ErrorsBelow500AreStored", func(t *testing.T) {
		bad := []byte(`{"request_id":"r-4","intent":"SORT_LIST","constraints":{"max_budget_microcredits":0}}`)
		first := send(t, rawRequest(t, "POST", intentURL, bad, signing{key: buyer.Key, idem: "k-4"}))
		again := send(t, rawRequest(t, "POST", intentURL, bad, signing{key: buyer.Key, idem: "k-4"}))
		if first.status != 400 || again.status != 400 || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("first %d, again %d replayed=%q", first.status, again.status, again.header.Get("Idempotent-Replayed"))
		}
	})

	t.Run("A5xxIsNeverStored", func(t *testing.T) {
		first := send(t, rawRequest(t, "POST", intentURL, intent("flaky"), signing{key: buyer.Key, idem: "k-5"}))
		if first.status != http.StatusServiceUnavailable || first.header.Get("Retry-After") == "" {
			t.Fatalf("first: %d %s", first.status, first.body)
		}
		again := send(t, rawRequest(t, "POST", intentURL, intent("flaky"), signing{key: buyer.Key, idem: "k-5"}))
		if again.status != http.StatusCreated || again.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("retry after a 503: %d %s replayed=%q; want it to run", again.status, again.body, again.header.Get("Idempotent-Replayed"))
		}
	})

	t.Run("ARequestInFlightIs409", func(t *testing.T) {
		slow := rawRequest(t, "POST", intentURL, intent("slow"), signing{key: buyer.Key, idem: "k-6"})
		replayed := slow.Clone(t.Context())
		done := make(chan int)
		go func() {
			// Only the test goroutine may fail the test: report the status.
			resp, err := http.DefaultClient.Do(slow)
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		<-gate.entered
		r := send(t, rawRequest(t, "POST", intentURL, intent("slow"), signing{key: buyer.Key, idem: "k-6"}))
		// The same request byte for byte, nonce included, is a replay
		// while the first is running too.
		rp := send(t, replayed)
		close(gate.release)
		if rp.status != http.StatusUnauthorized || rp.problem.Code != "nonce_reused" {
			t.Fatalf("a replay of the request in flight: %d %s", rp.status, rp.body)
		}
		if r.status != http.StatusConflict || r.problem.Code != "request_in_flight" || r.header.Get("Retry-After") == "" {
			t.Fatalf("concurrent duplicate: %d %s Retry-After %q", r.status, r.body, r.header.Get("Retry-After"))
		}
		if status := <-done; status != http.StatusCreated {
			t.Fatalf("the first request: %d", status)
		}
		after := send(t, rawRequest(t, "POST", intentURL, intent("slow"), signing{key: buyer.Key, idem: "k-6"}))
		if after.status != http.StatusCreated || after.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("after it finished: %d %s", after.status, after.body)
		}
	})
}

// slowRecords is a store whose Updates that store an idempotency record
// for a key ending in key commit, then signal stored and wait for
// release before they return: a record slow to become durable.
type slowRecords struct {
	market.Store
	key             string
	stored, release chan struct{}
}

func (s *slowRecords) Update(ctx context.Context, fn func(tx market.Tx) error) error {
	put := false
	err := s.Store.Update(ctx, func(tx market.Tx) error { return fn(recordingTx{Tx: tx, key: s.key, put: &put}) })
	if put {
		s.stored <- struct{}{}
		<-s.release
	}
	return err
}

type recordingTx struct {
	market.Tx
	key string
	put *bool
}

func (t recordingTx) PutIdempotency(r market.IdempotencyRecord) error {
	if strings.HasSuffix(r.Key, "/"+t.key) {
		*t.put = true
	}
	return t.Tx.PutIdempotency(r)
}

// TestIdempotencyAnswersBeforeTheRecord checks that a POST is answered
// once its work is done, without waiting for its idempotency record to be
// stored, and that a duplicate arriving meanwhile waits for the record
// and gets the stored response, not 409.
func TestIdempotencyAnswersBeforeTheRecord(t *testing.T) {
	slow := &slowRecords{key: "slow-record", stored: make(chan struct{}), release: make(chan struct{})}
	m := httpapitest.New(t, httpapitest.Options{API: func(c *httpapi.Config) {
		slow.Store = c.Store
		c.Store = slow
	}})
	buyer := mustAgent(t, m.URL, "buyer", "", market.RoleBuyer)
	body := []byte(`{"request_id":"r-slow","intent":"SORT_LIST","parameters":{"items":[1]},"constraints":{"max_budget_microcredits":100}}`)
	type result struct {
		status   int
		replayed string
		body     []byte
		err      error
	}
	do := func(r *http.Request) <-chan result {
		ch := make(chan result, 1)
		go func() {
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				ch <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			ch <- result{status: resp.StatusCode, replayed: resp.Header.Get("Idempotent-Replayed"), body: b, err: err}
		}()
		return ch
	}
	released := false
	defer func() {
		if !released {
			close(slow.release)
		}
	}()

	firstCh := do(rawRequest(t, "POST", m.URL+"/v1/intents", body, signing{key: buyer.Key, idem: "slow-record"}))
	<-slow.stored
	var first result
	select {
	case first = <-firstCh:
	case <-time.After(10 * time.Second):
		t.Fatal("the response waited for its idempotency record to be stored")
	}
	if first.err != nil || first.status != http.StatusCreated {
		t.Fatalf("first: %d %s %v", first.status, first.body, first.err)
	}

	dupCh := do(rawRequest(t, "POST", m.URL+"/v1/intents", body, signing{key: buyer.Key, idem: "slow-record"}))
	close(slow.release)
	released = true
	dup := <-dupCh
	if dup.err != nil || dup.status != first.status || dup.replayed != "true" || !bytes.Equal(dup.body, first.body) {
		t.Fatalf("duplicate while the record was stored: %d replayed=%q %s %v; want the first response replayed", dup.status, dup.replayed, dup.body, dup.err)
	}
}
