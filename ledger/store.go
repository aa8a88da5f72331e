package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/transferd/transferd/transfer"
)

// Store is the ledger on one PostgreSQL database. It is safe for concurrent use.
type Store struct {
	db *gorm.DB
}

// Options tunes the connection pool. Zero values take the defaults.
type Options struct {
	// MaxOpenConns bounds the pool; default 20.
	MaxOpenConns int
	// MaxIdleConns bounds idle connections; default MaxOpenConns.
	MaxIdleConns int
}

// Open connects to the database at dsn (a libpq URL or key=value string) and checks that it answers.
// It does not migrate: call Migrate for that.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{
		TranslateError:         true,
		SkipDefaultTransaction: true,
		Logger:                 logger.Discard,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: open: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("ledger: open: %w", err)
	}
	maxOpen := opts.MaxOpenConns
	if maxOpen <= 0 {
		maxOpen = 20
	}
	maxIdle := opts.MaxIdleConns
	if maxIdle <= 0 {
		maxIdle = maxOpen
	}
	sqlDB.SetMaxOpenConns(maxOpen)
	sqlDB.SetMaxIdleConns(maxIdle)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{db: db}
	if err := s.Ping(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, err
	}
	return s, nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return fmt.Errorf("ledger: ping: %w", err)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("ledger: ping: %w", err)
	}
	return nil
}

// Close closes the connection pool.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// notFound turns gorm's record-not-found into a *transfer.Error with the given code, and wraps
// every other error with the operation's name.
func notFound(err error, code transfer.Code, op string, id any) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return transfer.Errorf(code, "%s %v not found", op, id)
	}
	return fmt.Errorf("ledger: %s: %w", op, err)
}

// translate turns a driver error into gorm's portable errors (gorm.ErrDuplicatedKey and the like).
// GORM applies TranslateError on its own only in some paths; Raw(...).Scan is not one of them.
func (s *Store) translate(err error) error {
	if t, ok := s.db.Dialector.(gorm.ErrorTranslator); ok && err != nil {
		return t.Translate(err)
	}
	return err
}

// CreateDatabase creates the database that dsn names, connecting to the server's postgres database
// to do it, unless it exists already. It reports whether it created it.
func CreateDatabase(ctx context.Context, dsn string) (bool, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return false, fmt.Errorf("ledger: database url: %w", err)
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("ledger: connect: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return false, fmt.Errorf("ledger: create database: %w", err)
	}
	if exists {
		return false, nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" {
			return false, nil // Created by someone else meanwhile.
		}
		return false, fmt.Errorf("ledger: create database %s: %w", name, err)
	}
	return true, nil
}

// DropDatabase drops the database that dsn names, closing any connections to it, if it exists.
func DropDatabase(ctx context.Context, dsn string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("ledger: database url: %w", err)
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("ledger: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("ledger: drop database %s: %w", name, err)
	}
	return nil
}
