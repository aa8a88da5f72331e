package webhooks_test

import (
	"path/filepath"
	"testing"

	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/transferd/transferd/webhooks"
)

// TestReplayDeliveryHistories replays the recorded histories of the delivery workflow's paths
// against the current workflow code: a change that would break deliveries in flight (which wait on
// timers for up to days) fails here. Histories of earlier versions are kept, since deliveries
// started under them may still be in flight. New histories come from the end-to-end recorder:
//
//	go test ./e2e -run TestRecordWebhookHistories -record-webhook-histories
func TestReplayDeliveryHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "history_delivery_*.json"))
	if err != nil {
		t.Fatal(err)
	}
	// delivered: a 2xx at once. retried: a 500, a timeout, a 2xx, each retry after a timer.
	// retried_overrun: an attempt that outlasted the wait after it (v1: the next came at once, with
	// no timer; now the wait follows it). failed: no 2xx until the give-up deadline, the last attempt at the deadline.
	// skipped: the endpoint deleted between attempts, the second attempt ending the delivery
	// unsent. endpoint_disabled: the attempt that disabled the endpoint ended the delivery before
	// its deadline.
	// v1_: recorded before a retry's wait counted from the end of the attempt before it (the
	// attempts then answered no retry time).
	want := map[string]bool{}
	for _, path := range []string{"delivered", "retried", "retried_overrun", "failed", "skipped", "endpoint_disabled"} {
		want["history_delivery_"+path+".json"] = false
		want["history_delivery_v1_"+path+".json"] = false
	}
	for _, f := range files {
		want[filepath.Base(f)] = true
		t.Run(filepath.Base(f), func(t *testing.T) {
			// The replayer takes workflows only; the name is the one worker.RegisterWebhooks gives.
			r := sdkworker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(webhooks.DeliveryWorkflow, workflow.RegisterOptions{Name: webhooks.DeliveryWorkflowName})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Errorf("replay %s: %v", f, err)
			}
		})
	}
	for name, found := range want {
		if !found {
			t.Errorf("recorded history %s is missing: record it with "+
				"`go test ./e2e -run TestRecordWebhookHistories -record-webhook-histories`", name)
		}
	}
}
