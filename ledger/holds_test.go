package ledger_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

// createHold records a manual transfer of amount from a to b, with the request's other terms from
// mod, and returns it.
func createHold(t testing.TB, s *ledger.Store, from, to uuid.UUID, amount int64, mod func(*transfer.Request)) transfer.Transfer {
	t.Helper()
	r := transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer, FromAccountID: from, ToAccountID: to,
		Amount: transfer.Amount(amount), Currency: "USD", CaptureMethod: transfer.CaptureManual}
	if mod != nil {
		mod(&r)
	}
	tr, created, err := s.CreateTransfer(context.Background(), r)
	if err != nil || !created {
		t.Fatalf("create hold: created %v, err %v", created, err)
	}
	return tr
}

// step runs one step and fails the test on an error that is not a business refusal.
func step(t testing.TB, s *ledger.Store, id uuid.UUID, st transfer.Step, o transfer.Outcome) (transfer.Outcome, error) {
	t.Helper()
	row, err := s.Step(context.Background(), id, st, o)
	if err != nil && transfer.ErrorCode(err) == transfer.CodeInternal {
		t.Fatalf("%s %s: %v", st, id, err)
	}
	return row, err
}

// expireNow moves a hold's expiry into the past behind the Store's back, as time passing would.
func expireNow(t testing.TB, db *sql.DB, id uuid.UUID) {
	t.Helper()
	mustExec(t, db, `UPDATE transfer_terms SET hold_expires_at = clock_timestamp() - interval '1 millisecond' WHERE transfer_id = $1`, id)
}

var capture = func(amount int64) transfer.Outcome { return transfer.Outcome{CapturedAmount: amount} }

func TestHoldIsPlacedWithItsExpiry(t *testing.T) {
	s, _ := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 1000)
	h := createHold(t, s, a.ID, b.ID, 300, nil)
	if h.CaptureMethod != transfer.CaptureManual || h.HoldExpiresAt != nil || h.Status != transfer.StatusPending {
		t.Fatalf("new hold: %+v, want manual, pending, no expiry before its reserve", h)
	}
	before := time.Now()
	row, err := step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
	if err != nil || row.Status != transfer.StatusReserved {
		t.Fatalf("reserve: %+v, %v", row, err)
	}
	if d := row.HoldExpiresAt.Sub(before); d < transfer.DefaultHoldFor-time.Minute || d > transfer.DefaultHoldFor+time.Minute {
		t.Errorf("reserve answered expiry %v, %v after the reserve; want about 7 days", row.HoldExpiresAt, d)
	}
	got := getTransfer(t, s, h.ID)
	if got.HoldExpiresAt == nil || !got.HoldExpiresAt.Equal(row.HoldExpiresAt) {
		t.Errorf("row's expiry %v, the answer's %v", got.HoldExpiresAt, row.HoldExpiresAt)
	}
	if acct := getAccount(t, s, a.ID); acct.Reserved != 300 || acct.Balance != 1000 {
		t.Errorf("source after the hold: balance %d reserved %d, want 1000 and 300", acct.Balance, acct.Reserved)
	}
	// The saga's debit never debits a hold: only its capture does.
	row, err = step(t, s, h.ID, transfer.StepDebit, transfer.Outcome{})
	checkCode(t, err, transfer.CodeNotCapturable)
	if row.Status != transfer.StatusReserved {
		t.Errorf("debit of a hold answered %+v, want it still reserved", row)
	}
	mustAudit(t, s)

	// An expiry the client chose is kept by the reserve.
	at := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Microsecond)
	h2 := createHold(t, s, a.ID, b.ID, 100, func(r *transfer.Request) { r.HoldExpiresAt = &at })
	if row, err = step(t, s, h2.ID, transfer.StepReserve, transfer.Outcome{}); err != nil || !row.HoldExpiresAt.Equal(at) {
		t.Errorf("reserve of a hold expiring at %v answered %+v, %v", at, row, err)
	}
}

func TestPartialCaptureReleasesTheRest(t *testing.T) {
	s, db := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 1000)
	h := createHold(t, s, a.ID, b.ID, 300, nil)
	step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
	row, err := step(t, s, h.ID, transfer.StepCapture, capture(200))
	if err != nil || row.Status != transfer.StatusDebited || row.CapturedAmount != 200 {
		t.Fatalf("capture 200: %+v, %v; want debited with 200 captured", row, err)
	}
	if acct := getAccount(t, s, a.ID); acct.Balance != 800 || acct.Reserved != 0 {
		t.Errorf("source after capturing 200 of 300: balance %d reserved %d, want 800 and 0 (the rest released at once)", acct.Balance, acct.Reserved)
	}
	if row, err = step(t, s, h.ID, transfer.StepCredit, transfer.Outcome{}); err != nil || row.Status != transfer.StatusCompleted {
		t.Fatalf("credit: %+v, %v", row, err)
	}
	if acct := getAccount(t, s, b.ID); acct.Balance != 200 {
		t.Errorf("destination balance %d, want the 200 captured", acct.Balance)
	}
	got := getTransfer(t, s, h.ID)
	if got.CapturedAmount == nil || *got.CapturedAmount != 200 || got.Status != transfer.StatusCompleted {
		t.Errorf("transfer %+v, want completed with 200 captured", got)
	}
	if n := countRows(t, db, `SELECT count(*) FROM entries WHERE transfer_id = $1 AND abs(amount) = 200`, h.ID); n != 2 {
		t.Errorf("%d entries of 200, want the debit and the credit", n)
	}
	mustAudit(t, s)
}

func TestCaptureTwiceTakesEffectOnce(t *testing.T) {
	s, _ := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 1000)
	h := createHold(t, s, a.ID, b.ID, 300, nil)
	step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
	for i := range 3 {
		// Zero captures all of the hold; the same amount again is the same capture.
		amount := []int64{0, 300, 0}[i]
		row, err := step(t, s, h.ID, transfer.StepCapture, capture(amount))
		if err != nil || row.CapturedAmount != 300 || row.Status != transfer.StatusDebited {
			t.Fatalf("capture %d (amount %d): %+v, %v", i+1, amount, row, err)
		}
	}
	row, err := step(t, s, h.ID, transfer.StepCapture, capture(100))
	checkCode(t, err, transfer.CodeNotCapturable)
	if row.CapturedAmount != 300 {
		t.Errorf("a capture of another amount answered %+v", row)
	}
	if acct := getAccount(t, s, a.ID); acct.Balance != 700 || acct.Reserved != 0 {
		t.Errorf("source balance %d reserved %d, want 700 and 0", acct.Balance, acct.Reserved)
	}
	mustAudit(t, s)
}

func TestCaptureRefusals(t *testing.T) {
	s, db := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 10000)
	cases := []struct {
		name   string
		setup  func(t *testing.T) uuid.UUID
		amount int64
		want   transfer.Code
		status transfer.Status
	}{
		{"automatic", func(t *testing.T) uuid.UUID {
			id := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 100, "USD")
			step(t, s, id, transfer.StepReserve, transfer.Outcome{})
			return id
		}, 0, transfer.CodeNotCapturable, transfer.StatusReserved},
		{"not held yet", func(t *testing.T) uuid.UUID {
			return createHold(t, s, a.ID, b.ID, 100, nil).ID
		}, 0, transfer.CodeNotCapturable, transfer.StatusPending},
		{"scheduled", func(t *testing.T) uuid.UUID {
			at := time.Now().Add(time.Hour)
			return createHold(t, s, a.ID, b.ID, 100, func(r *transfer.Request) { r.ScheduledFor = &at }).ID
		}, 0, transfer.CodeNotCapturable, transfer.StatusScheduled},
		{"more than the hold", func(t *testing.T) uuid.UUID {
			h := createHold(t, s, a.ID, b.ID, 100, nil)
			step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
			return h.ID
		}, 101, transfer.CodeCaptureExceedsHold, transfer.StatusReserved},
		{"expiry reached by the database's clock", func(t *testing.T) uuid.UUID {
			h := createHold(t, s, a.ID, b.ID, 100, nil)
			step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
			expireNow(t, db, h.ID)
			return h.ID
		}, 0, transfer.CodeNotCapturable, transfer.StatusReserved},
		{"cancelled", func(t *testing.T) uuid.UUID {
			h := createHold(t, s, a.ID, b.ID, 100, nil)
			step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
			step(t, s, h.ID, transfer.StepRelease, transfer.Outcome{Status: transfer.StatusCancelled})
			return h.ID
		}, 0, transfer.CodeNotCapturable, transfer.StatusCancelled},
		{"source frozen", func(t *testing.T) uuid.UUID {
			c := newAccount(t, s, "USD")
			fund(t, s, c, 500)
			h := createHold(t, s, c.ID, b.ID, 100, nil)
			step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
			setStatus(t, s, c.ID, transfer.AccountFrozen)
			return h.ID
		}, 0, transfer.CodeAccountInactive, transfer.StatusReserved},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.setup(t)
			row, err := step(t, s, id, transfer.StepCapture, capture(tc.amount))
			checkCode(t, err, tc.want)
			if row.Status != tc.status || row.CapturedAmount != 0 {
				t.Errorf("refused capture answered %+v, want the row unchanged in %s", row, tc.status)
			}
			if got := getTransfer(t, s, id); got.CapturedAmount != nil || got.Status != tc.status {
				t.Errorf("after a refused capture the transfer is %+v", got)
			}
		})
	}
	mustAudit(t, s)
}

func TestExpiry(t *testing.T) {
	s, db := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 1000)
	h := createHold(t, s, a.ID, b.ID, 300, nil)
	step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
	// Before the expiry, by the database's clock, the expiry changes nothing.
	if row, err := step(t, s, h.ID, transfer.StepExpire, transfer.Outcome{}); err != nil || row.Status != transfer.StatusReserved {
		t.Fatalf("early expiry: %+v, %v; want still reserved", row, err)
	}
	expireNow(t, db, h.ID)
	row, err := step(t, s, h.ID, transfer.StepExpire, transfer.Outcome{})
	if err != nil || row.Status != transfer.StatusCancelled || row.Code != transfer.CodeHoldExpired {
		t.Fatalf("expiry: %+v, %v; want cancelled with hold_expired", row, err)
	}
	if acct := getAccount(t, s, a.ID); acct.Balance != 1000 || acct.Reserved != 0 {
		t.Errorf("source after expiry: balance %d reserved %d, want 1000 and 0", acct.Balance, acct.Reserved)
	}
	// Expired is final: neither a capture, a cancel nor another expiry changes it.
	_, err = step(t, s, h.ID, transfer.StepCapture, capture(0))
	checkCode(t, err, transfer.CodeNotCapturable)
	for _, st := range []transfer.Step{transfer.StepExpire, transfer.StepRelease} {
		row, err := step(t, s, h.ID, st, transfer.Outcome{Status: transfer.StatusCancelled, Message: "too late"})
		if err != nil || row.Code != transfer.CodeHoldExpired {
			t.Errorf("%s after expiry: %+v, %v", st, row, err)
		}
	}
	mustAudit(t, s)
}

// TestCaptureRacesCancelAndExpiry puts a capture, a cancel and an expiry of the same hold to the
// ledger at once, with the hold's expiry a moment away, many times: exactly one of them decides,
// every answer agrees with the row, and the invariants hold.
func TestCaptureRacesCancelAndExpiry(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 100000)
	wins := map[string]int{}
	for i := range 60 {
		h := createHold(t, s, a.ID, b.ID, 100, nil)
		step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
		mustExec(t, db, `UPDATE transfer_terms SET hold_expires_at = clock_timestamp() + interval '2 milliseconds' WHERE transfer_id = $1`, h.ID)
		var wg sync.WaitGroup
		answers := make([]transfer.Outcome, 3)
		errs := make([]error, 3)
		steps := []struct {
			step transfer.Step
			o    transfer.Outcome
		}{
			{transfer.StepCapture, capture(60)},
			{transfer.StepRelease, transfer.Outcome{Status: transfer.StatusCancelled, Message: "cancelled"}},
			{transfer.StepExpire, transfer.Outcome{}},
		}
		for j, st := range steps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(j%2) * time.Millisecond)
				answers[j], errs[j] = s.Step(ctx, h.ID, st.step, st.o)
			}()
		}
		wg.Wait()
		got := getTransfer(t, s, h.ID)
		var winner string
		switch {
		case got.CapturedAmount != nil:
			winner = "capture"
			if errs[0] != nil || *got.CapturedAmount != 60 {
				t.Errorf("race %d: capture won, but it answered %v and the row is %+v", i, errs[0], got)
			}
		case got.Status == transfer.StatusCancelled && got.FailureCode == transfer.CodeHoldExpired:
			winner = "expiry"
		case got.Status == transfer.StatusCancelled:
			winner = "cancel"
		default:
			// Only the expiry can find nothing to do (its time not yet come); a capture and a
			// cancel always decide.
			t.Fatalf("race %d: nothing decided: %+v", i, got)
		}
		if winner != "capture" {
			checkCode(t, errs[0], transfer.CodeNotCapturable)
		}
		for j := 1; j < 3; j++ {
			if errs[j] != nil {
				t.Errorf("race %d: %s: %v", i, steps[j].step, errs[j])
			}
		}
		wins[winner]++
	}
	t.Logf("wins: %v", wins)
	if acct := getAccount(t, s, a.ID); acct.Reserved != 0 {
		t.Errorf("source still has %d reserved after every hold was decided", acct.Reserved)
	}
	mustAudit(t, s)
}

// TestConcurrentCapturesNeverOverdraw places holds for all of an account's money and captures them
// all at once, then tries one more hold: the account ends at exactly zero and the last hold is
// refused.
func TestConcurrentCapturesNeverOverdraw(t *testing.T) {
	ctx := context.Background()
	s, _ := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 1000)
	var ids []uuid.UUID
	for range 10 {
		h := createHold(t, s, a.ID, b.ID, 100, nil)
		if _, err := step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{}); err != nil {
			t.Fatalf("reserve: %v", err)
		}
		ids = append(ids, h.ID)
	}
	extra := createHold(t, s, a.ID, b.ID, 1, nil)
	_, err := step(t, s, extra.ID, transfer.StepReserve, transfer.Outcome{})
	checkCode(t, err, transfer.CodeInsufficientFunds)
	var wg sync.WaitGroup
	errs := make(chan error, len(ids)*2)
	for _, id := range ids {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Step(ctx, id, transfer.StepCapture, capture(0)); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("capture: %v", err)
	}
	if acct := getAccount(t, s, a.ID); acct.Balance != 0 || acct.Reserved != 0 {
		t.Errorf("source after capturing every hold: balance %d reserved %d, want 0 and 0", acct.Balance, acct.Reserved)
	}
	mustAudit(t, s)
}

func TestCapturedTransferRefundsItsCapturedAmount(t *testing.T) {
	s, _ := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 1000)
	h := createHold(t, s, a.ID, b.ID, 300, nil)
	step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
	step(t, s, h.ID, transfer.StepCapture, capture(120))
	setStatus(t, s, b.ID, transfer.AccountFrozen)
	_, err := step(t, s, h.ID, transfer.StepCredit, transfer.Outcome{})
	checkCode(t, err, transfer.CodeAccountInactive)
	row, err := step(t, s, h.ID, transfer.StepRefund, transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeAccountInactive, Message: "frozen"})
	if err != nil || row.Status != transfer.StatusFailed {
		t.Fatalf("refund: %+v, %v", row, err)
	}
	if acct := getAccount(t, s, a.ID); acct.Balance != 1000 || acct.Reserved != 0 {
		t.Errorf("source after the refund of a 120 capture: balance %d reserved %d, want 1000 and 0", acct.Balance, acct.Reserved)
	}
	mustAudit(t, s)
}

func TestScheduledTransfer(t *testing.T) {
	s, db := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 1000)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	r := transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer, FromAccountID: a.ID, ToAccountID: b.ID,
		Amount: 100, Currency: "USD", ScheduledFor: &at}
	tr, created, err := s.CreateTransfer(context.Background(), r)
	if err != nil || !created || tr.Status != transfer.StatusScheduled || tr.ScheduledFor == nil || !tr.ScheduledFor.Equal(at) ||
		tr.CaptureMethod != transfer.CaptureAutomatic {
		t.Fatalf("create scheduled: %+v, %v, %v", tr, created, err)
	}
	// The same request again is the same transfer; another schedule is a conflict.
	if _, created, err := s.CreateTransfer(context.Background(), r); err != nil || created {
		t.Errorf("repeat: created %v, err %v", created, err)
	}
	other := r
	later := at.Add(time.Minute)
	other.ScheduledFor = &later
	_, _, err = s.CreateTransfer(context.Background(), other)
	checkCode(t, err, transfer.CodeIdempotencyConflict)
	// Nothing is held until its time: the reserve waits for step_due.
	if row, err := step(t, s, tr.ID, transfer.StepReserve, transfer.Outcome{}); err != nil || row.Status != transfer.StatusScheduled {
		t.Errorf("reserve of a scheduled transfer: %+v, %v", row, err)
	}
	if acct := getAccount(t, s, a.ID); acct.Reserved != 0 {
		t.Errorf("a scheduled transfer holds %d", acct.Reserved)
	}
	mustAudit(t, s)
	// Its time comes (moved into the past behind the Store's back, as time passing would).
	mustExec(t, db, `UPDATE transfer_terms SET scheduled_for = clock_timestamp() - interval '1 millisecond' WHERE transfer_id = $1`, tr.ID)
	if row, err := step(t, s, tr.ID, transfer.StepDue, transfer.Outcome{}); err != nil || row.Status != transfer.StatusPending {
		t.Fatalf("due: %+v, %v", row, err)
	}
	runSaga(t, s, tr.ID)
	if got := getTransfer(t, s, tr.ID); got.Status != transfer.StatusCompleted {
		t.Errorf("scheduled transfer after its saga: %s", got.Status)
	}

	// A scheduled transfer is cancelled while scheduled; its time coming changes nothing then.
	r2 := r
	r2.ID = uuid.New()
	tr2, _, err := s.CreateTransfer(context.Background(), r2)
	if err != nil {
		t.Fatal(err)
	}
	if row, err := step(t, s, tr2.ID, transfer.StepRelease, transfer.Outcome{Status: transfer.StatusCancelled, Message: "not needed"}); err != nil ||
		row.Status != transfer.StatusCancelled {
		t.Fatalf("cancel while scheduled: %+v, %v", row, err)
	}
	if row, err := step(t, s, tr2.ID, transfer.StepDue, transfer.Outcome{}); err != nil || row.Status != transfer.StatusCancelled {
		t.Errorf("due after cancel: %+v, %v", row, err)
	}
	mustAudit(t, s)
}

func TestScheduledHoldExpiresAfterItsSchedule(t *testing.T) {
	s, _ := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	h := createHold(t, s, a.ID, b.ID, 100, func(r *transfer.Request) { r.ScheduledFor = &at })
	if h.HoldExpiresAt == nil || !h.HoldExpiresAt.Equal(at.Add(transfer.DefaultHoldFor)) {
		t.Errorf("scheduled hold expires at %v, want scheduled_for + 7 days (%v)", h.HoldExpiresAt, at.Add(transfer.DefaultHoldFor))
	}
}

// TestAuditFindsBrokenTerms writes rows that break the terms' rules behind the Store's back, and
// the audit names each.
func TestAuditFindsBrokenTerms(t *testing.T) {
	s, db := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 1000)
	h := createHold(t, s, a.ID, b.ID, 300, nil)
	step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
	step(t, s, h.ID, transfer.StepCapture, capture(200))
	mustAudit(t, s)
	// A captured amount that disagrees with the entries breaks invariant 5.
	mustExec(t, db, `UPDATE transfer_terms SET captured_amount = 250 WHERE transfer_id = $1`, h.ID)
	r, err := s.Audit(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, v := range r.Violations {
		found[v.Name] = true
	}
	for _, name := range []string{"transfer equals entries", "conservation"} {
		if !found[name] {
			t.Errorf("audit missed %q with a captured amount that disagrees with the debit: %+v", name, r.Violations)
		}
	}
	// A manual transfer debited without a capture breaks the terms' rule.
	mustExec(t, db, `UPDATE transfer_terms SET captured_amount = NULL WHERE transfer_id = $1`, h.ID)
	r, err = s.Audit(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	found = map[string]bool{}
	for _, v := range r.Violations {
		found[v.Name] = true
	}
	if !found["hold and schedule terms"] {
		t.Errorf("audit missed a manual transfer debited without its capture: %+v", r.Violations)
	}
}

// TestHoldsMigrationOnALiveLedger applies migration 0007 over a ledger with transfers in every
// status that existed before it, as a rolling upgrade does: the transfers in flight finish after it,
// the previous release's way of calling a step (its five answer columns, by name) still works, each
// statement of the migration can run again, and the audit is clean.
func TestHoldsMigrationOnALiveLedger(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	s, err := ledger.Open(ctx, url, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := fstest.MapFS{}
	err = fs.WalkDir(ledger.MigrationsDir(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path >= "0007" {
			return err
		}
		b, err := fs.ReadFile(ledger.MigrationsDir(), path)
		before[path] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MigrateDir(ctx, before, nil); err != nil {
		t.Fatalf("migrate to 0006: %v", err)
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Before the migration, transfers are written and stepped as the previous release does.
	oldTransfer := func(kind transfer.Kind, from, to uuid.UUID, amount int64) uuid.UUID {
		id := uuid.New()
		mustExec(t, db, `INSERT INTO transfers (id, kind, from_account_id, to_account_id, amount, currency, request_hash)
			VALUES ($1, $2, $3, $4, $5, 'USD', '\x00')`, id, string(kind), from, to, amount)
		return id
	}
	oldStep := func(id uuid.UUID, steps ...string) {
		for _, st := range steps {
			var code sql.NullString
			if err := db.QueryRowContext(ctx, `SELECT code FROM step_`+st+`($1)`, id).Scan(&code); err != nil || code.Valid {
				t.Fatalf("previous release's %s of %s: code %v, err %v", st, id, code, err)
			}
		}
	}
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	sys, err := s.SystemAccount(ctx, "USD")
	if err != nil {
		t.Fatal(err)
	}
	oldStep(oldTransfer(transfer.KindDeposit, sys.ID, a.ID, 1000), "reserve", "debit", "credit")
	pending := oldTransfer(transfer.KindTransfer, a.ID, b.ID, 10)
	reservedID := oldTransfer(transfer.KindTransfer, a.ID, b.ID, 20)
	debitedID := oldTransfer(transfer.KindTransfer, a.ID, b.ID, 30)
	oldStep(reservedID, "reserve")
	oldStep(debitedID, "reserve", "debit")
	applied, err := s.Migrate(ctx)
	if err != nil || len(applied) == 0 || applied[0] != "0007_holds_schedules" {
		t.Fatalf("migrate: applied %v, err %v", applied, err)
	}
	statements, err := ledger.MigrationStatements("0007_holds_schedules")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range statements {
		if _, err := db.ExecContext(ctx, st.SQL); err != nil {
			t.Errorf("statement %q again: %v", st.Name, err)
		}
	}
	var status string
	if err := db.QueryRowContext(ctx, `SELECT status FROM step_credit($1)`, debitedID).Scan(&status); err != nil || status != "completed" {
		t.Errorf("the previous release's call of step_credit: status %q, err %v", status, err)
	}
	runSaga(t, s, pending)
	for _, id := range []uuid.UUID{reservedID} {
		if err := s.Debit(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := s.Credit(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []uuid.UUID{pending, reservedID, debitedID} {
		if got := getTransfer(t, s, id); got.Status != transfer.StatusCompleted || got.CaptureMethod != transfer.CaptureAutomatic {
			t.Errorf("transfer from before the migration: %+v", got)
		}
	}
	mustAudit(t, s)
}

// TestExpiryDecidesOnceItsTimeHasCome: once the database's clock has reached a hold's expiry, the
// expiry has won, whether or not step_expire has run yet: a cancel then ends the transfer expired
// (and is answered 409 by the API), as a capture is refused; a reserve that comes after the expiry
// (a backlog) holds nothing; and a scheduled transfer's step_due waits for its time by the same
// clock.
func TestExpiryDecidesOnceItsTimeHasCome(t *testing.T) {
	s, db := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 1000)
	h := createHold(t, s, a.ID, b.ID, 300, nil)
	step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
	expireNow(t, db, h.ID)
	row, err := step(t, s, h.ID, transfer.StepRelease, transfer.Outcome{Status: transfer.StatusCancelled, Message: "cancel after the expiry"})
	if err != nil || row.Status != transfer.StatusCancelled || row.Code != transfer.CodeHoldExpired {
		t.Errorf("cancel once the expiry was reached: %+v, %v; want cancelled with hold_expired", row, err)
	}

	// A cancel of a hold not placed yet (a backlog) whose expiry has passed: the expiry wins too.
	soon := time.Now().Add(time.Second).UTC().Truncate(time.Microsecond)
	unplaced := createHold(t, s, a.ID, b.ID, 300, func(r *transfer.Request) { r.HoldExpiresAt = &soon })
	time.Sleep(time.Until(soon) + 10*time.Millisecond)
	row, err = step(t, s, unplaced.ID, transfer.StepRelease, transfer.Outcome{Status: transfer.StatusCancelled, Message: "cancel after the expiry"})
	if err != nil || row.Code != transfer.CodeHoldExpired {
		t.Errorf("cancel of a pending hold past its expiry: %+v, %v; want hold_expired", row, err)
	}

	past := time.Now().Add(time.Second).UTC().Truncate(time.Microsecond)
	late := createHold(t, s, a.ID, b.ID, 300, func(r *transfer.Request) { r.HoldExpiresAt = &past })
	time.Sleep(time.Until(past) + 10*time.Millisecond)
	row, err = step(t, s, late.ID, transfer.StepReserve, transfer.Outcome{})
	if err != nil || row.Status != transfer.StatusCancelled || row.Code != transfer.CodeHoldExpired {
		t.Errorf("reserve after the expiry: %+v, %v; want cancelled with hold_expired and nothing held", row, err)
	}
	if acct := getAccount(t, s, a.ID); acct.Reserved != 0 {
		t.Errorf("reserved %d after holds that expired", acct.Reserved)
	}

	at := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	sched, _, err := s.CreateTransfer(context.Background(), transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer,
		FromAccountID: a.ID, ToAccountID: b.ID, Amount: 1, Currency: "USD", ScheduledFor: &at})
	if err != nil {
		t.Fatal(err)
	}
	if row, err := step(t, s, sched.ID, transfer.StepDue, transfer.Outcome{}); err != nil || row.Status != transfer.StatusScheduled {
		t.Errorf("due an hour early: %+v, %v; want still scheduled", row, err)
	}
	mustAudit(t, s)
}

// TestPendingTransfersIncludesOverdueScheduledOnes: the reconciler's lost-start pass looks at
// pending transfers and at scheduled ones whose time has passed, not at every scheduled transfer
// of the year ahead, nor at the holds that wait in reserved.
func TestPendingTransfersIncludesOverdueScheduledOnes(t *testing.T) {
	s, db := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 100)
	at := time.Now().Add(24 * time.Hour)
	mk := func() uuid.UUID {
		tr, _, err := s.CreateTransfer(context.Background(), transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer,
			FromAccountID: a.ID, ToAccountID: b.ID, Amount: 1, Currency: "USD", ScheduledFor: &at})
		if err != nil {
			t.Fatal(err)
		}
		return tr.ID
	}
	ahead, overdue := mk(), mk()
	mustExec(t, db, `UPDATE transfer_terms SET scheduled_for = now() - interval '1 minute' WHERE transfer_id = $1`, overdue)
	pending := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 1, "USD")
	held := createHold(t, s, a.ID, b.ID, 1, nil)
	step(t, s, held.ID, transfer.StepReserve, transfer.Outcome{})
	seen := map[uuid.UUID]bool{}
	// Pages of one, to walk the keyset across both parts.
	for after := (transfer.Key{}); ; {
		got, err := s.PendingTransfers(context.Background(), time.Now().Add(time.Second), after, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		seen[got[0].ID] = true
		after = transfer.Key{CreatedAt: got[0].CreatedAt, ID: got[0].ID}
	}
	if !seen[overdue] || !seen[pending] || seen[ahead] || seen[held.ID] || len(seen) != 2 {
		t.Errorf("pending transfers: overdue scheduled %v, pending %v, scheduled ahead %v, held %v (%d in all); want true, true, false, false",
			seen[overdue], seen[pending], seen[ahead], seen[held.ID], len(seen))
	}
}

// TestCreateTransferChecksItsTimesWhenNew: the ledger refuses a new transfer whose scheduled_for or
// hold_expires_at has passed, in the transaction that would record it, and records nothing of it; a
// repeat of a transfer created in time, by its id or its key, is answered from the transfer after
// its time.
func TestCreateTransferChecksItsTimesWhenNew(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	alice := newUser(t, s)
	a, b := newOwnedAccount(t, s, alice.ID, "USD"), newOwnedAccount(t, s, alice.ID, "USD")
	fund(t, s, a, 1000)
	past := time.Now().Add(-time.Second)
	counts := "SELECT (SELECT count(*) FROM transfers) + (SELECT count(*) FROM idempotency_keys) + (SELECT count(*) FROM audit_log) + (SELECT count(*) FROM events)"
	before := countRows(t, db, counts)
	for name, mod := range map[string]func(*transfer.Request){
		"scheduled_for passed":   func(r *transfer.Request) { r.ScheduledFor = &past },
		"hold_expires_at passed": func(r *transfer.Request) { r.CaptureMethod, r.HoldExpiresAt = transfer.CaptureManual, &past },
	} {
		for _, key := range []string{"", "key-" + name} {
			r := transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer, FromAccountID: a.ID, ToAccountID: b.ID, Amount: 1,
				Currency: "USD", InitiatedBy: alice.ID, IdempotencyKey: key}
			mod(&r)
			var we *transfer.WindowError
			if _, created, err := s.CreateTransfer(ctx, r); !errors.As(err, &we) || created {
				t.Errorf("%s (key %q): created %v, %v; want a *transfer.WindowError", name, key, created, err)
			}
		}
	}
	if after := countRows(t, db, counts); after != before {
		t.Errorf("refused requests left %d rows of transfers, keys, audit or events", after-before)
	}

	at := time.Now().Add(3 * time.Second).UTC().Truncate(time.Microsecond)
	byID := transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer, FromAccountID: a.ID, ToAccountID: b.ID, Amount: 2,
		Currency: "USD", InitiatedBy: alice.ID, ScheduledFor: &at}
	byKey := byID
	byKey.ID, byKey.IdempotencyKey = uuid.New(), "in-time"
	var first [2]transfer.Transfer
	for i, r := range []transfer.Request{byID, byKey} {
		tr, created, err := s.CreateTransfer(ctx, r)
		if err != nil || !created {
			t.Fatalf("in time: created %v, %v", created, err)
		}
		first[i] = tr
	}
	time.Sleep(time.Until(at) + 10*time.Millisecond)
	byKey.ID = uuid.New() // the service gives every request a new id
	for i, r := range []transfer.Request{byID, byKey} {
		tr, created, err := s.CreateTransfer(ctx, r)
		if err != nil || created || tr.ID != first[i].ID {
			t.Errorf("repeat after its time: %s created %v, %v; want the repeat of %s", tr.ID, created, err, first[i].ID)
		}
	}
	mustAudit(t, s)
}

// TestRetryPastItsTimeWaitsForItsFirstAttempt: a first attempt checked its times in time, and its
// commit is held (a deferred trigger of the test's waits on an advisory lock the test holds); the
// retry, past scheduled_for, waits for that commit and is its repeat, not a refusal. By id; by key
// (the key's legacy id); and by key when someone else holds the legacy id, so that the wait is on
// the key.
func TestRetryPastItsTimeWaitsForItsFirstAttempt(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	alice, bob := newUser(t, s), newUser(t, s)
	a, b := newOwnedAccount(t, s, alice.ID, "USD"), newOwnedAccount(t, s, alice.ID, "USD")
	bobs := newOwnedAccount(t, s, bob.ID, "USD")
	fund(t, s, a, 1000)
	fund(t, s, bobs, 1000)
	for _, q := range []string{
		`CREATE FUNCTION test_hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN IF NEW.description = 'held' THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF; RETURN NULL; END $$`,
		`CREATE CONSTRAINT TRIGGER test_hold_commit AFTER INSERT ON transfers DEFERRABLE INITIALLY DEFERRED
		 FOR EACH ROW EXECUTE FUNCTION test_hold_commit()`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	taken := "held-by-bob"
	if _, _, err := s.CreateTransfer(ctx, transfer.Request{ID: transfer.LegacyKeyID(alice.ID, taken), Kind: transfer.KindTransfer,
		FromAccountID: bobs.ID, ToAccountID: a.ID, Amount: 1, Currency: "USD", InitiatedBy: bob.ID}); err != nil {
		t.Fatal(err)
	}
	awaitWaiting := func(t *testing.T, n int64, what string) {
		t.Helper()
		waiting := func() int64 { return countRows(t, db, "SELECT count(*) FROM pg_locks WHERE NOT granted") }
		for deadline := time.Now().Add(30 * time.Second); waiting() < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never waited", what)
			}
		}
	}
	for name, key := range map[string]string{"id": "", "key": "k-" + uuid.NewString(), "key, legacy id taken": taken} {
		t.Run(name, func(t *testing.T) {
			gate, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer gate.Close()
			if _, err := gate.ExecContext(ctx, "SELECT pg_advisory_lock(4242)"); err != nil {
				t.Fatal(err)
			}
			released := false
			release := func() {
				if !released {
					released = true
					if _, err := gate.ExecContext(ctx, "SELECT pg_advisory_unlock(4242)"); err != nil {
						t.Error(err)
					}
				}
			}
			defer release()
			at := time.Now().Add(3 * time.Second).UTC().Truncate(time.Microsecond)
			r := transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer, FromAccountID: a.ID, ToAccountID: b.ID, Amount: 3,
				Currency: "USD", Description: "held", InitiatedBy: alice.ID, IdempotencyKey: key, ScheduledFor: &at}
			type answer struct {
				tr      transfer.Transfer
				created bool
				err     error
			}
			run := func(r transfer.Request) chan answer {
				done := make(chan answer, 1)
				go func() {
					tr, created, err := s.CreateTransfer(ctx, r)
					done <- answer{tr, created, err}
				}()
				return done
			}
			firstDone := run(r)
			awaitWaiting(t, 1, "the first attempt's commit")
			time.Sleep(time.Until(at) + 100*time.Millisecond)
			retry := r
			if key != "" {
				retry.ID = uuid.New() // the service gives every request a new id
			}
			retryDone := run(retry)
			awaitWaiting(t, 2, "the retry")
			release()
			first, second := <-firstDone, <-retryDone
			if first.err != nil || !first.created {
				t.Fatalf("first attempt: created %v, %v; want created (it was held only at its commit)", first.created, first.err)
			}
			if second.err != nil || second.created || second.tr.ID != first.tr.ID {
				t.Errorf("retry past its time: %s created %v, %v; want the repeat of %s", second.tr.ID, second.created, second.err, first.tr.ID)
			}
		})
	}
	mustAudit(t, s)
}
