// Package activities holds the saga's steps as Temporal activities: reserve, debit, credit and the
// compensations release and refund. Each is a thin shell over one idempotent ledger step, declared
// here as the small Store interface; the activities turn business failures into non-retryable
// application errors whose type is the stable error code, and leave every other error retryable.
package activities

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/transferd/transferd/transfer"
)

// Store is what the activities need of the ledger: one idempotent step of a transfer's saga.
type Store interface {
	// Step runs the step and answers with where the transfer stands afterwards (status, failure code
	// and message), also when the step changed nothing because the transfer was not in the status
	// that leads to it. A business refusal (CodeInsufficientFunds, CodeAccountInactive,
	// CodeAccountNotFound) is a *transfer.Error returned together with the unchanged row; an
	// unknown transfer is CodeNotFound; any other error is transient and the call may be retried.
	// o is a release's outcome, or a refund's code and message.
	Step(ctx context.Context, transferID uuid.UUID, step transfer.Step, o transfer.Outcome) (transfer.Outcome, error)
}

// FailureRecorder is what a Store may also do: record a step's failed attempt, so that a step that
// keeps failing is reported (transferd audit). It is best effort.
type FailureRecorder interface {
	RecordStepFailure(ctx context.Context, transferID uuid.UUID, step transfer.Step, err error) error
}

// MetricStepErrors counts the steps that failed with an error that is not a business outcome, by
// step and kind: "permanent" for an error that retrying cannot fix as things stand (the error has a
// Permanent method that says so), "transient" otherwise. Steps are retried either way; a permanent
// one is for an operator to look at.
const MetricStepErrors = "transferd_step_errors_total"

// Activities are the saga's steps. The workflow refers to them through a nil *Activities; workers
// register a real one.
type Activities struct {
	Store Store
}

// ReserveInput names the transfer to reserve.
type ReserveInput struct{ TransferID uuid.UUID }

// ReserveResult is the ledger's answer: the transfer as it stands after the step.
type ReserveResult struct {
	// Row is empty in histories recorded before the ledger answered (saga version 2 and older).
	Row transfer.Outcome `json:",omitzero"`
}

// DebitInput names the transfer to debit.
type DebitInput struct{ TransferID uuid.UUID }

// DebitResult is the ledger's answer: the transfer as it stands after the step.
type DebitResult struct {
	// Row is empty in histories recorded before the ledger answered (saga version 2 and older).
	Row transfer.Outcome `json:",omitzero"`
}

// CreditInput names the transfer to credit.
type CreditInput struct{ TransferID uuid.UUID }

// CreditResult is the ledger's answer: the transfer as it stands after the step.
type CreditResult struct {
	// Row is empty in histories recorded before the ledger answered (saga version 2 and older).
	Row transfer.Outcome `json:",omitzero"`
}

// ReleaseInput names the transfer to release and how it ends.
type ReleaseInput struct {
	TransferID uuid.UUID
	Outcome    transfer.Outcome
}

// ReleaseResult is the ledger's answer: the transfer as it stands after the step.
type ReleaseResult struct {
	// Row is empty in histories recorded before the ledger answered (saga version 2 and older).
	Row transfer.Outcome `json:",omitzero"`
}

// RefundInput names the transfer to refund and why its credit failed.
type RefundInput struct {
	TransferID  uuid.UUID
	FailureCode transfer.Code
	Message     string
}

// RefundResult is the ledger's answer: the transfer as it stands after the step.
type RefundResult struct {
	// Row is empty in histories recorded before the ledger answered (saga version 2 and older).
	Row transfer.Outcome `json:",omitzero"`
}

// CaptureInput names the manual transfer to capture and how much: zero captures all of the hold.
type CaptureInput struct {
	TransferID uuid.UUID
	Amount     int64 `json:",omitzero"`
}

// CaptureResult is the ledger's answer: the transfer as it stands after the step.
type CaptureResult struct {
	Row transfer.Outcome
}

// ExpireInput names the manual transfer whose hold's expiry has come.
type ExpireInput struct{ TransferID uuid.UUID }

// ExpireResult is the ledger's answer: the transfer as it stands after the step.
type ExpireResult struct {
	Row transfer.Outcome
}

// DueInput names the scheduled transfer whose time has come.
type DueInput struct{ TransferID uuid.UUID }

// DueResult is the ledger's answer: the transfer as it stands after the step.
type DueResult struct {
	Row transfer.Outcome
}

// Capture debits the captured amount of a manual transfer's hold and releases the rest, unless the
// ledger refuses (a business error carrying the unchanged row: CodeNotCapturable,
// CodeCaptureExceedsHold, CodeAccountInactive).
func (a *Activities) Capture(ctx context.Context, in CaptureInput) (CaptureResult, error) {
	row, err := a.step(ctx, in.TransferID, transfer.StepCapture, transfer.Outcome{CapturedAmount: in.Amount})
	return CaptureResult{Row: row}, err
}

// Expire releases a manual transfer's uncaptured hold if the ledger's clock has reached its
// expiry; otherwise the row comes back unchanged.
func (a *Activities) Expire(ctx context.Context, in ExpireInput) (ExpireResult, error) {
	row, err := a.step(ctx, in.TransferID, transfer.StepExpire, transfer.Outcome{})
	return ExpireResult{Row: row}, err
}

// Due makes a scheduled transfer pending, so its saga runs; a cancelled one stays cancelled.
func (a *Activities) Due(ctx context.Context, in DueInput) (DueResult, error) {
	row, err := a.step(ctx, in.TransferID, transfer.StepDue, transfer.Outcome{})
	return DueResult{Row: row}, err
}

// Reserve holds the transfer's amount on its source.
func (a *Activities) Reserve(ctx context.Context, in ReserveInput) (ReserveResult, error) {
	row, err := a.step(ctx, in.TransferID, transfer.StepReserve, transfer.Outcome{})
	return ReserveResult{Row: row}, err
}

// Debit posts the transfer's hold as a debit of its source.
func (a *Activities) Debit(ctx context.Context, in DebitInput) (DebitResult, error) {
	row, err := a.step(ctx, in.TransferID, transfer.StepDebit, transfer.Outcome{})
	return DebitResult{Row: row}, err
}

// Credit posts the transfer's amount to its destination and completes it.
func (a *Activities) Credit(ctx context.Context, in CreditInput) (CreditResult, error) {
	row, err := a.step(ctx, in.TransferID, transfer.StepCredit, transfer.Outcome{})
	return CreditResult{Row: row}, err
}

// Release ends a transfer that was not debited with the outcome, releasing its hold; a transfer that
// was debited or has ended is left as it is, and the answer says where it stands.
func (a *Activities) Release(ctx context.Context, in ReleaseInput) (ReleaseResult, error) {
	row, err := a.step(ctx, in.TransferID, transfer.StepRelease, in.Outcome)
	return ReleaseResult{Row: row}, err
}

// Refund returns a debited transfer's amount to its source and ends it as failed; any other
// transfer is left as it is, and the answer says where it stands.
func (a *Activities) Refund(ctx context.Context, in RefundInput) (RefundResult, error) {
	row, err := a.step(ctx, in.TransferID, transfer.StepRefund,
		transfer.Outcome{Status: transfer.StatusFailed, Code: in.FailureCode, Message: in.Message})
	return RefundResult{Row: row}, err
}

// step runs the step in the ledger. A business error becomes a non-retryable application error
// whose type is its code and whose details are the row the ledger answered with, so the workflow
// reads both back (RowOf, FailureOf); other errors stay retryable.
func (a *Activities) step(ctx context.Context, id uuid.UUID, step transfer.Step, o transfer.Outcome) (transfer.Outcome, error) {
	row, err := a.Store.Step(ctx, id, step, o)
	var te *transfer.Error
	if err != nil && !errors.As(err, &te) {
		a.failed(ctx, id, step, err)
		return row, err
	}
	if errors.As(err, &te) {
		if row.Status == "" {
			return row, temporal.NewNonRetryableApplicationError(te.Message, string(te.Code), nil)
		}
		return row, temporal.NewNonRetryableApplicationError(te.Message, string(te.Code), nil, row)
	}
	return row, err
}

// failed counts and records a step's failure that is not a business outcome.
func (a *Activities) failed(ctx context.Context, id uuid.UUID, step transfer.Step, err error) {
	kind := "transient"
	var p interface{ Permanent() bool }
	if errors.As(err, &p) && p.Permanent() {
		kind = "permanent"
	}
	if activity.IsActivity(ctx) {
		activity.GetMetricsHandler(ctx).WithTags(map[string]string{"step": string(step), "kind": kind}).
			Counter(MetricStepErrors).Inc(1)
	}
	if r, ok := a.Store.(FailureRecorder); ok && ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_ = r.RecordStepFailure(rctx, id, step, err) // Best effort: the database may be what fails.
	}
}

// RowOf reads the ledger's row back from a business error that step produced; ok is false when the
// error carries none (histories recorded before the ledger answered, or an unknown transfer).
func RowOf(err error) (row transfer.Outcome, ok bool) {
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.HasDetails() {
		return transfer.Outcome{}, false
	}
	if app.Details(&row) != nil || row.Status == "" {
		return transfer.Outcome{}, false
	}
	return row, true
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
