package ledger_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

func TestCreateTransferIsIdempotentByID(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	a := newAccount(t, s, "USD")
	b := newAccount(t, s, "USD")
	c := newAccount(t, s, "USD")
	fund(t, s, a, 1000)
	orig := transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer, FromAccountID: a.ID, ToAccountID: b.ID,
		Amount: 250, Currency: "USD", Description: "rent", Labels: map[string]string{"month": "may", "kind": "rent"},
		InitiatedBy: a.OwnerID}
	first, created, err := s.CreateTransfer(ctx, orig)
	if err != nil || !created {
		t.Fatalf("first create: got created %v, err %v; want true, none", created, err)
	}
	wantFirst := transfer.Transfer{ID: orig.ID, Kind: transfer.KindTransfer, FromAccountID: a.ID, ToAccountID: b.ID, Amount: 250,
		Currency: "USD", Status: transfer.StatusPending, Description: "rent", InitiatedBy: a.OwnerID}
	if !sameTransfer(first, wantFirst) || first.Labels["month"] != "may" || len(first.Labels) != 2 || first.CreatedAt.IsZero() {
		t.Errorf("first create: got %+v, want %+v with the labels and a creation time", first, wantFirst)
	}

	with := func(change func(r *transfer.Request)) transfer.Request {
		r := orig
		r.Labels = map[string]string{"month": "may", "kind": "rent"}
		change(&r)
		return r
	}
	tests := []struct {
		name string
		req  transfer.Request
		want transfer.Code // "" for the original transfer back
	}{
		{name: "same request", req: orig},
		{name: "same labels in a new map", req: with(func(r *transfer.Request) {})},
		// InitiatedBy is not part of what the transfer is: a retry by an operator tool is the same request.
		{name: "another initiator", req: with(func(r *transfer.Request) { r.InitiatedBy = uuid.Nil })},
		{name: "other amount", req: with(func(r *transfer.Request) { r.Amount = 251 }), want: transfer.CodeIdempotencyConflict},
		{name: "other description", req: with(func(r *transfer.Request) { r.Description = "Rent" }), want: transfer.CodeIdempotencyConflict},
		{name: "other label value", req: with(func(r *transfer.Request) { r.Labels["month"] = "june" }), want: transfer.CodeIdempotencyConflict},
		{name: "one label fewer", req: with(func(r *transfer.Request) { delete(r.Labels, "kind") }), want: transfer.CodeIdempotencyConflict},
		{name: "no labels", req: with(func(r *transfer.Request) { r.Labels = nil }), want: transfer.CodeIdempotencyConflict},
		{name: "other destination", req: with(func(r *transfer.Request) { r.ToAccountID = c.ID }), want: transfer.CodeIdempotencyConflict},
		{name: "other kind", req: with(func(r *transfer.Request) { r.Kind = transfer.KindWithdrawal }), want: transfer.CodeIdempotencyConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, created, err := s.CreateTransfer(ctx, tc.req)
			if created {
				t.Errorf("got created = true for an existing id, want false")
			}
			if tc.want != "" {
				checkCode(t, err, tc.want)
			} else if err != nil || !sameTransfer(got, first) || !got.CreatedAt.Equal(first.CreatedAt) {
				t.Errorf("got %+v, %v; want %+v, no error", got, err, first)
			}
			if n := countRows(t, db, "SELECT count(*) FROM transfers WHERE kind = 'transfer'"); n != 1 {
				t.Errorf("transfers recorded: got %d, want 1", n)
			}
		})
	}

	// A repeat after the saga ran gets the transfer in its current state, not a new pending one.
	runSaga(t, s, orig.ID)
	got, created, err := s.CreateTransfer(ctx, orig)
	if err != nil || created || got.Status != transfer.StatusCompleted || got.CompletedAt == nil {
		t.Errorf("repeat after completion: got status %s, completed_at %v, created %v, err %v; want completed, a time, false, none",
			got.Status, got.CompletedAt, created, err)
	}
	// Even after its source has been frozen, a repeat is answered from the row.
	setStatus(t, s, a.ID, transfer.AccountFrozen)
	if got, _, err := s.CreateTransfer(ctx, orig); err != nil || got.ID != orig.ID {
		t.Errorf("repeat after freezing the source: got %s, %v; want %s, none", got.ID, err, orig.ID)
	}
	mustAudit(t, s)
}

// sameTransfer compares the fields of two transfers that identify it and its state.
func sameTransfer(got, want transfer.Transfer) bool {
	return got.ID == want.ID && got.Kind == want.Kind && got.FromAccountID == want.FromAccountID &&
		got.ToAccountID == want.ToAccountID && got.Amount == want.Amount && got.Currency == want.Currency &&
		got.Status == want.Status && got.Description == want.Description && got.InitiatedBy == want.InitiatedBy &&
		got.FailureCode == want.FailureCode
}

func TestCreateTransferRejects(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	a := newAccount(t, s, "USD")
	b := newAccount(t, s, "USD")
	e := newAccount(t, s, "EUR")
	valid := func(change func(r *transfer.Request)) transfer.Request {
		r := transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer, FromAccountID: a.ID, ToAccountID: b.ID, Amount: 100, Currency: "USD"}
		change(&r)
		return r
	}
	tests := []struct {
		name string
		req  transfer.Request
		want transfer.Code
	}{
		{name: "unknown source", req: valid(func(r *transfer.Request) { r.FromAccountID = uuid.New() }), want: transfer.CodeAccountNotFound},
		{name: "unknown destination", req: valid(func(r *transfer.Request) { r.ToAccountID = uuid.New() }), want: transfer.CodeAccountNotFound},
		{name: "same account", req: valid(func(r *transfer.Request) { r.ToAccountID = a.ID }), want: transfer.CodeSameAccount},
		{name: "destination in another currency", req: valid(func(r *transfer.Request) { r.ToAccountID = e.ID }), want: transfer.CodeCurrencyMismatch},
		{name: "source in another currency", req: valid(func(r *transfer.Request) { r.FromAccountID = e.ID }), want: transfer.CodeCurrencyMismatch},
		{name: "request in another currency", req: valid(func(r *transfer.Request) { r.Currency = "EUR" }), want: transfer.CodeCurrencyMismatch},
		{name: "unsupported currency", req: valid(func(r *transfer.Request) { r.Currency = "XXX" }), want: transfer.CodeUnsupportedCurrency},
		{name: "zero amount", req: valid(func(r *transfer.Request) { r.Amount = 0 }), want: transfer.CodeInvalidAmount},
		{name: "amount above the maximum", req: valid(func(r *transfer.Request) { r.Amount = transfer.Amount(transfer.MaxAmount + 1) }), want: transfer.CodeInvalidAmount},
		{name: "unknown kind", req: valid(func(r *transfer.Request) { r.Kind = "gift" }), want: transfer.CodeInvalidInput},
		{name: "no id", req: valid(func(r *transfer.Request) { r.ID = uuid.Nil }), want: transfer.CodeInvalidInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, created, err := s.CreateTransfer(ctx, tc.req)
			checkCode(t, err, tc.want)
			if created {
				t.Errorf("got created = true, want false")
			}
			if n := countRows(t, db, "SELECT count(*) FROM transfers"); n != 0 {
				t.Errorf("transfers recorded: got %d, want 0", n)
			}
			if tc.req.ID != uuid.Nil {
				_, err := s.Transfer(ctx, tc.req.ID)
				checkCode(t, err, transfer.CodeNotFound)
			}
		})
	}
	mustAudit(t, s)
}

// TestCreateTransferConcurrentlyWithOneID races requests with one id, as a client retrying on a
// timeout might. It runs several rounds so that the later ones start on a warm connection pool,
// where the requests really overlap.
func TestCreateTransferConcurrentlyWithOneID(t *testing.T) {
	const (
		rounds     = 5
		goroutines = 20
	)
	ctx := context.Background()
	s, db := newStoreDB(t)
	a := newAccount(t, s, "USD")
	b := newAccount(t, s, "USD")
	type result struct {
		t       transfer.Transfer
		created bool
		err     error
	}
	for round := range rounds {
		req := transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer, FromAccountID: a.ID, ToAccountID: b.ID,
			Amount: transfer.Amount(round + 1), Currency: "USD"}
		results := make([]result, goroutines)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				tr, created, err := s.CreateTransfer(ctx, req)
				results[i] = result{tr, created, err}
			}()
		}
		close(start)
		wg.Wait()
		var created int
		var createdAt time.Time
		for i, r := range results {
			if r.err != nil {
				t.Errorf("round %d, call %d: got error %v, want none", round+1, i, r.err)
				continue
			}
			if r.created {
				created++
			}
			if r.t.ID != req.ID || r.t.Amount != req.Amount || r.t.Status != transfer.StatusPending {
				t.Errorf("round %d, call %d: got transfer %s of %d, %s; want %s of %d, pending",
					round+1, i, r.t.ID, r.t.Amount, r.t.Status, req.ID, req.Amount)
			}
			if createdAt.IsZero() {
				createdAt = r.t.CreatedAt
			} else if !r.t.CreatedAt.Equal(createdAt) {
				t.Errorf("round %d, call %d: got created_at %v, want %v like the others", round+1, i, r.t.CreatedAt, createdAt)
			}
		}
		if created != 1 {
			t.Errorf("round %d: calls that created the transfer: got %d, want 1", round+1, created)
		}
		if n := countRows(t, db, "SELECT count(*) FROM transfers WHERE id = $1", req.ID); n != 1 {
			t.Errorf("round %d: transfers recorded: got %d, want 1", round+1, n)
		}
	}
	mustAudit(t, s)
}

// TestCreateTransferWithIdempotencyKey checks that a key is remembered per caller: its first request
// creates the transfer with the request's id, a repeat returns it and another body conflicts, another
// caller's same key is theirs, an id that another user took cannot occupy the key, and a key whose
// legacy id names a transfer of the same caller names that transfer.
func TestCreateTransferWithIdempotencyKey(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	alice, bob := newUser(t, s), newUser(t, s)
	a1, a2 := newOwnedAccount(t, s, alice.ID, "USD"), newOwnedAccount(t, s, alice.ID, "USD")
	b1, b2 := newOwnedAccount(t, s, bob.ID, "USD"), newOwnedAccount(t, s, bob.ID, "USD")
	req := func(who transfer.User, from, to transfer.Account, amount int64, key string) transfer.Request {
		return transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer, FromAccountID: from.ID, ToAccountID: to.ID,
			Amount: transfer.Amount(amount), Currency: "USD", InitiatedBy: who.ID, IdempotencyKey: key}
	}

	// A new key's transfer takes the key's legacy id while nobody holds it, so that a process of the
	// previous release names the same transfer.
	first := req(alice, a1, a2, 10, "order-1")
	t1, created, err := s.CreateTransfer(ctx, first)
	if want := transfer.LegacyKeyID(alice.ID, "order-1"); err != nil || !created || t1.ID != want {
		t.Fatalf("first request: got %v created %v, %v; want %s created", t1.ID, created, err, want)
	}
	// A process of the previous release retrying it sends the legacy id, no key: the same transfer.
	old := req(alice, a1, a2, 10, "")
	old.ID = t1.ID
	if got, created, err := s.CreateTransfer(ctx, old); err != nil || created || got.ID != t1.ID {
		t.Errorf("the previous release's retry: got %v created %v, %v; want %s, not created", got.ID, created, err, t1.ID)
	}
	// A retry comes with another id from the service: the key decides.
	if got, created, err := s.CreateTransfer(ctx, req(alice, a1, a2, 10, "order-1")); err != nil || created || got.ID != t1.ID {
		t.Errorf("repeat: got %v created %v, %v; want %s, not created", got.ID, created, err, t1.ID)
	}
	_, _, err = s.CreateTransfer(ctx, req(alice, a1, a2, 11, "order-1"))
	checkCode(t, err, transfer.CodeIdempotencyConflict)
	if got, created, err := s.CreateTransfer(ctx, req(bob, b1, b2, 10, "order-1")); err != nil || !created || got.ID != transfer.LegacyKeyID(bob.ID, "order-1") {
		t.Errorf("bob's same key: got %v created %v, %v; want a transfer of his own", got.ID, created, err)
	}

	// Bob takes the legacy id of alice's next key; alice's key still creates her transfer.
	squat := req(bob, b1, b2, 1, "")
	squat.ID = transfer.LegacyKeyID(alice.ID, "order-2")
	if _, created, err := s.CreateTransfer(ctx, squat); err != nil || !created {
		t.Fatalf("bob's transfer with alice's legacy id: created %v, %v", created, err)
	}
	second := req(alice, a1, a2, 20, "order-2")
	if got, created, err := s.CreateTransfer(ctx, second); err != nil || !created || got.ID != second.ID {
		t.Errorf("alice's key after bob took its legacy id: got %v created %v, %v; want %s created", got.ID, created, err, second.ID)
	}

	// Alice's transfer made before keys were remembered, with the key's legacy id.
	legacy := req(alice, a1, a2, 30, "")
	legacy.ID = transfer.LegacyKeyID(alice.ID, "order-3")
	if _, created, err := s.CreateTransfer(ctx, legacy); err != nil || !created {
		t.Fatalf("legacy transfer: created %v, %v", created, err)
	}
	for range 2 {
		if got, created, err := s.CreateTransfer(ctx, req(alice, a1, a2, 30, "order-3")); err != nil || created || got.ID != legacy.ID {
			t.Errorf("retry of the legacy request: got %v created %v, %v; want %s, not created", got.ID, created, err, legacy.ID)
		}
	}
	_, _, err = s.CreateTransfer(ctx, req(alice, a1, a2, 31, "order-3"))
	checkCode(t, err, transfer.CodeIdempotencyConflict)

	// Any header text is a key, and a key without its user is refused.
	odd := string([]byte{0xff, 'k', 0x80})
	if _, created, err := s.CreateTransfer(ctx, req(alice, a1, a2, 1, odd)); err != nil || !created {
		t.Errorf("key of bytes that are not UTF-8: created %v, %v", created, err)
	}
	anonymous := req(alice, a1, a2, 1, "order-4")
	anonymous.InitiatedBy = uuid.Nil
	_, _, err = s.CreateTransfer(ctx, anonymous)
	checkCode(t, err, transfer.CodeInvalidInput)

	if n := countRows(t, db, "SELECT count(*) FROM idempotency_keys"); n != 5 {
		t.Errorf("keys remembered: got %d, want 5 (alice's order-1, 2, 3 and the odd one; bob's order-1)", n)
	}
}

// TestCreateTransferConcurrentlyWithOneKey checks that concurrent requests with one caller's key,
// each with its own id as the service gives them, create one transfer and all return it.
func TestCreateTransferConcurrentlyWithOneKey(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	alice := newUser(t, s)
	a1, a2 := newOwnedAccount(t, s, alice.ID, "USD"), newOwnedAccount(t, s, alice.ID, "USD")
	const n = 30
	ids := make([]uuid.UUID, n)
	createdCount := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tr, created, err := s.CreateTransfer(ctx, transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer,
				FromAccountID: a1.ID, ToAccountID: a2.ID, Amount: 5, Currency: "USD", InitiatedBy: alice.ID, IdempotencyKey: "same"})
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[i] = tr.ID
			if created {
				createdCount++
			}
		})
	}
	wg.Wait()
	if createdCount != 1 {
		t.Errorf("created: got %d, want 1", createdCount)
	}
	for i := range n {
		if ids[i] != ids[0] {
			t.Errorf("request %d: got %s, want %s", i, ids[i], ids[0])
		}
	}
	if got := countRows(t, db, "SELECT count(*) FROM transfers"); got != 1 {
		t.Errorf("transfers: got %d, want 1", got)
	}
}
