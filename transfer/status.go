package transfer

import "time"

// Status is where a transfer stands in its saga.
type Status string

// The statuses of a transfer, in the order the saga passes them; completed, failed and cancelled are
// final. A scheduled transfer is scheduled until its time, and pending from then on.
const (
	StatusScheduled Status = "scheduled"
	StatusPending   Status = "pending"
	StatusReserved  Status = "reserved"
	StatusDebited   Status = "debited"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Final reports whether s is an outcome that never changes again.
func (s Status) Final() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusScheduled, StatusPending, StatusReserved, StatusDebited, StatusCompleted, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// Kind says which accounts a transfer moves money between.
type Kind string

// The kinds of transfer: between two accounts, into an account from the currency's system account,
// and out of an account to it.
const (
	KindTransfer   Kind = "transfer"
	KindDeposit    Kind = "deposit"
	KindWithdrawal Kind = "withdrawal"
)

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool {
	return k == KindTransfer || k == KindDeposit || k == KindWithdrawal
}

// Outcome is a transfer's status with, once it failed or was cancelled, its code and message: how a
// transfer that moved no money ends, or, as a saga step answers it, where the ledger says the
// transfer stands.
type Outcome struct {
	Status  Status
	Code    Code
	Message string
	// HoldExpiresAt is when a manual transfer's hold expires, once the ledger has set it (zero for
	// automatic transfers). CapturedAmount is what a manual transfer's capture debited, once
	// captured. Both are absent from histories recorded before holds existed.
	HoldExpiresAt  time.Time `json:",omitzero"`
	CapturedAmount int64     `json:",omitzero"`
}

// Cancellable reports whether a transfer in status s can still be cancelled: nothing has been
// debited yet.
func (s Status) Cancellable() bool {
	return s == StatusScheduled || s == StatusPending || s == StatusReserved
}

// CaptureMethod says whether a transfer's hold is debited by its saga at once (automatic) or waits
// for a capture (manual).
type CaptureMethod string

// The capture methods.
const (
	CaptureAutomatic CaptureMethod = "automatic"
	CaptureManual    CaptureMethod = "manual"
)

// Step names one step of a transfer's saga.
type Step string

// The saga's steps and compensations.
const (
	StepReserve Step = "reserve"
	StepDebit   Step = "debit"
	StepCredit  Step = "credit"
	StepRelease Step = "release"
	StepRefund  Step = "refund"
	// StepCapture debits a manual transfer's captured amount and releases its hold; StepExpire
	// releases a manual transfer's hold at its expiry; StepDue makes a scheduled transfer pending.
	StepCapture Step = "capture"
	StepExpire  Step = "expire"
	StepDue     Step = "due"
)
