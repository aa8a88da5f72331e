// Package service is the Go API for moving money: it records a transfer and starts its workflow,
// idempotently; waits for transfers to end; cancels them before their debit; and restarts the
// workflow of any accepted transfer whose start was lost to a crash. The HTTP layer calls it; the
// ledger and a Temporal client are handed to it by cmd/transferd.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/workflows"
)

// Store is what the service needs of the ledger.
type Store interface {
	// CreateTransfer records a pending transfer, or returns the existing one with created = false
	// when the id exists with the same request (for a request with an IdempotencyKey: when the
	// caller's key names a transfer of the same request); CodeIdempotencyConflict when it exists
	// with another, and CodeAccountNotFound, CodeSameAccount or CodeCurrencyMismatch for requests
	// that cannot run.
	CreateTransfer(ctx context.Context, r transfer.Request) (t transfer.Transfer, created bool, err error)
	// Transfer returns a transfer; CodeNotFound when there is none.
	Transfer(ctx context.Context, id uuid.UUID) (transfer.Transfer, error)
	// SystemAccount returns the currency's system account, creating it on first use;
	// CodeUnsupportedCurrency for a currency the service does not accept.
	SystemAccount(ctx context.Context, cur transfer.Currency) (transfer.Account, error)
	// PendingTransfers returns up to limit transfers whose workflow may never have started, in
	// (created_at, id) order after the one given (none for the first page): pending transfers last
	// updated before the time, and scheduled ones whose scheduled_for is before it.
	PendingTransfers(ctx context.Context, updatedBefore time.Time, after transfer.Key, limit int) ([]transfer.Transfer, error)
	// InFlightTransfersAfter returns up to limit transfers that are not final, in (created_at, id)
	// order after the key (none for a zero key).
	InFlightTransfersAfter(ctx context.Context, after transfer.Key, limit int) ([]transfer.Transfer, error)
	// PruneStepFailures deletes the records of failed steps whose transfer has moved on since.
	PruneStepFailures(ctx context.Context) error
	// TransferStatuses returns the statuses of those of the transfers that exist.
	TransferStatuses(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]transfer.Outcome, error)
}

// Service starts, waits for and cancels transfers.
type Service struct {
	store     Store
	temporal  client.Client
	taskQueue string
	log       *slog.Logger
	opts      Options

	// sweep lets one reconcile sweep run at a time; closedSince is when the previous sweep began,
	// from which the next lists the workflows that closed; retry holds the transfers a sweep could
	// not repair, which the next one tries first; sweeps counts the sweeps, so that every
	// fullSweepEvery-th lists every closed workflow, whenever it closed.
	sweep       sync.Mutex
	closedSince time.Time
	retry       map[uuid.UUID]struct{}
	sweeps      int
	// fullDue says a full sweep is due and none has succeeded since: a failed one is tried again
	// at the next sweep, not fullSweepEvery sweeps later.
	fullDue bool
}

// Options tunes how the service starts workflows.
type Options struct {
	// EagerStart asks the server to hand a new workflow's first task straight back to a worker of
	// this process's client, saving a round trip through the task queue. Set it only where a worker
	// polls the task queue with the same client (transferd dev, server --with-worker); elsewhere the
	// server ignores the request.
	EagerStart bool
	// Naive starts transfers on the naive saga (regular activities for every step), for the bench.
	Naive bool
	// WorkflowTaskTimeout is how long a worker may hold a transfer's workflow task; zero means
	// Temporal's default, 10s. The saga's steps run as local activities inside that task, so while a
	// step runs, a cancel or a query waits until the SDK heartbeats the task, at 80% of this timeout.
	// Tests that hold a step on purpose shorten it.
	WorkflowTaskTimeout time.Duration
	// Namespace is the Temporal namespace of the client, for visibility queries; default "default".
	Namespace string
}

// WithOptions sets the service's options and returns it.
func (s *Service) WithOptions(o Options) *Service {
	s.opts = o
	return s
}

// New returns a Service that records transfers in store and runs them as workflows on taskQueue
// (workflows.DefaultTaskQueue if empty).
func New(store Store, c client.Client, taskQueue string, log *slog.Logger) *Service {
	if taskQueue == "" {
		taskQueue = workflows.DefaultTaskQueue
	}
	if log == nil {
		log = slog.Default()
	}
	return &Service{store: store, temporal: c, taskQueue: taskQueue, log: log}
}

// Submit records the transfer and starts its workflow. The transfer id is the idempotency key, or
// the caller's IdempotencyKey when the request has one (a new key's transfer then gets r.ID, or a
// random id): a request with an id or key that exists returns that transfer in its current state
// with created = false, and makes sure its workflow runs if it is not final (a crash may have come
// between the two), but never starts a second one; the same id or key with another request is
// CodeIdempotencyConflict. For a
// deposit the source is the currency's system account, for a withdrawal the destination; r's
// corresponding field is ignored. Nothing is acknowledged before the row and the workflow are
// durable.
func (s *Service) Submit(ctx context.Context, r transfer.Request) (t transfer.Transfer, created bool, err error) {
	if r.ID == uuid.Nil {
		r.ID = uuid.New()
	}
	if r.Kind == "" {
		r.Kind = transfer.KindTransfer
	}
	if r.Kind == transfer.KindDeposit || r.Kind == transfer.KindWithdrawal {
		sys, err := s.store.SystemAccount(ctx, r.Currency)
		if err != nil {
			return transfer.Transfer{}, false, err
		}
		if r.Kind == transfer.KindDeposit {
			r.FromAccountID = sys.ID
		} else {
			r.ToAccountID = sys.ID
		}
	}
	t, created, err = s.store.CreateTransfer(ctx, r)
	if err != nil {
		return transfer.Transfer{}, false, err
	}
	if created {
		s.log.InfoContext(ctx, "transfer accepted", "transfer_id", t.ID.String(), "workflow_id", t.ID.String(),
			"kind", string(t.Kind), "amount", int64(t.Amount), "currency", string(t.Currency))
	}
	if t.Status.Final() {
		return t, created, nil
	}
	if err := s.start(ctx, t); err != nil {
		return transfer.Transfer{}, false, err
	}
	return t, created, nil
}

// start starts the transfer's workflow unless it has one. A workflow that already closed is left
// closed: only Repair may start a new run after it.
func (s *Service) start(ctx context.Context, t transfer.Transfer) error {
	opts, in := s.startOptions(t)
	_, err := s.temporal.ExecuteWorkflow(ctx, opts, workflows.WorkflowName, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if err != nil && !errors.As(err, &started) {
		return fmt.Errorf("service: start workflow %s: %w", t.ID, err)
	}
	return nil
}

// startOptions returns the options and input that start the transfer's workflow.
func (s *Service) startOptions(t transfer.Transfer) (client.StartWorkflowOptions, workflows.TransferInput) {
	in := workflows.TransferInput{TransferID: t.ID, Kind: t.Kind, FromAccountID: t.FromAccountID,
		ToAccountID: t.ToAccountID, Amount: int64(t.Amount), Currency: t.Currency, Naive: s.opts.Naive}
	if t.CaptureMethod == transfer.CaptureManual {
		in.CaptureMethod = transfer.CaptureManual
	}
	if t.ScheduledFor != nil {
		in.ScheduledFor = *t.ScheduledFor
	}
	opts := workflows.StartOptions(in, s.taskQueue)
	opts.EnableEagerStart = s.opts.EagerStart
	opts.WorkflowTaskTimeout = s.opts.WorkflowTaskTimeout
	return opts, in
}

// Wait waits up to d for the transfer to end and returns its state then, final or not. An unknown
// id is CodeNotFound.
func (s *Service) Wait(ctx context.Context, id uuid.UUID, d time.Duration) (transfer.Transfer, error) {
	t, err := s.store.Transfer(ctx, id)
	if err != nil || t.Status.Final() || d <= 0 {
		return t, err
	}
	waitCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var res workflows.TransferResult
	err = s.temporal.GetWorkflow(waitCtx, id.String(), "").Get(waitCtx, &res)
	if err != nil && ctx.Err() != nil {
		return transfer.Transfer{}, ctx.Err()
	}
	// Whether the workflow ended, the wait ran out or the workflow is gone, the row tells the state.
	return s.store.Transfer(ctx, id)
}

// Cancel cancels a transfer that has not been debited: its hold is released and it ends cancelled.
// It returns the transfer once its saga has ended. Cancelling a cancelled transfer returns it;
// cancelling one that was debited or ended otherwise is CodeNotCancellable; an unknown id is
// CodeNotFound.
func (s *Service) Cancel(ctx context.Context, id uuid.UUID, reason string) (transfer.Transfer, error) {
	t, err := s.store.Transfer(ctx, id)
	if err != nil {
		return transfer.Transfer{}, err
	}
	switch {
	case t.Status == transfer.StatusCancelled && t.FailureCode != transfer.CodeHoldExpired:
		return t, nil
	case t.Status.Cancellable():
	default:
		return transfer.Transfer{}, notCancellable(t)
	}
	err = s.cancelUpdate(ctx, t, reason)
	if isClosed(err) {
		// A transfer that is not final and whose workflow closed (an operator terminated it, maybe
		// after it accepted this very cancel) is stranded: give it a new run, which honours the
		// cancel unless the ledger says the transfer was debited.
		if _, rerr := s.Repair(ctx, id); rerr != nil {
			return transfer.Transfer{}, rerr
		}
		if t, err = s.store.Transfer(ctx, id); err != nil {
			return transfer.Transfer{}, err
		}
		err = s.cancelUpdate(ctx, t, reason)
	}
	if err != nil {
		var app *temporal.ApplicationError
		switch {
		case errors.As(err, &app) && app.Type() == string(transfer.CodeNotCancellable):
		case isClosed(err):
			// The workflow ended between the read and the update.
		default:
			return transfer.Transfer{}, fmt.Errorf("service: cancel %s: %w", id, err)
		}
	}
	t, err = s.store.Transfer(ctx, id)
	if err != nil {
		return transfer.Transfer{}, err
	}
	if t.Status != transfer.StatusCancelled || t.FailureCode == transfer.CodeHoldExpired {
		return transfer.Transfer{}, notCancellable(t)
	}
	return t, nil
}

// Capture captures a manual transfer's hold: amount (zero for all of it) is debited and credited,
// and the rest of the hold released. The ledger decides, in one statement that locks the transfer
// (step_capture), whether the capture wins against a cancel and the hold's expiry; the workflow
// runs that statement and the capture waits for its answer. It returns the transfer once captured
// (its credit may still be under way). A capture of the amount already captured returns the
// transfer; any other capture that cannot be is CodeNotCapturable (automatic, not held yet,
// captured with another amount, ended, expired), CodeCaptureExceedsHold or CodeAccountInactive;
// an unknown id is CodeNotFound.
func (s *Service) Capture(ctx context.Context, id uuid.UUID, amount int64) (transfer.Transfer, error) {
	t, err := s.store.Transfer(ctx, id)
	if err != nil {
		return transfer.Transfer{}, err
	}
	want := amount
	if want == 0 {
		want = int64(t.Amount)
	}
	switch {
	case t.CaptureMethod != transfer.CaptureManual:
		return transfer.Transfer{}, transfer.Errorf(transfer.CodeNotCapturable, "transfer %s is captured automatically; only a manual transfer can be captured", id)
	case t.CapturedAmount != nil && *t.CapturedAmount != want:
		return transfer.Transfer{}, transfer.Errorf(transfer.CodeNotCapturable, "transfer %s was already captured for %d", id, *t.CapturedAmount)
	case t.CapturedAmount != nil && t.Status.Final():
		return t, nil
	case t.CapturedAmount != nil:
		// The amount already captured, on a transfer not yet final: the same capture, answered
		// from the row. The update still goes to the workflow, waited for only until it is
		// accepted: a workflow that had lost the task that captured (its update not delivered
		// again) learns of it now and credits, and the answer does not wait for that credit.
		if err := s.captureUpdate(ctx, t, amount, client.WorkflowUpdateStageAccepted); err != nil && !isClosed(err) {
			s.log.WarnContext(ctx, "capture: could not tell the workflow of a capture the ledger has", "transfer_id", id.String(), "err", err)
		}
		return s.store.Transfer(ctx, id)
	case want > int64(t.Amount):
		return transfer.Transfer{}, transfer.Errorf(transfer.CodeCaptureExceedsHold, "the hold is of %d, the capture asks for %d", t.Amount, want)
	case t.Status.Final():
		return transfer.Transfer{}, notCapturable(t)
	}
	err = s.captureUpdate(ctx, t, amount, client.WorkflowUpdateStageCompleted)
	if isClosed(err) {
		// The row is not final and the workflow closed (an operator terminated it): give it a new
		// run, which waits for the capture again, and ask once more.
		if _, rerr := s.Repair(ctx, id); rerr != nil {
			return transfer.Transfer{}, rerr
		}
		err = s.captureUpdate(ctx, t, amount, client.WorkflowUpdateStageCompleted)
	}
	var app *temporal.ApplicationError
	switch {
	case err == nil:
	case errors.As(err, &app) && app.Type() != "" && app.NonRetryable():
		return transfer.Transfer{}, transfer.Errorf(transfer.Code(app.Type()), "%s", captureMessage(transfer.Code(app.Type()), app.Message()))
	case isClosed(err):
		// The workflow ended between the read and the update: the row says how.
	default:
		return transfer.Transfer{}, fmt.Errorf("service: capture %s: %w", id, err)
	}
	if t, err = s.store.Transfer(ctx, id); err != nil {
		return transfer.Transfer{}, err
	}
	if t.CapturedAmount == nil || *t.CapturedAmount != want {
		return transfer.Transfer{}, notCapturable(t)
	}
	return t, nil
}

// captureMessage is the message of a refused capture. The HTTP layer shows a payee, who is not
// told the state of the payer's account, a neutral refusal instead of CodeAccountInactive.
func captureMessage(code transfer.Code, ledgerMessage string) string {
	if code == transfer.CodeAccountInactive {
		return "the source account cannot send money; the hold stays until it is cancelled or expires"
	}
	return ledgerMessage
}

// captureUpdate sends the capture update and waits for it to reach stage: accepted (the workflow
// has it), or completed (the ledger answered it; its refusal is the error).
func (s *Service) captureUpdate(ctx context.Context, t transfer.Transfer, amount int64, stage client.WorkflowUpdateStage) error {
	handle, err := s.temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   t.ID.String(),
		UpdateName:   workflows.UpdateCapture,
		Args:         []any{workflows.CaptureInput{Amount: amount}},
		WaitForStage: stage,
	})
	if err != nil || stage != client.WorkflowUpdateStageCompleted {
		return err
	}
	var res workflows.CaptureResult
	return handle.Get(ctx, &res)
}

func notCapturable(t transfer.Transfer) error {
	if t.FailureCode == transfer.CodeHoldExpired {
		return transfer.Errorf(transfer.CodeNotCapturable, "the hold of transfer %s expired; it can no longer be captured", t.ID)
	}
	return transfer.Errorf(transfer.CodeNotCapturable, "transfer %s is %s; only a held transfer can be captured", t.ID, t.Status)
}

// cancelUpdate sends the cancel update and waits for its answer. A pending transfer's workflow may
// not exist yet (the API crashed between recording the transfer and starting it, or the start is
// still on its way): the update is then sent with its start (update-with-start), so the cancel is
// honoured instead of answered 409 while the transfer goes on to run.
func (s *Service) cancelUpdate(ctx context.Context, t transfer.Transfer, reason string) error {
	update := client.UpdateWorkflowOptions{
		UpdateName:   workflows.UpdateCancel,
		Args:         []any{workflows.CancelInput{Reason: reason}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	}
	var handle client.WorkflowUpdateHandle
	var err error
	if t.Status == transfer.StatusPending || t.Status == transfer.StatusScheduled {
		opts, in := s.startOptions(t)
		opts.EnableEagerStart = false // Eager start does not go with update-with-start.
		handle, err = s.temporal.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
			StartWorkflowOperation: s.temporal.NewWithStartWorkflowOperation(opts, workflows.WorkflowName, in),
			UpdateOptions:          update,
		})
	} else {
		update.WorkflowID = t.ID.String()
		handle, err = s.temporal.UpdateWorkflow(ctx, update)
	}
	if err != nil {
		return err
	}
	var res workflows.CancelResult
	return handle.Get(ctx, &res)
}

// isClosed reports whether err says the workflow has closed: it is gone, a start after its closed
// run was rejected (the reject-duplicate policy), or it closed after it accepted the update.
func isClosed(err error) bool {
	var gone *serviceerror.NotFound
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	var app *temporal.ApplicationError
	return errors.As(err, &gone) || errors.As(err, &started) ||
		(errors.As(err, &app) && app.Type() == "AcceptedUpdateCompletedWorkflow")
}

func notCancellable(t transfer.Transfer) error {
	if t.FailureCode == transfer.CodeHoldExpired {
		return transfer.Errorf(transfer.CodeNotCancellable, "the hold of transfer %s expired; it was not cancelled", t.ID)
	}
	return transfer.Errorf(transfer.CodeNotCancellable, "transfer %s is %s; only a scheduled, pending or reserved transfer can be cancelled", t.ID, t.Status)
}

// Repair makes sure a transfer that is not final has a running workflow, and reports whether it
// started one. A transfer whose start was lost gets its first run; one whose workflow closed while
// its row is not final (an operator terminated it, or it failed) gets a new run under the same
// workflow id, which finishes the saga from where the ledger says the transfer stands. Repair is
// the one caller that may start a run after a closed one, and only for a row that is not final
// (ledger.md); a final transfer and a running workflow are left alone.
func (s *Service) Repair(ctx context.Context, id uuid.UUID) (bool, error) {
	t, err := s.store.Transfer(ctx, id)
	if err != nil || t.Status.Final() {
		return false, err
	}
	d, err := s.temporal.DescribeWorkflowExecution(ctx, id.String(), "")
	var gone *serviceerror.NotFound
	switch {
	case errors.As(err, &gone):
		// No run at all (or none left within retention): start the first.
	case err != nil:
		return false, fmt.Errorf("service: repair %s: describe: %w", id, err)
	case d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return false, nil
	}
	opts, in := s.startOptions(t)
	// The row is not final and no run is running: a new run may follow a run that failed, was
	// terminated, cancelled or timed out, never one that completed (a completed run of this code
	// always left its row final). A second repairer racing this one is refused, whether the run it
	// meets is running or has completed.
	opts.WorkflowIDReusePolicy = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY
	opts.EnableEagerStart = false
	// A run already running (another repairer's) refuses the start rather than being used, and
	// the SDK reports a refused start as an error rather than as the handle of the run that
	// refused it: Repair reports only a run it started.
	opts.WorkflowIDConflictPolicy = enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL
	opts.WorkflowExecutionErrorWhenAlreadyStarted = true
	run, err := s.temporal.ExecuteWorkflow(ctx, opts, workflows.WorkflowName, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		// The run that closed completed: the row is final by now (a completed run leaves it so),
		// or it is for the audit (invariant 8) to report.
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("service: repair %s: start: %w", id, err)
	}
	s.log.InfoContext(ctx, "transfer repaired: started a workflow run over a transfer that was not final",
		"transfer_id", id.String(), "status", string(t.Status), "run_id", run.GetRunID())
	return true, nil
}

// ReconcileReport is what one reconcile sweep did.
type ReconcileReport struct {
	// Looked counts the transfers the sweep looked at; Repaired those it started a run for.
	Looked, Repaired int
	// Failed counts the transfers it could not look at or repair; the next sweep tries them again.
	Failed int
}

// reconcileBatch is how many rows or workflows one query of a sweep reads.
const reconcileBatch = 500

// closedOverlap is how far back each sweep lists closed workflows from where the previous one
// started: visibility trails the workflows, by seconds on SQL visibility and more on a backlogged
// Elasticsearch, and the server's clock is not the worker's. Looking again at a workflow costs a
// row read, so the overlap is generous.
const closedOverlap = 15 * time.Minute

// fullSweepEvery is how often a sweep lists every closed workflow with a status that is not final,
// not only those closed since the previous sweep: a close that visibility recorded later than the
// overlap is found then.
const fullSweepEvery = 20

// Reconcile makes sure every accepted transfer that is not final has a running workflow, at a cost
// that follows what changed, not what is in flight (held and scheduled transfers wait for days in
// statuses that are not final, with running workflows, and no sweep asks about them):
//   - lost starts: pending transfers idle for at least idle, read in batches through all of them;
//     a start that is lost leaves its transfer pending, and a running workflow moves it on at once;
//   - closed workflows over rows that are not final: the transfer workflows that closed since the
//     previous sweep (less closedOverlap; every fullSweepEvery-th sweep, whenever they closed) with
//     a TransferStatus that is not final, listed from Temporal's visibility.
//
// Each is repaired (Repair). A transfer that cannot be looked at or repaired is logged and counted,
// the sweep goes on past it, and the next sweep tries it first; the error is the first such
// failure, with the report of all. Each sweep also prunes the records of failed steps whose
// transfer has moved on.
func (s *Service) Reconcile(ctx context.Context, idle time.Duration) (ReconcileReport, error) {
	s.sweep.Lock()
	defer s.sweep.Unlock()
	var r ReconcileReport
	var first error
	failed := map[uuid.UUID]struct{}{}
	fix := func(id uuid.UUID) {
		if _, done := failed[id]; done {
			return
		}
		r.Looked++
		repaired, err := s.Repair(ctx, id)
		switch {
		case err != nil:
			r.Failed++
			failed[id] = struct{}{}
			if first == nil {
				first = err
			}
			s.log.WarnContext(ctx, "reconcile: could not repair transfer; the next sweep tries again", "transfer_id", id.String(), "err", err)
		case repaired:
			r.Repaired++
		}
	}
	for id := range s.retry {
		fix(id)
	}
	s.retry = failed
	sweepStart := time.Now()
	idleBefore := sweepStart.Add(-idle)
	after := transfer.Key{}
	// The two passes run whatever the other's error: one that keeps failing (a statement timeout on
	// a large backlog, say) must not hold up the other.
	var errs []error
	for ctx.Err() == nil {
		ts, err := s.store.PendingTransfers(ctx, idleBefore, after, reconcileBatch)
		if err != nil {
			errs = append(errs, fmt.Errorf("service: reconcile: pending transfers: %w", err))
			break
		}
		for _, t := range ts {
			fix(t.ID)
			after = transfer.Key{CreatedAt: t.CreatedAt, ID: t.ID}
		}
		if len(ts) < reconcileBatch {
			break
		}
	}
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus != 'Running' AND %s IN ('%s', '%s', '%s', '%s')",
		workflows.WorkflowName, workflows.AttrStatus.GetName(), transfer.StatusScheduled, transfer.StatusPending, transfer.StatusReserved, transfer.StatusDebited)
	s.sweeps++
	if s.sweeps%fullSweepEvery == 0 {
		s.fullDue = true
	}
	full := s.closedSince.IsZero() || s.fullDue
	if !full {
		query += fmt.Sprintf(" AND CloseTime > '%s'", s.closedSince.Add(-closedOverlap).UTC().Format(time.RFC3339Nano))
	}
	err := s.listWorkflows(ctx, query, reconcileBatch, func(runs []transfer.ClosedWorkflow) error {
		ids := make([]uuid.UUID, len(runs))
		for i, run := range runs {
			ids[i] = run.TransferID
		}
		statuses, err := s.store.TransferStatuses(ctx, ids)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if o, ok := statuses[id]; ok && !o.Status.Final() {
				fix(id)
			}
		}
		return nil
	})
	if err != nil {
		s.log.WarnContext(ctx, "reconcile: could not list the closed workflows; the next sweep lists them again", "full", full, "err", err)
		errs = append(errs, fmt.Errorf("service: reconcile: closed workflows: %w", err))
	} else {
		s.closedSince = sweepStart
		if full {
			s.fullDue = false
		}
	}
	if err := s.store.PruneStepFailures(ctx); err != nil {
		s.log.WarnContext(ctx, "reconcile: could not prune the failures of steps that have since gone through", "err", err)
	}
	if first != nil {
		errs = append(errs, first)
	}
	return r, errors.Join(errs...)
}

// RepairAll repairs every transfer that is not final and has no running workflow, asking Temporal
// about each one: the full sweep an operator runs for rows stranded longer than visibility keeps
// closed workflows. It goes on past failures, as Reconcile does.
func (s *Service) RepairAll(ctx context.Context) (ReconcileReport, error) {
	var r ReconcileReport
	var first error
	after := transfer.Key{}
	for ctx.Err() == nil {
		ts, err := s.store.InFlightTransfersAfter(ctx, after, reconcileBatch)
		if err != nil {
			return r, fmt.Errorf("service: repair all: %w", err)
		}
		for _, t := range ts {
			after = transfer.Key{CreatedAt: t.CreatedAt, ID: t.ID}
			r.Looked++
			repaired, err := s.Repair(ctx, t.ID)
			switch {
			case err != nil:
				r.Failed++
				if first == nil {
					first = err
				}
			case repaired:
				r.Repaired++
			}
		}
		if len(ts) < reconcileBatch {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		// Stopped between batches: what is left was not looked at, which is not success.
		return r, errors.Join(err, first)
	}
	return r, first
}

// listPage asks visibility for one page, for up to a minute. It calls the raw workflow service,
// not client.ListWorkflow, which caps a call at 10 s whatever its context says (the limit this
// minute is here to lift); the raw call has none of the client's retries either, so a page that
// Temporal answers busy (the dev server's persistence rate limit, under load) or unavailable is
// asked for again after a backoff, within the minute.
func (s *Service) listPage(ctx context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	pageCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	backoff := 100 * time.Millisecond
	for {
		resp, err := s.temporal.WorkflowService().ListWorkflowExecutions(pageCtx, req)
		if err == nil || !transient(err) {
			return resp, err
		}
		select {
		case <-pageCtx.Done():
			return nil, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// transient reports whether Temporal said it was busy or unavailable, which a later call may not be.
func transient(err error) bool {
	var busy *serviceerror.ResourceExhausted
	var unavailable *serviceerror.Unavailable
	switch {
	case errors.As(err, &busy), errors.As(err, &unavailable):
		return true
	}
	code := status.Code(err)
	return code == codes.ResourceExhausted || code == codes.Unavailable
}

// listWorkflows calls page with each page of pageSize transfer workflow runs that the visibility
// query finds: each run's transfer id, run id and last recorded TransferStatus. Runs whose workflow
// id is not a transfer id are skipped. Each page has a deadline of its own, a minute: a page of
// 1,000 on the dev server's SQLite visibility, thousands of workflows in, ran past the SDK's 10 s
// default.
func (s *Service) listWorkflows(ctx context.Context, query string, pageSize int32, page func([]transfer.ClosedWorkflow) error) error {
	var token []byte
	dc := converter.GetDefaultDataConverter()
	for {
		resp, err := s.listPage(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: s.namespace(), Query: query, PageSize: pageSize, NextPageToken: token})
		if err != nil {
			return err
		}
		runs := make([]transfer.ClosedWorkflow, 0, len(resp.GetExecutions()))
		for _, e := range resp.GetExecutions() {
			id, err := uuid.Parse(e.GetExecution().GetWorkflowId())
			if err != nil {
				continue
			}
			var status string
			if p := e.GetSearchAttributes().GetIndexedFields()[workflows.AttrStatus.GetName()]; p != nil {
				_ = dc.FromPayload(p, &status) // A run without the attribute disagrees with every row.
			}
			runs = append(runs, transfer.ClosedWorkflow{TransferID: id, RunID: e.GetExecution().GetRunId(), Status: transfer.Status(status)})
		}
		if len(runs) > 0 {
			if err := page(runs); err != nil {
				return err
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return nil
		}
	}
}

func (s *Service) namespace() string {
	if s.opts.Namespace == "" {
		return "default"
	}
	return s.opts.Namespace
}

// WorkflowRunning reports whether the workflow with the id is running. A workflow that does not
// exist is not running.
func (s *Service) WorkflowRunning(ctx context.Context, workflowID string) (bool, error) {
	d, err := s.temporal.DescribeWorkflowExecution(ctx, workflowID, "")
	var gone *serviceerror.NotFound
	if errors.As(err, &gone) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("service: describe workflow %s: %w", workflowID, err)
	}
	return d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
}

// closedPageSize is how many closed workflows one page of the audit's listing asks for.
const closedPageSize = 200

// ClosedWorkflows calls page with each page of the transfer workflow runs that completed, with the
// TransferStatus each recorded last, as visibility lists them (ledger.WorkflowResults).
func (s *Service) ClosedWorkflows(ctx context.Context, page func([]transfer.ClosedWorkflow) error) error {
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Completed'", workflows.WorkflowName)
	if err := s.listWorkflows(ctx, query, closedPageSize, page); err != nil {
		return fmt.Errorf("service: list closed workflows: %w", err)
	}
	return nil
}

// WorkflowResult returns a completed transfer workflow run's result (ledger.WorkflowResults).
func (s *Service) WorkflowResult(ctx context.Context, workflowID, runID string) (transfer.Outcome, error) {
	var res workflows.TransferResult
	if err := s.temporal.GetWorkflow(ctx, workflowID, runID).Get(ctx, &res); err != nil {
		return transfer.Outcome{}, fmt.Errorf("service: result of workflow %s run %s: %w", workflowID, runID, err)
	}
	return transfer.Outcome{Status: res.Status, Code: res.FailureCode, Message: res.FailureMessage}, nil
}
