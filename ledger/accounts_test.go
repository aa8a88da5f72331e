package ledger_test

import (
	"context"
	"maps"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

func TestCreateAccountWithExternalID(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	owner := newUser(t, s)
	other := newUser(t, s)
	orig := ledger.NewAccount{OwnerID: owner.ID, Currency: "USD", ExternalID: "savings", Labels: map[string]string{"purpose": "rainy day"}}
	first, created, err := s.CreateAccount(ctx, orig)
	if err != nil || !created {
		t.Fatalf("first create: got created %v, err %v; want true, none", created, err)
	}
	if first.OwnerID != owner.ID || first.ExternalID != "savings" || first.Currency != "USD" || first.Kind != transfer.AccountUser ||
		first.Status != transfer.AccountActive || first.Balance != 0 || !maps.Equal(first.Labels, orig.Labels) {
		t.Errorf("first create: got %+v, want an active, empty USD user account of %s with external id savings and labels %v",
			first, owner.ID, orig.Labels)
	}

	tests := []struct {
		name        string
		in          ledger.NewAccount
		wantCode    transfer.Code // "" for success
		wantCreated bool
		wantFirst   bool // the first account comes back
	}{
		{name: "same body", in: orig, wantFirst: true},
		{name: "same labels in a new map", in: ledger.NewAccount{OwnerID: owner.ID, Currency: "USD", ExternalID: "savings",
			Labels: map[string]string{"purpose": "rainy day"}}, wantFirst: true},
		{name: "other labels", in: ledger.NewAccount{OwnerID: owner.ID, Currency: "USD", ExternalID: "savings",
			Labels: map[string]string{"purpose": "holidays"}}, wantCode: transfer.CodeExternalIDConflict},
		{name: "no labels", in: ledger.NewAccount{OwnerID: owner.ID, Currency: "USD", ExternalID: "savings"},
			wantCode: transfer.CodeExternalIDConflict},
		{name: "other currency", in: ledger.NewAccount{OwnerID: owner.ID, Currency: "EUR", ExternalID: "savings", Labels: orig.Labels},
			wantCode: transfer.CodeExternalIDConflict},
		{name: "same external id of another owner", in: ledger.NewAccount{OwnerID: other.ID, Currency: "USD", ExternalID: "savings",
			Labels: orig.Labels}, wantCreated: true},
		{name: "other external id", in: ledger.NewAccount{OwnerID: owner.ID, Currency: "USD", ExternalID: "checking"}, wantCreated: true},
		{name: "no external id", in: ledger.NewAccount{OwnerID: owner.ID, Currency: "USD"}, wantCreated: true},
		{name: "no external id again", in: ledger.NewAccount{OwnerID: owner.ID, Currency: "USD"}, wantCreated: true},
		{name: "unknown owner", in: ledger.NewAccount{OwnerID: uuid.New(), Currency: "USD"}, wantCode: transfer.CodeNotFound},
		{name: "no owner", in: ledger.NewAccount{Currency: "USD"}, wantCode: transfer.CodeInvalidInput},
		{name: "unsupported currency", in: ledger.NewAccount{OwnerID: owner.ID, Currency: "XXX"}, wantCode: transfer.CodeUnsupportedCurrency},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := countRows(t, db, "SELECT count(*) FROM accounts")
			got, created, err := s.CreateAccount(ctx, tc.in)
			after := countRows(t, db, "SELECT count(*) FROM accounts")
			if tc.wantCode != "" {
				checkCode(t, err, tc.wantCode)
			} else if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if created != tc.wantCreated {
				t.Errorf("got created %v, want %v", created, tc.wantCreated)
			}
			if tc.wantFirst && (got.ID != first.ID || !got.CreatedAt.Equal(first.CreatedAt)) {
				t.Errorf("got account %s created %v, want the first one, %s created %v", got.ID, got.CreatedAt, first.ID, first.CreatedAt)
			}
			if tc.wantCreated && (got.ID == first.ID || got.ID == uuid.Nil || got.OwnerID != tc.in.OwnerID) {
				t.Errorf("got account %s of %s, want a new account of %s", got.ID, got.OwnerID, tc.in.OwnerID)
			}
			var wantNew int64
			if tc.wantCreated {
				wantNew = 1
			}
			if after-before != wantNew {
				t.Errorf("accounts recorded: got %d more, want %d", after-before, wantNew)
			}
		})
	}
}

func TestCreateAccountConcurrentlyWithOneExternalID(t *testing.T) {
	const goroutines = 10
	ctx := context.Background()
	s, db := newStoreDB(t)
	owner := newUser(t, s)
	in := ledger.NewAccount{OwnerID: owner.ID, Currency: "EUR", ExternalID: "main"}
	ids := make([]uuid.UUID, goroutines)
	created := make([]bool, goroutines)
	errs := make([]error, goroutines)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var a transfer.Account
			a, created[i], errs[i] = s.CreateAccount(ctx, in)
			ids[i] = a.ID
		}()
	}
	close(start)
	wg.Wait()
	var n int
	for i := range ids {
		if errs[i] != nil {
			t.Errorf("call %d: got error %v, want none", i, errs[i])
		}
		if created[i] {
			n++
		}
		if ids[i] != ids[0] {
			t.Errorf("call %d: got account %s, want %s like call 0", i, ids[i], ids[0])
		}
	}
	if n != 1 {
		t.Errorf("calls that created the account: got %d, want 1", n)
	}
	if got := countRows(t, db, "SELECT count(*) FROM accounts WHERE owner_id = $1", owner.ID); got != 1 {
		t.Errorf("accounts of the owner: got %d, want 1", got)
	}
}

func TestSystemAccountOncePerCurrency(t *testing.T) {
	const goroutines = 20
	ctx := context.Background()
	s, db := newStoreDB(t)
	type result struct {
		a   transfer.Account
		err error
	}
	results := make([]result, 2*goroutines)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range results {
		cur := transfer.Currency("USD")
		if i%2 == 1 {
			cur = "JPY"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			a, err := s.SystemAccount(ctx, cur)
			results[i] = result{a, err}
		}()
	}
	close(start)
	wg.Wait()
	for i, r := range results {
		want := results[i%2].a
		if r.err != nil || r.a.ID != want.ID || r.a.Kind != transfer.AccountSystem || r.a.OwnerID != uuid.Nil || r.a.Currency != want.Currency {
			t.Errorf("call %d: got %s %s %s of owner %s, err %v; want system account %s of no owner",
				i, r.a.Kind, r.a.Currency, r.a.ID, r.a.OwnerID, r.err, want.ID)
		}
	}
	if results[0].a.ID == results[1].a.ID || results[0].a.Currency != "USD" || results[1].a.Currency != "JPY" {
		t.Errorf("got USD system account %s (%s) and JPY %s (%s), want two different accounts of those currencies",
			results[0].a.ID, results[0].a.Currency, results[1].a.ID, results[1].a.Currency)
	}
	if n := countRows(t, db, "SELECT count(*) FROM accounts WHERE kind = 'system'"); n != 2 {
		t.Errorf("system accounts: got %d, want 2", n)
	}
	_, err := s.SystemAccount(ctx, "XXX")
	checkCode(t, err, transfer.CodeUnsupportedCurrency)
	mustAudit(t, s)
}

func TestSetAccountStatus(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	sys, err := s.SystemAccount(ctx, "USD")
	if err != nil {
		t.Fatalf("system account: %v", err)
	}
	tests := []struct {
		name       string
		setup      func(t testing.TB, a transfer.Account) // a is an empty, active USD account
		status     transfer.AccountStatus
		wantCode   transfer.Code // "" for success
		wantStatus transfer.AccountStatus
	}{
		{name: "freeze", status: transfer.AccountFrozen, wantStatus: transfer.AccountFrozen},
		{name: "close an empty account", status: transfer.AccountClosed, wantStatus: transfer.AccountClosed},
		{name: "unfreeze", status: transfer.AccountActive, wantStatus: transfer.AccountActive,
			setup: func(t testing.TB, a transfer.Account) { setStatus(t, s, a.ID, transfer.AccountFrozen) }},
		{name: "close a frozen empty account", status: transfer.AccountClosed, wantStatus: transfer.AccountClosed,
			setup: func(t testing.TB, a transfer.Account) { setStatus(t, s, a.ID, transfer.AccountFrozen) }},
		{name: "close with a balance", status: transfer.AccountClosed, wantCode: transfer.CodeAccountNotEmpty, wantStatus: transfer.AccountActive,
			setup: func(t testing.TB, a transfer.Account) { fund(t, s, a, 1) }},
		{name: "close a frozen account with a balance", status: transfer.AccountClosed, wantCode: transfer.CodeAccountNotEmpty,
			wantStatus: transfer.AccountFrozen, setup: func(t testing.TB, a transfer.Account) {
				fund(t, s, a, 1)
				setStatus(t, s, a.ID, transfer.AccountFrozen)
			}},
		{name: "close with a pending transfer in", status: transfer.AccountClosed, wantCode: transfer.CodeAccountNotEmpty,
			wantStatus: transfer.AccountActive, setup: func(t testing.TB, a transfer.Account) {
				createTransfer(t, s, transfer.KindDeposit, sys.ID, a.ID, 5, "USD")
			}},
		{name: "close with a debited transfer in", status: transfer.AccountClosed, wantCode: transfer.CodeAccountNotEmpty,
			wantStatus: transfer.AccountActive, setup: func(t testing.TB, a transfer.Account) {
				id := createTransfer(t, s, transfer.KindDeposit, sys.ID, a.ID, 5, "USD")
				if err := s.Reserve(ctx, id); err != nil {
					t.Fatal(err)
				}
				if err := s.Debit(ctx, id); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "unknown status", status: "deleted", wantCode: transfer.CodeInvalidInput, wantStatus: transfer.AccountActive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAccount(t, s, "USD")
			if tc.setup != nil {
				tc.setup(t, a)
			}
			got, err := s.SetAccountStatus(ctx, transfer.Actor{}, a.ID, tc.status)
			if tc.wantCode != "" {
				checkCode(t, err, tc.wantCode)
			} else if err != nil || got.Status != tc.wantStatus || got.ID != a.ID {
				t.Errorf("got account %s %s, err %v; want %s %s, none", got.ID, got.Status, err, a.ID, tc.wantStatus)
			}
			if stored := getAccount(t, s, a.ID); stored.Status != tc.wantStatus {
				t.Errorf("stored status: got %s, want %s", stored.Status, tc.wantStatus)
			}
		})
	}
	_, err = s.SetAccountStatus(ctx, transfer.Actor{}, sys.ID, transfer.AccountFrozen)
	checkCode(t, err, transfer.CodeInvalidInput)
	_, err = s.SetAccountStatus(ctx, transfer.Actor{}, uuid.New(), transfer.AccountFrozen)
	checkCode(t, err, transfer.CodeAccountNotFound)
}
