package ledger

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// ID is a 128-bit identifier chosen by the client for accounts and
// transfers. The zero ID is reserved and never valid. Its text form is 32
// lowercase hex digits.
type ID [16]byte

// NewID returns a random ID read from r, or from crypto/rand when r is nil.
func NewID(r io.Reader) ID {
	if r == nil {
		r = rand.Reader
	}
	var id ID
	for id.IsZero() {
		if _, err := io.ReadFull(r, id[:]); err != nil {
			panic(fmt.Sprintf("ledger: read random id: %v", err))
		}
	}
	return id
}

// IDFromUint64 returns the ID whose low 64 bits are n, big-endian, so that
// small numbers give readable ids in tests and benchmarks.
func IDFromUint64(n uint64) ID {
	var id ID
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

// DeriveID returns a deterministic ID for a purpose and a key, so that a
// caller can name the transfers it will make (an escrow hold for a contract,
// say) and retry them idempotently.
func DeriveID(purpose string, key []byte) ID {
	return deriveID(purpose, key)
}

// IsZero reports whether id is the reserved zero ID.
func (id ID) IsZero() bool { return id == ID{} }

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText encodes id as 32 hex digits.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes 32 hex digits.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// ParseID parses the text form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 32 {
		return id, fmt.Errorf("ledger: id %q: want 32 hex digits", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("ledger: id %q: %w", s, err)
	}
	return id, nil
}

// AccountFlags set an account's rules.
type AccountFlags uint16

const (
	// DebitsMustNotExceedCredits makes an account a wallet: its pending and
	// posted debits together may never exceed its posted credits, so its
	// available balance never goes below zero. An account without it (the
	// treasury) may go negative; that is how credits are issued.
	DebitsMustNotExceedCredits AccountFlags = 1 << iota

	accountFlagsKnown = DebitsMustNotExceedCredits
)

// Account is a ledger account and its four counters. The counters are
// maintained by the ledger; a create request must leave them zero.
type Account struct {
	ID       ID
	UserData ID           // opaque to the ledger: an owner reference, say
	Code     uint16       // the account's kind, chosen by the caller
	Flags    AccountFlags // rules the ledger enforces

	DebitsPending  uint64
	DebitsPosted   uint64
	CreditsPending uint64
	CreditsPosted  uint64

	Timestamp int64 // ledger time of creation, in unix nanoseconds
}

// Balance is an account's position in microcredits.
type Balance struct {
	Posted    int64 // credits posted minus debits posted
	Pending   int64 // credits pending minus debits pending
	Available int64 // posted minus debits pending: what may be spent now
}

// Balance derives the account's balances from its counters.
func (a Account) Balance() Balance {
	return Balance{
		Posted:    int64(a.CreditsPosted) - int64(a.DebitsPosted),
		Pending:   int64(a.CreditsPending) - int64(a.DebitsPending),
		Available: int64(a.CreditsPosted) - int64(a.DebitsPosted) - int64(a.DebitsPending),
	}
}

// TransferFlags choose a transfer's kind.
type TransferFlags uint16

const (
	// Linked chains this transfer to the next one in the batch: the chain
	// commits all or nothing, and ends at the first transfer without the flag.
	Linked TransferFlags = 1 << iota
	// Pending reserves the amount: it moves to the pending counters until a
	// later transfer posts or voids it, or its Timeout passes.
	Pending
	// PostPending posts the pending transfer named by PendingID, in full or
	// in part; the rest returns to the debit account.
	PostPending
	// VoidPending releases the pending transfer named by PendingID.
	VoidPending

	transferFlagsKnown = Linked | Pending | PostPending | VoidPending
)

// Transfer moves Amount microcredits from DebitAccountID to CreditAccountID.
// Transfers are immutable: a correction is a new transfer.
type Transfer struct {
	ID              ID
	DebitAccountID  ID
	CreditAccountID ID
	Amount          uint64 // microcredits; for a post, 0 means the full pending amount
	PendingID       ID     // the pending transfer a post or void resolves
	UserData        ID     // opaque to the ledger: a contract reference, say
	Timeout         time.Duration
	Code            uint16 // the transfer's reason, chosen by the caller
	Flags           TransferFlags

	Timestamp int64 // assigned by the ledger, unix nanoseconds, strictly increasing
}

// Mandate limits what a wallet may spend. It is set by the account's owner
// or the market operator, never by the agent's own requests, and checked in
// the same atomic step as every transfer that debits the account: plain
// transfers and pending reservations. Posting or voiding a reservation that
// passed its mandate is not checked again.
type Mandate struct {
	AccountID ID
	// MaxPerTransfer caps a single debit; 0 means no cap.
	MaxPerTransfer uint64
	// Budget caps the debits within any rolling Window; 0 means no budget.
	// A reservation counts at its full amount until it is resolved; a void
	// or expiry gives its amount back, a partial post keeps what was posted.
	// Replacing a mandate keeps the spends still inside the old window; they
	// count against the new budget while they are inside the new window.
	Budget uint64
	Window time.Duration
	// Counterparties, when not empty, are the only accounts the wallet may pay.
	Counterparties []ID
	// ExpiresAt, when not zero, is the end of the mandate's authority: after
	// it the wallet may not be debited at all until a new mandate is set.
	// It must lie after the Unix epoch and before the year 2262.
	ExpiresAt time.Time
}

// Validate reports whether the mandate is well formed.
func (m Mandate) Validate() error {
	switch {
	case m.AccountID.IsZero():
		return errors.New("mandate: account id must not be zero")
	case m.Budget > 0 && m.Window <= 0:
		return errors.New("mandate: a budget needs a positive window")
	case m.Window < 0:
		return errors.New("mandate: window must not be negative")
	case len(m.Counterparties) > maxCounterparties:
		return fmt.Errorf("mandate: at most %d counterparties", maxCounterparties)
	case !m.ExpiresAt.IsZero() && (m.ExpiresAt.Before(minExpiry) || m.ExpiresAt.After(maxExpiry)):
		// The ledger keeps time in int64 nanoseconds, with 0 for none:
		// the epoch would read as no expiry, and times outside the range
		// as some other time.
		return fmt.Errorf("mandate: expiry must lie between %v and %v", minExpiry, maxExpiry)
	}
	for _, c := range m.Counterparties {
		if c.IsZero() {
			return errors.New("mandate: counterparty id must not be zero")
		}
	}
	return nil
}

const maxCounterparties = 1024

// The range of mandate expiry times, in the ledger's unix nanoseconds.
var (
	minExpiry = time.Unix(0, 1).UTC()
	maxExpiry = time.Unix(0, math.MaxInt64).UTC()
)

// maxCounter bounds every counter so that balances always fit an int64.
const maxCounter = math.MaxInt64

// Result is the outcome of one account or transfer in a batch.
type Result uint8

// Result codes. They are append-only: a code's number never changes.
const (
	OK Result = iota
	// LinkedEventFailed: another event in this event's linked chain failed.
	LinkedEventFailed
	// LinkedEventChainOpen: the batch ended inside a linked chain.
	LinkedEventChainOpen
	// Exists: an event with this id and the same fields already committed.
	// This is the idempotent retry's answer; nothing changes.
	Exists
	// ExistsWithDifferentFields: the id is taken by a different event.
	ExistsWithDifferentFields
	IDMustNotBeZero
	FlagsInvalid
	// AccountCountersMustBeZero: a new account must carry zero counters.
	AccountCountersMustBeZero
	AccountNotFound
	SameAccount
	ZeroAmount
	InsufficientFunds
	PendingIDMustBeZero
	PendingIDMustNotBeZero
	PendingIDMustBeDifferent
	TimeoutReservedForPending
	PendingNotFound
	PendingTransferNotPending
	PendingTransferHasDifferentAccounts
	PendingTransferHasDifferentAmount
	PendingAlreadyPosted
	PendingAlreadyVoided
	PendingExpired
	ExceedsPendingAmount
	MandateViolated
	// Overflow: a counter would pass MaxInt64, or a pending transfer's
	// expiry time would (its timestamp plus its Timeout).
	Overflow
	numResults
)

var resultNames = [numResults]string{
	OK:                                  "ok",
	LinkedEventFailed:                   "linked_event_failed",
	LinkedEventChainOpen:                "linked_event_chain_open",
	Exists:                              "exists",
	ExistsWithDifferentFields:           "exists_with_different_fields",
	IDMustNotBeZero:                     "id_must_not_be_zero",
	FlagsInvalid:                        "flags_invalid",
	AccountCountersMustBeZero:           "account_counters_must_be_zero",
	AccountNotFound:                     "account_not_found",
	SameAccount:                         "same_account",
	ZeroAmount:                          "zero_amount",
	InsufficientFunds:                   "insufficient_funds",
	PendingIDMustBeZero:                 "pending_id_must_be_zero",
	PendingIDMustNotBeZero:              "pending_id_must_not_be_zero",
	PendingIDMustBeDifferent:            "pending_id_must_be_different",
	TimeoutReservedForPending:           "timeout_reserved_for_pending",
	PendingNotFound:                     "pending_not_found",
	PendingTransferNotPending:           "pending_transfer_not_pending",
	PendingTransferHasDifferentAccounts: "pending_transfer_has_different_accounts",
	PendingTransferHasDifferentAmount:   "pending_transfer_has_different_amount",
	PendingAlreadyPosted:                "pending_already_posted",
	PendingAlreadyVoided:                "pending_already_voided",
	PendingExpired:                      "pending_expired",
	ExceedsPendingAmount:                "exceeds_pending_amount",
	MandateViolated:                     "mandate_violated",
	Overflow:                            "overflow",
}

// String returns the result's stable snake_case code.
func (r Result) String() string {
	if r < numResults {
		return resultNames[r]
	}
	return fmt.Sprintf("result(%d)", uint8(r))
}

// MarshalText encodes the result as its code.
func (r Result) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Committed reports whether the event is in the ledger after the call: it
// was applied now (OK) or before (Exists).
func (r Result) Committed() bool { return r == OK || r == Exists }

// PendingStatus is the state of a pending transfer.
type PendingStatus uint8

const (
	StatusNone    PendingStatus = iota // not a pending transfer
	StatusPending                      // reserved, unresolved
	StatusPosted
	StatusVoided
	StatusExpired
)

var statusNames = [...]string{"none", "pending", "posted", "voided", "expired"}

func (s PendingStatus) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Errors returned by the engine. Per-event outcomes are Results, not errors;
// an error means the call as a whole did not happen.
var (
	// ErrNotFound: no account or transfer has the id.
	ErrNotFound = errors.New("ledger: not found")
	// ErrClosed: the ledger was closed, or stopped after an I/O failure.
	ErrClosed = errors.New("ledger: closed")
	// ErrBatchTooLarge: a batch holds more than MaxBatch events.
	ErrBatchTooLarge = errors.New("ledger: batch too large")
	// ErrInvalid: a request is malformed (a bad mandate, say).
	ErrInvalid = errors.New("ledger: invalid request")
)

// MaxBatch is the largest batch one call may submit, as in TigerBeetle.
const MaxBatch = 8190
