package ledger_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

func accountSubject(id uuid.UUID) string  { return "account " + id.String() }
func transferSubject(id uuid.UUID) string { return "transfer " + id.String() }
func entrySubject(id uuid.UUID) string    { return "entry " + id.String() }

// TestAuditCleanLedger runs sagas down every path and leaves some in flight: the audit must find
// nothing wrong and count what is there.
func TestAuditCleanLedger(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a, b, c := newAccount(t, s, "USD"), newAccount(t, s, "USD"), newAccount(t, s, "USD")
	e1, e2 := newAccount(t, s, "EUR"), newAccount(t, s, "EUR")
	fund(t, s, a, 1000)
	fund(t, s, b, 1000)
	fund(t, s, e1, 500)
	for i := range 20 {
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		runSaga(t, s, createTransfer(t, s, transfer.KindTransfer, from.ID, to.ID, int64(10+i), "USD"))
	}
	runSaga(t, s, createTransfer(t, s, transfer.KindTransfer, e1.ID, e2.ID, 100, "EUR"))
	runSaga(t, s, createTransfer(t, s, transfer.KindWithdrawal, e2.ID, mustSystem(t, s, "EUR"), 40, "EUR"))

	failed := createTransfer(t, s, transfer.KindTransfer, c.ID, a.ID, 5, "USD")
	if err := s.Reserve(ctx, failed); !transfer.IsCode(err, transfer.CodeInsufficientFunds) {
		t.Fatalf("reserve from an empty account: got %v, want %s", err, transfer.CodeInsufficientFunds)
	}
	mustStep(t, s.Release(ctx, failed, transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeInsufficientFunds}))
	cancelled := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 10, "USD")
	mustStep(t, s.Reserve(ctx, cancelled))
	mustStep(t, s.Release(ctx, cancelled, transfer.Outcome{Status: transfer.StatusCancelled}))
	refunded := createTransfer(t, s, transfer.KindTransfer, a.ID, c.ID, 20, "USD")
	mustStep(t, s.Reserve(ctx, refunded))
	mustStep(t, s.Debit(ctx, refunded))
	setStatus(t, s, c.ID, transfer.AccountFrozen)
	if err := s.Credit(ctx, refunded); !transfer.IsCode(err, transfer.CodeAccountInactive) {
		t.Fatalf("credit to a frozen account: got %v, want %s", err, transfer.CodeAccountInactive)
	}
	mustStep(t, s.Refund(ctx, refunded, transfer.CodeAccountInactive, "frozen"))
	createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 1, "USD") // pending
	mustStep(t, s.Reserve(ctx, createTransfer(t, s, transfer.KindTransfer, b.ID, a.ID, 2, "USD")))

	r, err := s.Audit(ctx, nil)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	for _, v := range r.Violations {
		t.Errorf("got violation of invariant %d (%s): %s: %s, want none", v.Invariant, v.Name, v.Subject, v.Detail)
	}
	// 5 user accounts and 2 system accounts; 3 deposits, 22 completed transfers, 3 that ended without
	// the credit and 2 in flight; 2 entries per completed one plus a debit and a refund.
	want := ledger.AuditReport{Accounts: 7, Transfers: 30, Entries: 52, InFlight: 2, Violations: []ledger.Violation{}}
	if r.Accounts != want.Accounts || r.Transfers != want.Transfers || r.Entries != want.Entries || r.InFlight != want.InFlight ||
		r.WorkflowsChecked || !r.OK() {
		t.Errorf("report: got %+v, want %+v", r, want)
	}
}

// TestAuditAcceptsMoneyInTransit audits a ledger with a transfer between its debit and its credit,
// a state every transfer passes through and invariant 5 allows. The money is in the transfer, not in
// an account, so it must count towards conservation.
func TestAuditAcceptsMoneyInTransit(t *testing.T) {
	s, db := newStoreDB(t)
	f := newStepFixture(t, s, db, 300)
	f.run(t, reserve, debit)
	mustAudit(t, f.s)
	f.run(t, credit)
	mustAudit(t, f.s)
}

// auditFixture is a small healthy ledger: a funded with 1000 by deposit, a completed transfer of 300
// from a to b (its credit entry is completedCredit), a reserved one of 100 and a pending one of 50.
type auditFixture struct {
	s                                     *ledger.Store
	db                                    *sql.DB
	a, b                                  transfer.Account
	deposit, completed, reserved, pending uuid.UUID
	completedCredit                       uuid.UUID
}

func newAuditFixture(t testing.TB) auditFixture {
	t.Helper()
	s, db := newStoreDB(t)
	f := auditFixture{s: s, db: db, a: newAccount(t, s, "USD"), b: newAccount(t, s, "USD")}
	f.deposit = createTransfer(t, s, transfer.KindDeposit, mustSystem(t, s, "USD"), f.a.ID, 1000, "USD")
	runSaga(t, s, f.deposit)
	f.completed = createTransfer(t, s, transfer.KindTransfer, f.a.ID, f.b.ID, 300, "USD")
	runSaga(t, s, f.completed)
	err := db.QueryRowContext(context.Background(), "SELECT id FROM entries WHERE transfer_id = $1 AND kind = 'credit'", f.completed).
		Scan(&f.completedCredit)
	if err != nil {
		t.Fatalf("credit of %s: %v", f.completed, err)
	}
	f.reserved = createTransfer(t, s, transfer.KindTransfer, f.a.ID, f.b.ID, 100, "USD")
	mustStep(t, s.Reserve(context.Background(), f.reserved))
	f.pending = createTransfer(t, s, transfer.KindTransfer, f.a.ID, f.b.ID, 50, "USD")
	return f
}

type violationKey struct {
	invariant int
	subject   string
}

// TestAuditFindsCorruption corrupts a healthy ledger behind the Store's back, in ways the schema's
// constraints let through (or after dropping the constraint that would not, as a ledger written
// before migration 0004 may be), and checks that the audit names the broken invariant and its
// subject, and blames nothing else.
func TestAuditFindsCorruption(t *testing.T) {
	entryID := uuid.New()
	tests := []struct {
		name    string
		corrupt func(t testing.TB, f auditFixture)
		want    func(f auditFixture) []violationKey
		// checks, when set, are the audit checks (by name) that must report the corruption, each
		// about one of want's subjects: the one check that sees it, where others could too.
		checks []string
		// mayAlso lists other subjects that the corruption also makes wrong.
		mayAlso func(f auditFixture) []string
	}{
		{name: "an entry's amount changed",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "UPDATE entries SET amount = amount + 1 WHERE transfer_id = $1 AND kind = 'credit'", f.completed)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvJournal, accountSubject(f.b.ID)}, {ledger.InvTransferEntries, transferSubject(f.completed)},
					{ledger.InvTransferEntries, entrySubject(f.completedCredit)}}
			},
			checks: []string{"transfer equals entries", "entry matches transfer"}},
		{name: "an idempotency key naming another user's transfer",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, `INSERT INTO idempotency_keys (caller_id, scope, key_hash, resource_id)
					VALUES ('00000000-0000-4000-8000-00000000000a', 'transfer', sha256('k'), $1)`, f.completed)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, "idempotency key of user 00000000-0000-4000-8000-00000000000a"}}
			},
			checks: []string{"idempotency key"}},
		{name: "a completed transfer's end event deleted",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "DELETE FROM events WHERE transfer_id = $1 AND type = 'transfer.completed'", f.completed)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.completed)}}
			},
			checks: []string{"events"}},
		{name: "balance and entry_seq raised together",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "UPDATE accounts SET balance = balance + 1, entry_seq = entry_seq + 1 WHERE id = $1", f.b.ID)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvConservation, "currency USD"}, {ledger.InvJournal, accountSubject(f.b.ID)}}
			}},
		{name: "balance lowered but still above reserved",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "UPDATE accounts SET balance = balance - 100 WHERE id = $1", f.a.ID)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvConservation, "currency USD"}, {ledger.InvJournal, accountSubject(f.a.ID)}}
			}},
		{name: "an earlier entry's balance_after changed",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "UPDATE entries SET balance_after = balance_after + 5 WHERE account_id = $1 AND seq = 1", f.a.ID)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvJournal, accountSubject(f.a.ID)}}
			}},
		{name: "a gap in the seqs",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "UPDATE entries SET seq = 3 WHERE account_id = $1 AND seq = 2", f.a.ID)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvJournal, accountSubject(f.a.ID)}}
			}},
		{name: "a held hold deleted while reserved stays",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "DELETE FROM holds WHERE transfer_id = $1", f.reserved)
			},
			want:    func(f auditFixture) []violationKey { return []violationKey{{ledger.InvHolds, accountSubject(f.a.ID)}} },
			mayAlso: func(f auditFixture) []string { return []string{transferSubject(f.reserved)} }},
		{name: "reserved raised without a hold",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "UPDATE accounts SET reserved = reserved + 1 WHERE id = $1", f.a.ID)
			},
			want: func(f auditFixture) []violationKey { return []violationKey{{ledger.InvHolds, accountSubject(f.a.ID)}} }},
		{name: "a completed transfer set back to reserved",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "UPDATE transfers SET status = 'reserved', completed_at = NULL WHERE id = $1", f.completed)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.completed)}}
			}},
		{name: "a pending transfer marked completed without entries",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "UPDATE transfers SET status = 'completed', completed_at = now() WHERE id = $1", f.pending)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.pending)}}
			}},
		{name: "an overdraft, with its CHECK dropped",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "ALTER TABLE accounts DROP CONSTRAINT accounts_no_overdraft")
				mustExec(t, f.db, "UPDATE accounts SET reserved = balance + 1 WHERE id = $1", f.a.ID)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvNoOverdraft, accountSubject(f.a.ID)}, {ledger.InvHolds, accountSubject(f.a.ID)}}
			}},
		{name: "an entry without its transfer, with its foreign key dropped",
			corrupt: func(t testing.TB, f auditFixture) {
				// entries_to_side leaves an entry without a transfer to entries_transfer_id_fkey.
				mustExec(t, f.db, "ALTER TABLE entries DROP CONSTRAINT entries_transfer_id_fkey")
				mustExec(t, f.db, `INSERT INTO entries (id, account_id, transfer_id, kind, amount, balance_after, seq)
					VALUES ($1, $2, $3, 'credit', 5, 305, 2)`, entryID, f.b.ID, uuid.New())
				mustExec(t, f.db, "UPDATE accounts SET balance = balance + 5, entry_seq = 2 WHERE id = $1", f.b.ID)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, "entry " + entryID.String()}}
			},
			mayAlso: func(f auditFixture) []string { return []string{"currency USD"} }},

		// Invariant 5: what a transfer's status allows of its entries and its hold.
		{name: "a completed transfer that also has a refund",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, `INSERT INTO entries (id, account_id, transfer_id, kind, amount, balance_after, seq)
					SELECT $1, id, $2, 'refund', 300, balance + 300, entry_seq + 1 FROM accounts WHERE id = $3`, uuid.New(), f.completed, f.a.ID)
				mustExec(t, f.db, "UPDATE accounts SET balance = balance + 300, entry_seq = entry_seq + 1 WHERE id = $1", f.a.ID)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.completed)}}
			},
			checks: []string{"transfer equals entries"},
			// The refund makes 300 out of nothing.
			mayAlso: func(f auditFixture) []string { return []string{"currency USD"} }},
		{name: "a failed transfer with a lone debit",
			corrupt: func(t testing.TB, f auditFixture) {
				mustStep(t, f.s.Debit(context.Background(), f.reserved))
				mustExec(t, f.db, `UPDATE transfers SET status = 'failed', failure_code = 'account_inactive', completed_at = now()
					WHERE id = $1`, f.reserved)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.reserved)}}
			},
			checks: []string{"transfer equals entries"},
			// The 100 debited is neither in an account nor in transit any more.
			mayAlso: func(f auditFixture) []string { return []string{"currency USD"} }},
		{name: "a completed transfer whose hold is still held",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "UPDATE holds SET status = 'held' WHERE transfer_id = $1", f.completed)
				mustExec(t, f.db, "UPDATE accounts SET reserved = reserved + 300 WHERE id = $1", f.a.ID)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.completed)}}
			},
			checks: []string{"transfer equals entries"}},
		{name: "a failed transfer whose hold is still held",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, `UPDATE transfers SET status = 'failed', failure_code = 'insufficient_funds', completed_at = now()
					WHERE id = $1`, f.reserved)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.reserved)}}
			},
			checks: []string{"transfer equals entries"}},
		{name: "a cancelled transfer whose hold is still held",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "UPDATE transfers SET status = 'cancelled', completed_at = now() WHERE id = $1", f.reserved)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.reserved)}}
			},
			checks: []string{"transfer equals entries"}},
		{name: "a credit on the source, with entries_to_side dropped",
			corrupt: func(t testing.TB, f auditFixture) {
				// The credit moves from b to a with the balances and seqs it would have left there, so
				// the journals still add up and only its transfer says it is on the wrong account.
				mustExec(t, f.db, "DROP TRIGGER entries_to_side ON entries")
				mustExec(t, f.db, `UPDATE entries e SET account_id = a.id, seq = a.entry_seq + 1, balance_after = a.balance + e.amount
					FROM accounts a WHERE a.id = $1 AND e.id = $2`, f.a.ID, f.completedCredit)
				mustExec(t, f.db, "UPDATE accounts SET balance = balance + 300, entry_seq = entry_seq + 1 WHERE id = $1", f.a.ID)
				mustExec(t, f.db, "UPDATE accounts SET balance = balance - 300, entry_seq = entry_seq - 1 WHERE id = $1", f.b.ID)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.completed)},
					{ledger.InvTransferEntries, entrySubject(f.completedCredit)}}
			},
			checks: []string{"transfer equals entries", "entry matches transfer"}},

		// The rules of migration 0004, broken with the rule dropped, and transfers_immutable, which
		// stops any change to what they compare.
		{name: "a transfer in a currency neither account holds, with its foreign keys and transfers_immutable dropped",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, `ALTER TABLE transfers DROP CONSTRAINT transfers_from_currency_fkey,
					DROP CONSTRAINT transfers_to_currency_fkey`)
				mustExec(t, f.db, "DROP TRIGGER transfers_immutable ON transfers")
				mustExec(t, f.db, "UPDATE transfers SET currency = 'EUR' WHERE id = $1", f.pending)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.pending)}}
			},
			checks: []string{"transfer currency"}},
		{name: "a destination in another currency, with transfers_to_currency_fkey and transfers_immutable dropped",
			corrupt: func(t testing.TB, f auditFixture) {
				eur := newAccount(t, f.s, "EUR")
				mustExec(t, f.db, "ALTER TABLE transfers DROP CONSTRAINT transfers_to_currency_fkey")
				mustExec(t, f.db, "DROP TRIGGER transfers_immutable ON transfers")
				mustExec(t, f.db, "UPDATE transfers SET to_account_id = $1 WHERE id = $2", eur.ID, f.pending)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.pending)}}
			},
			checks: []string{"transfer currency"}},
		{name: "a transfer between users labelled a deposit, with transfers_account_kinds and transfers_immutable dropped",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "DROP TRIGGER transfers_account_kinds ON transfers")
				mustExec(t, f.db, "DROP TRIGGER transfers_immutable ON transfers")
				mustExec(t, f.db, "UPDATE transfers SET kind = 'deposit' WHERE id = $1", f.pending)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.pending)}}
			},
			checks: []string{"transfer kind"}},
		{name: "a deposit labelled a transfer, with transfers_account_kinds and transfers_immutable dropped",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "DROP TRIGGER transfers_account_kinds ON transfers")
				mustExec(t, f.db, "DROP TRIGGER transfers_immutable ON transfers")
				mustExec(t, f.db, "UPDATE transfers SET kind = 'transfer' WHERE id = $1", f.deposit)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.deposit)}}
			},
			checks: []string{"transfer kind"}},
		{name: "a hold for less than its transfer, with holds_transfer_account_amount_fkey dropped",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "ALTER TABLE holds DROP CONSTRAINT holds_transfer_account_amount_fkey")
				mustExec(t, f.db, "UPDATE holds SET amount = amount - 1 WHERE transfer_id = $1", f.reserved)
				mustExec(t, f.db, "UPDATE accounts SET reserved = reserved - 1 WHERE id = $1", f.a.ID)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.reserved)}}
			},
			checks: []string{"hold matches transfer"}},
		{name: "a hold on the destination, with holds_transfer_account_amount_fkey dropped",
			corrupt: func(t testing.TB, f auditFixture) {
				mustExec(t, f.db, "ALTER TABLE holds DROP CONSTRAINT holds_transfer_account_amount_fkey")
				mustExec(t, f.db, "UPDATE holds SET account_id = $1 WHERE transfer_id = $2", f.b.ID, f.reserved)
				mustExec(t, f.db, "UPDATE accounts SET reserved = reserved - 100 WHERE id = $1", f.a.ID)
				mustExec(t, f.db, "UPDATE accounts SET reserved = reserved + 100 WHERE id = $1", f.b.ID)
			},
			want: func(f auditFixture) []violationKey {
				return []violationKey{{ledger.InvTransferEntries, transferSubject(f.reserved)}}
			},
			checks: []string{"hold matches transfer"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // Each case corrupts a database of its own.
			f := newAuditFixture(t)
			mustAudit(t, f.s)
			tc.corrupt(t, f)
			r, err := f.s.Audit(context.Background(), nil)
			if err != nil {
				t.Fatalf("audit: %v", err)
			}
			var got []violationKey
			for _, v := range r.Violations {
				got = append(got, violationKey{v.Invariant, v.Subject})
			}
			want := tc.want(f)
			allowed := []string{}
			for _, w := range want {
				allowed = append(allowed, w.subject)
				if !slices.Contains(got, w) {
					t.Errorf("got violations %+v, want one of invariant %d about %q", r.Violations, w.invariant, w.subject)
				}
			}
			for _, name := range tc.checks {
				if !slices.ContainsFunc(r.Violations, func(v ledger.Violation) bool {
					return v.Name == name && slices.ContainsFunc(want, func(w violationKey) bool { return w.subject == v.Subject })
				}) {
					t.Errorf("got violations %+v, want one from the check %q about one of %v", r.Violations, name, want)
				}
			}
			if tc.mayAlso != nil {
				allowed = append(allowed, tc.mayAlso(f)...)
			}
			for _, v := range r.Violations {
				if !slices.Contains(allowed, v.Subject) {
					t.Errorf("got a violation of invariant %d about %q (%s), want only violations about %q", v.Invariant, v.Subject, v.Detail, allowed)
				}
			}
			if r.OK() {
				t.Errorf("got OK() = true, want false")
			}
		})
	}
}

// fakeWorkflows answers WorkflowRunning from a set of running workflow ids and records the questions.
type fakeWorkflows struct {
	running map[string]bool
	err     error
	asked   []string
}

func (w *fakeWorkflows) WorkflowRunning(_ context.Context, id string) (bool, error) {
	w.asked = append(w.asked, id)
	return w.running[id], w.err
}

func TestAuditWorkflows(t *testing.T) {
	ctx := context.Background()
	f := newAuditFixture(t)
	// Transfers younger than a start's round trip are not expected to have a workflow yet, so the
	// fixture's are made older, all but young.
	young := createTransfer(t, f.s, transfer.KindTransfer, f.a.ID, f.b.ID, 1, "USD")
	mustExec(t, f.db, "UPDATE transfers SET created_at = created_at - interval '1 minute' WHERE id <> $1", young)
	orphan := createTransfer(t, f.s, transfer.KindTransfer, f.b.ID, f.a.ID, 1, "USD")
	mustExec(t, f.db, "UPDATE transfers SET created_at = created_at - interval '1 minute' WHERE id = $1", orphan)

	wf := &fakeWorkflows{running: map[string]bool{f.pending.String(): true}}
	r, err := f.s.Audit(ctx, wf)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	var got []violationKey
	for _, v := range r.Violations {
		got = append(got, violationKey{v.Invariant, v.Subject})
	}
	want := []violationKey{{ledger.InvWorkflows, transferSubject(f.reserved)}, {ledger.InvWorkflows, transferSubject(orphan)}}
	slices.SortFunc(got, func(x, y violationKey) int { return strings.Compare(x.subject, y.subject) })
	slices.SortFunc(want, func(x, y violationKey) int { return strings.Compare(x.subject, y.subject) })
	if !slices.Equal(got, want) || !r.WorkflowsChecked {
		t.Errorf("got violations %v and workflows checked %v, want %v and true", got, r.WorkflowsChecked, want)
	}
	if slices.Contains(wf.asked, f.completed.String()) {
		t.Errorf("got a question about the completed transfer %s, want questions only about transfers in flight", f.completed)
	}

	unreachable := &fakeWorkflows{err: errors.New("temporal unreachable")}
	if _, err := f.s.Audit(ctx, unreachable); err == nil {
		t.Errorf("audit with Temporal unreachable: got no error, want one")
	}
}

// mustSystem returns the currency's system account id.
func mustSystem(t testing.TB, s *ledger.Store, cur transfer.Currency) uuid.UUID {
	t.Helper()
	sys, err := s.SystemAccount(context.Background(), cur)
	if err != nil {
		t.Fatalf("system account: %v", err)
	}
	return sys.ID
}

// mustStep fails the test if a step that must succeed did not.
func mustStep(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("step: %v", err)
	}
}
