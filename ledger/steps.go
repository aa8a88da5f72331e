package ledger

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// The saga steps. Each is one call of a function from migration 0002, so one statement and one round
// trip to Postgres, and a statement is its own transaction. The function begins by locking its
// transfer's row, so the steps of one transfer never interleave, and reads the transfer's status to
// see whether the step already ran: the status moves forward in the same transaction as the money,
// so "ran" and "status advanced" are one fact. Running a step again therefore has the effect of
// running it once. A step touches one account row, so steps of different transfers cannot deadlock
// on each other. Business outcomes are *transfer.Error values; every other error is transient and
// worth retrying.

// stepResult is a step function's answer: Code is NULL when the step took effect or had already.
type stepResult struct {
	Code    *string
	Message *string
}

// step runs one step function, given as its SQL call, and turns its answer into an error.
func (s *Store) step(ctx context.Context, name string, id uuid.UUID, call string, args ...any) error {
	var r []stepResult
	if err := s.db.WithContext(ctx).Raw("SELECT code, message FROM "+call, args...).Scan(&r).Error; err != nil {
		return fmt.Errorf("ledger: %s %s: %w", name, id, s.translate(err))
	}
	if len(r) != 1 {
		return fmt.Errorf("ledger: %s %s: the step function returned %d rows", name, id, len(r))
	}
	if r[0].Code == nil {
		return nil
	}
	msg := ""
	if r[0].Message != nil {
		msg = *r[0].Message
	}
	return transfer.Errorf(transfer.Code(*r[0].Code), "%s", msg)
}

// Reserve holds the transfer's amount on its source: it raises the source's reserved and records the
// hold, only if the source is active and has that much available (the system account may go
// negative). It fails with CodeInsufficientFunds, CodeAccountInactive or CodeAccountNotFound, and
// with CodeTransferClosed when the transfer has already ended. A transfer already reserved, or
// further along, is left as it is.
func (s *Store) Reserve(ctx context.Context, id uuid.UUID) error {
	return s.step(ctx, "reserve", id, "ledger_reserve(?)", id)
}

// Debit posts the transfer's hold: the source's balance and reserved both fall by the amount, a debit
// entry is journaled, and the hold becomes posted. A source that was frozen or closed after the
// reserve fails with CodeAccountInactive, and the hold stays for Release. A transfer already debited
// or completed is left as it is.
func (s *Store) Debit(ctx context.Context, id uuid.UUID) error {
	return s.step(ctx, "debit", id, "ledger_debit(?)", id)
}

// Credit posts the amount to the destination and completes the transfer, only if the destination is
// active; otherwise it fails with CodeAccountInactive, and the saga refunds the source. A completed
// transfer is left as it is.
func (s *Store) Credit(ctx context.Context, id uuid.UUID) error {
	return s.step(ctx, "credit", id, "ledger_credit(?)", id)
}

// Release ends a transfer that was not debited: it releases the hold, if there is one, and records
// the outcome. It always succeeds on a transfer in status pending or reserved, whatever its source's
// status. A transfer that already ended is left as it is; one that was debited needs Refund
// (CodeInternal).
func (s *Store) Release(ctx context.Context, id uuid.UUID, o transfer.Outcome) error {
	if o.Status != transfer.StatusFailed && o.Status != transfer.StatusCancelled {
		return transfer.Errorf(transfer.CodeInternal, "release needs a failed or cancelled outcome, not %q", o.Status)
	}
	return s.step(ctx, "release", id, "ledger_release(?, ?, ?, ?)", id, string(o.Status), string(o.Code), o.Message)
}

// Refund ends a debited transfer whose credit failed: it posts a refund entry that returns the amount
// to the source, whatever the source's status (money owed back always lands), and records the
// transfer as failed with the code. A transfer that already ended is left as it is; one that was not
// debited needs Release (CodeInternal).
func (s *Store) Refund(ctx context.Context, id uuid.UUID, code transfer.Code, message string) error {
	return s.step(ctx, "refund", id, "ledger_refund(?, ?, ?)", id, string(code), message)
}

// TransferInOneTransaction runs reserve, debit and credit of a pending transfer in one transaction,
// with the very step functions the saga runs. It exists for `transferd bench`'s sql baseline: the
// cost of the money work alone, without Temporal. Business failures are returned as the steps return
// them, and the transaction then keeps nothing.
func (s *Store) TransferInOneTransaction(ctx context.Context, id uuid.UUID) error {
	return s.step(ctx, "transfer in one transaction", id, "ledger_transfer_at_once(?)", id)
}
