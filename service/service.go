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
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/workflows"
)

// Store is what the service needs of the ledger.
type Store interface {
	// CreateTransfer records a pending transfer, or returns the existing one with created = false
	// when the id exists with the same request; CodeIdempotencyConflict when it exists with another,
	// and CodeAccountNotFound, CodeSameAccount or CodeCurrencyMismatch for requests that cannot run.
	CreateTransfer(ctx context.Context, r transfer.Request) (t transfer.Transfer, created bool, err error)
	// Transfer returns a transfer; CodeNotFound when there is none.
	Transfer(ctx context.Context, id uuid.UUID) (transfer.Transfer, error)
	// SystemAccount returns the currency's system account, creating it on first use;
	// CodeUnsupportedCurrency for a currency the service does not accept.
	SystemAccount(ctx context.Context, cur transfer.Currency) (transfer.Account, error)
	// InFlightTransfers returns up to limit transfers not final and last updated before the time.
	InFlightTransfers(ctx context.Context, updatedBefore time.Time, limit int) ([]transfer.Transfer, error)
}

// Service starts, waits for and cancels transfers.
type Service struct {
	store     Store
	temporal  client.Client
	taskQueue string
	log       *slog.Logger
	opts      Options
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

// Submit records the transfer and starts its workflow. The transfer id is the idempotency key:
// a request with an id that exists returns that transfer in its current state with created = false,
// and makes sure its workflow runs if it is not final (a crash may have come between the two), but
// never starts a second one; the same id with another request is CodeIdempotencyConflict. For a
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
// closed: its transfer's row holds the outcome.
func (s *Service) start(ctx context.Context, t transfer.Transfer) error {
	in := workflows.TransferInput{TransferID: t.ID, Kind: t.Kind, FromAccountID: t.FromAccountID,
		ToAccountID: t.ToAccountID, Amount: int64(t.Amount), Currency: t.Currency, Naive: s.opts.Naive}
	opts := workflows.StartOptions(in, s.taskQueue)
	opts.EnableEagerStart = s.opts.EagerStart
	opts.WorkflowTaskTimeout = s.opts.WorkflowTaskTimeout
	_, err := s.temporal.ExecuteWorkflow(ctx, opts, workflows.WorkflowName, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if err != nil && !errors.As(err, &started) {
		return fmt.Errorf("service: start workflow %s: %w", t.ID, err)
	}
	return nil
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
	switch t.Status {
	case transfer.StatusCancelled:
		return t, nil
	case transfer.StatusPending, transfer.StatusReserved:
	default:
		return transfer.Transfer{}, notCancellable(t)
	}
	handle, err := s.temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id.String(),
		UpdateName:   workflows.UpdateCancel,
		Args:         []any{workflows.CancelInput{Reason: reason}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		var res workflows.CancelResult
		err = handle.Get(ctx, &res)
	}
	if err != nil {
		var app *temporal.ApplicationError
		var gone *serviceerror.NotFound
		switch {
		case errors.As(err, &app) && app.Type() == string(transfer.CodeNotCancellable):
		case errors.As(err, &gone):
			// The workflow ended between the read and the update.
		default:
			return transfer.Transfer{}, fmt.Errorf("service: cancel %s: %w", id, err)
		}
	}
	t, err = s.store.Transfer(ctx, id)
	if err != nil {
		return transfer.Transfer{}, err
	}
	if t.Status != transfer.StatusCancelled {
		return transfer.Transfer{}, notCancellable(t)
	}
	return t, nil
}

func notCancellable(t transfer.Transfer) error {
	return transfer.Errorf(transfer.CodeNotCancellable, "transfer %s is %s; only a pending or reserved transfer can be cancelled", t.ID, t.Status)
}

// Reconcile starts the workflow of every transfer that is not final and has not changed for at least
// idle, in batches: a transfer whose API process crashed between recording it and starting its
// workflow gets its workflow here. Transfers whose workflow runs are left alone. It returns how many
// transfers it looked at.
func (s *Service) Reconcile(ctx context.Context, idle time.Duration) (int, error) {
	ts, err := s.store.InFlightTransfers(ctx, time.Now().Add(-idle), 500)
	if err != nil {
		return 0, err
	}
	for _, t := range ts {
		if err := s.start(ctx, t); err != nil {
			return 0, err
		}
	}
	return len(ts), nil
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
