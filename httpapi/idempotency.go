package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/agentmarket/agentmarket/market"
)

// maxIdempotencyKeyBytes bounds an Idempotency-Key.
const maxIdempotencyKeyBytes = 255

// idempotent makes a POST or PUT safe to retry. Under the same caller and
// Idempotency-Key, a request with the same method, target and body gets
// the first response again, marked Idempotent-Replayed: true; one with a
// different request gets 422; one that arrives while the first is still
// running gets 409 with Retry-After. Responses of 5xx and 429 are never
// stored, so a retry runs again.
//
// The key is required on every signed POST and PUT. Registration may be
// unsigned; there it is honoured only when the request is signed, since
// an anonymous key has no scope, and registration is idempotent anyway.
//
// It checks a signed request's nonce too (nonceChecked does for the other
// methods), in the transaction that reads the key's record: one store
// transaction where a nonce write and a read took two.
func (s *server) idempotent(rt route, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateOf(r)
		key := r.Header.Get("Idempotency-Key")
		var invalid error
		switch {
		case !st.signed || (key == "" && rt.access == enrolling):
			// No scope for a key: only the nonce, if any, is checked.
		case key == "":
			invalid = problem(market.Invalid, "idempotency_key_required",
				fmt.Sprintf("%s %s needs an Idempotency-Key header: a unique value per logical request, reused on retries", rt.method, rt.path))
		case !validIdempotencyKey(key):
			invalid = problem(market.Invalid, "invalid_idempotency_key",
				fmt.Sprintf("an Idempotency-Key is 1 to %d visible ASCII characters", maxIdempotencyKeyBytes))
		}
		if !st.signed || key == "" || invalid != nil {
			// No record to read: the nonce alone, then the handler or
			// the problem with the key.
			_, _, err := s.useNonce(r.Context(), st, "")
			if err == nil {
				err = invalid
			}
			if err != nil {
				writeError(w, r, s.log, err)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		scoped := "http/" + st.caller + "/" + key
		hash := requestHash(r, st.body)

		fl, first := s.inflight.add(scoped)
		for !first {
			if !s.inflight.isAnswered(fl) {
				// The nonce is recorded all the same, so that a replay of
				// the request still running is told it is one.
				if _, _, err := s.useNonce(r.Context(), st, ""); err != nil {
					writeError(w, r, s.log, err)
					return
				}
				writeError(w, r, s.log, withRetryAfter(problem(market.Conflict, "request_in_flight",
					"a request with this Idempotency-Key is still being processed; retry after it finishes"), http.StatusConflict, 1))
				return
			}
			// The first request has been answered and is storing its
			// record: wait for it, then read the record as any retry does.
			select {
			case <-fl.done:
			case <-r.Context().Done():
				return
			}
			fl, first = s.inflight.add(scoped)
		}
		defer s.inflight.remove(scoped, fl)

		rec, found, err := s.useNonce(r.Context(), st, scoped)
		switch {
		case err != nil:
			writeError(w, r, s.log, err)
			return
		case found && rec.RequestHash == hash:
			replay(w, rec)
			return
		case found:
			writeError(w, r, s.log, &statusError{status: http.StatusUnprocessableEntity, err: problem(market.Invalid, "idempotency_key_reused",
				"this Idempotency-Key was used for a different request; use a new key for a new request")})
			return
		}

		rw := &recorder{header: http.Header{}, status: http.StatusOK}
		// The engine derives the ids of what the request creates from the
		// key, so a retry on another node after this one died creates
		// nothing twice.
		next.ServeHTTP(rw, r.WithContext(market.WithRequestKey(r.Context(), scoped)))
		if rw.status >= 500 || rw.status == http.StatusTooManyRequests {
			rw.writeTo(w)
			return
		}
		// The work is durable, so the answer goes out now, and the
		// record is stored after it: one commit less on the request's
		// path. Until it is stored, a duplicate on this node waits for
		// it (above). If the node dies in between, a retry runs again
		// and finds the first attempt's work through the ids the engine
		// derived from the key, as after any crash before the record.
		s.inflight.answer(fl)
		rw.writeTo(w)
		http.NewResponseController(w).Flush()
		if err := s.storeResponse(r.Context(), scoped, hash, rw); err != nil {
			// The work is done; only its replay is lost.
			s.log.Error("httpapi: store idempotency record", "key", scoped, "err", err)
		}
	})
}

// storeResponse saves a response under its key, unless another node
// saved one first.
func (s *server) storeResponse(ctx context.Context, key, hash string, rw *recorder) error {
	header, err := json.Marshal(map[string]string{"Content-Type": rw.header.Get("Content-Type")})
	if err != nil {
		return err
	}
	return s.store.Update(context.WithoutCancel(ctx), func(tx market.Tx) error {
		if _, err := tx.Idempotency(key); err == nil {
			return nil
		} else if !market.Is(err, market.NotExist) {
			return err
		}
		return tx.PutIdempotency(market.IdempotencyRecord{Key: key, RequestHash: hash, Status: rw.status,
			Header: header, Body: rw.body.Bytes(), CreatedAt: s.now()})
	})
}

// replay writes a stored response.
func replay(w http.ResponseWriter, rec market.IdempotencyRecord) {
	var h map[string]string
	if json.Unmarshal(rec.Header, &h) == nil {
		for k, v := range h {
			if v != "" {
				w.Header().Set(k, v)
			}
		}
	}
	w.Header().Set("Idempotent-Replayed", "true")
	w.WriteHeader(rec.Status)
	w.Write(rec.Body)
}

// requestHash identifies a request for its idempotency key: method,
// target and body.
func requestHash(r *http.Request, body []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", r.Method, r.URL.RequestURI())
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

func validIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > maxIdempotencyKeyBytes {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < '!' || k[i] > '~' {
			return false
		}
	}
	return true
}

// inflight is the set of idempotency keys whose request is running on
// this node, or has been answered and is storing its record. Another node
// learns of a key only once its response is stored.
type inflight struct {
	mu   sync.Mutex
	keys map[string]*flight
}

// flight is one request in the inflight set.
type flight struct {
	done     chan struct{} // closed when it leaves the set
	answered bool          // under inflight.mu: answered, its record being stored
}

func newInflight() *inflight { return &inflight{keys: make(map[string]*flight)} }

// add puts k in the set and reports true, or returns the flight already
// there and false.
func (f *inflight) add(k string) (*flight, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl, ok := f.keys[k]; ok {
		return fl, false
	}
	fl := &flight{done: make(chan struct{})}
	f.keys[k] = fl
	return fl, true
}

func (f *inflight) answer(fl *flight) {
	f.mu.Lock()
	fl.answered = true
	f.mu.Unlock()
}

func (f *inflight) isAnswered(fl *flight) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fl.answered
}

func (f *inflight) remove(k string, fl *flight) {
	f.mu.Lock()
	delete(f.keys, k)
	f.mu.Unlock()
	close(fl.done)
}

// recorder buffers a response so that it can be both sent and stored.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (rw *recorder) Header() http.Header { return rw.header }

func (rw *recorder) WriteHeader(status int) {
	if !rw.wrote {
		rw.status, rw.wrote = status, true
	}
}

func (rw *recorder) Write(b []byte) (int, error) {
	rw.wrote = true
	return rw.body.Write(b)
}

func (rw *recorder) writeTo(w http.ResponseWriter) {
	for k, v := range rw.header {
		w.Header()[k] = v
	}
	if rw.status != http.StatusNoContent && rw.status != http.StatusNotModified && rw.status >= 200 {
		// The body is whole, so say its length: the client has the
		// response once it is flushed, before the handler returns.
		w.Header().Set("Content-Length", strconv.Itoa(rw.body.Len()))
	}
	w.WriteHeader(rw.status)
	w.Write(rw.body.Bytes())
}
