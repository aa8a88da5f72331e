package ledger

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// The row structs mirror the tables for scanning; they never leave this package.

type userRow struct {
	ID           uuid.UUID
	Email        string
	PasswordHash string
	Name         string
	Role         string
	CreatedAt    time.Time
	// Status and TokenGeneration come from user_access (migration 0010), when a query joins it.
	Status          string
	TokenGeneration int64
}

func (r userRow) domain() transfer.User {
	status := transfer.UserStatus(r.Status)
	if status == "" {
		status = transfer.UserActive
	}
	return transfer.User{ID: r.ID, Email: r.Email, Name: r.Name, Role: transfer.Role(r.Role),
		PasswordHash: r.PasswordHash, CreatedAt: r.CreatedAt.UTC(), Status: status, TokenGeneration: r.TokenGeneration}
}

type accountRow struct {
	ID         uuid.UUID
	OwnerID    *uuid.UUID
	Kind       string
	Currency   string
	Balance    int64
	Reserved   int64
	EntrySeq   int64
	Status     string
	ExternalID *string
	Labels     []byte
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

func (r accountRow) domain() (transfer.Account, error) {
	a := transfer.Account{ID: r.ID, Kind: transfer.AccountKind(r.Kind), Currency: transfer.Currency(r.Currency),
		Balance: r.Balance, Reserved: r.Reserved, Status: transfer.AccountStatus(r.Status),
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
	if r.OwnerID != nil {
		a.OwnerID = *r.OwnerID
	}
	if r.ExternalID != nil {
		a.ExternalID = *r.ExternalID
	}
	labels, err := decodeLabels(r.Labels)
	if err != nil {
		return transfer.Account{}, err
	}
	a.Labels = labels
	return a, nil
}

type transferRow struct {
	ID             uuid.UUID
	Kind           string
	FromAccountID  uuid.UUID
	ToAccountID    uuid.UUID
	Amount         int64
	Currency       string
	Status         string
	FailureCode    *string
	FailureMessage *string
	Description    string
	Labels         []byte
	RequestHash    []byte
	InitiatedBy    *uuid.UUID
	CreatedAt      time.Time
	UpdatedAt      time.Time
	CompletedAt    *time.Time
	// The terms, from transfer_terms (migration 0007), read by every query that selects
	// transferColumns; NULL for a transfer that has none.
	CaptureMethod  *string
	ScheduledFor   *time.Time
	HoldExpiresAt  *time.Time
	CapturedAmount *int64
}

// transferColumns and transferTable read a transfer with its terms, where "t" names the row of
// transfers: SELECT transferColumns FROM transferTable WHERE ...
const (
	transferColumns = "t.*, x.capture_method, x.scheduled_for, x.hold_expires_at, x.captured_amount"
	transferTable   = "transfers t LEFT JOIN transfer_terms x ON x.transfer_id = t.id"
)

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func (r transferRow) domain() (transfer.Transfer, error) {
	t := transfer.Transfer{ID: r.ID, Kind: transfer.Kind(r.Kind), FromAccountID: r.FromAccountID,
		ToAccountID: r.ToAccountID, Amount: transfer.Amount(r.Amount), Currency: transfer.Currency(r.Currency),
		Status: transfer.Status(r.Status), Description: r.Description,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), CaptureMethod: transfer.CaptureAutomatic,
		ScheduledFor: utcPtr(r.ScheduledFor), HoldExpiresAt: utcPtr(r.HoldExpiresAt), CapturedAmount: r.CapturedAmount}
	if r.CaptureMethod != nil {
		t.CaptureMethod = transfer.CaptureMethod(*r.CaptureMethod)
	}
	if r.FailureCode != nil {
		t.FailureCode = transfer.Code(*r.FailureCode)
	}
	if r.FailureMessage != nil {
		t.FailureMessage = *r.FailureMessage
	}
	if r.InitiatedBy != nil {
		t.InitiatedBy = *r.InitiatedBy
	}
	if r.CompletedAt != nil {
		c := r.CompletedAt.UTC()
		t.CompletedAt = &c
	}
	labels, err := decodeLabels(r.Labels)
	if err != nil {
		return transfer.Transfer{}, err
	}
	t.Labels = labels
	return t, nil
}

type entryRow struct {
	ID           uuid.UUID
	AccountID    uuid.UUID
	TransferID   uuid.UUID
	Kind         string
	Amount       int64
	BalanceAfter int64
	Seq          int64
	CreatedAt    time.Time
}

func (r entryRow) domain() transfer.Entry {
	return transfer.Entry{ID: r.ID, AccountID: r.AccountID, TransferID: r.TransferID,
		Kind: transfer.EntryKind(r.Kind), Amount: r.Amount, BalanceAfter: r.BalanceAfter, Seq: r.Seq,
		CreatedAt: r.CreatedAt.UTC()}
}

func decodeLabels(b []byte) (map[string]string, error) {
	labels := map[string]string{}
	if len(b) == 0 {
		return labels, nil
	}
	if err := json.Unmarshal(b, &labels); err != nil {
		return nil, fmt.Errorf("ledger: labels: %w", err)
	}
	return labels, nil
}

func encodeLabels(labels map[string]string) string {
	if labels == nil {
		return "{}"
	}
	b, _ := json.Marshal(labels) // A map[string]string always marshals.
	return string(b)
}

// nullable returns nil for the zero value, so optional columns store NULL.
func nullable[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}
