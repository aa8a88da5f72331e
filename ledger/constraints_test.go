package ledger_test

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

// TestDatabaseEnforcesMoneyRules writes rows behind the Store's back, through a second connection, as
// buggy Go code might: the schema itself must refuse every write that breaks a money rule. Each write
// runs in a transaction that is rolled back, so the cases do not affect each other.
func TestDatabaseEnforcesMoneyRules(t *testing.T) {
	const (
		checkViolation      = "23514"
		uniqueViolation     = "23505"
		foreignKeyViolation = "23503"
	)
	ctx := context.Background()
	s, db := newStoreDB(t)
	a := newAccount(t, s, "USD")
	b := newAccount(t, s, "USD")
	eur := newAccount(t, s, "EUR")
	fund(t, s, a, 1000)
	sys, err := s.SystemAccount(ctx, "USD")
	if err != nil {
		t.Fatalf("system account: %v", err)
	}
	completed := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 300, "USD")
	runSaga(t, s, completed)
	reserved := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 200, "USD")
	if err := s.Reserve(ctx, reserved); err != nil {
		t.Fatalf("reserve: %v", err)
	}
	pending := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 50, "USD")
	// a: balance 700, reserved 200, entries seq 1 (deposit) and 2 (debit); b: balance 300, seq 1.

	const (
		insertTransfer = `INSERT INTO transfers (id, kind, from_account_id, to_account_id, amount, currency, request_hash)
			VALUES ($1, $2, $3, $4, 10, $5, '\x00')`
		insertEntry = "INSERT INTO entries (id, account_id, transfer_id, kind, amount, balance_after, seq) VALUES ($1, $2, $3, $4, $5, 0, $6)"
	)
	tests := []struct {
		name string
		// setup runs first, in the same transaction, to drop what would stop the write too early.
		setup          string
		query          string
		args           []any
		wantCode       string // "" when the write must succeed
		wantConstraint string
	}{
		{name: "user balance below reserved", query: "UPDATE accounts SET balance = 199 WHERE id = $1", args: []any{a.ID},
			wantCode: checkViolation, wantConstraint: "accounts_no_overdraft"},
		{name: "user balance negative", query: "UPDATE accounts SET balance = -1, reserved = 0 WHERE id = $1", args: []any{b.ID},
			wantCode: checkViolation, wantConstraint: "accounts_no_overdraft"},
		{name: "reserve beyond the balance", query: "UPDATE accounts SET reserved = balance + 1 WHERE id = $1", args: []any{a.ID},
			wantCode: checkViolation, wantConstraint: "accounts_no_overdraft"},
		{name: "negative reserved", query: "UPDATE accounts SET reserved = -1 WHERE id = $1", args: []any{b.ID},
			wantCode: checkViolation, wantConstraint: "accounts_reserved_nonnegative"},
		{name: "user balance down to exactly reserved", query: "UPDATE accounts SET balance = 200 WHERE id = $1", args: []any{a.ID}},
		{name: "system account goes negative", query: "UPDATE accounts SET balance = balance - 1000000 WHERE id = $1", args: []any{sys.ID}},
		{name: "closing an account with money", query: "UPDATE accounts SET status = 'closed' WHERE id = $1", args: []any{b.ID},
			wantCode: checkViolation, wantConstraint: "accounts_closed_empty"},
		{name: "second entry of the same transfer and kind",
			query:    "INSERT INTO entries (id, account_id, transfer_id, kind, amount, balance_after, seq) VALUES ($1, $2, $3, 'credit', 300, 600, 2)",
			args:     []any{uuid.New(), b.ID, completed},
			wantCode: uniqueViolation, wantConstraint: "entries_transfer_kind_key"},
		{name: "duplicate account seq",
			query:    "INSERT INTO entries (id, account_id, transfer_id, kind, amount, balance_after, seq) VALUES ($1, $2, $3, 'debit', -200, 500, 2)",
			args:     []any{uuid.New(), a.ID, reserved},
			wantCode: uniqueViolation, wantConstraint: "entries_account_seq_key"},
		{name: "debit with a positive amount",
			query:    "INSERT INTO entries (id, account_id, transfer_id, kind, amount, balance_after, seq) VALUES ($1, $2, $3, 'debit', 200, 900, 3)",
			args:     []any{uuid.New(), a.ID, reserved},
			wantCode: checkViolation, wantConstraint: "entries_sign"},
		{name: "second hold for a transfer",
			query:    "INSERT INTO holds (transfer_id, account_id, amount, status) VALUES ($1, $2, 200, 'held')",
			args:     []any{reserved, a.ID},
			wantCode: uniqueViolation, wantConstraint: "holds_pkey"},
		{name: "transfer to itself", query: "UPDATE transfers SET to_account_id = from_account_id WHERE id = $1", args: []any{reserved},
			wantCode: checkViolation, wantConstraint: "transfers_distinct_accounts"},

		// A transfer's accounts hold its currency and are of the kinds its kind needs (0004).
		{name: "transfer between user accounts of its currency", query: insertTransfer,
			args: []any{uuid.New(), "transfer", a.ID, b.ID, "USD"}},
		{name: "deposit from the system account", query: insertTransfer, args: []any{uuid.New(), "deposit", sys.ID, a.ID, "USD"}},
		{name: "withdrawal to the system account", query: insertTransfer, args: []any{uuid.New(), "withdrawal", a.ID, sys.ID, "USD"}},
		{name: "transfer to an account of another currency", query: insertTransfer,
			args:     []any{uuid.New(), "transfer", a.ID, eur.ID, "USD"},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_to_currency_kind_fkey"},
		{name: "transfer from an account of another currency", query: insertTransfer,
			args:     []any{uuid.New(), "transfer", eur.ID, a.ID, "USD"},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_from_currency_kind_fkey"},
		{name: "currency changed under its accounts", query: "UPDATE transfers SET currency = 'EUR', to_account_id = $1 WHERE id = $2",
			args:     []any{eur.ID, pending},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_from_currency_kind_fkey"},
		{name: "deposit from a user account", query: insertTransfer, args: []any{uuid.New(), "deposit", a.ID, b.ID, "USD"},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_from_currency_kind_fkey"},
		{name: "withdrawal to a user account", query: insertTransfer, args: []any{uuid.New(), "withdrawal", a.ID, b.ID, "USD"},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_to_currency_kind_fkey"},
		{name: "transfer from the system account", query: insertTransfer, args: []any{uuid.New(), "transfer", sys.ID, b.ID, "USD"},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_from_currency_kind_fkey"},
		{name: "transfer to the system account", query: insertTransfer, args: []any{uuid.New(), "transfer", a.ID, sys.ID, "USD"},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_to_currency_kind_fkey"},
		{name: "transfer relabelled a deposit", query: "UPDATE transfers SET kind = 'deposit' WHERE id = $1", args: []any{reserved},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_from_currency_kind_fkey"},
		{name: "transfer relabelled a withdrawal", query: "UPDATE transfers SET kind = 'withdrawal' WHERE id = $1", args: []any{completed},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_to_currency_kind_fkey"},

		// A hold is on its transfer's source, for its amount (0004).
		{name: "hold on the source for the amount",
			query: "INSERT INTO holds (transfer_id, account_id, amount, status) VALUES ($1, $2, 50, 'held')", args: []any{pending, a.ID}},
		{name: "hold for another amount",
			query:    "INSERT INTO holds (transfer_id, account_id, amount, status) VALUES ($1, $2, 49, 'held')",
			args:     []any{pending, a.ID},
			wantCode: foreignKeyViolation, wantConstraint: "holds_transfer_account_amount_fkey"},
		{name: "hold on the destination",
			query:    "INSERT INTO holds (transfer_id, account_id, amount, status) VALUES ($1, $2, 50, 'held')",
			args:     []any{pending, b.ID},
			wantCode: foreignKeyViolation, wantConstraint: "holds_transfer_account_amount_fkey"},
		{name: "hold's amount changed", query: "UPDATE holds SET amount = 199 WHERE transfer_id = $1", args: []any{reserved},
			wantCode: foreignKeyViolation, wantConstraint: "holds_transfer_account_amount_fkey"},
		{name: "hold moved to the destination", query: "UPDATE holds SET account_id = $1 WHERE transfer_id = $2", args: []any{b.ID, reserved},
			wantCode: foreignKeyViolation, wantConstraint: "holds_transfer_account_amount_fkey"},
		{name: "transfer's amount changed under its hold", query: "UPDATE transfers SET amount = 201 WHERE id = $1", args: []any{reserved},
			wantCode: foreignKeyViolation, wantConstraint: "holds_transfer_account_amount_fkey"},

		// A debit or refund is on its transfer's source, a credit on its destination (0004).
		{name: "debit on the source", query: insertEntry, args: []any{uuid.New(), a.ID, reserved, "debit", -200, 3}},
		{name: "refund on the source", query: insertEntry, args: []any{uuid.New(), a.ID, completed, "refund", 300, 3}},
		{name: "credit on the destination", query: insertEntry, args: []any{uuid.New(), b.ID, reserved, "credit", 200, 2}},
		{name: "debit on the destination", query: insertEntry, args: []any{uuid.New(), b.ID, reserved, "debit", -200, 2},
			wantCode: foreignKeyViolation, wantConstraint: "entries_from_side_fkey"},
		{name: "refund on the destination", query: insertEntry, args: []any{uuid.New(), b.ID, completed, "refund", 300, 2},
			wantCode: foreignKeyViolation, wantConstraint: "entries_from_side_fkey"},
		{name: "credit on the source", query: insertEntry, args: []any{uuid.New(), a.ID, reserved, "credit", 200, 3},
			wantCode: foreignKeyViolation, wantConstraint: "entries_to_side_fkey"},
		{name: "debit on an account of neither side", query: insertEntry, args: []any{uuid.New(), eur.ID, reserved, "debit", -200, 1},
			wantCode: foreignKeyViolation, wantConstraint: "entries_from_side_fkey"},
		{name: "credit moved to the source",
			query:    "UPDATE entries SET account_id = $1, seq = 3 WHERE transfer_id = $2 AND kind = 'credit'",
			args:     []any{a.ID, completed},
			wantCode: foreignKeyViolation, wantConstraint: "entries_to_side_fkey"},
		{name: "entry of a kind on no side", setup: "ALTER TABLE entries DROP CONSTRAINT entries_kind_check",
			query: insertEntry, args: []any{uuid.New(), a.ID, reserved, "fee", 1, 3},
			wantCode: checkViolation, wantConstraint: "entries_one_side"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatalf("begin: %v", err)
			}
			defer tx.Rollback()
			if tc.setup != "" {
				if _, err := tx.ExecContext(ctx, tc.setup); err != nil {
					t.Fatalf("%s: %v", tc.setup, err)
				}
			}
			_, err = tx.ExecContext(ctx, tc.query, tc.args...)
			if tc.wantCode == "" {
				if err != nil {
					t.Errorf("got error %v, want none", err)
				}
				return
			}
			pe := pgError(err)
			if pe == nil {
				t.Fatalf("got error %v, want PostgreSQL error %s on %s", err, tc.wantCode, tc.wantConstraint)
			}
			if pe.Code != tc.wantCode || pe.ConstraintName != tc.wantConstraint {
				t.Errorf("got error %s on %q, want %s on %q", pe.Code, pe.ConstraintName, tc.wantCode, tc.wantConstraint)
			}
		})
	}
	mustAudit(t, s)
}

// constraints0004 are the constraints migration 0004 adds, each of which must end validated.
var constraints0004 = []string{"transfers_from_currency_kind_fkey", "transfers_to_currency_kind_fkey",
	"holds_transfer_account_amount_fkey", "entries_one_side", "entries_from_side_fkey", "entries_to_side_fkey"}

// checkValidated fails the test unless every constraint of migration 0004 exists and is validated,
// so it holds for the rows that were there before it as well as for new ones.
func checkValidated(t testing.TB, db *sql.DB) {
	t.Helper()
	for _, name := range constraints0004 {
		var validated bool
		err := db.QueryRowContext(context.Background(), "SELECT convalidated FROM pg_constraint WHERE conname = $1", name).Scan(&validated)
		if err != nil {
			t.Errorf("constraint %s: %v", name, err)
		} else if !validated {
			t.Errorf("constraint %s: got convalidated false, want true", name)
		}
	}
}

// undo0004 takes a migrated database back to before migration 0004, keeping its rows, as a ledger
// written by the previous release is.
func undo0004(t testing.TB, db *sql.DB) {
	t.Helper()
	mustExec(t, db, `ALTER TABLE entries DROP CONSTRAINT entries_from_side_fkey, DROP CONSTRAINT entries_to_side_fkey,
		DROP CONSTRAINT entries_one_side, DROP COLUMN from_side, DROP COLUMN to_side`)
	mustExec(t, db, "ALTER TABLE holds DROP CONSTRAINT holds_transfer_account_amount_fkey")
	mustExec(t, db, `ALTER TABLE transfers DROP CONSTRAINT transfers_from_currency_kind_fkey,
		DROP CONSTRAINT transfers_to_currency_kind_fkey, DROP COLUMN from_account_kind, DROP COLUMN to_account_kind`)
	mustExec(t, db, "DROP INDEX accounts_id_currency_kind_key, transfers_id_from_amount_key, transfers_id_from_key, transfers_id_to_key")
	mustExec(t, db, "DELETE FROM schema_migrations WHERE version = '0004_constraints'")
}

// TestConstraintsMigrationOnLoadedLedger applies migration 0004 to a ledger that already has
// transfers down every saga path, as a live database has: it validates every constraint over the
// existing rows, and the steps go on writing rows that satisfy them. On a ledger that already breaks
// a rule the migration fails and applies nothing, and the audit names the row.
func TestConstraintsMigrationOnLoadedLedger(t *testing.T) {
	ctx := context.Background()
	t.Run("healthy", func(t *testing.T) {
		s, db, l := loadedLedger(t)
		applied, err := s.Migrate(ctx)
		if err != nil || !slices.Equal(applied, []string{"0004_constraints"}) {
			t.Fatalf("migrate: got applied %q and error %v, want [0004_constraints] and none", applied, err)
		}
		checkValidated(t, db)
		mustAudit(t, s)
		runSaga(t, s, createTransfer(t, s, transfer.KindTransfer, l.b.ID, l.a.ID, 5, "USD"))
		runSaga(t, s, createTransfer(t, s, transfer.KindDeposit, mustSystem(t, s, "USD"), l.b.ID, 5, "USD"))
		mustAudit(t, s)
	})

	t.Run("corrupt", func(t *testing.T) {
		s, db, l := loadedLedger(t)
		wrong := createTransfer(t, s, transfer.KindTransfer, l.a.ID, l.b.ID, 1, "USD")
		mustExec(t, db, "UPDATE transfers SET currency = 'EUR' WHERE id = $1", wrong)
		applied, err := s.Migrate(ctx)
		if err == nil || !strings.Contains(err.Error(), "0004_constraints") || !strings.Contains(err.Error(), "transfers_from_currency_kind_fkey") {
			t.Fatalf("migrate: got applied %q and error %v, want an error naming 0004_constraints and transfers_from_currency_kind_fkey", applied, err)
		}
		if n := countRows(t, db, "SELECT count(*) FROM schema_migrations WHERE version = '0004_constraints'"); n != 0 {
			t.Errorf("schema_migrations rows for 0004_constraints: got %d, want 0", n)
		}
		if n := countRows(t, db, `SELECT count(*) FROM information_schema.columns
			WHERE table_name = 'transfers' AND column_name = 'from_account_kind'`); n != 0 {
			t.Errorf("columns transfers.from_account_kind: got %d, want 0, since the migration failed", n)
		}
		r, err := s.Audit(ctx, nil)
		if err != nil {
			t.Fatalf("audit: %v", err)
		}
		want := ledger.Violation{Invariant: ledger.InvTransferEntries, Name: "transfer currency", Subject: transferSubject(wrong)}
		if !slices.ContainsFunc(r.Violations, func(v ledger.Violation) bool {
			return v.Invariant == want.Invariant && v.Name == want.Name && v.Subject == want.Subject
		}) {
			t.Errorf("audit: got violations %+v, want one of invariant %d (%s) about %s", r.Violations, want.Invariant, want.Name, want.Subject)
		}
	})
}

// loadedLedger returns a database as the release before migration 0004 leaves it, with transfers
// down every saga path (see loadLedger), a Store on it that has not migrated it yet and a raw
// connection to it. The rows are written by a Store of their own, as the previous release's
// process would write them: its connections hold SELECT * FROM transfers prepared for the old
// columns, and each such statement would fail once per connection after the migration (SQLSTATE
// 0A000, "cached plan must not change result type") before pgx prepared it again.
func loadedLedger(t *testing.T) (*ledger.Store, *sql.DB, ledgerRows) {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	open := func() *ledger.Store {
		s, err := ledger.Open(ctx, url, ledger.Options{})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	previous := open()
	if _, err := previous.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatalf("open raw connection: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	l := loadLedger(t, previous)
	undo0004(t, db)
	mustAudit(t, previous)
	return open(), db, l
}

// ledgerRows are the accounts of loadLedger's ledger: a (funded) and b, both USD.
type ledgerRows struct{ a, b transfer.Account }

// loadLedger writes transfers down every saga path: a deposit, a completed transfer, a withdrawal,
// a reserved, a debited, a cancelled, a refunded and a pending transfer.
func loadLedger(t *testing.T, s *ledger.Store) ledgerRows {
	t.Helper()
	ctx := context.Background()
	a, b, c := newAccount(t, s, "USD"), newAccount(t, s, "USD"), newAccount(t, s, "USD")
	fund(t, s, a, 1000)
	runSaga(t, s, createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 300, "USD"))
	runSaga(t, s, createTransfer(t, s, transfer.KindWithdrawal, b.ID, mustSystem(t, s, "USD"), 100, "USD"))
	mustStep(t, s.Reserve(ctx, createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 100, "USD")))
	debited := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 10, "USD")
	mustStep(t, s.Reserve(ctx, debited))
	mustStep(t, s.Debit(ctx, debited))
	cancelled := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 20, "USD")
	mustStep(t, s.Reserve(ctx, cancelled))
	mustStep(t, s.Release(ctx, cancelled, transfer.Outcome{Status: transfer.StatusCancelled, Message: "cancelled"}))
	refunded := createTransfer(t, s, transfer.KindTransfer, a.ID, c.ID, 70, "USD")
	mustStep(t, s.Reserve(ctx, refunded))
	mustStep(t, s.Debit(ctx, refunded))
	setStatus(t, s, c.ID, transfer.AccountFrozen)
	checkCode(t, s.Credit(ctx, refunded), transfer.CodeAccountInactive)
	mustStep(t, s.Refund(ctx, refunded, transfer.CodeAccountInactive, "destination frozen"))
	createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 50, "USD")
	return ledgerRows{a: a, b: b}
}
