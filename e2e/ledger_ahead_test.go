package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	updatepb "go.temporal.io/api/update/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/worker"
	"github.com/transferd/transferd/workflows"
)

// TestCancelWhenTheLedgerIsAhead reproduces a lost workflow task: the steps that ran as local
// activities committed in the ledger (reserve and debit, or the whole saga), but the history never
// recorded them, so the next workflow task starts the saga from the beginning. A cancel arrives
// then, by the API's cancel update or by cancelling the workflow (the Web UI's "Request
// Cancellation"), before the worker sees the workflow. The saga must not decide from its memory that
// the transfer was not debited: the ledger decides, the money ends where the row says, and the
// workflow's result equals the row.
func TestCancelWhenTheLedgerIsAhead(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	for _, ahead := range []transfer.Status{transfer.StatusReserved, transfer.StatusDebited, transfer.StatusCompleted} {
		for _, how := range []string{"workflow cancel", "cancel update"} {
			t.Run(fmt.Sprintf("%s, %s", ahead, how), func(t *testing.T) {
				tr, from, to := s.recorded(t, 1000, 400)
				// The ledger runs ahead of the history.
				steps := []func(context.Context, uuid.UUID) error{s.store.Reserve, s.store.Debit, s.store.Credit}
				n := map[transfer.Status]int{transfer.StatusReserved: 1, transfer.StatusDebited: 2, transfer.StatusCompleted: 3}[ahead]
				for _, step := range steps[:n] {
					if err := step(ctx, tr.ID); err != nil {
						t.Fatal(err)
					}
				}
				// The workflow starts on a task queue no worker polls yet, so the cancel is there
				// before its first workflow task.
				queue := "ahead-" + tr.ID.String()
				in := workflows.TransferInput{TransferID: tr.ID, Kind: tr.Kind, FromAccountID: from.ID, ToAccountID: to.ID,
					Amount: 400, Currency: "USD"}
				run, err := s.temporal.ExecuteWorkflow(ctx, workflows.StartOptions(in, queue), workflows.WorkflowName, in)
				if err != nil {
					t.Fatal(err)
				}
				cancelled := make(chan error, 1)
				if how == "workflow cancel" {
					cancelled <- s.temporal.CancelWorkflow(ctx, tr.ID.String(), "")
				} else {
					updateID := uuid.NewString()
					go func() {
						h, err := s.temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: tr.ID.String(),
							UpdateID: updateID, UpdateName: workflows.UpdateCancel, Args: []any{workflows.CancelInput{Reason: "lost task"}},
							WaitForStage: client.WorkflowUpdateStageCompleted})
						if err == nil {
							var res workflows.CancelResult
							err = h.Get(ctx, &res)
						}
						cancelled <- err
					}()
					s.awaitAdmitted(t, tr.ID.String(), updateID) // The update is at the server before the worker polls.
				}
				w := worker.New(s.temporal, &activities.Activities{Store: s.store}, worker.Options{TaskQueue: queue})
				if err := w.Start(); err != nil {
					t.Fatal(err)
				}
				defer w.Stop()

				var got workflows.TransferResult
				waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				if err := run.Get(waitCtx, &got); err != nil {
					t.Fatalf("workflow: %v", err)
				}
				row, err := s.store.Transfer(ctx, tr.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Status != row.Status || got.FailureCode != row.FailureCode {
					t.Errorf("workflow result %s/%s, ledger row %s/%s", got.Status, got.FailureCode, row.Status, row.FailureCode)
				}
				// A reserved transfer may still be cancelled; one the ledger debited completes.
				want := transfer.StatusCompleted
				if ahead == transfer.StatusReserved {
					want = transfer.StatusCancelled
				}
				if row.Status != want {
					t.Errorf("ledger row %s, want %s", row.Status, want)
				}
				select {
				case err := <-cancelled:
					if err != nil && !errors.Is(err, context.Canceled) && how == "workflow cancel" {
						t.Errorf("cancel workflow: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Errorf("the cancel did not answer")
				}
				fromBal, fromRes := s.balance(from.ID)
				toBal, _ := s.balance(to.ID)
				wantFrom, wantTo := int64(600), int64(400)
				if want == transfer.StatusCancelled {
					wantFrom, wantTo = 1000, 0
				}
				if fromBal != wantFrom || fromRes != 0 || toBal != wantTo {
					t.Errorf("balances: source %d (reserved %d), destination %d; want %d (0), %d", fromBal, fromRes, toBal, wantFrom, wantTo)
				}
			})
		}
	}
	s.audit()
}

// awaitAdmitted waits until the server has admitted the update updateID of workflowID.
func (s *stack) awaitAdmitted(t *testing.T, workflowID, updateID string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.temporal.WorkflowService().PollWorkflowExecutionUpdate(ctx, &workflowservice.PollWorkflowExecutionUpdateRequest{
			Namespace:  s.namespace,
			UpdateRef:  &updatepb.UpdateRef{WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: workflowID}, UpdateId: updateID},
			WaitPolicy: &updatepb.WaitPolicy{LifecycleStage: enumspb.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ADMITTED},
		})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("update %s of %s not admitted: %v", updateID, workflowID, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
