package transfer

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Transfer is one movement of money between two accounts, run as one saga.
type Transfer struct {
	ID             uuid.UUID
	Kind           Kind
	FromAccountID  uuid.UUID
	ToAccountID    uuid.UUID
	Amount         Amount
	Currency       Currency
	Status         Status
	FailureCode    Code
	FailureMessage string
	Description    string
	Labels         map[string]string
	// InitiatedBy is the user who asked for the transfer, or uuid.Nil when an operator tool did.
	InitiatedBy uuid.UUID
	CreatedAt   time.Time
	UpdatedAt   time.Time
	CompletedAt *time.Time
	// CaptureMethod is automatic unless the client asked for a manual capture (a hold).
	CaptureMethod CaptureMethod
	// ScheduledFor is when a scheduled transfer's saga runs; nil when it ran at once.
	ScheduledFor *time.Time
	// HoldExpiresAt is when a manual transfer's uncaptured hold is released; nil for automatic
	// transfers, and for a manual one until its hold is placed unless the client chose it.
	HoldExpiresAt *time.Time
	// CapturedAmount is what a manual transfer's capture debited; nil until captured.
	CapturedAmount *int64
}

// Request is what a client asks for when it creates a transfer. Its Hash identifies the request for
// idempotency: the same transfer id with a different hash is a conflict.
type Request struct {
	ID            uuid.UUID
	Kind          Kind
	FromAccountID uuid.UUID
	ToAccountID   uuid.UUID
	Amount        Amount
	Currency      Currency
	Description   string
	Labels        map[string]string
	InitiatedBy   uuid.UUID
	// CaptureMethod is CaptureManual for a hold; empty means automatic.
	CaptureMethod CaptureMethod
	// ScheduledFor, when set, runs the saga then instead of at once.
	ScheduledFor *time.Time
	// HoldExpiresAt is a manual transfer's hold expiry when the client chose it; else the service's
	// default (ScheduledFor + 7 days, or 7 days after the hold is placed).
	HoldExpiresAt *time.Time
	// IdempotencyKey is the Idempotency-Key the request came with, if any. The ledger remembers it
	// per InitiatedBy: the first request with a key creates a transfer (with ID, which nobody else
	// can know), and every later one with the same key names that transfer.
	IdempotencyKey string
	// APIKeyID is the key the request was sent with, if any, for the audit log; not part of Hash, so
	// a retry sent with a token or another key is the same request.
	APIKeyID uuid.UUID
}

// DefaultHoldFor is how long a hold lasts when the client names no expiry, and MaxHoldFor the
// longest it may last: both from when the hold is placed (scheduled_for for a scheduled transfer).
const (
	DefaultHoldFor = 7 * 24 * time.Hour
	MaxHoldFor     = 30 * 24 * time.Hour
)

// WindowProblem is one of a request's times outside its window at some moment: the time's JSON
// field, and what is wrong with it.
type WindowProblem struct{ Field, Message string }

// WindowError refuses a request for times outside their windows.
type WindowError struct{ Problems []WindowProblem }

func (e *WindowError) Error() string {
	msg := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msg[i] = p.Field + " " + p.Message
	}
	return "invalid_input: " + strings.Join(msg, "; ")
}

// Windows returns what is wrong with the request's times at now: scheduled_for must be ahead, and
// at most a year ahead; hold_expires_at ahead, and at most MaxHoldFor after the hold is placed
// (scheduled_for, or now). The API checks them when a request arrives.
func (r Request) Windows(now time.Time) []WindowProblem {
	var out []WindowProblem
	add := func(field, msg string) { out = append(out, WindowProblem{field, msg}) }
	if r.ScheduledFor != nil && !r.ScheduledFor.After(now) {
		add("scheduled_for", "must be in the future")
	}
	if r.ScheduledFor != nil && r.ScheduledFor.After(now.AddDate(1, 0, 0)) {
		add("scheduled_for", "must be at most a year ahead")
	}
	if r.HoldExpiresAt != nil {
		placed := now
		if r.ScheduledFor != nil {
			placed = *r.ScheduledFor
		}
		switch {
		case !r.HoldExpiresAt.After(now):
			add("hold_expires_at", "must be in the future")
		case r.HoldExpiresAt.After(placed.Add(MaxHoldFor)):
			add("hold_expires_at", "must be at most 30 days after the hold is placed (scheduled_for, or now)")
		}
	}
	return out
}

// Passed returns the problems of Windows that are times not ahead of now: scheduled_for and
// hold_expires_at must be in the future. The ledger checks these again, by the database's clock, in the
// transaction that records a new transfer: a retry that races its first attempt across
// scheduled_for is then answered as that attempt is. (The upper bounds only loosen with time, so
// the API's check of them holds.)
func (r Request) Passed(now time.Time) []WindowProblem {
	var out []WindowProblem
	if r.ScheduledFor != nil && !r.ScheduledFor.After(now) {
		out = append(out, WindowProblem{"scheduled_for", "must be in the future"})
	}
	if r.HoldExpiresAt != nil && !r.HoldExpiresAt.After(now) {
		out = append(out, WindowProblem{"hold_expires_at", "must be in the future"})
	}
	return out
}

// Manual reports whether the request is for a hold that waits for its capture.
func (r Request) Manual() bool { return r.CaptureMethod == CaptureManual }

// legacyKeyNamespace is the UUIDv5 namespace of the transfer ids that Idempotency-Keys were
// turned into before the ledger remembered keys per caller.
var legacyKeyNamespace = uuid.MustParse("6f0d2a8e-3c1b-5b7e-9a4d-2e8f1c0b7d35")

// LegacyKeyID is the transfer id that a caller's Idempotency-Key was turned into before the ledger
// remembered keys per caller. Such an id shares the namespace of the ids clients choose, so it
// names the key's transfer only when the same caller created it.
func LegacyKeyID(caller uuid.UUID, key string) uuid.UUID {
	return uuid.NewSHA1(legacyKeyNamespace, []byte(caller.String()+"\x00"+key))
}

// Hash returns a SHA-256 digest of the request's fields that define the transfer (everything but ID,
// InitiatedBy and IdempotencyKey), in a fixed, unambiguous encoding.
func (r Request) Hash() []byte {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(r.Kind))
	field(r.FromAccountID[:])
	field(r.ToAccountID[:])
	var amt [8]byte
	binary.BigEndian.PutUint64(amt[:], uint64(r.Amount))
	field(amt[:])
	field([]byte(r.Currency))
	field([]byte(r.Description))
	keys := slices.Sorted(maps.Keys(r.Labels))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(keys)))
	h.Write(n[:])
	for _, k := range keys {
		field([]byte(k))
		field([]byte(r.Labels[k]))
	}
	// The terms of holds and schedules are hashed only when set, so a request without them hashes
	// as it did before they existed (retries of requests sent before the upgrade still match).
	if r.Manual() || r.ScheduledFor != nil || r.HoldExpiresAt != nil {
		field([]byte("terms"))
		field([]byte(r.CaptureMethod))
		for _, t := range []*time.Time{r.ScheduledFor, r.HoldExpiresAt} {
			var b [8]byte
			if t != nil {
				binary.BigEndian.PutUint64(b[:], uint64(t.UnixMicro()))
				field(b[:])
			} else {
				field(nil)
			}
		}
	}
	return h.Sum(nil)
}

// AccountStatus is whether an account can move money.
type AccountStatus string

// The statuses of an account. Only active accounts send or receive money.
const (
	AccountActive AccountStatus = "active"
	AccountFrozen AccountStatus = "frozen"
	AccountClosed AccountStatus = "closed"
)

// Valid reports whether s is one of the known account statuses.
func (s AccountStatus) Valid() bool {
	return s == AccountActive || s == AccountFrozen || s == AccountClosed
}

// AccountKind separates users' accounts from the per-currency system account that stands for the
// outside world in deposits and withdrawals.
type AccountKind string

// The kinds of account.
const (
	AccountUser   AccountKind = "user"
	AccountSystem AccountKind = "system"
)

// Account holds money of one currency. Balance is posted money, Reserved is held by transfers in
// flight, and Available is Balance - Reserved.
type Account struct {
	ID         uuid.UUID
	OwnerID    uuid.UUID
	Kind       AccountKind
	Currency   Currency
	Balance    int64
	Reserved   int64
	Status     AccountStatus
	ExternalID string
	Labels     map[string]string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Available is the money the account can still send.
func (a Account) Available() int64 { return a.Balance - a.Reserved }

// EntryKind is what a journal entry records.
type EntryKind string

// The kinds of journal entry: money leaving a source, arriving at a destination, and returning to a
// source whose transfer failed after its debit.
const (
	EntryDebit  EntryKind = "debit"
	EntryCredit EntryKind = "credit"
	EntryRefund EntryKind = "refund"
)

// Entry is one line of an account's journal. Amount is signed (negative for debits); Seq counts the
// account's entries 1, 2, 3... with no gaps; BalanceAfter is the balance right after this entry.
type Entry struct {
	ID           uuid.UUID
	AccountID    uuid.UUID
	TransferID   uuid.UUID
	Kind         EntryKind
	Amount       int64
	BalanceAfter int64
	Seq          int64
	CreatedAt    time.Time
}

// User is someone who owns accounts.
type User struct {
	ID           uuid.UUID
	Email        string
	Name         string
	Role         Role
	PasswordHash string
	CreatedAt    time.Time
	// Status is active or disabled: a disabled user's tokens and keys are refused.
	Status UserStatus
	// TokenGeneration is carried by the tokens issued to the user: disabling the user raises it, so
	// that every token issued before stays refused after a re-enable.
	TokenGeneration int64
}

// Role is what a user may do: admins see and move everything.
type Role string

// The roles.
const (
	RoleUser  Role = "user"
	RoleAdmin Role = "admin"
)

// Page asks for one page of a list, newest first. Limit is 1..MaxPageLimit; Cursor is empty for the
// first page, or the NextCursor of the previous page.
type Page struct {
	Limit  int
	Cursor string
}

// DefaultPageLimit and MaxPageLimit bound a page's length.
const (
	DefaultPageLimit = 20
	MaxPageLimit     = 100
)

// List is one page of items and the cursor of the next page, empty on the last page.
type List[T any] struct {
	Items      []T
	NextCursor string
}

// Key orders transfers by when they were recorded, then by id; a zero Key comes before every
// transfer.
type Key struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// ClosedWorkflow is a transfer workflow run that has closed, as Temporal's visibility lists it.
type ClosedWorkflow struct {
	TransferID uuid.UUID
	RunID      string
	// Status is the TransferStatus search attribute the run last recorded.
	Status Status
}
