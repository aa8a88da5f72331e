package transfer

import "github.com/google/uuid"

// NewAccount is what creating a user's account takes.
type NewAccount struct {
	OwnerID    uuid.UUID
	Currency   Currency
	ExternalID string
	Labels     map[string]string
}

// AccountFilter narrows a list of accounts. Zero fields do not filter.
type AccountFilter struct {
	OwnerID    uuid.UUID
	Currency   Currency
	ExternalID string
	// Labels keeps the accounts that carry every one of these label pairs.
	Labels map[string]string
	// IncludeSystem lists the system accounts too; they have no owner.
	IncludeSystem bool
}

// TransferFilter narrows a list of transfers. Zero fields do not filter.
type TransferFilter struct {
	// VisibleTo keeps the transfers touching an account that this user owns.
	VisibleTo uuid.UUID
	// AccountID keeps the transfers from or to this account.
	AccountID uuid.UUID
	Status    Status
	Kind      Kind
}
