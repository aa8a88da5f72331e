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
}

func (r userRow) domain() transfer.User {
	return transfer.User{ID: r.ID, Email: r.Email, Name: r.Name, Role: transfer.Role(r.Role),
		PasswordHash: r.PasswordHash, CreatedAt: r.CreatedAt.UTC()}
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
}

func (r transferRow) domain() (transfer.Transfer, error) {
	t := transfer.Transfer{ID: r.ID, Kind: transfer.Kind(r.Kind), FromAccountID: r.FromAccountID,
		ToAccountID: r.ToAccountID, Amount: transfer.Amount(r.Amount), Currency: transfer.Currency(r.Currency),
		Status: transfer.Status(r.Status), Description: r.Description,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
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
