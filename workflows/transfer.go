// Package workflows holds TransferWorkflow, the saga that moves a transfer's money: reserve, debit,
// credit, with the compensations release and refund. Its code is deterministic: time, timers,
// goroutines and randomness come only from the workflow package. The ledger steps behind the
// activities are idempotent, which is what makes Temporal's at-least-once activities exactly-once
// money.
package workflows

import (
	"errors"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/transfer"
)

// The names Temporal knows the saga by.
const (
	// WorkflowName is the workflow type.
	WorkflowName = "TransferWorkflow"
	// DefaultTaskQueue is the task queue unless configured otherwise.
	DefaultTaskQueue = "transfers"
	// QueryStatus returns the live State.
	QueryStatus = "status"
	// UpdateCancel cancels a transfer that has not been debited.
	UpdateCancel = "cancel"
)

// The custom search attributes the workflow keeps current, so operators can list transfers by status,
// account, currency and amount in the Temporal Web UI.
var (
	AttrStatus      = temporal.NewSearchAttributeKeyKeyword("TransferStatus")
	AttrFromAccount = temporal.NewSearchAttributeKeyKeyword("FromAccountId")
	AttrToAccount   = temporal.NewSearchAttributeKeyKeyword("ToAccountId")
	AttrCurrency    = temporal.NewSearchAttributeKeyKeyword("Currency")
	AttrAmount      = temporal.NewSearchAttributeKeyInt64("AmountMinor")
)

// TransferInput is the workflow's input. The ledger row is the source of truth for the money; these
// fields are here for the search attributes and for people reading histories.
type TransferInput struct {
	TransferID    uuid.UUID
	Kind          transfer.Kind
	FromAccountID uuid.UUID
	ToAccountID   uuid.UUID
	Amount        int64
	Currency      transfer.Currency
	// Naive runs the steps as regular activities, the way Temporal's money-transfer sample does,
	// instead of local activities. It exists for `transferd bench`'s comparison.
	Naive bool `json:",omitempty"`
}

// State is where a transfer's saga stands; the workflow returns it when it ends, and the status
// query returns it at any time.
type State struct {
	Status         transfer.Status
	FailureCode    transfer.Code
	FailureMessage string
	// CancelRequested says a cancel was accepted and the saga will stop before its debit.
	CancelRequested bool `json:",omitempty"`
}

// TransferResult is the workflow's result.
type TransferResult = State

// CancelInput is the cancel update's input.
type CancelInput struct {
	Reason string
}

// CancelResult is the cancel update's result: the transfer's state once its saga has ended.
type CancelResult = State

// StartOptions returns the options that start a transfer's workflow: the workflow id is the transfer
// id, a second start with the same id never starts a second run (reject-duplicate reuse policy, and
// use-existing conflict policy while it runs), and the search attributes are set from the start.
func StartOptions(in TransferInput, taskQueue string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       in.TransferID.String(),
		TaskQueue:                taskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			AttrStatus.ValueSet(string(transfer.StatusPending)),
			AttrFromAccount.ValueSet(in.FromAccountID.String()),
			AttrToAccount.ValueSet(in.ToAccountID.String()),
			AttrCurrency.ValueSet(string(in.Currency)),
			AttrAmount.ValueSet(in.Amount),
		),
	}
}

// The saga's metrics, emitted through the SDK's replay-safe metrics handler.
const (
	// MetricTransfersFinished counts transfers by final status and failure code.
	MetricTransfersFinished = "transferd_transfers_finished_total"
	// MetricStepDuration is each saga step's time, from scheduling to result, by step.
	MetricStepDuration = "transferd_saga_step_duration_seconds"
	// MetricCompensations counts compensations run, by kind (release, refund).
	MetricCompensations = "transferd_compensations_total"
)

// stepOptions run the ledger steps: short, retried with backoff for as long as it takes, since
// business failures are non-retryable and only transient errors are ever retried.
var stepOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 10 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:    100 * time.Millisecond,
		BackoffCoefficient: 2,
		MaximumInterval:    10 * time.Second,
		MaximumAttempts:    0, // unlimited
	},
}

// localStepOptions run the ledger steps as local activities: in the worker, inside the workflow
// task, with one marker in the history instead of a scheduled task and two events with their round
// trips to the server. A transfer whose steps all succeed then costs one workflow task, as an empty
// workflow does. The trade-offs:
//   - A local activity whose worker dies is run again when the workflow task is retried, even if it
//     had finished, so it is at-least-once like any activity but more often re-run; that is safe
//     only because every ledger step is idempotent per transfer (the ledger tests run each one twice).
//   - While a local activity runs, the worker holds the workflow task, so a cancel update or a query
//     reaches the workflow only when the task ends or the SDK heartbeats it, at 80% of the workflow
//     task timeout. A reserve takes milliseconds, so a cancel loses nothing it could have had;
//     a reserve stuck retrying a lost database sees the cancel at the next heartbeat.
//
// A local step is retried, with stepOptions' backoff, for localStepBudget; a step still failing
// then goes on as a regular activity, retried by the server for as long as it takes (see step). A
// local activity cannot be retried for ever: left unset, its schedule-to-close is its 10s
// start-to-close, and a step failing for 10s ended the transfer or gave up a compensation; and
// while the SDK retries it in the worker, it heartbeats the workflow task, three history events
// every 8 s, so an outage of a day and a half would reach the server's limit on a history's length.
var localStepOptions = workflow.LocalActivityOptions{
	ScheduleToCloseTimeout: localStepBudget,
	StartToCloseTimeout:    10 * time.Second,
	RetryPolicy:            stepOptions.RetryPolicy,
}

// localStepBudget is how long a step is retried as a local activity before it falls back to a
// regular one: long enough for a database restart or failover, short enough to add only a few
// hundred heartbeat events to the history.
const localStepBudget = 5 * time.Minute

// regularAfterLocalChange versions the fallback of a step whose local retries ran out to a regular
// activity. It is asked only when that happens, so it costs nothing to the transfers whose steps
// succeed. Before it, such a step failed the transfer; histories recorded then replay as they ran.
const regularAfterLocalChange = "regular-after-local-timeout"

// localStepsChange versions the move of the steps to local activities. Version 1 ran the steps after
// the reserve locally and the reserve as a regular activity; version 2 runs every step locally.
// Histories recorded at version 0 or 1 replay as they ran.
const localStepsChange = "local-activity-steps"

// The versions of localStepsChange.
const (
	localAfterReserve = 1
	localAll          = 2
)

// a is the nil receiver through which the workflow names the activities.
var a *activities.Activities

// TransferWorkflow runs one transfer's saga. Until the debit starts it can be cancelled, by the
// cancel update or by cancelling the workflow; the hold is then released. Once the debit starts
// the transfer goes on to completion or to a refund, whatever is cancelled, because money has
// moved. Compensations run on a disconnected context, so cancellation never skips them.
func TransferWorkflow(ctx workflow.Context, in TransferInput) (TransferResult, error) {
	s := &saga{in: in, state: State{Status: transfer.StatusPending}}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (State, error) { return s.state, nil }); err != nil {
		return State{}, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateCancel, s.cancel, workflow.UpdateHandlerOptions{
		Validator: s.validateCancel,
	}); err != nil {
		return State{}, err
	}
	result, err := s.run(workflow.WithActivityOptions(ctx, stepOptions))
	if err != nil {
		return State{}, err
	}
	// Cancel updates wait for the outcome; let them answer before the workflow closes.
	done, _ := workflow.NewDisconnectedContext(ctx)
	if err := workflow.Await(done, func() bool { return workflow.AllHandlersFinished(done) }); err != nil {
		return State{}, err
	}
	return result, nil
}

type saga struct {
	in    TransferInput
	state State
	// cancelRequested is set by an accepted cancel update.
	cancelRequested bool
	cancelReason    string
	// debitStarted is set just before the debit is scheduled; after it, cancels are refused.
	debitStarted bool
	finished     bool
	// local runs the steps as local activities; localReserve the reserve too.
	local        bool
	localReserve bool
}

func (s *saga) run(ctx workflow.Context) (State, error) {
	id := s.in.TransferID
	if !s.in.Naive {
		v := workflow.GetVersion(ctx, localStepsChange, workflow.DefaultVersion, localAll)
		s.local, s.localReserve = v >= localAfterReserve, v >= localAll
	}
	if s.cancelling(ctx) {
		return s.release(ctx, s.cancelOutcome())
	}
	err := s.step(ctx, "reserve", a.Reserve, activities.ReserveInput{TransferID: id})
	if err != nil {
		if s.cancelling(ctx) {
			return s.release(ctx, s.cancelOutcome())
		}
		code, msg := activities.FailureOf(err)
		return s.release(ctx, transfer.Outcome{Status: transfer.StatusFailed, Code: code, Message: msg})
	}
	if err := s.advance(ctx, transfer.StatusReserved); err != nil {
		return State{}, err
	}
	if s.cancelling(ctx) {
		return s.release(ctx, s.cancelOutcome())
	}

	// From the debit on, money moves: the saga runs to completion or refund on a context that
	// cancellation cannot reach.
	s.debitStarted = true
	moving, _ := workflow.NewDisconnectedContext(ctx)
	if err := s.step(moving, "debit", a.Debit, activities.DebitInput{TransferID: id}); err != nil {
		code, msg := activities.FailureOf(err)
		return s.release(moving, transfer.Outcome{Status: transfer.StatusFailed, Code: code, Message: msg})
	}
	if err := s.advance(moving, transfer.StatusDebited); err != nil {
		return State{}, err
	}
	if err := s.step(moving, "credit", a.Credit, activities.CreditInput{TransferID: id}); err != nil {
		code, msg := activities.FailureOf(err)
		return s.refund(moving, code, msg)
	}
	return s.end(moving, State{Status: transfer.StatusCompleted})
}

// cancelling reports whether the transfer should be cancelled before its debit.
func (s *saga) cancelling(ctx workflow.Context) bool {
	return s.cancelRequested || errors.Is(ctx.Err(), workflow.ErrCanceled)
}

func (s *saga) cancelOutcome() transfer.Outcome {
	msg := s.cancelReason
	if msg == "" {
		msg = "cancelled before the debit"
	}
	return transfer.Outcome{Status: transfer.StatusCancelled, Message: msg}
}

// release runs the release compensation to completion and ends the transfer with the outcome.
func (s *saga) release(ctx workflow.Context, o transfer.Outcome) (State, error) {
	comp, _ := workflow.NewDisconnectedContext(ctx)
	in := activities.ReleaseInput{TransferID: s.in.TransferID, Outcome: o}
	compensated(comp, "release")
	if err := s.step(comp, "release", a.Release, in); err != nil {
		return State{}, err
	}
	return s.end(comp, State{Status: o.Status, FailureCode: o.Code, FailureMessage: o.Message})
}

// refund runs the refund compensation to completion and ends the transfer as failed.
func (s *saga) refund(ctx workflow.Context, code transfer.Code, msg string) (State, error) {
	comp, _ := workflow.NewDisconnectedContext(ctx)
	in := activities.RefundInput{TransferID: s.in.TransferID, FailureCode: code, Message: msg}
	compensated(comp, "refund")
	if err := s.step(comp, "refund", a.Refund, in); err != nil {
		return State{}, err
	}
	return s.end(comp, State{Status: transfer.StatusFailed, FailureCode: code, FailureMessage: msg})
}

func (s *saga) end(ctx workflow.Context, final State) (State, error) {
	if err := s.advance(ctx, final.Status); err != nil {
		return State{}, err
	}
	code := string(final.FailureCode)
	if code == "" {
		code = "none"
	}
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"status": string(final.Status), "failure_code": code}).
		Counter(MetricTransfersFinished).Inc(1)
	// The SDK's workflow logger adds the workflow id, which is the transfer id, and skips replays.
	workflow.GetLogger(ctx).Info("transfer finished", "transfer_id", s.in.TransferID.String(),
		"status", string(final.Status), "failure_code", code)
	s.state = final
	s.finished = true
	return final, nil
}

// step runs one saga step's activity, local or regular, and records its duration.
func (s *saga) step(ctx workflow.Context, name string, activity, input any) error {
	start := workflow.Now(ctx)
	var err error
	if s.local && (name != "reserve" || s.localReserve) {
		lctx := workflow.WithLocalActivityOptions(ctx, localStepOptions)
		err = workflow.ExecuteLocalActivity(lctx, activity, input).Get(lctx, nil)
		if localRetriesRanOut(err) && workflow.GetVersion(ctx, regularAfterLocalChange, workflow.DefaultVersion, 1) == 1 {
			workflow.GetLogger(ctx).Warn("step still failing after its local retries; retrying it as a regular activity",
				"transfer_id", s.in.TransferID.String(), "step", name, "error", err.Error())
			err = workflow.ExecuteActivity(ctx, activity, input).Get(ctx, nil)
		}
	} else {
		err = workflow.ExecuteActivity(ctx, activity, input).Get(ctx, nil)
	}
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"step": name}).
		Timer(MetricStepDuration).Record(workflow.Now(ctx).Sub(start))
	return err
}

// localRetriesRanOut reports whether a local step's error means its budget ran out: its retries
// are unlimited, so any error but a business failure (non-retryable) or a cancellation does. The
// last attempt's own error comes back, or a schedule-to-close timeout if that attempt was cut short.
func localRetriesRanOut(err error) bool {
	if err == nil || temporal.IsCanceledError(err) {
		return false
	}
	var business *temporal.ApplicationError
	return !errors.As(err, &business) || !business.NonRetryable()
}

// compensated counts a compensation about to run.
func compensated(ctx workflow.Context, kind string) {
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"kind": kind}).Counter(MetricCompensations).Inc(1)
}

// advance records a new status for the query and the search attribute.
func (s *saga) advance(ctx workflow.Context, status transfer.Status) error {
	if s.state.Status == status {
		return nil
	}
	s.state.Status = status
	return workflow.UpsertTypedSearchAttributes(ctx, AttrStatus.ValueSet(string(status)))
}

// validateCancel refuses a cancel once the debit has started: money has moved.
func (s *saga) validateCancel(ctx workflow.Context, in CancelInput) error {
	if s.debitStarted && !s.finished {
		return temporal.NewNonRetryableApplicationError("the transfer has been debited and can no longer be cancelled",
			string(transfer.CodeNotCancellable), nil)
	}
	if s.finished && s.state.Status != transfer.StatusCancelled {
		return temporal.NewNonRetryableApplicationError("the transfer has already ended as "+string(s.state.Status),
			string(transfer.CodeNotCancellable), nil)
	}
	return nil
}

// cancel asks the saga to stop before its debit and waits for the outcome. The saga checks the
// request before the reserve and before the debit.
func (s *saga) cancel(ctx workflow.Context, in CancelInput) (CancelResult, error) {
	if !s.finished {
		s.cancelRequested = true
		s.cancelReason = in.Reason
		s.state.CancelRequested = true
	}
	// The outcome is waited for on a disconnected context: a workflow cancelled after this update was
	// accepted still ends (cancelled), and the update must answer with that, not with the cancellation.
	done, _ := workflow.NewDisconnectedContext(ctx)
	if err := workflow.Await(done, func() bool { return s.finished }); err != nil {
		return State{}, err
	}
	return s.state, nil
}
