package workflows_test

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/worker"
	"github.com/transferd/transferd/workflows"
)

// The property test's flags: `make test` runs the default seeds, `make chaos` thousands, and a
// failing seed reproduces alone with -saga.seed.
var (
	sagaSeeds = flag.Int("saga.seeds", 400, "how many seeds TestSagaProperty runs")
	sagaFirst = flag.Uint64("saga.first", 1, "the first seed TestSagaProperty runs")
	sagaSeed  = flag.Uint64("saga.seed", 0, "run only this seed of TestSagaProperty, to reproduce a failure")
	sagaTrace = flag.Bool("saga.trace", false, "log the trace of every seed of TestSagaProperty, not only of failing ones")
)

// minSeedsForCoverage is how many seeds a run needs before a fault that never happened fails it.
const minSeedsForCoverage = 100

// seedsPerDatabase is how many seeds share a database.
const seedsPerDatabase = 250

// maxFailedSeeds stops the run after this many failing seeds; their seeds are enough to reproduce.
const maxFailedSeeds = 5

// TestSagaProperty runs TransferWorkflow in the SDK's test environment over the real ledger, one
// fresh transfer per seed, with the faults a seeded random source draws: transient errors, steps
// that commit and then fail (so they run twice), the ledger ahead of the history (a lost workflow
// task whose local activities had committed, then a replay; or a zombie worker still committing),
// freezes and unfreezes of both accounts, an underfunded source, a step outliving its local budget,
// cancel updates and workflow cancellations (the Web UI's) delivered before the first workflow task
// or during a step, before or after its statement, and a worker that dies for good, whose run is
// terminated and followed by a repair run in a fresh environment. After each seed it checks against
// the database: the run completed, and its result, its status query, its last TransferStatus and
// its cancel updates' answers are the row; the row is final; the audit finds no violation; the money
// moved exactly once or not at all, and nothing stays reserved; a cancel won only if the ledger had
// not debited, and a cancel delivered before the debit, with the ledger not moved since, won; and
// the outcome is one the seed's faults explain. It fails when a fault or an outcome of
// requiredFaults never happened in a run of at least minSeedsForCoverage seeds.
func TestSagaProperty(t *testing.T) {
	var h *propertyHarness
	seeds := make([]uint64, 0, *sagaSeeds)
	if *sagaSeed != 0 {
		seeds = append(seeds, *sagaSeed)
	} else {
		for i := range *sagaSeeds {
			seeds = append(seeds, *sagaFirst+uint64(i))
		}
	}
	start := time.Now()
	times, seedsWith, statuses := tally{}, tally{}, tally{}
	var failed []uint64
	for i, seed := range seeds {
		if i%seedsPerDatabase == 0 {
			// A fresh database now and then keeps the audit after each seed cheap.
			if h != nil {
				h.close()
			}
			h = newPropertyHarness(t)
		}
		var seen tally
		var final transfer.Status
		if !t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { seen, final = h.runSeed(t, seed) }) {
			failed = append(failed, seed)
			if len(failed) >= maxFailedSeeds {
				t.Errorf("stopping after %d failing seeds", len(failed))
				break
			}
		}
		if final != "" {
			statuses[string(final)]++
		}
		for k, n := range seen {
			times[k] += n
			if n > 0 {
				seedsWith[k]++
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d seeds from %d in %s; final statuses:", len(seeds), seeds[0], time.Since(start).Round(time.Millisecond))
	for _, k := range slices.Sorted(maps.Keys(statuses)) {
		fmt.Fprintf(&b, " %s %d", k, statuses[k])
	}
	b.WriteString("\nfaults and outcomes (seeds that saw it, times):")
	for _, k := range slices.Sorted(maps.Keys(times)) {
		fmt.Fprintf(&b, "\n  %-60s %5d seeds %6d times", k, seedsWith[k], times[k])
	}
	t.Log(b.String())
	for _, seed := range failed {
		t.Errorf("seed %d failed; reproduce with: %s", seed, reproduce(seed))
	}
	if len(seeds) < minSeedsForCoverage || len(failed) > 0 {
		return
	}
	for _, k := range requiredFaults {
		if seedsWith[k] == 0 {
			t.Errorf("%q never happened in %d seeds: a blind spot of the property test", k, len(seeds))
		}
	}
}

// reproduce is the command that runs one seed again.
func reproduce(seed uint64) string {
	return fmt.Sprintf("go test -count=1 -run '^TestSagaProperty$' ./workflows/ -args -saga.seed=%d", seed)
}

// propertyHarness is a real ledger that seeds share, each with accounts and a transfer of its own.
type propertyHarness struct {
	ledger *ledger.Store
	db     *sql.DB
	owner  uuid.UUID
	system transfer.Account
	closed bool
}

func newPropertyHarness(t *testing.T) *propertyHarness {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	relaxCommits(t, dsn)
	l, err := ledger.Open(ctx, dsn, ledger.Options{MaxOpenConns: 4})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		l.Close()
		t.Fatalf("open raw connection: %v", err)
	}
	h := &propertyHarness{ledger: l, db: db}
	t.Cleanup(h.close)
	if _, err := l.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	u, err := l.CreateUser(ctx, transfer.User{Email: uuid.NewString() + "@example.com", PasswordHash: "x", Name: "property"})
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	sys, err := l.SystemAccount(ctx, "USD")
	if err != nil {
		t.Fatalf("system account: %v", err)
	}
	h.owner, h.system = u.ID, sys
	return h
}

// relaxCommits turns off synchronous_commit for the sessions of the test's database: a commit then
// returns before its WAL reaches the disk, which makes the seeds three times faster and changes
// nothing they can see, since the database server never crashes under them.
func relaxCommits(t *testing.T, dsn string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("database URL: %v", err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), "ALTER DATABASE "+strings.TrimPrefix(u.Path, "/")+" SET synchronous_commit = off"); err != nil {
		t.Fatalf("relax commits: %v", err)
	}
}

// close closes the harness's connections; the database is dropped when the test ends.
func (h *propertyHarness) close() {
	if h.closed {
		return
	}
	h.closed = true
	h.ledger.Close()
	h.db.Close()
}

// runPlan is what happens to one workflow run from outside: cancels, and whether its worker dies
// for good.
type runPlan struct {
	cancels   []*cancelCall
	terminate bool
}

// drawPlan draws a run's plan: cancel updates and a workflow cancellation, each delivered before
// the workflow's first task or during one of its first step calls, before or after the step's
// statement. A cancel is delivered at a step call, not at a time, because the test environment's
// clock also moves with the wall clock while a step runs: a time would make a seed's outcome
// depend on how fast the database answered.
func drawPlan(rng *rand.Rand, terminate bool) runPlan {
	at := func(c *cancelCall) *cancelCall {
		if rng.IntN(3) > 0 {
			c.call, c.afterCommit = 1+rng.IntN(5), rng.IntN(2) == 0
		}
		return c
	}
	p := runPlan{terminate: terminate}
	if rng.IntN(100) < 45 {
		for range 1 + rng.IntN(2) {
			p.cancels = append(p.cancels, at(&cancelCall{update: true}))
		}
	}
	if rng.IntN(100) < 40 {
		p.cancels = append(p.cancels, at(&cancelCall{}))
	}
	return p
}

// faultRatesDefault are the faults' probabilities at each step call.
var faultRatesDefault = faultRates{transient: 0.12, duplicate: 0.12, ahead: 0.07, freeze: 0.07, outage: 0.03}

// terminateAfter is when a run whose worker dies is terminated, on the environment's clock.
const terminateAfter = 20 * time.Second

// cancelCall is one cancel sent to the workflow, the cancel update or the workflow's cancellation,
// and what came of it.
type cancelCall struct {
	update bool
	// call is the step call during which the cancel is delivered, or 0 for before the workflow's
	// first task; afterCommit delivers it after the step's statement, before its answer reaches the
	// workflow.
	call        int
	afterCommit bool

	fired     bool
	ledgerWas transfer.Status
	// debitAsked and aheadRuns are the fault store's, when the cancel was delivered.
	debitAsked bool
	aheadRuns  int
	accepted   bool
	rejected   error
	completed  bool
	result     any
	err        error
}

// name is how the trace and the tally call the cancel.
func (c *cancelCall) name() string {
	kind := "workflow cancellation"
	if c.update {
		kind = "cancel update"
	}
	switch {
	case c.call == 0:
		return kind + " at the start"
	case c.afterCommit:
		return kind + " during a step, after its statement"
	}
	return kind + " during a step, before its statement"
}

// runReport is what one workflow run did.
type runReport struct {
	completed bool
	err       error
	result    workflows.State
	query     workflows.State
	statuses  []string
	cancels   []*cancelCall
}

// seedRun is one seed's transfer and what its runs did.
type seedRun struct {
	seed        uint64
	id          uuid.UUID
	in          workflows.TransferInput
	underfunded bool
	before      [2]transfer.Account
	seen        tally
	trace       []string
	runs        []runReport
	stores      []*faultStore
	problems    []string
}

func (s *seedRun) problem(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

// runSeed runs one seed: a fresh transfer, its faults, its runs (a repair run after a
// termination), then the checks. It returns what happened and the final status.
func (h *propertyHarness) runSeed(t *testing.T, seed uint64) (tally, transfer.Status) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 0x7472616e73666572))
	s := &seedRun{seed: seed, seen: tally{}}
	from, to := h.account(t), h.account(t)
	funds := 100 + rng.Int64N(10_000)
	h.deposit(t, from, funds)
	if rng.IntN(2) == 0 {
		h.deposit(t, to, 1+rng.Int64N(5_000))
	}
	amount := 1 + rng.Int64N(funds)
	switch rng.IntN(10) {
	case 0:
		amount = funds + 1 + rng.Int64N(100)
		s.underfunded = true
		s.seen[faultUnderfunded]++
	case 1:
		amount = funds
	}
	s.before = [2]transfer.Account{h.get(t, from.ID), h.get(t, to.ID)}
	tr, created, err := h.ledger.CreateTransfer(ctx, transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer,
		FromAccountID: from.ID, ToAccountID: to.ID, Amount: transfer.Amount(amount), Currency: "USD"})
	if err != nil || !created {
		t.Fatalf("create transfer: created %v, err %v", created, err)
	}
	s.id = tr.ID
	s.in = workflows.TransferInput{TransferID: tr.ID, Kind: transfer.KindTransfer, FromAccountID: from.ID,
		ToAccountID: to.ID, Amount: amount, Currency: "USD", Naive: rng.IntN(8) == 0}
	if s.in.Naive {
		s.seen[faultNaive]++
	}
	s.trace = append(s.trace, fmt.Sprintf("transfer %s of %d from %s (funds %d) to %s, naive %v",
		tr.ID, amount, from.ID, funds, to.ID, s.in.Naive))

	terminate := rng.IntN(100) < 15
	plan := drawPlan(rng, terminate)
	fs := h.newFaultStore(rng, s, plan)
	if terminate {
		fs.dieAt, fs.dieAfterCommit = 1+rng.IntN(5), rng.IntN(2) == 0
		s.trace = append(s.trace, fmt.Sprintf("the worker dies at step call %d (after its commit: %v)", fs.dieAt, fs.dieAfterCommit))
	}
	// Before the workflow starts: an admin's freeze, and the ledger ahead of the history, as when the
	// workflow task that ran the first steps was lost and the workflow replays from its start.
	for _, acct := range []struct {
		id    uuid.UUID
		fault string
	}{{from.ID, faultFreezeSource}, {to.ID, faultFreezeDest}} {
		if rng.IntN(100) < 8 {
			if _, err := h.ledger.SetAccountStatus(ctx, transfer.Actor{}, acct.id, transfer.AccountFrozen); err != nil {
				t.Fatalf("freeze: %v", err)
			}
			s.seen[acct.fault]++
			fs.note("before the start: %s", acct.fault)
		}
	}
	if rng.IntN(100) < 30 {
		fs.note("before the start:")
		if fs.ahead(ctx, 1+rng.IntN(3)) > 0 {
			s.seen[faultAheadAtStart]++
		}
	}
	first := h.execute(s, fs, plan)
	s.runs = append(s.runs, first)
	row := h.row(t, s.id)
	switch {
	case first.completed:
		s.checkRun(first, fs, row)
	case terminate && isTimeout(first.err):
		s.seen[faultTerminated]++
		s.trace = append(s.trace, fmt.Sprintf("run terminated with the row %s", row.Status))
		if row.Status.Final() {
			s.seen[faultTerminatedFinal]++
			break
		}
		// The repair: a new run of the workflow over the ledger as it stands, in an environment of
		// its own, with faults of its own but no termination.
		repairPlan := drawPlan(rng, false)
		repair := h.newFaultStore(rng, s, repairPlan)
		s.trace = append(s.trace, "repair run:")
		r := h.execute(s, repair, repairPlan)
		s.runs = append(s.runs, r)
		row = h.row(t, s.id)
		if !r.completed {
			s.problem("the repair run did not complete: %v", r.err)
		} else {
			s.checkRun(r, repair, row)
		}
	default:
		s.problem("the workflow did not complete: %v", first.err)
	}
	h.checkLedger(t, s, row)
	for _, f := range s.stores {
		if f.err != nil {
			s.problem("the fault store's own ledger call failed: %v", f.err)
		}
	}
	if *sagaTrace {
		t.Logf("seed %d ended %s:\n  %s", seed, row.Status, strings.Join(s.trace, "\n  "))
	}
	if len(s.problems) > 0 {
		t.Errorf("seed %d:\n  %s\ntrace:\n  %s\nreproduce with: %s",
			seed, strings.Join(s.problems, "\n  "), strings.Join(s.trace, "\n  "), reproduce(seed))
	}
	return s.seen, row.Status
}

func isTimeout(err error) bool {
	var te *temporal.TimeoutError
	return errors.As(err, &te)
}

func (h *propertyHarness) newFaultStore(rng *rand.Rand, s *seedRun, p runPlan) *faultStore {
	f := &faultStore{ledger: h.ledger, id: s.id, from: s.in.FromAccountID, to: s.in.ToAccountID,
		rates: faultRatesDefault, modelCancels: len(p.cancels) > 0, allowOutage: !p.terminate,
		rng: rng, seen: s.seen, trace: &s.trace}
	s.stores = append(s.stores, f)
	return f
}

// execute runs the workflow once, in an environment of its own, over the fault store.
func (h *propertyHarness) execute(s *seedRun, fs *faultStore, p runPlan) runReport {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := suite.NewTestWorkflowEnvironment()
	worker.Register(env, &activities.Activities{Store: fs})
	if p.terminate {
		// The run is terminated this long after its start, on the environment's clock: the dead
		// worker's step is retried until then, within its local budget, and in fewer attempts than
		// the test environment allows a regular activity (ten).
		env.SetWorkflowRunTimeout(terminateAfter)
	}
	var r runReport
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		if sa, ok := args.Get(0).(temporal.SearchAttributes); ok {
			if v, ok := sa.GetKeyword(workflows.AttrStatus); ok {
				r.statuses = append(r.statuses, v)
			}
		}
	}).Maybe()
	if err := env.SetTypedSearchAttributesOnStart(workflows.StartOptions(s.in, workflows.DefaultTaskQueue).TypedSearchAttributes); err != nil {
		s.problem("search attributes on start: %v", err)
	}
	r.cancels = p.cancels
	deliver := func(c *cancelCall, i int) {
		c.fired = true
		tr, err := h.ledger.Transfer(context.Background(), s.id)
		if err != nil {
			s.problem("read transfer: %v", err)
		}
		c.ledgerWas = tr.Status
		s.seen[c.name()]++
		s.seen["a cancel delivered with the ledger "+string(tr.Status)]++
		fs.mu.Lock()
		c.debitAsked, c.aheadRuns = fs.debitAsked, fs.aheadRuns
		fs.note("%s (call %d), the ledger %s", c.name(), c.call, tr.Status)
		fs.mu.Unlock()
		if !c.update {
			env.CancelWorkflow()
			return
		}
		note := func(format string, args ...any) {
			fs.mu.Lock()
			defer fs.mu.Unlock()
			fs.note(format, args...)
		}
		env.UpdateWorkflow(workflows.UpdateCancel, fmt.Sprintf("cancel-%d", i), &testsuite.TestUpdateCallback{
			OnAccept: func() {
				c.accepted = true
				note("cancel update %d accepted", i)
			},
			OnReject: func(err error) {
				c.rejected = err
				note("cancel update %d rejected: %v", i, err)
			},
			OnComplete: func(result any, err error) {
				c.completed = true
				c.result, c.err = result, err
				note("cancel update %d answered %v %v", i, result, err)
			},
		}, workflows.CancelInput{Reason: fmt.Sprintf("seed %d cancel %d", s.seed, i)})
	}
	for i, c := range p.cancels {
		if c.call == 0 {
			env.RegisterDelayedCallback(func() { deliver(c, i) }, 0)
		}
	}
	// A cancel due during a step is delivered by the environment's main loop, which takes callbacks
	// while steps run; the step waits for it.
	fs.deliver = func(call int, afterCommit bool) {
		for i, c := range p.cancels {
			if c.call != call || c.afterCommit != afterCommit || c.fired {
				continue
			}
			done := make(chan struct{})
			env.RegisterDelayedCallback(func() {
				defer close(done)
				deliver(c, i)
			}, 0)
			<-done
		}
	}
	env.ExecuteWorkflow(workflows.WorkflowName, s.in)
	r.err = env.GetWorkflowError()
	if !env.IsWorkflowCompleted() {
		r.err = fmt.Errorf("not completed (error %v)", r.err)
		return r
	}
	if r.err == nil {
		if err := env.GetWorkflowResult(&r.result); err != nil {
			r.err = err
			return r
		}
		r.completed = true
		if v, err := env.QueryWorkflow(workflows.QueryStatus); err != nil || v.Get(&r.query) != nil {
			s.problem("status query after the end: %v", err)
		}
	}
	return r
}

// outcomeOf is the row's part that the workflow's result and the cancel updates' answers must equal.
func outcomeOf(s workflows.State) transfer.Outcome {
	return transfer.Outcome{Status: s.Status, Code: s.FailureCode, Message: s.FailureMessage}
}

// checkRun checks a run that completed against the row: its result, its status query, its last
// TransferStatus and its cancel updates; and that a cancel delivered in time won.
func (s *seedRun) checkRun(r runReport, fs *faultStore, row transfer.Outcome) {
	if got := outcomeOf(r.result); got != row {
		s.problem("the workflow's result %+v differs from the row %+v", got, row)
	}
	if got := outcomeOf(r.query); got != row {
		s.problem("the status query answers %+v after the end, but the row is %+v", got, row)
	}
	if n := len(r.statuses); n == 0 || r.statuses[n-1] != string(row.Status) {
		s.problem("the TransferStatus upserts %v do not end with the row's status %s", r.statuses, row.Status)
	}
	for i, c := range r.cancels {
		if !c.fired || !c.update {
			continue
		}
		switch {
		case c.rejected != nil:
			var app *temporal.ApplicationError
			if !errors.As(c.rejected, &app) || app.Type() != string(transfer.CodeNotCancellable) {
				s.problem("cancel update %d rejected with %v, want %s", i, c.rejected, transfer.CodeNotCancellable)
			}
			// The workflow refuses a cancel only once the ledger has said debited or ended: a
			// reserved transfer is cancellable (api.md) however long its debit is retried.
			if c.ledgerWas == transfer.StatusPending || c.ledgerWas == transfer.StatusReserved {
				s.problem("cancel update %d rejected (%v) with the ledger %s (the debit asked for: %v)", i, c.rejected, c.ledgerWas, c.debitAsked)
			}
			s.seen[outcomeRejected]++
		case !c.accepted:
			s.problem("cancel update %d was neither accepted nor rejected", i)
		case !c.completed:
			s.problem("cancel update %d was accepted and never completed, although the workflow did", i)
		case c.err != nil:
			// A cancel that lost may answer not_cancellable instead of the row; one that won never
			// fails.
			var app *temporal.ApplicationError
			if !errors.As(c.err, &app) || app.Type() != string(transfer.CodeNotCancellable) || row.Status == transfer.StatusCancelled {
				s.problem("cancel update %d failed: %v, and the row is %+v", i, c.err, row)
			}
		default:
			got, err := updateState(c.result)
			if err != nil {
				s.problem("cancel update %d: %v", i, err)
			} else if outcomeOf(got) != row {
				s.problem("cancel update %d answered %+v, but the row is %+v", i, outcomeOf(got), row)
			}
		}
	}
	// A cancel accepted while the ledger had not debited, before the workflow asked for the debit,
	// wins: the ledger's release finds the transfer not debited, unless the ledger moved ahead since
	// (a lost workflow task had debited) or refused a step first (the transfer failed).
	for _, c := range r.cancels {
		if !c.fired || c.rejected != nil || c.debitAsked || c.aheadRuns != fs.aheadRuns ||
			(c.ledgerWas != transfer.StatusPending && c.ledgerWas != transfer.StatusReserved) {
			continue
		}
		s.seen[outcomeMustWin]++
		if row.Status != transfer.StatusCancelled && row.Status != transfer.StatusFailed {
			s.problem("a %s (call %d) with the ledger %s, before the debit was asked for, lost: the row is %s", c.name(), c.call, c.ledgerWas, row.Status)
		}
	}
}

func updateState(result any) (workflows.State, error) {
	switch v := result.(type) {
	case workflows.State:
		return v, nil
	case converter.EncodedValue:
		var st workflows.State
		err := v.Get(&st)
		return st, err
	default:
		return workflows.State{}, fmt.Errorf("result is %T (%v), want a workflows.State", result, result)
	}
}

// checkLedger checks the transfer's row, entries, accounts and the audit, and whether the faults
// explain the outcome.
func (h *propertyHarness) checkLedger(t *testing.T, s *seedRun, row transfer.Outcome) {
	t.Helper()
	if !row.Status.Final() {
		s.problem("the row is %s, not final", row.Status)
	}
	entries := h.entries(t, s.id)
	debited := entries["debit"] > 0
	switch row.Status {
	case transfer.StatusCompleted:
		if entries["debit"] != 1 || entries["credit"] != 1 || entries["refund"] != 0 {
			s.problem("completed with entries %v, want one debit and one credit", entries)
		}
	case transfer.StatusFailed:
		if entries["credit"] != 0 || entries["debit"] != entries["refund"] {
			s.problem("failed with entries %v, want none, or one debit and its refund", entries)
		}
	case transfer.StatusCancelled:
		if len(entries) != 0 {
			s.problem("cancelled with entries %v: a cancel won after the ledger had debited", entries)
		}
	}

	// Money: moved exactly once, or not at all; nothing stays reserved.
	from, to := h.get(t, s.in.FromAccountID), h.get(t, s.in.ToAccountID)
	wantFrom, wantTo := s.before[0].Balance, s.before[1].Balance
	if row.Status == transfer.StatusCompleted {
		wantFrom -= s.in.Amount
		wantTo += s.in.Amount
	}
	if from.Balance != wantFrom || to.Balance != wantTo || from.Reserved != 0 || to.Reserved != 0 {
		s.problem("%s: source balance %d reserved %d, destination balance %d reserved %d; want balances %d and %d, nothing reserved",
			row.Status, from.Balance, from.Reserved, to.Balance, to.Reserved, wantFrom, wantTo)
	}

	// The outcome is one the faults explain.
	accepted, cancelledAhead := false, false
	for _, r := range s.runs {
		for _, c := range r.cancels {
			accepted = accepted || c.accepted || (!c.update && c.fired)
		}
	}
	for _, f := range s.stores {
		cancelledAhead = cancelledAhead || f.cancelledAhead
	}
	froze := s.seen[faultFreezeSource]+s.seen[faultFreezeDest] > 0
	switch row.Status {
	case transfer.StatusCancelled:
		if !accepted && !cancelledAhead {
			s.problem("cancelled, but no cancel was accepted")
		}
		if accepted {
			s.seen[outcomeCancelWon]++
		}
	case transfer.StatusFailed:
		switch {
		case row.Code == transfer.CodeInsufficientFunds && !s.underfunded:
			s.problem("failed with %s, but the source had the funds", row.Code)
		case row.Code == transfer.CodeAccountInactive && !froze:
			s.problem("failed with %s, but no account was frozen", row.Code)
		case row.Code != transfer.CodeInsufficientFunds && row.Code != transfer.CodeAccountInactive:
			s.problem("failed with the unexpected code %s: %s", row.Code, row.Message)
		}
	case transfer.StatusCompleted:
		if s.underfunded {
			s.problem("completed, but the source was underfunded")
		}
	}
	if accepted && debited {
		s.seen[outcomeCancelLost]++
	}
	if !accepted && !cancelledAhead && !froze && !s.underfunded && row.Status != transfer.StatusCompleted {
		s.problem("ended %s with no cancel, no freeze and enough funds", row.Status)
	}

	report, err := h.ledger.Audit(context.Background(), nil)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	for _, v := range report.Violations {
		s.problem("audit: invariant %d (%s): %s: %s", v.Invariant, v.Name, v.Subject, v.Detail)
	}
}

// account creates an active account of the harness's user.
func (h *propertyHarness) account(t *testing.T) transfer.Account {
	t.Helper()
	a, created, err := h.ledger.CreateAccount(context.Background(), ledger.NewAccount{OwnerID: h.owner, Currency: "USD"})
	if err != nil || !created {
		t.Fatalf("create account: created %v, err %v", created, err)
	}
	return a
}

// deposit funds the account from the system account, through the ledger's steps.
func (h *propertyHarness) deposit(t *testing.T, a transfer.Account, amount int64) {
	t.Helper()
	ctx := context.Background()
	tr, created, err := h.ledger.CreateTransfer(ctx, transfer.Request{ID: uuid.New(), Kind: transfer.KindDeposit,
		FromAccountID: h.system.ID, ToAccountID: a.ID, Amount: transfer.Amount(amount), Currency: "USD"})
	if err != nil || !created {
		t.Fatalf("create deposit: created %v, err %v", created, err)
	}
	for _, step := range []transfer.Step{transfer.StepReserve, transfer.StepDebit, transfer.StepCredit} {
		if _, err := h.ledger.Step(ctx, tr.ID, step, transfer.Outcome{}); err != nil {
			t.Fatalf("deposit %s: %v", step, err)
		}
	}
}

func (h *propertyHarness) get(t *testing.T, id uuid.UUID) transfer.Account {
	t.Helper()
	a, err := h.ledger.Account(context.Background(), id)
	if err != nil {
		t.Fatalf("account %s: %v", id, err)
	}
	return a
}

// row reads the transfer's status, failure code and message.
func (h *propertyHarness) row(t *testing.T, id uuid.UUID) transfer.Outcome {
	t.Helper()
	tr, err := h.ledger.Transfer(context.Background(), id)
	if err != nil {
		t.Fatalf("transfer %s: %v", id, err)
	}
	return transfer.Outcome{Status: tr.Status, Code: tr.FailureCode, Message: tr.FailureMessage}
}

// entries counts the transfer's journal entries by kind.
func (h *propertyHarness) entries(t *testing.T, id uuid.UUID) map[string]int {
	t.Helper()
	rows, err := h.db.QueryContext(context.Background(), "SELECT kind, count(*) FROM entries WHERE transfer_id = $1 GROUP BY kind", id)
	if err != nil {
		t.Fatalf("entries of %s: %v", id, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var kind string
		var n int
		if err := rows.Scan(&kind, &n); err != nil {
			t.Fatalf("entries of %s: %v", id, err)
		}
		out[kind] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("entries of %s: %v", id, err)
	}
	return out
}
