package ledger_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

// newStore returns a Store on a fresh, migrated database of the test's own.
func newStore(t testing.TB) *ledger.Store {
	t.Helper()
	ctx := context.Background()
	s, err := ledger.Open(ctx, pgtest.NewDatabase(t), ledger.Options{MaxOpenConns: 60})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

// newAccount creates a user and an active account of theirs in the currency.
func newAccount(t testing.TB, s *ledger.Store, cur transfer.Currency) transfer.Account {
	t.Helper()
	ctx := context.Background()
	u, err := s.CreateUser(ctx, transfer.User{Email: uuid.NewString() + "@example.com", PasswordHash: "x", Name: "test"})
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	a, _, err := s.CreateAccount(ctx, ledger.NewAccount{OwnerID: u.ID, Currency: cur})
	if err != nil {
		t.Fatalf("create account: %v", err)
	}
	return a
}

// createTransfer records a pending transfer between two accounts and returns its id.
func createTransfer(t testing.TB, s *ledger.Store, kind transfer.Kind, from, to uuid.UUID, amount int64, cur transfer.Currency) uuid.UUID {
	t.Helper()
	tr, created, err := s.CreateTransfer(context.Background(), transfer.Request{ID: uuid.New(), Kind: kind,
		FromAccountID: from, ToAccountID: to, Amount: transfer.Amount(amount), Currency: cur})
	if err != nil || !created {
		t.Fatalf("create transfer: created %v, err %v", created, err)
	}
	return tr.ID
}

// runSaga runs reserve, debit and credit of a transfer and fails the test on any error.
func runSaga(t testing.TB, s *ledger.Store, id uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	for i, step := range []func(context.Context, uuid.UUID) error{s.Reserve, s.Debit, s.Credit} {
		if err := step(ctx, id); err != nil {
			t.Fatalf("step %d of %s: %v", i+1, id, err)
		}
	}
}

// fund deposits amount into the account from its currency's system account.
func fund(t testing.TB, s *ledger.Store, a transfer.Account, amount int64) {
	t.Helper()
	sys, err := s.SystemAccount(context.Background(), a.Currency)
	if err != nil {
		t.Fatalf("system account: %v", err)
	}
	runSaga(t, s, createTransfer(t, s, transfer.KindDeposit, sys.ID, a.ID, amount, a.Currency))
}

// mustAudit fails the test if the ledger breaks any invariant.
func mustAudit(t testing.TB, s *ledger.Store) {
	t.Helper()
	r, err := s.Audit(context.Background(), nil)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	for _, v := range r.Violations {
		t.Errorf("audit: invariant %d (%s): %s: %s", v.Invariant, v.Name, v.Subject, v.Detail)
	}
}

func TestSmokeDepositAndTransfer(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	a := newAccount(t, s, "USD")
	b := newAccount(t, s, "USD")
	fund(t, s, a, 1000)
	runSaga(t, s, createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 400, "USD"))
	gotA, _ := s.Account(ctx, a.ID)
	gotB, _ := s.Account(ctx, b.ID)
	if gotA.Balance != 600 || gotB.Balance != 400 || gotA.Reserved != 0 {
		t.Errorf("balances: got A %d (reserved %d) and B %d, want 600 (0) and 400", gotA.Balance, gotA.Reserved, gotB.Balance)
	}
	mustAudit(t, s)
}
