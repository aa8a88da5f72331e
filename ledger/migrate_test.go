package ledger_test

import (
	"context"
	"database/sql"
	"slices"
	"sync"
	"testing"

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
)

// openUnmigrated opens a Store on a fresh, empty database and returns it with the database's URL.
func openUnmigrated(t testing.TB) (*ledger.Store, string) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	s, err := ledger.Open(context.Background(), url, ledger.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, url
}

// allMigrations are the migrations an empty database gets, in order.
var allMigrations = []string{"0001_ledger", "0002_step_functions", "0003_ledger_decides", "0004_constraints", "0005_list_watermark", "0006_step_failures"}

func TestMigrateAppliesOnce(t *testing.T) {
	ctx := context.Background()
	s, url := openUnmigrated(t)
	tests := []struct {
		name string
		want []string
	}{
		{name: "empty database", want: allMigrations},
		{name: "current database", want: nil},
		{name: "current database again", want: nil},
	}
	for _, tc := range tests {
		got, err := s.Migrate(ctx)
		if err != nil {
			t.Fatalf("%s: migrate: %v", tc.name, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got applied %q, want %q", tc.name, got, tc.want)
		}
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatalf("open raw connection: %v", err)
	}
	defer db.Close()
	if n := countRows(t, db, "SELECT count(*) FROM schema_migrations WHERE version = '0001_ledger'"); n != 1 {
		t.Errorf("schema_migrations rows for 0001_ledger: got %d, want 1", n)
	}
	for _, table := range []string{"users", "accounts", "transfers", "holds", "entries"} {
		if n := countRows(t, db, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = $1", table); n != 1 {
			t.Errorf("table %s: got %d, want 1", table, n)
		}
	}
	// The migrated schema works: the Store can use it.
	a := newAccount(t, s, "USD")
	fund(t, s, a, 10)
	mustAudit(t, s)
}

// TestMigrateConcurrently starts five migrators on one fresh database at once, as five replicas
// starting together would: all succeed and exactly one applies the migration.
func TestMigrateConcurrently(t *testing.T) {
	const migrators = 5
	ctx := context.Background()
	_, url := openUnmigrated(t)
	stores := make([]*ledger.Store, migrators)
	for i := range stores {
		s, err := ledger.Open(ctx, url, ledger.Options{MaxOpenConns: 2})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	applied := make([][]string, migrators)
	errs := make([]error, migrators)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			applied[i], errs[i] = s.Migrate(ctx)
		}()
	}
	close(start)
	wg.Wait()
	var appliers int
	for i := range stores {
		if errs[i] != nil {
			t.Errorf("migrator %d: got error %v, want none", i, errs[i])
		}
		switch {
		case slices.Equal(applied[i], allMigrations):
			appliers++
		case len(applied[i]) != 0:
			t.Errorf("migrator %d: got applied %q, want %q or nothing", i, applied[i], allMigrations)
		}
	}
	if appliers != 1 {
		t.Errorf("migrators that applied the migrations: got %d, want 1", appliers)
	}
	s := stores[0]
	fund(t, s, newAccount(t, s, "EUR"), 10)
	mustAudit(t, s)
}
