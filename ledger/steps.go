package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// The saga steps. Each is one call of a step_* function from migration 0003, so one statement and
// one round trip to Postgres, and a statement is its own transaction. The function begins by
// locking its transfer's row, so the steps of one transfer never interleave, and takes effect only
// from the status that leads to it: the status moves forward in the same transaction as the money,
// so "ran" and "status advanced" are one fact, and running a step again has the effect of running
// it once. Whatever happened, it answers with the row as it stands after the statement, so the
// saga decides from the ledger, never from its own memory, which a lost workflow task can leave
// behind the ledger. A step touches one account row, so steps of different transfers cannot
// deadlock on each other.

// stepAnswer is a step function's answer: Code is NULL unless the step was refused for a business
// reason; Status, FailureCode and FailureMessage are the row after the statement.
type stepAnswer struct {
	Code           *string
	Message        *string
	Status         *string
	FailureCode    *string
	FailureMessage *string
	HoldExpiresAt  *time.Time
	CapturedAmount *int64
}

// Step runs one saga step of the transfer and answers with where the transfer stands afterwards:
// its status, and its failure code and message once it failed or was cancelled. A step asked for in
// a status that does not lead to it changes nothing and answers likewise. When the ledger refuses
// the step for a business reason (CodeInsufficientFunds, CodeAccountInactive, CodeAccountNotFound)
// the error is that *transfer.Error and the answer is still the row, unchanged. An unknown transfer
// is CodeNotFound with a zero answer; any other error is transient and worth retrying.
//
// o is the outcome of a release (failed with a code, or cancelled), the code and message of a
// refund, and in o.CapturedAmount the amount of a capture (zero: all of the hold); the other steps
// ignore it. Release is "release unless debited": a scheduled, pending or reserved transfer ends
// with o, one that was debited or ended answers so, and the saga goes on from there. Capture,
// expire and due are migration 0007's step_capture, step_expire and step_due; a capture that cannot
// be is refused with CodeNotCapturable, CodeCaptureExceedsHold or CodeAccountInactive.
func (s *Store) Step(ctx context.Context, id uuid.UUID, step transfer.Step, o transfer.Outcome) (transfer.Outcome, error) {
	var call string
	args := []any{id}
	switch step {
	case transfer.StepReserve, transfer.StepDebit, transfer.StepCredit:
		call = "step_" + string(step) + "(?)"
	case transfer.StepRelease:
		if o.Status != transfer.StatusFailed && o.Status != transfer.StatusCancelled {
			return transfer.Outcome{}, transfer.Errorf(transfer.CodeInternal, "release needs a failed or cancelled outcome, not %q", o.Status)
		}
		call = "step_release(?, ?, ?, ?)"
		args = append(args, string(o.Status), string(o.Code), o.Message)
	case transfer.StepRefund:
		call = "step_refund(?, ?, ?)"
		args = append(args, string(o.Code), o.Message)
	case transfer.StepCapture:
		call = "step_capture(?, ?)"
		args = append(args, nullable(o.CapturedAmount))
	case transfer.StepExpire, transfer.StepDue:
		call = "step_" + string(step) + "(?)"
	default:
		return transfer.Outcome{}, transfer.Errorf(transfer.CodeInternal, "unknown saga step %q", step)
	}
	var r []stepAnswer
	err := s.db.WithContext(ctx).Raw("SELECT code, message, status, failure_code, failure_message, hold_expires_at, captured_amount FROM "+call, args...).Scan(&r).Error
	if err != nil {
		return transfer.Outcome{}, stepError(step, fmt.Errorf("%s: %w", id, err))
	}
	if len(r) != 1 {
		return transfer.Outcome{}, fmt.Errorf("ledger: %s %s: the step function returned %d rows", step, id, len(r))
	}
	a := r[0]
	if a.Status == nil {
		// Only an unknown transfer has no row to answer with.
		return transfer.Outcome{}, transfer.Errorf(transfer.Code(deref(a.Code)), "%s", deref(a.Message))
	}
	row := transfer.Outcome{Status: transfer.Status(*a.Status), Code: transfer.Code(deref(a.FailureCode)), Message: deref(a.FailureMessage)}
	if a.HoldExpiresAt != nil {
		row.HoldExpiresAt = a.HoldExpiresAt.UTC()
	}
	if a.CapturedAmount != nil {
		row.CapturedAmount = *a.CapturedAmount
	}
	if a.Code != nil {
		return row, transfer.Errorf(transfer.Code(*a.Code), "%s", deref(a.Message))
	}
	return row, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Reserve runs the reserve step (see Step) and reports only its refusal: CodeInsufficientFunds,
// CodeAccountInactive or CodeAccountNotFound. A transfer that is not pending is left as it is.
func (s *Store) Reserve(ctx context.Context, id uuid.UUID) error {
	_, err := s.Step(ctx, id, transfer.StepReserve, transfer.Outcome{})
	return err
}

// Debit runs the debit step (see Step) and reports only its refusal: CodeAccountInactive when the
// source was frozen or closed after the reserve. A transfer that is not reserved is left as it is.
func (s *Store) Debit(ctx context.Context, id uuid.UUID) error {
	_, err := s.Step(ctx, id, transfer.StepDebit, transfer.Outcome{})
	return err
}

// Credit runs the credit step (see Step) and reports only its refusal: CodeAccountInactive when the
// destination is not active. A transfer that is not debited is left as it is.
func (s *Store) Credit(ctx context.Context, id uuid.UUID) error {
	_, err := s.Step(ctx, id, transfer.StepCredit, transfer.Outcome{})
	return err
}

// Release runs the release step (see Step): a pending or reserved transfer ends with the outcome and
// its hold, if any, is released; any other transfer is left as it is.
func (s *Store) Release(ctx context.Context, id uuid.UUID, o transfer.Outcome) error {
	_, err := s.Step(ctx, id, transfer.StepRelease, o)
	return err
}

// Refund runs the refund step (see Step): a debited transfer gets its amount back on its source,
// whatever the source's status, and fails with the code; any other transfer is left as it is.
func (s *Store) Refund(ctx context.Context, id uuid.UUID, code transfer.Code, message string) error {
	_, err := s.Step(ctx, id, transfer.StepRefund, transfer.Outcome{Status: transfer.StatusFailed, Code: code, Message: message})
	return err
}

// TransferInOneTransaction runs reserve, debit and credit of a pending transfer in one transaction,
// with the step functions of migration 0002. It exists for `transferd bench`'s sql baseline: the
// cost of the money work alone, without Temporal. Business failures are returned as the steps return
// them, and the transaction then keeps nothing.
func (s *Store) TransferInOneTransaction(ctx context.Context, id uuid.UUID) error {
	var r []struct{ Code, Message *string }
	if err := s.db.WithContext(ctx).Raw("SELECT code, message FROM ledger_transfer_at_once(?)", id).Scan(&r).Error; err != nil {
		return fmt.Errorf("ledger: transfer in one transaction %s: %w", id, s.translate(err))
	}
	if len(r) != 1 {
		return fmt.Errorf("ledger: transfer in one transaction %s: the function returned %d rows", id, len(r))
	}
	if r[0].Code != nil {
		return transfer.Errorf(transfer.Code(*r[0].Code), "%s", deref(r[0].Message))
	}
	return nil
}
