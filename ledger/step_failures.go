package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/transferd/transferd/transfer"
)

// StepError is a saga step's error that is not a business outcome: the step did not run, and may be
// retried. Permanent says that retrying cannot help (a constraint violation, bad data, an error in a
// statement: SQLSTATE classes 22, 23, 42, P0 and XX), as opposed to a lost connection, a deadlock or
// a serialization failure; such a step is still retried, since an operator may fix the data, but it
// is counted and reported (RecordStepFailure, Audit).
type StepError struct {
	Step transfer.Step
	Err  error
	// permanent is what Permanent reports.
	permanent bool
}

// Error implements error.
func (e *StepError) Error() string { return fmt.Sprintf("ledger: %s: %v", e.Step, e.Err) }

// Unwrap returns the driver's error.
func (e *StepError) Unwrap() error { return e.Err }

// Permanent reports whether retrying the step cannot succeed as things stand.
func (e *StepError) Permanent() bool { return e.permanent }

// stepError wraps a step's driver error, classifying it by its SQLSTATE.
func stepError(step transfer.Step, err error) *StepError {
	var pg *pgconn.PgError
	permanent := false
	if errors.As(err, &pg) && len(pg.Code) >= 2 {
		switch pg.Code[:2] {
		case "22", "23", "42", "P0", "XX":
			permanent = true
		}
	}
	return &StepError{Step: step, Err: err, permanent: permanent}
}

// maxStepErrorText bounds the error text a failure row keeps.
const maxStepErrorText = 500

// RecordStepFailure records a failed attempt of the transfer's step: one row per transfer and step,
// counting the attempts since the first failure that no progress of the transfer followed. It is
// best effort: when the database is what fails, the record fails too.
func (s *Store) RecordStepFailure(ctx context.Context, id uuid.UUID, step transfer.Step, stepErr error) error {
	var se *StepError
	permanent := errors.As(stepErr, &se) && se.Permanent()
	text := stepErr.Error()
	if len(text) > maxStepErrorText {
		text = text[:maxStepErrorText]
	}
	err := s.db.WithContext(ctx).Exec(`INSERT INTO step_failures AS f (transfer_id, step, permanent, last_error)
		SELECT t.id, ?, ?, ? FROM transfers t WHERE t.id = ?
		ON CONFLICT (transfer_id, step) DO UPDATE SET
		    first_failed_at = CASE WHEN (SELECT updated_at FROM transfers WHERE id = f.transfer_id) > f.last_failed_at
		                           THEN now() ELSE f.first_failed_at END,
		    attempts = CASE WHEN (SELECT updated_at FROM transfers WHERE id = f.transfer_id) > f.last_failed_at
		                    THEN 1 ELSE f.attempts + 1 END,
		    last_failed_at = now(), permanent = EXCLUDED.permanent, last_error = EXCLUDED.last_error`,
		string(step), permanent, text, id).Error
	if err != nil {
		return fmt.Errorf("ledger: record %s failure of %s: %w", step, id, err)
	}
	return nil
}

// PruneStepFailures deletes the records of failed steps whose transfer has moved on since their last
// failure (or ended): they report nothing any more. The reconciler calls it each sweep, so the table
// stays the size of what is failing now.
func (s *Store) PruneStepFailures(ctx context.Context) error {
	err := s.db.WithContext(ctx).Exec(`DELETE FROM step_failures f USING transfers t
		WHERE t.id = f.transfer_id AND t.updated_at > f.last_failed_at`).Error
	if err != nil {
		return fmt.Errorf("ledger: prune step failures: %w", err)
	}
	return nil
}

// DefaultStuckAfter is how long a step may keep failing, with no progress of its transfer, before
// Audit reports it.
const DefaultStuckAfter = 10 * time.Minute

// auditStuckSteps reports the transfers in flight whose step has kept failing for at least after,
// with no progress since the first failure.
func (s *Store) auditStuckSteps(ctx context.Context, after time.Duration) ([]Violation, error) {
	var rows []struct{ Subject, Detail string }
	err := s.db.WithContext(ctx).Raw(`
		SELECT 'transfer ' || t.id AS subject,
		       format('its %s step has failed %s times over %s with no progress (%s): %s', f.step, f.attempts,
		              date_trunc('second', f.last_failed_at - f.first_failed_at),
		              CASE WHEN f.permanent THEN 'the last error cannot succeed by retrying' ELSE 'transient errors' END,
		              f.last_error) AS detail
		FROM step_failures f JOIN transfers t ON t.id = f.transfer_id
		WHERE t.status IN ('scheduled', 'pending', 'reserved', 'debited') AND t.updated_at <= f.first_failed_at
		  AND f.last_failed_at - f.first_failed_at > make_interval(secs => ?)
		ORDER BY f.first_failed_at`, after.Seconds()).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("ledger: audit stuck steps: %w", err)
	}
	out := make([]Violation, 0, len(rows))
	for _, r := range rows {
		out = append(out, Violation{Invariant: InvWorkflows, Name: "step failing", Subject: r.Subject, Detail: r.Detail})
	}
	return out, nil
}
