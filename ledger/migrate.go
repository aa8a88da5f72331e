package ledger

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"gorm.io/gorm"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLockKey is the advisory lock that serialises migrators: any constant shared by every
// transferd binary will do ("transferd" in ASCII).
const migrationLockKey int64 = 0x7472616e73666572

// Migrate applies every embedded migration that the database has not applied yet, in version order,
// in one transaction under an advisory lock, so several processes may run it at once and a failed
// migration leaves nothing behind. It returns the versions it applied; none means the schema was
// already current.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("ledger: migrate: %w", err)
	}
	slices.Sort(names)
	var applied []string
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", migrationLockKey).Error; err != nil {
			return err
		}
		if err := tx.Exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
			version    text PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`).Error; err != nil {
			return err
		}
		var done []string
		if err := tx.Raw("SELECT version FROM schema_migrations").Scan(&done).Error; err != nil {
			return err
		}
		for _, name := range names {
			version := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
			if slices.Contains(done, version) {
				continue
			}
			body, err := migrations.ReadFile(name)
			if err != nil {
				return err
			}
			if err := tx.Exec(string(body)).Error; err != nil {
				return fmt.Errorf("%s: %w", version, err)
			}
			if err := tx.Exec("INSERT INTO schema_migrations (version) VALUES (?)", version).Error; err != nil {
				return err
			}
			applied = append(applied, version)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: migrate: %w", err)
	}
	return applied, nil
}
