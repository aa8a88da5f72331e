package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/google/uuid"
	"go.temporal.io/sdk/activity"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

// The faults and outcomes the property test counts. Each fault must happen at least once in a run
// of many seeds: a fault that never happened is a blind spot, and the run fails.
const (
	faultTransient        = "transient error, the step not run"
	faultDuplicate        = "step committed, then a transient error (run again)"
	faultAheadAtStart     = "ledger ahead of the history at the start"
	faultAheadAtStep      = "ledger ahead of the history at a step"
	faultFreezeSource     = "source frozen"
	faultFreezeDest       = "destination frozen"
	faultUnfreeze         = "account unfrozen"
	faultOutage           = "step outlived its local budget (regular activity)"
	faultUnderfunded      = "source underfunded"
	faultNaive            = "steps as regular activities (naive)"
	faultUpdateAtStart    = "cancel update at the start"
	faultUpdateBefore     = "cancel update during a step, before its statement"
	faultUpdateAfter      = "cancel update during a step, after its statement"
	faultCancelAtStart    = "workflow cancellation at the start"
	faultCancelBefore     = "workflow cancellation during a step, before its statement"
	faultCancelAfter      = "workflow cancellation during a step, after its statement"
	faultTerminated       = "run terminated midway (repair run needed)"
	faultTerminatedCommit = "run terminated right after a step committed"
	faultTerminatedFinal  = "run terminated after the ledger had finished"

	outcomeCancelWon  = "cancel won: the row is cancelled"
	outcomeCancelLost = "cancel accepted, but the ledger had debited"
	outcomeRejected   = "cancel update rejected (not cancellable)"
	outcomeMustWin    = "cancel in time, before the debit: it must win"
)

// requiredFaults are the faults and outcomes that a run of many seeds must have seen.
var requiredFaults = []string{
	faultTransient, faultDuplicate, faultAheadAtStart, faultAheadAtStep, faultFreezeSource, faultFreezeDest,
	faultUnfreeze, faultOutage, faultUnderfunded, faultNaive, faultUpdateAtStart, faultUpdateBefore, faultUpdateAfter,
	faultCancelAtStart, faultCancelBefore, faultCancelAfter, faultTerminated, faultTerminatedCommit,
	outcomeCancelWon, outcomeCancelLost, outcomeRejected, outcomeMustWin,
}

// errInjected is the transient error the fault store returns in place of a worker's or a database's
// failure: a plain error, which Temporal retries.
var errInjected = errors.New("injected fault: connection lost")

// tally counts what happened in one seed, by fault or outcome.
type tally map[string]int

// faultRates are the probabilities of the faults the fault store draws at each step call.
type faultRates struct {
	transient, duplicate, ahead, freeze, outage float64
}

// faultStore is the activities.Store of the property test: the real ledger, with faults drawn from
// the seed's random source at each step call. A worker's faults: the step fails transiently
// without running, or commits and then fails (the worker died before reporting, so Temporal runs it
// again), or the worker dies for good (the run is then terminated). A lost workflow task: before the
// step, the ledger runs steps of the saga that the history does not know of, as the lost task's
// local activities had committed them (or a zombie worker still commits them), so the ledger is
// ahead of the history. An operator: freezes or unfreezes the source or the destination. A
// database outage: the step fails for longer than its local budget and goes on as a regular
// activity. Every step call of one saga is serialized by the workflow, so the random source is
// drawn from in a deterministic order.
type faultStore struct {
	ledger   *ledger.Store
	id       uuid.UUID
	from, to uuid.UUID
	rates    faultRates
	// modelCancels lets the ledger's extra steps include the cancel's release: the seed cancels.
	modelCancels bool
	// dieAt is the step call at which the worker dies for good (0: never); dieAfterCommit says the
	// step commits first.
	dieAt          int
	dieAfterCommit bool
	// allowOutage lets one step outlive its local budget.
	allowOutage bool
	// deliver delivers the cancels due before (afterCommit false) or after the statement of the
	// step call; the step waits for them.
	deliver func(call int, afterCommit bool)

	mu          sync.Mutex
	rng         *rand.Rand
	seen        tally
	calls       int
	consecutive int
	dead        bool
	outage      bool
	outageUsed  bool
	// cancelledAhead says the ledger's extra steps included the cancel's release; aheadRuns counts
	// the times the ledger ran extra steps.
	cancelledAhead bool
	aheadRuns      int
	// debitAsked says the workflow has asked for the debit.
	debitAsked bool
	// trace is what happened, step by step, for the failure message of a seed.
	trace *[]string
	// err is the first unexpected error of a call the store made on its own.
	err error
}

var _ activities.Store = (*faultStore)(nil)

// maxConsecutive bounds the transient faults in a row of one step, so a regular activity's
// attempts (ten in the SDK's test environment) are never exhausted by them.
const maxConsecutive = 3

// Step runs the step on the real ledger, with the faults drawn for this call, and delivers the
// cancels due during it.
func (f *faultStore) Step(ctx context.Context, id uuid.UUID, step transfer.Step, o transfer.Outcome) (transfer.Outcome, error) {
	f.mu.Lock()
	f.calls++
	call := f.calls
	if step == transfer.StepDebit {
		f.debitAsked = true
	}
	f.mu.Unlock()
	if f.deliver != nil {
		f.deliver(call, false)
	}
	row, err := f.step(ctx, id, step, o, call)
	if f.deliver != nil {
		f.deliver(call, true)
	}
	return row, err
}

func (f *faultStore) step(ctx context.Context, id uuid.UUID, step transfer.Step, o transfer.Outcome, call int) (transfer.Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != f.id {
		f.fail(fmt.Errorf("step %s of transfer %s, want transfer %s", step, id, f.id))
		return transfer.Outcome{}, errInjected
	}
	if f.dead {
		return transfer.Outcome{}, errInjected
	}
	local := activity.GetInfo(ctx).IsLocalActivity
	if f.outage {
		if local {
			return transfer.Outcome{}, errInjected
		}
		// The local budget ran out and the step goes on as a regular activity: the outage ends.
		f.outage = false
		f.seen[faultOutage]++
		f.note("outage over: %s as a regular activity", step)
	}
	if call == f.dieAt {
		f.dead = true
		if f.dieAfterCommit {
			row, err := f.ledger.Step(ctx, id, step, o)
			f.note("%s committed (%s %v), then the worker died", step, row.Status, err)
			f.seen[faultTerminatedCommit]++
		} else {
			f.note("worker died before %s", step)
		}
		return transfer.Outcome{}, errInjected
	}
	if f.rng.Float64() < f.rates.freeze {
		f.toggleFreeze(ctx)
	}
	if f.rng.Float64() < f.rates.ahead && f.ahead(ctx, 1+f.rng.IntN(2)) > 0 {
		f.seen[faultAheadAtStep]++
	}
	if local && f.allowOutage && !f.outageUsed && f.rng.Float64() < f.rates.outage {
		f.outage, f.outageUsed = true, true
		f.note("outage begins at %s", step)
		return transfer.Outcome{}, errInjected
	}
	if f.consecutive < maxConsecutive {
		r := f.rng.Float64()
		switch {
		case r < f.rates.transient:
			f.consecutive++
			f.seen[faultTransient]++
			f.note("%s: transient error", step)
			return transfer.Outcome{}, errInjected
		case r < f.rates.transient+f.rates.duplicate:
			f.consecutive++
			f.seen[faultDuplicate]++
			row, err := f.ledger.Step(ctx, id, step, o)
			f.note("%s committed (%s %v), then a transient error", step, row.Status, err)
			return transfer.Outcome{}, errInjected
		}
	}
	f.consecutive = 0
	row, err := f.ledger.Step(ctx, id, step, o)
	f.note("%s: %s %q %v", step, row.Status, row.Code, err)
	return row, err
}

// toggleFreeze freezes an active source or destination, or unfreezes a frozen one, as an admin would.
func (f *faultStore) toggleFreeze(ctx context.Context) {
	acct, fault := f.from, faultFreezeSource
	if f.rng.IntN(2) == 1 {
		acct, fault = f.to, faultFreezeDest
	}
	a, err := f.ledger.Account(ctx, acct)
	if err != nil {
		f.fail(err)
		return
	}
	status := transfer.AccountFrozen
	if a.Status == transfer.AccountFrozen {
		status, fault = transfer.AccountActive, faultUnfreeze
	}
	if _, err := f.ledger.SetAccountStatus(ctx, transfer.Actor{}, acct, status); err != nil {
		f.fail(err)
		return
	}
	f.seen[fault]++
	f.note("%s (%s)", fault, acct)
}

// ahead runs up to n steps of the saga directly on the ledger, as a lost workflow task had, and
// returns how many it ran: none once the transfer has ended.
func (f *faultStore) ahead(ctx context.Context, n int) (ran int) {
	defer func() {
		if ran > 0 {
			f.aheadRuns++
		}
	}()
	cancel := f.modelCancels && f.rng.IntN(3) == 0
	for i := range n {
		done, err := modelStep(ctx, f.ledger, f.id, cancel, func(format string, args ...any) { f.note("ahead: "+format, args...) })
		if err != nil {
			f.fail(err)
			return i
		}
		if done {
			return i
		}
		if cancel {
			f.cancelledAhead = true
		}
	}
	return n
}

func (f *faultStore) note(format string, args ...any) {
	*f.trace = append(*f.trace, fmt.Sprintf(format, args...))
}

func (f *faultStore) fail(err error) {
	if f.err == nil {
		f.err = err
	}
}

// modelStep runs on the ledger the step the saga takes next from where the transfer stands, with its
// compensation when the ledger refuses it, and reports whether the transfer had already ended. With
// cancel it takes the cancel's release while the transfer is pending or reserved.
func modelStep(ctx context.Context, l *ledger.Store, id uuid.UUID, cancel bool, note func(string, ...any)) (done bool, err error) {
	tr, err := l.Transfer(ctx, id)
	if err != nil {
		return false, err
	}
	var step transfer.Step
	switch tr.Status {
	case transfer.StatusPending, transfer.StatusReserved:
		if cancel {
			row, err := l.Step(ctx, id, transfer.StepRelease, transfer.Outcome{Status: transfer.StatusCancelled, Message: "cancelled by a lost workflow task"})
			note("release (cancelled): %s %v", row.Status, err)
			return false, err
		}
		step = transfer.StepReserve
		if tr.Status == transfer.StatusReserved {
			step = transfer.StepDebit
		}
	case transfer.StatusDebited:
		step = transfer.StepCredit
	default:
		return true, nil
	}
	row, err := l.Step(ctx, id, step, transfer.Outcome{})
	note("%s: %s %v", step, row.Status, err)
	var refusal *transfer.Error
	if !errors.As(err, &refusal) {
		return false, err
	}
	o := transfer.Outcome{Status: transfer.StatusFailed, Code: refusal.Code, Message: refusal.Message}
	if step == transfer.StepCredit {
		row, err = l.Step(ctx, id, transfer.StepRefund, o)
		note("refund: %s %v", row.Status, err)
	} else {
		row, err = l.Step(ctx, id, transfer.StepRelease, o)
		note("release (failed): %s %v", row.Status, err)
	}
	return false, err
}
