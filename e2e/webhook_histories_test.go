package e2e

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/webhooks"
	"github.com/transferd/transferd/worker"
)

var recordWebhookHistories = flag.Bool("record-webhook-histories", false,
	"write the histories of the webhook delivery paths to webhooks/testdata for the replay test")

// scriptedReceiver is a webhook receiver that answers a delivery's attempts in turn as its script
// says: "500", "hang" (no answer before the client's timeout) or "204"; past the script's end its
// last answer repeats.
type scriptedReceiver struct {
	srv    *httptest.Server
	script []string
	mu     sync.Mutex
	n      int
}

func newScriptedReceiver(t *testing.T, script ...string) *scriptedReceiver {
	r := &scriptedReceiver{script: script}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *scriptedReceiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	answer := r.script[min(r.n, len(r.script)-1)]
	r.n++
	r.mu.Unlock()
	switch answer {
	case "500":
		http.Error(w, "not now", http.StatusInternalServerError)
	case "hang":
		// Past recordClientTimeout, but never past the end of the request, so that Close does not
		// wait for it.
		select {
		case <-time.After(recordClientTimeout + 500*time.Millisecond):
		case <-req.Context().Done():
		}
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// arrivals is how many requests came.
func (r *scriptedReceiver) arrivals() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// recordClientTimeout bounds one POST of the recorder's deliveries, and is every path's
// Policy.AttemptTimeout.
const recordClientTimeout = time.Second

// deliveryPath is one recorded path of the delivery workflow: the policy it runs with, the
// receiver's script, what happens while it runs, and the outcome and shape its history must have.
type deliveryPath struct {
	policy webhooks.Policy
	script []string
	// during runs while the delivery runs, with the endpoint's owner and id.
	during func(t *testing.T, owner, endpointID uuid.UUID)
	// wantDelivered, wantAttempts (0: any) and wantReason (a prefix) are the workflow's result.
	wantDelivered bool
	wantAttempts  int
	wantReason    string
	// wantTimers is how many timers the history starts; -1: one fewer than the attempts.
	wantTimers int
}

// TestRecordWebhookHistories runs the delivery workflow's paths on a real stack (the ledger on
// PostgreSQL, Temporal in-process, the webhook worker and the dispatcher) against a local receiver,
// with policies of seconds, and writes their event histories as JSON to webhooks/testdata, where
// the webhooks package's replay test replays them against the current workflow code. Run it only
// when a deliberate, compatible change to the workflow needs new histories:
//
//	go test ./e2e -run TestRecordWebhookHistories -record-webhook-histories
func TestRecordWebhookHistories(t *testing.T) {
	if !*recordWebhookHistories {
		t.Skip("pass -record-webhook-histories to write new histories")
	}
	s := newStack(t)
	ctx := context.Background()
	acts := &webhooks.Activities{Store: s.store, Render: server.EventJSON,
		Client: webhooks.NewClient(webhooks.ClientOptions{AllowPrivate: true, Timeout: recordClientTimeout})}
	ww := worker.NewWebhooks(s.temporal, acts, 8, time.Second)
	if err := ww.Start(); err != nil {
		t.Fatalf("start the webhooks worker: %v", err)
	}
	t.Cleanup(ww.Stop)

	policy := func(firstBackoff, maxBackoff, giveUpAfter, disableAfter time.Duration) webhooks.Policy {
		return webhooks.Policy{AttemptTimeout: recordClientTimeout, FirstBackoff: firstBackoff, MaxBackoff: maxBackoff,
			GiveUpAfter: giveUpAfter, DisableAfter: disableAfter}
	}
	paths := map[string]deliveryPath{
		// A 2xx at the first attempt.
		"delivered": {policy: policy(time.Second, time.Second, time.Minute, time.Hour), script: []string{"204"},
			wantDelivered: true, wantAttempts: 1, wantTimers: 0},
		// A 500, then no answer in time, then a 2xx: attempts at about 0, 2 and 6 s, each after a
		// timer.
		"retried": {policy: policy(2*time.Second, 4*time.Second, time.Minute, time.Hour), script: []string{"500", "hang", "204"},
			wantDelivered: true, wantAttempts: 3, wantTimers: 2},
		// An attempt that outlasts the wait after it (as a timeout does under DefaultPolicy, whose
		// wait equals the attempt's timeout): the wait counts from the attempt's end, so a timer
		// still comes between the two (before, the next attempt came at once, with none).
		"retried_overrun": {policy: policy(200*time.Millisecond, time.Second, time.Minute, time.Hour), script: []string{"hang", "204"},
			wantDelivered: true, wantAttempts: 2, wantTimers: 1},
		// Never a 2xx: attempts 0.5 s, then 1 s apart (later by the dev server's timer latency),
		// until the 3 s deadline; the last one, told there is no next, ends the delivery failed.
		"failed": {policy: policy(500*time.Millisecond, time.Second, 3*time.Second, time.Hour), script: []string{"500"},
			wantReason: "no 2xx answer within 3s", wantTimers: -1},
		// The endpoint is deleted after the first attempt: the second ends the delivery unsent.
		"skipped": {policy: policy(2*time.Second, 2*time.Second, time.Minute, time.Hour), script: []string{"500"},
			during: func(t *testing.T, owner, endpointID uuid.UUID) {
				waitAttempts(t, s, endpointID, 1)
				if err := s.store.DeleteEndpoint(ctx, transfer.Actor{UserID: owner}, owner, endpointID); err != nil {
					t.Fatal(err)
				}
			},
			wantAttempts: 2, wantReason: "the endpoint was deleted", wantTimers: 1},
		// No 2xx for DisableAfter (1.5 s) well before GiveUpAfter: the third attempt, at 2 s,
		// disables the endpoint and ends the delivery.
		"endpoint_disabled": {policy: policy(time.Second, time.Second, time.Minute, 1500*time.Millisecond), script: []string{"500"},
			wantAttempts: 3, wantReason: "the endpoint was disabled", wantTimers: 2},
	}
	for _, name := range []string{"delivered", "retried", "retried_overrun", "failed", "skipped", "endpoint_disabled"} {
		p := paths[name]
		rcv := newScriptedReceiver(t, p.script...)
		a := s.account("USD")
		ep, _, err := s.store.CreateEndpoint(ctx, transfer.NewEndpoint{ID: uuid.New(), UserID: a.OwnerID, URL: rcv.srv.URL + "/hooks",
			EventTypes: []string{string(transfer.EventTransferCompleted)}, Secret: bytes.Repeat([]byte{7}, 32),
			Actor: transfer.Actor{UserID: a.OwnerID}})
		if err != nil {
			t.Fatalf("%s: create endpoint: %v", name, err)
		}
		s.deposit(a, 100)
		// The deposit's completion is the one delivery not started: the earlier paths' were.
		ds, err := s.store.UnstartedDeliveries(ctx, 10)
		if err != nil || len(ds) != 1 || ds[0].EndpointID != ep.ID {
			t.Fatalf("%s: unstarted deliveries %+v, %v; want the deposit's one", name, ds, err)
		}
		d := &webhooks.Dispatcher{Store: s.store, Temporal: s.temporal, Policy: p.policy, Log: slog.New(slog.DiscardHandler)}
		if n, err := d.DispatchOnce(ctx); err != nil || n != 1 {
			t.Fatalf("%s: dispatch: %d, %v", name, n, err)
		}
		if p.during != nil {
			p.during(t, a.OwnerID, ep.ID)
		}
		id := webhooks.WorkflowID(ds[0].ID)
		var res webhooks.DeliveryResult
		if err := s.temporal.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
			t.Fatalf("%s: the delivery workflow: %v", name, err)
		}
		if res.Delivered != p.wantDelivered || (p.wantAttempts > 0 && res.Attempts != p.wantAttempts) ||
			!strings.HasPrefix(res.Reason, p.wantReason) {
			t.Fatalf("%s: result %+v, want delivered %v, %d attempts, reason %q", name, res, p.wantDelivered, p.wantAttempts, p.wantReason)
		}
		if name == "skipped" && rcv.arrivals() != 1 {
			t.Fatalf("skipped: the receiver got %d requests, want 1", rcv.arrivals())
		}
		if name == "endpoint_disabled" {
			if e, err := s.store.Endpoint(ctx, a.OwnerID, ep.ID); err != nil || e.Status != transfer.EndpointDisabled {
				t.Fatalf("endpoint_disabled: endpoint %+v, %v; want it disabled", e, err)
			}
		}
		h := workflowHistory(t, s.temporal, id)
		activities, timers := countEvents(h, enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED), countEvents(h, enumspb.EVENT_TYPE_TIMER_STARTED)
		wantTimers := p.wantTimers
		if wantTimers < 0 {
			wantTimers = res.Attempts - 1
		}
		last := h.Events[len(h.Events)-1].GetEventType()
		if activities != res.Attempts || timers != wantTimers || last != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED {
			t.Fatalf("%s: history of %d activities, %d timers, ending %s; want %d, %d, completed",
				name, activities, timers, last, res.Attempts, wantTimers)
		}
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("..", "webhooks", "testdata", "history_delivery_"+name+".json")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d events; %d attempts, %d timers; %+v)", path, len(h.Events), activities, timers, res)
	}
}

// waitAttempts polls the endpoint's delivery log until it has n attempts, for up to 20 s.
func waitAttempts(t *testing.T, s *stack, endpointID uuid.UUID, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		l, err := s.store.Attempts(context.Background(), endpointID, transfer.Page{Limit: 100})
		if err == nil && len(l.Items) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoint %s: %d attempts after 20s, want %d (err %v)", endpointID, len(l.Items), n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// workflowHistory reads a workflow's whole event history.
func workflowHistory(t *testing.T, c client.Client, workflowID string) *historypb.History {
	t.Helper()
	var h historypb.History
	it := c.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", workflowID, err)
		}
		h.Events = append(h.Events, e)
	}
	return &h
}

// countEvents counts a history's events of one type.
func countEvents(h *historypb.History, typ enumspb.EventType) int {
	n := 0
	for _, e := range h.Events {
		if e.GetEventType() == typ {
			n++
		}
	}
	return n
}
