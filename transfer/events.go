package transfer

import (
	"time"

	"github.com/google/uuid"
)

// EventType names a change of a transfer's status that clients are told of.
type EventType string

// The event types.
const (
	EventTransferCreated   EventType = "transfer.created"
	EventTransferHeld      EventType = "transfer.held"
	EventTransferCompleted EventType = "transfer.completed"
	EventTransferFailed    EventType = "transfer.failed"
	EventTransferCancelled EventType = "transfer.cancelled"
)

// EventTypes lists every event type.
var EventTypes = []EventType{EventTransferCreated, EventTransferHeld, EventTransferCompleted, EventTransferFailed, EventTransferCancelled}

// Valid reports whether t is a known event type.
func (t EventType) Valid() bool {
	for _, known := range EventTypes {
		if t == known {
			return true
		}
	}
	return false
}

// Event is one change of a transfer's status, with the transfer as it was right after it.
type Event struct {
	ID        uuid.UUID
	Type      EventType
	Transfer  Transfer
	CreatedAt time.Time
	// SourceOwnerID is the owner of the transfer's source account (uuid.Nil for the system
	// account), who sees all of the transfer; its payee sees less.
	SourceOwnerID uuid.UUID
}

// EventFilter narrows a list of events.
type EventFilter struct {
	// VisibleTo keeps the events of transfers touching an account this user owns.
	VisibleTo  uuid.UUID
	Type       EventType
	TransferID uuid.UUID
}

// EndpointStatus is whether an endpoint receives deliveries.
type EndpointStatus string

// The endpoint statuses.
const (
	EndpointEnabled  EndpointStatus = "enabled"
	EndpointDisabled EndpointStatus = "disabled"
)

// WebhookEndpoint is a URL that a user asked to be sent events at, signed with its secret.
type WebhookEndpoint struct {
	ID             uuid.UUID
	UserID         uuid.UUID
	URL            string
	EventTypes     []string
	Description    string
	Status         EndpointStatus
	DisabledReason string
	// Secret is the current signing key's bytes; PreviousSecret the one before a rotation, which
	// signs too until PreviousExpiresAt.
	Secret            []byte
	PreviousSecret    []byte
	PreviousExpiresAt *time.Time
	FailingSince      *time.Time
	LastSuccessAt     *time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// Subscribes reports whether the endpoint takes events of the type.
func (e WebhookEndpoint) Subscribes(t EventType) bool {
	for _, s := range e.EventTypes {
		if s == "*" || s == string(t) {
			return true
		}
	}
	return false
}

// Secrets returns the keys that sign a delivery at time now: the current one, and the previous one
// until it expires.
func (e WebhookEndpoint) Secrets(now time.Time) [][]byte {
	out := [][]byte{e.Secret}
	if len(e.PreviousSecret) > 0 && e.PreviousExpiresAt != nil && now.Before(*e.PreviousExpiresAt) {
		out = append(out, e.PreviousSecret)
	}
	return out
}

// EndpointPatch changes an endpoint (nil for no change).
type EndpointPatch struct {
	URL         *string
	EventTypes  []string
	Description *string
	Status      *EndpointStatus
}

// Delivery is one event to one endpoint, tried until delivered or failed.
type Delivery struct {
	ID         uuid.UUID
	EndpointID uuid.UUID
	EventID    uuid.UUID
	Status     string
	Attempts   int
	CreatedAt  time.Time
	// StartedAt is when its workflow was first started (nil before), as DeliveryTarget reads it.
	StartedAt *time.Time
}

// StalledDelivery is a pending delivery whose attempt was due before a time and has not come: its
// workflow may have closed without ending it. DueAt is when its next attempt was due.
type StalledDelivery struct {
	ID    uuid.UUID
	DueAt time.Time
}

// DeliveryAttempt is one line of an endpoint's delivery log.
type DeliveryAttempt struct {
	ID             uuid.UUID
	DeliveryID     uuid.UUID
	EndpointID     uuid.UUID
	EventID        uuid.UUID
	Attempt        int
	ResponseStatus int // 0 when no answer came
	Error          string
	Duration       time.Duration
	NextRetryAt    *time.Time
	CreatedAt      time.Time
}

// DeliveryTarget is what one attempt of a delivery needs: the delivery, its endpoint as it is now,
// the event, and whether the endpoint's owner may still see the event (an active user who owns one
// of its transfer's accounts, or an active admin).
type DeliveryTarget struct {
	Delivery Delivery
	Endpoint WebhookEndpoint
	Event    Event
	Visible  bool
	// OwnerAdmin says the endpoint's owner is an admin, who sees all of every transfer.
	OwnerAdmin bool
	// Deleted says the endpoint was deleted.
	Deleted bool
}

// NewEndpoint asks the ledger to record a webhook endpoint. IdempotencyKey, when set, makes a retry
// by the same user return the endpoint it created (created = false) instead of another.
type NewEndpoint struct {
	ID             uuid.UUID
	UserID         uuid.UUID
	URL            string
	EventTypes     []string
	Description    string
	Secret         []byte
	IdempotencyKey string
	Actor          Actor
	// RefuseIfNew, when set, is what the request is answered if its IdempotencyKey names no
	// endpoint yet: the reason the API would not create it now (its URL no longer passes the
	// check). A retry of a request that created one is answered from it all the same.
	RefuseIfNew error
}
