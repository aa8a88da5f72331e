package ledger

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/transfer"
)

// TestListPagesReadAPageOfRows checks, with Postgres's own row counts (EXPLAIN ANALYZE), that a page
// of a list reads about a page of rows however long the journal is: every list is a keyset read of
// an index in its order. A list that read every matching row and sorted them, such as an OR of
// the two sides of a transfer, reads thousands here and fails. The journal is the test-sized one of
// the growth runs; `make bench` measures the same lists up to a million entries.
func TestListPagesReadAPageOfRows(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	owner, err := s.CreateUser(ctx, transfer.User{ID: uuid.New(), Email: "growth@example.com", PasswordHash: "x", Role: transfer.RoleUser})
	if err != nil {
		t.Fatal(err)
	}
	var accounts []uuid.UUID
	for range 4 {
		a, _, err := s.CreateAccount(ctx, transfer.NewAccount{OwnerID: owner.ID, Currency: "USD"})
		if err != nil {
			t.Fatal(err)
		}
		accounts = append(accounts, a.ID)
	}
	const deposits = 6000 // 12,000 entries; 1,500 transfers and entries on each account.
	if err := s.SeedDeposits(ctx, "USD", accounts, deposits); err != nil {
		t.Fatal(err)
	}
	if err := s.db.WithContext(ctx).Exec("ANALYZE").Error; err != nil {
		t.Fatal(err)
	}
	report, err := s.Audit(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !report.OK() {
		t.Fatalf("seeded journal fails the audit: %+v", report)
	}

	const limit = 50
	// A page after the first: the cursor of the walk's 10th page.
	deep := func(list func(p transfer.Page) (string, error)) transfer.Page {
		p := transfer.Page{Limit: limit}
		for range 10 {
			next, err := list(p)
			if err != nil || next == "" {
				t.Fatalf("walking to a deep page: cursor %q, %v", next, err)
			}
			p.Cursor = next
		}
		return p
	}
	transfersPage := func(f TransferFilter) func(p transfer.Page) (string, error) {
		return func(p transfer.Page) (string, error) {
			l, err := s.ListTransfers(ctx, f, p)
			return l.NextCursor, err
		}
	}
	entriesPage := func(p transfer.Page) (string, error) {
		l, err := s.ListEntries(ctx, accounts[0], p)
		return l.NextCursor, err
	}
	lists := []struct {
		name  string
		parts int // index reads the statement is made of
		query func(p transfer.Page) (string, []any, error)
		walk  func(p transfer.Page) (string, error)
	}{
		{"all transfers", 1, func(p transfer.Page) (string, []any, error) { return transfersQuery(TransferFilter{}, p, limit) },
			transfersPage(TransferFilter{})},
		{"an account's transfers", 2, func(p transfer.Page) (string, []any, error) {
			return transfersQuery(TransferFilter{AccountID: accounts[0]}, p, limit)
		}, transfersPage(TransferFilter{AccountID: accounts[0]})},
		{"a user's transfers", 2 * len(accounts), func(p transfer.Page) (string, []any, error) {
			return transfersQuery(TransferFilter{VisibleTo: owner.ID}, p, limit)
		}, transfersPage(TransferFilter{VisibleTo: owner.ID})},
		{"a user's transfers of their account", 4 + 2*len(accounts), func(p transfer.Page) (string, []any, error) {
			return transfersQuery(TransferFilter{VisibleTo: owner.ID, AccountID: accounts[1]}, p, limit)
		}, transfersPage(TransferFilter{VisibleTo: owner.ID, AccountID: accounts[1]})},
		{"an account's entries", 1, func(p transfer.Page) (string, []any, error) { return entriesQuery(accounts[0], p, limit) },
			entriesPage},
	}
	for _, l := range lists {
		for _, p := range []transfer.Page{{Limit: limit}, deep(l.walk)} {
			q, args, err := l.query(p)
			if err != nil {
				t.Fatal(err)
			}
			var plan []byte
			if err := s.db.WithContext(ctx).Raw("EXPLAIN (ANALYZE, FORMAT JSON) "+q, args...).Row().Scan(&plan); err != nil {
				t.Fatalf("%s: explain: %v", l.name, err)
			}
			got := rowsRead(t, plan)
			// Each index read returns up to limit+1 rows.
			if want := l.parts * (limit + 1); got > want {
				t.Errorf("%s (cursor %q): read %d rows of transfers and entries, want at most %d whatever the journal's size; plan: %s",
					l.name, p.Cursor, got, want, plan)
			}
		}
	}
}

// rowsRead sums the rows that the plan's scans of transfers and entries returned, over all loops.
func rowsRead(t *testing.T, plan []byte) int {
	t.Helper()
	var doc []struct{ Plan planNode }
	if err := json.Unmarshal(plan, &doc); err != nil || len(doc) != 1 {
		t.Fatalf("explain output: %v: %s", err, plan)
	}
	var sum func(n planNode) int
	sum = func(n planNode) int {
		total := 0
		if n.Relation == "transfers" || n.Relation == "entries" {
			total += int(n.ActualRows * n.ActualLoops)
		}
		for _, c := range n.Plans {
			total += sum(c)
		}
		return total
	}
	return sum(doc[0].Plan)
}

type planNode struct {
	Relation    string     `json:"Relation Name"`
	ActualRows  float64    `json:"Actual Rows"`
	ActualLoops float64    `json:"Actual Loops"`
	Plans       []planNode `json:"Plans"`
}
