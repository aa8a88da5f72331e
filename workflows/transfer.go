// Package workflows holds TransferWorkflow, the saga that moves a transfer's money: reserve, debit,
// credit, with the compensations release and refund. Its code is deterministic: time, timers,
// goroutines and randomness come only from the workflow package. The ledger steps behind the
// activities are idempotent, which is what makes Temporal's at-least-once activities exactly-once
// money.
package workflows

import (
	"errors"
	"fmt"
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
	// UpdateCapture captures a manual transfer's hold, all of it or part.
	UpdateCapture = "capture"
)

// The custom search attributes the workflow keeps current, so operators can list transfers by status,
// account, currency and amount in the Temporal Web UI.
var (
	AttrStatus      = temporal.NewSearchAttributeKeyKeyword("TransferStatus")
	AttrFromAccount = temporal.NewSearchAttributeKeyKeyword("FromAccountId")
	AttrToAccount   = temporal.NewSearchAttributeKeyKeyword("ToAccountId")
	AttrCurrency    = temporal.NewSearchAttributeKeyKeyword("Currency")
	AttrAmount      = temporal.NewSearchAttributeKeyInt64("AmountMinor")
	// AttrScheduledFor is a scheduled transfer's time; AttrHoldExpiresAt a held transfer's expiry.
	AttrScheduledFor  = temporal.NewSearchAttributeKeyTime("ScheduledFor")
	AttrHoldExpiresAt = temporal.NewSearchAttributeKeyTime("HoldExpiresAt")
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
	// CaptureMethod is CaptureManual for a hold, which waits in reserved for its capture, a cancel
	// or its expiry; empty (automatic) otherwise.
	CaptureMethod transfer.CaptureMethod `json:",omitempty"`
	// ScheduledFor, when set, is when the saga runs: the transfer is scheduled until then.
	ScheduledFor time.Time `json:",omitzero"`
}

// manual reports whether the transfer is a hold that waits for its capture.
func (in TransferInput) manual() bool { return in.CaptureMethod == transfer.CaptureManual }

// State is where a transfer's saga stands; the workflow returns it when it ends, and the status
// query returns it at any time.
type State struct {
	Status         transfer.Status
	FailureCode    transfer.Code
	FailureMessage string
	// CancelRequested says a cancel was accepted and the saga will stop before its debit.
	CancelRequested bool `json:",omitempty"`
	// ScheduledFor is a scheduled transfer's time; HoldExpiresAt a manual transfer's hold expiry
	// once the ledger set it; CapturedAmount what its capture debited, once captured.
	ScheduledFor   time.Time `json:",omitzero"`
	HoldExpiresAt  time.Time `json:",omitzero"`
	CapturedAmount int64     `json:",omitzero"`
}

// TransferResult is the workflow's result.
type TransferResult = State

// CancelInput is the cancel update's input.
type CancelInput struct {
	Reason string
}

// CancelResult is the cancel update's result: the transfer's state once its saga has ended.
type CancelResult = State

// CaptureInput is the capture update's input: the amount to capture, zero for all of the hold.
type CaptureInput struct {
	Amount int64 `json:",omitzero"`
}

// CaptureResult is the capture update's result: the transfer's state once the ledger captured it
// (CapturedAmount set; its credit may still be under way).
type CaptureResult = State

// StartOptions returns the options that start a transfer's workflow: the workflow id is the transfer
// id, a second start with the same id never starts a second run (reject-duplicate reuse policy, and
// use-existing conflict policy while it runs), and the search attributes are set from the start.
func StartOptions(in TransferInput, taskQueue string) client.StartWorkflowOptions {
	status := transfer.StatusPending
	attrs := []temporal.SearchAttributeUpdate{
		AttrFromAccount.ValueSet(in.FromAccountID.String()),
		AttrToAccount.ValueSet(in.ToAccountID.String()),
		AttrCurrency.ValueSet(string(in.Currency)),
		AttrAmount.ValueSet(in.Amount),
	}
	if !in.ScheduledFor.IsZero() {
		status = transfer.StatusScheduled
		attrs = append(attrs, AttrScheduledFor.ValueSet(in.ScheduledFor))
	}
	return client.StartWorkflowOptions{
		ID:                       in.TransferID.String(),
		TaskQueue:                taskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    temporal.NewSearchAttributes(append([]temporal.SearchAttributeUpdate{AttrStatus.ValueSet(string(status))}, attrs...)...),
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

// localStepsChange versions the saga's shape. Version 1 ran the steps after the reserve locally
// and the reserve as a regular activity; version 2 runs every step locally; version 3 follows the
// ledger's answers (ledgerDecides). The change id is older than its later versions; it stays, so
// that one marker versions the whole saga. Histories recorded at versions 0 to 2 replay as they ran.
const localStepsChange = "local-activity-steps"

// The versions of localStepsChange.
const (
	localAfterReserve = 1
	localAll          = 2
	// ledgerDecides: every step answers with the transfer's row as the ledger has it after the
	// step, and the saga goes on from that row, never from its own memory; every step runs on a
	// context that cancellation cannot reach. Before it, a step that succeeded was taken to have
	// done what it was asked, which a replay after a lost workflow task could get wrong.
	ledgerDecides = 3
)

// holdsChange versions holds and scheduled transfers (capture_method manual, scheduled_for). It is
// asked only by transfers that have either, so that histories of every other transfer are as they
// were; version 1 is the first form of those paths.
const holdsChange = "holds-and-schedules"

// expiryRecheck is how long the saga first waits before it asks the ledger again about a hold's
// expiry or a schedule's time that the ledger's clock had not yet reached when the workflow's timer
// fired; each further wait doubles, up to maxExpiryRecheck, so a clock that lags by minutes costs
// a few events, not one a second.
const (
	expiryRecheck    = time.Second
	maxExpiryRecheck = time.Minute
)

// recheckAfter is the wait before the n-th (from 0) recheck of a time the ledger's clock had not
// reached.
func recheckAfter(n int) time.Duration {
	return min(expiryRecheck<<min(n, 10), maxExpiryRecheck)
}

// holdRecheck is the longest a held transfer's saga waits without asking the ledger where the
// transfer stands (step_expire, which changes nothing before the expiry). A capture can have
// reached the ledger in a workflow task that was lost, its update not delivered again: the saga
// then learns of it within this time, not at the hold's expiry, days later, with the payer
// debited and the payee waiting.
const holdRecheck = time.Hour

// a is the nil receiver through which the workflow names the activities.
var a *activities.Activities

// TransferWorkflow runs one transfer's saga. The ledger decides every step: each answers with the
// transfer's row as it stands afterwards, and the saga goes on from that row. Until the ledger says
// the transfer was debited it can be cancelled, by the cancel update or by cancelling the
// workflow: the saga then asks the ledger to release the transfer unless it was debited, and the
// answer says whether the cancel won or the saga goes on to the credit. The workflow's result is
// the row's final status, failure code and message. Steps and compensations run on a
// disconnected context, so cancellation never interrupts them.
func TransferWorkflow(ctx workflow.Context, in TransferInput) (TransferResult, error) {
	s := &saga{in: in, state: State{Status: transfer.StatusPending}}
	if !in.ScheduledFor.IsZero() {
		s.state = State{Status: transfer.StatusScheduled, ScheduledFor: in.ScheduledFor}
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (State, error) { return s.state, nil }); err != nil {
		return State{}, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateCancel, s.cancel, workflow.UpdateHandlerOptions{
		Validator: s.validateCancel,
	}); err != nil {
		return State{}, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateCapture, s.capture, workflow.UpdateHandlerOptions{
		Validator: s.validateCapture,
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
	finished        bool
	// version is the saga's version (localStepsChange); local runs the steps as local activities,
	// localReserve the reserve too.
	version      workflow.Version
	local        bool
	localReserve bool
	// captures are the capture updates accepted and not yet answered, oldest first.
	captures []*captureRequest
}

// captureRequest is one accepted capture update: the amount it asks for (never zero: all of the
// hold is the transfer's amount) and, once the ledger has answered it, whether it was refused.
type captureRequest struct {
	amount   int64
	answered bool
	refusal  *transfer.Error
}

func (s *saga) run(ctx workflow.Context) (State, error) {
	s.version = ledgerDecides
	if !s.in.Naive {
		s.version = workflow.GetVersion(ctx, localStepsChange, workflow.DefaultVersion, ledgerDecides)
		s.local, s.localReserve = s.version >= localAfterReserve, s.version >= localAll
	}
	// The steps run where cancellation cannot reach them: a step is one short ledger statement, and
	// whether a cancel wins is decided by the ledger (release unless debited), not by interrupting
	// a step whose statement may have committed anyway.
	steps, _ := workflow.NewDisconnectedContext(ctx)
	// row is the transfer as the ledger last answered. The ledger may be ahead of it (a lost
	// workflow task replays steps that had committed), never behind, so every step below is asked
	// of the ledger, which answers with the row as it really is.
	row := transfer.Outcome{Status: transfer.StatusPending}
	if s.in.manual() || !s.in.ScheduledFor.IsZero() {
		workflow.GetVersion(ctx, holdsChange, workflow.DefaultVersion, 1)
		if !s.in.ScheduledFor.IsZero() {
			row.Status = transfer.StatusScheduled
		}
	}
	for !row.Status.Final() {
		next, err := s.next(ctx, steps, row)
		if err != nil {
			return State{}, err
		}
		row = next
		s.settleCaptures(row)
		if err := s.advance(steps, row); err != nil {
			return State{}, err
		}
	}
	return s.end(steps, State{Status: row.Status, FailureCode: row.Code, FailureMessage: row.Message})
}

// next asks the ledger for the step that follows row and returns its answer. A refused step is
// followed by its compensation in the same call: a refused reserve or debit by the release, a
// refused credit by the refund.
func (s *saga) next(ctx, steps workflow.Context, row transfer.Outcome) (transfer.Outcome, error) {
	id := s.in.TransferID
	if row.Status.Cancellable() && s.cancelling(ctx) {
		return s.compensate(steps, row, transfer.StepRelease, s.cancelOutcome())
	}
	switch {
	case row.Status == transfer.StatusScheduled:
		return s.schedule(ctx, steps, row)
	case row.Status == transfer.StatusReserved && s.in.manual() && row.CapturedAmount == 0:
		return s.hold(ctx, steps, row)
	}
	var (
		answer  transfer.Outcome
		refusal *transfer.Error
		err     error
	)
	switch row.Status {
	case transfer.StatusPending:
		rctx := steps
		if s.version < ledgerDecides {
			// Histories recorded before ledgerDecides ran the reserve on the workflow's context.
			rctx = ctx
		}
		answer, refusal, err = s.step(rctx, row, transfer.StepReserve, a.Reserve, activities.ReserveInput{TransferID: id})
	case transfer.StatusReserved:
		answer, refusal, err = s.step(steps, row, transfer.StepDebit, a.Debit, activities.DebitInput{TransferID: id})
	case transfer.StatusDebited:
		answer, refusal, err = s.step(steps, row, transfer.StepCredit, a.Credit, activities.CreditInput{TransferID: id})
	default:
		return transfer.Outcome{}, temporal.NewNonRetryableApplicationError("the ledger answered an unknown status "+string(row.Status),
			string(transfer.CodeInternal), nil)
	}
	if err != nil || refusal == nil || answer.Status != row.Status {
		return answer, err
	}
	failed := transfer.Outcome{Status: transfer.StatusFailed, Code: refusal.Code, Message: refusal.Message}
	switch {
	case row.Status == transfer.StatusDebited:
		return s.compensate(steps, answer, transfer.StepRefund, failed)
	case s.cancelling(ctx) && (row.Status == transfer.StatusPending || s.version >= ledgerDecides):
		// A cancel that arrived while the refused step ran is what the client asked for, and no
		// money moved: the release ends the transfer cancelled. (Before ledgerDecides only a
		// refused reserve was treated so.)
		return s.compensate(steps, answer, transfer.StepRelease, s.cancelOutcome())
	}
	return s.compensate(steps, answer, transfer.StepRelease, failed)
}

// compensate runs a compensation to completion: the release (unless the ledger says the transfer
// was debited) or the refund. Its answer, whatever it is, is where the saga goes on from; a
// compensation never fails the workflow for a business reason.
func (s *saga) compensate(ctx workflow.Context, row transfer.Outcome, step transfer.Step, o transfer.Outcome) (transfer.Outcome, error) {
	var answer transfer.Outcome
	var refusal *transfer.Error
	var err error
	if step == transfer.StepRefund {
		answer, refusal, err = s.step(ctx, row, step, a.Refund, activities.RefundInput{TransferID: s.in.TransferID, FailureCode: o.Code, Message: o.Message})
	} else {
		answer, refusal, err = s.step(ctx, row, step, a.Release, activities.ReleaseInput{TransferID: s.in.TransferID, Outcome: o})
	}
	if err == nil && refusal != nil && s.version < ledgerDecides {
		// Before ledgerDecides a refused compensation (a release of a debited transfer) failed the
		// workflow; histories that did so replay as they ran.
		return transfer.Outcome{}, temporal.NewNonRetryableApplicationError(refusal.Message, string(refusal.Code), nil)
	}
	if err == nil && s.version < ledgerDecides && answer == row {
		// Histories recorded before ledgerDecides hold no answer: the compensation did as asked.
		answer = o
	}
	if err == nil && answer.Status == o.Status {
		// Counted when it took effect: a release the ledger answered "debited" released nothing.
		compensated(ctx, string(step))
	}
	return answer, err
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

func (s *saga) end(ctx workflow.Context, final State) (State, error) {
	if err := s.advance(ctx, transfer.Outcome{Status: final.Status, HoldExpiresAt: s.state.HoldExpiresAt, CapturedAmount: s.state.CapturedAmount}); err != nil {
		return State{}, err
	}
	final.ScheduledFor, final.HoldExpiresAt, final.CapturedAmount = s.state.ScheduledFor, s.state.HoldExpiresAt, s.state.CapturedAmount
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

// stepAnswer is what every step's result holds: the ledger's row after the step.
type stepAnswer struct {
	Row transfer.Outcome
}

// step asks the ledger for one step and returns its answer: the row after it and, when the ledger
// refused the step for a business reason, the refusal (the row is then as it was). A step cut short
// by the workflow's cancellation (only the reserve of histories before ledgerDecides) answers the
// row it was given, so the saga decides again, now cancelling.
func (s *saga) step(ctx workflow.Context, row transfer.Outcome, step transfer.Step, activity, input any) (transfer.Outcome, *transfer.Error, error) {
	var res stepAnswer
	err := s.execute(ctx, string(step), activity, input, &res)
	var app *temporal.ApplicationError
	switch {
	case err == nil && res.Row.Status != "":
		return res.Row, nil, nil
	case err == nil && (s.version < ledgerDecides || s.in.Naive):
		// Histories recorded before ledgerDecides hold no answer (nor do the bench's naive runs
		// of that time, which record no version): the step did as asked.
		return natural(row, step), nil, nil
	case err == nil:
		// Every step of this version answers with its row; this one did not, so a worker of an
		// older release ran it (a step that fell back to a regular activity during an upgrade).
		// The workflow fails, closed with a status that is not final, and the reconciler gives
		// the transfer a new run that asks the ledger again; nothing is decided without its row.
		return transfer.Outcome{}, nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the %s step of transfer %s answered without the ledger's row", step, s.in.TransferID), string(transfer.CodeInternal), nil)
	case temporal.IsCanceledError(err):
		return row, nil, nil
	case errors.As(err, &app) && app.NonRetryable() && app.Type() != "":
		refusal := transfer.Errorf(transfer.Code(app.Type()), "%s", app.Message())
		if answered, ok := activities.RowOf(err); ok {
			return answered, refusal, nil
		}
		if s.version < ledgerDecides && refusal.Code != transfer.CodeNotFound {
			return row, refusal, nil
		}
		return transfer.Outcome{}, nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the ledger has no row for transfer %s: %s", s.in.TransferID, refusal.Message), string(refusal.Code), nil)
	case s.version < ledgerDecides && (step == transfer.StepReserve || step == transfer.StepDebit || step == transfer.StepCredit):
		// Before ledgerDecides, a step that failed otherwise than by a business refusal (its local
		// retries ran out, before the fallback to a regular activity existed) was compensated as
		// a failure with its error; histories that did so replay as they ran.
		code, msg := activities.FailureOf(err)
		return row, transfer.Errorf(code, "%s", msg), nil
	default:
		return transfer.Outcome{}, nil, err
	}
}

// natural is the row after a step that did as it was asked, for histories recorded before the
// ledger answered.
func natural(row transfer.Outcome, step transfer.Step) transfer.Outcome {
	switch step {
	case transfer.StepReserve:
		return transfer.Outcome{Status: transfer.StatusReserved}
	case transfer.StepDebit:
		return transfer.Outcome{Status: transfer.StatusDebited}
	case transfer.StepCredit:
		return transfer.Outcome{Status: transfer.StatusCompleted}
	}
	return row
}

// execute runs one saga step's activity, local or regular, decodes its result into result and
// records its duration.
func (s *saga) execute(ctx workflow.Context, name string, activity, input, result any) error {
	start := workflow.Now(ctx)
	var err error
	if s.local && (name != "reserve" || s.localReserve) {
		lctx := workflow.WithLocalActivityOptions(ctx, localStepOptions)
		err = workflow.ExecuteLocalActivity(lctx, activity, input).Get(lctx, result)
		if localRetriesRanOut(err) && workflow.GetVersion(ctx, regularAfterLocalChange, workflow.DefaultVersion, 1) == 1 {
			workflow.GetLogger(ctx).Warn("step still failing after its local retries; retrying it as a regular activity",
				"transfer_id", s.in.TransferID.String(), "step", name, "error", err.Error())
			err = workflow.ExecuteActivity(ctx, activity, input).Get(ctx, result)
		}
	} else {
		err = workflow.ExecuteActivity(ctx, activity, input).Get(ctx, result)
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

// advance records where the ledger says the transfer stands for the query and the search
// attributes: its status, and a hold's expiry once the ledger has set it (in the same upsert).
func (s *saga) advance(ctx workflow.Context, row transfer.Outcome) error {
	var attrs []temporal.SearchAttributeUpdate
	if !row.HoldExpiresAt.IsZero() && !row.HoldExpiresAt.Equal(s.state.HoldExpiresAt) {
		s.state.HoldExpiresAt = row.HoldExpiresAt
		attrs = append(attrs, AttrHoldExpiresAt.ValueSet(row.HoldExpiresAt))
	}
	if row.CapturedAmount != 0 {
		s.state.CapturedAmount = row.CapturedAmount
	}
	if s.state.Status != row.Status {
		s.state.Status = row.Status
		attrs = append([]temporal.SearchAttributeUpdate{AttrStatus.ValueSet(string(row.Status))}, attrs...)
	}
	if len(attrs) == 0 {
		return nil
	}
	return workflow.UpsertTypedSearchAttributes(ctx, attrs...)
}

// validateCancel refuses a cancel once the ledger has answered that the transfer was debited, or
// the transfer ended otherwise than cancelled: facts the ledger has said, so refusing on them is
// safe. Accepting is not a promise: an accepted cancel wins only if the ledger's release finds the
// transfer not debited.
func (s *saga) validateCancel(ctx workflow.Context, in CancelInput) error {
	if s.finished && s.state.FailureCode == transfer.CodeHoldExpired {
		return temporal.NewNonRetryableApplicationError("the transfer's hold expired; it was not cancelled",
			string(transfer.CodeNotCancellable), nil)
	}
	if s.state.Status == transfer.StatusDebited && !s.finished {
		return temporal.NewNonRetryableApplicationError("the transfer has been debited and can no longer be cancelled",
			string(transfer.CodeNotCancellable), nil)
	}
	if s.finished && s.state.Status != transfer.StatusCancelled {
		return temporal.NewNonRetryableApplicationError("the transfer has already ended as "+string(s.state.Status),
			string(transfer.CodeNotCancellable), nil)
	}
	return nil
}

// cancel asks the saga to stop before its debit and waits for the outcome: the cancelled transfer,
// or CodeNotCancellable when the ledger found it debited. The saga checks the
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
	if s.state.Status != transfer.StatusCancelled || s.state.FailureCode == transfer.CodeHoldExpired {
		// The ledger found the transfer debited or captured, or its hold expired first, or it
		// ended otherwise: the cancel lost.
		return State{}, temporal.NewNonRetryableApplicationError("the transfer ended as "+string(s.state.Status)+"; it was not cancelled",
			string(transfer.CodeNotCancellable), nil)
	}
	return s.state, nil
}

// schedule waits, with the transfer scheduled and nothing held, for its time or a cancel, and then
// asks the ledger to make it pending (step_due), which it answers with the row: pending, or
// cancelled if a cancel won. A capture meanwhile is put to the ledger, which refuses it: nothing
// is held yet.
func (s *saga) schedule(ctx, steps workflow.Context, row transfer.Outcome) (transfer.Outcome, error) {
	for early := 0; ; {
		if s.cancelling(ctx) {
			return s.compensate(steps, row, transfer.StepRelease, s.cancelOutcome())
		}
		if req := s.nextCapture(); req != nil {
			answer, err := s.putCapture(steps, row, req)
			if err != nil || answer.Status != row.Status {
				return answer, err
			}
			continue
		}
		if wait := s.in.ScheduledFor.Sub(workflow.Now(ctx)); wait > 0 {
			woken, err := s.await(ctx, wait)
			if err != nil {
				return transfer.Outcome{}, err
			}
			if woken {
				continue
			}
		}
		answer, _, err := s.step(steps, row, transfer.StepDue, a.Due, activities.DueInput{TransferID: s.in.TransferID})
		if err != nil || answer.Status != row.Status {
			return answer, err
		}
		// The ledger's clock has not reached scheduled_for yet: ask again shortly.
		if _, err := s.await(ctx, recheckAfter(early)); err != nil {
			return transfer.Outcome{}, err
		}
		early++
	}
}

// hold waits, with a manual transfer reserved and its funds held, for the first of a capture, a
// cancel and the hold's expiry, and has the ledger decide each: step_capture, step_release,
// step_expire, each one statement that locks the transfer's row, so whichever reaches the ledger
// first wins and the others find the row moved on. It returns the ledger's answer once the row
// has left reserved (debited by a capture, or cancelled).
func (s *saga) hold(ctx, steps workflow.Context, row transfer.Outcome) (transfer.Outcome, error) {
	for early := 0; ; {
		if s.cancelling(ctx) {
			return s.compensate(steps, row, transfer.StepRelease, s.cancelOutcome())
		}
		if req := s.nextCapture(); req != nil {
			answer, err := s.putCapture(steps, row, req)
			if err != nil || answer.Status != row.Status {
				return answer, err
			}
			row = answer
			continue
		}
		wait := row.HoldExpiresAt.Sub(workflow.Now(ctx))
		if wait > 0 {
			woken, err := s.await(ctx, min(wait, holdRecheck))
			if err != nil {
				return transfer.Outcome{}, err
			}
			if woken {
				continue
			}
		}
		answer, _, err := s.step(steps, row, transfer.StepExpire, a.Expire, activities.ExpireInput{TransferID: s.in.TransferID})
		if err != nil || answer.Status != row.Status || answer.CapturedAmount != 0 {
			return answer, err
		}
		row = answer
		if wait > holdRecheck {
			continue // A recheck long before the expiry: the transfer is still held.
		}
		// The ledger's clock has not reached the expiry yet (the clocks differ by a moment): ask
		// again shortly, still open to a capture or a cancel.
		if _, err := s.await(ctx, recheckAfter(early)); err != nil {
			return transfer.Outcome{}, err
		}
		early++
	}
}

// await waits up to d for a cancel or a capture to arrive, and reports whether one did. The
// workflow's own cancellation (an operator's cancel in the Web UI) ends the wait too: cancelling
// then says so.
func (s *saga) await(ctx workflow.Context, d time.Duration) (bool, error) {
	woken, err := workflow.AwaitWithTimeout(ctx, d, func() bool { return s.cancelRequested || s.nextCapture() != nil })
	if s.cancelling(ctx) || temporal.IsCanceledError(err) {
		// The timer of a cancelled context is ready at once: that is not the time having come.
		return true, nil
	}
	return woken, err
}

// nextCapture returns the oldest capture request not yet answered, or nil.
func (s *saga) nextCapture() *captureRequest {
	for _, req := range s.captures {
		if !req.answered {
			return req
		}
	}
	return nil
}

// putCapture asks the ledger to capture req's amount and answers req with its decision. The row
// it returns is the ledger's: debited (captured) when the capture won, unchanged when refused.
func (s *saga) putCapture(steps workflow.Context, row transfer.Outcome, req *captureRequest) (transfer.Outcome, error) {
	answer, refusal, err := s.step(steps, row, transfer.StepCapture, a.Capture,
		activities.CaptureInput{TransferID: s.in.TransferID, Amount: req.amount})
	if err != nil {
		return transfer.Outcome{}, err
	}
	req.answered, req.refusal = true, refusal
	return answer, nil
}

// settleCaptures answers the capture requests still waiting once the ledger's row decides them: a
// captured transfer answers those of its captured amount and refuses the others; a transfer that
// ended uncaptured refuses them all.
func (s *saga) settleCaptures(row transfer.Outcome) {
	// An answer without the captured amount (a step run by a worker of an earlier release, during
	// an upgrade) does not unsay a capture the ledger answered before.
	captured := max(row.CapturedAmount, s.state.CapturedAmount)
	for _, req := range s.captures {
		switch {
		case req.answered:
		case captured != 0:
			req.answered = true
			if req.amount != captured {
				req.refusal = transfer.Errorf(transfer.CodeNotCapturable, "transfer %s was already captured for %d", s.in.TransferID, captured)
			}
		case row.Status.Final():
			req.answered = true
			req.refusal = transfer.Errorf(transfer.CodeNotCapturable, "transfer %s ended as %s", s.in.TransferID, row.Status)
		}
	}
}

// validateCapture refuses, before anything is recorded, a capture of a transfer that is not a
// hold, and one of an amount the hold cannot give: facts of the workflow's input, not of the
// ledger's state.
func (s *saga) validateCapture(ctx workflow.Context, in CaptureInput) error {
	switch {
	case !s.in.manual():
		return temporal.NewNonRetryableApplicationError("the transfer is captured automatically; only a manual transfer can be captured",
			string(transfer.CodeNotCapturable), nil)
	case in.Amount < 0:
		return temporal.NewNonRetryableApplicationError("a capture's amount is at least 1", string(transfer.CodeInvalidInput), nil)
	case in.Amount > s.in.Amount:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("the hold is of %d, the capture asks for %d", s.in.Amount, in.Amount),
			string(transfer.CodeCaptureExceedsHold), nil)
	}
	return nil
}

// capture asks the saga to capture the hold and waits for the ledger's decision: the state with
// CapturedAmount once captured (its credit may still be under way), or the ledger's refusal
// (CodeNotCapturable and the others of step_capture).
func (s *saga) capture(ctx workflow.Context, in CaptureInput) (CaptureResult, error) {
	amount := in.Amount
	if amount == 0 {
		amount = s.in.Amount
	}
	req := &captureRequest{amount: amount}
	s.captures = append(s.captures, req)
	done, _ := workflow.NewDisconnectedContext(ctx)
	if err := workflow.Await(done, func() bool { return req.answered || s.finished }); err != nil {
		return State{}, err
	}
	if !req.answered {
		s.settleCaptures(transfer.Outcome{Status: s.state.Status, CapturedAmount: s.state.CapturedAmount})
	}
	if req.refusal != nil {
		return State{}, temporal.NewNonRetryableApplicationError(req.refusal.Message, string(req.refusal.Code), nil)
	}
	return s.state, nil
}
