package ledger

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// InvWorkflowResult is invariant 8 of ledger.md: a closed transfer workflow's result is its row's
// final status.
const InvWorkflowResult = 8

// WorkflowResults lists closed transfer workflows and reads their results. A WorkflowChecker that
// also implements it lets Audit check invariant 8.
type WorkflowResults interface {
	// ClosedWorkflows calls page with each page of the transfer workflow runs that completed (and so
	// have a result), within Temporal's retention; an error means it could not list them.
	ClosedWorkflows(ctx context.Context, page func([]transfer.ClosedWorkflow) error) error
	// WorkflowResult returns a completed run's result: the status, failure code and message it ended with.
	WorkflowResult(ctx context.Context, workflowID, runID string) (transfer.Outcome, error)
}

// auditWorkflowResults checks invariant 8 page by page: a run whose TransferStatus search attribute
// is its row's final status agrees with it (the attribute is upserted with the result), and only a
// run that disagrees costs a read of its result, which must equal the row's status, failure code
// and message.
func (s *Store) auditWorkflowResults(ctx context.Context, wr WorkflowResults) ([]Violation, error) {
	var out []Violation
	err := wr.ClosedWorkflows(ctx, func(page []transfer.ClosedWorkflow) error {
		ids := make([]uuid.UUID, len(page))
		for i, w := range page {
			ids[i] = w.TransferID
		}
		rows, err := s.TransferStatuses(ctx, ids)
		if err != nil {
			return err
		}
		for _, w := range page {
			subject := "transfer " + w.TransferID.String()
			row, ok := rows[w.TransferID]
			if !ok {
				out = append(out, Violation{Invariant: InvWorkflowResult, Name: "workflow result equals row", Subject: subject,
					Detail: fmt.Sprintf("run %s completed, but the ledger has no such transfer", w.RunID)})
				continue
			}
			if row.Status.Final() && w.Status == row.Status {
				continue
			}
			res, err := wr.WorkflowResult(ctx, w.TransferID.String(), w.RunID)
			if err != nil {
				return fmt.Errorf("result of run %s of transfer %s: %w", w.RunID, w.TransferID, err)
			}
			if res.Status != row.Status || res.Code != row.Code || res.Message != row.Message {
				out = append(out, Violation{Invariant: InvWorkflowResult, Name: "workflow result equals row", Subject: subject,
					Detail: fmt.Sprintf("run %s ended %s (%s), but the ledger says %s (%s)", w.RunID, res.Status, res.Code, row.Status, row.Code)})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: audit workflow results: %w", err)
	}
	return out, nil
}
