package server_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
)

// TestConcurrentTransfersOverHTTP has many users transfer among each other in parallel, including
// opposite directions on the same pair at the same time, then checks that every transfer ended, that
// the audit finds nothing, and that the money per currency is conserved.
func TestConcurrentTransfersOverHTTP(t *testing.T) {
	a := newAPI(t)
	const users, perUser, rounds = 8, 2000, 6
	type member struct {
		token   string
		account string
	}
	var members []member
	for range users {
		tok, _ := a.user()
		acct := a.account(tok, "USD")
		a.deposit(acct, perUser, "USD")
		members = append(members, member{tok, acct})
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		outcomes = map[string]int{}
		failures []string
	)
	record := func(r resp, tr transferBody) {
		mu.Lock()
		defer mu.Unlock()
		if r.status != http.StatusCreated {
			failures = append(failures, fmt.Sprintf("%d %s", r.status, r.body))
			return
		}
		key := tr.Status
		if tr.FailureCode != nil {
			key += "/" + *tr.FailureCode
		}
		outcomes[key]++
	}
	for round := range rounds {
		for i := range members {
			// Each member pays the next one and is paid by it at the same time: opposite directions
			// on the same pair.
			j := (i + 1) % len(members)
			for _, pair := range [][2]int{{i, j}, {j, i}} {
				wg.Go(func() {
					amount := 1 + rand.IntN(700)
					r, tr := a.transfer(members[pair[0]].token, map[string]any{
						"from_account_id": members[pair[0]].account, "to_account_id": members[pair[1]].account,
						"amount": amount, "currency": "USD", "description": fmt.Sprintf("round %d", round)})
					record(r, tr)
				})
			}
		}
		wg.Wait()
	}
	for _, f := range failures {
		t.Errorf("transfer did not end within its wait: %s", f)
	}
	if outcomes["completed"] == 0 {
		t.Errorf("no transfer completed: %v", outcomes)
	}
	for k := range outcomes {
		if k != "completed" && k != "failed/insufficient_funds" {
			t.Errorf("unexpected outcome %s", k)
		}
	}
	t.Logf("outcomes: %v", outcomes)
	var total int64
	for _, m := range members {
		acct := a.getAccount(m.token, m.account)
		if acct.Reserved != 0 || acct.Available != acct.Balance || acct.Balance < 0 {
			t.Errorf("account %s: balance %d reserved %d available %d", acct.ID, acct.Balance, acct.Reserved, acct.Available)
		}
		total += acct.Balance
	}
	if want := int64(users * perUser); total != want {
		t.Errorf("money held by the users: got %d, want %d (conserved)", total, want)
	}
	a.audit()
}
