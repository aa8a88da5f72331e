package ledger_test

import (
	"context"
	"testing"

	"github.com/transferd/transferd/transfer"
)

func TestTransferInOneTransaction(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	a := newAccount(t, s, "USD")
	b := newAccount(t, s, "USD")
	fund(t, s, a, 100)

	id := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 60, "USD")
	if err := s.TransferInOneTransaction(ctx, id); err != nil {
		t.Fatalf("got %v, want the transfer done", err)
	}
	tr, _ := s.Transfer(ctx, id)
	gotA, _ := s.Account(ctx, a.ID)
	gotB, _ := s.Account(ctx, b.ID)
	if tr.Status != transfer.StatusCompleted || gotA.Balance != 40 || gotA.Reserved != 0 || gotB.Balance != 60 {
		t.Errorf("got %s, A %d (reserved %d), B %d; want completed, 40 (0), 60", tr.Status, gotA.Balance, gotA.Reserved, gotB.Balance)
	}

	// Insufficient funds commits nothing: the transfer stays pending with no hold or entry.
	over := createTransfer(t, s, transfer.KindTransfer, a.ID, b.ID, 41, "USD")
	if err := s.TransferInOneTransaction(ctx, over); !transfer.IsCode(err, transfer.CodeInsufficientFunds) {
		t.Fatalf("got %v, want insufficient_funds", err)
	}
	tr, _ = s.Transfer(ctx, over)
	gotA, _ = s.Account(ctx, a.ID)
	if tr.Status != transfer.StatusPending || gotA.Balance != 40 || gotA.Reserved != 0 {
		t.Errorf("after a refused one: got %s, A %d (reserved %d); want pending, 40 (0)", tr.Status, gotA.Balance, gotA.Reserved)
	}
	if err := s.Release(ctx, over, transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeInsufficientFunds}); err != nil {
		t.Fatal(err)
	}

	// A credit refused after the reserve and the debit ran undoes both: nothing of the transfer stays.
	frozen := newAccount(t, s, "USD")
	setStatus(t, s, frozen.ID, transfer.AccountFrozen)
	late := createTransfer(t, s, transfer.KindTransfer, a.ID, frozen.ID, 10, "USD")
	if err := s.TransferInOneTransaction(ctx, late); !transfer.IsCode(err, transfer.CodeAccountInactive) {
		t.Fatalf("to a frozen account: got %v, want account_inactive", err)
	}
	tr, _ = s.Transfer(ctx, late)
	gotA, _ = s.Account(ctx, a.ID)
	entries, err := s.ListEntries(ctx, a.ID, transfer.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Status != transfer.StatusPending || gotA.Balance != 40 || gotA.Reserved != 0 || len(entries.Items) != 2 {
		t.Errorf("after a refused credit: got %s, A %d (reserved %d), %d entries on A; want pending, 40 (0), 2",
			tr.Status, gotA.Balance, gotA.Reserved, len(entries.Items))
	}
	if err := s.Release(ctx, late, transfer.Outcome{Status: transfer.StatusFailed, Code: transfer.CodeAccountInactive}); err != nil {
		t.Fatal(err)
	}
	mustAudit(t, s)
}
