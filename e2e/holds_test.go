package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// TestHoldsAndSchedules runs the new paths of holds and scheduled transfers on the dev server and
// on the PostgreSQL cluster: a partial capture, a cancel while held, an expiry, a scheduled
// transfer that runs on time and one cancelled while scheduled; the search attributes that
// operators find them by (TransferStatus, HoldExpiresAt, ScheduledFor); and a clean audit, workflows
// included.
func TestHoldsAndSchedules(t *testing.T) { forEachBackend(t, testHoldsAndSchedules) }

func testHoldsAndSchedules(t *testing.T, s *stack) {
	ctx := context.Background()
	a := s.account("USD")
	b := s.account("USD")
	s.deposit(a, 10000)
	hold := func(amount int64, mod func(*transfer.Request)) transfer.Transfer {
		t.Helper()
		r := transfer.Request{ID: uuid.New(), FromAccountID: a.ID, ToAccountID: b.ID, Amount: transfer.Amount(amount), Currency: "USD",
			CaptureMethod: transfer.CaptureManual}
		if mod != nil {
			mod(&r)
		}
		tr, _, err := s.svc.Submit(ctx, r)
		if err != nil {
			t.Fatalf("submit hold: %v", err)
		}
		return tr
	}

	// Partial capture: 300 of 500 moves, the rest is released.
	captured := hold(500, nil)
	waitStatus(t, s, captured.ID, transfer.StatusReserved)
	// Operators find held transfers by their expiry.
	s.listWorkflows(fmt.Sprintf("WorkflowId = '%s' AND TransferStatus = 'reserved' AND HoldExpiresAt > '%s'",
		captured.ID, time.Now().Add(6*24*time.Hour).UTC().Format(time.RFC3339)), 1)
	got, err := s.svc.Capture(ctx, captured.ID, 300)
	if err != nil || got.CapturedAmount == nil || *got.CapturedAmount != 300 {
		t.Fatalf("capture: %+v, %v", got, err)
	}
	if done := s.wait(captured.ID); done.Status != transfer.StatusCompleted {
		t.Fatalf("captured transfer ended %s", done.Status)
	}
	if bal, res := s.balance(a.ID); bal != 9700 || res != 0 {
		t.Errorf("source after capturing 300 of 500: balance %d reserved %d", bal, res)
	}
	_, err = s.svc.Capture(ctx, captured.ID, 200)
	if !transfer.IsCode(err, transfer.CodeNotCapturable) {
		t.Errorf("capture of another amount: %v", err)
	}

	// Cancel while held.
	cancelled := hold(100, nil)
	waitStatus(t, s, cancelled.ID, transfer.StatusReserved)
	if got, err := s.svc.Cancel(ctx, cancelled.ID, "not needed"); err != nil || got.Status != transfer.StatusCancelled {
		t.Fatalf("cancel while held: %+v, %v", got, err)
	}

	// Expiry, a few seconds ahead.
	at := time.Now().Add(2 * time.Second).UTC().Truncate(time.Microsecond)
	expiring := hold(100, func(r *transfer.Request) { r.HoldExpiresAt = &at })
	if done := s.wait(expiring.ID); done.Status != transfer.StatusCancelled || done.FailureCode != transfer.CodeHoldExpired {
		t.Fatalf("expiring hold ended %+v", done)
	}

	// Scheduled a few seconds ahead, it runs on time; operators find it by ScheduledFor meanwhile.
	when := time.Now().Add(3 * time.Second).UTC().Truncate(time.Microsecond)
	sched, _, err := s.svc.Submit(ctx, transfer.Request{ID: uuid.New(), FromAccountID: a.ID, ToAccountID: b.ID, Amount: 50, Currency: "USD", ScheduledFor: &when})
	if err != nil || sched.Status != transfer.StatusScheduled {
		t.Fatalf("scheduled: %+v, %v", sched, err)
	}
	s.listWorkflows(fmt.Sprintf("WorkflowId = '%s' AND TransferStatus = 'scheduled' AND ScheduledFor = '%s'", sched.ID, when.Format(time.RFC3339Nano)), 1)
	done := s.wait(sched.ID)
	if done.Status != transfer.StatusCompleted || done.CompletedAt.Before(when) {
		t.Errorf("scheduled transfer: %+v, completed before its time %v", done, when)
	}

	// Cancelled while scheduled.
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	dropped, _, err := s.svc.Submit(ctx, transfer.Request{ID: uuid.New(), FromAccountID: a.ID, ToAccountID: b.ID, Amount: 50, Currency: "USD", ScheduledFor: &later})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.svc.Cancel(ctx, dropped.ID, "plans changed"); err != nil || got.Status != transfer.StatusCancelled {
		t.Fatalf("cancel while scheduled: %+v, %v", got, err)
	}
	for _, id := range []uuid.UUID{captured.ID, cancelled.ID, expiring.ID, sched.ID, dropped.ID} {
		s.wait(id)
	}
	s.audit()
}
