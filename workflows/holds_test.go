package workflows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/workflows"
)

// The holds' tests run on the SDK's time-skipping test environment: a week passes in milliseconds.
// The ledger is mocked here, answering as step_capture, step_expire and step_due do; the real
// clock's part (a capture that reaches the ledger after the expiry loses) is the ledger's tests'
// and the end-to-end tests'.

const (
	capture = "Capture"
	expire  = "Expire"
	due     = "Due"
)

// start is the test environment's start time, so expiries and schedules are known in advance. It
// is the wall clock's now: the SDK measures a local activity's retry budget against the wall clock,
// so a fixed date in the past made a local step's retries look long expired.
var start = time.Now().UTC().Truncate(time.Second)

// newHoldRun returns a run of a manual transfer whose reserve places a hold expiring after holdFor.
func newHoldRun(t *testing.T, holdFor time.Duration) *sagaRun {
	r := newSagaRun(t)
	r.env.SetStartTime(start)
	r.in.CaptureMethod = transfer.CaptureManual
	r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).Return(
		activities.ReserveResult{Row: transfer.Outcome{Status: transfer.StatusReserved, HoldExpiresAt: start.Add(holdFor)}}, nil).Maybe()
	r.holdExpires = start.Add(holdFor)
	r.rechecks = true
	return r
}

// ledgerExpiry answers step_expire as the ledger does for a hold expiring at at: unchanged before
// that time (on the environment's clock), expired from then on.
func (r *sagaRun) ledgerExpiry(at time.Time) func(context.Context, activities.ExpireInput) (activities.ExpireResult, error) {
	return func(context.Context, activities.ExpireInput) (activities.ExpireResult, error) {
		if r.env.Now().Before(at) {
			return activities.ExpireResult{Row: transfer.Outcome{Status: transfer.StatusReserved, HoldExpiresAt: at}}, nil
		}
		return activities.ExpireResult{Row: transfer.Outcome{Status: transfer.StatusCancelled, Code: transfer.CodeHoldExpired,
			Message: "the hold expired", HoldExpiresAt: at}}, nil
	}
}

// count returns how many times the activity started.
func (r *sagaRun) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.started {
		if s == name {
			n++
		}
	}
	return n
}

// captured is the ledger's answer to a capture that won.
func captured(amount int64) activities.CaptureResult {
	return activities.CaptureResult{Row: transfer.Outcome{Status: transfer.StatusDebited, HoldExpiresAt: start.Add(transfer.DefaultHoldFor), CapturedAmount: amount}}
}

// completedCapture is the credit's answer after a capture of amount.
func completedCapture(amount int64) activities.CreditResult {
	return activities.CreditResult{Row: transfer.Outcome{Status: transfer.StatusCompleted, HoldExpiresAt: start.Add(transfer.DefaultHoldFor), CapturedAmount: amount}}
}

// expired is the ledger's answer to an expiry that took effect.
var expired = activities.ExpireResult{Row: transfer.Outcome{Status: transfer.StatusCancelled, Code: transfer.CodeHoldExpired,
	Message: "the hold expired", HoldExpiresAt: start.Add(transfer.DefaultHoldFor)}}

// captureAt sends the capture update for amount (zero: all) after d on the environment's clock.
func (r *sagaRun) captureAt(d time.Duration, amount int64, id string) *updateOutcome {
	u := &updateOutcome{}
	r.env.RegisterDelayedCallback(func() {
		r.env.UpdateWorkflow(workflows.UpdateCapture, id, &testsuite.TestUpdateCallback{
			OnAccept: func() { u.accepted = true },
			OnReject: func(err error) { u.rejected = err },
			OnComplete: func(result any, err error) {
				u.completed = true
				u.result, u.err = result, err
			},
		}, workflows.CaptureInput{Amount: amount})
	}, d)
	return u
}

// code returns the application error type of err, or "" when it has none.
func code(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Type()
	}
	return ""
}

func TestHoldExpiresAfterSevenDays(t *testing.T) {
	r := newHoldRun(t, transfer.DefaultHoldFor)
	var expiredAt time.Time
	ledger := r.ledgerExpiry(start.Add(transfer.DefaultHoldFor))
	r.env.OnActivity(a.Expire, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.ExpireInput) (activities.ExpireResult, error) {
		res, err := ledger(ctx, in)
		if res.Row.Status == transfer.StatusCancelled && expiredAt.IsZero() {
			expiredAt = r.env.Now()
		}
		return res, err
	})
	got := r.execute()
	require.Equal(t, transfer.StatusCancelled, got.Status)
	require.Equal(t, transfer.CodeHoldExpired, got.FailureCode)
	require.False(t, expiredAt.Before(start.Add(transfer.DefaultHoldFor)), "expiry asked of the ledger at %v, before the hold's expiry", expiredAt)
	require.True(t, expiredAt.Before(start.Add(transfer.DefaultHoldFor+time.Minute)), "expiry asked of the ledger at %v, long after the hold's expiry", expiredAt)
	r.check([]string{reserve}, nil, nil, []string{"reserved", "cancelled"})
	// The saga asked the ledger every hour, and the last time it decided.
	require.Equal(t, 7*24, r.count(expire), "the ledger asked every hour of the week")
	require.Equal(t, []time.Time{start.Add(transfer.DefaultHoldFor)}, r.expiries, "HoldExpiresAt upserted with the hold")
}

// TestHoldExpiryWaitsForTheLedgersClock: the timer fires, but the ledger's clock is a moment behind
// and step_expire changes nothing; the saga asks again, and the hold stays open to a capture.
func TestHoldExpiryWaitsForTheLedgersClock(t *testing.T) {
	r := newHoldRun(t, time.Hour)
	calls := 0
	r.env.OnActivity(a.Expire, mock.Anything, mock.Anything).Return(func(context.Context, activities.ExpireInput) (activities.ExpireResult, error) {
		calls++
		if calls == 1 {
			return activities.ExpireResult{Row: transfer.Outcome{Status: transfer.StatusReserved, HoldExpiresAt: start.Add(time.Hour)}}, nil
		}
		return expired, nil
	})
	got := r.execute()
	require.Equal(t, transfer.CodeHoldExpired, got.FailureCode)
	r.rechecks = false
	r.check([]string{reserve, expire, expire}, nil, nil, []string{"reserved", "cancelled"})
}

func TestCaptureOneSecondBeforeExpiry(t *testing.T) {
	r := newHoldRun(t, transfer.DefaultHoldFor)
	r.env.OnActivity(a.Capture, mock.Anything, activities.CaptureInput{TransferID: transferID, Amount: input.Amount}).Return(captured(input.Amount), nil).Once()
	r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).Return(completedCapture(input.Amount), nil).Once()
	u := r.captureAt(transfer.DefaultHoldFor-time.Second, 0, "capture")
	got := r.execute()
	require.True(t, u.accepted, "capture accepted")
	require.NoError(t, u.err, "capture answered")
	require.Equal(t, input.Amount, u.state(t).CapturedAmount, "capture's answer")
	require.Equal(t, transfer.StatusCompleted, got.Status)
	require.Equal(t, input.Amount, got.CapturedAmount)
	r.check([]string{reserve, capture, credit}, nil, nil, []string{"reserved", "debited", "completed"})
	q := r.query()
	require.Equal(t, start.Add(transfer.DefaultHoldFor), q.HoldExpiresAt, "status query shows the hold's expiry")
	require.Equal(t, input.Amount, q.CapturedAmount, "status query shows the captured amount")
}

func TestPartialCapture(t *testing.T) {
	r := newHoldRun(t, transfer.DefaultHoldFor)
	r.env.OnActivity(a.Capture, mock.Anything, activities.CaptureInput{TransferID: transferID, Amount: 500}).Return(captured(500), nil).Once()
	r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).Return(completedCapture(500), nil).Once()
	first := r.captureAt(time.Hour, 500, "capture-500")
	// Retrying the same capture is answered as the first; another amount is refused.
	again := r.captureAt(time.Hour, 500, "capture-500-again")
	other := r.captureAt(time.Hour, 600, "capture-600")
	got := r.execute()
	require.NoError(t, first.err)
	require.True(t, again.completed, "the repeated capture was answered")
	require.NoError(t, again.err)
	require.Equal(t, int64(500), again.state(t).CapturedAmount)
	require.Equal(t, string(transfer.CodeNotCapturable), code(other.err), "a capture of another amount: %v", other.err)
	require.Equal(t, int64(500), got.CapturedAmount)
	r.check([]string{reserve, capture, credit}, nil, nil, []string{"reserved", "debited", "completed"})
}

// TestCaptureAndCancelTogether: a capture and a cancel arrive at the same moment. The saga asks
// the ledger for one of them; its answer decides, and the other is refused.
func TestCaptureAndCancelTogether(t *testing.T) {
	for _, ledgerSays := range []string{"cancel wins", "capture won first"} {
		t.Run(ledgerSays, func(t *testing.T) {
			r := newHoldRun(t, transfer.DefaultHoldFor)
			if ledgerSays == "capture won first" {
				// The release finds the transfer captured (debited): the cancel lost.
				r.env.OnActivity(a.Release, mock.Anything, mock.Anything).Return(
					activities.ReleaseResult{Row: captured(input.Amount).Row}, nil).Once()
				r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).Return(completedCapture(input.Amount), nil).Once()
			}
			c := r.cancelAt(time.Hour, "changed my mind")
			p := r.captureAt(time.Hour, 0, "capture")
			got := r.execute()
			if ledgerSays == "cancel wins" {
				require.Equal(t, transfer.StatusCancelled, got.Status)
				require.NoError(t, c.err)
				require.Equal(t, string(transfer.CodeNotCapturable), code(p.err), "capture after the cancel won: %v", p.err)
				r.check([]string{reserve, release}, []activities.ReleaseInput{{TransferID: transferID,
					Outcome: transfer.Outcome{Status: transfer.StatusCancelled, Message: "changed my mind"}}}, nil, []string{"reserved", "cancelled"})
				return
			}
			require.Equal(t, transfer.StatusCompleted, got.Status)
			require.Equal(t, string(transfer.CodeNotCancellable), code(c.err), "cancel after the capture won: %v", c.err)
			require.NoError(t, p.err, "the capture the ledger had taken")
			require.Equal(t, input.Amount, p.state(t).CapturedAmount)
		})
	}
}

// TestCaptureRetriedAfterWorkerCrash: the capture's first attempt dies with the worker (its
// statement may have committed); the retry asks the ledger again, which answers with the capture
// it made once, and the capture's caller gets it.
func TestCaptureRetriedAfterWorkerCrash(t *testing.T) {
	r := newHoldRun(t, transfer.DefaultHoldFor)
	r.env.OnActivity(a.Capture, mock.Anything, mock.Anything).Return(activities.CaptureResult{}, errors.New("worker lost")).Once()
	r.env.OnActivity(a.Capture, mock.Anything, mock.Anything).Return(captured(input.Amount), nil).Once()
	r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).Return(completedCapture(input.Amount), nil).Once()
	u := r.captureAt(time.Minute, 0, "capture")
	// The client retries its capture too, once the first answered.
	retry := r.captureAt(2*time.Minute, 0, "capture-retry")
	got := r.execute()
	require.NoError(t, u.err)
	require.NoError(t, retry.err)
	require.Equal(t, transfer.StatusCompleted, got.Status)
	r.check([]string{reserve, capture, capture, credit}, nil, nil, []string{"reserved", "debited", "completed"})
}

func TestCaptureRefusedByTheLedgerLeavesTheHold(t *testing.T) {
	r := newHoldRun(t, time.Hour)
	r.env.OnActivity(a.Capture, mock.Anything, mock.Anything).Return(activities.CaptureResult{},
		refused(transfer.StatusReserved, transfer.CodeNotCapturable, "the hold expired")).Once()
	r.env.OnActivity(a.Expire, mock.Anything, mock.Anything).Return(expired, nil).Once()
	u := r.captureAt(59*time.Minute, 0, "capture")
	got := r.execute()
	require.Equal(t, string(transfer.CodeNotCapturable), code(u.err))
	require.Equal(t, transfer.CodeHoldExpired, got.FailureCode)
	r.rechecks = false
	r.check([]string{reserve, capture, expire}, nil, nil, []string{"reserved", "cancelled"})
}

func TestCaptureOfAnAutomaticTransferIsRejected(t *testing.T) {
	r := newSagaRun(t)
	u := r.captureAt(0, 0, "capture")
	r.execute()
	require.False(t, u.accepted)
	require.Equal(t, string(transfer.CodeNotCapturable), code(u.rejected), "rejection: %v", u.rejected)
}

func TestCaptureOfMoreThanTheHoldIsRejected(t *testing.T) {
	r := newHoldRun(t, time.Hour)
	r.env.OnActivity(a.Expire, mock.Anything, mock.Anything).Return(expired, nil)
	u := r.captureAt(time.Minute, input.Amount+1, "capture")
	r.execute()
	require.Equal(t, string(transfer.CodeCaptureExceedsHold), code(u.rejected), "rejection: %v", u.rejected)
}

func TestCancelWhileHeld(t *testing.T) {
	r := newHoldRun(t, transfer.DefaultHoldFor)
	c := r.cancelAt(24*time.Hour, "order cancelled")
	got := r.execute()
	require.NoError(t, c.err)
	require.Equal(t, transfer.StatusCancelled, got.Status)
	require.Equal(t, "order cancelled", got.FailureMessage)
	r.check([]string{reserve, release}, []activities.ReleaseInput{{TransferID: transferID,
		Outcome: transfer.Outcome{Status: transfer.StatusCancelled, Message: "order cancelled"}}}, nil, []string{"reserved", "cancelled"})
}

// TestCancelLosesToExpiry: a cancel is accepted while the hold waits, but the ledger's release
// finds the hold already expired (decided first, by a run whose task was lost): the cancel is
// answered not_cancellable, and the transfer ends as the ledger says.
func TestCancelLosesToExpiry(t *testing.T) {
	r := newHoldRun(t, time.Hour)
	r.env.OnActivity(a.Release, mock.Anything, mock.Anything).Return(activities.ReleaseResult{Row: expired.Row}, nil).Once()
	c := r.cancelAt(30*time.Minute, "too late")
	got := r.execute()
	require.Equal(t, transfer.CodeHoldExpired, got.FailureCode)
	require.True(t, c.accepted)
	require.Equal(t, string(transfer.CodeNotCancellable), code(c.err), "cancel after the expiry won: %v", c.err)
}

// TestWorkflowCancelledWhileHeld: an operator cancels the workflow in the Web UI while it holds:
// the hold is released.
func TestWorkflowCancelledWhileHeld(t *testing.T) {
	r := newHoldRun(t, transfer.DefaultHoldFor)
	r.cancelWorkflowAt(time.Hour)
	got := r.execute()
	require.Equal(t, transfer.StatusCancelled, got.Status)
	r.check([]string{reserve, release}, []activities.ReleaseInput{{TransferID: transferID,
		Outcome: transfer.Outcome{Status: transfer.StatusCancelled, Message: "cancelled before the debit"}}}, nil, []string{"reserved", "cancelled"})
}

func TestScheduledAYearAhead(t *testing.T) {
	r := newSagaRun(t)
	r.env.SetStartTime(start)
	at := start.AddDate(1, 0, 0)
	r.in.ScheduledFor = at
	var dueAt time.Time
	r.env.OnActivity(a.Due, mock.Anything, mock.Anything).Return(func(context.Context, activities.DueInput) (activities.DueResult, error) {
		dueAt = r.env.Now()
		return activities.DueResult{Row: transfer.Outcome{Status: transfer.StatusPending}}, nil
	}).Once()
	var before workflows.State
	r.env.RegisterDelayedCallback(func() { before = r.query() }, time.Hour)
	got := r.execute()
	require.Equal(t, transfer.StatusScheduled, before.Status, "status query while scheduled")
	require.Equal(t, at, before.ScheduledFor, "status query while scheduled")
	require.Equal(t, transfer.StatusCompleted, got.Status)
	require.False(t, dueAt.Before(at), "ran at %v, before its time %v", dueAt, at)
	require.Equal(t, at, got.ScheduledFor)
	r.check([]string{due, reserve, debit, credit}, nil, nil, []string{"pending", "reserved", "debited", "completed"})
}

func TestScheduledThenCancelled(t *testing.T) {
	r := newSagaRun(t)
	r.env.SetStartTime(start)
	r.in.ScheduledFor = start.Add(48 * time.Hour)
	c := r.cancelAt(time.Hour, "no longer needed")
	p := r.captureAt(30*time.Minute, 0, "capture")
	got := r.execute()
	require.NoError(t, c.err)
	require.Equal(t, transfer.StatusCancelled, got.Status)
	require.Equal(t, string(transfer.CodeNotCapturable), code(p.rejected), "a capture of an automatic scheduled transfer: %v", p.rejected)
	r.check([]string{release}, []activities.ReleaseInput{{TransferID: transferID,
		Outcome: transfer.Outcome{Status: transfer.StatusCancelled, Message: "no longer needed"}}}, nil, []string{"cancelled"})
}

// TestScheduledHold: a scheduled manual transfer places its hold at its time and waits there for
// its capture.
func TestScheduledHold(t *testing.T) {
	at := start.Add(24 * time.Hour)
	r := newSagaRun(t)
	r.env.SetStartTime(start)
	r.in.CaptureMethod = transfer.CaptureManual
	r.in.ScheduledFor = at
	r.env.OnActivity(a.Due, mock.Anything, mock.Anything).Return(activities.DueResult{Row: transfer.Outcome{Status: transfer.StatusPending}}, nil).Once()
	r.env.OnActivity(a.Reserve, mock.Anything, mock.Anything).Return(
		activities.ReserveResult{Row: transfer.Outcome{Status: transfer.StatusReserved, HoldExpiresAt: at.Add(transfer.DefaultHoldFor)}}, nil).Once()
	r.holdExpires, r.rechecks = at.Add(transfer.DefaultHoldFor), true
	// A capture before the time is put to the ledger, which refuses it: nothing is held yet.
	early := r.captureAt(time.Hour, 0, "early")
	r.env.OnActivity(a.Capture, mock.Anything, mock.Anything).Return(activities.CaptureResult{},
		refused(transfer.StatusScheduled, transfer.CodeNotCapturable, "holds nothing yet")).Once()
	r.env.OnActivity(a.Capture, mock.Anything, mock.Anything).Return(captured(input.Amount), nil).Once()
	r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).Return(completedCapture(input.Amount), nil).Once()
	later := r.captureAt(48*time.Hour, 0, "later")
	got := r.execute()
	require.Equal(t, string(transfer.CodeNotCapturable), code(early.err), "early capture: %v", early.err)
	require.NoError(t, later.err)
	require.Equal(t, transfer.StatusCompleted, got.Status)
	r.check([]string{capture, due, reserve, capture, credit}, nil, nil, []string{"pending", "reserved", "debited", "completed"})
}

// TestHoldNoticesACaptureItMissed: the ledger captured the hold in a run whose workflow task was
// lost, and the capture update is not delivered again. The saga re-asks the ledger while it waits
// (at least every hour), finds the transfer captured, and credits it then, not at the hold's expiry.
func TestHoldNoticesACaptureItMissed(t *testing.T) {
	r := newHoldRun(t, 3*24*time.Hour)
	var creditedAt time.Time
	r.env.OnActivity(a.Expire, mock.Anything, mock.Anything).Return(activities.ExpireResult{Row: captured(input.Amount).Row}, nil).Once()
	r.env.OnActivity(a.Credit, mock.Anything, mock.Anything).Return(func(context.Context, activities.CreditInput) (activities.CreditResult, error) {
		creditedAt = r.env.Now()
		return completedCapture(input.Amount), nil
	}).Once()
	got := r.execute()
	require.Equal(t, transfer.StatusCompleted, got.Status)
	require.Equal(t, input.Amount, got.CapturedAmount)
	require.True(t, creditedAt.Before(start.Add(2*time.Hour)), "credited at %v, %v after the hold: the saga waited for the expiry", creditedAt, creditedAt.Sub(start))
}

// TestScheduleWaitsForTheLedgersClock: the timer fires a moment before the database's clock
// reaches scheduled_for; step_due answers still scheduled, and the saga asks again shortly.
func TestScheduleWaitsForTheLedgersClock(t *testing.T) {
	r := newSagaRun(t)
	r.env.SetStartTime(start)
	r.in.ScheduledFor = start.Add(time.Hour)
	calls := 0
	r.env.OnActivity(a.Due, mock.Anything, mock.Anything).Return(func(context.Context, activities.DueInput) (activities.DueResult, error) {
		calls++
		if calls == 1 {
			return activities.DueResult{Row: transfer.Outcome{Status: transfer.StatusScheduled}}, nil
		}
		return activities.DueResult{Row: transfer.Outcome{Status: transfer.StatusPending}}, nil
	})
	got := r.execute()
	require.Equal(t, transfer.StatusCompleted, got.Status)
	r.check([]string{due, due, reserve, debit, credit}, nil, nil, []string{"pending", "reserved", "debited", "completed"})
}

// TestExpiryRecheckBacksOff: a ledger clock that lags by minutes is asked again after 1, 2, 4, 8 s
// and so on, up to a minute apart, not every second.
func TestExpiryRecheckBacksOff(t *testing.T) {
	r := newHoldRun(t, time.Hour)
	var asked []time.Duration
	r.env.OnActivity(a.Expire, mock.Anything, mock.Anything).Return(func(context.Context, activities.ExpireInput) (activities.ExpireResult, error) {
		asked = append(asked, r.env.Now().Sub(start))
		if len(asked) < 9 {
			return activities.ExpireResult{Row: transfer.Outcome{Status: transfer.StatusReserved, HoldExpiresAt: start.Add(time.Hour)}}, nil
		}
		return expired, nil
	})
	got := r.execute()
	require.Equal(t, transfer.CodeHoldExpired, got.FailureCode)
	var gaps []time.Duration
	for i := 1; i < len(asked); i++ {
		gaps = append(gaps, (asked[i] - asked[i-1]).Round(time.Second))
	}
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
		32 * time.Second, time.Minute, time.Minute}, gaps, "waits between the asks of a lagging ledger")
}
