package ledger_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

// newStore returns a Store on a fresh, migrated database of the test's own.
func newStore(t testing.TB) *ledger.Store {
	t.Helper()
	s, _ := newStoreDB(t)
	return s
}

// newStoreDB returns a Store on a fresh, migrated database of the test's own, and a second,
// independent connection pool (database/sql with driver "pgx") to the same database, through which
// tests read and write rows behind the Store's back.
func newStoreDB(t testing.TB) (*ledger.Store, *sql.DB) {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	s, err := ledger.Open(ctx, url, ledger.Options{MaxOpenConns: 60})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatalf("open raw connection: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return s, db
}

// newUser creates a user with a unique email.
func newUser(t testing.TB, s *ledger.Store) transfer.User {
	t.Helper()
	u, err := s.CreateUser(context.Background(), transfer.User{Email: uuid.NewString() + "@example.com", PasswordHash: "x", Name: "test"})
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	return u
}

// newAccount creates a user and an active account of theirs in the currency.
func newAccount(t testing.TB, s *ledger.Store, cur transfer.Currency) transfer.Account {
	t.Helper()
	return newOwnedAccount(t, s, newUser(t, s).ID, cur)
}

// newOwnedAccount creates an active account of the owner in the currency.
func newOwnedAccount(t testing.TB, s *ledger.Store, owner uuid.UUID, cur transfer.Currency) transfer.Account {
	t.Helper()
	a, created, err := s.CreateAccount(context.Background(), ledger.NewAccount{OwnerID: owner, Currency: cur})
	if err != nil || !created {
		t.Fatalf("create account: created %v, err %v", created, err)
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
	if err := trySaga(context.Background(), s, id); err != nil {
		t.Fatal(err)
	}
}

// trySaga runs reserve, debit and credit of a transfer and returns the first error. Unlike runSaga
// it may run on any goroutine.
func trySaga(ctx context.Context, s *ledger.Store, id uuid.UUID) error {
	for i, step := range []func(context.Context, uuid.UUID) error{s.Reserve, s.Debit, s.Credit} {
		if err := step(ctx, id); err != nil {
			return fmt.Errorf("step %d of %s: %w", i+1, id, err)
		}
	}
	return nil
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

// getAccount reads an account and fails the test if it cannot.
func getAccount(t testing.TB, s *ledger.Store, id uuid.UUID) transfer.Account {
	t.Helper()
	a, err := s.Account(context.Background(), id)
	if err != nil {
		t.Fatalf("account %s: %v", id, err)
	}
	return a
}

// getTransfer reads a transfer and fails the test if it cannot.
func getTransfer(t testing.TB, s *ledger.Store, id uuid.UUID) transfer.Transfer {
	t.Helper()
	tr, err := s.Transfer(context.Background(), id)
	if err != nil {
		t.Fatalf("transfer %s: %v", id, err)
	}
	return tr
}

// setStatus changes an account's status and fails the test if it cannot.
func setStatus(t testing.TB, s *ledger.Store, id uuid.UUID, status transfer.AccountStatus) {
	t.Helper()
	if _, err := s.SetAccountStatus(context.Background(), transfer.Actor{}, id, status); err != nil {
		t.Fatalf("set account %s %s: %v", id, status, err)
	}
}

// checkCode fails the test unless err is a *transfer.Error with the wanted code.
func checkCode(t testing.TB, err error, want transfer.Code) {
	t.Helper()
	var te *transfer.Error
	if !errors.As(err, &te) {
		t.Errorf("got error %v, want a *transfer.Error with code %s", err, want)
		return
	}
	if te.Code != want {
		t.Errorf("got code %s (%v), want %s", te.Code, err, want)
	}
}

// countRows runs a count query on the raw connection.
func countRows(t testing.TB, db *sql.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// mustExec runs a statement on the raw connection and fails the test if it fails.
func mustExec(t testing.TB, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// pgError returns the PostgreSQL error in err's chain, or nil.
func pgError(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// sagaState is everything a step of a transfer from one account to another may change. It is
// comparable, so "nothing changed" is one ==.
type sagaState struct {
	FromBalance, FromReserved int64
	ToBalance, ToReserved     int64
	FromEntries, ToEntries    int64
	// Hold is the status of the transfer's hold, or "" when it has none.
	Hold        string
	Status      transfer.Status
	FailureCode transfer.Code
}

// stateOf reads the sagaState of a transfer.
func stateOf(t testing.TB, s *ledger.Store, db *sql.DB, id uuid.UUID) sagaState {
	t.Helper()
	tr := getTransfer(t, s, id)
	from := getAccount(t, s, tr.FromAccountID)
	to := getAccount(t, s, tr.ToAccountID)
	st := sagaState{FromBalance: from.Balance, FromReserved: from.Reserved, ToBalance: to.Balance, ToReserved: to.Reserved,
		FromEntries: countRows(t, db, "SELECT count(*) FROM entries WHERE account_id = $1", from.ID),
		ToEntries:   countRows(t, db, "SELECT count(*) FROM entries WHERE account_id = $1", to.ID),
		Status:      tr.Status, FailureCode: tr.FailureCode}
	err := db.QueryRowContext(context.Background(), "SELECT status FROM holds WHERE transfer_id = $1", id).Scan(&st.Hold)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("hold of %s: %v", id, err)
	}
	return st
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
