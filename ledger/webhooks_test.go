package ledger_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

func newEndpoint(t *testing.T, s *ledger.Store, user uuid.UUID, types ...string) transfer.WebhookEndpoint {
	t.Helper()
	e, created, err := s.CreateEndpoint(context.Background(), transfer.NewEndpoint{ID: uuid.New(), UserID: user, URL: "https://example.com/hook?token=abc",
		EventTypes: types, Secret: bytes.Repeat([]byte{7}, 32), Actor: transfer.Actor{UserID: user}})
	if err != nil || !created {
		t.Fatalf("create endpoint: %v", err)
	}
	return e
}

// TestDeliveriesEnqueuedWithTheirEvent checks that the trigger enqueues, with each event, one
// delivery per enabled endpoint that subscribes to its type and whose owner may see it: the owners
// of the transfer's accounts and every admin; not another user, not a disabled endpoint, not a
// disabled user's.
func TestDeliveriesEnqueuedWithTheirEvent(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	payer, payee, other, admin, gone := newUser(t, s), newUser(t, s), newUser(t, s), newUser(t, s), newUser(t, s)
	role, disabled := transfer.RoleAdmin, transfer.UserDisabled
	if _, err := s.UpdateUser(ctx, transfer.Actor{}, admin.ID, transfer.UserPatch{Role: &role}); err != nil {
		t.Fatal(err)
	}
	a, b := newOwnedAccount(t, s, payer.ID, "USD"), newOwnedAccount(t, s, payee.ID, "USD")
	newOwnedAccount(t, s, gone.ID, "USD")
	payerAll := newEndpoint(t, s, payer.ID, "*")
	payeeDone := newEndpoint(t, s, payee.ID, "transfer.completed")
	otherAll := newEndpoint(t, s, other.ID, "*")
	adminAll := newEndpoint(t, s, admin.ID, "*")
	off := newEndpoint(t, s, payer.ID, "*")
	st := transfer.EndpointDisabled
	if _, err := s.UpdateEndpoint(ctx, transfer.Actor{}, payer.ID, off.ID, transfer.EndpointPatch{Status: &st}); err != nil {
		t.Fatal(err)
	}
	goneAll := newEndpoint(t, s, gone.ID, "*")
	if _, err := s.UpdateUser(ctx, transfer.Actor{}, gone.ID, transfer.UserPatch{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	fund(t, s, a, 100)                                                                // 2 events: created, completed
	runSaga(t, s, createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 10, "USD")) // 2 events
	count := func(e transfer.WebhookEndpoint) int64 {
		return countRows(t, db, `SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1`, e.ID)
	}
	for _, c := range []struct {
		name string
		e    transfer.WebhookEndpoint
		want int64
	}{
		{"the payer's, every type", payerAll, 4}, {"the payee's, completions", payeeDone, 1}, {"another user's", otherAll, 0},
		{"an admin's", adminAll, 4}, {"a disabled endpoint", off, 0}, {"a disabled user's", goneAll, 0},
	} {
		if got := count(c.e); got != c.want {
			t.Errorf("%s: %d deliveries, want %d", c.name, got, c.want)
		}
	}
	ds, err := s.UnstartedDeliveries(ctx, 100)
	if err != nil || len(ds) != 9 {
		t.Fatalf("unstarted: %d, %v; want 9", len(ds), err)
	}
	if err := s.MarkDeliveryStarted(ctx, ds[0].ID); err != nil {
		t.Fatal(err)
	}
	if ds, _ := s.UnstartedDeliveries(ctx, 100); len(ds) != 8 {
		t.Errorf("unstarted after one started: %d, want 8", len(ds))
	}
	// The target of a delivery re-checks visibility at the time of the attempt.
	var payeeDelivery uuid.UUID
	if err := db.QueryRow(`SELECT id FROM webhook_deliveries WHERE endpoint_id = $1`, payeeDone.ID).Scan(&payeeDelivery); err != nil {
		t.Fatal(err)
	}
	target, err := s.DeliveryTarget(ctx, payeeDelivery)
	if err != nil || !target.Visible || target.OwnerAdmin || target.Event.Type != transfer.EventTransferCompleted || target.Event.SourceOwnerID != payer.ID {
		t.Fatalf("target: %+v, %v", target, err)
	}
	if _, err := s.UpdateUser(ctx, transfer.Actor{}, payee.ID, transfer.UserPatch{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	if target, _ := s.DeliveryTarget(ctx, payeeDelivery); target.Visible {
		t.Errorf("a disabled user's delivery is still visible to them")
	}
	mustAudit(t, s)
}

// TestEndpointStreakDisables checks the delivery log and the failing streak: a failure starts it, a
// 2xx ends it, and an attempt that fails once the streak has lasted disableAfter disables the
// endpoint with its reason, once; a retried record changes nothing.
func TestEndpointStreakDisables(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	u := newUser(t, s)
	a := newOwnedAccount(t, s, u.ID, "USD")
	e := newEndpoint(t, s, u.ID, "*")
	fund(t, s, a, 10)
	var del, ev uuid.UUID
	if err := db.QueryRow(`SELECT id, event_id FROM webhook_deliveries WHERE endpoint_id = $1 LIMIT 1`, e.ID).Scan(&del, &ev); err != nil {
		t.Fatal(err)
	}
	attempt := func(n int, ok bool, disableAfter time.Duration) bool {
		t.Helper()
		rec := transfer.DeliveryAttempt{ID: uuid.New(), DeliveryID: del, EndpointID: e.ID, EventID: ev, Attempt: n, ResponseStatus: 500, Duration: time.Millisecond}
		if ok {
			rec.ResponseStatus = 204
		} else {
			next := time.Now().Add(time.Minute)
			rec.NextRetryAt = &next
		}
		disabled, err := s.RecordAttempt(ctx, rec, ok, disableAfter)
		if err != nil {
			t.Fatal(err)
		}
		return disabled
	}
	if attempt(1, false, time.Hour) {
		t.Errorf("a first failure disabled the endpoint")
	}
	if attempt(1, false, 0) {
		t.Errorf("the same attempt recorded again changed something")
	}
	if got, _ := s.Endpoint(ctx, u.ID, e.ID); got.FailingSince == nil {
		t.Errorf("no failing streak after a failure")
	}
	attempt(2, true, time.Hour)
	if got, _ := s.Endpoint(ctx, u.ID, e.ID); got.FailingSince != nil || got.LastSuccessAt == nil {
		t.Errorf("after a 2xx: %+v, want no streak and a success time", got)
	}
	attempt(3, false, time.Hour)
	mustExec(t, db, `UPDATE webhook_endpoints SET failing_since = now() - interval '2 hours' WHERE id = $1`, e.ID)
	if !attempt(4, false, time.Hour) {
		t.Fatalf("a failure two hours into the streak did not disable the endpoint")
	}
	got, _ := s.Endpoint(ctx, u.ID, e.ID)
	if got.Status != transfer.EndpointDisabled || got.DisabledReason == "" {
		t.Errorf("after the streak: %+v, want disabled with a reason", got)
	}
	if attempt(5, false, time.Hour) {
		t.Errorf("a disabled endpoint was disabled again")
	}
	// An endpoint idle for over a day after its last failure starts a new streak at its next one,
	// rather than being disabled for a streak that began days ago.
	enabled := transfer.EndpointEnabled
	if _, err := s.UpdateEndpoint(ctx, transfer.Actor{}, u.ID, e.ID, transfer.EndpointPatch{Status: &enabled}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, `UPDATE webhook_endpoints SET failing_since = now() - interval '6 days', last_failure_at = now() - interval '3 days' WHERE id = $1`, e.ID)
	if attempt(6, false, 120*time.Hour) {
		t.Errorf("the first failure after three idle days disabled the endpoint for a streak begun six days ago")
	}
	if got, _ := s.Endpoint(ctx, u.ID, e.ID); got.Status != transfer.EndpointEnabled || got.FailingSince == nil || time.Since(*got.FailingSince) > time.Minute {
		t.Errorf("after the idle days: %+v, want enabled with a streak begun now", got)
	}
	l, err := s.Attempts(ctx, e.ID, transfer.Page{})
	if err != nil || len(l.Items) != 6 || l.Items[0].Attempt != 6 || l.Items[5].Attempt != 1 {
		t.Errorf("delivery log: %d attempts, %v; want 6, newest first", len(l.Items), err)
	}
	// The attempt that disabled the endpoint names no retry; the failure before it does.
	for _, a := range l.Items {
		if (a.Attempt == 4) != (a.NextRetryAt == nil) && (a.Attempt == 3 || a.Attempt == 4) {
			t.Errorf("attempt %d: next retry %v; only the disabling attempt 4 has none", a.Attempt, a.NextRetryAt)
		}
	}
}

// TestEndpointCalls checks creation with an Idempotency-Key, rotation (the old secret signs beside
// the new one until it expires), a rotation retried with its key, deletion, and another user's
// endpoint.
func TestEndpointCalls(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	u, other := newUser(t, s), newUser(t, s)
	req := transfer.NewEndpoint{ID: uuid.New(), UserID: u.ID, URL: "https://example.com/h", EventTypes: []string{"*"},
		Secret: bytes.Repeat([]byte{1}, 32), IdempotencyKey: "k"}
	e, created, err := s.CreateEndpoint(ctx, req)
	if err != nil || !created {
		t.Fatal(err)
	}
	req.ID = uuid.New()
	if again, created, err := s.CreateEndpoint(ctx, req); err != nil || created || again.ID != e.ID {
		t.Errorf("retry: %v created %v, %v; want %s", again.ID, created, err, e.ID)
	}
	req.URL = "https://example.com/other"
	_, _, err = s.CreateEndpoint(ctx, req)
	checkCode(t, err, transfer.CodeIdempotencyConflict)

	fresh := bytes.Repeat([]byte{2}, 32)
	r, rotated, err := s.RotateSecret(ctx, transfer.Actor{UserID: u.ID}, u.ID, e.ID, fresh, "rot")
	if err != nil || !rotated || !bytes.Equal(r.Secret, fresh) || !bytes.Equal(r.PreviousSecret, e.Secret) {
		t.Fatalf("rotate: %+v, %v", r, err)
	}
	if keys := r.Secrets(time.Now()); len(keys) != 2 {
		t.Errorf("secrets right after a rotation: %d, want 2", len(keys))
	}
	if keys := r.Secrets(time.Now().Add(ledger.PreviousSecretFor + time.Minute)); len(keys) != 1 || !bytes.Equal(keys[0], fresh) {
		t.Errorf("secrets a day after the rotation: %d, want the new one", len(keys))
	}
	if r2, rotated, err := s.RotateSecret(ctx, transfer.Actor{}, u.ID, e.ID, bytes.Repeat([]byte{3}, 32), "rot"); err != nil || rotated || !bytes.Equal(r2.Secret, fresh) {
		t.Errorf("rotation retried: rotated %v, %v", rotated, err)
	}
	_, _, err = s.RotateSecret(ctx, transfer.Actor{}, other.ID, e.ID, fresh, "")
	checkCode(t, err, transfer.CodeNotFound)
	_, err = s.Endpoint(ctx, other.ID, e.ID)
	checkCode(t, err, transfer.CodeNotFound)
	if err := s.DeleteEndpoint(ctx, transfer.Actor{}, u.ID, e.ID); err != nil {
		t.Fatal(err)
	}
	checkCode(t, s.DeleteEndpoint(ctx, transfer.Actor{}, u.ID, e.ID), transfer.CodeNotFound)
	_, err = s.Endpoint(ctx, u.ID, e.ID)
	checkCode(t, err, transfer.CodeNotFound)

	// At most MaxEndpointsPerUser endpoints a user, deleted ones not counted.
	for i := range ledger.MaxEndpointsPerUser {
		if _, _, err := s.CreateEndpoint(ctx, transfer.NewEndpoint{ID: uuid.New(), UserID: u.ID, URL: "https://example.com/" + string(rune('a'+i)),
			EventTypes: []string{"*"}, Secret: bytes.Repeat([]byte{1}, 32)}); err != nil {
			t.Fatalf("endpoint %d: %v", i+1, err)
		}
	}
	_, _, err = s.CreateEndpoint(ctx, transfer.NewEndpoint{ID: uuid.New(), UserID: u.ID, URL: "https://example.com/z",
		EventTypes: []string{"*"}, Secret: bytes.Repeat([]byte{1}, 32)})
	checkCode(t, err, transfer.CodeTooManyEndpoints)
}
