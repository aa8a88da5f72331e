package ledger

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/transferd/transferd/transfer"
)

// MigrationsDir is the directory of the embedded migrations, for MigrateDir.
func MigrationsDir() fs.FS {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err)
	}
	return dir
}

// MigrateDir is Migrate over the migrations in dir instead of the embedded ones, telling observe,
// when it is not nil, how long each statement of a no-transaction migration took.
func (s *Store) MigrateDir(ctx context.Context, dir fs.FS, observe func(version, statement string, took time.Duration)) ([]string, error) {
	return s.migrate(ctx, dir, observe)
}

// MigrationStatement is one statement of a no-transaction migration.
type MigrationStatement struct{ Name, SQL string }

// MigrationStatements returns the statements of the embedded no-transaction migration version, as
// Migrate would run them.
func MigrationStatements(version string) ([]MigrationStatement, error) {
	all, err := loadMigrations(MigrationsDir())
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(all, func(m migration) bool { return m.version == version })
	if i < 0 || all[i].statements == nil {
		return nil, fmt.Errorf("no no-transaction migration %s", version)
	}
	var out []MigrationStatement
	for _, st := range all[i].statements {
		out = append(out, MigrationStatement{Name: st.name, SQL: st.sql})
	}
	return out, nil
}

// TakeTokensAt is TakeTokens at a chosen time instead of on the database's clock.
func (s *Store) TakeTokensAt(ctx context.Context, at time.Time, buckets []transfer.Bucket) (time.Duration, error) {
	return s.takeTokens(ctx, at, buckets)
}
