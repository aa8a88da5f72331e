package e2e

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/internal/sagatest"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/worker"
)

// waitStatus polls the transfer's row until it has the status, for up to 20 s.
func waitStatus(t *testing.T, s *stack, id uuid.UUID, want transfer.Status) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		tr, err := s.store.Transfer(context.Background(), id)
		if err == nil && tr.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfer %s: %s after 20s, want %s (err %v)", id, tr.Status, want, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holdFor submits a manual transfer from a to b and waits for its hold.
func (s *stack) holdFor(t *testing.T, a, b transfer.Account, amount int64, mod func(*transfer.Request)) uuid.UUID {
	t.Helper()
	r := transfer.Request{ID: uuid.New(), FromAccountID: a.ID, ToAccountID: b.ID, Amount: transfer.Amount(amount), Currency: a.Currency,
		CaptureMethod: transfer.CaptureManual}
	if mod != nil {
		mod(&r)
	}
	if _, _, err := s.svc.Submit(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, r.ID, transfer.StatusReserved)
	return r.ID
}

var (
	recordHistories = flag.Bool("record-histories", false, "write the histories of the main saga paths to workflows/testdata for the replay test")
	recordOnly      = flag.String("record-only", "", "with -record-histories, record only these paths, comma-separated (\"fallback\" is recorded only so: it takes over 5 minutes)")
)

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
	if _, err := s.store.SetAccountStatus(ctx, transfer.Actor{}, frozen.ID, transfer.AccountFrozen); err != nil {
		t.Fatal(err)
	}
	// funded makes sure a can pay for a path recorded on its own (the success path funds it).
	funded := func() {
		if bal, _ := s.balance(a.ID); bal < 100 {
			s.deposit(a, 1000)
		}
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
		// The source is frozen between the reserve and the debit: the debit is refused and the
		// release ends the transfer failed.
		"debit_refused": func() uuid.UUID {
			c := s.account("USD")
			s.deposit(c, 50)
			id := uuid.New()
			release := s.gate.HoldStep(id, transfer.StepDebit)
			if _, _, err := s.svc.Submit(ctx, transfer.Request{ID: id, FromAccountID: c.ID, ToAccountID: b.ID, Amount: 20, Currency: "USD"}); err != nil {
				t.Fatal(err)
			}
			waitStatus(t, s, id, transfer.StatusReserved)
			if _, err := s.store.SetAccountStatus(ctx, transfer.Actor{}, c.ID, transfer.AccountFrozen); err != nil {
				t.Fatal(err)
			}
			release()
			return s.wait(id).ID
		},
		// The workflow is cancelled (the Web UI's Request Cancellation) while its reserve runs.
		"workflow_cancel": func() uuid.UUID {
			id := uuid.New()
			release := s.gate.Hold(id)
			if _, _, err := s.svc.Submit(ctx, transfer.Request{ID: id, FromAccountID: a.ID, ToAccountID: b.ID, Amount: 4, Currency: "USD"}); err != nil {
				t.Fatal(err)
			}
			if err := s.temporal.CancelWorkflow(ctx, id.String(), ""); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Second) // The workflow task's heartbeat brings the cancellation in.
			release()
			return s.wait(id).ID
		},
		// A lost workflow task: the ledger reserved and debited, the history has none of it, and a
		// workflow cancellation is there before the first task. The release answers debited and
		// the saga completes.
		"ledger_ahead_cancel": func() uuid.UUID {
			tr, _, _ := s.strand(t, transfer.StatusDebited)
			if err := s.temporal.CancelWorkflow(ctx, tr.ID.String(), ""); err != nil {
				t.Fatal(err)
			}
			w := worker.New(s.temporal, &activities.Activities{Store: s.store}, worker.Options{TaskQueue: "nobody-polls"})
			if err := w.Start(); err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			return s.wait(tr.ID).ID
		},
		// Holds and scheduled transfers (issue 13).
		"hold_capture": func() uuid.UUID {
			funded()
			id := s.holdFor(t, a, b, 9, nil)
			if _, err := s.svc.Capture(ctx, id, 0); err != nil {
				t.Fatal(err)
			}
			return s.wait(id).ID
		},
		"hold_partial_capture": func() uuid.UUID {
			funded()
			id := s.holdFor(t, a, b, 9, nil)
			if _, err := s.svc.Capture(ctx, id, 4); err != nil {
				t.Fatal(err)
			}
			return s.wait(id).ID
		},
		"hold_cancel": func() uuid.UUID {
			funded()
			id := s.holdFor(t, a, b, 9, nil)
			if _, err := s.svc.Cancel(ctx, id, "recorded cancel of a hold"); err != nil {
				t.Fatal(err)
			}
			return s.wait(id).ID
		},
		"hold_expiry": func() uuid.UUID {
			funded()
			at := time.Now().Add(2 * time.Second)
			return s.wait(s.holdFor(t, a, b, 9, func(r *transfer.Request) { r.HoldExpiresAt = &at })).ID
		},
		"scheduled_run": func() uuid.UUID {
			funded()
			at := time.Now().Add(2 * time.Second)
			tr, _, err := s.svc.Submit(ctx, transfer.Request{ID: uuid.New(), FromAccountID: a.ID, ToAccountID: b.ID, Amount: 6, Currency: "USD", ScheduledFor: &at})
			if err != nil {
				t.Fatal(err)
			}
			return s.wait(tr.ID).ID
		},
		"scheduled_cancel": func() uuid.UUID {
			funded()
			at := time.Now().Add(time.Hour)
			tr, _, err := s.svc.Submit(ctx, transfer.Request{ID: uuid.New(), FromAccountID: a.ID, ToAccountID: b.ID, Amount: 6, Currency: "USD", ScheduledFor: &at})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.svc.Cancel(ctx, tr.ID, "recorded cancel of a scheduled transfer"); err != nil {
				t.Fatal(err)
			}
			return s.wait(tr.ID).ID
		},
	}
	// A reserve that keeps failing past its 5-minute local budget goes on as a regular activity:
	// each local attempt is held past its 10 s timeout, and the gate opens once the regular
	// activity runs. The workflow task timeout is the default here, as in production, so the
	// history holds the SDK's heartbeats at their usual rate.
	paths["fallback"] = func() uuid.UUID {
		svc := service.New(s.store, s.temporal, taskQueue, slog.New(slog.DiscardHandler))
		id := uuid.New()
		release := s.gate.Hold(id)
		if _, _, err := svc.Submit(ctx, transfer.Request{ID: id, FromAccountID: a.ID, ToAccountID: b.ID, Amount: 2, Currency: "USD"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5*time.Minute + 20*time.Second)
		release()
		return s.wait(id).ID
	}
	names := []string{"success", "insufficient_funds", "refund", "cancel", "debit_refused", "workflow_cancel", "ledger_ahead_cancel",
		"hold_capture", "hold_partial_capture", "hold_cancel", "hold_expiry", "scheduled_run", "scheduled_cancel"}
	if *recordOnly != "" {
		names = strings.Split(*recordOnly, ",")
	}
	for _, name := range names {
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
