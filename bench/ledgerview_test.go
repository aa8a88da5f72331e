package bench

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

// TestLedgerView reads a run's transfers from the ledger: the ended ones are counted, with their
// latency from acceptance to completion, one still in flight is not, nor is an id the ledger has
// never seen; ended in run counts only those that ended before the run's length was up.
func TestLedgerView(t *testing.T) {
	if testing.Short() {
		t.Skip("uses PostgreSQL")
	}
	ctx := context.Background()
	store, err := ledger.Open(ctx, pgtest.NewDatabase(t), ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	target := &SQL{Ledger: store}
	accounts, err := target.Setup(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	var ids []uuid.UUID
	for range 3 {
		id := uuid.New()
		final, err := target.Submit(ctx, id, accounts[0], accounts[1], 5)
		if err != nil {
			t.Fatal(err)
		}
		if status, err := final(ctx); err != nil || status != "completed" {
			t.Fatalf("transfer: %s %v", status, err)
		}
		ids = append(ids, id)
	}
	// One accepted and never run: still pending.
	pending, _, err := store.CreateTransfer(ctx, transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer,
		FromAccountID: uuid.MustParse(accounts[0]), ToAccountID: uuid.MustParse(accounts[1]), Amount: 1, Currency: "USD"})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, pending.ID, uuid.New())

	v, err := LedgerView(ctx, store, Result{accepted: ids, began: began, Duration: 60})
	if err != nil {
		t.Fatal(err)
	}
	if v.Ended != 3 || v.Completed != 3 || v.InRun != 3 || v.InRunPerSec != 3.0/60 {
		t.Errorf("view: %+v, want 3 ended, completed and in the run", v)
	}
	if v.Latency.P50 <= 0 || v.Latency.Max > time.Since(began).Seconds()*1000 {
		t.Errorf("latency: %+v", v.Latency)
	}
	// A run whose length was up before they ended: none in the run.
	v, err = LedgerView(ctx, store, Result{accepted: ids, began: began.Add(-time.Hour), Duration: 1})
	if err != nil {
		t.Fatal(err)
	}
	if v.Ended != 3 || v.InRun != 0 {
		t.Errorf("view of an earlier run: %+v, want 3 ended, none in the run", v)
	}
}
