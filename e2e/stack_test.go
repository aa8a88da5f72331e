package e2e

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/internal/sagatest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/worker"
)

const taskQueue = "transfers-e2e"

// stack is one test's whole system: Postgres ledger, Temporal server, worker and service.
type stack struct {
	t         *testing.T
	store     *ledger.Store
	temporal  client.Client
	namespace string
	svc       *service.Service
	gate      *sagatest.Gate
}

// newStack builds t's stack on the dev server.
func newStack(t *testing.T) *stack {
	t.Helper()
	return newStackOn(t, devServer)
}

// newStackOn builds t's stack on a backend: a ledger database of its own, a namespace of its own
// with transferd's search attributes, a worker on it and the service.
func newStackOn(t *testing.T, b backend) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: starts a Temporal server")
	}
	ctx := context.Background()
	store, err := ledger.Open(ctx, pgtest.NewDatabase(t), ledger.Options{MaxOpenConns: 40})
	if err != nil {
		t.Fatalf("open ledger: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	c, namespace := b.temporal(t)
	gate := sagatest.NewGate(store)
	w := worker.New(c, &activities.Activities{Store: gate}, worker.Options{TaskQueue: taskQueue})
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(w.Stop)
	log := slog.New(slog.DiscardHandler)
	return &stack{t: t, store: store, temporal: c, namespace: namespace,
		svc: service.New(store, c, taskQueue, log).WithOptions(service.Options{WorkflowTaskTimeout: sagatest.WorkflowTaskTimeout,
			Namespace: namespace}),
		gate: gate}
}

// account creates a user and an account of theirs.
func (s *stack) account(cur transfer.Currency) transfer.Account {
	s.t.Helper()
	ctx := context.Background()
	u, err := s.store.CreateUser(ctx, transfer.User{Email: uuid.NewString() + "@example.com", PasswordHash: "x"})
	if err != nil {
		s.t.Fatalf("create user: %v", err)
	}
	a, _, err := s.store.CreateAccount(ctx, ledger.NewAccount{OwnerID: u.ID, Currency: cur})
	if err != nil {
		s.t.Fatalf("create account: %v", err)
	}
	return a
}

// submit submits a request and waits for its transfer to end.
func (s *stack) submit(r transfer.Request) transfer.Transfer {
	s.t.Helper()
	t, _, err := s.svc.Submit(context.Background(), r)
	if err != nil {
		s.t.Fatalf("submit %+v: %v", r, err)
	}
	return s.wait(t.ID)
}

func (s *stack) wait(id uuid.UUID) transfer.Transfer {
	s.t.Helper()
	t, err := s.svc.Wait(context.Background(), id, 20*time.Second)
	if err != nil {
		s.t.Fatalf("wait %s: %v", id, err)
	}
	if !t.Status.Final() {
		s.t.Fatalf("transfer %s still %s after 20s", id, t.Status)
	}
	return t
}

// recorded records a transfer of amount in USD from a fresh account funded with funds to another
// fresh account, as an API process does before it starts the workflow: the transfer is pending,
// with no workflow.
func (s *stack) recorded(t *testing.T, funds, amount int64) (transfer.Transfer, transfer.Account, transfer.Account) {
	t.Helper()
	from, to := s.account("USD"), s.account("USD")
	s.deposit(from, funds)
	tr, _, err := s.store.CreateTransfer(context.Background(), transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer,
		FromAccountID: from.ID, ToAccountID: to.ID, Amount: transfer.Amount(amount), Currency: "USD"})
	if err != nil {
		t.Fatal(err)
	}
	return tr, from, to
}

func (s *stack) deposit(a transfer.Account, amount int64) transfer.Transfer {
	s.t.Helper()
	return s.submit(transfer.Request{Kind: transfer.KindDeposit, ToAccountID: a.ID, Amount: transfer.Amount(amount), Currency: a.Currency})
}

func (s *stack) balance(id uuid.UUID) (balance, reserved int64) {
	s.t.Helper()
	a, err := s.store.Account(context.Background(), id)
	if err != nil {
		s.t.Fatalf("account %s: %v", id, err)
	}
	return a.Balance, a.Reserved
}

// audit fails the test on any violation of the ledger's invariants, workflows included.
func (s *stack) audit() {
	s.t.Helper()
	r, err := s.store.Audit(context.Background(), s.svc)
	if err != nil {
		s.t.Fatalf("audit: %v", err)
	}
	if !r.WorkflowsChecked {
		s.t.Errorf("audit did not check workflows")
	}
	for _, v := range r.Violations {
		s.t.Errorf("audit: invariant %d (%s): %s: %s", v.Invariant, v.Name, v.Subject, v.Detail)
	}
}

// listWorkflows lists the workflows that match a visibility query, polling for up to 20 s until it
// finds want of them, since visibility trails the workflows (by a little on the dev server's SQLite,
// by the history service's visibility queue on the cluster's PostgreSQL).
func (s *stack) listWorkflows(query string, want int) []*workflowpb.WorkflowExecutionInfo {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := s.temporal.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: s.namespace, Query: query})
		if err != nil {
			s.t.Fatalf("list workflows %q: %v", query, err)
		}
		if len(resp.GetExecutions()) == want || time.Now().After(deadline) {
			return resp.GetExecutions()
		}
		time.Sleep(100 * time.Millisecond)
	}
}
