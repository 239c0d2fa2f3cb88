// Package httpapi serves the market over HTTP: an HTTP/JSON API under /v1
// for every market.Service operation, authenticated with RFC 9421 message
// signatures (Ed25519, keyid = the agent's did:key), with idempotency
// keys, RFC 9457 problem details, per-agent rate limits, a server-sent
// event stream, an OpenAPI 3.1 description, JSON Schemas for every
// message and an A2A agent card. docs/api.md is its contract.
//
// It owns the transport only: authorization is the engine's, from the
// Principal this package puts in the request's context.
package httpapi

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"golang.org/x/time/rate"

	"github.com/agentmarket/agentmarket/market"
)

// Config holds the server's dependencies and limits. Service, Store and
// Operator are required; zero limits take the defaults noted.
type Config struct {
	// Service is the market the API exposes.
	Service market.Service
	// Store keeps request nonces and idempotency records. It must be the
	// store every node of the market shares, so that a replay to another
	// node fails too.
	Store market.Store
	// Operator is the public key of the market operator: a request it
	// signs acts as the operator.
	Operator market.PublicKey
	Logger   *slog.Logger
	// Now is the clock that judges a signature's created time. Defaults
	// to time.Now.
	Now func() time.Time

	// MaxBodyBytes caps a request body. Default 1 MiB.
	MaxBodyBytes int64
	// RateLimit is each caller's sustained requests per second, and
	// RateBurst its burst. Defaults 200 and 400. The operator is not
	// limited; anonymous callers are limited per remote address.
	RateLimit rate.Limit
	RateBurst int
	// SignatureWindow is how far a signature's created time may be from
	// the clock, either way. Default 5 minutes.
	SignatureWindow time.Duration
	// Heartbeat is how often an idle event stream gets a comment, so that
	// proxies keep it open. Default 15 seconds.
	Heartbeat time.Duration
	// PublicURL is the API's base URL in the agent card, such as
	// "https://market.example". Empty means the request's own host.
	PublicURL string
	// MarketKey, when set, signs the market's A2A agent card (an EdDSA
	// JWS over its canonical JSON) with the key that signs receipts, so a
	// client can check the card and the receipts against one identity.
	MarketKey market.PrivateKey
	// Closing, when closed, ends every event stream, so that a graceful
	// shutdown does not wait for them.
	Closing <-chan struct{}
}

func (c *Config) defaults() error {
	if c.Service == nil || c.Store == nil {
		return fmt.Errorf("httpapi: Service and Store are required")
	}
	if c.Operator.IsZero() {
		return fmt.Errorf("httpapi: the operator's public key is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.RateLimit <= 0 {
		c.RateLimit = 200
	}
	if c.RateBurst <= 0 {
		c.RateBurst = 2 * int(c.RateLimit)
	}
	if c.SignatureWindow <= 0 {
		c.SignatureWindow = 5 * time.Minute
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	return nil
}

// server is the state the middleware shares.
type server struct {
	cfg         Config
	svc         market.Service
	store       market.Store
	log         *slog.Logger
	now         func() time.Time
	operator    market.AgentID
	operatorKey ed25519.PublicKey
	known       *knownAgents
	limits      *limiter
	inflight    *inflight
	docs        *documents
}

// NewServer returns the market's HTTP handler. It panics if cfg lacks a
// required dependency, a programming error.
func NewServer(cfg Config) http.Handler {
	if err := cfg.defaults(); err != nil {
		panic(err)
	}
	s := &server{
		cfg:         cfg,
		svc:         cfg.Service,
		store:       cfg.Store,
		log:         cfg.Logger,
		now:         cfg.Now,
		operator:    cfg.Operator.DID(),
		operatorKey: cfg.Operator.Ed25519(),
		known:       newKnownAgents(100_000),
		limits:      newLimiter(cfg.RateLimit, cfg.RateBurst, cfg.Now),
		inflight:    newInflight(),
		docs:        &documents{},
	}
	mux := http.NewServeMux()
	rts := routes(s)
	if err := s.docs.build(rts); err != nil {
		panic(fmt.Sprintf("httpapi: build the API description: %v", err))
	}
	addRoutes(mux, s, rts)
	return mux
}

// apiHandler is a handler that returns its failure, which the server
// answers as a problem.
type apiHandler func(w http.ResponseWriter, r *http.Request) error

// requestState is what the middleware learns about a request: its body,
// read once, and who signed it.
type requestState struct {
	body   []byte
	signed bool
	// caller names the principal for rate limits and idempotency scopes:
	// the agent's did:key, the operator's, or "" when anonymous.
	caller string
	// nonce and nonceExpires are the signature's nonce and how long the
	// store must remember it.
	nonce        string
	nonceExpires time.Time
}

type stateKey struct{}

func stateOf(r *http.Request) *requestState {
	st, _ := r.Context().Value(stateKey{}).(*requestState)
	if st == nil {
		return &requestState{}
	}
	return st
}

// handle wraps a route's handler in the middleware, outermost first:
// panic recovery, the body cap, unknown query parameters, signature
// verification, the rate limit, then the nonce check, and for POST and
// PUT idempotency, which checks the nonce in the transaction that reads
// the idempotency record. The rate limit comes before the nonce so that a
// flood costs no store writes.
func (s *server) handle(rt route) http.Handler {
	var h http.Handler = s.api(rt.handler)
	if rt.method == http.MethodPost || rt.method == http.MethodPut {
		h = s.idempotent(rt, h)
	} else {
		h = s.nonceChecked(h)
	}
	h = s.rateLimited(h)
	h = s.authenticated(rt, h)
	h = s.queryChecked(rt, h)
	return s.recovered(s.bodyRead(h))
}

// api answers an apiHandler's error as a problem.
func (s *server) api(h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, r, s.log, err)
		}
	})
}

// recovered turns a panic into a 500 and logs its stack.
func (s *server) recovered(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("httpapi: panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeError(w, r, s.log, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// bodyRead reads the whole body, at most MaxBodyBytes, before anything
// else: the signature's digest, the idempotency hash and the decoder all
// need it.
func (s *server) bodyRead(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &requestState{}
		if r.Body != nil && r.Body != http.NoBody {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
			if err != nil {
				writeError(w, r, s.log, readError(err))
				return
			}
			st.body = body
		}
		r.Body = io.NopCloser(bytes.NewReader(st.body))
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	})
}

// queryChecked rejects query parameters the route does not take, as the
// decoder rejects unknown fields.
func (s *server) queryChecked(rt route, next http.Handler) http.Handler {
	allowed := map[string]bool{}
	for _, q := range rt.query {
		allowed[q.name] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for name := range r.URL.Query() {
			if !allowed[name] {
				writeError(w, r, s.log, problem(market.Invalid, "unknown_parameter",
					fmt.Sprintf("%s %s takes no query parameter %q", rt.method, rt.path, truncate(name, 40))))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// rateLimited applies the caller's token bucket.
func (s *server) rateLimited(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateOf(r)
		if st.caller == string(s.operator) {
			next.ServeHTTP(w, r)
			return
		}
		key := st.caller
		if key == "" {
			key = "ip:" + remoteHost(r)
		}
		if wait, ok := s.limits.allow(key); !ok {
			secs := max(1, int((wait+time.Second-1)/time.Second))
			writeError(w, r, s.log, withRetryAfter(problem(market.RateLimited, "rate_limited",
				fmt.Sprintf("too many requests; retry in %d s", secs)), http.StatusTooManyRequests, secs))
			return
		}
		next.ServeHTTP(w, r)
	})
}
