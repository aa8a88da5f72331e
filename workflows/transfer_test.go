package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/worker"
	"github.com/transferd/transferd/workflows"
)

// a is the nil receiver through which the tests name the activities, as the workflow does.
var a *activities.Activities

var (
	transferID = uuid.MustParse("0190a5b4-7c3e-7a10-8b2c-3d4e5f607182")
	input      = workflows.TransferInput{
		TransferID:    transferID,
		Kind:          transfer.KindTransfer,
		FromAccountID: uuid.MustParse("11111111-1111-1111-1111-111111111111"),
		ToAccountID:   uuid.MustParse("22222222-2222-2222-2222-222222222222"),
		Amount:        1250,
		Currency:      "USD",
	}
)

// The activity type names the workflow schedules, as registered by worker.Register.
const (
	reserve = "Reserve"
	debit   = "Debit"
	credit  = "Credit"
	release = "Release"
	refund  = "Refund"
)

// slow is how long a slow mocked activity takes on the test environment's clock: well under the
// steps' 10s start-to-close timeout, and long enough for a delayed callback at 1s to land inside it.
const slow = 5 * time.Second

// refused returns the error an activity returns when the ledger refuses a step for a business
// reason: non-retryable, with the code as its type and the unchanged row as its details.
func refused(status transfer.Status, code transfer.Code, msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, string(code), nil, transfer.Outcome{Status: status})
}

// The ledger's answers to steps that took effect.
var (
	reserved  = activities.ReserveResult{Row: transfer.Outcome{Status: transfer.StatusReserved}}
	debited   = activities.DebitResult{Row: transfer.Outcome{Status: transfer.StatusDebited}}
	completed = activities.CreditResult{Row: transfer.Outcome{Status: transfer.StatusCompleted}}
)

// releaseAsAsked and refundAsAsked answer as the ledger does for a transfer in the status that
// leads to the compensation: it ends as asked.
func releaseAsAsked(_ context.Context, in activities.ReleaseInput) (activities.ReleaseResult, error) {
	return activities.ReleaseResult{Row: in.Outcome}, nil
}

func refundAsAsked(_ context.Context, in activities.RefundInput) (activities.RefundResult, error) {
	return activities.RefundResult{Row: transfer.Outcome{Status: transfer.StatusFailed, Code: in.FailureCode, Message: in.Message}}, nil
}

// sagaRun runs TransferWorkflow in the SDK's test environment with every activity mocked, and
// records what happened: each activity attempt in the order it started, the inputs of the
// compensations, and the TransferStatus values the workflow upserted.
type sagaRun struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment

	mu       sync.Mutex
	started  []string
	ids      []uuid.UUID
	releases []activities.ReleaseInput
	refunds  []activities.RefundInput
	statuses []string
	// local counts the attempts that ran as local activities.
	local int
	// in is the workflow's input; tests may change it before execute.
	in workflows.TransferInput
	// expiries are the HoldExpiresAt values the workflow upserted.
	expiries []time.Time
	// holdExpires is a hold's expiry, for the mocked ledger's step_expire (see execute); with
	// rechecks set, check leaves out the Expire steps, which a held saga asks every hour.
	holdExpires time.Time
	rechecks    bool
}

func newSagaRun(t *testing.T) *sagaRun {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	// The environment logs every timer and activity at debug level; the assertions say what matters.
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := suite.NewTestWorkflowEnvironment()
	// Register exactly as the worker does, so the workflow name and activity names are the real ones.
	worker.Register(env, &activities.Activities{})
	r := &sagaRun{t: t, env: env, in: input}

	// record notes one activity attempt; get decodes its input.
	record := func(name string, get func(any) error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.started = append(r.started, name)
		// Every step's input names the transfer.
		var in struct{ TransferID uuid.UUID }
		if err := get(&in); err != nil {
			t.Errorf("decode %s input: %v", name, err)
		}
		r.ids = append(r.ids, in.TransferID)
		switch name {
		case release:
			var in activities.ReleaseInput
			if err := get(&in); err != nil {
				t.Errorf("decode Release input: %v", err)
			}
			r.releases = append(r.releases, in)
		case refund:
			var in activities.RefundInput
			if err := get(&in); err != nil {
				t.Errorf("decode Refund input: %v", err)
			}
			r.refunds = append(r.refunds, in)
		}
	}
	// The steps run as regular activities on the naive path and in recorded histories, and as local
	// activities otherwise; both are recorded alike.
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
		record(info.ActivityType.Name, func(v any) error { return args.Get(v) })
	})
	env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, args []any) {
		r.mu.Lock()
		r.local++
		r.mu.Unlock()
		record(info.ActivityType.Name, func(v any) error {
			if len(args) != 1 {
				return fmt.Errorf("%d arguments, want 1", len(args))
			}
			b, err := json.Marshal(args[0])
			if err != nil {
				return err
			}
			return json.Unmarshal(b, v)
		})
	})
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		r.mu.Lock()
		defer r.mu.Unlock()
		sa, ok := args.Get(0).(temporal.SearchAttributes)
		if !ok {
			t.Errorf("upsert called with %T, want temporal.SearchAttributes", args.Get(0))
			return
		}
		// A status changes alone, or with a hold's expiry when the ledger placed the hold.
		expiry, hasExpiry := sa.GetTime(workflows.AttrHoldExpiresAt)
		want := 1
		if hasExpiry {
			want = 2
			r.expiries = append(r.expiries, expiry)
		}
		if sa.Size() != want {
			t.Errorf("upsert of %d search attributes %v, want only %s (and %s)", sa.Size(), sa.GetUntypedValues(),
				workflows.AttrStatus.GetName(), workflows.AttrHoldExpiresAt.GetName())
		}
		status, ok := sa.GetKeyword(workflows.AttrStatus)
		if !ok {
			t.Errorf("upsert without %s: %v", workflows.AttrStatus.GetName(), sa.GetUntypedValues())
		}
		r.statuses = append(r.statuses, status)
	}).Maybe()
	// The workflow starts with the search attributes the API sets, as in production.
	require.NoError(t, env.SetTypedSearchAttributesOnStart(workflows.StartOptions(input, workflows.DefaultTaskQueue).TypedSearchAttributes))
	return r
}

// execute registers a succeeding fallback for every activity (after the test's own mocks, which
// testify tries first), runs the workflow to its end and returns its result.
func (r *sagaRun) execute() workflows.State {
	r.t.Helper()
	r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).Return(reserved, nil).Maybe()
	r.env.OnActivity(a.Debit, mock.Anything, mock.Anything).Return(debited, nil).Maybe()
	r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).Return(completed, nil).Maybe()
	r.env.OnActivity(a.Release, mock.Anything, mock.Anything).Return(releaseAsAsked).Maybe()
	r.env.OnActivity(a.Refund, mock.Anything, mock.Anything).Return(refundAsAsked).Maybe()
	if !r.holdExpires.IsZero() {
		r.env.OnActivity(a.Expire, mock.Anything, mock.Anything).Return(r.ledgerExpiry(r.holdExpires)).Maybe()
	}

	r.env.ExecuteWorkflow(workflows.WorkflowName, r.in)

	require.True(r.t, r.env.IsWorkflowCompleted(), "workflow did not complete")
	require.NoError(r.t, r.env.GetWorkflowError(), "workflow error")
	var got workflows.State
	require.NoError(r.t, r.env.GetWorkflowResult(&got), "workflow result")
	r.env.AssertExpectations(r.t)
	return got
}

// startedSoFar returns the activities started until now.
func (r *sagaRun) startedSoFar() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.started...)
}

// check compares what the run recorded with what the test wants. Nil and empty slices are equal.
func (r *sagaRun) check(wantStarted []string, wantReleases []activities.ReleaseInput, wantRefunds []activities.RefundInput, wantStatuses []string) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	started := r.started
	if r.rechecks {
		started = slices.DeleteFunc(slices.Clone(started), func(name string) bool { return name == "Expire" })
	}
	require.Equal(r.t, wantStarted, nilIfEmpty(started), "activities started, in order, one entry per attempt")
	for i, id := range r.ids {
		require.Equal(r.t, transferID, id, "transfer id of activity %d (%s)", i, r.started[i])
	}
	require.Equal(r.t, wantReleases, nilIfEmpty(r.releases), "Release inputs")
	require.Equal(r.t, wantRefunds, nilIfEmpty(r.refunds), "Refund inputs")
	require.Equal(r.t, wantStatuses, nilIfEmpty(r.statuses), "TransferStatus upserts, in order")
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// query returns the workflow's status query answer.
func (r *sagaRun) query() workflows.State {
	r.t.Helper()
	v, err := r.env.QueryWorkflow(workflows.QueryStatus)
	require.NoError(r.t, err, "status query")
	var s workflows.State
	require.NoError(r.t, v.Get(&s), "decode status query result")
	return s
}

// updateOutcome records what happened to a cancel update.
type updateOutcome struct {
	accepted  bool
	rejected  error
	completed bool
	result    any
	err       error
}

// cancelAt sends the cancel update with the reason after d on the test environment's clock.
func (r *sagaRun) cancelAt(d time.Duration, reason string) *updateOutcome {
	u := &updateOutcome{}
	r.env.RegisterDelayedCallback(func() {
		r.env.UpdateWorkflow(workflows.UpdateCancel, "cancel-"+reason, &testsuite.TestUpdateCallback{
			OnAccept: func() { u.accepted = true },
			OnReject: func(err error) { u.rejected = err },
			OnComplete: func(result any, err error) {
				u.completed = true
				u.result, u.err = result, err
			},
		}, workflows.CancelInput{Reason: reason})
	}, d)
	return u
}

// state returns the completed update's result as a State.
func (u *updateOutcome) state(t *testing.T) workflows.State {
	t.Helper()
	switch v := u.result.(type) {
	case workflows.State:
		return v
	case converter.EncodedValue:
		var s workflows.State
		require.NoError(t, v.Get(&s), "decode update result")
		return s
	default:
		t.Fatalf("update result is %T (%v), want a workflows.State", u.result, u.result)
		return workflows.State{}
	}
}

// cancelWorkflowAt cancels the workflow after d on the test environment's clock and returns the
// activities that had started by then.
func (r *sagaRun) cancelWorkflowAt(d time.Duration) *[]string {
	var startedThen []string
	r.env.RegisterDelayedCallback(func() {
		startedThen = r.startedSoFar()
		r.env.CancelWorkflow()
	}, d)
	return &startedThen
}

func TestTransferCompletes(t *testing.T) {
	r := newSagaRun(t)
	got := r.execute()

	require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, got)
	r.check([]string{reserve, debit, credit}, nil, nil,
		[]string{"reserved", "debited", "completed"})
	require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, r.query(), "status query after the end")
}

// TestTransferBusinessFailures covers each business failure of each step: a failure before the
// debit releases the hold, a failure of the credit refunds the debit, and none is retried.
func TestTransferBusinessFailures(t *testing.T) {
	tests := []struct {
		name         string
		mock         func(r *sagaRun)
		wantStarted  []string
		wantReleases []activities.ReleaseInput
		wantRefunds  []activities.RefundInput
		wantStatuses []string
		want         workflows.State
	}{
		{
			name: "insufficient funds at reserve",
			mock: func(r *sagaRun) {
				r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).
					Return(activities.ReserveResult{}, refused(transfer.StatusPending, transfer.CodeInsufficientFunds, "available 100, need 1250")).Once()
			},
			wantStarted: []string{reserve, release},
			wantReleases: []activities.ReleaseInput{{TransferID: transferID, Outcome: transfer.Outcome{
				Status: transfer.StatusFailed, Code: transfer.CodeInsufficientFunds, Message: "available 100, need 1250"}}},
			wantStatuses: []string{"failed"},
			want:         workflows.State{Status: transfer.StatusFailed, FailureCode: transfer.CodeInsufficientFunds, FailureMessage: "available 100, need 1250"},
		},
		{
			name: "inactive source at reserve",
			mock: func(r *sagaRun) {
				r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).
					Return(activities.ReserveResult{}, refused(transfer.StatusPending, transfer.CodeAccountInactive, "source is frozen")).Once()
			},
			wantStarted: []string{reserve, release},
			wantReleases: []activities.ReleaseInput{{TransferID: transferID, Outcome: transfer.Outcome{
				Status: transfer.StatusFailed, Code: transfer.CodeAccountInactive, Message: "source is frozen"}}},
			wantStatuses: []string{"failed"},
			want:         workflows.State{Status: transfer.StatusFailed, FailureCode: transfer.CodeAccountInactive, FailureMessage: "source is frozen"},
		},
		{
			name: "inactive source at debit",
			mock: func(r *sagaRun) {
				r.env.OnActivity(a.Debit, mock.Anything, mock.Anything).
					Return(activities.DebitResult{}, refused(transfer.StatusReserved, transfer.CodeAccountInactive, "source frozen after the reserve")).Once()
			},
			wantStarted: []string{reserve, debit, release},
			wantReleases: []activities.ReleaseInput{{TransferID: transferID, Outcome: transfer.Outcome{
				Status: transfer.StatusFailed, Code: transfer.CodeAccountInactive, Message: "source frozen after the reserve"}}},
			wantStatuses: []string{"reserved", "failed"},
			want:         workflows.State{Status: transfer.StatusFailed, FailureCode: transfer.CodeAccountInactive, FailureMessage: "source frozen after the reserve"},
		},
		{
			name: "inactive destination at credit",
			mock: func(r *sagaRun) {
				r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).
					Return(activities.CreditResult{}, refused(transfer.StatusDebited, transfer.CodeAccountInactive, "destination is closed")).Once()
			},
			wantStarted: []string{reserve, debit, credit, refund},
			wantRefunds: []activities.RefundInput{{TransferID: transferID,
				FailureCode: transfer.CodeAccountInactive, Message: "destination is closed"}},
			wantStatuses: []string{"reserved", "debited", "failed"},
			want:         workflows.State{Status: transfer.StatusFailed, FailureCode: transfer.CodeAccountInactive, FailureMessage: "destination is closed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSagaRun(t)
			tt.mock(r)
			got := r.execute()
			require.Equal(t, tt.want, got, "final state")
			r.check(tt.wantStarted, tt.wantReleases, tt.wantRefunds, tt.wantStatuses)
			require.Equal(t, tt.want, r.query(), "status query after the end")
		})
	}
}

func TestTransferRetriesTransientErrors(t *testing.T) {
	r := newSagaRun(t)
	r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).
		Return(activities.ReserveResult{}, errors.New("connection reset by peer")).Times(2)
	r.env.OnActivity(a.Debit, mock.Anything, mock.Anything).
		Return(activities.DebitResult{}, errors.New("serialization failure")).Once()
	r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).
		Return(activities.CreditResult{}, errors.New("deadlock detected")).Once()
	got := r.execute()

	require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, got)
	r.check([]string{reserve, reserve, reserve, debit, debit, credit, credit}, nil, nil,
		[]string{"reserved", "debited", "completed"})
	r.env.AssertActivityNumberOfCalls(t, reserve, 3)
}

// TestTransferStepsRetriedPastTheirTimeout holds each step in transient failure for far longer than
// its 10s start-to-close timeout (the backoff reaches its 10s maximum after 8 attempts). A step
// must be retried for as long as it takes: a transient error never ends a transfer, and a
// compensation never gives up (ledger.md).
func TestTransferStepsRetriedPastTheirTimeout(t *testing.T) {
	const failures = 15 // about 100s of backoff on the test clock
	// repeat is an activity's attempts: the failures and the success.
	repeat := func(name string) []string { return slices.Repeat([]string{name}, failures+1) }
	t.Run("reserve debit credit", func(t *testing.T) {
		r := newSagaRun(t)
		r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).
			Return(activities.ReserveResult{}, errors.New("connection refused")).Times(failures)
		r.env.OnActivity(a.Debit, mock.Anything, mock.Anything).
			Return(activities.DebitResult{}, errors.New("connection refused")).Times(failures)
		r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).
			Return(activities.CreditResult{}, errors.New("connection refused")).Times(failures)
		got := r.execute()

		require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, got)
		want := append(append(repeat(reserve), repeat(debit)...), repeat(credit)...)
		r.check(want, nil, nil, []string{"reserved", "debited", "completed"})
	})
	t.Run("refund", func(t *testing.T) {
		r := refundFailing(t, failures)
		ref := activities.RefundInput{TransferID: transferID, FailureCode: transfer.CodeAccountInactive, Message: "destination frozen"}
		r.check(append([]string{reserve, debit, credit}, repeat(refund)...), nil, slices.Repeat([]activities.RefundInput{ref}, failures+1),
			[]string{"reserved", "debited", "failed"})
	})
	t.Run("release", func(t *testing.T) {
		r := newSagaRun(t)
		r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).
			Return(activities.ReserveResult{}, refused(transfer.StatusPending, transfer.CodeInsufficientFunds, "no money")).Once()
		r.env.OnActivity(a.Release, mock.Anything, mock.Anything).
			Return(activities.ReleaseResult{}, errors.New("connection refused")).Times(failures)
		got := r.execute()

		require.Equal(t, transfer.StatusFailed, got.Status)
		require.Equal(t, transfer.CodeInsufficientFunds, got.FailureCode)
		started := r.startedSoFar()
		require.Equal(t, append([]string{reserve}, repeat(release)...), started)
	})
}

// refundFailing runs a transfer whose credit is refused, so that its debit must be refunded, with
// the refund failing transiently failures times, and checks that it ends failed for the credit's
// reason.
func refundFailing(t *testing.T, failures int) *sagaRun {
	t.Helper()
	r := newSagaRun(t)
	r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).
		Return(activities.CreditResult{}, refused(transfer.StatusDebited, transfer.CodeAccountInactive, "destination frozen")).Once()
	r.env.OnActivity(a.Refund, mock.Anything, mock.Anything).
		Return(activities.RefundResult{}, errors.New("connection refused")).Times(failures)
	got := r.execute()
	want := workflows.State{Status: transfer.StatusFailed, FailureCode: transfer.CodeAccountInactive, FailureMessage: "destination frozen"}
	require.Equal(t, want, got)
	return r
}

// TestTransferStepsOutliveTheirLocalBudget fails a step, and then a compensation, for longer than
// the 5 minutes a step is retried as a local activity: it must go on as a regular activity, retried
// by the server, and the transfer must end as if the step had simply been slow.
func TestTransferStepsOutliveTheirLocalBudget(t *testing.T) {
	const failures = 45 // about 390s of backoff on the test clock, past the 5 minute budget
	t.Run("reserve", func(t *testing.T) {
		r := newSagaRun(t)
		r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).
			Return(activities.ReserveResult{}, errors.New("connection refused")).Times(failures)
		got := r.execute()

		require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, got)
		started := r.startedSoFar()
		require.Equal(t, []string{debit, credit}, started[len(started)-2:], "after the reserve")
		require.Len(t, started, failures+3, "every reserve attempt, then the debit and the credit")
		require.Less(t, r.local, failures+3, "some reserve attempts ran as regular activities")
		require.Greater(t, r.local, 30, "the reserve ran locally for its budget first")
	})
	t.Run("refund", func(t *testing.T) {
		r := refundFailing(t, failures)
		require.Len(t, r.startedSoFar(), 3+failures+1, "reserve, debit, credit, then every refund attempt")
		require.Less(t, r.local, 3+failures+1, "some refund attempts ran as regular activities")
	})
	t.Run("a business failure is not retried as a regular activity", func(t *testing.T) {
		r := newSagaRun(t)
		r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).
			Return(activities.ReserveResult{}, refused(transfer.StatusPending, transfer.CodeInsufficientFunds, "no money")).Once()
		got := r.execute()

		require.Equal(t, transfer.StatusFailed, got.Status)
		require.Equal(t, []string{reserve, release}, r.startedSoFar())
		require.Equal(t, 2, r.local, "both ran locally, once")
	})
}

func TestTransferCompensationsRetriedUntilTheySucceed(t *testing.T) {
	t.Run("release", func(t *testing.T) {
		r := newSagaRun(t)
		r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).
			Return(activities.ReserveResult{}, refused(transfer.StatusPending, transfer.CodeInsufficientFunds, "no money")).Once()
		r.env.OnActivity(a.Release, mock.Anything, mock.Anything).
			Return(activities.ReleaseResult{}, errors.New("connection refused")).Times(4)
		got := r.execute()

		want := workflows.State{Status: transfer.StatusFailed, FailureCode: transfer.CodeInsufficientFunds, FailureMessage: "no money"}
		require.Equal(t, want, got)
		rel := activities.ReleaseInput{TransferID: transferID, Outcome: transfer.Outcome{
			Status: transfer.StatusFailed, Code: transfer.CodeInsufficientFunds, Message: "no money"}}
		r.check([]string{reserve, release, release, release, release, release},
			[]activities.ReleaseInput{rel, rel, rel, rel, rel}, nil, []string{"failed"})
	})
	t.Run("refund", func(t *testing.T) {
		r := newSagaRun(t)
		r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).
			Return(activities.CreditResult{}, refused(transfer.StatusDebited, transfer.CodeAccountInactive, "destination frozen")).Once()
		r.env.OnActivity(a.Refund, mock.Anything, mock.Anything).
			Return(activities.RefundResult{}, errors.New("deadlock detected")).Times(3)
		got := r.execute()

		want := workflows.State{Status: transfer.StatusFailed, FailureCode: transfer.CodeAccountInactive, FailureMessage: "destination frozen"}
		require.Equal(t, want, got)
		ref := activities.RefundInput{TransferID: transferID, FailureCode: transfer.CodeAccountInactive, Message: "destination frozen"}
		r.check([]string{reserve, debit, credit, refund, refund, refund, refund}, nil,
			[]activities.RefundInput{ref, ref, ref, ref}, []string{"reserved", "debited", "failed"})
	})
	t.Run("release after the workflow was cancelled", func(t *testing.T) {
		r := newSagaRun(t)
		r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).After(slow).Return(reserved, nil).Once()
		r.env.OnActivity(a.Release, mock.Anything, mock.Anything).
			Return(activities.ReleaseResult{}, errors.New("connection refused")).Times(3)
		r.cancelWorkflowAt(time.Second)
		got := r.execute()

		want := workflows.State{Status: transfer.StatusCancelled, FailureMessage: "cancelled before the debit"}
		require.Equal(t, want, got)
		rel := activities.ReleaseInput{TransferID: transferID, Outcome: transfer.Outcome{
			Status: transfer.StatusCancelled, Message: "cancelled before the debit"}}
		r.check([]string{reserve, release, release, release, release},
			[]activities.ReleaseInput{rel, rel, rel, rel}, nil, []string{"reserved", "cancelled"})
	})
}

func TestTransferCancelUpdateBeforeDebit(t *testing.T) {
	r := newSagaRun(t)
	// The reserve is slow, so the update arrives while it runs; the saga honours it before the debit.
	r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).After(slow).Return(reserved, nil).Once()
	u := r.cancelAt(time.Second, "customer changed their mind")
	got := r.execute()

	want := workflows.State{Status: transfer.StatusCancelled, FailureMessage: "customer changed their mind"}
	require.Equal(t, want, got)
	r.check([]string{reserve, release},
		[]activities.ReleaseInput{{TransferID: transferID, Outcome: transfer.Outcome{
			Status: transfer.StatusCancelled, Message: "customer changed their mind"}}},
		nil, []string{"reserved", "cancelled"})

	require.True(t, u.accepted, "update accepted")
	require.NoError(t, u.rejected, "update rejection")
	require.True(t, u.completed, "update completed")
	require.NoError(t, u.err, "update error")
	require.Equal(t, want, u.state(t), "update result")
}

// TestTransferCancelledBeforeReserve cancels the transfer before its first step: nothing is
// reserved, and the release still runs to end the transfer in the ledger.
func TestTransferCancelledBeforeReserve(t *testing.T) {
	t.Run("cancel update", func(t *testing.T) {
		r := newSagaRun(t)
		u := r.cancelAt(0, "duplicate payment")
		got := r.execute()

		want := workflows.State{Status: transfer.StatusCancelled, FailureMessage: "duplicate payment"}
		require.Equal(t, want, got)
		r.check([]string{release},
			[]activities.ReleaseInput{{TransferID: transferID, Outcome: transfer.Outcome{
				Status: transfer.StatusCancelled, Message: "duplicate payment"}}},
			nil, []string{"cancelled"})
		require.True(t, u.accepted, "update accepted")
		require.True(t, u.completed, "update completed")
		require.NoError(t, u.err, "update error")
		require.Equal(t, want, u.state(t), "update result")
	})
	t.Run("workflow cancellation", func(t *testing.T) {
		r := newSagaRun(t)
		r.cancelWorkflowAt(0)
		got := r.execute()

		want := workflows.State{Status: transfer.StatusCancelled, FailureMessage: "cancelled before the debit"}
		require.Equal(t, want, got)
		r.check([]string{release},
			[]activities.ReleaseInput{{TransferID: transferID, Outcome: transfer.Outcome{
				Status: transfer.StatusCancelled, Message: "cancelled before the debit"}}},
			nil, []string{"cancelled"})
	})
}

// TestTransferCancelUpdateAfterDebitStartedIsRejected sends the cancel update while the debit runs
// and while the credit runs. During the debit the saga does not yet know whether the ledger will
// debit, so it accepts the cancel and asks the ledger: the debit wins, the transfer completes, and
// the update answers not_cancellable. Once the ledger has answered debited, the update is refused
// at once.
func TestTransferCancelUpdateAfterDebitStartedIsRejected(t *testing.T) {
	for _, slowStep := range []string{debit, credit} {
		t.Run("during "+slowStep, func(t *testing.T) {
			r := newSagaRun(t)
			switch slowStep {
			case debit:
				r.env.OnActivity(a.Debit, mock.Anything, mock.Anything).After(slow).Return(debited, nil).Once()
			case credit:
				r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).After(slow).Return(completed, nil).Once()
			}
			u := r.cancelAt(time.Second, "too late")
			got := r.execute()

			require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, got)
			r.check([]string{reserve, debit, credit}, nil, nil, []string{"reserved", "debited", "completed"})

			var notCancellable error
			if slowStep == debit {
				require.True(t, u.accepted, "update accepted while the debit ran")
				require.True(t, u.completed, "update completed")
				notCancellable = u.err
			} else {
				require.False(t, u.accepted, "update accepted once the ledger said debited")
				require.False(t, u.completed, "update completed")
				notCancellable = u.rejected
			}
			require.Error(t, notCancellable, "the cancel must not succeed")
			var app *temporal.ApplicationError
			require.True(t, errors.As(notCancellable, &app), "%T %v is not an ApplicationError", notCancellable, notCancellable)
			require.Equal(t, string(transfer.CodeNotCancellable), app.Type(), "error type")
		})
	}
}

// TestTransferCancelWinsOverARefusedStep sends the cancel update while a step runs that the ledger
// then refuses: no money moved, so the transfer ends cancelled as the client asked, not failed.
func TestTransferCancelWinsOverARefusedStep(t *testing.T) {
	for _, tc := range []struct {
		step    string
		mock    func(r *sagaRun)
		started []string
		upserts []string
	}{
		{reserve, func(r *sagaRun) {
			r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).After(slow).
				Return(activities.ReserveResult{}, refused(transfer.StatusPending, transfer.CodeInsufficientFunds, "no money")).Once()
		}, []string{reserve, release}, []string{"cancelled"}},
		{debit, func(r *sagaRun) {
			r.env.OnActivity(a.Debit, mock.Anything, mock.Anything).After(slow).
				Return(activities.DebitResult{}, refused(transfer.StatusReserved, transfer.CodeAccountInactive, "source frozen")).Once()
		}, []string{reserve, debit, release}, []string{"reserved", "cancelled"}},
	} {
		t.Run(tc.step, func(t *testing.T) {
			r := newSagaRun(t)
			tc.mock(r)
			u := r.cancelAt(time.Second, "customer asked")
			got := r.execute()
			want := workflows.State{Status: transfer.StatusCancelled, FailureMessage: "customer asked"}
			require.Equal(t, want, got)
			require.Equal(t, tc.started, r.startedSoFar())
			require.True(t, u.completed, "update completed")
			require.NoError(t, u.err, "update error")
			require.Equal(t, want, u.state(t), "update result")
		})
	}
}

// TestTransferLedgerAhead answers the steps as a ledger that is ahead of the history does (a
// replay after a lost workflow task): the saga goes on from the ledger's answers, and a cancel
// that meets a debited or completed transfer loses.
func TestTransferLedgerAhead(t *testing.T) {
	t.Run("reserve answers debited, cancel at once", func(t *testing.T) {
		r := newSagaRun(t)
		r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).Return(activities.ReserveResult{Row: transfer.Outcome{Status: transfer.StatusDebited}}, nil).Maybe()
		r.env.OnActivity(a.Release, mock.Anything, mock.Anything).Return(activities.ReleaseResult{Row: transfer.Outcome{Status: transfer.StatusDebited}}, nil).Once()
		r.cancelWorkflowAt(0)
		got := r.execute()
		require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, got)
		require.Equal(t, []string{release, credit}, r.startedSoFar())
	})
	t.Run("reserve answers completed", func(t *testing.T) {
		r := newSagaRun(t)
		r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).Return(activities.ReserveResult{Row: transfer.Outcome{Status: transfer.StatusCompleted}}, nil).Once()
		got := r.execute()
		require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, got)
		r.check([]string{reserve}, nil, nil, []string{"completed"})
	})
	t.Run("reserve answers failed", func(t *testing.T) {
		r := newSagaRun(t)
		row := transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeInsufficientFunds, Message: "no money"}
		r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).Return(activities.ReserveResult{Row: row}, nil).Once()
		got := r.execute()
		require.Equal(t, workflows.State{Status: row.Status, FailureCode: row.Code, FailureMessage: row.Message}, got)
	})
	t.Run("a step without the ledger's row fails the workflow", func(t *testing.T) {
		r := newSagaRun(t)
		r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).Return(activities.ReserveResult{}, nil).Once()
		r.env.ExecuteWorkflow(workflows.WorkflowName, r.in)
		require.True(t, r.env.IsWorkflowCompleted())
		require.ErrorContains(t, r.env.GetWorkflowError(), "answered without the ledger's row")
	})
}

func TestTransferWorkflowCancelledBeforeDebit(t *testing.T) {
	r := newSagaRun(t)
	r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).After(slow).Return(reserved, nil).Once()
	// The release is slow too: it runs after the cancellation and must still be waited for.
	r.env.OnActivity(a.Release, mock.Anything, mock.Anything).After(slow).Return(releaseAsAsked).Once()
	startedThen := r.cancelWorkflowAt(time.Second)
	got := r.execute()

	require.Equal(t, []string{reserve}, *startedThen, "activities started when the workflow was cancelled")
	want := workflows.State{Status: transfer.StatusCancelled, FailureMessage: "cancelled before the debit"}
	require.Equal(t, want, got)
	// The cancellation does not cut the reserve short: the ledger answers reserved, and its release
	// then decides that the cancel wins.
	r.check([]string{reserve, release},
		[]activities.ReleaseInput{{TransferID: transferID, Outcome: transfer.Outcome{
			Status: transfer.StatusCancelled, Message: "cancelled before the debit"}}},
		nil, []string{"reserved", "cancelled"})
}

func TestTransferWorkflowCancelledDuringRefund(t *testing.T) {
	r := newSagaRun(t)
	r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).
		Return(activities.CreditResult{}, refused(transfer.StatusDebited, transfer.CodeAccountInactive, "destination is closed")).Once()
	r.env.OnActivity(a.Refund, mock.Anything, mock.Anything).After(slow).Return(refundAsAsked).Once()
	startedThen := r.cancelWorkflowAt(time.Second)
	got := r.execute()

	require.Equal(t, []string{reserve, debit, credit, refund}, *startedThen, "activities started when the workflow was cancelled")
	want := workflows.State{Status: transfer.StatusFailed, FailureCode: transfer.CodeAccountInactive, FailureMessage: "destination is closed"}
	require.Equal(t, want, got)
	r.check([]string{reserve, debit, credit, refund}, nil,
		[]activities.RefundInput{{TransferID: transferID, FailureCode: transfer.CodeAccountInactive, Message: "destination is closed"}},
		[]string{"reserved", "debited", "failed"})
	r.env.AssertActivityNumberOfCalls(t, refund, 1)
}

// TestTransferWorkflowCancelledAfterDebitStarted checks that once the debit has started,
// cancelling the workflow stops no money movement: the transfer still completes.
func TestTransferWorkflowCancelledAfterDebitStarted(t *testing.T) {
	for _, slowStep := range []string{debit, credit} {
		t.Run("during "+slowStep, func(t *testing.T) {
			r := newSagaRun(t)
			var wantThen []string
			switch slowStep {
			case debit:
				r.env.OnActivity(a.Debit, mock.Anything, mock.Anything).After(slow).Return(debited, nil).Once()
				wantThen = []string{reserve, debit}
			case credit:
				r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).After(slow).Return(completed, nil).Once()
				wantThen = []string{reserve, debit, credit}
			}
			startedThen := r.cancelWorkflowAt(time.Second)
			got := r.execute()

			require.Equal(t, wantThen, *startedThen, "activities started when the workflow was cancelled")
			require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, got)
			r.check([]string{reserve, debit, credit}, nil, nil, []string{"reserved", "debited", "completed"})
			r.env.AssertActivityNumberOfCalls(t, slowStep, 1)
		})
	}
}

// TestTransferCancelUpdateThenWorkflowCancelled sends the cancel update while the reserve runs and
// then cancels the workflow too: the transfer ends cancelled, and the update, which waits for the
// saga's outcome, answers with that outcome.
func TestTransferCancelUpdateThenWorkflowCancelled(t *testing.T) {
	r := newSagaRun(t)
	r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).After(slow).Return(reserved, nil).Once()
	u := r.cancelAt(time.Second, "customer asked")
	r.cancelWorkflowAt(2 * time.Second)
	got := r.execute()

	want := workflows.State{Status: transfer.StatusCancelled, FailureMessage: "customer asked"}
	require.Equal(t, want, got)
	r.check([]string{reserve, release},
		[]activities.ReleaseInput{{TransferID: transferID, Outcome: transfer.Outcome{
			Status: transfer.StatusCancelled, Message: "customer asked"}}},
		nil, []string{"reserved", "cancelled"})

	require.True(t, u.accepted, "update accepted")
	require.True(t, u.completed, "update completed")
	require.NoError(t, u.err, "the cancel update failed although the transfer was cancelled as it asked")
	require.Equal(t, want, u.state(t), "update result")
}

func TestTransferStatusQuery(t *testing.T) {
	r := newSagaRun(t)
	// Each step takes 5s on the test clock: reserve 0-5s, debit 5-10s, credit 10-15s.
	r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).After(slow).Return(reserved, nil).Once()
	r.env.OnActivity(a.Debit, mock.Anything, mock.Anything).After(slow).Return(debited, nil).Once()
	r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).After(slow).Return(completed, nil).Once()
	seen := map[string]workflows.State{}
	seenStarted := map[string][]string{}
	queryAt := func(label string, d time.Duration) {
		r.env.RegisterDelayedCallback(func() {
			seen[label] = r.query()
			seenStarted[label] = r.startedSoFar()
		}, d)
	}
	queryAt("during reserve", 1*time.Second)
	queryAt("during debit", 6*time.Second)
	queryAt("during credit", 11*time.Second)
	got := r.execute()

	require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, got)
	tests := []struct {
		label       string
		wantStatus  transfer.Status
		wantStarted []string
	}{
		{"during reserve", transfer.StatusPending, []string{reserve}},
		{"during debit", transfer.StatusReserved, []string{reserve, debit}},
		{"during credit", transfer.StatusDebited, []string{reserve, debit, credit}},
	}
	for _, tt := range tests {
		require.Contains(t, seen, tt.label, "query %s did not run", tt.label)
		require.Equal(t, tt.wantStarted, seenStarted[tt.label], "activities started at the query %s", tt.label)
		require.Equal(t, workflows.State{Status: tt.wantStatus}, seen[tt.label], "status query %s", tt.label)
	}
	require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, r.query(), "status query after the end")
}

func TestStartOptions(t *testing.T) {
	got := workflows.StartOptions(input, "custom-queue")

	require.Equal(t, transferID.String(), got.ID, "workflow id is the transfer id")
	require.Equal(t, "custom-queue", got.TaskQueue)
	require.Equal(t, enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE, got.WorkflowIDReusePolicy)
	require.Equal(t, enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING, got.WorkflowIDConflictPolicy)

	sa := got.TypedSearchAttributes
	require.Equal(t, 5, sa.Size(), "search attributes: %v", sa.GetUntypedValues())
	keywords := []struct {
		key  temporal.SearchAttributeKeyKeyword
		want string
	}{
		{workflows.AttrStatus, "pending"},
		{workflows.AttrFromAccount, input.FromAccountID.String()},
		{workflows.AttrToAccount, input.ToAccountID.String()},
		{workflows.AttrCurrency, "USD"},
	}
	for _, kw := range keywords {
		v, ok := sa.GetKeyword(kw.key)
		require.True(t, ok, "search attribute %s missing", kw.key.GetName())
		require.Equal(t, kw.want, v, "search attribute %s", kw.key.GetName())
	}
	amount, ok := sa.GetInt64(workflows.AttrAmount)
	require.True(t, ok, "search attribute %s missing", workflows.AttrAmount.GetName())
	require.Equal(t, int64(1250), amount, "search attribute %s", workflows.AttrAmount.GetName())
}

// TestSearchAttributeNames checks the names and types against ledger.md and against what the
// worker registers in the namespace.
func TestSearchAttributeNames(t *testing.T) {
	want := map[string]enumspb.IndexedValueType{
		"TransferStatus": enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		"FromAccountId":  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		"ToAccountId":    enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		"Currency":       enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		"AmountMinor":    enumspb.INDEXED_VALUE_TYPE_INT,
	}
	got := map[string]enumspb.IndexedValueType{}
	for key := range workflows.StartOptions(input, workflows.DefaultTaskQueue).TypedSearchAttributes.GetUntypedValues() {
		got[key.GetName()] = key.GetValueType()
	}
	require.Equal(t, want, got, "search attributes set at start")
	want["ScheduledFor"] = enumspb.INDEXED_VALUE_TYPE_DATETIME
	want["HoldExpiresAt"] = enumspb.INDEXED_VALUE_TYPE_DATETIME
	require.Equal(t, want, worker.SearchAttributes, "search attributes the worker registers")
}

// TestTransferStepsRunAsLocalActivities checks that new transfers run every step as a local
// activity, the fast path.
func TestTransferStepsRunAsLocalActivities(t *testing.T) {
	r := newSagaRun(t)
	got := r.execute()
	require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, got)
	r.check([]string{reserve, debit, credit}, nil, nil, []string{"reserved", "debited", "completed"})
	require.Equal(t, 3, r.local, "reserve, debit and credit run as local activities")
}

// TestTransferNaiveRunsRegularActivities checks the naive variant, kept for the bench: the same saga
// with regular activities, on its success and refund paths.
func TestTransferNaiveRunsRegularActivities(t *testing.T) {
	r := newSagaRun(t)
	r.in.Naive = true
	got := r.execute()
	require.Equal(t, workflows.State{Status: transfer.StatusCompleted}, got)
	r.check([]string{reserve, debit, credit}, nil, nil, []string{"reserved", "debited", "completed"})
	require.Equal(t, 0, r.local, "naive steps run as regular activities")

	r = newSagaRun(t)
	r.in.Naive = true
	r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).
		Return(activities.CreditResult{}, refused(transfer.StatusDebited, transfer.CodeAccountInactive, "destination frozen")).Once()
	got = r.execute()
	require.Equal(t, workflows.State{Status: transfer.StatusFailed, FailureCode: transfer.CodeAccountInactive, FailureMessage: "destination frozen"}, got)
	r.check([]string{reserve, debit, credit, refund}, nil,
		[]activities.RefundInput{{TransferID: transferID, FailureCode: transfer.CodeAccountInactive, Message: "destination frozen"}},
		[]string{"reserved", "debited", "failed"})
	require.Equal(t, 0, r.local, "naive steps run as regular activities")
}
