package ledger

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLockKey is the advisory lock that serialises migrators: any constant shared by every
// transferd binary will do ("transferd" in ASCII).
const migrationLockKey int64 = 0x7472616e73666572

// A migration whose first line is noTransactionMarker is applied statement by statement, each
// statement in a transaction of its own, instead of in a transaction with its neighbours. That is
// how a migration changes a hot table without stopping it: CREATE INDEX CONCURRENTLY cannot run in a
// transaction at all, and ADD ... NOT VALID then VALIDATE only helps if the lock that ADD takes is
// released before VALIDATE scans.
//
// Its statements are separated by lines that are statementMarker alone or followed by ": " and a
// name for the statement in errors ("-- statement: build accounts_id_currency_key"). A separator line
// is used rather than a ";" at the end of a line so that nothing has to understand SQL's quoting:
// function bodies, DO blocks and comments may hold any text. Each statement is sent to PostgreSQL
// as one query string and should hold one statement (a DO block for anything conditional); several
// would run as one transaction. Text before the first separator is the migration's header and may
// hold only comments.
//
// Every statement of such a migration must be idempotent (IF [NOT] EXISTS, or a DO block that looks
// in pg_constraint, pg_trigger or pg_index first), because a migrator that crashes or gives up
// half-way leaves the statements before that point applied, and the next run applies the migration
// again from its first statement. A CREATE INDEX CONCURRENTLY that fails leaves an INVALID index
// behind, which IF NOT EXISTS would then take for done: a statement before it must set such an index
// aside and drop it (0004 shows how). The migration is recorded in schema_migrations only once all of
// its statements have succeeded.
const (
	noTransactionMarker = "-- transferd:no-transaction"
	statementMarker     = "-- statement"
)

// The statements of a no-transaction migration run with lock_timeout set to migrationLockTimeout. A
// statement whose lock waits behind a long transaction makes every later writer of that table wait
// behind it in turn, so it gives up instead: it is the longest a migration may stall a transfer by
// queueing for a lock, on top of the moment it holds the lock. The wait of CREATE INDEX
// CONCURRENTLY for older transactions counts too, so a transaction open for longer than this (a
// long report, a pg_dump) makes the build give up as well. A migration whose statement gave up on a
// lock (lock_not_available) or was chosen as a deadlock victim is applied again from its first
// statement after a pause, up to migrationAttempts times in all, and then fails; running Migrate
// again later picks it up. Again from the first statement rather than from the one that gave up,
// because a concurrent index build that gave up has left an INVALID index that only the statements
// before it clear. One second is a thousand times a step's transaction, so the steps in flight never
// make a statement give up; an autovacuum in its way may (deadlock_timeout, also 1 s by default, is
// when PostgreSQL cancels an autovacuum that blocks a lock), and the next attempt finds it gone.
const (
	migrationLockTimeout = "1s"
	migrationAttempts    = 5
	migrationRetryPause  = time.Second
)

// migrationLockPoll is how often a migrator tries the advisory lock while another holds it (see
// lockMigrations).
const migrationLockPoll = 100 * time.Millisecond

// migration is one file of migrations/: its version (the file name without .sql) and its SQL, and
// for a no-transaction migration its statements.
type migration struct {
	version    string
	body       string
	statements []statement // nil unless the migration is applied outside a transaction
}

// statement is one statement of a no-transaction migration and the name its separator gave it.
type statement struct {
	name string
	sql  string
}

// migrationObserver, when set, is told how long each statement of a no-transaction migration took,
// its lock wait included. Tests use it to measure what a migration does to a loaded ledger.
type migrationObserver func(version, statement string, took time.Duration)

// Migrate applies every embedded migration that the database has not applied yet, in version order,
// under an advisory lock, so several processes may run it at once: one applies the migrations and
// the others then find nothing left to do. Consecutive ordinary migrations are applied in one
// transaction, so a failed one leaves nothing of that run behind; a migration marked
// "-- transferd:no-transaction" is applied on its own, statement by statement, after the ones before
// it have committed (see noTransactionMarker). It returns the versions it applied, also alongside an
// error (those before the failed one); none means the schema was already current.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("ledger: migrate: %w", err)
	}
	return s.migrate(ctx, dir, nil)
}

// migrate applies the migrations in dir (files named VERSION.sql), telling observe about each
// statement of a no-transaction migration.
func (s *Store) migrate(ctx context.Context, dir fs.FS, observe migrationObserver) (applied []string, err error) {
	all, err := loadMigrations(dir)
	if err != nil {
		return nil, fmt.Errorf("ledger: migrate: %w", err)
	}
	sqlDB, err := s.db.DB()
	if err != nil {
		return nil, fmt.Errorf("ledger: migrate: %w", err)
	}
	// Everything runs on one connection, which holds the advisory lock at session level from the
	// first migration to the last, between the transactions of a no-transaction migration included.
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("ledger: migrate: %w", err)
	}
	defer releaseMigrationConn(ctx, conn)
	if err := lockMigrations(ctx, conn); err != nil {
		return nil, fmt.Errorf("ledger: migrate: lock: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    text PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("ledger: migrate: %w", err)
	}
	done, err := appliedVersions(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("ledger: migrate: %w", err)
	}
	pending := slices.DeleteFunc(all, func(m migration) bool { return slices.Contains(done, m.version) })
	for len(pending) > 0 {
		if pending[0].statements != nil {
			if err := applyStatements(ctx, conn, pending[0], observe); err != nil {
				return applied, fmt.Errorf("ledger: migrate: %s: %w", pending[0].version, err)
			}
			applied = append(applied, pending[0].version)
			pending = pending[1:]
			continue
		}
		n := slices.IndexFunc(pending, func(m migration) bool { return m.statements != nil })
		if n < 0 {
			n = len(pending)
		}
		if err := applyInTransaction(ctx, conn, pending[:n]); err != nil {
			return applied, fmt.Errorf("ledger: migrate: %w", err)
		}
		for _, m := range pending[:n] {
			applied = append(applied, m.version)
		}
		pending = pending[n:]
	}
	return applied, nil
}

// lockMigrations takes the advisory lock at session level, trying every migrationLockPoll rather
// than waiting in pg_advisory_lock: a statement waiting for a lock is a transaction with a
// snapshot, and CREATE INDEX CONCURRENTLY waits for every such transaction to end, so a migrator
// queued behind one that builds an index would deadlock with it.
func lockMigrations(ctx context.Context, conn *sql.Conn) error {
	for {
		var locked bool
		if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", migrationLockKey).Scan(&locked); err != nil {
			return err
		}
		if locked {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(migrationLockPoll):
		}
	}
}

// releaseMigrationConn releases the advisory lock and closes the migrator's connection for good
// rather than returning it to the pool, so that neither the lock nor a session setting can outlive
// Migrate, whatever state an error left the session in.
func releaseMigrationConn(ctx context.Context, conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	// Closing the session would release the lock too; unlocking first lets a waiting migrator go on
	// at once rather than when the server notices the connection is gone.
	_, _ = conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", migrationLockKey)
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// appliedVersions lists the versions recorded in schema_migrations.
func appliedVersions(ctx context.Context, conn *sql.Conn) ([]string, error) {
	rows, err := conn.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var done []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		done = append(done, v)
	}
	return done, rows.Err()
}

// applyInTransaction applies ordinary migrations, and records them, in one transaction.
func applyInTransaction(ctx context.Context, conn *sql.Conn, ms []migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, m := range ms {
		if _, err := tx.ExecContext(ctx, m.body); err != nil {
			return fmt.Errorf("%s: %w", m.version, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", m.version); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// applyStatements applies a no-transaction migration: each statement on its own (a statement outside
// a transaction block is its own transaction), under lock_timeout, the whole migration again after a
// statement gave up on a lock, and the version recorded once every statement has succeeded.
func applyStatements(ctx context.Context, conn *sql.Conn, m migration, observe migrationObserver) error {
	if _, err := conn.ExecContext(ctx, "SET lock_timeout = '"+migrationLockTimeout+"'"); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := runStatements(ctx, conn, m, observe)
		if err == nil {
			break
		}
		if !lockFailure(err) || attempt == migrationAttempts {
			if attempt > 1 {
				return fmt.Errorf("attempt %d of %d: %w", attempt, migrationAttempts, err)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (after %v)", ctx.Err(), err)
		case <-time.After(migrationRetryPause):
		}
	}
	if _, err := conn.ExecContext(ctx, "RESET lock_timeout"); err != nil {
		return err
	}
	_, err := conn.ExecContext(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", m.version)
	return err
}

// runStatements runs each statement of m once, in order, and stops at the first error.
func runStatements(ctx context.Context, conn *sql.Conn, m migration, observe migrationObserver) error {
	for i, st := range m.statements {
		start := time.Now()
		// With no arguments pgx sends the statement as a simple query, outside any transaction
		// block, which is what CREATE INDEX CONCURRENTLY needs.
		if _, err := conn.ExecContext(ctx, st.sql); err != nil {
			return fmt.Errorf("statement %d (%s): %w", i+1, st.name, err)
		}
		if observe != nil {
			observe(m.version, st.name, time.Since(start))
		}
	}
	return nil
}

// lockFailure reports whether err is a statement giving up on a lock: lock_timeout
// (lock_not_available) or a deadlock that chose it as the victim.
func lockFailure(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "55P03" || pe.Code == "40P01")
}

// loadMigrations reads the migrations in dir, in version order.
func loadMigrations(dir fs.FS) ([]migration, error) {
	names, err := fs.Glob(dir, "*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	all := make([]migration, 0, len(names))
	for _, name := range names {
		body, err := fs.ReadFile(dir, name)
		if err != nil {
			return nil, err
		}
		m := migration{version: strings.TrimSuffix(name, ".sql"), body: string(body)}
		if first, _, _ := strings.Cut(m.body, "\n"); strings.TrimSpace(first) == noTransactionMarker {
			if m.statements, err = splitStatements(m.body); err != nil {
				return nil, fmt.Errorf("%s: %w", m.version, err)
			}
		}
		all = append(all, m)
	}
	return all, nil
}

// splitStatements splits a no-transaction migration at its statementMarker lines. The header before
// the first one must hold only comments, and no statement may be empty, so that a statement written
// without its separator, or a separator without its statement, is an error when the migration is
// loaded rather than a surprise when it runs.
func splitStatements(body string) ([]statement, error) {
	var (
		stmts  []statement
		cur    *statement
		header = true
	)
	for line := range strings.Lines(body) {
		trimmed := strings.TrimSpace(line)
		if name, ok := statementName(trimmed); ok {
			stmts = append(stmts, statement{name: name})
			cur = &stmts[len(stmts)-1]
			header = false
			continue
		}
		if header {
			if trimmed != "" && !strings.HasPrefix(trimmed, "--") {
				return nil, fmt.Errorf("SQL before the first %q line: %q", statementMarker, trimmed)
			}
			continue
		}
		cur.sql += line
	}
	if len(stmts) == 0 {
		return nil, fmt.Errorf("no %q line", statementMarker)
	}
	for i := range stmts {
		if stmts[i].name == "" {
			stmts[i].name = fmt.Sprintf("statement %d", i+1)
		}
		if onlyComments(stmts[i].sql) {
			return nil, fmt.Errorf("statement %d (%s) is empty", i+1, stmts[i].name)
		}
		stmts[i].sql = strings.TrimSpace(stmts[i].sql)
	}
	return stmts, nil
}

// statementName reports whether a trimmed line is a statement separator, "-- statement" alone or
// followed by ": name", and returns the name.
func statementName(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, statementMarker)
	if !ok {
		return "", false
	}
	if rest == "" {
		return "", true
	}
	name, ok := strings.CutPrefix(rest, ":")
	return strings.TrimSpace(name), ok
}

// onlyComments reports whether sql holds nothing but blank lines and "--" comments.
func onlyComments(sql string) bool {
	for line := range strings.Lines(sql) {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "--") {
			return false
		}
	}
	return true
}
