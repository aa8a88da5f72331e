//go:build linux

package chaos_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.temporal.io/api/workflowservice/v1"
)

// webhookEnv are the settings of every process of the stack for webhooks: the receiver is on
// 127.0.0.1 over http, and deliveries are tried in seconds rather than days. A previous release's
// binaries ignore them.
var webhookEnv = []string{"TRANSFERD_ALLOW_PRIVATE_WEBHOOKS=true", "TRANSFERD_WEBHOOK_ATTEMPT_TIMEOUT=2s",
	"TRANSFERD_WEBHOOK_FIRST_BACKOFF=500ms", "TRANSFERD_WEBHOOK_MAX_BACKOFF=5s", "TRANSFERD_WEBHOOK_GIVE_UP_AFTER=30m",
	"TRANSFERD_WEBHOOK_DISABLE_AFTER=24h", "TRANSFERD_WEBHOOK_RESTART_EVERY=5s", "TRANSFERD_WEBHOOK_STALL_AFTER=30s"}

// hookReceiver is the load's webhook receiver: a client's server that verifies every delivery with
// the Standard Webhooks library (not transferd's code), answers some first attempts 500 or not in
// time, goes down when told (connections refused), and records the events it accepted.
type hookReceiver struct {
	ln       *switchListener
	srv      *http.Server
	url      string
	mu       sync.Mutex
	verifier *standardwebhooks.Webhook
	r        *rand.Rand
	accepted map[string]bool
	// arrivals counts the requests; duplicates the verified ones for an event accepted before;
	// badSigs those that failed verification; failed and hung the ones answered 500 or too late.
	arrivals, duplicates, badSigs, failed, hung int
}

// switchListener refuses connections while it is down: the receiver's host is there, its server
// is not.
type switchListener struct {
	net.Listener
	down atomic.Bool
}

func (l *switchListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || !l.down.Load() {
			return c, err
		}
		c.Close()
	}
}

func startReceiver(t *testing.T, seed uint64) *hookReceiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{ln: &switchListener{Listener: ln}, url: "http://" + ln.Addr().String() + "/hooks",
		r: rand.New(rand.NewPCG(seed, 1<<34)), accepted: map[string]bool{}}
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serve), ReadHeaderTimeout: 5 * time.Second}
	go h.srv.Serve(h.ln)
	t.Cleanup(func() { h.srv.Close() })
	return h
}

func (h *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	id := req.Header.Get("webhook-id")
	h.mu.Lock()
	h.arrivals++
	if h.verifier == nil || h.verifier.Verify(body, req.Header) != nil {
		h.badSigs++
		h.mu.Unlock()
		http.Error(w, "bad signature", http.StatusBadRequest)
		return
	}
	x := h.r.IntN(100)
	switch {
	case x < 15:
		h.failed++
		h.mu.Unlock()
		http.Error(w, "try later", http.StatusInternalServerError)
		return
	case x < 20:
		h.hung++
		h.mu.Unlock()
		time.Sleep(3 * time.Second) // past the 2 s attempt timeout
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if h.accepted[id] {
		h.duplicates++
	}
	h.accepted[id] = true
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// subscribe creates the admin's endpoint at the receiver, and trusts its secret: for every event on
// the dev server, and for the transfers' ends only on the Temporal cluster, where a delivery
// workflow per event, on two cores already running four Temporal services at their limit, starved
// the load enough that the faults found no debit to kill the workers after.
func (s *stack) subscribe(ctx context.Context, w *world, h *hookReceiver, kind temporalKind) string {
	types := []string{"*"}
	if kind == clusterPG {
		types = []string{"transfer.completed", "transfer.failed", "transfer.cancelled"}
	}
	var ep struct{ ID, Secret string }
	if err := s.admin.must(ctx, http.StatusCreated, "POST", "/v1/webhook-endpoints", w.admin,
		map[string]any{"url": h.url, "event_types": types}, &ep); err != nil {
		s.t.Fatalf("webhook endpoint: %v", err)
	}
	v, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		s.t.Fatalf("the library refuses the secret: %v", err)
	}
	h.mu.Lock()
	h.verifier = v
	h.mu.Unlock()
	return ep.ID
}

// goDown takes the receiver down for d.
func (h *hookReceiver) goDown(d time.Duration) {
	h.ln.down.Store(true)
	time.Sleep(d)
	h.ln.down.Store(false)
}

// webhookSummary is what the receiver got against what the ledger recorded.
type webhookSummary struct {
	events, enqueued, received, duplicates, lost, invented, unqueued, failedDeliveries, badSigs, pending int
	failed, hung, arrivals                                                                               int
	// terminated counts the delivery workflows the operator terminated, restarted those the
	// dispatcher then started a new run for.
	terminated, restarted int
	downFor               time.Duration
}

// checkWebhooks waits for the endpoint's deliveries to end, then checks that the receiver accepted
// exactly the events the ledger enqueued for it, each verified, and that every event recorded once
// the endpoint existed was enqueued.
func (s *stack) checkWebhooks(ctx context.Context, h *hookReceiver, endpointID string, wait time.Duration) webhookSummary {
	t := s.t
	var sum webhookSummary
	deadline := time.Now().Add(wait)
	for {
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'`,
			endpointID).Scan(&sum.pending); err != nil {
			t.Fatalf("pending deliveries: %v", err)
		}
		if sum.pending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	q := func(query string, args ...any) map[string]bool {
		rows, err := s.db.QueryContext(ctx, query, args...)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		defer rows.Close()
		out := map[string]bool{}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out[id] = true
		}
		return out
	}
	enqueued := q(`SELECT DISTINCT event_id::text FROM webhook_deliveries WHERE endpoint_id = $1`, endpointID)
	sum.events = len(q(`SELECT id::text FROM events`))
	unqueued := q(`SELECT e.id::text FROM events e, webhook_endpoints w WHERE w.id = $1 AND e.created_at > w.created_at + interval '1 second'
		AND (w.event_types @> ARRAY['*'] OR w.event_types @> ARRAY[e.type])
		AND NOT EXISTS (SELECT FROM webhook_deliveries d WHERE d.event_id = e.id AND d.endpoint_id = w.id)`, endpointID)
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'failed'`,
		endpointID).Scan(&sum.failedDeliveries); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	sum.enqueued, sum.received, sum.duplicates, sum.badSigs = len(enqueued), len(h.accepted), h.duplicates, h.badSigs
	sum.failed, sum.hung, sum.arrivals, sum.unqueued = h.failed, h.hung, h.arrivals, len(unqueued)
	for id := range enqueued {
		if !h.accepted[id] {
			sum.lost++
		}
	}
	for id := range h.accepted {
		if !enqueued[id] {
			sum.invented++
		}
	}
	switch {
	case sum.pending > 0:
		t.Errorf("webhooks: %d deliveries still pending after %v", sum.pending, wait)
	case sum.lost > 0:
		t.Errorf("webhooks: %d events enqueued for the endpoint never reached the receiver", sum.lost)
	}
	if sum.invented > 0 || sum.unqueued > 0 || sum.badSigs > 0 || sum.failedDeliveries > 0 {
		t.Errorf("webhooks: %d received but never enqueued, %d events recorded after the endpoint existed but not enqueued, %d bad signatures, %d deliveries failed",
			sum.invented, sum.unqueued, sum.badSigs, sum.failedDeliveries)
	}
	if sum.enqueued == 0 || sum.failed == 0 {
		t.Errorf("webhooks: %d enqueued, %d answered 500: the receiver was not exercised", sum.enqueued, sum.failed)
	}
	return sum
}

// terminateDeliveries is an operator terminating webhook deliveries' workflows in the Web UI while
// the load runs: every few seconds it lists the running ones and terminates one. Each must still
// arrive (the dispatcher starts a new run over a delivery left pending); it returns the runs it
// terminated, by workflow id.
func (op *operator) terminateDeliveries(ctx context.Context, r *rand.Rand, clock *loadClock) map[string]string {
	terminated := map[string]string{}
	for clock.on() {
		time.Sleep(2*sweepEvery + time.Duration(r.Int64N(int64(2*sweepEvery))))
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := op.tc.ListWorkflow(rctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: op.namespace, Query: "WorkflowType = 'WebhookDelivery' AND ExecutionStatus = 'Running'", PageSize: 100})
		if err == nil && len(resp.GetExecutions()) > 0 {
			e := resp.GetExecutions()[r.IntN(len(resp.GetExecutions()))].GetExecution()
			if op.tc.TerminateWorkflow(rctx, e.GetWorkflowId(), e.GetRunId(), "chaos: an operator terminated a delivery") == nil {
				terminated[e.GetWorkflowId()] = e.GetRunId()
			}
		}
		cancel()
	}
	return terminated
}

// restartedDeliveries counts the terminated deliveries whose workflow has a later run than the one
// terminated: those the dispatcher restarted (a delivery whose attempt in flight at the termination
// got its 2xx needs none).
func (op *operator) restartedDeliveries(ctx context.Context, terminated map[string]string) int {
	n := 0
	for id, runID := range terminated {
		d, err := op.tc.DescribeWorkflowExecution(ctx, id, "")
		if err == nil && d.GetWorkflowExecutionInfo().GetExecution().GetRunId() != runID {
			n++
		}
	}
	return n
}
