package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

// TestStepThatCannotSucceed makes the reserve of one transfer fail with an error that retrying
// cannot fix (a trigger raises a check violation, as a constraint a migration added would): the
// step's error says it is permanent, each failed attempt is recorded, and the audit reports the
// transfer once its step has failed for longer than the threshold with no progress, and no longer
// once it moves on.
func TestStepThatCannotSucceed(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	f := newStepFixture(t, s, db, 300)
	if _, err := db.Exec(fmt.Sprintf(`CREATE FUNCTION refuse_hold() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'planted' USING ERRCODE = 'check_violation'; END $$;
		CREATE TRIGGER refuse_hold BEFORE INSERT ON holds FOR EACH ROW WHEN (NEW.transfer_id = '%s') EXECUTE FUNCTION refuse_hold()`, f.id)); err != nil {
		t.Fatal(err)
	}
	_, err := s.Step(ctx, f.id, transfer.StepReserve, transfer.Outcome{})
	var se *ledger.StepError
	if !errors.As(err, &se) || !se.Permanent() {
		t.Fatalf("reserve: got %v, want a permanent *ledger.StepError", err)
	}
	if got := f.state(t); got.Status != transfer.StatusPending || got.FromReserved != 0 {
		t.Errorf("the failed reserve changed the ledger: %+v", got)
	}
	// A lost connection is transient.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Step(cancelled, f.id, transfer.StepReserve, transfer.Outcome{}); !errors.As(err, &se) || se.Permanent() {
		t.Errorf("reserve on a cancelled context: got %v, want a transient *ledger.StepError", err)
	}

	stuck := func(after time.Duration) []ledger.Violation {
		t.Helper()
		r, err := s.AuditWith(ctx, nil, ledger.AuditOptions{StuckAfter: after})
		if err != nil {
			t.Fatal(err)
		}
		var out []ledger.Violation
		for _, v := range r.Violations {
			if v.Name == "step failing" {
				out = append(out, v)
			}
		}
		return out
	}
	for i := 0; i < 3; i++ {
		if err := s.RecordStepFailure(ctx, f.id, transfer.StepReserve, err); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := stuck(time.Hour); len(got) != 0 {
		t.Errorf("failing for 40 ms, reported with a threshold of an hour: %+v", got)
	}
	got := stuck(30 * time.Millisecond)
	if len(got) != 1 || got[0].Subject != "transfer "+f.id.String() || got[0].Invariant != ledger.InvWorkflows ||
		!strings.Contains(got[0].Detail, "3 times") || !strings.Contains(got[0].Detail, "cannot succeed by retrying") {
		t.Fatalf("stuck steps: got %+v, want this transfer's reserve, failed 3 times, permanently", got)
	}
	// Once the data is fixed, the step succeeds and the transfer moves on: nothing is reported.
	if _, err := db.Exec(`DROP TRIGGER refuse_hold ON holds`); err != nil {
		t.Fatal(err)
	}
	f.run(t, reserve)
	if got := stuck(time.Nanosecond); len(got) != 0 {
		t.Errorf("after the transfer moved on: %+v", got)
	}
	// A later failure of the next step starts its own count.
	if err := s.RecordStepFailure(ctx, f.id, transfer.StepReserve, err); err != nil {
		t.Fatal(err)
	}
	if got := stuck(time.Nanosecond); len(got) != 0 {
		t.Errorf("one failure after progress: %+v", got)
	}
}
