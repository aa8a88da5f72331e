package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// TestConcurrentReservesNeverOverdraw races 50 reserves of 100 against a balance of 1000: the
// conditional UPDATE must let exactly 10 through, and nobody may ever see the account overdrawn.
func TestConcurrentReservesNeverOverdraw(t *testing.T) {
	const (
		goroutines = 50
		amount     = 100
		balance    = 1000
	)
	ctx := context.Background()
	s, db := newStoreDB(t)
	a := newAccount(t, s, "USD")
	b := newAccount(t, s, "USD")
	fund(t, s, a, balance)
	ids := make([]uuid.UUID, goroutines)
	for i := range ids {
		ids[i] = createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, amount, "USD")
	}

	// The watcher reads the account while the reserves run; it must never see it overdrawn.
	done := make(chan struct{})
	watched := make(chan []string)
	go func() {
		var bad []string
		for {
			select {
			case <-done:
				watched <- bad
				return
			default:
			}
			var bal, res int64
			if err := db.QueryRowContext(ctx, "SELECT balance, reserved FROM accounts WHERE id = $1", a.ID).Scan(&bal, &res); err != nil {
				bad = append(bad, err.Error())
				continue
			}
			if bal-res < 0 || res < 0 {
				bad = append(bad, fmt.Sprintf("balance %d, reserved %d", bal, res))
			}
		}
	}()

	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, goroutines)
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = s.Reserve(ctx, id)
		}()
	}
	close(start)
	wg.Wait()
	close(done)
	if bad := <-watched; len(bad) > 0 {
		t.Errorf("while reserving, the account was seen overdrawn or unreadable %d times, first: %s", len(bad), bad[0])
	}

	var ok, insufficient int
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case transfer.IsCode(err, transfer.CodeInsufficientFunds):
			insufficient++
		default:
			t.Errorf("reserve %d: got error %v, want none or %s", i, err, transfer.CodeInsufficientFunds)
		}
	}
	if ok != balance/amount || insufficient != goroutines-balance/amount {
		t.Errorf("reserves: got %d succeeded and %d insufficient, want %d and %d", ok, insufficient, balance/amount, goroutines-balance/amount)
	}
	got := getAccount(t, s, a.ID)
	if got.Balance != balance || got.Reserved != balance || got.Available() != 0 {
		t.Errorf("account: got balance %d, reserved %d, available %d; want %d, %d, 0", got.Balance, got.Reserved, got.Available(), balance, balance)
	}
	if n := countRows(t, db, "SELECT count(*) FROM holds WHERE account_id = $1 AND status = 'held'", a.ID); n != balance/amount {
		t.Errorf("held holds: got %d, want %d", n, balance/amount)
	}
	mustAudit(t, s)
}

// TestOpposingSagasDoNotDeadlock runs full sagas from A to B and from B to A at the same time,
// round after round: none may fail (a deadlock or serialization failure would), and no money may
// appear or vanish.
func TestOpposingSagasDoNotDeadlock(t *testing.T) {
	const (
		rounds     = 4
		perSide    = 20
		amountAB   = 7
		amountBA   = 5
		startFunds = 10000
	)
	ctx := context.Background()
	s := newStore(t)
	a := newAccount(t, s, "USD")
	b := newAccount(t, s, "USD")
	fund(t, s, a, startFunds)
	fund(t, s, b, startFunds)
	for round := range rounds {
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, 2*perSide)
		saga := func(from, to uuid.UUID, amount int64) {
			defer wg.Done()
			tr, _, err := s.CreateTransfer(ctx, transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer,
				FromAccountID: from, ToAccountID: to, Amount: transfer.Amount(amount), Currency: "USD"})
			if err != nil {
				errs <- err
				return
			}
			<-start
			if err := trySaga(ctx, s, tr.ID); err != nil {
				errs <- err
			}
		}
		for range perSide {
			wg.Add(2)
			go saga(a.ID, b.ID, amountAB)
			go saga(b.ID, a.ID, amountBA)
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: got error %v, want none", round+1, err)
		}
	}
	gotA, gotB := getAccount(t, s, a.ID), getAccount(t, s, b.ID)
	wantA := int64(startFunds - rounds*perSide*amountAB + rounds*perSide*amountBA)
	wantB := int64(startFunds + rounds*perSide*amountAB - rounds*perSide*amountBA)
	if gotA.Balance != wantA || gotB.Balance != wantB || gotA.Reserved != 0 || gotB.Reserved != 0 {
		t.Errorf("balances: got A %d (reserved %d) and B %d (reserved %d), want %d and %d, nothing reserved",
			gotA.Balance, gotA.Reserved, gotB.Balance, gotB.Reserved, wantA, wantB)
	}
	mustAudit(t, s)
}

// TestConcurrentSameStepPostsOnce calls each step of one transfer from many goroutines at once, as
// Temporal may when an activity times out while still running: the effect is the effect of one call.
func TestConcurrentSameStepPostsOnce(t *testing.T) {
	const goroutines = 20
	s, db := newStoreDB(t)
	for _, tc := range stepCases() {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newStepFixture(t, s, db, 300)
			f.run(t, tc.before...)
			start := make(chan struct{})
			var wg sync.WaitGroup
			var failed atomic.Int64
			for range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if err := tc.step(ctx, f.s, f.id); err != nil {
						failed.Add(1)
						t.Errorf("got error %v, want none", err)
					}
				}()
			}
			close(start)
			wg.Wait()
			if got := f.state(t); got != tc.want {
				t.Errorf("after %d concurrent calls (%d failed): got %+v, want %+v", goroutines, failed.Load(), got, tc.want)
			}
			f.audit(t)
		})
	}
}
