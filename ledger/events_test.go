package ledger_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// eventTypes returns the types of a transfer's events in the order they were recorded, with the
// status each one's snapshot holds.
func eventTypes(t *testing.T, s interface {
	Events(context.Context, transfer.EventFilter, transfer.Page) (transfer.List[transfer.Event], error)
}, id uuid.UUID) ([]string, []transfer.Event) {
	t.Helper()
	l, err := s.Events(context.Background(), transfer.EventFilter{TransferID: id}, transfer.Page{Limit: 100})
	if err != nil {
		t.Fatalf("events of %s: %v", id, err)
	}
	slices.Reverse(l.Items)
	var out []string
	for _, e := range l.Items {
		out = append(out, string(e.Type)+":"+string(e.Transfer.Status))
	}
	return out, l.Items
}

// TestEventsAreTheStatusChanges checks that every status change a type names records exactly one
// event, with the transfer as it was, and nothing else does: for each way a transfer can end.
func TestEventsAreTheStatusChanges(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	a, b := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 1000)

	completed := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 100, "USD")
	runSaga(t, s, completed)

	poor := newAccount(t, s, "USD")
	failed := createTransfer(t, s, transfer.KindTransfer, poor.ID, b.ID, 100, "USD")
	if err := trySaga(ctx, s, failed); err == nil {
		t.Fatalf("an overdraft passed its reserve")
	}
	// The saga's compensation ends it, as the workflow does.
	step(t, s, failed, transfer.StepRelease, transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeInsufficientFunds, Message: "insufficient funds"})

	cancelled := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 50, "USD")
	step(t, s, cancelled, transfer.StepReserve, transfer.Outcome{})
	step(t, s, cancelled, transfer.StepRelease, transfer.Outcome{Status: transfer.StatusCancelled, Message: "changed my mind"})

	captured := createHold(t, s, a.ID, b.ID, 300, nil)
	step(t, s, captured.ID, transfer.StepReserve, transfer.Outcome{})
	step(t, s, captured.ID, transfer.StepCapture, capture(200))
	step(t, s, captured.ID, transfer.StepCredit, transfer.Outcome{})

	expired := createHold(t, s, a.ID, b.ID, 10, nil)
	step(t, s, expired.ID, transfer.StepReserve, transfer.Outcome{})
	expireNow(t, db, expired.ID)
	step(t, s, expired.ID, transfer.StepExpire, transfer.Outcome{})

	// A step repeated (a retried activity) changes no status and records nothing.
	step(t, s, completed, transfer.StepCredit, transfer.Outcome{})

	tests := []struct {
		name string
		id   uuid.UUID
		want []string
	}{
		{"completed", completed, []string{"transfer.created:pending", "transfer.completed:completed"}},
		{"failed at its reserve", failed, []string{"transfer.created:pending", "transfer.failed:failed"}},
		{"cancelled while reserved", cancelled, []string{"transfer.created:pending", "transfer.cancelled:cancelled"}},
		{"a hold captured", captured.ID, []string{"transfer.created:pending", "transfer.held:reserved", "transfer.completed:completed"}},
		{"a hold expired", expired.ID, []string{"transfer.created:pending", "transfer.held:reserved", "transfer.cancelled:cancelled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, events := eventTypes(t, s, tt.id)
			if !slices.Equal(got, tt.want) {
				t.Errorf("events: got %v, want %v", got, tt.want)
			}
			for _, e := range events {
				if e.Transfer.ID != tt.id || e.Transfer.Amount == 0 || e.Transfer.Currency != "USD" {
					t.Errorf("event %s holds %+v", e.Type, e.Transfer)
				}
			}
		})
	}
	_, events := eventTypes(t, s, captured.ID)
	if last := events[len(events)-1].Transfer; last.CapturedAmount == nil || *last.CapturedAmount != 200 || last.CompletedAt == nil {
		t.Errorf("the captured hold's completion holds %+v, want captured 200 and a completion time", last)
	}
	_, events = eventTypes(t, s, failed)
	if f := events[len(events)-1].Transfer; f.FailureCode != transfer.CodeInsufficientFunds {
		t.Errorf("the failure event holds failure code %q", f.FailureCode)
	}
	// The deposit that funded a is a transfer too.
	if n := countRows(t, db, `SELECT count(*) FROM events`); n != 2+3*2+2*3 {
		t.Errorf("events in all: got %d, want 14 (the deposit's 2, 2 for each of 3 transfers, 3 for each of 2 holds)", n)
	}
	mustAudit(t, s)

	// The audit misses none: a captured hold without its held event, a transfer recorded since
	// migration 0011 without any event, a held event of a transfer that is not manual.
	mustExec(t, db, "DELETE FROM events WHERE transfer_id = $1 AND type = 'transfer.held'", captured.ID)
	mustExec(t, db, "DELETE FROM events WHERE transfer_id = $1", completed)
	mustExec(t, db, `INSERT INTO events (id, type, transfer_id, from_account_id, to_account_id, data)
		SELECT gen_random_uuid(), 'transfer.held', transfer_id, from_account_id, to_account_id, data FROM events
		WHERE transfer_id = $1 AND type = 'transfer.created'`, cancelled)
	r, err := s.Audit(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	reported := map[string]bool{}
	for _, v := range r.Violations {
		reported[v.Subject] = true
	}
	for _, id := range []uuid.UUID{captured.ID, completed, cancelled} {
		if !reported["transfer "+id.String()] {
			t.Errorf("the audit did not report transfer %s: %+v", id, r.Violations)
		}
	}
	if len(r.Violations) != 3 {
		t.Errorf("violations: %+v, want the three", r.Violations)
	}
}

// TestEventsUnderConcurrentSagas runs many sagas at once, racing cancels, and checks that each
// transfer has exactly one creation event and exactly one end event, matching its final status.
func TestEventsUnderConcurrentSagas(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	src, dst := newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, src, 500)
	ids := make([]uuid.UUID, 40)
	for i := range ids {
		ids[i] = createTransfer(t, s, transfer.KindTransfer, src.ID, dst.ID, 20, "USD")
	}
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			if i%3 == 0 {
				_, _ = s.Step(ctx, id, transfer.StepRelease, transfer.Outcome{Status: transfer.StatusCancelled})
			}
			if err := trySaga(ctx, s, id); err != nil {
				// Insufficient funds or cancelled: the saga's compensation ends it.
				_, _ = s.Step(ctx, id, transfer.StepRelease, transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeInsufficientFunds})
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		got, _ := eventTypes(t, s, id)
		final := getTransfer(t, s, id).Status
		want := []string{"transfer.created:pending", "transfer." + string(final) + ":" + string(final)}
		if !final.Final() || !slices.Equal(got, want) {
			t.Errorf("transfer %s ended %s with events %v, want %v", id, final, got, want)
		}
	}
	if n := countRows(t, db, `SELECT count(*) FROM (SELECT transfer_id, type FROM events GROUP BY 1, 2 HAVING count(*) > 1) d`); n != 0 {
		t.Errorf("%d (transfer, type) pairs recorded more than once", n)
	}
}

// TestEventVisibility checks that a user lists the events of the transfers touching their accounts
// and no others, and reads one only if it is theirs.
func TestEventVisibility(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	alice, bob, carol := newUser(t, s), newUser(t, s), newUser(t, s)
	a, b, c := newOwnedAccount(t, s, alice.ID, "USD"), newOwnedAccount(t, s, bob.ID, "USD"), newOwnedAccount(t, s, carol.ID, "USD")
	fund(t, s, a, 100)
	ab := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 10, "USD")
	runSaga(t, s, ab)
	fund(t, s, c, 100)
	seen := func(user uuid.UUID) []uuid.UUID {
		l, err := s.Events(ctx, transfer.EventFilter{VisibleTo: user}, transfer.Page{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var out []uuid.UUID
		for _, e := range l.Items {
			out = append(out, e.Transfer.ID)
		}
		return out
	}
	if got := seen(bob.ID); len(got) != 2 || got[0] != ab || got[1] != ab {
		t.Errorf("bob sees events of %v, want the 2 of his incoming transfer", got)
	}
	if got := seen(alice.ID); len(got) != 4 {
		t.Errorf("alice sees %d events, want 4 (her deposit's and her transfer's)", len(got))
	}
	l, err := s.Events(ctx, transfer.EventFilter{VisibleTo: carol.ID, TransferID: ab}, transfer.Page{Limit: 10})
	if err != nil || len(l.Items) != 0 {
		t.Errorf("carol filtering on alice's transfer: got %d events, %v", len(l.Items), err)
	}
	all, err := s.Events(ctx, transfer.EventFilter{TransferID: ab, Type: transfer.EventTransferCompleted}, transfer.Page{Limit: 10})
	if err != nil || len(all.Items) != 1 {
		t.Fatalf("the completion of ab: got %d, %v", len(all.Items), err)
	}
	ev := all.Items[0]
	if ev.SourceOwnerID != alice.ID {
		t.Errorf("source owner: got %s, want alice", ev.SourceOwnerID)
	}
	if _, err := s.Event(ctx, ev.ID, bob.ID); err != nil {
		t.Errorf("bob reading his transfer's event: %v", err)
	}
	_, err = s.Event(ctx, ev.ID, carol.ID)
	checkCode(t, err, transfer.CodeNotFound)
	_, err = s.Events(ctx, transfer.EventFilter{Type: "transfer.exploded"}, transfer.Page{})
	checkCode(t, err, transfer.CodeInvalidInput)
}

// TestCancelAndCaptureAudited checks that the ledger records a transfer's capture and cancel in the
// statement that makes them, as the requester's whose request matches: of two captures requested,
// the one of the amount captured, even when the other was requested later; a cancel as its latest
// requester's; a hold's expiry as nobody's.
func TestCancelAndCaptureAudited(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	payer, payee := newUser(t, s), newUser(t, s)
	a, b := newOwnedAccount(t, s, payer.ID, "USD"), newOwnedAccount(t, s, payee.ID, "USD")
	fund(t, s, a, 1000)
	actorOf := func(id uuid.UUID, action string) (string, bool) {
		t.Helper()
		var actor *string
		err := db.QueryRow(`SELECT actor_id::text FROM audit_log WHERE subject_id = $1 AND action = $2`, id, action).Scan(&actor)
		if err != nil {
			return "", false
		}
		if actor == nil {
			return "", true
		}
		return *actor, true
	}
	request := func(who uuid.UUID, action string, id uuid.UUID, detail map[string]any) {
		t.Helper()
		if err := s.RecordAudit(ctx, transfer.Actor{UserID: who}, action, "transfer", id, detail); err != nil {
			t.Fatal(err)
		}
	}

	h := createHold(t, s, a.ID, b.ID, 300, nil)
	step(t, s, h.ID, transfer.StepReserve, transfer.Outcome{})
	request(payee.ID, transfer.AuditCaptureRequested, h.ID, map[string]any{"amount": 150})
	request(payer.ID, transfer.AuditCaptureRequested, h.ID, map[string]any{"amount": 0}) // all of it, asked later
	step(t, s, h.ID, transfer.StepCapture, capture(150))
	if got, ok := actorOf(h.ID, transfer.AuditTransferCaptured); !ok || got != payee.ID.String() {
		t.Errorf("capture of 150: recorded %v as %q, want the payee's, who asked for 150", ok, got)
	}

	c := createHold(t, s, a.ID, b.ID, 100, nil)
	step(t, s, c.ID, transfer.StepReserve, transfer.Outcome{})
	request(payee.ID, transfer.AuditCancelRequested, c.ID, nil)
	request(payer.ID, transfer.AuditCancelRequested, c.ID, nil)
	step(t, s, c.ID, transfer.StepRelease, transfer.Outcome{Status: transfer.StatusCancelled})
	if got, ok := actorOf(c.ID, transfer.AuditTransferCancelled); !ok || got != payer.ID.String() {
		t.Errorf("cancel: recorded %v as %q, want the latest requester's", ok, got)
	}

	e := createHold(t, s, a.ID, b.ID, 10, nil)
	step(t, s, e.ID, transfer.StepReserve, transfer.Outcome{})
	request(payer.ID, transfer.AuditCancelRequested, e.ID, nil)
	expireNow(t, db, e.ID)
	step(t, s, e.ID, transfer.StepExpire, transfer.Outcome{})
	if got, ok := actorOf(e.ID, transfer.AuditTransferCancelled); !ok || got != "" {
		t.Errorf("expiry: recorded %v as %q, want nobody's", ok, got)
	}
}
