package worker_test

import (
	"path/filepath"
	"testing"

	sdkworker "go.temporal.io/sdk/worker"

	"github.com/transferd/transferd/worker"
)

// TestReplayRecordedHistories replays the recorded histories of the main saga paths against the
// current workflow code: a change that would break transfers in flight fails here. Histories of
// every earlier version are kept, since transfers started under it may still be in flight. New histories
// come from `go test ./e2e -run TestRecordHistories -record-histories`.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "workflows", "testdata", "history_*.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The current code's histories (the ledger decides every step), and those of the earlier
	// versions, which transfers in flight may still have: history_v0_* (regular activities),
	// history_v1_* (the reserve regular, the steps after it local) and history_v2_* (every step
	// local, each taken to have done as asked).
	want := map[string]bool{}
	for _, path := range []string{"success", "insufficient_funds", "refund", "cancel"} {
		want["history_"+path+".json"] = false
		want["history_v0_"+path+".json"] = false
		want["history_v1_"+path+".json"] = false
		want["history_v2_"+path+".json"] = false
	}
	// fallback: a reserve whose local retries ran out (5 minutes, recorded with
	// -record-only=fallback) goes on as a regular activity, refused by the ledger, then released.
	// Holds and scheduled transfers (holdsChange version 1): a capture of all of the hold, a
	// partial capture, a cancel while held, an expiry, a scheduled transfer that ran, and one
	// cancelled while scheduled.
	for _, path := range []string{"debit_refused", "workflow_cancel", "ledger_ahead_cancel", "fallback",
		"hold_capture", "hold_partial_capture", "hold_cancel", "hold_expiry", "scheduled_run", "scheduled_cancel"} {
		want["history_"+path+".json"] = false
	}
	// Shapes the earlier versions produced that no recorder reproduces now: a reserve whose local
	// retries ran out before the fallback to a regular activity existed (compensated as a
	// failure), the release refused on a debited row that failed the workflow (the defect that
	// made the ledger decide), and a naive (bench) run, which records no version.
	for _, name := range []string{"history_v2_reserve_retries_ran_out.json", "history_v2_release_refused.json", "history_v0_naive_success.json"} {
		want[name] = false
	}
	for _, f := range files {
		want[filepath.Base(f)] = true
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := sdkworker.NewWorkflowReplayer()
			worker.RegisterWorkflows(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Errorf("replay %s: %v", f, err)
			}
		})
	}
	for name, found := range want {
		if !found {
			t.Errorf("recorded history %s is missing", name)
		}
	}
}
