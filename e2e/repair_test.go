package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc"

	"github.com/transferd/transferd/internal/sagatest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/workflows"
)

// strand records a transfer from a fresh account with 1000 to another, runs the ledger's steps up
// to the status given, and starts its workflow on a task queue that no worker polls, so the test can
// close the workflow from outside while the row is not final.
func (s *stack) strand(t *testing.T, upTo transfer.Status) (transfer.Transfer, transfer.Account, transfer.Account) {
	t.Helper()
	ctx := context.Background()
	tr, from, to := s.recorded(t, 1000, 250)
	steps := map[transfer.Status][]func(context.Context, uuid.UUID) error{
		transfer.StatusPending:  nil,
		transfer.StatusReserved: {s.store.Reserve},
		transfer.StatusDebited:  {s.store.Reserve, s.store.Debit},
	}[upTo]
	for _, step := range steps {
		if err := step(ctx, tr.ID); err != nil {
			t.Fatal(err)
		}
	}
	in := workflows.TransferInput{TransferID: tr.ID, Kind: tr.Kind, FromAccountID: from.ID, ToAccountID: to.ID, Amount: 250, Currency: "USD"}
	if _, err := s.temporal.ExecuteWorkflow(ctx, workflows.StartOptions(in, "nobody-polls"), workflows.WorkflowName, in); err != nil {
		t.Fatal(err)
	}
	return tr, from, to
}

// TestTerminatedWorkflowsAreRepaired terminates transfers' workflows as an operator does in the Web
// UI, at each status a row can have while its saga runs. The audit must report each (invariant 6),
// a client's repeat must not pretend all is well, and the reconciler must give each a new run that
// finishes the saga from where the ledger says it stands, after which the audit is clean.
func TestTerminatedWorkflowsAreRepaired(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	type stranded struct {
		tr       transfer.Transfer
		from, to transfer.Account
	}
	var all []stranded
	for _, st := range []transfer.Status{transfer.StatusPending, transfer.StatusReserved, transfer.StatusDebited} {
		tr, from, to := s.strand(t, st)
		if err := s.temporal.TerminateWorkflow(ctx, tr.ID.String(), "", "operator pressed Terminate"); err != nil {
			t.Fatal(err)
		}
		all = append(all, stranded{tr, from, to})
	}
	// The audit gives a transfer younger than a start's round trip the benefit of the doubt.
	time.Sleep(time.Until(all[len(all)-1].tr.CreatedAt.Add(11 * time.Second)))
	r, err := s.store.Audit(ctx, s.svc)
	if err != nil {
		t.Fatal(err)
	}
	stuck := map[string]bool{}
	for _, v := range r.Violations {
		if v.Invariant == ledger.InvWorkflows {
			stuck[v.Subject] = true
		}
	}
	for _, x := range all {
		if !stuck["transfer "+x.tr.ID.String()] {
			t.Errorf("audit did not report the terminated workflow of transfer %s: %+v", x.tr.ID, r.Violations)
		}
	}

	// The repair may need visibility to catch up with the terminations.
	deadline := time.Now().Add(20 * time.Second)
	repaired := 0
	for repaired < len(all) && time.Now().Before(deadline) {
		rep, err := s.svc.Reconcile(ctx, 0)
		if err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		repaired += rep.Repaired
		time.Sleep(200 * time.Millisecond)
	}
	if repaired != len(all) {
		t.Fatalf("reconcile repaired %d transfers, want %d", repaired, len(all))
	}
	for _, x := range all {
		got := s.wait(x.tr.ID)
		if got.Status != transfer.StatusCompleted {
			t.Errorf("transfer %s: %s, want completed", x.tr.ID, got.Status)
		}
		if b, res := s.balance(x.from.ID); b != 750 || res != 0 {
			t.Errorf("source of %s: balance %d reserved %d, want 750 and 0", x.tr.ID, b, res)
		}
		if b, _ := s.balance(x.to.ID); b != 250 {
			t.Errorf("destination of %s: balance %d, want 250", x.tr.ID, b)
		}
	}
	// Nothing is left to repair, and a repair of a final transfer starts nothing.
	if rep, err := s.svc.Reconcile(ctx, 0); err != nil || rep.Repaired != 0 {
		t.Errorf("second reconcile: %+v, %v; want nothing repaired", rep, err)
	}
	if started, err := s.svc.Repair(ctx, all[0].tr.ID); err != nil || started {
		t.Errorf("repair of a completed transfer: started %v, err %v; want false, nil", started, err)
	}
	s.audit()
}

// TestCancelOfAPendingTransferWithoutWorkflow cancels a transfer whose API process crashed between
// recording it and starting its workflow: the cancel is honoured (update-with-start), not answered
// 409 while the transfer then runs.
func TestCancelOfAPendingTransferWithoutWorkflow(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	tr, from, _ := s.recorded(t, 100, 60)
	got, err := s.svc.Cancel(ctx, tr.ID, "changed my mind")
	if err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if got.Status != transfer.StatusCancelled {
		t.Errorf("cancel answered %s, want cancelled", got.Status)
	}
	// A later repeat of the request, or the reconciler, finds it final and starts nothing.
	if rep, err := s.svc.Reconcile(ctx, 0); err != nil || rep.Repaired != 0 {
		t.Errorf("reconcile: %+v, %v; want nothing repaired", rep, err)
	}
	if b, res := s.balance(from.ID); b != 100 || res != 0 {
		t.Errorf("source: balance %d reserved %d, want 100 and 0", b, res)
	}
	s.audit()
}

// impostor runs, until t ends, a worker on queue whose workflow registered under the transfer
// workflow's name completes at once with result.
func (s *stack) impostor(t *testing.T, queue string, result workflows.TransferResult) {
	t.Helper()
	w := sdkworker.New(s.temporal, queue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(func(ctx workflow.Context, in workflows.TransferInput) (workflows.TransferResult, error) {
		return result, nil
	}, workflow.RegisterOptions{Name: workflows.WorkflowName})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
}

// TestAuditFindsAWorkflowResultThatDisagreesWithItsRow plants what the cancel defect produced: a
// transfer workflow that completed with "cancelled" over a row the ledger completed. A worker on a
// task queue of its own runs an impostor registered under the transfer workflow's name. The audit
// must report invariant 8, naming the transfer.
func TestAuditFindsAWorkflowResultThatDisagreesWithItsRow(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	from, to := s.account("USD"), s.account("USD")
	s.deposit(from, 100)
	done := s.submit(transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer, FromAccountID: from.ID, ToAccountID: to.ID,
		Amount: 40, Currency: "USD"})
	if done.Status != transfer.StatusCompleted {
		t.Fatalf("transfer %s, want completed", done.Status)
	}
	s.audit() // Clean so far: the real run's result equals its row.

	// The impostor's run starts after the real one closed, as a repair would.
	const queue = "impostor"
	s.impostor(t, queue, workflows.TransferResult{Status: transfer.StatusCancelled, FailureMessage: "cancelled before the debit"})
	in := workflows.TransferInput{TransferID: done.ID, Kind: done.Kind, FromAccountID: from.ID, ToAccountID: to.ID, Amount: 40, Currency: "USD"}
	opts := workflows.StartOptions(in, queue)
	opts.WorkflowIDReusePolicy = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE // As only a repair may.
	run, err := s.temporal.ExecuteWorkflow(ctx, opts, workflows.WorkflowName, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	s.listWorkflows(fmt.Sprintf("WorkflowId = '%s' AND ExecutionStatus = 'Completed'", done.ID), 2)
	r, err := s.store.Audit(ctx, s.svc)
	if err != nil {
		t.Fatal(err)
	}
	if !r.WorkflowResultsChecked {
		t.Errorf("audit did not check invariant 8")
	}
	var found bool
	for _, v := range r.Violations {
		if v.Invariant == ledger.InvWorkflowResult && v.Subject == "transfer "+done.ID.String() && strings.Contains(v.Detail, run.GetRunID()) {
			found = true
		} else {
			t.Errorf("unexpected violation: %+v", v)
		}
	}
	if !found {
		t.Errorf("audit did not report the impostor's result: %+v", r.Violations)
	}
}

// flakyTemporal is the real Temporal client with an outage injected for some workflow ids: their
// describes and starts answer Unavailable, as a partitioned shard would.
type flakyTemporal struct {
	client.Client
	down map[string]bool
}

func (f flakyTemporal) DescribeWorkflowExecution(ctx context.Context, id, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	if f.down[id] {
		return nil, serviceerror.NewUnavailable("injected: shard unavailable")
	}
	return f.Client.DescribeWorkflowExecution(ctx, id, runID)
}

func (f flakyTemporal) ExecuteWorkflow(ctx context.Context, o client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	if f.down[o.ID] {
		return nil, serviceerror.NewUnavailable("injected: shard unavailable")
	}
	return f.Client.ExecuteWorkflow(ctx, o, wf, args...)
}

// TestReconcilerGoesPastWhatItCannotFix is the starvation the review found: the old reconciler read
// the 500 oldest idle rows in flight and stopped at its first error, so older rows it could not
// fix, or 500 transfers legitimately waiting with running workflows, hid every newer lost start.
// Here 510 reserved transfers wait with running workflows, three older lost starts cannot be
// repaired (Temporal answers Unavailable for them), and one newer start is lost: one sweep must
// repair the newer one, count the three, and look at nothing else; a sweep after the outage
// repairs the three.
func TestReconcilerGoesPastWhatItCannotFix(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	a, b := s.account("USD"), s.account("USD")
	s.deposit(a, 1_000_000)
	record := func() transfer.Transfer {
		t.Helper()
		tr, _, err := s.store.CreateTransfer(ctx, transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer,
			FromAccountID: a.ID, ToAccountID: b.ID, Amount: 1, Currency: "USD"})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	down := map[string]bool{}
	var unfixable []transfer.Transfer
	for range 3 {
		tr := record()
		down[tr.ID.String()] = true
		unfixable = append(unfixable, tr)
	}
	for range 510 {
		tr := record()
		if err := s.store.Reserve(ctx, tr.ID); err != nil {
			t.Fatal(err)
		}
		in := workflows.TransferInput{TransferID: tr.ID, Kind: tr.Kind, FromAccountID: a.ID, ToAccountID: b.ID, Amount: 1, Currency: "USD"}
		if _, err := s.temporal.ExecuteWorkflow(ctx, workflows.StartOptions(in, "nobody-polls"), workflows.WorkflowName, in); err != nil {
			t.Fatal(err)
		}
	}
	lost := record()

	log := slog.New(slog.DiscardHandler)
	svc := service.New(s.store, flakyTemporal{Client: s.temporal, down: down}, taskQueue, log).
		WithOptions(service.Options{WorkflowTaskTimeout: sagatest.WorkflowTaskTimeout, Namespace: s.namespace})
	r, err := svc.Reconcile(ctx, 0)
	if err == nil || r.Failed != 3 || r.Repaired != 1 || r.Looked != 4 {
		t.Fatalf("sweep in the outage: got %+v, %v; want 4 looked at, 1 repaired, 3 failed and an error", r, err)
	}
	if got := s.wait(lost.ID); got.Status != transfer.StatusCompleted {
		t.Errorf("the newer lost start: got %s, want completed", got.Status)
	}
	for id := range down {
		delete(down, id)
	}
	if r, err := svc.Reconcile(ctx, 0); err != nil || r.Repaired != 3 {
		t.Fatalf("sweep after the outage: got %+v, %v; want the three repaired", r, err)
	}
	for _, tr := range unfixable {
		if got := s.wait(tr.ID); got.Status != transfer.StatusCompleted {
			t.Errorf("transfer %s after the outage: got %s, want completed", tr.ID, got.Status)
		}
	}
}

// listingTemporal is the real Temporal client whose visibility listings, made through the raw
// workflow service, are recorded, and fail while failing is set.
type listingTemporal struct {
	client.Client
	queries *[]string
	failing *bool
	// busy is how many listings answer ResourceExhausted first, as the dev server's persistence
	// rate limit does under load.
	busy *int
}

func (l listingTemporal) WorkflowService() workflowservice.WorkflowServiceClient {
	return listingService{WorkflowServiceClient: l.Client.WorkflowService(), l: l}
}

type listingService struct {
	workflowservice.WorkflowServiceClient
	l listingTemporal
}

func (s listingService) ListWorkflowExecutions(ctx context.Context, in *workflowservice.ListWorkflowExecutionsRequest, opts ...grpc.CallOption) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	*s.l.queries = append(*s.l.queries, in.GetQuery())
	if *s.l.failing {
		return nil, serviceerror.NewInternal("injected: visibility broken")
	}
	if *s.l.busy > 0 {
		*s.l.busy--
		return nil, serviceerror.NewResourceExhausted(enumspb.RESOURCE_EXHAUSTED_CAUSE_SYSTEM_OVERLOADED, "injected: System Persistence Max QPS Reached.")
	}
	return s.WorkflowServiceClient.ListWorkflowExecutions(ctx, in, opts...)
}

// TestAFailedFullSweepIsTriedAgainAtOnce: the reconciler lists every closed workflow over a row
// that is not final on its first sweep and on every 20th, and only those closed lately otherwise.
// The review found that a full sweep whose listing failed was not tried again for 20 more sweeps
// (ten minutes by default), so a close that only a full sweep can find (visibility more than the
// overlap late) waited that long, or for ever while the listing kept failing. The sweep after a
// failed full one must be full.
func TestAFailedFullSweepIsTriedAgainAtOnce(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	var queries []string
	failing, busy := false, 0
	log := slog.New(slog.DiscardHandler)
	svc := service.New(s.store, listingTemporal{Client: s.temporal, queries: &queries, failing: &failing, busy: &busy}, taskQueue, log).
		WithOptions(service.Options{WorkflowTaskTimeout: sagatest.WorkflowTaskTimeout, Namespace: s.namespace})
	full := func(q string) bool { return !strings.Contains(q, "CloseTime >") }
	for sweep := 1; sweep <= 21; sweep++ {
		// Paced under the test server's visibility rate limit (a few listings a second).
		time.Sleep(200 * time.Millisecond)
		failing = sweep == 20
		queries = queries[:0]
		_, err := svc.Reconcile(ctx, time.Hour)
		if (err != nil) != failing {
			t.Fatalf("sweep %d: error %v, want one only while the listing fails", sweep, err)
		}
		if len(queries) != 1 {
			t.Fatalf("sweep %d: %d listings, want 1", sweep, len(queries))
		}
		want := sweep == 1 || sweep == 20 || sweep == 21
		if full(queries[0]) != want {
			t.Errorf("sweep %d: full listing %v, want %v: %s", sweep, full(queries[0]), want, queries[0])
		}
	}
	// A listing answered busy is asked for again: the raw service call the reconciler and the
	// audit page with has none of the SDK client's retries, and a full chaos run's audit once
	// failed on the dev server's "System Persistence Max QPS Reached".
	busy = 3
	queries = queries[:0]
	if _, err := svc.Reconcile(ctx, time.Hour); err != nil || busy != 0 || len(queries) != 4 {
		t.Errorf("sweep with a busy visibility: error %v, %d busy answers left, %d listings; want nil, 0, 4", err, busy, len(queries))
	}
}

// TestRepairAfterACompletedRunStartsNothing is the race CI met in TestTerminatedWorkflowsAreRepaired:
// a repair read the row before the run it had started completed, described the workflow after, and
// its start was refused by the reuse policy; the SDK turns that refusal into the closed run's handle
// unless asked not to, so Repair counted a repair it had not made. Here the completed run is planted:
// an impostor completes over a row that is still pending. Repair must report that it started nothing,
// and indeed start nothing.
func TestRepairAfterACompletedRunStartsNothing(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	tr, from, to := s.recorded(t, 100, 40)
	const queue = "impostor-completes"
	s.impostor(t, queue, workflows.TransferResult{Status: transfer.StatusPending})
	in := workflows.TransferInput{TransferID: tr.ID, Kind: tr.Kind, FromAccountID: from.ID, ToAccountID: to.ID, Amount: 40, Currency: "USD"}
	run, err := s.temporal.ExecuteWorkflow(ctx, workflows.StartOptions(in, queue), workflows.WorkflowName, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	started, err := s.svc.Repair(ctx, tr.ID)
	if err != nil || started {
		t.Errorf("repair after a completed run: started %v, err %v; want false, nil", started, err)
	}
	d, err := s.temporal.DescribeWorkflowExecution(ctx, tr.ID.String(), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := d.GetWorkflowExecutionInfo().GetExecution().GetRunId(); got != run.GetRunID() {
		t.Errorf("the latest run is %s, want the completed %s: the repair started one", got, run.GetRunID())
	}
}

// staleDescribe is the real Temporal client, except that its describes of the workflow ids given
// answer as one read just before another repairer started a run would: the workflow terminated.
type staleDescribe struct {
	client.Client
	stale map[string]bool
}

func (f staleDescribe) DescribeWorkflowExecution(ctx context.Context, id, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	d, err := f.Client.DescribeWorkflowExecution(ctx, id, runID)
	if err == nil && f.stale[id] {
		d.GetWorkflowExecutionInfo().Status = enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED
	}
	return d, err
}

// TestRepairRacingARepairStartsNothing is two repairers of one terminated transfer (two workers'
// sweeps, or a cancel's repair and a sweep): both described the workflow terminated, and the other
// started its run first. This one's start must be refused and reported as no repair, not answered
// with the other's running run (the start options' use-existing conflict policy) and counted.
func TestRepairRacingARepairStartsNothing(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	tr, _, _ := s.strand(t, transfer.StatusPending) // Its run, on a queue nobody polls, is the other repairer's.
	before, err := s.temporal.DescribeWorkflowExecution(ctx, tr.ID.String(), "")
	if err != nil {
		t.Fatal(err)
	}
	svc := service.New(s.store, staleDescribe{Client: s.temporal, stale: map[string]bool{tr.ID.String(): true}}, taskQueue, slog.New(slog.DiscardHandler)).
		WithOptions(service.Options{WorkflowTaskTimeout: sagatest.WorkflowTaskTimeout, Namespace: s.namespace})
	if started, err := svc.Repair(ctx, tr.ID); err != nil || started {
		t.Errorf("repair racing a run another repairer started: started %v, err %v; want false, nil", started, err)
	}
	after, err := s.temporal.DescribeWorkflowExecution(ctx, tr.ID.String(), "")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := after.GetWorkflowExecutionInfo().GetExecution().GetRunId(), before.GetWorkflowExecutionInfo().GetExecution().GetRunId(); a != b {
		t.Errorf("the latest run is %s, want the other repairer's %s", a, b)
	}
}
