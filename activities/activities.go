// Package activities holds the saga's steps as Temporal activities: reserve, debit, credit and the
// compensations release and refund. Each is a thin shell over one idempotent ledger step, declared
// here as the small Store interface; the activities turn business failures into non-retryable
// application errors whose type is the stable error code, and leave every other error retryable.
package activities

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"

	"github.com/transferd/transferd/transfer"
)

// Store is what the activities need of the ledger. Every method is idempotent per transfer: calling
// it again after it succeeded changes nothing and succeeds. Business outcomes are *transfer.Error
// values with a stable code; any other error is transient and the call may be retried.
type Store interface {
	// Reserve holds the amount on the source: CodeInsufficientFunds, CodeAccountInactive,
	// CodeAccountNotFound or CodeTransferClosed when it cannot.
	Reserve(ctx context.Context, transferID uuid.UUID) error
	// Debit posts the hold: CodeAccountInactive when the source was frozen after the reserve.
	Debit(ctx context.Context, transferID uuid.UUID) error
	// Credit posts to the destination and completes the transfer: CodeAccountInactive when the
	// destination is not active.
	Credit(ctx context.Context, transferID uuid.UUID) error
	// Release releases the hold, if any, and ends the transfer with the outcome; CodeInternal when the
	// transfer was already debited.
	Release(ctx context.Context, transferID uuid.UUID, o transfer.Outcome) error
	// Refund returns a debited amount to the source and ends the transfer as failed with the code;
	// CodeInternal when the transfer was not debited.
	Refund(ctx context.Context, transferID uuid.UUID, code transfer.Code, message string) error
}

// Activities are the saga's steps. The workflow refers to them through a nil *Activities; workers
// register a real one.
type Activities struct {
	Store Store
}

// ReserveInput names the transfer to reserve.
type ReserveInput struct{ TransferID uuid.UUID }

// ReserveResult is empty; it exists so fields can be added without breaking histories.
type ReserveResult struct{}

// DebitInput names the transfer to debit.
type DebitInput struct{ TransferID uuid.UUID }

// DebitResult is empty; it exists so fields can be added without breaking histories.
type DebitResult struct{}

// CreditInput names the transfer to credit.
type CreditInput struct{ TransferID uuid.UUID }

// CreditResult is empty; it exists so fields can be added without breaking histories.
type CreditResult struct{}

// ReleaseInput names the transfer to release and how it ends.
type ReleaseInput struct {
	TransferID uuid.UUID
	Outcome    transfer.Outcome
}

// ReleaseResult is empty; it exists so fields can be added without breaking histories.
type ReleaseResult struct{}

// RefundInput names the transfer to refund and why its credit failed.
type RefundInput struct {
	TransferID  uuid.UUID
	FailureCode transfer.Code
	Message     string
}

// RefundResult is empty; it exists so fields can be added without breaking histories.
type RefundResult struct{}

// Reserve holds the transfer's amount on its source.
func (a *Activities) Reserve(ctx context.Context, in ReserveInput) (ReserveResult, error) {
	return ReserveResult{}, asTemporal(a.Store.Reserve(ctx, in.TransferID))
}

// Debit posts the transfer's hold as a debit of its source.
func (a *Activities) Debit(ctx context.Context, in DebitInput) (DebitResult, error) {
	return DebitResult{}, asTemporal(a.Store.Debit(ctx, in.TransferID))
}

// Credit posts the transfer's amount to its destination and completes it.
func (a *Activities) Credit(ctx context.Context, in CreditInput) (CreditResult, error) {
	return CreditResult{}, asTemporal(a.Store.Credit(ctx, in.TransferID))
}

// Release releases the transfer's hold and ends it without moving money.
func (a *Activities) Release(ctx context.Context, in ReleaseInput) (ReleaseResult, error) {
	return ReleaseResult{}, asTemporal(a.Store.Release(ctx, in.TransferID, in.Outcome))
}

// Refund returns the transfer's debit to its source and ends it as failed.
func (a *Activities) Refund(ctx context.Context, in RefundInput) (RefundResult, error) {
	return RefundResult{}, asTemporal(a.Store.Refund(ctx, in.TransferID, in.FailureCode, in.Message))
}

// asTemporal turns a business error into a non-retryable application error whose type is its code,
// so the workflow can read the code back; other errors stay retryable.
func asTemporal(err error) error {
	var te *transfer.Error
	if errors.As(err, &te) {
		return temporal.NewNonRetryableApplicationError(te.Message, string(te.Code), nil)
	}
	return err
}

// FailureOf reads the code and message back from an activity error that asTemporal produced. Any
// other error (a timeout, a cancellation) gives CodeInternal and its text.
func FailureOf(err error) (transfer.Code, string) {
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.Type() != "" {
		return transfer.Code(app.Type()), app.Message()
	}
	return transfer.CodeInternal, err.Error()
}
