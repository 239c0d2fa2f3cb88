// Package client is agentmarket's Go SDK: a market.Service over the HTTP
// API, so that code written against the in-process engine (a simulated
// agent, the CLI, the MCP server) runs against a remote market unchanged.
//
// A Client acts as one agent, or as the operator, by the key it holds: it
// signs every request (RFC 9421, Ed25519, keyid = the key's did:key),
// gives every state-changing call an idempotency key that it reuses on
// retries, retries what is safe to retry, and turns problem responses
// back into *market.Error values with the server's Kind and Code. It also
// consumes the event stream, resuming after a dropped connection.
package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentmarket/agentmarket/httpapi/httpsig"
	"github.com/agentmarket/agentmarket/market"
)

// Client is a market.Service over HTTP. It is safe for concurrent use.
type Client struct {
	base       string
	key        market.PrivateKey
	id         market.AgentID
	http       *http.Client
	now        func() time.Time
	retries    int
	minBackoff time.Duration
	maxBackoff time.Duration
}

var _ market.Service = (*Client)(nil)

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sends requests with h instead of the default client,
// which shares one transport among every Client of the process.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// defaultTransport is the transport of Clients made without
// WithHTTPClient, shared so that the agents of one process share their
// connections to a market. It keeps up to 64 idle connections per host
// where http.DefaultTransport keeps 2: with more calls in flight than
// that, nearly every call would open a new connection and close it after
// one response.
var defaultTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return t
}()

// WithClock sets the clock that dates signatures. Default time.Now.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// WithRetries sets how many times a call is retried after a transient
// failure (a connection error, 429, 503, or a request still in flight).
// Default 6; 0 disables retries.
func WithRetries(n int) Option { return func(c *Client) { c.retries = max(0, n) } }

// WithBackoff sets the first and the longest wait between retries; waits
// double from min up to max, with jitter. A Retry-After from the server
// takes precedence. Defaults 50 ms and 2 s.
func WithBackoff(min, max time.Duration) Option {
	return func(c *Client) { c.minBackoff, c.maxBackoff = min, max }
}

// New returns a client of the market at baseURL (such as
// "http://127.0.0.1:8080") that signs as key. With a zero key the client
// is anonymous: it can register agents and make public reads.
func New(baseURL string, key market.PrivateKey, opts ...Option) *Client {
	c := &Client{
		base:       strings.TrimRight(baseURL, "/"),
		key:        key,
		http:       &http.Client{Transport: defaultTransport},
		now:        time.Now,
		retries:    6,
		minBackoff: 50 * time.Millisecond,
		maxBackoff: 2 * time.Second,
	}
	if !key.IsZero() {
		c.id = key.Public().DID()
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// ID returns the did:key the client signs as, or "" when anonymous.
func (c *Client) ID() market.AgentID { return c.id }

// call is one logical request: it may take several attempts.
type call struct {
	op     string // the market operation, for errors
	method string
	path   string
	query  url.Values
	body   any // nil: no body
	out    any // nil: ignore the response body
}

// maxResponseBytes bounds a response the client reads.
const maxResponseBytes = 64 << 20

// do performs a call, retrying transient failures with the same
// idempotency key.
func (c *Client) do(ctx context.Context, k call) error {
	var body []byte
	if k.body != nil {
		var err error
		if body, err = json.Marshal(k.body); err != nil {
			return market.E(market.Op(k.op), market.Invalid, market.Code("invalid_request"), "encode the request", err)
		}
	}
	var idem string
	if k.method == http.MethodPost || k.method == http.MethodPut {
		idem = newIdempotencyKey()
	}
	for attempt := 0; ; attempt++ {
		wait, err := c.attempt(ctx, k, body, idem)
		if err == nil {
			return nil
		}
		if wait < 0 || attempt >= c.retries {
			return err
		}
		if wait == 0 {
			wait = c.backoff(attempt)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return cancelled(k.op, ctx.Err())
		case <-t.C:
		}
	}
}

// attempt sends one request. On failure it returns how long to wait
// before a retry: 0 for the client's backoff, a Retry-After, or -1 when
// the failure is final.
func (c *Client) attempt(ctx context.Context, k call, body []byte, idem string) (time.Duration, error) {
	resp, err := c.send(ctx, k.method, k.path, k.query, body, idem, "application/json", 0)
	if err != nil {
		if ctx.Err() != nil {
			return -1, cancelled(k.op, ctx.Err())
		}
		if errors.Is(err, errNotSent) {
			return -1, market.E(market.Op(k.op), market.Invalid, market.Code("invalid_request"), err.Error())
		}
		return 0, market.E(market.Op(k.op), market.Transient, market.Code("unavailable"), "the market is unreachable", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		if ctx.Err() != nil {
			return -1, cancelled(k.op, ctx.Err())
		}
		return 0, market.E(market.Op(k.op), market.Transient, market.Code("unavailable"), "the response was cut short", err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if k.out == nil || resp.StatusCode == http.StatusNoContent {
			return 0, nil
		}
		if err := json.Unmarshal(b, k.out); err != nil {
			return -1, market.E(market.Op(k.op), market.Internal, market.Code("bad_response"), "the market's response does not decode", err)
		}
		return 0, nil
	}
	perr := problemError(k.op, resp.StatusCode, b)
	if !retryable(resp.StatusCode, market.CodeOf(perr)) {
		return -1, perr
	}
	return retryAfter(resp.Header.Get("Retry-After")), perr
}

// errNotSent marks a request that could not even be built.
var errNotSent = errors.New("request not sent")

// send builds, signs and sends one request. After is the Last-Event-ID of
// a stream, when positive.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, body []byte, idem, accept string, after int64) (*http.Response, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotSent, err)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "agentmarket-go-client/1")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Digest", httpsig.ContentDigest(body))
	}
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	if after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(after, 10))
	}
	if err := c.sign(req, body != nil); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotSent, err)
	}
	return c.http.Do(req)
}

// sign adds the request's signature, unless the client is anonymous. A
// retry is signed afresh, with a new nonce.
func (c *Client) sign(req *http.Request, hasBody bool) error {
	if c.key.IsZero() {
		return nil
	}
	components := []string{"@method", "@authority", "@path"}
	if req.URL.RawQuery != "" {
		components = append(components, "@query")
	}
	if hasBody {
		components = append(components, "content-digest")
	}
	var nonce [16]byte
	if _, err := crand.Read(nonce[:]); err != nil {
		return fmt.Errorf("read nonce: %w", err)
	}
	p := httpsig.Params{
		Components: components,
		Created:    c.now(),
		Nonce:      base64.RawURLEncoding.EncodeToString(nonce[:]),
		KeyID:      string(c.id),
		Alg:        httpsig.AlgorithmEd25519,
	}
	return httpsig.Sign(req, "sig1", p, c.key.Ed25519())
}

// backoff returns the wait before retry attempt+1: doubling from the
// minimum, capped, with up to half of it as jitter.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.minBackoff << min(attempt, 20)
	if d <= 0 || d > c.maxBackoff {
		d = c.maxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// retryable reports whether a failed status may succeed if sent again
// with the same idempotency key.
func retryable(status int, code string) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case http.StatusConflict:
		return code == "request_in_flight"
	}
	return false
}

// retryAfter reads a Retry-After in seconds; 0 when absent.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, time.Minute)
}

func cancelled(op string, err error) error {
	return market.E(market.Op(op), market.Transient, market.Code("cancelled"), "the request was cancelled", err)
}

func newIdempotencyKey() string {
	var b [16]byte
	if _, err := crand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("client: read random idempotency key: %v", err)) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// problemError turns an error response into a *market.Error with the
// server's kind and code. A response that is not a problem (from a proxy,
// say) gets the kind its status implies.
func problemError(op string, status int, body []byte) error {
	var p struct {
		Detail string `json:"detail"`
		Code   string `json:"code"`
		Kind   string `json:"kind"`
	}
	if json.Unmarshal(body, &p) != nil || (p.Code == "" && p.Kind == "") {
		k := kindOfStatus(status)
		return &market.Error{Op: op, Kind: k, Code: k.String(),
			Message: fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))}
	}
	k := market.KindFromString(p.Kind)
	if k == market.Other {
		k = kindOfStatus(status)
	}
	return &market.Error{Op: op, Kind: k, Code: p.Code, Message: p.Detail}
}

// kindOfStatus is the kind an HTTP status implies, for responses that do
// not say; it inverts the server's table where the status is unambiguous.
func kindOfStatus(status int) market.Kind {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return market.Invalid
	case http.StatusUnauthorized:
		return market.Unauthenticated
	case http.StatusPaymentRequired:
		return market.InsufficientFunds
	case http.StatusForbidden:
		return market.Permission
	case http.StatusNotFound:
		return market.NotExist
	case http.StatusConflict:
		return market.Conflict
	case http.StatusGone:
		return market.Expired
	case http.StatusRequestEntityTooLarge:
		return market.TooLarge
	case http.StatusUnsupportedMediaType, http.StatusMethodNotAllowed:
		return market.Unsupported
	case http.StatusTooManyRequests:
		return market.RateLimited
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return market.Transient
	}
	if status >= 500 {
		return market.Internal
	}
	return market.Other
}
