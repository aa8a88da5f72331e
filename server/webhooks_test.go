package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"golang.org/x/crypto/bcrypt"

	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/webhooks"
)

// endpointBody is a webhook endpoint as the API shows it.
type endpointBody struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	EventTypes     []string `json:"event_types"`
	Description    string   `json:"description"`
	Status         string   `json:"status"`
	DisabledReason *string  `json:"disabled_reason"`
	Secret         *string  `json:"secret"`
	Notice         string   `json:"notice"`
}

// receiver is a webhook receiver: it verifies every delivery with the Standard Webhooks library (not
// transferd's code), fails the first attempts of each event as told, and records what arrived.
type receiver struct {
	t   *testing.T
	srv *httptest.Server
	mu  sync.Mutex
	// verifiers hold the secrets it accepts.
	verifiers []*standardwebhooks.Webhook
	// failFirst answers the first attempts of each event: 500, then a hang past the timeout.
	failFirst []string
	attempts  map[string]int
	events    map[string]json.RawMessage // by webhook-id
	badSigs   int
	arrivals  int
	// lastBody and lastHeader are the last request's.
	lastBody   []byte
	lastHeader http.Header
}

func newReceiver(t *testing.T, failFirst ...string) *receiver {
	r := &receiver{t: t, failFirst: failFirst, attempts: map[string]int{}, events: map[string]json.RawMessage{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) trust(secret string) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		r.t.Fatalf("the library refuses the secret: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verifiers = append(r.verifiers, wh)
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	r.arrivals++
	r.lastBody, r.lastHeader = body, req.Header.Clone()
	n := r.attempts[id]
	r.attempts[id] = n + 1
	verified := false
	for _, v := range r.verifiers {
		if v.Verify(body, req.Header) == nil {
			verified = true
		}
	}
	if !verified {
		r.badSigs++
	}
	mode := ""
	if n < len(r.failFirst) {
		mode = r.failFirst[n]
	}
	if mode == "" && verified {
		r.events[id] = body
	}
	r.mu.Unlock()
	switch mode {
	case "500":
		http.Error(w, "not now", http.StatusInternalServerError)
	case "hang":
		time.Sleep(1500 * time.Millisecond) // past testWebhookPolicy's 1 s
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// received returns the verified events by id.
func (r *receiver) received() map[string]json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]json.RawMessage, len(r.events))
	for k, v := range r.events {
		out[k] = v
	}
	return out
}

// allEvents reads every event the token may see through the API.
func (a *api) allEvents(t *testing.T, token, query string) []json.RawMessage {
	t.Helper()
	var all []json.RawMessage
	cursor := ""
	for {
		r := a.do("GET", "/v1/events?limit=100"+query+cursor, token, nil)
		var page struct {
			Data       []json.RawMessage `json:"data"`
			NextCursor *string           `json:"next_cursor"`
		}
		if r.status != http.StatusOK {
			t.Fatalf("events: %s", r)
		}
		r.json(t, &page)
		all = append(all, page.Data...)
		if page.NextCursor == nil {
			return all
		}
		cursor = "&cursor=" + *page.NextCursor
	}
}

// TestWebhookDeliveries subscribes an admin's endpoint to every event and a user's to the end of
// their transfers, at a receiver that answers each event's first attempt 500 and its second not in
// time; runs transfers that complete, fail, are cancelled and are held then captured; and checks
// that the receivers got, deduplicated by webhook-id, exactly the events the ledger has for them,
// each verified by the Standard Webhooks library and equal to GET /v1/events/{id}, and that the
// delivery log shows the failed attempts.
func TestWebhookDeliveries(t *testing.T) {
	a := newAPI(t)
	ada, _ := a.user()
	bob, _ := a.user()
	adaUSD, bobUSD := a.account(ada, "USD"), a.account(bob, "USD")

	everything := newReceiver(t, "500", "hang")
	r := a.do("POST", "/v1/webhook-endpoints", a.admin, map[string]any{"url": everything.srv.URL + "/hooks", "event_types": []string{"*"}})
	var adminEndpoint endpointBody
	r.json(t, &adminEndpoint)
	if r.status != http.StatusCreated || adminEndpoint.Secret == nil || !strings.HasPrefix(*adminEndpoint.Secret, "whsec_") || adminEndpoint.Status != "enabled" {
		t.Fatalf("create endpoint: got %s", r)
	}
	everything.trust(*adminEndpoint.Secret)
	payee := newReceiver(t, "500")
	r = a.do("POST", "/v1/webhook-endpoints", bob, map[string]any{"url": payee.srv.URL, "event_types": []string{"transfer.completed", "transfer.failed"}})
	var bobEndpoint endpointBody
	r.json(t, &bobEndpoint)
	payee.trust(*bobEndpoint.Secret)

	a.deposit(adaUSD, 1_000, "USD")
	var ids []string
	for _, amount := range []int64{100, 5_000, 200} { // the second fails: insufficient funds
		_, tr := a.transfer(ada, map[string]any{"from_account_id": adaUSD, "to_account_id": bobUSD, "amount": amount, "currency": "USD"})
		ids = append(ids, tr.ID)
	}
	h := a.hold(ada, adaUSD, bobUSD, 50, nil)
	if r := a.do("POST", "/v1/transfers/"+h.ID+"/capture?wait=10s", bob, nil); r.status != http.StatusOK {
		t.Fatalf("capture: %s", r)
	}
	h2 := a.hold(ada, adaUSD, bobUSD, 30, nil)
	if r := a.do("POST", "/v1/transfers/"+h2.ID+"/cancel", ada, nil); r.status != http.StatusOK {
		t.Fatalf("cancel: %s", r)
	}
	a.awaitWorkflows(t, append(ids, h.ID, h2.ID)...)

	// What the ledger says each endpoint's owner should get.
	wantAll := a.allEvents(t, a.admin, "")
	var wantBob []json.RawMessage
	for _, e := range a.allEvents(t, bob, "") {
		var ev struct{ Type string }
		_ = json.Unmarshal(e, &ev)
		if ev.Type == "transfer.completed" || ev.Type == "transfer.failed" {
			wantBob = append(wantBob, e)
		}
	}
	if len(wantAll) < 12 {
		t.Fatalf("events in the ledger: %d, want at least 12", len(wantAll))
	}
	for _, c := range []struct {
		name string
		rcv  *receiver
		want []json.RawMessage
	}{{"admin's endpoint", everything, wantAll}, {"payee's endpoint", payee, wantBob}} {
		deadline := time.Now().Add(30 * time.Second)
		for len(c.rcv.received()) < len(c.want) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		got := c.rcv.received()
		if len(got) != len(c.want) {
			t.Errorf("%s: received %d events, want %d", c.name, len(got), len(c.want))
		}
		for _, w := range c.want {
			var ev struct{ ID string }
			_ = json.Unmarshal(w, &ev)
			body, ok := got[ev.ID]
			if !ok {
				t.Errorf("%s: event %s never arrived", c.name, ev.ID)
				continue
			}
			if !jsonEqual(body, w) {
				t.Errorf("%s: event %s arrived as %s, the API shows %s", c.name, ev.ID, body, w)
			}
		}
		c.rcv.mu.Lock()
		if c.rcv.badSigs != 0 {
			t.Errorf("%s: %d deliveries failed verification", c.name, c.rcv.badSigs)
		}
		c.rcv.mu.Unlock()
	}
	// The payee sees no more of a failed transfer than the transfer itself shows them.
	for _, body := range payee.received() {
		if strings.Contains(string(body), "insufficient funds in account") {
			t.Errorf("the payee's delivery names the payer's balance: %s", body)
		}
	}

	// The delivery log has each event's three attempts at the admin's endpoint: 500, timeout, 2xx.
	type logLine struct {
		EventID        string    `json:"event_id"`
		Attempt        int       `json:"attempt"`
		ResponseStatus *int      `json:"response_status"`
		Error          *string   `json:"error"`
		NextRetryAt    *string   `json:"next_retry_at"`
		AttemptedAt    time.Time `json:"attempted_at"`
	}
	var log []logLine
	cursor := ""
	for {
		r := a.do("GET", "/v1/webhook-endpoints/"+adminEndpoint.ID+"/deliveries?limit=100"+cursor, a.admin, nil)
		var page struct {
			Data       json.RawMessage `json:"data"`
			NextCursor *string         `json:"next_cursor"`
		}
		r.json(t, &page)
		var items []logLine
		_ = json.Unmarshal(page.Data, &items)
		log = append(log, items...)
		if page.NextCursor == nil {
			break
		}
		cursor = "&cursor=" + *page.NextCursor
	}
	byOutcome := map[string]int{}
	for _, l := range log {
		switch {
		case l.Attempt == 1 && l.ResponseStatus != nil && *l.ResponseStatus == 500 && l.NextRetryAt != nil:
			byOutcome["500"]++
		case l.Attempt == 2 && l.ResponseStatus == nil && l.Error != nil && strings.Contains(*l.Error, "timeout") && l.NextRetryAt != nil:
			byOutcome["timeout"]++
		case l.Attempt == 3 && l.ResponseStatus != nil && *l.ResponseStatus == 204 && l.NextRetryAt == nil:
			byOutcome["204"]++
		default:
			t.Errorf("unexpected attempt in the log: %+v", l)
		}
	}
	if n := len(wantAll); byOutcome["500"] != n || byOutcome["timeout"] != n || byOutcome["204"] != n {
		t.Errorf("the admin endpoint's log: %v, want %d of each", byOutcome, n)
	}
	// The wait after an attempt counts from its end: the timeout (1 s) is followed by the second
	// wait (400 ms), which the log names, not by the third attempt at once. (attempted_at is when
	// the attempt was recorded, after its end; counted from its start, the retry was named about
	// 600 ms before that, and came within 50 ms.)
	timedOut, third := map[string]logLine{}, map[string]logLine{}
	for _, l := range log {
		switch l.Attempt {
		case 2:
			timedOut[l.EventID] = l
		case 3:
			third[l.EventID] = l
		}
	}
	for id, l := range timedOut {
		if l.NextRetryAt == nil {
			continue
		}
		next, _ := time.Parse(time.RFC3339Nano, *l.NextRetryAt)
		if !next.After(l.AttemptedAt) {
			t.Errorf("event %s: the timed-out attempt recorded at %v names its retry at %v, before that", id, l.AttemptedAt, next)
		}
		if n, ok := third[id]; ok && n.AttemptedAt.Before(next) {
			t.Errorf("event %s: the attempt after the timeout was recorded at %v, before its retry time %v", id, n.AttemptedAt, next)
		}
	}
	if r := a.do("GET", "/v1/webhook-endpoints/"+adminEndpoint.ID+"/deliveries", bob, nil); r.status != http.StatusNotFound {
		t.Errorf("bob reading the admin's delivery log: got %s, want 404", r)
	}

	// A resend delivers the event again with the same webhook-id.
	var first struct{ ID string }
	_ = json.Unmarshal(wantAll[0], &first)
	before := everything.attemptsOf(first.ID)
	if r := a.do("POST", "/v1/webhook-endpoints/"+adminEndpoint.ID+"/deliveries", a.admin, map[string]any{"event_id": first.ID}); r.status != http.StatusAccepted {
		t.Fatalf("resend: %s", r)
	}
	deadline := time.Now().Add(15 * time.Second)
	for everything.attemptsOf(first.ID) == before && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if everything.attemptsOf(first.ID) == before {
		t.Errorf("the resent event did not arrive")
	}
	if r := a.do("POST", "/v1/webhook-endpoints/"+bobEndpoint.ID+"/deliveries", bob, map[string]any{"event_id": uuid.NewString()}); r.status != http.StatusNotFound {
		t.Errorf("resend of an unknown event: got %s, want 404", r)
	}
}

// arrivalCount is the number of requests that reached the receiver.
func (r *receiver) arrivalCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.arrivals
}

func (r *receiver) attemptsOf(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[id]
}

// jsonEqual reports whether two JSON documents hold the same values.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// TestWebhookEndpointsContract checks the endpoint calls and their errors: the list, get, change,
// disable and enable, delete, secret rotation (with Idempotency-Key), and another user's endpoint.
func TestWebhookEndpointsContract(t *testing.T) {
	a := newAPI(t)
	ada, _ := a.user()
	bob, _ := a.user()
	rcv := newReceiver(t)
	body := map[string]any{"url": rcv.srv.URL, "event_types": []string{"transfer.completed"}, "description": "ledger sync"}
	r := a.do("POST", "/v1/webhook-endpoints", ada, body, "Idempotency-Key", "ep-1")
	var ep endpointBody
	r.json(t, &ep)
	if r.status != http.StatusCreated || ep.Secret == nil || ep.Description != "ledger sync" || !slices.Equal(ep.EventTypes, []string{"transfer.completed"}) {
		t.Fatalf("create: %s", r)
	}
	again := a.do("POST", "/v1/webhook-endpoints", ada, body, "Idempotency-Key", "ep-1")
	var ep2 endpointBody
	again.json(t, &ep2)
	if again.status != http.StatusOK || ep2.ID != ep.ID || ep2.Secret != nil || ep2.Notice == "" {
		t.Errorf("retry with the same Idempotency-Key: got %s, want 200, the same endpoint, no secret, a notice", again)
	}
	body["description"] = "other"
	a.do("POST", "/v1/webhook-endpoints", ada, body, "Idempotency-Key", "ep-1").problem(t, http.StatusConflict, "idempotency_conflict")

	for _, bad := range []map[string]any{
		{"url": rcv.srv.URL, "event_types": []string{}},
		{"url": rcv.srv.URL, "event_types": []string{"transfer.exploded"}},
		{"url": rcv.srv.URL, "event_types": []string{"*", "*"}},
		{"url": "", "event_types": []string{"*"}},
		{"url": rcv.srv.URL},
	} {
		a.do("POST", "/v1/webhook-endpoints", ada, bad).problem(t, http.StatusBadRequest, "invalid_request")
	}

	if r := a.do("GET", "/v1/webhook-endpoints/"+ep.ID, ada, nil); r.status != http.StatusOK || strings.Contains(string(r.body), "whsec_") {
		t.Errorf("get: got %s, want 200 without the secret", r)
	}
	if r := a.do("GET", "/v1/webhook-endpoints", ada, nil); r.status != http.StatusOK || !strings.Contains(string(r.body), ep.ID) || strings.Contains(string(r.body), "whsec_") {
		t.Errorf("list: got %s", r)
	}
	for _, path := range []string{"/v1/webhook-endpoints/" + ep.ID, "/v1/webhook-endpoints/" + ep.ID + "/deliveries", "/v1/webhook-endpoints/not-an-id"} {
		a.do("GET", path, bob, nil).problem(t, http.StatusNotFound, "not_found")
	}
	a.do("PATCH", "/v1/webhook-endpoints/"+ep.ID, bob, map[string]any{"status": "disabled"}).problem(t, http.StatusNotFound, "not_found")
	a.do("POST", "/v1/webhook-endpoints/"+ep.ID+"/rotate-secret", bob, nil).problem(t, http.StatusNotFound, "not_found")

	patch := func(b map[string]any, want string) {
		t.Helper()
		r := a.do("PATCH", "/v1/webhook-endpoints/"+ep.ID, ada, b)
		if r.status != http.StatusOK || !strings.Contains(string(r.body), want) {
			t.Errorf("PATCH %v: got %s, want 200 with %s", b, r, want)
		}
	}
	patch(map[string]any{"status": "disabled"}, `"status":"disabled"`)
	a.do("POST", "/v1/webhook-endpoints/"+ep.ID+"/deliveries", ada, map[string]any{"event_id": uuid.NewString()}).problem(t, http.StatusConflict, "endpoint_disabled")
	patch(map[string]any{"status": "enabled"}, `"disabled_reason":null`)
	patch(map[string]any{"event_types": []string{"*"}, "description": "all"}, `"event_types":["*"]`)
	a.do("PATCH", "/v1/webhook-endpoints/"+ep.ID, ada, map[string]any{"status": "paused"}).problem(t, http.StatusBadRequest, "invalid_request")
	a.do("PATCH", "/v1/webhook-endpoints/"+ep.ID, ada, map[string]any{}).problem(t, http.StatusBadRequest, "invalid_request")

	r = a.do("POST", "/v1/webhook-endpoints/"+ep.ID+"/rotate-secret", ada, nil, "Idempotency-Key", "rot-1")
	var rotated endpointBody
	r.json(t, &rotated)
	if r.status != http.StatusOK || rotated.Secret == nil || *rotated.Secret == *ep.Secret {
		t.Fatalf("rotate: got %s, want a new secret", r)
	}
	r = a.do("POST", "/v1/webhook-endpoints/"+ep.ID+"/rotate-secret", ada, nil, "Idempotency-Key", "rot-1")
	var replay endpointBody
	r.json(t, &replay)
	if r.status != http.StatusOK || replay.Secret != nil || replay.Notice == "" {
		t.Errorf("the rotation retried: got %s, want no new secret and a notice", r)
	}

	// During the 24 hours after a rotation, deliveries verify with the old secret and the new one.
	rcv.trust(*ep.Secret)
	src := a.account(ada, "USD")
	a.deposit(src, 10, "USD")
	deadline := time.Now().Add(15 * time.Second)
	for len(rcv.received()) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if len(rcv.received()) == 0 {
		t.Fatalf("no delivery verified with the old secret after the rotation")
	}
	rcv.mu.Lock()
	lastBody, lastHeader := rcv.lastBody, rcv.lastHeader
	rcv.mu.Unlock()
	withNew, err := standardwebhooks.NewWebhook(*rotated.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := withNew.Verify(lastBody, lastHeader); err != nil {
		t.Errorf("the delivery after the rotation does not verify with the new secret: %v", err)
	}

	if r := a.do("DELETE", "/v1/webhook-endpoints/"+ep.ID, ada, nil); r.status != http.StatusNoContent {
		t.Errorf("delete: got %s, want 204", r)
	}
	a.do("GET", "/v1/webhook-endpoints/"+ep.ID, ada, nil).problem(t, http.StatusNotFound, "not_found")
	a.do("DELETE", "/v1/webhook-endpoints/"+ep.ID, ada, nil).problem(t, http.StatusNotFound, "not_found")
}

// TestWebhookURLsRefused checks that an API that does not allow private webhooks refuses, with 422
// invalid_webhook_url and before anything is recorded, plain http and every address that is or
// resolves to loopback, private or link-local ranges.
func TestWebhookURLsRefused(t *testing.T) {
	auth, err := server.NewAuth(testSecret, 0, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := auth.Issue(transfer.User{ID: uuid.New(), Role: transfer.RoleUser})
	if err != nil {
		t.Fatal(err)
	}
	h := server.New(server.Config{Ledger: trustTokens{}, Auth: auth, Log: slog.New(slog.DiscardHandler)}).Handler()
	for _, u := range []string{
		"http://example.com/hook", "https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://172.16.5.4/hook",
		"https://192.168.0.10/hook", "https://169.254.169.254/latest/meta-data", "https://[::1]/hook", "https://[fe80::1]/hook",
		"https://localhost/hook", "https://0.0.0.0/hook", "ftp://example.com/hook", "https://user:pass@example.com/hook", "not a url",
	} {
		req := httptest.NewRequest("POST", "/v1/webhook-endpoints", strings.NewReader(`{"url":`+quoteJSON(u)+`,"event_types":["*"]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		r := resp{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
		p := r.problem(t, http.StatusUnprocessableEntity, "invalid_webhook_url")
		if strings.Contains(p.Detail, "user:pass") {
			t.Errorf("%s: the detail repeats the URL's password: %q", u, p.Detail)
		}
	}
}

func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestTerminatedDeliveryIsRestarted: an operator terminates a delivery's workflow in the Web UI
// between its attempts, twice. The dispatcher's look for stalled deliveries leaves a running
// delivery alone, and one closed too recently, starts one new run for the terminated one each time,
// which numbers its attempts on from the log, and the event arrives, verified; nothing is left
// pending.
func TestTerminatedDeliveryIsRestarted(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	rcv := newReceiver(t, "500", "500", "500", "500", "500", "500", "500", "500")
	r := a.do("POST", "/v1/webhook-endpoints", a.admin, map[string]any{"url": rcv.srv.URL, "event_types": []string{"transfer.created"}})
	var ep endpointBody
	r.json(t, &ep)
	if r.status != http.StatusCreated {
		t.Fatalf("create endpoint: %s", r)
	}
	rcv.trust(*ep.Secret)
	ada, _ := a.user()
	a.deposit(a.account(ada, "USD"), 100, "USD") // One event for the endpoint: the deposit's transfer.created.
	epID := uuid.MustParse(ep.ID)
	attempts := func() []transfer.DeliveryAttempt {
		t.Helper()
		l, err := a.store.Attempts(ctx, epID, transfer.Page{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(attempts()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(attempts()) == 0 {
		t.Fatal("no attempt within 15 s")
	}
	deliveryID := attempts()[0].DeliveryID
	// The restarts' deadline is far off, so that a loaded machine's slow attempts cannot end the
	// delivery before its ninth.
	policy := testWebhookPolicy
	policy.GiveUpAfter = 2 * time.Minute
	d := &webhooks.Dispatcher{Store: a.store, Temporal: a.temporal, Policy: policy, Log: slog.New(slog.DiscardHandler)}
	// settle waits out an attempt in flight at a termination (its timeout is 1 s), and then until
	// the log holds every request the receiver got.
	settle := func() {
		t.Helper()
		time.Sleep(testWebhookPolicy.AttemptTimeout + 500*time.Millisecond)
		deadline := time.Now().Add(10 * time.Second)
		for len(attempts()) < rcv.arrivalCount() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Every pending delivery counts as late, and every run closed as closed long enough ago.
	anyDue, anyClose := time.Now().Add(time.Hour), time.Now().Add(time.Hour)
	if n, err := d.RestartStalled(ctx, anyDue, anyClose); err != nil || n != 0 {
		t.Fatalf("a running delivery: restarted %d, %v; want 0", n, err)
	}
	wfID := webhooks.WorkflowID(deliveryID)
	if err := a.temporal.TerminateWorkflow(ctx, wfID, "", "operator pressed Terminate"); err != nil {
		t.Fatal(err)
	}
	settle()
	if n, err := d.RestartStalled(ctx, anyDue, time.Now().Add(-time.Minute)); err != nil || n != 0 {
		t.Fatalf("a delivery whose workflow closed too recently for its last attempt to have ended: restarted %d, %v; want 0", n, err)
	}
	before := len(attempts())
	if n, err := d.RestartStalled(ctx, anyDue, anyClose); err != nil || n != 1 {
		t.Fatalf("the terminated delivery: restarted %d, %v; want 1", n, err)
	}
	if n, err := d.RestartStalled(ctx, anyDue, anyClose); err != nil || n != 0 {
		t.Errorf("the restarted delivery, running again: restarted %d, %v; want 0", n, err)
	}
	// The restarted run, terminated too, is restarted again, numbering on.
	if err := a.temporal.TerminateWorkflow(ctx, wfID, "", "operator pressed Terminate again"); err != nil {
		t.Fatal(err)
	}
	settle()
	if n, err := d.RestartStalled(ctx, anyDue, anyClose); err != nil || n != 1 {
		t.Fatalf("the delivery terminated again: restarted %d, %v; want 1", n, err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for len(rcv.received()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(rcv.received()) != 1 {
		t.Fatalf("received %d events, want 1", len(rcv.received()))
	}
	// The log: attempts 1 to 9 once each (eight 500s, then the 204), the restarts' numbered on.
	deadline = time.Now().Add(5 * time.Second)
	var log []transfer.DeliveryAttempt
	for log = attempts(); len(log) < 9 && time.Now().Before(deadline); log = attempts() {
		time.Sleep(50 * time.Millisecond)
	}
	slices.SortFunc(log, func(x, y transfer.DeliveryAttempt) int { return x.Attempt - y.Attempt })
	for i, l := range log {
		want := http.StatusInternalServerError
		if i == 8 {
			want = http.StatusNoContent
		}
		if l.Attempt != i+1 || l.ResponseStatus != want {
			t.Errorf("log line %d: attempt %d status %v, want attempt %d status %d", i, l.Attempt, l.ResponseStatus, i+1, want)
		}
	}
	if len(log) != 9 || before >= 9 {
		t.Errorf("%d attempts in the log (%d before the restart), want 9 with the restarts' among them", len(log), before)
	}
	pending, err := a.store.PendingDeliveries(ctx)
	if err != nil || pending[epID] != 0 {
		t.Errorf("pending deliveries: %v, %v; want none", pending, err)
	}
	if n, err := d.RestartStalled(ctx, anyDue, anyClose); err != nil || n != 0 {
		t.Errorf("after the delivery: restarted %d, %v; want 0", n, err)
	}
}

// TestEndpointRetryIsAnsweredWhateverItsURLNowChecks: a retried endpoint creation (same
// Idempotency-Key) is answered from the endpoint the first request created even when its URL no
// longer passes the check (a name that stopped resolving, or, as here, an operator who stopped
// allowing private addresses); a new request with that URL is refused, and the key with another
// body is a conflict.
func TestEndpointRetryIsAnsweredWhateverItsURLNowChecks(t *testing.T) {
	a := newAPI(t)
	ada, _ := a.user()
	body := map[string]any{"url": "http://127.0.0.1:9/hook", "event_types": []string{"transfer.created"}}
	first := a.do("POST", "/v1/webhook-endpoints", ada, body, "Idempotency-Key", "ep-1")
	var ep endpointBody
	first.json(t, &ep)
	if first.status != http.StatusCreated {
		t.Fatalf("create: %s", first)
	}
	strict := server.New(server.Config{Ledger: a.store, Limits: a.store, Auth: a.auth, Log: slog.New(slog.DiscardHandler),
		Transfers: service.New(a.store, a.temporal, testQueue, slog.New(slog.DiscardHandler))}).Handler()
	post := func(body map[string]any, key string) resp {
		t.Helper()
		j, _ := json.Marshal(body)
		req := httptest.NewRequest("POST", "/v1/webhook-endpoints", bytes.NewReader(j))
		req.Header.Set("Authorization", "Bearer "+ada)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		rec := httptest.NewRecorder()
		strict.ServeHTTP(rec, req)
		return resp{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	}
	again := post(body, "ep-1")
	if again.status != http.StatusOK || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry under the stricter check: got %s, want 200, replayed", again)
	} else {
		var replayed endpointBody
		if again.json(t, &replayed); replayed.ID != ep.ID || replayed.Secret != nil {
			t.Errorf("retry under the stricter check: got %s, want the same endpoint %s, without its secret", again, ep.ID)
		}
	}
	post(body, "ep-2").problem(t, http.StatusUnprocessableEntity, "invalid_webhook_url")
	changed := map[string]any{"url": "http://127.0.0.1:9/other", "event_types": []string{"transfer.created"}}
	post(changed, "ep-1").problem(t, http.StatusConflict, "idempotency_conflict")
	// The refused request claimed nothing: its key creates an endpoint where the URL passes.
	if r := a.do("POST", "/v1/webhook-endpoints", ada, body, "Idempotency-Key", "ep-2"); r.status != http.StatusCreated {
		t.Errorf("the refused request's key, on the lenient API: got %s, want 201", r)
	}
	var list struct{ Data []endpointBody }
	a.do("GET", "/v1/webhook-endpoints", ada, nil).json(t, &list)
	if len(list.Data) != 2 {
		t.Errorf("endpoints: got %d, want 2", len(list.Data))
	}
}
