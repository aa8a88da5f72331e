//go:build linux

package chaos_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// opKind is what an operator does to a transfer's workflow through the Temporal API.
type opKind string

const (
	// opCancel is the Web UI's "Request Cancellation" (RequestCancelWorkflowExecution). Whether it
	// wins is the ledger's to say: release unless debited.
	opCancel opKind = "cancel"
	// opTerminate is the Web UI's "Terminate": the run ends at once, whatever its row says; the
	// reconciler then finishes a transfer that was not final in a new run.
	opTerminate opKind = "terminate"
)

// opTiming is when, after the transfer's 202, the operator acted.
type opTiming string

const (
	// atOnce is right after the 202, when the workflow's first task, which runs the whole saga in
	// local activities, is most likely running: a cancel then makes the server refuse the task's
	// completion, and the saga replays with the ledger ahead of its history.
	atOnce opTiming = "at once"
	// midTask is the moment the ledger says the transfer is reserved: its first workflow task is
	// then running the saga's steps, and the action lands before the task can complete.
	midTask opTiming = "mid-task"
	// shortly is a few to a few hundred milliseconds after the 202.
	shortly opTiming = "shortly"
	// later is whenever the operator's sweep found the workflow running, as someone listing the
	// transfers stuck in the Web UI would: mostly while a fault holds them up.
	later opTiming = "later"
)

// operatorAction is what an operator did to one transfer's workflow.
type operatorAction struct {
	kind   opKind
	timing opTiming
	// landed says the server accepted the action for a running workflow; late says the workflow
	// had already closed; err says neither was known before the suite gave up.
	landed, late bool
	err          error
	// runID is the run the operator terminated.
	runID string
}

// operator acts on transfers' workflows through the Temporal API, with the SDK's client, as the Web
// UI does, against the suite's Temporal server.
type operator struct {
	t  *testing.T
	tc client.Client
	// namespace is the namespace of the transfers' workflows.
	namespace string
	// db reads the ledger, for the actions timed by a transfer's row.
	db *sql.DB
	// until bounds the retries of an action while Temporal is restarting.
	until time.Time
}

func dialOperator(t *testing.T, addr, namespace string, db *sql.DB) *operator {
	t.Helper()
	tc, err := client.Dial(client.Options{HostPort: addr, Namespace: namespace,
		Logger: tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatalf("operator: dial Temporal: %v", err)
	}
	t.Cleanup(tc.Close)
	return &operator{t: t, tc: tc, namespace: namespace, db: db, until: time.Now().Add(10 * time.Minute)}
}

// act does a's action to the transfer's workflow, sending it again while Temporal does not answer
// (it may be restarting), until the server has accepted it or said the workflow had closed.
func (op *operator) act(ctx context.Context, id string, a *operatorAction) {
	var last error
	for attempt := 1; ; attempt++ {
		if time.Now().After(op.until) {
			a.err = fmt.Errorf("%s of %s: no answer after %d attempts; last: %w", a.kind, id, attempt-1, last)
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		switch a.kind {
		case opCancel:
			err = op.tc.CancelWorkflow(rctx, id, "")
		case opTerminate:
			// The Web UI terminates the run it shows, the latest.
			var d *workflowservice.DescribeWorkflowExecutionResponse
			if d, err = op.tc.DescribeWorkflowExecution(rctx, id, ""); err == nil {
				info := d.GetWorkflowExecutionInfo()
				if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
					cancel()
					a.late = true
					return
				}
				a.runID = info.GetExecution().GetRunId()
				err = op.tc.TerminateWorkflow(rctx, id, a.runID, "chaos: terminated by an operator")
			}
		}
		cancel()
		var gone *serviceerror.NotFound
		switch {
		case err == nil:
			a.landed = true
			return
		case errors.As(err, &gone):
			a.late = true
			return
		}
		last = err
		time.Sleep(time.Duration(100*min(attempt, 10)) * time.Millisecond)
	}
}

// whenReserved waits, for at most a second, until the transfer's row is no longer pending: the
// worker running its first workflow task has reserved it, and is about to debit it.
func (op *operator) whenReserved(ctx context.Context, id string) {
	// One connection for the watch: the suite's pool keeps none idle, and a new connection per
	// read would take longer than the task it watches.
	conn, err := op.db.Conn(ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		var status string
		if err := conn.QueryRowContext(ctx, `SELECT status FROM transfers WHERE id = $1`, id).Scan(&status); err != nil || status != "pending" {
			return
		}
		time.Sleep(500 * time.Microsecond)
	}
}

// runs returns the run ids of the transfer's workflow, as visibility lists them.
func (op *operator) runs(ctx context.Context, id string) ([]string, error) {
	resp, err := op.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: op.namespace, Query: fmt.Sprintf("WorkflowId = '%s'", id), PageSize: 100})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range resp.GetExecutions() {
		ids = append(ids, e.GetExecution().GetRunId())
	}
	return ids, nil
}

// sweep is an operator watching the Web UI while the load runs: every sweepEvery or so it lists
// the transfer workflows that are running, and cancels or terminates one of them that no one has
// acted on yet.
func (op *operator) sweep(ctx context.Context, b *book, r *rand.Rand, clock *loadClock) {
	query := "WorkflowType = 'TransferWorkflow' AND ExecutionStatus = 'Running'"
	for clock.on() {
		time.Sleep(sweepEvery/2 + time.Duration(r.Int64N(int64(sweepEvery))))
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := op.tc.ListWorkflow(rctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: op.namespace, Query: query, PageSize: 200})
		cancel()
		if err != nil {
			continue // Temporal is restarting; the next sweep looks again.
		}
		execs := resp.GetExecutions()
		for _, i := range r.Perm(len(execs)) {
			id := execs[i].GetExecution().GetWorkflowId()
			b.mu.Lock()
			o := b.byID[id]
			b.mu.Unlock()
			a := &operatorAction{kind: opCancel, timing: later}
			if r.IntN(2) == 0 {
				a.kind = opTerminate
			}
			if o != nil && b.claim(o, a) {
				op.act(ctx, id, a)
				break
			}
		}
	}
}

// workflowResult is the transfer workflow's result, as much of it as the row holds.
type workflowResult struct {
	Status         string
	FailureCode    string
	FailureMessage string
}

// latest returns the status and run id of the transfer's latest run, once it has closed (it
// waits up to a minute for a running one).
func (op *operator) latest(ctx context.Context, id string) (enumspb.WorkflowExecutionStatus, string, error) {
	for deadline := time.Now().Add(time.Minute); ; {
		d, err := op.tc.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			return 0, "", err
		}
		info := d.GetWorkflowExecutionInfo()
		if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING || time.Now().After(deadline) {
			return info.GetStatus(), info.GetExecution().GetRunId(), nil
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// runHistory is a run's events, one line each, for a report, and what the suite counts in them.
type runHistory struct {
	lines []string
	// refused counts the workflow tasks whose completion the server refused for an event that
	// arrived while they ran (UnhandledCommand: a cancel landed during a task that would have
	// closed the run); timedOut those that timed out (their worker died holding them).
	refused, timedOut int
	// cancelDuringTask says the cancel request arrived while a workflow task ran: the server
	// buffered it and wrote it after the task's end, with the earlier time of its arrival.
	cancelDuringTask bool
}

// history returns the run's history.
func (op *operator) history(ctx context.Context, id, runID string) (runHistory, error) {
	var h runHistory
	it := op.tc.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var taskEnded time.Time // when the task whose end is the previous event ended
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return h, err
		}
		at := e.GetEventTime().AsTime()
		if e.GetWorkflowExecutionCancelRequestedEventAttributes() != nil && at.Before(taskEnded) {
			h.cancelDuringTask = true
		}
		taskEnded = time.Time{}
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED, enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
			taskEnded = at
		}
		line := fmt.Sprintf("%3d %s %s", e.GetEventId(), at.Format("15:04:05.000"), e.GetEventType())
		switch {
		case e.GetWorkflowTaskFailedEventAttributes() != nil:
			cause := e.GetWorkflowTaskFailedEventAttributes().GetCause()
			line += " " + cause.String()
			if cause == enumspb.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND {
				h.refused++
			}
		case e.GetWorkflowTaskTimedOutEventAttributes() != nil:
			line += " " + e.GetWorkflowTaskTimedOutEventAttributes().GetTimeoutType().String()
			h.timedOut++
		case e.GetMarkerRecordedEventAttributes() != nil:
			line += " " + e.GetMarkerRecordedEventAttributes().GetMarkerName()
		case e.GetWorkflowExecutionCompletedEventAttributes() != nil:
			for _, p := range e.GetWorkflowExecutionCompletedEventAttributes().GetResult().GetPayloads() {
				line += " " + string(p.GetData())
			}
		}
		h.lines = append(h.lines, line)
	}
	return h, nil
}

// checkOperated checks every transfer an operator cancelled or terminated, and every one debited
// when the workers were killed: its latest workflow run completed with its row's final status,
// failure code and message as its result (or it is the run the operator terminated over a row
// that was already final); an operator's cancel that landed won or lost as the row says. It counts
// all of it in sum.
func (s *stack) checkOperated(ctx context.Context, op *operator, b *book, sum *summary) {
	t := s.t
	t.Helper()
	rows := s.rows()
	sum.byTiming = map[opTiming]int{}
	check := func(id string, a *operatorAction) {
		row, ok := rows[id]
		if !ok {
			return // Never recorded (refused or unanswered): check has reported it.
		}
		st, runID, err := op.latest(ctx, id)
		if err != nil {
			sum.resultMismatches++
			t.Errorf("transfer %s (%s): its workflow: %v", id, row.status, err)
			return
		}
		report := func(format string, args ...any) {
			sum.resultMismatches++
			h, _ := op.history(ctx, id, runID)
			t.Errorf("transfer %s: %s\n  row: %s %q %q\n  latest run %s history:\n    %s", id, fmt.Sprintf(format, args...),
				row.status, row.failureCode, row.failureMessage, runID, strings.Join(h.lines, "\n    "))
		}
		terminated := a != nil && a.kind == opTerminate && a.landed
		switch st {
		case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
			var res workflowResult
			if err := op.tc.GetWorkflow(ctx, id, runID).Get(ctx, &res); err != nil {
				report("result: %v", err)
				return
			}
			sum.resultsRead++
			if res.Status != row.status || res.FailureCode != row.failureCode || res.FailureMessage != row.failureMessage {
				report("the workflow's result is %s %q %q, its row says otherwise", res.Status, res.FailureCode, res.FailureMessage)
			}
			if terminated && runID != a.runID {
				sum.repaired++
			}
		case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
			if !isFinal(row.status) || !terminated || runID != a.runID {
				report("its latest run was terminated, and no new run finished it")
				return
			}
			sum.finalFirst++
		default:
			report("its latest run ended %s", st)
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	for id, o := range b.byID {
		a := o.op
		if a == nil {
			continue
		}
		row := rows[id]
		if a.err != nil {
			t.Errorf("transfer %s: the operator's %s: %v", id, a.kind, a.err)
		}
		if a.landed {
			sum.byTiming[a.timing]++
		}
		switch a.kind {
		case opCancel:
			sum.opCancels++
			switch {
			case a.landed && row.status == "cancelled":
				sum.opCancelsLanded++
				sum.opCancelsWon++
			case a.landed:
				sum.opCancelsLanded++
				sum.opCancelsLost++
			case a.late:
				sum.opCancelsLate++
			}
		case opTerminate:
			sum.terminations++
			switch {
			case a.landed:
				sum.terminationsLanded++
			case a.late:
				sum.terminationsLate++
			}
		}
		if !a.landed {
			continue
		}
		if _, ok := rows[id]; ok && !isFinal(row.status) {
			t.Errorf("transfer %s: %s by an operator (%s), still %s after the drain", id, a.kind, a.timing, row.status)
		}
		check(id, a)
		if a.kind == opCancel {
			if _, runID, err := op.latest(ctx, id); err == nil {
				if h, err := op.history(ctx, id, runID); err == nil && (h.cancelDuringTask || h.refused > 0) {
					sum.duringTask++
					if h.refused > 0 {
						sum.refusedTasks++
					}
				}
			}
		}
	}
	s.evidence.add(func(e *evidence) {
		for _, id := range e.debitKilled {
			if o := b.byID[id]; o == nil || o.op == nil || !o.op.landed {
				check(id, nil)
			}
			// The kill hit the saga between its steps if the task that ran the debit was lost. An
			// operator may have terminated that run since, so every run is looked at.
			runs, err := op.runs(ctx, id)
			if err != nil {
				t.Logf("transfer %s: its runs: %v", id, err)
			}
			var lines []string
			lost := false
			for _, runID := range runs {
				h, err := op.history(ctx, id, runID)
				lost = lost || err == nil && h.timedOut > 0
				lines = append(append(lines, "run "+runID), h.lines...)
			}
			if lost {
				sum.lostTasks++
			} else {
				t.Logf("transfer %s, debited when every worker was killed: no workflow task timed out in its %d runs:\n    %s", id, len(runs), strings.Join(lines, "\n    "))
			}
		}
	})
}

func isFinal(status string) bool {
	return status == "completed" || status == "failed" || status == "cancelled"
}
