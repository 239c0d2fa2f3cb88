package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/agentmarket/agentmarket/market"
)

// kindStatus is the one table that maps a market error's kind to an HTTP
// status. The SDK maps statuses back through the problem's "kind" member,
// so the table may map several kinds to one status.
var kindStatus = map[market.Kind]int{
	market.Invalid:           http.StatusBadRequest,
	market.NotExist:          http.StatusNotFound,
	market.Exist:             http.StatusConflict,
	market.Permission:        http.StatusForbidden,
	market.Unauthenticated:   http.StatusUnauthorized,
	market.Conflict:          http.StatusConflict,
	market.InsufficientFunds: http.StatusPaymentRequired,
	market.MandateViolated:   http.StatusForbidden,
	market.Expired:           http.StatusGone,
	market.TooLarge:          http.StatusRequestEntityTooLarge,
	market.RateLimited:       http.StatusTooManyRequests,
	market.Transient:         http.StatusServiceUnavailable,
	market.Unsupported:       http.StatusUnsupportedMediaType,
	market.Internal:          http.StatusInternalServerError,
	market.Other:             http.StatusInternalServerError,
}

// StatusOf returns the HTTP status for a market error kind.
func StatusOf(k market.Kind) int {
	if s, ok := kindStatus[k]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Problem is an RFC 9457 problem details object, the body of every error
// response, with the market error's stable code and kind.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	// Code is the market error's stable machine-readable code, such as
	// "bidding_closed" or "signature_invalid".
	Code string `json:"code"`
	// Kind is the market error's kind, such as "conflict".
	Kind     string `json:"kind"`
	Instance string `json:"instance,omitempty"`
}

// ProblemTypePrefix starts every problem's type URI; the code follows.
const ProblemTypePrefix = "urn:agentmarket:problem:"

// statusError is a transport failure whose status is not its kind's: the
// idempotency conflicts (422, and 409 for a request in flight). It carries
// the headers that go with it, such as Retry-After.
type statusError struct {
	status int
	header http.Header
	err    error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// withRetryAfter returns err answered with status and a Retry-After of
// secs seconds.
func withRetryAfter(err error, status, secs int) error {
	return &statusError{status: status, header: http.Header{"Retry-After": {strconv.Itoa(secs)}}, err: err}
}

// problemFor builds the problem for err. Anything that is not a market
// error of a client-facing kind becomes a bare 500 "internal error"; its
// detail is for the log only.
func problemFor(r *http.Request, err error) (Problem, http.Header) {
	status, header := 0, http.Header(nil)
	var se *statusError
	if errors.As(err, &se) {
		status, header = se.status, se.header
	}
	var me *market.Error
	if !errors.As(err, &me) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			me = &market.Error{Kind: market.Transient, Code: "cancelled", Message: "the request was cancelled"}
		} else {
			me = &market.Error{Kind: market.Internal}
		}
	}
	kind := market.KindOf(me)
	if status == 0 {
		status = StatusOf(kind)
	}
	p := Problem{
		Type:     ProblemTypePrefix + me.Code,
		Title:    http.StatusText(status),
		Status:   status,
		Detail:   market.MessageOf(me),
		Code:     me.Code,
		Kind:     kind.String(),
		Instance: r.URL.Path,
	}
	if status >= 500 && kind != market.Transient {
		p.Type, p.Detail, p.Code, p.Kind = ProblemTypePrefix+"internal", "internal error", "internal", market.Internal.String()
	}
	if p.Code == "" {
		p.Code = p.Kind
		p.Type = ProblemTypePrefix + p.Code
	}
	if kind == market.Transient && header == nil {
		header = http.Header{"Retry-After": {"1"}}
	}
	return p, header
}

// writeError answers with err as application/problem+json and logs what a
// client must not see.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p, header := problemFor(r, err)
	if p.Status >= 500 {
		log.Error("httpapi: request failed", "method", r.Method, "path", r.URL.Path, "status", p.Status, "err", err)
	}
	for k, v := range header {
		w.Header()[k] = v
	}
	if p.Status == http.StatusUnauthorized {
		// RFC 9421 section 5.1: say what signature the server wants.
		w.Header().Set("Accept-Signature", acceptSignature)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	b, _ := json.Marshal(p) // plain strings and ints cannot fail
	w.Write(append(b, '\n'))
}

// acceptSignature asks for the signature the server verifies: the
// components every request covers, content-digest when there is a body,
// and the created, nonce and keyid parameters.
const acceptSignature = `sig1=("@method" "@authority" "@path" "content-digest");created;nonce;keyid;alg="ed25519"`

// problem builds a transport error of the given kind and code.
func problem(kind market.Kind, code, message string) error {
	return &market.Error{Kind: kind, Code: code, Message: message}
}
