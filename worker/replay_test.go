package worker_test

import (
	"path/filepath"
	"testing"

	sdkworker "go.temporal.io/sdk/worker"

	"github.com/transferd/transferd/worker"
)

// TestReplayRecordedHistories replays the recorded histories of the main saga paths against the
// current workflow code: a change that would break transfers in flight fails here. New histories
// come from `go test ./e2e -run TestRecordHistories -record-histories`.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "workflows", "testdata", "history_*.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"history_success.json": false, "history_insufficient_funds.json": false,
		"history_refund.json": false, "history_cancel.json": false}
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
