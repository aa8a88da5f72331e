package ledger_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

// lister reads one page of a list and returns the ids of its items: an entry is named by its
// transfer's id, which the test knows in advance.
type lister func(p transfer.Page) (ids []uuid.UUID, next string, err error)

func entriesOf(s *ledger.Store, account uuid.UUID) lister {
	return func(p transfer.Page) ([]uuid.UUID, string, error) {
		l, err := s.ListEntries(context.Background(), account, p)
		var ids []uuid.UUID
		for _, e := range l.Items {
			ids = append(ids, e.TransferID)
		}
		return ids, l.NextCursor, err
	}
}

func transfersOf(s *ledger.Store, f ledger.TransferFilter) lister {
	return func(p transfer.Page) ([]uuid.UUID, string, error) {
		l, err := s.ListTransfers(context.Background(), f, p)
		var ids []uuid.UUID
		for _, tr := range l.Items {
			ids = append(ids, tr.ID)
		}
		return ids, l.NextCursor, err
	}
}

func accountsOf(s *ledger.Store, f ledger.AccountFilter) lister {
	return func(p transfer.Page) ([]uuid.UUID, string, error) {
		l, err := s.ListAccounts(context.Background(), f, p)
		var ids []uuid.UUID
		for _, a := range l.Items {
			ids = append(ids, a.ID)
		}
		return ids, l.NextCursor, err
	}
}

// walk reads a list page after page with the limit, calling between (if not nil) after each page
// but the last, and returns every id in the order read and the length of each page.
func walk(t testing.TB, l lister, limit int, between func()) (ids []uuid.UUID, sizes []int) {
	t.Helper()
	cursor := ""
	for range 1000 {
		page, next, err := l(transfer.Page{Limit: limit, Cursor: cursor})
		if err != nil {
			t.Fatalf("page %d: %v", len(sizes)+1, err)
		}
		ids = append(ids, page...)
		sizes = append(sizes, len(page))
		if next == "" {
			return ids, sizes
		}
		cursor = next
		if between != nil {
			between()
		}
	}
	t.Fatalf("the list did not end after 1000 pages")
	return nil, nil
}

// newestFirst returns ids, given oldest first, newest first.
func newestFirst(ids []uuid.UUID) []uuid.UUID {
	out := slices.Clone(ids)
	slices.Reverse(out)
	return out
}

// listKind is one of the three paginated lists, with a way to add an item to it.
type listKind struct {
	name string
	// setup prepares a list on s and returns it and a function that adds one item and returns its id.
	setup func(t testing.TB, s *ledger.Store) (lister, func() uuid.UUID)
}

func listKinds() []listKind {
	return []listKind{
		{name: "entries", setup: func(t testing.TB, s *ledger.Store) (lister, func() uuid.UUID) {
			a := newAccount(t, s, "USD")
			sys, err := s.SystemAccount(context.Background(), "USD")
			if err != nil {
				t.Fatalf("system account: %v", err)
			}
			return entriesOf(s, a.ID), func() uuid.UUID {
				id := createTransfer(t, s, transfer.KindDeposit, sys.ID, a.ID, 10, "USD")
				runSaga(t, s, id)
				return id
			}
		}},
		{name: "transfers", setup: func(t testing.TB, s *ledger.Store) (lister, func() uuid.UUID) {
			a := newAccount(t, s, "USD")
			b := newAccount(t, s, "USD")
			return transfersOf(s, ledger.TransferFilter{}), func() uuid.UUID {
				return createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 10, "USD")
			}
		}},
		{name: "accounts", setup: func(t testing.TB, s *ledger.Store) (lister, func() uuid.UUID) {
			return accountsOf(s, ledger.AccountFilter{}), func() uuid.UUID { return newAccount(t, s, "USD").ID }
		}},
	}
}

func TestListsWalkNewestFirst(t *testing.T) {
	tests := []struct {
		items     int
		wantSizes []int
	}{
		{items: 0, wantSizes: []int{0}},
		{items: 1, wantSizes: []int{1}},
		{items: 3, wantSizes: []int{3}},
		{items: 4, wantSizes: []int{3, 1}},
		{items: 10, wantSizes: []int{3, 3, 3, 1}},
	}
	for _, kind := range listKinds() {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel() // Each list has a database of its own.
			s := newStore(t)
			l, add := kind.setup(t, s)
			var created []uuid.UUID
			for _, tc := range tests {
				for len(created) < tc.items {
					created = append(created, add())
				}
				got, sizes := walk(t, l, 3, nil)
				if want := newestFirst(created); !slices.Equal(got, want) {
					t.Errorf("%d items: got %v, want %v", tc.items, got, want)
				}
				if !slices.Equal(sizes, tc.wantSizes) {
					t.Errorf("%d items: got pages of %v, want %v", tc.items, sizes, tc.wantSizes)
				}
			}
			mustAudit(t, s)
		})
	}
}

// TestListsStableUnderInserts adds items between the reads of a walk: the walk must return exactly
// the items that existed when it began, newest first, none skipped, none repeated, none new.
func TestListsStableUnderInserts(t *testing.T) {
	const initial = 8
	for _, kind := range listKinds() {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel() // Each list has a database of its own.
			s := newStore(t)
			l, add := kind.setup(t, s)
			var created []uuid.UUID
			for range initial {
				created = append(created, add())
			}
			var added []uuid.UUID
			got, sizes := walk(t, l, 3, func() { added = append(added, add(), add()) })
			if want := newestFirst(created); !slices.Equal(got, want) {
				t.Errorf("walk with inserts: got %v, want %v", got, want)
			}
			if want := []int{3, 3, 2}; !slices.Equal(sizes, want) {
				t.Errorf("walk with inserts: got pages of %v, want %v", sizes, want)
			}
			// A new walk sees everything, the inserted items first.
			all, _ := walk(t, l, 100, nil)
			if want := newestFirst(append(created, added...)); !slices.Equal(all, want) {
				t.Errorf("walk after the inserts: got %v, want %v", all, want)
			}
			mustAudit(t, s)
		})
	}
}

// lateKind is a list whose items a test can also insert by hand, in a transaction of its own.
type lateKind struct {
	name string
	// setup prepares a list on s and returns it, a function that adds one item and returns its id,
	// and a function that inserts one item in tx and returns its id.
	setup func(t testing.TB, s *ledger.Store) (lister, func() uuid.UUID, func(tx *sql.Tx) uuid.UUID)
}

func lateKinds() []lateKind {
	// transfersBetween lists the transfers the filter picks, all from a to b.
	transfersBetween := func(filter func(a, b transfer.Account) ledger.TransferFilter) func(t testing.TB, s *ledger.Store) (lister, func() uuid.UUID, func(tx *sql.Tx) uuid.UUID) {
		return func(t testing.TB, s *ledger.Store) (lister, func() uuid.UUID, func(tx *sql.Tx) uuid.UUID) {
			a := newAccount(t, s, "USD")
			b := newAccount(t, s, "USD")
			return transfersOf(s, filter(a, b)),
				func() uuid.UUID { return createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 10, "USD") },
				func(tx *sql.Tx) uuid.UUID {
					id := uuid.New()
					if _, err := tx.Exec(`INSERT INTO transfers (id, kind, from_account_id, to_account_id, amount, currency, request_hash)
						VALUES ($1, 'transfer', $2, $3, 10, 'USD', '\x00')`, id, a.ID, b.ID); err != nil {
						t.Fatalf("insert a transfer: %v", err)
					}
					return id
				}
		}
	}
	return []lateKind{
		{name: "transfers", setup: transfersBetween(func(a, b transfer.Account) ledger.TransferFilter { return ledger.TransferFilter{} })},
		{name: "an account's transfers", setup: transfersBetween(func(a, b transfer.Account) ledger.TransferFilter {
			return ledger.TransferFilter{AccountID: a.ID}
		})},
		{name: "a user's transfers", setup: transfersBetween(func(a, b transfer.Account) ledger.TransferFilter {
			return ledger.TransferFilter{VisibleTo: a.OwnerID}
		})},
		{name: "accounts", setup: func(t testing.TB, s *ledger.Store) (lister, func() uuid.UUID, func(tx *sql.Tx) uuid.UUID) {
			owner := newUser(t, s)
			return accountsOf(s, ledger.AccountFilter{}),
				func() uuid.UUID { return newOwnedAccount(t, s, owner.ID, "USD").ID },
				func(tx *sql.Tx) uuid.UUID {
					id := uuid.New()
					if _, err := tx.Exec(`INSERT INTO accounts (id, owner_id, kind, currency) VALUES ($1, $2, 'user', 'USD')`, id, owner.ID); err != nil {
						t.Fatalf("insert an account: %v", err)
					}
					return id
				}
		}},
	}
}

// TestListsNeverSkipALateCommit holds an insert open while a walk reads its pages and newer items
// commit around it. The held item's created_at is its transaction's start, older than the items
// committed after it, so a list ordered by created_at has already walked past its place when it
// commits. Whatever a walk shows, it must show without a gap: read against a fresh walk after every
// transaction has ended, the first walk is exactly the fresh walk from the first walk's first item
// on, and the fresh walk shows every item once.
func TestListsNeverSkipALateCommit(t *testing.T) {
	ctx := context.Background()
	for _, kind := range lateKinds() {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel() // Each list has a database of its own.
			s, db := newStoreDB(t)
			l, add, insert := kind.setup(t, s)
			var created []uuid.UUID
			for range 7 {
				created = append(created, add())
			}
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatalf("begin: %v", err)
			}
			defer func() { _ = tx.Rollback() }()
			held := insert(tx)
			created = append(created, held)
			for range 3 {
				created = append(created, add())
			}

			var got []uuid.UUID
			read := func(cursor string) string {
				t.Helper()
				ids, next, err := l(transfer.Page{Limit: 3, Cursor: cursor})
				if err != nil {
					t.Fatalf("page %d: %v", len(got)/3+1, err)
				}
				got = append(got, ids...)
				return next
			}
			next := read("")
			created = append(created, add(), add())
			next = read(next)
			if err := tx.Commit(); err != nil {
				t.Fatalf("commit the held insert: %v", err)
			}
			for next != "" {
				next = read(next)
			}

			all, _ := walk(t, l, 100, nil)
			if !sameSet(all, created) {
				t.Fatalf("fresh walk: got %v, want each of %v once", all, created)
			}
			if !slices.Contains(all, held) {
				t.Errorf("fresh walk: the held item %v is missing", held)
			}
			if len(got) == 0 {
				t.Fatalf("walk around the held insert: got no items, want at least the %d committed before it", 7)
			}
			from := slices.Index(all, got[0])
			if from < 0 || !slices.Equal(got, all[from:]) {
				t.Errorf("walk around the held insert (held %v):\ngot  %v\nwant %v, the fresh walk from its first item on", held, got, all[max(from, 0):])
			}
			mustAudit(t, s)
		})
	}
}

// TestListsIgnoreOtherDatabasesWriters holds a writing transaction open in another database of the
// same server. Transaction ids are cluster-wide, so a watermark taken from the whole server would
// leave everything recorded here after that transaction out of every list for as long as it runs.
func TestListsIgnoreOtherDatabasesWriters(t *testing.T) {
	ctx := context.Background()
	other, err := sql.Open("pgx", pgtest.NewDatabase(t))
	if err != nil {
		t.Fatalf("open the other database: %v", err)
	}
	t.Cleanup(func() { other.Close() })
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("begin in the other database: %v", err)
	}
	defer func() { _ = tx.Rollback() }()
	var xid string
	if err := tx.QueryRow("SELECT pg_current_xact_id()::text").Scan(&xid); err != nil {
		t.Fatalf("take a transaction id in the other database: %v", err)
	}
	for _, kind := range listKinds() {
		t.Run(kind.name, func(t *testing.T) {
			s := newStore(t)
			l, add := kind.setup(t, s)
			var created []uuid.UUID
			for range 4 {
				created = append(created, add())
			}
			got, _ := walk(t, l, 3, nil)
			if want := newestFirst(created); !slices.Equal(got, want) {
				t.Errorf("while transaction %s runs in another database: got %v, want %v", xid, got, want)
			}
		})
	}
}

// sameSet reports whether got holds each id of want exactly once and nothing else.
func sameSet(got, want []uuid.UUID) bool {
	if len(got) != len(want) {
		return false
	}
	seen := map[uuid.UUID]bool{}
	for _, id := range got {
		if seen[id] || !slices.Contains(want, id) {
			return false
		}
		seen[id] = true
	}
	return true
}

func TestListsDefaultLimit(t *testing.T) {
	for _, kind := range listKinds() {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel() // Each list has a database of its own.
			s := newStore(t)
			l, add := kind.setup(t, s)
			var created []uuid.UUID
			for range transfer.DefaultPageLimit + 5 {
				created = append(created, add())
			}
			got, sizes := walk(t, l, 0, nil)
			if want := []int{transfer.DefaultPageLimit, 5}; !slices.Equal(sizes, want) {
				t.Errorf("limit 0: got pages of %v, want %v", sizes, want)
			}
			if want := newestFirst(created); !slices.Equal(got, want) {
				t.Errorf("limit 0: got %v, want %v", got, want)
			}
			if _, sizes := walk(t, l, transfer.MaxPageLimit, nil); !slices.Equal(sizes, []int{len(created)}) {
				t.Errorf("limit %d: got pages of %v, want one of %d", transfer.MaxPageLimit, sizes, len(created))
			}
		})
	}
}

func TestListsRejectBadPages(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := newAccount(t, s, "USD")
	for range 3 {
		fund(t, s, a, 1)
	}
	entryPage, err := s.ListEntries(ctx, a.ID, transfer.Page{Limit: 1})
	if err != nil || entryPage.NextCursor == "" {
		t.Fatalf("entries page: got cursor %q, err %v; want a cursor", entryPage.NextCursor, err)
	}
	transferPage, err := s.ListTransfers(ctx, ledger.TransferFilter{}, transfer.Page{Limit: 1})
	if err != nil || transferPage.NextCursor == "" {
		t.Fatalf("transfers page: got cursor %q, err %v; want a cursor", transferPage.NextCursor, err)
	}
	encoded := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	// oldShape is a cursor as lists ordered by (created_at, id) issued it, before migration 0005.
	oldShape := encoded(fmt.Sprintf(`{"t":%d,"i":%q}`, time.Now().UnixMicro(), uuid.New()))
	lists := map[string]lister{
		"entries":   entriesOf(s, a.ID),
		"transfers": transfersOf(s, ledger.TransferFilter{}),
		"accounts":  accountsOf(s, ledger.AccountFilter{IncludeSystem: true}),
	}
	tests := []struct {
		name  string
		lists []string // the lists the case applies to
		page  transfer.Page
		want  transfer.Code
	}{
		{name: "not base64", page: transfer.Page{Cursor: "!!not a cursor!!"}, want: transfer.CodeInvalidCursor},
		{name: "padded base64", page: transfer.Page{Cursor: base64.URLEncoding.EncodeToString([]byte(`{"s":1}`))}, want: transfer.CodeInvalidCursor},
		{name: "not JSON", page: transfer.Page{Cursor: encoded("hello")}, want: transfer.CodeInvalidCursor},
		{name: "empty object", page: transfer.Page{Cursor: encoded("{}")}, want: transfer.CodeInvalidCursor},
		{name: "JSON null", page: transfer.Page{Cursor: encoded("null")}, want: transfer.CodeInvalidCursor},
		{name: "bad id", page: transfer.Page{Cursor: encoded(`{"t":1,"i":"x"}`)}, want: transfer.CodeInvalidCursor},
		{name: "a journal cursor", lists: []string{"transfers", "accounts"}, page: transfer.Page{Cursor: entryPage.NextCursor},
			want: transfer.CodeInvalidCursor},
		{name: "a keyset cursor", lists: []string{"entries"}, page: transfer.Page{Cursor: transferPage.NextCursor},
			want: transfer.CodeInvalidCursor},
		{name: "a cursor of the old shape", page: transfer.Page{Cursor: oldShape}, want: transfer.CodeInvalidCursor},
		{name: "a cursor with no id", page: transfer.Page{Cursor: encoded(`{"x":5,"t":1}`)}, want: transfer.CodeInvalidCursor},
		{name: "a negative txid", page: transfer.Page{Cursor: encoded(fmt.Sprintf(`{"x":-1,"t":1,"i":%q}`, uuid.New()))},
			want: transfer.CodeInvalidCursor},
		{name: "a keyset cursor with a seq", lists: []string{"transfers", "accounts"},
			page: transfer.Page{Cursor: encoded(fmt.Sprintf(`{"x":5,"t":1,"i":%q,"s":1}`, uuid.New()))}, want: transfer.CodeInvalidCursor},
		{name: "limit above the maximum", page: transfer.Page{Limit: transfer.MaxPageLimit + 1}, want: transfer.CodeInvalidInput},
		{name: "negative limit", page: transfer.Page{Limit: -1}, want: transfer.CodeInvalidInput},
		{name: "negative limit with a cursor", page: transfer.Page{Limit: -1, Cursor: transferPage.NextCursor}, want: transfer.CodeInvalidInput},
	}
	for _, tc := range tests {
		names := tc.lists
		if names == nil {
			names = []string{"entries", "transfers", "accounts"}
		}
		for _, name := range names {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				ids, next, err := lists[name](tc.page)
				checkCode(t, err, tc.want)
				if len(ids) != 0 || next != "" {
					t.Errorf("got %d items and cursor %q with the error, want none", len(ids), next)
				}
			})
		}
	}
}

func TestEntriesJournal(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := newAccount(t, s, "USD")
	b := newAccount(t, s, "USD")
	c := newAccount(t, s, "USD")
	sys, err := s.SystemAccount(ctx, "USD")
	if err != nil {
		t.Fatalf("system account: %v", err)
	}
	deposit := createTransfer(t, s, transfer.KindDeposit, sys.ID, a.ID, 1000, "USD")
	runSaga(t, s, deposit)
	aToB := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 300, "USD")
	runSaga(t, s, aToB)
	bToA := createTransfer(t, s, transfer.KindTransfer, b.ID, a.ID, 50, "USD")
	runSaga(t, s, bToA)
	// A cancelled transfer posts nothing.
	cancelled := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 70, "USD")
	if err := s.Reserve(ctx, cancelled); err != nil {
		t.Fatalf("reserve: %v", err)
	}
	if err := s.Release(ctx, cancelled, transfer.Outcome{Status: transfer.StatusCancelled}); err != nil {
		t.Fatalf("release: %v", err)
	}
	// A transfer whose credit fails posts a debit and a refund.
	refunded := createTransfer(t, s, transfer.KindTransfer, a.ID, c.ID, 200, "USD")
	for _, step := range []func(context.Context, uuid.UUID) error{s.Reserve, s.Debit} {
		if err := step(ctx, refunded); err != nil {
			t.Fatalf("step: %v", err)
		}
	}
	setStatus(t, s, c.ID, transfer.AccountFrozen)
	if err := s.Credit(ctx, refunded); !transfer.IsCode(err, transfer.CodeAccountInactive) {
		t.Fatalf("credit to a frozen account: got %v, want %s", err, transfer.CodeAccountInactive)
	}
	if err := s.Refund(ctx, refunded, transfer.CodeAccountInactive, "frozen"); err != nil {
		t.Fatalf("refund: %v", err)
	}
	withdrawal := createTransfer(t, s, transfer.KindWithdrawal, b.ID, sys.ID, 25, "USD")
	runSaga(t, s, withdrawal)

	type line struct {
		transfer     uuid.UUID
		kind         transfer.EntryKind
		amount, seq  int64
		balanceAfter int64
	}
	tests := []struct {
		name    string
		account uuid.UUID
		want    []line // oldest first
	}{
		{name: "a", account: a.ID, want: []line{
			{deposit, transfer.EntryCredit, 1000, 1, 1000},
			{aToB, transfer.EntryDebit, -300, 2, 700},
			{bToA, transfer.EntryCredit, 50, 3, 750},
			{refunded, transfer.EntryDebit, -200, 4, 550},
			{refunded, transfer.EntryRefund, 200, 5, 750},
		}},
		{name: "b", account: b.ID, want: []line{
			{aToB, transfer.EntryCredit, 300, 1, 300},
			{bToA, transfer.EntryDebit, -50, 2, 250},
			{withdrawal, transfer.EntryDebit, -25, 3, 225},
		}},
		{name: "system", account: sys.ID, want: []line{
			{deposit, transfer.EntryDebit, -1000, 1, -1000},
			{withdrawal, transfer.EntryCredit, 25, 2, -975},
		}},
		{name: "c", account: c.ID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []line
			cursor := ""
			for {
				page, err := s.ListEntries(ctx, tc.account, transfer.Page{Limit: 2, Cursor: cursor})
				if err != nil {
					t.Fatalf("list entries: %v", err)
				}
				for _, e := range page.Items {
					if e.AccountID != tc.account {
						t.Errorf("entry %s: got account %s, want %s", e.ID, e.AccountID, tc.account)
					}
					got = append(got, line{e.TransferID, e.Kind, e.Amount, e.Seq, e.BalanceAfter})
				}
				if cursor = page.NextCursor; cursor == "" {
					break
				}
			}
			slices.Reverse(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("journal, oldest first:\ngot  %+v\nwant %+v", got, tc.want)
			}
			var wantBalance int64
			if len(tc.want) > 0 {
				wantBalance = tc.want[len(tc.want)-1].balanceAfter
			}
			if acct := getAccount(t, s, tc.account); acct.Balance != wantBalance {
				t.Errorf("balance: got %d, want %d, the last balance_after", acct.Balance, wantBalance)
			}
		})
	}
	// An unknown account has an empty journal.
	if page, err := s.ListEntries(ctx, uuid.New(), transfer.Page{}); err != nil || len(page.Items) != 0 {
		t.Errorf("unknown account: got %d entries, err %v; want none", len(page.Items), err)
	}
	mustAudit(t, s)
}

func TestListTransfersFilters(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	u1, u2, u3 := newUser(t, s), newUser(t, s), newUser(t, s)
	a1 := newOwnedAccount(t, s, u1.ID, "USD")
	a2 := newOwnedAccount(t, s, u1.ID, "USD")
	b := newOwnedAccount(t, s, u2.ID, "USD")
	c := newOwnedAccount(t, s, u3.ID, "USD")
	sys, err := s.SystemAccount(ctx, "USD")
	if err != nil {
		t.Fatalf("system account: %v", err)
	}
	d1 := createTransfer(t, s, transfer.KindDeposit, sys.ID, a1.ID, 1000, "USD")
	runSaga(t, s, d1)
	d2 := createTransfer(t, s, transfer.KindDeposit, sys.ID, b.ID, 500, "USD")
	runSaga(t, s, d2)
	t1 := createTransfer(t, s, transfer.KindTransfer, a1.ID, b.ID, 100, "USD")
	runSaga(t, s, t1)
	t2 := createTransfer(t, s, transfer.KindTransfer, b.ID, c.ID, 50, "USD") // stays pending
	t3 := createTransfer(t, s, transfer.KindTransfer, a2.ID, c.ID, 10, "USD")
	if err := s.Reserve(ctx, t3); !transfer.IsCode(err, transfer.CodeInsufficientFunds) {
		t.Fatalf("reserve from an empty account: got %v, want %s", err, transfer.CodeInsufficientFunds)
	}
	if err := s.Release(ctx, t3, transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeInsufficientFunds}); err != nil {
		t.Fatalf("release: %v", err)
	}
	t4 := createTransfer(t, s, transfer.KindTransfer, c.ID, b.ID, 5, "USD")
	if err := s.Release(ctx, t4, transfer.Outcome{Status: transfer.StatusCancelled}); err != nil {
		t.Fatalf("release: %v", err)
	}
	w1 := createTransfer(t, s, transfer.KindWithdrawal, a1.ID, sys.ID, 20, "USD")
	runSaga(t, s, w1)
	t5 := createTransfer(t, s, transfer.KindTransfer, a1.ID, a2.ID, 30, "USD")
	if err := s.Reserve(ctx, t5); err != nil {
		t.Fatalf("reserve: %v", err)
	}

	tests := []struct {
		name   string
		filter ledger.TransferFilter
		want   []uuid.UUID // newest first
	}{
		{name: "none", want: []uuid.UUID{t5, w1, t4, t3, t2, t1, d2, d1}},
		{name: "visible to the owner of a1 and a2", filter: ledger.TransferFilter{VisibleTo: u1.ID}, want: []uuid.UUID{t5, w1, t3, t1, d1}},
		{name: "visible to the owner of b", filter: ledger.TransferFilter{VisibleTo: u2.ID}, want: []uuid.UUID{t4, t2, t1, d2}},
		{name: "visible to the owner of c", filter: ledger.TransferFilter{VisibleTo: u3.ID}, want: []uuid.UUID{t4, t3, t2}},
		{name: "visible to an unknown user", filter: ledger.TransferFilter{VisibleTo: uuid.New()}},
		{name: "account b", filter: ledger.TransferFilter{AccountID: b.ID}, want: []uuid.UUID{t4, t2, t1, d2}},
		{name: "system account", filter: ledger.TransferFilter{AccountID: sys.ID}, want: []uuid.UUID{w1, d2, d1}},
		{name: "completed", filter: ledger.TransferFilter{Status: transfer.StatusCompleted}, want: []uuid.UUID{w1, t1, d2, d1}},
		{name: "pending", filter: ledger.TransferFilter{Status: transfer.StatusPending}, want: []uuid.UUID{t2}},
		{name: "reserved", filter: ledger.TransferFilter{Status: transfer.StatusReserved}, want: []uuid.UUID{t5}},
		{name: "failed", filter: ledger.TransferFilter{Status: transfer.StatusFailed}, want: []uuid.UUID{t3}},
		{name: "cancelled", filter: ledger.TransferFilter{Status: transfer.StatusCancelled}, want: []uuid.UUID{t4}},
		{name: "debited", filter: ledger.TransferFilter{Status: transfer.StatusDebited}},
		{name: "deposits", filter: ledger.TransferFilter{Kind: transfer.KindDeposit}, want: []uuid.UUID{d2, d1}},
		{name: "withdrawals", filter: ledger.TransferFilter{Kind: transfer.KindWithdrawal}, want: []uuid.UUID{w1}},
		{name: "transfers", filter: ledger.TransferFilter{Kind: transfer.KindTransfer}, want: []uuid.UUID{t5, t4, t3, t2, t1}},
		{name: "completed and visible to the owner of a1 and a2",
			filter: ledger.TransferFilter{VisibleTo: u1.ID, Status: transfer.StatusCompleted}, want: []uuid.UUID{w1, t1, d1}},
		{name: "transfers of a1", filter: ledger.TransferFilter{AccountID: a1.ID, Kind: transfer.KindTransfer}, want: []uuid.UUID{t5, t1}},
		{name: "account a1 visible to its owner",
			filter: ledger.TransferFilter{AccountID: a1.ID, VisibleTo: u1.ID}, want: []uuid.UUID{t5, w1, t1, d1}},
		{name: "account b visible to the owner of c",
			filter: ledger.TransferFilter{AccountID: b.ID, VisibleTo: u3.ID}, want: []uuid.UUID{t4, t2}},
		{name: "account c visible to the owner of a1 and a2",
			filter: ledger.TransferFilter{AccountID: c.ID, VisibleTo: u1.ID}, want: []uuid.UUID{t3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := walk(t, transfersOf(s, tc.filter), 2, nil)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	mustAudit(t, s)
}

func TestListAccountsFilters(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	sys, err := s.SystemAccount(ctx, "USD")
	if err != nil {
		t.Fatalf("system account: %v", err)
	}
	u1, u2 := newUser(t, s), newUser(t, s)
	create := func(in ledger.NewAccount) uuid.UUID {
		a, created, err := s.CreateAccount(ctx, in)
		if err != nil || !created {
			t.Fatalf("create account: got created %v, err %v", created, err)
		}
		return a.ID
	}
	a1 := create(ledger.NewAccount{OwnerID: u1.ID, Currency: "USD", ExternalID: "main", Labels: map[string]string{"tier": "gold", "region": "eu"}})
	a2 := create(ledger.NewAccount{OwnerID: u1.ID, Currency: "EUR", Labels: map[string]string{"tier": "gold"}})
	a3 := create(ledger.NewAccount{OwnerID: u1.ID, Currency: "USD", ExternalID: "savings"})
	b1 := create(ledger.NewAccount{OwnerID: u2.ID, Currency: "USD", ExternalID: "main", Labels: map[string]string{"region": "eu"}})

	tests := []struct {
		name   string
		filter ledger.AccountFilter
		want   []uuid.UUID // newest first
	}{
		{name: "none", want: []uuid.UUID{b1, a3, a2, a1}},
		{name: "with the system account", filter: ledger.AccountFilter{IncludeSystem: true}, want: []uuid.UUID{b1, a3, a2, a1, sys.ID}},
		{name: "owner u1", filter: ledger.AccountFilter{OwnerID: u1.ID}, want: []uuid.UUID{a3, a2, a1}},
		{name: "owner u2", filter: ledger.AccountFilter{OwnerID: u2.ID}, want: []uuid.UUID{b1}},
		{name: "unknown owner", filter: ledger.AccountFilter{OwnerID: uuid.New()}},
		{name: "USD", filter: ledger.AccountFilter{Currency: "USD"}, want: []uuid.UUID{b1, a3, a1}},
		{name: "USD with the system account", filter: ledger.AccountFilter{Currency: "USD", IncludeSystem: true}, want: []uuid.UUID{b1, a3, a1, sys.ID}},
		{name: "EUR", filter: ledger.AccountFilter{Currency: "EUR"}, want: []uuid.UUID{a2}},
		{name: "JPY", filter: ledger.AccountFilter{Currency: "JPY"}},
		{name: "external id main", filter: ledger.AccountFilter{ExternalID: "main"}, want: []uuid.UUID{b1, a1}},
		{name: "external id main of u1", filter: ledger.AccountFilter{OwnerID: u1.ID, ExternalID: "main"}, want: []uuid.UUID{a1}},
		{name: "unknown external id", filter: ledger.AccountFilter{ExternalID: "checking"}},
		{name: "label tier gold", filter: ledger.AccountFilter{Labels: map[string]string{"tier": "gold"}}, want: []uuid.UUID{a2, a1}},
		{name: "label region eu", filter: ledger.AccountFilter{Labels: map[string]string{"region": "eu"}}, want: []uuid.UUID{b1, a1}},
		{name: "both labels", filter: ledger.AccountFilter{Labels: map[string]string{"tier": "gold", "region": "eu"}}, want: []uuid.UUID{a1}},
		{name: "label of another value", filter: ledger.AccountFilter{Labels: map[string]string{"tier": "silver"}}},
		{name: "label and currency", filter: ledger.AccountFilter{Labels: map[string]string{"tier": "gold"}, Currency: "EUR"}, want: []uuid.UUID{a2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := walk(t, accountsOf(s, tc.filter), 2, nil)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
