// Package pgtest gives tests a throwaway PostgreSQL database of their own on the local server, and
// drops it when the test ends. Tests never depend on leftovers.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // The database/sql driver "pgx".
)

// AdminURL is the server the test databases are created on: TRANSFERD_TEST_DATABASE_URL, or the
// local server's postgres database.
func AdminURL() string {
	if u := os.Getenv("TRANSFERD_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// NewDatabase creates an empty database with a random name and returns its URL. The database is
// dropped, with any connections still open to it, when the test ends. It fails the test at once if
// the server cannot be reached.
func NewDatabase(t testing.TB) string {
	t.Helper()
	dsn, name := newName(t)
	admin, err := sql.Open("pgx", AdminURL())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database (is PostgreSQL running at %s?): %v", AdminURL(), err)
	}
	return dsn
}

// NewDatabaseURL returns the URL of a database with a random name that does not exist yet, for code
// that creates its database itself. Whatever creates it, it is dropped when the test ends.
func NewDatabaseURL(t testing.TB) string {
	t.Helper()
	dsn, _ := newName(t)
	return dsn
}

// newName picks a random database name, arranges for the database to be dropped when the test ends,
// and returns its URL and name.
func newName(t testing.TB) (dsn, name string) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name = "transferd_test_" + hex.EncodeToString(b[:])
	u, err := url.Parse(AdminURL())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u.Path = "/" + name
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", AdminURL())
		if err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	return u.String(), name
}
