package e2e

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/transferd/transferd/internal/sagatest"
	"github.com/transferd/transferd/transfer"
)

var recordHistories = flag.Bool("record-histories", false, "write the histories of the main saga paths to workflows/testdata for the replay test")

// TestRecordHistories runs the main saga paths and writes their event histories as JSON to
// workflows/testdata, where worker's replay test replays them against the current workflow code.
// Run it only when a deliberate, compatible change to the workflow needs new histories:
//
//	go test ./e2e -run TestRecordHistories -record-histories
func TestRecordHistories(t *testing.T) {
	if !*recordHistories {
		t.Skip("pass -record-histories to write new histories")
	}
	s := newStack(t)
	ctx := context.Background()
	a := s.account("USD")
	b := s.account("USD")
	frozen := s.account("USD")
	if _, err := s.store.SetAccountStatus(ctx, frozen.ID, transfer.AccountFrozen); err != nil {
		t.Fatal(err)
	}
	paths := map[string]func() uuid.UUID{
		"success": func() uuid.UUID {
			return s.deposit(a, 1000).ID
		},
		"insufficient_funds": func() uuid.UUID {
			return s.submit(transfer.Request{FromAccountID: b.ID, ToAccountID: a.ID, Amount: 5, Currency: "USD"}).ID
		},
		"refund": func() uuid.UUID {
			return s.submit(transfer.Request{FromAccountID: a.ID, ToAccountID: frozen.ID, Amount: 7, Currency: "USD"}).ID
		},
		"cancel": func() uuid.UUID {
			id := uuid.New()
			release := s.gate.Hold(id)
			if _, _, err := s.svc.Submit(ctx, transfer.Request{ID: id, FromAccountID: a.ID, ToAccountID: b.ID, Amount: 3, Currency: "USD"}); err != nil {
				t.Fatal(err)
			}
			go func() { sagatest.WaitCancelRequested(ctx, t, s.temporal, id); release() }()
			if _, err := s.svc.Cancel(ctx, id, "recorded cancel"); err != nil {
				t.Fatal(err)
			}
			return s.wait(id).ID
		},
	}
	for _, name := range []string{"success", "insufficient_funds", "refund", "cancel"} {
		id := paths[name]()
		var h historypb.History
		it := s.temporal.GetWorkflowHistory(ctx, id.String(), "", false, 0)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			h.Events = append(h.Events, e)
		}
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("..", "workflows", "testdata", "history_"+name+".json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d events)", path, len(h.Events))
	}
}
