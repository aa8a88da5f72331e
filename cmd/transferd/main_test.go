package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.temporal.io/server/temporaltest"

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/worker"
)

// TestBinary runs the subcommands as the binary does: migrate twice, a worker against a real Temporal
// server, transfers through the service, audit clean with its Temporal check, then audit of a
// deliberately corrupted journal, which must exit 1 and name the account.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server")
	}
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)

	var out bytes.Buffer
	if err := run(ctx, []string{"migrate", "--database-url", dsn}, &out, io.Discard); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if got := out.String(); !strings.Contains(got, "applied 0001_ledger") {
		t.Errorf("first migrate: got %q, want it to apply 0001_ledger", got)
	}
	out.Reset()
	if err := run(ctx, []string{"migrate", "--database-url", dsn}, &out, io.Discard); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	if got := out.String(); got != "migrate: schema is current\n" {
		t.Errorf("second migrate: got %q, want no change", got)
	}

	ts := temporaltest.NewServer(temporaltest.WithT(t))
	temporalFlags := []string{"--temporal-address", ts.GetFrontendHostPort(), "--temporal-namespace", ts.GetDefaultNamespace(),
		"--task-queue", "binary-test"}
	workerCtx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	go func() {
		workerDone <- run(workerCtx, append([]string{"worker", "--database-url", dsn, "--reconcile-every", "1s"}, temporalFlags...), io.Discard, io.Discard)
	}()

	store, err := ledger.Open(ctx, dsn, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// The API registers the search attributes before it starts workflows; so does this test, which
	// starts them through the service while the worker subcommand may still be starting.
	if err := worker.EnsureSearchAttributes(ctx, ts.GetDefaultClient(), ts.GetDefaultNamespace()); err != nil {
		t.Fatal(err)
	}
	svc := service.New(store, ts.GetDefaultClient(), "binary-test", slog.New(slog.DiscardHandler))
	var accounts []transfer.Account
	for range 2 {
		u, err := store.CreateUser(ctx, transfer.User{Email: uuid.NewString() + "@example.com", PasswordHash: "x"})
		if err != nil {
			t.Fatal(err)
		}
		a, _, err := store.CreateAccount(ctx, ledger.NewAccount{OwnerID: u.ID, Currency: "JPY"})
		if err != nil {
			t.Fatal(err)
		}
		accounts = append(accounts, a)
	}
	for _, r := range []transfer.Request{
		{Kind: transfer.KindDeposit, ToAccountID: accounts[0].ID, Amount: 5000, Currency: "JPY"},
		{FromAccountID: accounts[0].ID, ToAccountID: accounts[1].ID, Amount: 1200, Currency: "JPY"},
		{FromAccountID: accounts[1].ID, ToAccountID: accounts[0].ID, Amount: 9999, Currency: "JPY"},
	} {
		tr, _, err := svc.Submit(ctx, r)
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
		if tr, err = svc.Wait(ctx, tr.ID, 20*time.Second); err != nil || !tr.Status.Final() {
			t.Fatalf("wait: got %s, %v; want a final status", tr.Status, err)
		}
	}

	out.Reset()
	if err := run(ctx, append([]string{"audit", "--database-url", dsn, "--json"}, temporalFlags...), &out, io.Discard); err != nil {
		t.Fatalf("audit of a clean ledger: %v\n%s", err, out.String())
	}
	var report ledger.AuditReport
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatalf("audit --json: %v\n%s", err, out.String())
	}
	if !report.WorkflowsChecked || report.Transfers != 3 || len(report.Violations) != 0 {
		t.Errorf("audit --json: got %+v, want 3 transfers, workflows checked, no violations", report)
	}

	stopWorker()
	select {
	case err := <-workerDone:
		if err != nil {
			t.Errorf("worker: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("worker did not stop after its context was cancelled")
	}

	// Corrupt one journal entry of the second account behind the ledger's back.
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `UPDATE entries SET amount = amount + 1 WHERE account_id = $1`, accounts[1].ID); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = run(ctx, []string{"audit", "--database-url", dsn, "--no-temporal"}, &out, io.Discard)
	if code, ok := err.(exitError); !ok || code != 1 {
		t.Errorf("audit of a corrupted ledger: got %v, want exit status 1", err)
	}
	if got := out.String(); !strings.Contains(got, "account "+accounts[1].ID.String()) || !strings.Contains(got, "invariant 2") {
		t.Errorf("audit output does not name invariant 2 and account %s:\n%s", accounts[1].ID, got)
	}
}

func TestUnknownCommand(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"frobnicate"}, io.Discard, &stderr)
	if code, ok := err.(exitError); !ok || code != 2 {
		t.Errorf("got %v, want exit status 2", err)
	}
	if !strings.Contains(stderr.String(), `unknown command "frobnicate"`) {
		t.Errorf("stderr: got %q", stderr.String())
	}
}

func TestMaskURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:secret@h:5432/db?sslmode=disable", "postgres://u:xxxxx@h:5432/db?sslmode=disable"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"host=h user=u password=secret dbname=db", "host=h user=u password=xxxxx dbname=db"},
	} {
		if got := maskURL(tc.in); got != tc.want {
			t.Errorf("maskURL(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestUsersCreate(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	if err := run(ctx, []string{"migrate", "--database-url", dsn}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	args := []string{"users", "create", "--database-url", dsn, "--bcrypt-cost", "4", "--email", "Root@Example.com", "--password", "long-enough", "--name", "Root", "--admin"}
	if err := run(ctx, args, &out, io.Discard); err != nil {
		t.Fatalf("users create: %v", err)
	}
	if !strings.HasPrefix(out.String(), "created admin Root@Example.com (") {
		t.Errorf("output: got %q", out.String())
	}
	store, err := ledger.Open(ctx, dsn, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	u, err := store.UserByEmail(ctx, "root@example.com")
	if err != nil || u.Role != transfer.RoleAdmin || u.PasswordHash == "long-enough" || !strings.HasPrefix(u.PasswordHash, "$2") {
		t.Errorf("stored user: got role %q hash %q, err %v; want an admin with a bcrypt hash", u.Role, u.PasswordHash, err)
	}
	if err := run(ctx, args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "email_taken") {
		t.Errorf("same email again: got %v, want email_taken", err)
	}
	short := []string{"users", "create", "--database-url", dsn, "--email", "x@example.com", "--password", "short"}
	if err := run(ctx, short, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "password") {
		t.Errorf("short password: got %v, want a password error", err)
	}
}

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer down.Close()
	for _, tc := range []struct {
		url  string
		want error
	}{{ok.URL, nil}, {down.URL, exitError(1)}, {"http://127.0.0.1:1/", exitError(1)}} {
		if got := run(context.Background(), []string{"healthcheck", "--url", tc.url}, io.Discard, io.Discard); got != tc.want {
			t.Errorf("healthcheck %s: got %v, want %v", tc.url, got, tc.want)
		}
	}
}
