package ledger_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

// stepFunc is one saga step, with the arguments a workflow would pass.
type stepFunc func(ctx context.Context, s *ledger.Store, id uuid.UUID) error

var (
	reserve stepFunc = func(ctx context.Context, s *ledger.Store, id uuid.UUID) error { return s.Reserve(ctx, id) }
	debit   stepFunc = func(ctx context.Context, s *ledger.Store, id uuid.UUID) error { return s.Debit(ctx, id) }
	credit  stepFunc = func(ctx context.Context, s *ledger.Store, id uuid.UUID) error { return s.Credit(ctx, id) }
	cancel  stepFunc = func(ctx context.Context, s *ledger.Store, id uuid.UUID) error {
		return s.Release(ctx, id, transfer.Outcome{Status: transfer.StatusCancelled, Message: "cancelled by the client"})
	}
	failFunds stepFunc = func(ctx context.Context, s *ledger.Store, id uuid.UUID) error {
		return s.Release(ctx, id, transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeInsufficientFunds, Message: "not enough"})
	}
	failSource stepFunc = func(ctx context.Context, s *ledger.Store, id uuid.UUID) error {
		return s.Release(ctx, id, transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeAccountInactive, Message: "source frozen"})
	}
	refund stepFunc = func(ctx context.Context, s *ledger.Store, id uuid.UUID) error {
		return s.Refund(ctx, id, transfer.CodeAccountInactive, "destination frozen")
	}
)

// stepFixture is a transfer from a (funded with fixtureFunds) to b, with its ledger. Each fixture
// has accounts of its own, so the cases of a table can share one database.
type stepFixture struct {
	s    *ledger.Store
	db   *sql.DB
	a, b transfer.Account
	id   uuid.UUID
}

const fixtureFunds = 1000

func newStepFixture(t testing.TB, s *ledger.Store, db *sql.DB, amount int64) stepFixture {
	t.Helper()
	a := newAccount(t, s, "USD")
	b := newAccount(t, s, "USD")
	fund(t, s, a, fixtureFunds)
	return stepFixture{s: s, db: db, a: a, b: b, id: createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, amount, "USD")}
}

// run runs steps in order and fails the test on any error.
func (f stepFixture) run(t testing.TB, steps ...stepFunc) {
	t.Helper()
	for i, step := range steps {
		if err := step(context.Background(), f.s, f.id); err != nil {
			t.Fatalf("setup step %d: %v", i+1, err)
		}
	}
}

// audit checks the ledger's invariants. A transfer left debited is credited first: the audit counts
// money in transit as a conservation violation (TestAuditAcceptsMoneyInTransit shows that bug on its
// own), and completing it also shows that the steps before left the transfer able to finish.
func (f stepFixture) audit(t testing.TB) {
	t.Helper()
	if getTransfer(t, f.s, f.id).Status == transfer.StatusDebited {
		f.run(t, credit)
	}
	mustAudit(t, f.s)
}

func (f stepFixture) state(t testing.TB) sagaState {
	t.Helper()
	return stateOf(t, f.s, f.db, f.id)
}

// stepCase is a step that applies once the before steps have run, and the state it leaves behind
// for a transfer of 300 from an account funded with 1000 (one deposit entry).
type stepCase struct {
	name   string
	before []stepFunc
	step   stepFunc
	want   sagaState
}

func stepCases() []stepCase {
	return []stepCase{
		{name: "reserve", step: reserve,
			want: sagaState{FromBalance: 1000, FromReserved: 300, FromEntries: 1, Hold: "held", Status: transfer.StatusReserved}},
		{name: "debit", before: []stepFunc{reserve}, step: debit,
			want: sagaState{FromBalance: 700, FromEntries: 2, Hold: "posted", Status: transfer.StatusDebited}},
		{name: "credit", before: []stepFunc{reserve, debit}, step: credit,
			want: sagaState{FromBalance: 700, FromEntries: 2, ToBalance: 300, ToEntries: 1, Hold: "posted", Status: transfer.StatusCompleted}},
		{name: "release of a reserved transfer", before: []stepFunc{reserve}, step: cancel,
			want: sagaState{FromBalance: 1000, FromEntries: 1, Hold: "released", Status: transfer.StatusCancelled}},
		{name: "release of a pending transfer", step: failFunds,
			want: sagaState{FromBalance: 1000, FromEntries: 1, Status: transfer.StatusFailed, FailureCode: transfer.CodeInsufficientFunds}},
		{name: "refund", before: []stepFunc{reserve, debit}, step: refund,
			want: sagaState{FromBalance: 1000, FromEntries: 3, Hold: "posted", Status: transfer.StatusFailed, FailureCode: transfer.CodeAccountInactive}},
	}
}

func TestStepsAreIdempotent(t *testing.T) {
	s, db := newStoreDB(t)
	for _, tc := range stepCases() {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newStepFixture(t, s, db, 300)
			f.run(t, tc.before...)
			if err := tc.step(ctx, f.s, f.id); err != nil {
				t.Fatalf("first call: got error %v, want none", err)
			}
			first := f.state(t)
			if first != tc.want {
				t.Errorf("after the first call: got %+v, want %+v", first, tc.want)
			}
			if err := tc.step(ctx, f.s, f.id); err != nil {
				t.Fatalf("second call: got error %v, want none", err)
			}
			if got := f.state(t); got != first {
				t.Errorf("the second call changed the ledger: got %+v, want %+v", got, first)
			}
			f.audit(t)
		})
	}
}

// A retried activity may arrive after the saga has moved on: earlier steps then change nothing.
func TestEarlierStepsReplayedLaterChangeNothing(t *testing.T) {
	tests := []struct {
		name   string
		before []stepFunc
		replay []stepFunc
	}{
		{name: "completed", before: []stepFunc{reserve, debit, credit}, replay: []stepFunc{reserve, debit, credit, cancel, refund}},
		{name: "debited", before: []stepFunc{reserve, debit}, replay: []stepFunc{reserve, debit}},
		{name: "refunded", before: []stepFunc{reserve, debit, refund}, replay: []stepFunc{refund, failSource, cancel}},
		{name: "cancelled", before: []stepFunc{reserve, cancel}, replay: []stepFunc{cancel, failFunds, refund}},
	}
	s, db := newStoreDB(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newStepFixture(t, s, db, 300)
			f.run(t, tc.before...)
			want := f.state(t)
			for i, step := range tc.replay {
				if err := step(context.Background(), f.s, f.id); err != nil {
					t.Errorf("replayed step %d: got error %v, want none", i+1, err)
				}
				if got := f.state(t); got != want {
					t.Errorf("replayed step %d changed the ledger: got %+v, want %+v", i+1, got, want)
				}
			}
			f.audit(t)
		})
	}
}

func TestReserveFailures(t *testing.T) {
	freezeSource := func(t testing.TB, f stepFixture) { setStatus(t, f.s, f.a.ID, transfer.AccountFrozen) }
	tests := []struct {
		name   string
		amount int64
		setup  func(t testing.TB, f stepFixture)
		want   transfer.Code
	}{
		{name: "one more than the balance", amount: fixtureFunds + 1, want: transfer.CodeInsufficientFunds},
		{name: "more than what another transfer left available", amount: 300, want: transfer.CodeInsufficientFunds,
			setup: func(t testing.TB, f stepFixture) {
				other := createTransfer(t, f.s, transfer.KindTransfer, f.a.ID, f.b.ID, 800, "USD")
				if err := f.s.Reserve(context.Background(), other); err != nil {
					t.Fatalf("reserve the other transfer: %v", err)
				}
			}},
		{name: "frozen source", amount: 300, setup: freezeSource, want: transfer.CodeAccountInactive},
	}
	s, db := newStoreDB(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newStepFixture(t, s, db, tc.amount)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			before := f.state(t)
			checkCode(t, f.s.Reserve(context.Background(), f.id), tc.want)
			if got := f.state(t); got != before {
				t.Errorf("a failed reserve changed the ledger: got %+v, want %+v", got, before)
			}
			f.audit(t)
		})
	}
}

func TestReserveUpToExactlyTheAvailable(t *testing.T) {
	s, db := newStoreDB(t)
	f := newStepFixture(t, s, db, fixtureFunds)
	f.run(t, reserve)
	a := getAccount(t, f.s, f.a.ID)
	if a.Available() != 0 || a.Reserved != fixtureFunds {
		t.Errorf("after reserving everything: got available %d and reserved %d, want 0 and %d", a.Available(), a.Reserved, fixtureFunds)
	}
	f.audit(t)
}

func TestDebitOfSourceFrozenAfterReserve(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	f := newStepFixture(t, s, db, 300)
	f.run(t, reserve)
	setStatus(t, f.s, f.a.ID, transfer.AccountFrozen)
	before := f.state(t)
	checkCode(t, f.s.Debit(ctx, f.id), transfer.CodeAccountInactive)
	if got := f.state(t); got != before {
		t.Errorf("a failed debit changed the ledger: got %+v, want %+v", got, before)
	}
	// The release is what the saga runs next; it must work on the frozen account.
	f.run(t, failSource)
	want := sagaState{FromBalance: 1000, FromEntries: 1, Hold: "released", Status: transfer.StatusFailed, FailureCode: transfer.CodeAccountInactive}
	if got := f.state(t); got != want {
		t.Errorf("after the release: got %+v, want %+v", got, want)
	}
	tr := getTransfer(t, f.s, f.id)
	if tr.CompletedAt == nil || tr.FailureMessage != "source frozen" {
		t.Errorf("released transfer: got completed_at %v and message %q, want a time and %q", tr.CompletedAt, tr.FailureMessage, "source frozen")
	}
	f.audit(t)
}

func TestCreditToFrozenDestinationIsRefunded(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	f := newStepFixture(t, s, db, 300)
	f.run(t, reserve, debit)
	setStatus(t, f.s, f.b.ID, transfer.AccountFrozen)
	before := f.state(t)
	checkCode(t, f.s.Credit(ctx, f.id), transfer.CodeAccountInactive)
	if got := f.state(t); got != before {
		t.Errorf("a failed credit changed the ledger: got %+v, want %+v", got, before)
	}
	// The source may be frozen too by now: money owed back lands whatever its status.
	setStatus(t, f.s, f.a.ID, transfer.AccountFrozen)
	f.run(t, refund)
	want := sagaState{FromBalance: 1000, FromEntries: 3, Hold: "posted", Status: transfer.StatusFailed, FailureCode: transfer.CodeAccountInactive}
	if got := f.state(t); got != want {
		t.Errorf("after the refund: got %+v, want %+v", got, want)
	}
	entries, err := f.s.ListEntries(ctx, f.a.ID, transfer.Page{Limit: 1})
	if err != nil {
		t.Fatalf("list entries: %v", err)
	}
	if len(entries.Items) != 1 {
		t.Fatalf("entries: got %d, want 1", len(entries.Items))
	}
	type line struct {
		account, transfer         uuid.UUID
		kind                      transfer.EntryKind
		amount, balanceAfter, seq int64
	}
	e := entries.Items[0]
	gotLine := line{e.AccountID, e.TransferID, e.Kind, e.Amount, e.BalanceAfter, e.Seq}
	wantLine := line{f.a.ID, f.id, transfer.EntryRefund, 300, 1000, 3}
	if gotLine != wantLine {
		t.Errorf("last entry of the source: got %+v, want %+v", gotLine, wantLine)
	}
	f.audit(t)
}

// TestOutOfOrderStepsChangeNothing asks for each step in a status that does not lead to it: the
// ledger changes nothing and answers with the row as it is, which is what the saga goes on from
// when a replay after a lost workflow task asks for a step the ledger is already past. Release is
// "release unless debited": on a debited or ended transfer it is one of these.
func TestOutOfOrderStepsChangeNothing(t *testing.T) {
	cancelled := transfer.Outcome{Status: transfer.StatusCancelled, Message: "cancelled by the client"}
	refunded := transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeAccountInactive, Message: "destination frozen"}
	tests := []struct {
		name   string
		before []stepFunc
		step   transfer.Step
		o      transfer.Outcome
		want   transfer.Outcome
	}{
		{name: "debit of a pending transfer", step: transfer.StepDebit, want: transfer.Outcome{Status: transfer.StatusPending}},
		{name: "credit of a pending transfer", step: transfer.StepCredit, want: transfer.Outcome{Status: transfer.StatusPending}},
		{name: "credit of a reserved transfer", before: []stepFunc{reserve}, step: transfer.StepCredit, want: transfer.Outcome{Status: transfer.StatusReserved}},
		{name: "refund of a pending transfer", step: transfer.StepRefund, o: refunded, want: transfer.Outcome{Status: transfer.StatusPending}},
		{name: "refund of a reserved transfer", before: []stepFunc{reserve}, step: transfer.StepRefund, o: refunded, want: transfer.Outcome{Status: transfer.StatusReserved}},
		{name: "release of a debited transfer", before: []stepFunc{reserve, debit}, step: transfer.StepRelease, o: cancelled, want: transfer.Outcome{Status: transfer.StatusDebited}},
		{name: "release of a completed transfer", before: []stepFunc{reserve, debit, credit}, step: transfer.StepRelease, o: cancelled, want: transfer.Outcome{Status: transfer.StatusCompleted}},
		{name: "reserve of a debited transfer", before: []stepFunc{reserve, debit}, step: transfer.StepReserve, want: transfer.Outcome{Status: transfer.StatusDebited}},
		{name: "reserve of a cancelled transfer", before: []stepFunc{cancel}, step: transfer.StepReserve, want: cancelled},
		{name: "reserve of a failed transfer", before: []stepFunc{failFunds}, step: transfer.StepReserve,
			want: transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeInsufficientFunds, Message: "not enough"}},
		{name: "reserve after a release", before: []stepFunc{reserve, cancel}, step: transfer.StepReserve, want: cancelled},
		{name: "reserve of a refunded transfer", before: []stepFunc{reserve, debit, refund}, step: transfer.StepReserve, want: refunded},
		{name: "debit of a cancelled transfer", before: []stepFunc{reserve, cancel}, step: transfer.StepDebit, want: cancelled},
		{name: "credit of a refunded transfer", before: []stepFunc{reserve, debit, refund}, step: transfer.StepCredit, want: refunded},
		{name: "release of a refunded transfer", before: []stepFunc{reserve, debit, refund}, step: transfer.StepRelease, o: cancelled, want: refunded},
		{name: "refund of a completed transfer", before: []stepFunc{reserve, debit, credit}, step: transfer.StepRefund, o: refunded, want: transfer.Outcome{Status: transfer.StatusCompleted}},
	}
	s, db := newStoreDB(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newStepFixture(t, s, db, 300)
			f.run(t, tc.before...)
			before := f.state(t)
			got, err := f.s.Step(context.Background(), f.id, tc.step, tc.o)
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if got != tc.want {
				t.Errorf("answer: got %+v, want %+v", got, tc.want)
			}
			if got := f.state(t); got != before {
				t.Errorf("an out-of-order step changed the ledger: got %+v, want %+v", got, before)
			}
			f.audit(t)
		})
	}
	t.Run("release with a completed outcome", func(t *testing.T) {
		f := newStepFixture(t, s, db, 300)
		f.run(t, reserve)
		before := f.state(t)
		_, err := f.s.Step(context.Background(), f.id, transfer.StepRelease, transfer.Outcome{Status: transfer.StatusCompleted})
		checkCode(t, err, transfer.CodeInternal)
		if got := f.state(t); got != before {
			t.Errorf("a refused release changed the ledger: got %+v, want %+v", got, before)
		}
	})
}

// TestStepsAnswerWithTheRow checks each step's answer where it takes effect or is refused: the row
// after the step, and the refusal with the row unchanged.
func TestStepsAnswerWithTheRow(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	f := newStepFixture(t, s, db, 300)
	for _, tc := range []struct {
		step transfer.Step
		want transfer.Status
	}{{transfer.StepReserve, transfer.StatusReserved}, {transfer.StepDebit, transfer.StatusDebited}, {transfer.StepCredit, transfer.StatusCompleted}} {
		got, err := f.s.Step(ctx, f.id, tc.step, transfer.Outcome{})
		if err != nil || got != (transfer.Outcome{Status: tc.want}) {
			t.Errorf("%s: got %+v, %v; want %s, nil", tc.step, got, err, tc.want)
		}
	}
	poor := newStepFixture(t, s, db, fixtureFunds+1)
	got, err := poor.s.Step(ctx, poor.id, transfer.StepReserve, transfer.Outcome{})
	checkCode(t, err, transfer.CodeInsufficientFunds)
	if got != (transfer.Outcome{Status: transfer.StatusPending}) {
		t.Errorf("refused reserve: got %+v, want the pending row", got)
	}
	o := transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeInsufficientFunds, Message: "not enough"}
	if got, err := poor.s.Step(ctx, poor.id, transfer.StepRelease, o); err != nil || got != o {
		t.Errorf("release: got %+v, %v; want %+v, nil", got, err, o)
	}
}

// TestCancelRacesDebit runs the cancel's "release unless debited" against the debit of the same
// reserved transfer, at once, many times: the ledger lets exactly one of them take effect, each
// answer says which, and the invariants hold.
func TestCancelRacesDebit(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	cancelled := transfer.Outcome{Status: transfer.StatusCancelled, Message: "cancelled by the client"}
	wins := map[transfer.Status]int{}
	for i := 0; i < 40; i++ {
		f := newStepFixture(t, s, db, 300)
		f.run(t, reserve)
		var rel, deb transfer.Outcome
		var relErr, debErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			rel, relErr = f.s.Step(ctx, f.id, transfer.StepRelease, cancelled)
		}()
		deb, debErr = f.s.Step(ctx, f.id, transfer.StepDebit, transfer.Outcome{})
		<-done
		if relErr != nil || debErr != nil {
			t.Fatalf("race %d: release %v, debit %v", i, relErr, debErr)
		}
		st := f.state(t)
		switch st.Status {
		case transfer.StatusCancelled:
			if rel != cancelled || deb != cancelled || st.Hold != "released" || st.FromBalance != fixtureFunds {
				t.Errorf("race %d: cancel won, but release answered %+v, debit %+v, ledger %+v", i, rel, deb, st)
			}
		case transfer.StatusDebited:
			if rel.Status != transfer.StatusDebited || deb.Status != transfer.StatusDebited || st.Hold != "posted" {
				t.Errorf("race %d: debit won, but release answered %+v, debit %+v, ledger %+v", i, rel, deb, st)
			}
		default:
			t.Fatalf("race %d: ledger %+v, want cancelled or debited", i, st)
		}
		wins[st.Status]++
		f.audit(t)
	}
	t.Logf("wins: %v", wins)
}

func TestStepsOfUnknownTransfer(t *testing.T) {
	s := newStore(t)
	steps := map[string]stepFunc{"reserve": reserve, "debit": debit, "credit": credit, "release": cancel, "refund": refund}
	for name, step := range steps {
		t.Run(name, func(t *testing.T) {
			checkCode(t, step(context.Background(), s, uuid.New()), transfer.CodeNotFound)
		})
	}
}
