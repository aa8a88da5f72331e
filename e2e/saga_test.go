package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/internal/sagatest"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/workflows"
)

// TestSagaPaths runs every path of the saga end to end, on the dev server and on the PostgreSQL
// cluster.
func TestSagaPaths(t *testing.T) { forEachBackend(t, testSagaPaths) }

func testSagaPaths(t *testing.T, s *stack) {
	ctx := context.Background()
	a := s.account("USD")
	b := s.account("USD")

	dep := s.deposit(a, 1000)
	if dep.Status != transfer.StatusCompleted || dep.Kind != transfer.KindDeposit {
		t.Fatalf("deposit: got %s %s, want completed deposit", dep.Kind, dep.Status)
	}

	t.Run("transfer completes", func(t *testing.T) {
		tr := s.submit(transfer.Request{FromAccountID: a.ID, ToAccountID: b.ID, Amount: 300, Currency: "USD"})
		if tr.Status != transfer.StatusCompleted || tr.CompletedAt == nil {
			t.Fatalf("got status %s completed_at %v, want completed with a time", tr.Status, tr.CompletedAt)
		}
		if got, _ := s.balance(a.ID); got != 700 {
			t.Errorf("A balance: got %d, want 700", got)
		}
		if got, _ := s.balance(b.ID); got != 300 {
			t.Errorf("B balance: got %d, want 300", got)
		}
	})

	t.Run("overdraft fails with insufficient funds", func(t *testing.T) {
		tr := s.submit(transfer.Request{FromAccountID: a.ID, ToAccountID: b.ID, Amount: 10_000, Currency: "USD"})
		if tr.Status != transfer.StatusFailed || tr.FailureCode != transfer.CodeInsufficientFunds {
			t.Fatalf("got %s/%s, want failed/insufficient_funds", tr.Status, tr.FailureCode)
		}
		if bal, res := s.balance(a.ID); bal != 700 || res != 0 {
			t.Errorf("A: got balance %d reserved %d, want 700 and 0", bal, res)
		}
	})

	t.Run("credit to a frozen account is refunded", func(t *testing.T) {
		c := s.account("USD")
		if _, err := s.store.SetAccountStatus(ctx, transfer.Actor{}, c.ID, transfer.AccountFrozen); err != nil {
			t.Fatal(err)
		}
		tr := s.submit(transfer.Request{FromAccountID: a.ID, ToAccountID: c.ID, Amount: 100, Currency: "USD"})
		if tr.Status != transfer.StatusFailed || tr.FailureCode != transfer.CodeAccountInactive {
			t.Fatalf("got %s/%s, want failed/account_inactive", tr.Status, tr.FailureCode)
		}
		if bal, res := s.balance(a.ID); bal != 700 || res != 0 {
			t.Errorf("A: got balance %d reserved %d, want 700 and 0", bal, res)
		}
		entries, err := s.store.ListEntries(ctx, a.ID, transfer.Page{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, e := range entries.Items {
			if e.TransferID == tr.ID {
				kinds = append(kinds, fmt.Sprintf("%s %d", e.Kind, e.Amount))
			}
		}
		if want := []string{"refund 100", "debit -100"}; fmt.Sprint(kinds) != fmt.Sprint(want) {
			t.Errorf("A's entries of the transfer, newest first: got %v, want %v", kinds, want)
		}
	})

	t.Run("withdrawal to the system account", func(t *testing.T) {
		tr := s.submit(transfer.Request{Kind: transfer.KindWithdrawal, FromAccountID: b.ID, Amount: 50, Currency: "USD"})
		if tr.Status != transfer.StatusCompleted {
			t.Fatalf("got %s/%s, want completed", tr.Status, tr.FailureCode)
		}
		sys, err := s.store.SystemAccount(ctx, "USD")
		if err != nil {
			t.Fatal(err)
		}
		if tr.ToAccountID != sys.ID {
			t.Errorf("withdrawal went to %s, want the system account %s", tr.ToAccountID, sys.ID)
		}
		if bal, _ := s.balance(sys.ID); bal != -1000+50 {
			t.Errorf("system account balance: got %d, want %d", bal, -1000+50)
		}
	})

	t.Run("cancel before the debit releases the hold", func(t *testing.T) {
		id := uuid.New()
		release := s.gate.Hold(id)
		defer release()
		tr, _, err := s.svc.Submit(ctx, transfer.Request{ID: id, FromAccountID: a.ID, ToAccountID: b.ID, Amount: 10, Currency: "USD"})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			got, err := s.svc.Cancel(ctx, tr.ID, "changed my mind")
			if err == nil && got.Status != transfer.StatusCancelled {
				err = fmt.Errorf("cancel returned status %s", got.Status)
			}
			done <- err
		}()
		// The cancel is accepted while the reserve is held; then the reserve goes through and the
		// saga releases the hold instead of debiting.
		sagatest.WaitCancelRequested(ctx, t, s.temporal, tr.ID)
		release()
		if err := <-done; err != nil {
			t.Fatalf("cancel: %v", err)
		}
		got := s.wait(tr.ID)
		if got.Status != transfer.StatusCancelled || got.FailureMessage != "changed my mind" {
			t.Errorf("got %s %q, want cancelled with the reason", got.Status, got.FailureMessage)
		}
		if bal, res := s.balance(a.ID); bal != 700 || res != 0 {
			t.Errorf("A: got balance %d reserved %d, want 700 and 0", bal, res)
		}
		// Cancelling again returns the cancelled transfer.
		if again, err := s.svc.Cancel(ctx, tr.ID, ""); err != nil || again.Status != transfer.StatusCancelled {
			t.Errorf("second cancel: got %s, %v; want cancelled, nil", again.Status, err)
		}
	})

	t.Run("cancel after completion is refused", func(t *testing.T) {
		tr := s.submit(transfer.Request{FromAccountID: a.ID, ToAccountID: b.ID, Amount: 1, Currency: "USD"})
		_, err := s.svc.Cancel(ctx, tr.ID, "")
		if !transfer.IsCode(err, transfer.CodeNotCancellable) {
			t.Errorf("got %v, want not_cancellable", err)
		}
	})

	s.audit()
}

func TestDuplicateStarts(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	a := s.account("EUR")
	b := s.account("EUR")
	s.deposit(a, 1000)

	t.Run("sequential", func(t *testing.T) {
		req := transfer.Request{ID: uuid.New(), FromAccountID: a.ID, ToAccountID: b.ID, Amount: 100, Currency: "EUR", Description: "rent"}
		first, created, err := s.svc.Submit(ctx, req)
		if err != nil || !created {
			t.Fatalf("first submit: created %v, err %v", created, err)
		}
		s.wait(first.ID)
		for i := range 3 {
			again, created, err := s.svc.Submit(ctx, req)
			if err != nil || created || again.ID != req.ID || again.Status != transfer.StatusCompleted {
				t.Fatalf("repeat %d: got %s created %v status %s err %v; want the completed transfer, not created", i, again.ID, created, again.Status, err)
			}
		}
		changed := req
		changed.Amount = 101
		if _, _, err := s.svc.Submit(ctx, changed); !transfer.IsCode(err, transfer.CodeIdempotencyConflict) {
			t.Errorf("same id, other amount: got %v, want idempotency_conflict", err)
		}
		if got, _ := s.balance(b.ID); got != 100 {
			t.Errorf("B balance: got %d, want 100 (moved once)", got)
		}
	})

	t.Run("20 concurrent", func(t *testing.T) {
		req := transfer.Request{ID: uuid.New(), FromAccountID: a.ID, ToAccountID: b.ID, Amount: 200, Currency: "EUR"}
		var wg sync.WaitGroup
		results := make([]transfer.Transfer, 20)
		createdFlags := make([]bool, 20)
		errs := make([]error, 20)
		for i := range 20 {
			wg.Go(func() { results[i], createdFlags[i], errs[i] = s.svc.Submit(ctx, req) })
		}
		wg.Wait()
		created := 0
		for i := range 20 {
			if errs[i] != nil {
				t.Fatalf("submit %d: %v", i, errs[i])
			}
			if results[i].ID != req.ID {
				t.Errorf("submit %d: got id %s, want %s", i, results[i].ID, req.ID)
			}
			if createdFlags[i] {
				created++
			}
		}
		if created != 1 {
			t.Errorf("created: got %d of 20, want exactly 1", created)
		}
		if got := s.wait(req.ID); got.Status != transfer.StatusCompleted {
			t.Errorf("status: got %s, want completed", got.Status)
		}
		if got, _ := s.balance(b.ID); got != 300 {
			t.Errorf("B balance: got %d, want 300 (100 + 200 once)", got)
		}
		if runs := s.listWorkflows(fmt.Sprintf("WorkflowId = '%s'", req.ID), 1); len(runs) != 1 {
			t.Errorf("workflow runs for the id: got %d, want 1", len(runs))
		}
	})
	s.audit()
}

func TestReconcileStartsLostWorkflows(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	a := s.account("USD")
	b := s.account("USD")
	s.deposit(a, 500)
	// A crash between recording a transfer and starting its workflow leaves a row without a workflow.
	tr, _, err := s.store.CreateTransfer(ctx, transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer,
		FromAccountID: a.ID, ToAccountID: b.ID, Amount: 50, Currency: "USD"})
	if err != nil {
		t.Fatal(err)
	}
	if running, err := s.svc.WorkflowRunning(ctx, tr.ID.String()); err != nil || running {
		t.Fatalf("before reconcile: running %v, err %v; want no workflow", running, err)
	}
	r, err := s.svc.Reconcile(ctx, 0)
	if err != nil || r.Repaired != 1 {
		t.Fatalf("reconcile: got %+v, %v; want 1 repaired, nil", r, err)
	}
	if got := s.wait(tr.ID); got.Status != transfer.StatusCompleted {
		t.Errorf("got %s, want completed", got.Status)
	}
	if r, err := s.svc.Reconcile(ctx, 0); err != nil || r.Repaired != 0 {
		t.Errorf("second reconcile: got %+v, %v; want 0 repaired, nil", r, err)
	}
	s.audit()
}

// TestSearchAttributesAndQuery checks the status query and the visibility queries of the README and
// the runbook, on the dev server and on the PostgreSQL cluster's SQL visibility.
func TestSearchAttributesAndQuery(t *testing.T) { forEachBackend(t, testSearchAttributesAndQuery) }

func testSearchAttributesAndQuery(t *testing.T, s *stack) {
	ctx := context.Background()
	a := s.account("GBP")
	b := s.account("GBP")
	s.deposit(a, 100)
	tr := s.submit(transfer.Request{FromAccountID: a.ID, ToAccountID: b.ID, Amount: 42, Currency: "GBP"})

	var state workflows.State
	v, err := s.temporal.QueryWorkflow(ctx, tr.ID.String(), "", workflows.QueryStatus)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if err := v.Get(&state); err != nil || state.Status != transfer.StatusCompleted {
		t.Errorf("status query: got %+v, %v; want completed", state, err)
	}

	query := fmt.Sprintf("TransferStatus = 'completed' AND FromAccountId = '%s' AND ToAccountId = '%s' AND Currency = 'GBP' AND AmountMinor = 42", a.ID, b.ID)
	runs := s.listWorkflows(query, 1)
	if len(runs) != 1 || runs[0].GetExecution().GetWorkflowId() != tr.ID.String() {
		t.Errorf("list %q: got %d executions, want the transfer's one", query, len(runs))
	}

	// The README's queries, each on transfers made to match it and others made not to.
	usd, usd2 := s.account("USD"), s.account("USD")
	bigDeposit := s.deposit(usd, 2_000_000)
	big := s.submit(transfer.Request{FromAccountID: usd.ID, ToAccountID: usd2.ID, Amount: 1_500_000, Currency: "USD"})
	small := s.submit(transfer.Request{FromAccountID: usd.ID, ToAccountID: usd2.ID, Amount: 10, Currency: "USD"})
	failedUSD := s.submit(transfer.Request{FromAccountID: usd2.ID, ToAccountID: usd.ID, Amount: 900_000_000, Currency: "USD"})
	failedGBP := s.submit(transfer.Request{FromAccountID: b.ID, ToAccountID: a.ID, Amount: 1_000, Currency: "GBP"})
	if failedUSD.Status != transfer.StatusFailed || failedGBP.Status != transfer.StatusFailed {
		t.Fatalf("overdrafts: got %s and %s, want failed", failedUSD.Status, failedGBP.Status)
	}
	// A workflow an operator terminated while its transfer was pending (the runbook's query).
	terminated, _, _ := s.strand(t, transfer.StatusPending)
	if err := s.temporal.TerminateWorkflow(ctx, terminated.ID.String(), "", "operator pressed Terminate"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		query string
		want  []uuid.UUID
	}{
		{"TransferStatus = 'reserved'", nil},
		{fmt.Sprintf("FromAccountId = '%s'", usd.ID), []uuid.UUID{big.ID, small.ID}},
		{"TransferStatus = 'failed' AND Currency = 'USD'", []uuid.UUID{failedUSD.ID}},
		// The terminated transfer moved 250, under the line; the failed overdraft counts.
		{"AmountMinor > 1000000", []uuid.UUID{bigDeposit.ID, big.ID, failedUSD.ID}},
		{"ExecutionStatus = 'Terminated' AND TransferStatus IN ('pending', 'reserved', 'debited')", []uuid.UUID{terminated.ID}},
	} {
		runs := s.listWorkflows(c.query, len(c.want))
		var got []string
		for _, r := range runs {
			got = append(got, r.GetExecution().GetWorkflowId())
		}
		var want []string
		for _, id := range c.want {
			want = append(want, id.String())
		}
		sort.Strings(got)
		sort.Strings(want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("list %q: got %v, want %v", c.query, got, want)
		}
	}
}
