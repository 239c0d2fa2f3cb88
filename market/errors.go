package market

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies an error so that every transport can map it to its own
// status: HTTP status codes, MCP tool errors, CLI exit messages. Kinds are
// append-only; a kind's number never changes.
type Kind uint8

const (
	Other             Kind = iota // unclassified; transports treat it as internal
	Invalid                       // the request is malformed or breaks a rule
	NotExist                      // the object does not exist
	Exist                         // the object already exists
	Permission                    // the caller may not do this
	Unauthenticated               // the caller could not be identified
	Conflict                      // illegal in the object's current state
	InsufficientFunds             // the wallet cannot cover the amount
	MandateViolated               // a spending mandate forbids the transfer
	Expired                       // a deadline or validity window has passed
	TooLarge                      // a payload exceeds its limit
	RateLimited                   // too many requests; retry later
	Transient                     // a temporary failure; retry later
	Internal                      // a bug or an infrastructure failure
	Unsupported                   // the operation or media type is not supported
)

var kindNames = [...]string{
	Other:             "other",
	Invalid:           "invalid",
	NotExist:          "not_found",
	Exist:             "exists",
	Permission:        "forbidden",
	Unauthenticated:   "unauthenticated",
	Conflict:          "conflict",
	InsufficientFunds: "insufficient_funds",
	MandateViolated:   "mandate_violated",
	Expired:           "expired",
	TooLarge:          "too_large",
	RateLimited:       "rate_limited",
	Transient:         "transient",
	Internal:          "internal",
	Unsupported:       "unsupported",
}

// String returns the kind's stable snake_case name.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// KindFromString is the inverse of Kind.String; unknown names give Other.
func KindFromString(s string) Kind {
	for k, n := range kindNames {
		if n == s {
			return Kind(k)
		}
	}
	return Other
}

// Error is the market's one error type. Op names the operation, Kind
// classifies the failure, Code is a stable machine-readable detail (such as
// "bid_deadline_passed") that clients may switch on, and Message says what
// happened in words a person can act on.
type Error struct {
	Op      string
	Kind    Kind
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.Message != "" {
		b.WriteString(e.Message)
	} else {
		b.WriteString(e.Kind.String())
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// E builds an *Error from its arguments, in any order: a Kind, an Op (a
// string naming the operation is taken as Op when it is the first string,
// else as Message), a Code, an error to wrap.
func E(args ...any) error {
	e := &Error{}
	strs := 0
	for _, a := range args {
		switch v := a.(type) {
		case Kind:
			e.Kind = v
		case Op:
			e.Op = string(v)
		case Code:
			e.Code = string(v)
		case string:
			if strs == 0 {
				e.Message = v
			} else {
				e.Message += ": " + v
			}
			strs++
		case *Error:
			e.Err = v
			if e.Kind == Other {
				e.Kind = v.Kind
			}
			if e.Code == "" {
				e.Code = v.Code
			}
		case error:
			e.Err = v
		}
	}
	if e.Code == "" {
		e.Code = e.Kind.String()
	}
	return e
}

// Op names an operation in E.
type Op string

// Code is a stable machine-readable error code in E.
type Code string

// Errorf builds an *Error of the given kind and code with a formatted message.
func Errorf(kind Kind, code string, format string, args ...any) error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// KindOf returns the Kind of the first *Error in err's chain, or Other.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		for e.Kind == Other {
			var inner *Error
			if !errors.As(e.Err, &inner) {
				break
			}
			e = inner
		}
		return e.Kind
	}
	return Other
}

// CodeOf returns the Code of the first *Error in err's chain, or "".
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// MessageOf returns the human message of the first *Error in err's chain.
func MessageOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		if e.Message != "" {
			return e.Message
		}
		return e.Kind.String()
	}
	return ""
}

// Is reports whether err is a market error of kind k.
func Is(err error, k Kind) bool { return KindOf(err) == k }
