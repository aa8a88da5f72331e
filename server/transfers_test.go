package server_test

import (
	"fmt"
	"maps"
	"net/http"
	"sync"
	"testing"

	"github.com/google/uuid"
)

func TestTransferLifecycle(t *testing.T) {
	a := newAPI(t)
	alice, _ := a.user()
	bob, _ := a.user()
	from := a.account(alice, "usd")
	to := a.account(bob, "USD")
	a.deposit(from, 10_000, "USD")

	t.Run("new transfer is 202 with Location, then completes", func(t *testing.T) {
		r := a.do("POST", "/v1/transfers", alice, map[string]any{"from_account_id": from, "to_account_id": to, "amount": 1250, "currency": "usd", "description": "lunch"})
		if r.status != http.StatusAccepted {
			t.Fatalf("status: got %d, want 202; %s", r.status, r.body)
		}
		var tr transferBody
		r.json(t, &tr)
		if got, want := r.header.Get("Location"), "/v1/transfers/"+tr.ID; got != want {
			t.Errorf("Location: got %q, want %q", got, want)
		}
		if tr.Currency != "USD" || tr.Amount != 1250 || tr.Kind != "transfer" {
			t.Errorf("body: got %+v", tr)
		}
		w := a.do("GET", "/v1/transfers/"+tr.ID, bob, nil)
		if w.status != http.StatusOK {
			t.Errorf("destination owner reads the transfer: got %d, want 200", w.status)
		}
		// The next subtest counts on this transfer's credit: wait for its workflow, then check the row.
		a.awaitWorkflows(t, tr.ID)
		var got transferBody
		a.do("GET", "/v1/transfers/"+tr.ID, alice, nil).json(t, &got)
		if got.Status != "completed" {
			t.Fatalf("transfer %s is %s once its workflow closed, want completed", tr.ID, got.Status)
		}
	})

	t.Run("wait answers 201 with the final state", func(t *testing.T) {
		r, tr := a.transfer(alice, map[string]any{"from_account_id": from, "to_account_id": to, "amount": 750, "currency": "USD"})
		if r.status != http.StatusCreated || tr.Status != "completed" || tr.CompletedAt == nil {
			t.Fatalf("got %d %s, want 201 completed", r.status, r.body)
		}
		if got := a.getAccount(bob, to); got.Balance != 2000 {
			t.Errorf("destination balance: got %d, want 2000", got.Balance)
		}
	})

	t.Run("insufficient funds ends failed", func(t *testing.T) {
		r, tr := a.transfer(alice, map[string]any{"from_account_id": from, "to_account_id": to, "amount": 1_000_000, "currency": "USD"})
		if r.status != http.StatusCreated || tr.Status != "failed" || tr.FailureCode == nil || *tr.FailureCode != "insufficient_funds" {
			t.Fatalf("got %d %s, want 201 failed/insufficient_funds", r.status, r.body)
		}
	})

	t.Run("frozen destination ends failed after a refund", func(t *testing.T) {
		carol, _ := a.user()
		frozen := a.account(carol, "USD")
		if r := a.do("PATCH", "/v1/accounts/"+frozen, a.admin, map[string]any{"status": "frozen"}); r.status != http.StatusOK {
			t.Fatalf("freeze: %d %s", r.status, r.body)
		}
		r, tr := a.transfer(alice, map[string]any{"from_account_id": from, "to_account_id": frozen, "amount": 100, "currency": "USD"})
		if tr.Status != "failed" || tr.FailureCode == nil || *tr.FailureCode != "account_inactive" {
			t.Fatalf("got %d %s, want failed/account_inactive", r.status, r.body)
		}
		e := a.do("GET", "/v1/accounts/"+from+"/entries?limit=2", alice, nil)
		var page struct {
			Data []struct {
				Kind       string `json:"kind"`
				Amount     int64  `json:"amount"`
				TransferID string `json:"transfer_id"`
			} `json:"data"`
		}
		e.json(t, &page)
		got := fmt.Sprint(page.Data)
		want := fmt.Sprint([]struct {
			Kind       string `json:"kind"`
			Amount     int64  `json:"amount"`
			TransferID string `json:"transfer_id"`
		}{{"refund", 100, tr.ID}, {"debit", -100, tr.ID}})
		if got != want {
			t.Errorf("source entries: got %s, want %s", got, want)
		}
	})

	t.Run("cancel after completion is 409 not_cancellable", func(t *testing.T) {
		_, tr := a.transfer(alice, map[string]any{"from_account_id": from, "to_account_id": to, "amount": 1, "currency": "USD"})
		r := a.do("POST", "/v1/transfers/"+tr.ID+"/cancel", alice, nil)
		r.problem(t, http.StatusConflict, "not_cancellable")
		// The destination's owner may see the transfer but not cancel it.
		r = a.do("POST", "/v1/transfers/"+tr.ID+"/cancel", bob, nil)
		r.problem(t, http.StatusForbidden, "forbidden")
	})

	a.audit()
}

func TestIdempotency(t *testing.T) {
	a := newAPI(t)
	alice, _ := a.user()
	bob, _ := a.user()
	from := a.account(alice, "EUR")
	to := a.account(bob, "EUR")
	a.deposit(from, 5000, "EUR")

	t.Run("same id and body replays with 200", func(t *testing.T) {
		body := map[string]any{"id": uuid.NewString(), "from_account_id": from, "to_account_id": to, "amount": 100, "currency": "EUR"}
		first, tr := a.transfer(alice, body)
		if first.status != http.StatusCreated {
			t.Fatalf("first: %d %s", first.status, first.body)
		}
		again := a.do("POST", "/v1/transfers", alice, body)
		var tr2 transferBody
		again.json(t, &tr2)
		if again.status != http.StatusOK || again.header.Get("Idempotent-Replayed") != "true" || tr2.ID != tr.ID || tr2.Status != "completed" {
			t.Errorf("replay: got %d replayed=%q %s", again.status, again.header.Get("Idempotent-Replayed"), again.body)
		}
		body["amount"] = 101
		a.do("POST", "/v1/transfers", alice, body).problem(t, http.StatusConflict, "idempotency_conflict")
	})

	t.Run("50 identical requests with an Idempotency-Key move money once", func(t *testing.T) {
		key := "order-" + uuid.NewString()
		body := map[string]any{"from_account_id": from, "to_account_id": to, "amount": 200, "currency": "EUR"}
		var wg sync.WaitGroup
		ids := make([]string, 50)
		statuses := make([]int, 50)
		for i := range 50 {
			wg.Go(func() {
				r := a.do("POST", "/v1/transfers", alice, body, "Idempotency-Key", key)
				statuses[i] = r.status
				var tr transferBody
				if r.status < 300 {
					r.json(t, &tr)
				}
				ids[i] = tr.ID
			})
		}
		wg.Wait()
		accepted := 0
		for i := range 50 {
			if statuses[i] == http.StatusAccepted {
				accepted++
			} else if statuses[i] != http.StatusOK {
				t.Errorf("request %d: status %d", i, statuses[i])
			}
			if ids[i] != ids[0] {
				t.Errorf("request %d: id %s, want %s", i, ids[i], ids[0])
			}
		}
		if accepted != 1 {
			t.Errorf("new transfers: got %d 202s, want exactly 1", accepted)
		}
		// A repeat that waits returns the finished transfer.
		r := a.do("POST", "/v1/transfers?wait=30s", alice, body, "Idempotency-Key", key)
		var final transferBody
		r.json(t, &final)
		if r.status != http.StatusOK || final.ID != ids[0] || final.Status != "completed" {
			t.Errorf("waiting repeat: got %d %s, want 200 and the completed transfer", r.status, r.body)
		}
		if got := a.getAccount(bob, to); got.Balance != 300 {
			t.Errorf("destination balance: got %d, want 300 (100 + 200 once)", got.Balance)
		}
		// Another user with the same key gets another transfer id: keys are per caller.
		carol, _ := a.user()
		r = a.do("POST", "/v1/transfers", carol, map[string]any{"from_account_id": a.account(carol, "EUR"), "to_account_id": to, "amount": 1, "currency": "EUR"}, "Idempotency-Key", key)
		var other transferBody
		r.json(t, &other)
		if other.ID == ids[0] {
			t.Errorf("another caller's same key gave the same transfer id")
		}
	})
	a.audit()
}

// legacyKeyNamespace is the UUIDv5 namespace from which transfer ids were derived from
// (caller, Idempotency-Key) before keys were remembered per caller: transfers created then carry
// such ids, and retries of their requests must still find them.
var legacyKeyNamespace = uuid.MustParse("6f0d2a8e-3c1b-5b7e-9a4d-2e8f1c0b7d35")

// legacyKeyID is the transfer id that an Idempotency-Key used to give a caller's request.
func legacyKeyID(callerID, key string) string {
	return uuid.NewSHA1(legacyKeyNamespace, []byte(callerID+"\x00"+key)).String()
}

// TestIdempotencyKeyCannotBePreClaimed checks that another user who knows a user's id and a key they
// will use cannot make that user's request answer 409 by creating the transfer id that the key
// used to derive, on transfers and withdrawals; and that a key whose legacy id names a transfer its
// own caller created still replays it.
func TestIdempotencyKeyCannotBePreClaimed(t *testing.T) {
	a := newAPI(t)
	alice, aliceID := a.user()
	bob, _ := a.user()
	from, to := a.account(alice, "USD"), a.account(alice, "USD")
	a.deposit(from, 1_000, "USD")
	bobFrom, bobTo := a.account(bob, "USD"), a.account(bob, "USD")

	routes := []struct {
		name, path string
		body       map[string]any
	}{
		{"transfer", "/v1/transfers", map[string]any{"from_account_id": from, "to_account_id": to, "amount": 10, "currency": "USD"}},
		{"withdrawal", "/v1/withdrawals", map[string]any{"account_id": from, "amount": 10, "currency": "USD"}},
	}
	for _, rt := range routes {
		t.Run(rt.name, func(t *testing.T) {
			key := "order-" + rt.name + "-" + uuid.NewString()[:8]
			// Bob takes the id that alice's key used to derive, with a transfer of his own.
			squat := a.do("POST", "/v1/transfers", bob, map[string]any{"id": legacyKeyID(aliceID, key), "from_account_id": bobFrom, "to_account_id": bobTo, "amount": 1, "currency": "USD"})
			if squat.status != http.StatusAccepted {
				t.Fatalf("bob's transfer with alice's derived id: got %s, want 202", squat)
			}
			r := a.do("POST", rt.path, alice, rt.body, "Idempotency-Key", key)
			if r.status != http.StatusAccepted {
				t.Fatalf("alice's request with her key after bob took its derived id: got %s, want 202", r)
			}
			var tr transferBody
			r.json(t, &tr)
			if tr.ID == legacyKeyID(aliceID, key) {
				t.Errorf("alice's transfer has the id bob took")
			}
			again := a.do("POST", rt.path, alice, rt.body, "Idempotency-Key", key)
			var tr2 transferBody
			again.json(t, &tr2)
			if again.status != http.StatusOK || again.header.Get("Idempotent-Replayed") != "true" || tr2.ID != tr.ID {
				t.Errorf("alice's retry: got %s, want 200 replayed %s", again, tr.ID)
			}
			other := maps.Clone(rt.body)
			other["amount"] = 11
			a.do("POST", rt.path, alice, other, "Idempotency-Key", key).problem(t, http.StatusConflict, "idempotency_conflict")
			a.awaitWorkflows(t, tr.ID)
		})
	}

	t.Run("a legacy key's transfer of the same caller is replayed", func(t *testing.T) {
		key := "legacy-" + uuid.NewString()[:8]
		body := map[string]any{"from_account_id": from, "to_account_id": to, "amount": 5, "currency": "USD"}
		// Before keys were remembered, alice's request with the key created the derived id.
		old := maps.Clone(body)
		old["id"] = legacyKeyID(aliceID, key)
		if r := a.do("POST", "/v1/transfers", alice, old); r.status != http.StatusAccepted {
			t.Fatalf("the legacy transfer: got %s, want 202", r)
		}
		r := a.do("POST", "/v1/transfers", alice, body, "Idempotency-Key", key)
		var tr transferBody
		r.json(t, &tr)
		if r.status != http.StatusOK || r.header.Get("Idempotent-Replayed") != "true" || tr.ID != legacyKeyID(aliceID, key) {
			t.Errorf("retry after the upgrade: got %s, want 200 replaying %s", r, legacyKeyID(aliceID, key))
		}
		body["amount"] = 6
		a.do("POST", "/v1/transfers", alice, body, "Idempotency-Key", key).problem(t, http.StatusConflict, "idempotency_conflict")
		a.awaitWorkflows(t, tr.ID)
	})
	a.audit()
}
