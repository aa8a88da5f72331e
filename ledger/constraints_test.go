package ledger_test

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
	c := newAccount(t, s, "USD") // c has no transfer.
	d := newAccount(t, s, "USD")
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
	back := createTransfer(t, s, transfer.KindTransfer, d.ID, a.ID, 50, "USD") // pending
	// a: balance 700, reserved 200, entries seq 1 (deposit) and 2 (debit); b: balance 300, seq 1.
	// No EUR transfer exists, so EUR has no system account yet.

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

		// A transfer's accounts hold its currency (foreign keys) and are of the kinds its kind needs
		// (a constraint trigger), 0004.
		{name: "transfer between user accounts of its currency", query: insertTransfer,
			args: []any{uuid.New(), "transfer", a.ID, b.ID, "USD"}},
		{name: "deposit from the system account", query: insertTransfer, args: []any{uuid.New(), "deposit", sys.ID, a.ID, "USD"}},
		{name: "withdrawal to the system account", query: insertTransfer, args: []any{uuid.New(), "withdrawal", a.ID, sys.ID, "USD"}},
		{name: "transfer to an account of another currency", query: insertTransfer,
			args:     []any{uuid.New(), "transfer", a.ID, eur.ID, "USD"},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_to_currency_fkey"},
		{name: "transfer from an account of another currency", query: insertTransfer,
			args:     []any{uuid.New(), "transfer", eur.ID, a.ID, "USD"},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_from_currency_fkey"},
		{name: "currency changed under its accounts", query: "UPDATE transfers SET currency = 'EUR', to_account_id = $1 WHERE id = $2",
			args:     []any{eur.ID, pending},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_from_currency_fkey"},
		{name: "deposit from a user account", query: insertTransfer, args: []any{uuid.New(), "deposit", a.ID, b.ID, "USD"},
			wantCode: checkViolation, wantConstraint: "transfers_account_kinds"},
		{name: "withdrawal to a user account", query: insertTransfer, args: []any{uuid.New(), "withdrawal", a.ID, b.ID, "USD"},
			wantCode: checkViolation, wantConstraint: "transfers_account_kinds"},
		{name: "transfer from the system account", query: insertTransfer, args: []any{uuid.New(), "transfer", sys.ID, b.ID, "USD"},
			wantCode: checkViolation, wantConstraint: "transfers_account_kinds"},
		{name: "transfer to the system account", query: insertTransfer, args: []any{uuid.New(), "transfer", a.ID, sys.ID, "USD"},
			wantCode: checkViolation, wantConstraint: "transfers_account_kinds"},
		{name: "transfer relabelled a deposit", query: "UPDATE transfers SET kind = 'deposit' WHERE id = $1", args: []any{reserved},
			wantCode: checkViolation, wantConstraint: "transfers_account_kinds"},
		{name: "transfer relabelled a withdrawal", query: "UPDATE transfers SET kind = 'withdrawal' WHERE id = $1", args: []any{completed},
			wantCode: checkViolation, wantConstraint: "transfers_account_kinds"},
		{name: "transfer relabelled a deposit, with transfers_immutable dropped", setup: "DROP TRIGGER transfers_immutable ON transfers",
			query: "UPDATE transfers SET kind = 'deposit' WHERE id = $1", args: []any{reserved},
			wantCode: checkViolation, wantConstraint: "transfers_account_kinds"},

		// What the trigger rules read never changes (0004).
		{name: "transfer moved to another account of its kind and currency", query: "UPDATE transfers SET to_account_id = $1 WHERE id = $2",
			args: []any{c.ID, pending}, wantCode: checkViolation, wantConstraint: "transfers_immutable"},
		{name: "transfer's amount changed without a hold", query: "UPDATE transfers SET amount = 51 WHERE id = $1", args: []any{pending},
			wantCode: checkViolation, wantConstraint: "transfers_immutable"},
		{name: "transfer's status changed", query: "UPDATE transfers SET status = 'reserved' WHERE id = $1", args: []any{pending}},
		{name: "account's currency changed", query: "UPDATE accounts SET currency = 'GBP' WHERE id = $1", args: []any{c.ID},
			wantCode: checkViolation, wantConstraint: "accounts_immutable"},
		{name: "account's currency changed under its transfers", query: "UPDATE accounts SET currency = 'GBP' WHERE id = $1", args: []any{b.ID},
			wantCode: foreignKeyViolation, wantConstraint: "transfers_to_currency_fkey"},
		{name: "account relabelled the system account", query: "UPDATE accounts SET kind = 'system', owner_id = NULL WHERE id = $1",
			args: []any{eur.ID}, wantCode: checkViolation, wantConstraint: "accounts_immutable"},
		{name: "account's status changed", query: "UPDATE accounts SET status = 'frozen' WHERE id = $1", args: []any{c.ID}},

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
			wantCode: checkViolation, wantConstraint: "entries_from_side"},
		{name: "refund on the destination", query: insertEntry, args: []any{uuid.New(), b.ID, completed, "refund", 300, 2},
			wantCode: checkViolation, wantConstraint: "entries_from_side"},
		{name: "credit on the source", query: insertEntry, args: []any{uuid.New(), a.ID, reserved, "credit", 200, 3},
			wantCode: checkViolation, wantConstraint: "entries_to_side"},
		{name: "debit on an account of neither side", query: insertEntry, args: []any{uuid.New(), eur.ID, reserved, "debit", -200, 1},
			wantCode: checkViolation, wantConstraint: "entries_from_side"},
		{name: "credit moved to the source",
			query:    "UPDATE entries SET account_id = $1, seq = 3 WHERE transfer_id = $2 AND kind = 'credit'",
			args:     []any{a.ID, completed},
			wantCode: checkViolation, wantConstraint: "entries_to_side"},
		{name: "debit moved to another transfer from the same source (amounts are the audit's)",
			query: "UPDATE entries SET transfer_id = $1 WHERE transfer_id = $2 AND kind = 'debit'", args: []any{pending, completed}},
		{name: "credit moved to a transfer to another account",
			query:    "UPDATE entries SET transfer_id = $1 WHERE transfer_id = $2 AND kind = 'credit'",
			args:     []any{back, completed},
			wantCode: checkViolation, wantConstraint: "entries_to_side"},
		{name: "entry without its transfer", query: insertEntry, args: []any{uuid.New(), b.ID, uuid.New(), "credit", 200, 2},
			wantCode: foreignKeyViolation, wantConstraint: "entries_transfer_id_fkey"},
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

// constraints0004 are the constraints migration 0004 adds, each of which must end validated: its
// foreign keys and CHECK, and its constraint triggers, which pg_constraint lists too.
var constraints0004 = []string{"transfers_from_currency_fkey", "transfers_to_currency_fkey",
	"holds_transfer_account_amount_fkey", "entries_one_side",
	"accounts_immutable", "transfers_immutable", "transfers_account_kinds", "entries_from_side", "entries_to_side"}

// checkValidated fails the test unless every constraint of migration 0004 exists and is validated,
// so it holds for the rows that were there before it as well as for new ones, and its indexes are
// valid, with no index a failed build left behind.
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
	for _, name := range []string{"accounts_id_currency_key", "transfers_id_from_amount_key"} {
		if n := countRows(t, db, "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass($1) AND indisvalid", name); n != 1 {
			t.Errorf("valid index %s: got %d, want 1", name, n)
		}
	}
	if n := countRows(t, db, "SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_invalid'"); n != 0 {
		t.Errorf("indexes set aside as invalid: got %d, want 0", n)
	}
}

// undo0004 takes a migrated database back to before migration 0004, keeping its rows, as a ledger
// written by the previous release is.
func undo0004(t testing.TB, db *sql.DB) {
	t.Helper()
	mustExec(t, db, "ALTER TABLE entries DROP CONSTRAINT entries_one_side")
	mustExec(t, db, "ALTER TABLE holds DROP CONSTRAINT holds_transfer_account_amount_fkey")
	mustExec(t, db, "ALTER TABLE transfers DROP CONSTRAINT transfers_from_currency_fkey, DROP CONSTRAINT transfers_to_currency_fkey")
	mustExec(t, db, `DROP FUNCTION ledger_immutable, ledger_transfers_account_kinds, ledger_entries_side CASCADE`) // and their triggers
	mustExec(t, db, "DROP INDEX accounts_id_currency_key, transfers_id_from_amount_key")
	mustExec(t, db, "DELETE FROM schema_migrations WHERE version = '0004_constraints'")
}

// TestConstraintsMigrationOnLoadedLedger applies migration 0004 to a ledger that already has
// transfers down every saga path, as a live database has: it validates every constraint over the
// existing rows, and the steps go on writing rows that satisfy them. On a ledger that already breaks
// a rule the migration fails, naming the rule, and is not recorded; the rule is in force for new
// rows all the same, the audit names the row, and once the row is repaired the migration applies.
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

	tests := []struct {
		name string
		// corrupt breaks a rule in the ledger and returns the subject the audit must name; repair
		// undoes it.
		corrupt, repair string
		// wantRule is the constraint the migration's error names, wantCheck the audit check that
		// names the row.
		wantRule, wantCheck string
		// subject is the audit's subject for the corrupted transfer, or for its credit.
		subject func(transfer, credit uuid.UUID) string
	}{
		{name: "a transfer in a currency its accounts do not hold",
			corrupt:  "UPDATE transfers SET currency = 'EUR' WHERE id = $1",
			repair:   "UPDATE transfers SET currency = 'USD' WHERE id = $1",
			wantRule: "transfers_from_currency_fkey", wantCheck: "transfer currency",
			subject: func(tr, _ uuid.UUID) string { return transferSubject(tr) }},
		{name: "a transfer between users labelled a deposit",
			corrupt:  "UPDATE transfers SET kind = 'deposit' WHERE id = $1",
			repair:   "UPDATE transfers SET kind = 'transfer' WHERE id = $1",
			wantRule: "transfers_account_kinds", wantCheck: "transfer kind",
			subject: func(tr, _ uuid.UUID) string { return transferSubject(tr) }},
		{name: "a credit on the source",
			// The credit keeps its seq, moved out of the way of the source's own.
			corrupt: `UPDATE entries SET account_id = t.from_account_id, seq = seq + 1000
				FROM transfers t WHERE t.id = $1 AND entries.transfer_id = t.id AND entries.kind = 'credit'`,
			repair: `UPDATE entries SET account_id = t.to_account_id, seq = seq - 1000
				FROM transfers t WHERE t.id = $1 AND entries.transfer_id = t.id AND entries.kind = 'credit'`,
			wantRule: "entries_to_side", wantCheck: "entry matches transfer",
			subject: func(_, credit uuid.UUID) string { return entrySubject(credit) }},
	}
	for _, tc := range tests {
		t.Run("corrupt: "+tc.name, func(t *testing.T) {
			s, db, l := loadedLedger(t)
			wrong := createTransfer(t, s, transfer.KindTransfer, l.a.ID, l.b.ID, 1, "USD")
			runSaga(t, s, wrong)
			var credit uuid.UUID
			if err := db.QueryRowContext(ctx, "SELECT id FROM entries WHERE transfer_id = $1 AND kind = 'credit'", wrong).Scan(&credit); err != nil {
				t.Fatalf("credit of %s: %v", wrong, err)
			}
			mustExec(t, db, tc.corrupt, wrong)
			applied, err := s.Migrate(ctx)
			if err == nil || !strings.Contains(err.Error(), "0004_constraints") || !strings.Contains(err.Error(), tc.wantRule) {
				t.Fatalf("migrate: got applied %q and error %v, want an error naming 0004_constraints and %s", applied, err, tc.wantRule)
			}
			if n := countRows(t, db, "SELECT count(*) FROM schema_migrations WHERE version = '0004_constraints'"); n != 0 {
				t.Errorf("schema_migrations rows for 0004_constraints: got %d, want 0", n)
			}
			if n := countRows(t, db, "SELECT count(*) FROM pg_constraint WHERE conname = $1", tc.wantRule); n != 1 {
				t.Errorf("constraints %s: got %d, want 1: the rule is in force for new rows", tc.wantRule, n)
			}
			r, err := s.Audit(ctx, nil)
			if err != nil {
				t.Fatalf("audit: %v", err)
			}
			want := ledger.Violation{Invariant: ledger.InvTransferEntries, Name: tc.wantCheck, Subject: tc.subject(wrong, credit)}
			if !slices.ContainsFunc(r.Violations, func(v ledger.Violation) bool {
				return v.Invariant == want.Invariant && v.Name == want.Name && v.Subject == want.Subject
			}) {
				t.Errorf("audit: got violations %+v, want one of invariant %d (%s) about %s", r.Violations, want.Invariant, want.Name, want.Subject)
			}
			// The repair goes behind the immutability triggers, which are in force already.
			mustExec(t, db, "ALTER TABLE transfers DISABLE TRIGGER transfers_immutable")
			mustExec(t, db, tc.repair, wrong)
			mustExec(t, db, "ALTER TABLE transfers ENABLE TRIGGER transfers_immutable")
			applied, err = s.Migrate(ctx)
			if err != nil || !slices.Equal(applied, []string{"0004_constraints"}) {
				t.Fatalf("migrate after the repair: got applied %q and error %v, want [0004_constraints] and none", applied, err)
			}
			checkValidated(t, db)
			mustAudit(t, s)
		})
	}
}

// TestConstraintsMigrationAfterCrash applies migration 0004 to a loaded ledger on which a migrator
// died half-way through it: after some of its statements, and with the index build it died in left
// INVALID (a build that failed on a duplicate, as a killed one would leave it). The next Migrate
// applies it from its first statement: every statement is idempotent, and the invalid index is set
// aside, dropped and built again.
func TestConstraintsMigrationAfterCrash(t *testing.T) {
	ctx := context.Background()
	stmts, err := ledger.MigrationStatements("0004_constraints")
	if err != nil {
		t.Fatal(err)
	}
	build := slices.IndexFunc(stmts, func(st ledger.MigrationStatement) bool {
		return st.Name == "build transfers_id_from_amount_key"
	})
	if build < 0 {
		t.Fatalf("0004_constraints has no statement %q", "build transfers_id_from_amount_key")
	}
	tests := []struct {
		name string
		ran  int // statements that ran before the crash
		// invalid, when set, is an index the crash left INVALID.
		invalid string
	}{
		{name: "in the build of transfers_id_from_amount_key", ran: build, invalid: "transfers_id_from_amount_key"},
		{name: "after the index builds", ran: build + 1},
		{name: "after every statement, before the record", ran: len(stmts)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, db, _ := loadedLedger(t)
			for _, st := range stmts[:tc.ran] {
				if _, err := db.ExecContext(ctx, st.SQL); err != nil {
					t.Fatalf("%s: %v", st.Name, err)
				}
			}
			if tc.invalid != "" {
				// A unique index on a column with duplicates fails to build and is left INVALID.
				_, err := db.ExecContext(ctx, "CREATE UNIQUE INDEX CONCURRENTLY "+tc.invalid+" ON transfers (from_account_id)")
				if pgError(err) == nil || pgError(err).Code != "23505" {
					t.Fatalf("build an invalid index: got %v, want a unique violation", err)
				}
			}
			applied, err := s.Migrate(ctx)
			if err != nil || !slices.Equal(applied, []string{"0004_constraints"}) {
				t.Fatalf("migrate: got applied %q and error %v, want [0004_constraints] and none", applied, err)
			}
			checkValidated(t, db)
			var def string
			if err := db.QueryRowContext(ctx, "SELECT pg_get_indexdef('transfers_id_from_amount_key'::regclass)").Scan(&def); err != nil ||
				!strings.Contains(def, "(id, from_account_id, amount)") {
				t.Errorf("transfers_id_from_amount_key: got %q (%v), want an index on (id, from_account_id, amount)", def, err)
			}
			mustAudit(t, s)
		})
	}
}

// TestConstraintsMigrationDoesNotStopTransfers applies migration 0004 to a loaded ledger while
// workers keep creating transfers and running their steps, as a live service does, and checks that
// no call waits longer than maxWait: no statement holds a lock that stops transfers for longer than
// a moment, and none queues for one longer than lock_timeout (1 s, which a queued lock request makes
// every later writer wait too). maxWait is that second plus room for a loaded 2-core machine, to
// which the slowest call before the migration is added.
// The workers' connections prepared their statements before the migration, as a running process's
// have, so a migration that changed what SELECT * FROM transfers returns would fail them (0A000).
//
// The ledger has TRANSFERD_TEST_LOADED_DEPOSITS seeded deposits (default 20,000); the figures in
// 0004's header were measured with 500,000 and go test -v, which logs each statement's time.
func TestConstraintsMigrationDoesNotStopTransfers(t *testing.T) {
	const (
		maxWait  = 2 * time.Second
		workers  = 4
		baseline = 2 * time.Second // how long the workers run before the migration starts
	)
	deposits := 20000
	if v := os.Getenv("TRANSFERD_TEST_LOADED_DEPOSITS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("TRANSFERD_TEST_LOADED_DEPOSITS: %v", err)
		}
		deposits = n
	}
	ctx := context.Background()
	s, db, l := loadedLedger(t)
	pairs := make([][2]transfer.Account, workers)
	var seeded []uuid.UUID
	for i := range pairs {
		pairs[i] = [2]transfer.Account{newAccount(t, s, "USD"), newAccount(t, s, "USD")}
		seeded = append(seeded, pairs[i][0].ID, pairs[i][1].ID)
	}
	start := time.Now()
	if err := s.SeedDeposits(ctx, "USD", append(seeded, l.a.ID, l.b.ID), deposits); err != nil {
		t.Fatalf("seed: %v", err)
	}
	mustExec(t, db, "VACUUM ANALYZE")
	t.Logf("seeded %d deposits in %v", deposits, time.Since(start).Round(time.Millisecond))

	// Each worker moves one unit back and forth between its two accounts: create, reserve, debit,
	// credit, each call timed.
	type slowest struct {
		took time.Duration
		call string
	}
	var (
		mu        sync.Mutex
		migrating bool
		before    slowest // the slowest call before the migration started
		during    slowest // and while it ran
		calls     int     // calls made while it ran
		errs      []error
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, pair := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				from, to := pair[i%2], pair[(i+1)%2]
				var id uuid.UUID
				steps := []struct {
					name string
					call func() error
				}{
					{"create", func() error {
						tr, _, err := s.CreateTransfer(ctx, transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer,
							FromAccountID: from.ID, ToAccountID: to.ID, Amount: 1, Currency: "USD"})
						id = tr.ID
						return err
					}},
					{"reserve", func() error { return s.Reserve(ctx, id) }},
					{"debit", func() error { return s.Debit(ctx, id) }},
					{"credit", func() error { return s.Credit(ctx, id) }},
				}
				for _, st := range steps {
					began := time.Now()
					err := st.call()
					took := time.Since(began)
					mu.Lock()
					if err != nil {
						errs = append(errs, fmt.Errorf("worker %d: %s: %w", w, st.name, err))
					}
					worst := &before
					if migrating {
						worst = &during
						calls++
					}
					if took > worst.took {
						*worst = slowest{took, st.name}
					}
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}
		}()
	}
	time.Sleep(baseline)
	mu.Lock()
	migrating = true
	mu.Unlock()
	stopSampling := make(chan struct{})
	sampled := sampleBlockingLocks(t, db, stopSampling)
	type window struct {
		statement  string
		start, end time.Time
	}
	var windows []window
	start = time.Now()
	applied, err := s.MigrateDir(ctx, ledger.MigrationsDir(), func(_, statement string, took time.Duration) {
		end := time.Now()
		windows = append(windows, window{statement, end.Add(-took), end})
	})
	took := time.Since(start)
	close(stop)
	close(stopSampling)
	wg.Wait()
	samples := <-sampled
	if err != nil || !slices.Equal(applied, []string{"0004_constraints"}) {
		t.Fatalf("migrate: got applied %q and error %v, want [0004_constraints] and none", applied, err)
	}
	// Each statement's time, its lock wait included, and for how long at most it held each lock
	// that stops writers, as the samples saw them (a lock held for less than a sampling period
	// may go unseen).
	for _, w := range windows {
		held := ""
		locks := heldDuring(samples, w.start, w.end)
		for _, lock := range slices.Sorted(maps.Keys(locks)) {
			held += fmt.Sprintf("; %s held <= %.1f ms", lock, float64(locks[lock].Microseconds())/1000)
		}
		t.Logf("%-82s %8.1f ms%s", w.statement, float64(w.end.Sub(w.start).Microseconds())/1000, held)
	}
	t.Logf("%d lock samples, one every %v on average", len(samples), took/time.Duration(max(len(samples), 1)))
	t.Logf("migration took %v; during it %d calls, the slowest a %s of %v; before it the slowest was a %s of %v",
		took.Round(time.Millisecond), calls, during.call, during.took.Round(time.Millisecond), before.call, before.took.Round(time.Millisecond))
	for _, err := range errs {
		t.Errorf("got error %v, want none", err)
	}
	if calls == 0 {
		t.Errorf("calls while the migration ran: got 0, want some")
	}
	// The slowest call before the migration tells how slow this machine is now; a loaded one may
	// stall any call that long without a lock in the way.
	if limit := maxWait + before.took; during.took > limit {
		t.Errorf("slowest call while the migration ran: got a %s of %v, want at most %v (%v, and the slowest before it)", during.call, during.took, limit, maxWait)
	}
	checkValidated(t, db)
	mustAudit(t, s)
}

// lockSample is what sampleBlockingLocks saw at one moment: each lock, "mode on table".
type lockSample struct {
	at    time.Time
	locks []string
}

// sampleBlockingLocks samples, as often as it can until stop is closed, the locks that the migrator
// (the session that holds an advisory lock) holds on the ledger's tables in a mode that stops their
// writers (SHARE and above), and then sends the samples.
func sampleBlockingLocks(t testing.TB, db *sql.DB, stop <-chan struct{}) <-chan []lockSample {
	t.Helper()
	out := make(chan []lockSample, 1)
	go func() {
		var samples []lockSample
		defer func() { out <- samples }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			rows, err := db.Query(`SELECT l.mode || ' on ' || c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
				WHERE l.granted AND l.locktype = 'relation' AND c.relname IN ('accounts', 'transfers', 'holds', 'entries')
				  AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
				  AND l.pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)
				ORDER BY 1`)
			if err != nil {
				t.Errorf("sample locks: %v", err)
				return
			}
			sample := lockSample{at: time.Now()}
			for rows.Next() {
				var lock string
				if err := rows.Scan(&lock); err != nil {
					t.Errorf("sample locks: %v", err)
				}
				sample.locks = append(sample.locks, lock)
			}
			rows.Close()
			samples = append(samples, sample)
			time.Sleep(time.Millisecond)
		}
	}()
	return out
}

// heldDuring returns each lock that samples saw held within [from, to] and for how long it was held
// at most: from the last sample that did not see it to the first one after that did not.
func heldDuring(samples []lockSample, from, to time.Time) map[string]time.Duration {
	held := map[string]time.Duration{}
	for i := range samples {
		for _, lock := range samples[i].locks {
			if i > 0 && slices.Contains(samples[i-1].locks, lock) {
				continue // not the first sample of this run
			}
			j := i
			for j+1 < len(samples) && slices.Contains(samples[j+1].locks, lock) {
				j++
			}
			if samples[j].at.Before(from) || samples[i].at.After(to) {
				continue
			}
			begin, end := samples[i].at, samples[j].at
			if i > 0 {
				begin = samples[i-1].at
			}
			if j+1 < len(samples) {
				end = samples[j+1].at
			}
			held[lock] = max(held[lock], end.Sub(begin))
		}
	}
	return held
}

// loadedLedger returns a database as the release before migration 0004 leaves it, with transfers
// down every saga path (see loadLedger), a Store on it that has not migrated it yet and a raw
// connection to it. The rows are written by a Store of their own, as the previous release's
// process would write them.
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
