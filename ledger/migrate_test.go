package ledger_test

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

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
var allMigrations = []string{"0001_ledger", "0002_step_functions", "0003_ledger_decides", "0004_constraints", "0005_list_watermark", "0006_step_failures",
	"0007_holds_schedules", "0008_rate_limits", "0009_idempotency_keys", "0010_access", "0011_events"}

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

// openDB opens a raw connection pool (database/sql, driver "pgx") to url for the test.
func openDB(t testing.TB, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatalf("open raw connection: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// observedStatements lists, in order, the statements of a no-transaction migration that observe saw
// succeed.
type observedStatements struct {
	mu   sync.Mutex
	done []string
}

func (o *observedStatements) observe(version, statement string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = append(o.done, version+": "+statement)
}

func (o *observedStatements) count(name string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(slices.DeleteFunc(slices.Clone(o.done), func(s string) bool { return s != name }))
}

// TestMigrateNoTransaction applies an ordinary migration, a no-transaction one and another ordinary
// one: the no-transaction one runs each statement in a transaction of its own (CREATE INDEX
// CONCURRENTLY could not run otherwise), after the one before it committed, and every migration is
// applied once.
func TestMigrateNoTransaction(t *testing.T) {
	ctx := context.Background()
	s, url := openUnmigrated(t)
	db := openDB(t, url)
	dir := fstest.MapFS{
		"0001_things.sql": {Data: []byte(`CREATE TABLE things (id int PRIMARY KEY, code int NOT NULL);
			INSERT INTO things SELECT i, i FROM generate_series(1, 1000) AS i;
			CREATE TABLE xacts (statement text, xid xid8);`)},
		"0002_online.sql": {Data: []byte(`-- transferd:no-transaction
-- A header of comments only.

-- statement: build things_code_key
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS things_code_key ON things (code);

-- statement: add things_code_positive, not valid
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = 'things_code_positive') THEN
        ALTER TABLE things ADD CONSTRAINT things_code_positive CHECK (code > 0) NOT VALID;
    END IF;
    INSERT INTO xacts VALUES ('add', pg_current_xact_id());
END
$$;

-- statement
-- A statement with no name, and a comment of its own.
INSERT INTO xacts VALUES ('unnamed', pg_current_xact_id());

-- statement: validate things_code_positive
ALTER TABLE things VALIDATE CONSTRAINT things_code_positive;
`)},
		"0003_after.sql": {Data: []byte(`INSERT INTO xacts VALUES ('after', pg_current_xact_id());`)},
	}
	var seen observedStatements
	tests := []struct {
		name string
		want []string
		// wantStatements are the statements observed by the end of the run.
		wantStatements []string
	}{
		{name: "empty database", want: []string{"0001_things", "0002_online", "0003_after"},
			wantStatements: []string{"0002_online: build things_code_key", "0002_online: add things_code_positive, not valid",
				"0002_online: statement 3", "0002_online: validate things_code_positive"}},
		{name: "current database", want: nil, wantStatements: nil},
	}
	for _, tc := range tests {
		seen.done = nil
		got, err := s.MigrateDir(ctx, dir, seen.observe)
		if err != nil {
			t.Fatalf("%s: migrate: %v", tc.name, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got applied %q, want %q", tc.name, got, tc.want)
		}
		if !slices.Equal(seen.done, tc.wantStatements) {
			t.Errorf("%s: got statements %q, want %q", tc.name, seen.done, tc.wantStatements)
		}
	}
	if n := countRows(t, db, "SELECT count(*) FROM pg_index WHERE indexrelid = 'things_code_key'::regclass AND indisvalid"); n != 1 {
		t.Errorf("valid index things_code_key: got %d, want 1", n)
	}
	if n := countRows(t, db, "SELECT count(*) FROM pg_constraint WHERE conname = 'things_code_positive' AND convalidated"); n != 1 {
		t.Errorf("validated constraint things_code_positive: got %d, want 1", n)
	}
	if n := countRows(t, db, "SELECT count(DISTINCT xid) FROM xacts"); n != 3 {
		t.Errorf("transactions of the statements and of 0003: got %d, want 3, one each", n)
	}
	if n := countRows(t, db, "SELECT count(*) FROM schema_migrations"); n != 3 {
		t.Errorf("schema_migrations rows: got %d, want 3", n)
	}
}

// TestMigrateNoTransactionAfterCrash runs a no-transaction migration that fails half-way twice: its
// unique index build fails on a duplicate and leaves the index INVALID, then, the duplicate
// removed, its migrator's session dies after the build. Each time the migration is not recorded;
// the next run sets the invalid index aside, drops it, builds it again and applies the rest.
func TestMigrateNoTransactionAfterCrash(t *testing.T) {
	ctx := context.Background()
	s, url := openUnmigrated(t)
	db := openDB(t, url)
	dir := fstest.MapFS{
		"0001_things.sql": {Data: []byte(`CREATE TABLE things (id int PRIMARY KEY, code int NOT NULL);
			INSERT INTO things SELECT i, i FROM generate_series(1, 1000) AS i;
			INSERT INTO things VALUES (1001, 1);
			CREATE SEQUENCE crashes;`)},
		"0002_online.sql": {Data: []byte(`-- transferd:no-transaction

-- statement: set aside things_code_key if it is invalid
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass('things_code_key') AND NOT indisvalid) THEN
        ALTER INDEX things_code_key RENAME TO things_code_key_invalid;
    END IF;
END
$$;

-- statement: drop things_code_key_invalid
DROP INDEX CONCURRENTLY IF EXISTS things_code_key_invalid;

-- statement: build things_code_key
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS things_code_key ON things (code);

-- statement: add things_code_positive, not valid
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = 'things_code_positive') THEN
        ALTER TABLE things ADD CONSTRAINT things_code_positive CHECK (code > 0) NOT VALID;
    END IF;
END
$$;

-- statement: die the first time
DO $$
BEGIN
    IF nextval('crashes') = 1 THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
END
$$;

-- statement: validate things_code_positive
ALTER TABLE things VALIDATE CONSTRAINT things_code_positive;
`)},
	}
	state := func() (valid, invalid, setAside, added, validated, recorded int64) {
		return countRows(t, db, "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('things_code_key') AND indisvalid"),
			countRows(t, db, "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('things_code_key') AND NOT indisvalid"),
			countRows(t, db, "SELECT count(*) FROM pg_class WHERE relname = 'things_code_key_invalid'"),
			countRows(t, db, "SELECT count(*) FROM pg_constraint WHERE conname = 'things_code_positive'"),
			countRows(t, db, "SELECT count(*) FROM pg_constraint WHERE conname = 'things_code_positive' AND convalidated"),
			countRows(t, db, "SELECT count(*) FROM schema_migrations WHERE version = '0002_online'")
	}
	type want struct{ valid, invalid, setAside, added, validated, recorded int64 }
	tests := []struct {
		name string
		// before runs on the raw connection before the migrator.
		before      string
		wantApplied []string
		wantErr     string // a substring of the error; "" for none
		want        want
	}{
		{name: "the build fails on a duplicate", wantApplied: []string{"0001_things"},
			wantErr: "0002_online: statement 3 (build things_code_key)",
			want:    want{invalid: 1}},
		{name: "the session dies after the build", before: "DELETE FROM things WHERE id = 1001",
			wantErr: "statement 5 (die the first time)",
			want:    want{valid: 1, added: 1}},
		{name: "the migration runs again", wantApplied: []string{"0002_online"},
			want: want{valid: 1, added: 1, validated: 1, recorded: 1}},
		{name: "and is done", want: want{valid: 1, added: 1, validated: 1, recorded: 1}},
	}
	for _, tc := range tests {
		if tc.before != "" {
			mustExec(t, db, tc.before)
		}
		applied, err := s.MigrateDir(ctx, dir, nil)
		if tc.wantErr == "" && err != nil {
			t.Fatalf("%s: got error %v, want none", tc.name, err)
		}
		if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Fatalf("%s: got error %v, want one with %q", tc.name, err, tc.wantErr)
		}
		if !slices.Equal(applied, tc.wantApplied) {
			t.Errorf("%s: got applied %q, want %q", tc.name, applied, tc.wantApplied)
		}
		var got want
		got.valid, got.invalid, got.setAside, got.added, got.validated, got.recorded = state()
		if got != tc.want {
			t.Errorf("%s: got valid, invalid and set-aside indexes, added and validated constraints and records %+v, want %+v",
				tc.name, got, tc.want)
		}
	}
	// The pool's connections are usable after the one that died.
	if _, err := s.MigrateDir(ctx, dir, nil); err != nil {
		t.Errorf("migrate once more: %v", err)
	}
}

// TestMigrateNoTransactionConcurrently starts five migrators on one fresh database at once: each
// statement of the no-transaction migration checks that no other migrator is inside it, and sleeps
// long enough for the others to try. All succeed and exactly one applies it, so the advisory lock is
// held across its statements' transactions.
func TestMigrateNoTransactionConcurrently(t *testing.T) {
	const migrators = 5
	ctx := context.Background()
	_, url := openUnmigrated(t)
	db := openDB(t, url)
	dir := fstest.MapFS{
		"0001_inside.sql": {Data: []byte(`CREATE TABLE inside (pid int); CREATE TABLE visits (pid int);`)},
		"0002_online.sql": {Data: []byte(`-- transferd:no-transaction
-- statement: enter
INSERT INTO inside VALUES (pg_backend_pid());
-- statement: wait
SELECT pg_sleep(0.3);
-- statement: check alone
DO $$
BEGIN
    IF (SELECT count(*) FROM inside) <> 1 THEN
        RAISE EXCEPTION 'two migrators inside at once';
    END IF;
END
$$;
-- statement: leave
WITH gone AS (DELETE FROM inside WHERE pid = pg_backend_pid() RETURNING pid) INSERT INTO visits SELECT pid FROM gone;
`)},
	}
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
			applied[i], errs[i] = s.MigrateDir(ctx, dir, nil)
		}()
	}
	close(start)
	wg.Wait()
	want := []string{"0001_inside", "0002_online"}
	var appliers int
	for i := range stores {
		if errs[i] != nil {
			t.Errorf("migrator %d: got error %v, want none", i, errs[i])
		}
		switch {
		case slices.Equal(applied[i], want):
			appliers++
		case len(applied[i]) != 0:
			t.Errorf("migrator %d: got applied %q, want %q or nothing", i, applied[i], want)
		}
	}
	if appliers != 1 {
		t.Errorf("migrators that applied the migrations: got %d, want 1", appliers)
	}
	if n := countRows(t, db, "SELECT count(*) FROM visits"); n != 1 {
		t.Errorf("migrators that ran the no-transaction migration: got %d, want 1", n)
	}
}

// TestMigrateNoTransactionLockTimeout holds a lock that a statement of a no-transaction migration
// needs. The statement gives up after lock_timeout rather than queue every writer of the table
// behind it, and the migration is applied again from its first statement after a pause: it
// succeeds once the lock is free, and fails after its last attempt while it is not.
func TestMigrateNoTransactionLockTimeout(t *testing.T) {
	dir := fstest.MapFS{
		"0001_things.sql": {Data: []byte(`CREATE TABLE things (id int PRIMARY KEY, code int NOT NULL);`)},
		"0002_online.sql": {Data: []byte(`-- transferd:no-transaction
-- statement: first
SELECT 1;
-- statement: add things_code_positive
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = 'things_code_positive') THEN
        ALTER TABLE things ADD CONSTRAINT things_code_positive CHECK (code > 0) NOT VALID;
    END IF;
END
$$;
`)},
	}
	tests := []struct {
		name string
		// hold is how long another transaction holds ACCESS EXCLUSIVE on things; 0 for the whole run.
		hold       time.Duration
		wantErr    string
		wantFirsts int // times the first statement ran
	}{
		// lock_timeout is 1 s and the pause 1 s: the first attempt gives up at 1 s, the second
		// begins at 2 s and gets the lock at 2.5 s.
		{name: "lock freed during the second attempt", hold: 2500 * time.Millisecond, wantFirsts: 2},
		{name: "lock never freed", wantErr: "attempt 5 of 5: statement 2 (add things_code_positive)", wantFirsts: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, url := openUnmigrated(t)
			db := openDB(t, url)
			if _, err := s.MigrateDir(ctx, fstest.MapFS{"0001_things.sql": dir["0001_things.sql"]}, nil); err != nil {
				t.Fatalf("migrate 0001: %v", err)
			}
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, "LOCK TABLE things IN ACCESS EXCLUSIVE MODE"); err != nil {
				t.Fatal(err)
			}
			if tc.hold > 0 {
				time.AfterFunc(tc.hold, func() { tx.Rollback() })
			}
			var seen observedStatements
			applied, err := s.MigrateDir(ctx, dir, seen.observe)
			if tc.wantErr == "" {
				if err != nil || !slices.Equal(applied, []string{"0002_online"}) {
					t.Errorf("got applied %q and error %v, want [0002_online] and none", applied, err)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "55P03") {
					t.Errorf("got error %v, want one with %q and SQLSTATE 55P03", err, tc.wantErr)
				}
				if n := countRows(t, openDB(t, url), "SELECT count(*) FROM schema_migrations WHERE version = '0002_online'"); n != 0 {
					t.Errorf("schema_migrations rows for 0002_online: got %d, want 0", n)
				}
			}
			if n := seen.count("0002_online: first"); n != tc.wantFirsts {
				t.Errorf("runs of the first statement: got %d, want %d", n, tc.wantFirsts)
			}
		})
	}
}

// TestMigrateRejectsMalformedNoTransactionMigration checks that a no-transaction migration whose
// statements cannot be told apart is refused before anything runs.
func TestMigrateRejectsMalformedNoTransactionMigration(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{name: "SQL in the header", body: "-- transferd:no-transaction\nCREATE TABLE a (id int);\n-- statement\nSELECT 1;\n",
			wantErr: "SQL before the first"},
		{name: "no separator", body: "-- transferd:no-transaction\n-- only a header\n", wantErr: `no "-- statement" line`},
		{name: "empty statement", body: "-- transferd:no-transaction\n-- statement: one\nSELECT 1;\n-- statement: two\n-- nothing\n",
			wantErr: "statement 2 (two) is empty"},
	}
	s, url := openUnmigrated(t)
	db := openDB(t, url)
	for _, tc := range tests {
		_, err := s.MigrateDir(context.Background(), fstest.MapFS{"0001_bad.sql": {Data: []byte(tc.body)}}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: got error %v, want one with %q", tc.name, err, tc.wantErr)
		}
	}
	if n := countRows(t, db, "SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'"); n != 0 {
		t.Errorf("schema_migrations tables: got %d, want 0: nothing runs before the migrations are read", n)
	}
}
