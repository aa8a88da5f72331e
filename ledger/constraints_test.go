package ledger_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// TestDatabaseEnforcesMoneyRules writes rows behind the Store's back, through a second connection, as
// buggy Go code might: the schema itself must refuse every write that breaks a money rule. Each write
// runs in a transaction that is rolled back, so the cases do not affect each other.
func TestDatabaseEnforcesMoneyRules(t *testing.T) {
	const (
		checkViolation  = "23514"
		uniqueViolation = "23505"
	)
	ctx := context.Background()
	s, db := newStoreDB(t)
	a := newAccount(t, s, "USD")
	b := newAccount(t, s, "USD")
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
	// a: balance 700, reserved 200, entries seq 1 (deposit) and 2 (debit); b: balance 300, seq 1.

	tests := []struct {
		name           string
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatalf("begin: %v", err)
			}
			defer tx.Rollback()
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
