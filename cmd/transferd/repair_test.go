package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/server/temporaltest"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/worker"
	"github.com/transferd/transferd/workflows"
)

// TestRepairCommand terminates transfers' workflows, as an operator can in the Web UI, with no
// reconciler running, and repairs them with `transferd repair`: by id, and with --all.
func TestRepairCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server")
	}
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	if err := run(ctx, []string{"migrate", "--database-url", dsn}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	store, err := ledger.Open(ctx, dsn, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	if err := worker.EnsureSearchAttributes(ctx, c, ts.GetDefaultNamespace()); err != nil {
		t.Fatal(err)
	}
	const queue = "repair-test"
	w := worker.New(c, &activities.Activities{Store: store}, worker.Options{TaskQueue: queue})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	svc := service.New(store, c, queue, slog.New(slog.DiscardHandler))
	u, err := store.CreateUser(ctx, transfer.User{Email: uuid.NewString() + "@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var accts []transfer.Account
	for range 2 {
		a, _, err := store.CreateAccount(ctx, ledger.NewAccount{OwnerID: u.ID, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		accts = append(accts, a)
	}
	dep, _, err := svc.Submit(ctx, transfer.Request{Kind: transfer.KindDeposit, ToAccountID: accts[0].ID, Amount: 1000, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if dep, err = svc.Wait(ctx, dep.ID, 20*time.Second); err != nil || dep.Status != transfer.StatusCompleted {
		t.Fatalf("deposit: %s, %v", dep.Status, err)
	}
	// strand records a transfer, debits it in the ledger, and terminates its workflow.
	strand := func() uuid.UUID {
		tr, _, err := store.CreateTransfer(ctx, transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer,
			FromAccountID: accts[0].ID, ToAccountID: accts[1].ID, Amount: 100, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Reserve(ctx, tr.ID); err != nil {
			t.Fatal(err)
		}
		if err := store.Debit(ctx, tr.ID); err != nil {
			t.Fatal(err)
		}
		in := workflows.TransferInput{TransferID: tr.ID, Kind: tr.Kind, FromAccountID: tr.FromAccountID, ToAccountID: tr.ToAccountID,
			Amount: 100, Currency: "EUR"}
		if _, err := c.ExecuteWorkflow(ctx, workflows.StartOptions(in, "nobody-polls"), workflows.WorkflowName, in); err != nil {
			t.Fatal(err)
		}
		if err := c.TerminateWorkflow(ctx, tr.ID.String(), "", "operator"); err != nil {
			t.Fatal(err)
		}
		return tr.ID
	}
	flags := []string{"--database-url", dsn, "--temporal-address", ts.GetFrontendHostPort(),
		"--temporal-namespace", ts.GetDefaultNamespace(), "--task-queue", queue}
	for _, tc := range []struct {
		name string
		args func(id uuid.UUID) []string
		want string
	}{
		{"by id", func(id uuid.UUID) []string { return []string{id.String()} }, "started a new workflow run"},
		{"all", func(uuid.UUID) []string { return []string{"--all"} }, "started 1 workflow runs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := strand()
			var out bytes.Buffer
			if err := run(ctx, append(append([]string{"repair"}, flags...), tc.args(id)...), &out, io.Discard); err != nil {
				t.Fatalf("repair: %v\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("repair said %q, want %q", out.String(), tc.want)
			}
			got, err := svc.Wait(ctx, id, 20*time.Second)
			if err != nil || got.Status != transfer.StatusCompleted {
				t.Errorf("repaired transfer: %s, %v; want completed", got.Status, err)
			}
		})
	}
	var out bytes.Buffer
	if err := run(ctx, append([]string{"repair"}, flags...), &out, io.Discard); err != nil || !strings.Contains(out.String(), "started 0 workflow runs") {
		t.Errorf("repair with nothing to repair: %v, %q", err, out.String())
	}
	if err := run(ctx, append([]string{"repair"}, append(flags, "not-an-id")...), io.Discard, io.Discard); err != exitError(2) {
		t.Errorf("repair of a bad id: %v, want exit status 2", err)
	}
}
