package transfer

import (
	"time"

	"github.com/google/uuid"
)

// UserStatus is whether a user may act at all.
type UserStatus string

// The user statuses.
const (
	UserActive   UserStatus = "active"
	UserDisabled UserStatus = "disabled"
)

// Valid reports whether s is a known status.
func (s UserStatus) Valid() bool { return s == UserActive || s == UserDisabled }

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleUser || r == RoleAdmin }

// Actor is who does something that the audit log records: a user, and the API key they used if any.
// The zero Actor is the operator's command line.
type Actor struct {
	UserID   uuid.UUID
	APIKeyID uuid.UUID
}

// Credential is what the ledger knows, at the time of a request, of the user behind a bearer token:
// the user as they are now, and whether the token itself was revoked.
type Credential struct {
	User         User
	TokenRevoked bool
}

// APIKey is a key that a service sends instead of a user's token. Its secret text is shown once, at
// its creation, and the ledger keeps only its hash.
type APIKey struct {
	ID         uuid.UUID
	UserID     uuid.UUID
	Name       string
	Prefix     string
	ReadOnly   bool
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// Usable reports whether the key may be used at t: not revoked, not expired.
func (k APIKey) Usable(t time.Time) bool {
	return k.RevokedAt == nil && (k.ExpiresAt == nil || t.Before(*k.ExpiresAt))
}

// NewAPIKey asks the ledger to record a key. Hash is the SHA-256 of its text, Prefix its first 12
// characters. IdempotencyKey, when set, makes a retry by the same user return the key it created
// (created = false) instead of another.
type NewAPIKey struct {
	ID             uuid.UUID
	UserID         uuid.UUID
	Name           string
	Prefix         string
	Hash           []byte
	ReadOnly       bool
	ExpiresAt      *time.Time
	IdempotencyKey string
	Actor          Actor
}

// KeyAccess is an API key found by its hash, with its user as they are now.
type KeyAccess struct {
	Key  APIKey
	User User
}

// UserPatch changes a user's status or role (nil for no change).
type UserPatch struct {
	Status *UserStatus
	Role   *Role
}

// AuditEntry is one line of the audit log: who did what, to what, and when.
type AuditEntry struct {
	ID          uuid.UUID
	Actor       Actor
	Action      string
	SubjectType string
	SubjectID   uuid.UUID
	Detail      map[string]any
	CreatedAt   time.Time
}

// The audit log's actions.
const (
	AuditTransferCreated   = "transfer.created"
	AuditTransferCancelled = "transfer.cancelled"
	AuditTransferCaptured  = "transfer.captured"
	// AuditCancelRequested and AuditCaptureRequested are the API's requests, recorded before they
	// are sent: the ledger's step that decides records the cancel or capture itself, as the latest
	// requester's (migration 0011's trigger).
	AuditCancelRequested  = "transfer.cancel_requested"
	AuditCaptureRequested = "transfer.capture_requested"
	AuditAccountStatus    = "account.status_changed"
	AuditUserStatus       = "user.status_changed"
	AuditUserRole         = "user.role_changed"
	AuditAPIKeyCreated    = "api_key.created"
	AuditAPIKeyRevoked    = "api_key.revoked"
	AuditTokenRevoked     = "token.revoked"
)
