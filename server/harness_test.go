package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporaltest"
	"golang.org/x/crypto/bcrypt"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/internal/sagatest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/webhooks"
	"github.com/transferd/transferd/worker"
)

const testQueue = "transfers-http"

// testWebhookPolicy tries deliveries in seconds, not days.
var testWebhookPolicy = webhooks.Policy{AttemptTimeout: time.Second, FirstBackoff: 200 * time.Millisecond, MaxBackoff: time.Second,
	GiveUpAfter: 20 * time.Second, DisableAfter: time.Hour}

// api is one test's running API: the real router over the real ledger, service, worker and an
// in-process Temporal server.
type api struct {
	t      testing.TB
	url    string
	dsn    string
	store  *ledger.Store
	auth   *server.Auth
	admin  string // an admin's token
	handle *server.Server
	// gate holds chosen transfers before their reserve.
	gate *sagatest.Gate
	// temporal is the client of the in-process Temporal server.
	temporal client.Client
}

var testSecret = []byte("0123456789abcdef0123456789abcdef-test")

func newAPI(t testing.TB) *api {
	t.Helper()
	return newAPIWithLog(t, nil)
}

// newAPIWithLog is newAPI with the API's and the service's log written to logTo, at every level.
func newAPIWithLog(t testing.TB, logTo io.Writer) *api {
	t.Helper()
	if testing.Short() {
		t.Skip("black-box HTTP tests start a Temporal server")
	}
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	store, err := ledger.Open(ctx, dsn, ledger.Options{MaxOpenConns: 40})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	// A fuzz target's *testing.F cannot be handed to WithT; its server is stopped at cleanup instead.
	var ts *temporaltest.TestServer
	if tt, ok := t.(*testing.T); ok {
		ts = temporaltest.NewServer(temporaltest.WithT(tt))
	} else {
		ts = temporaltest.NewServer()
		t.Cleanup(ts.Stop)
	}
	c := ts.GetDefaultClient()
	if err := worker.EnsureSearchAttributes(ctx, c, ts.GetDefaultNamespace()); err != nil {
		t.Fatalf("search attributes: %v", err)
	}
	gate := sagatest.NewGate(store)
	w := worker.New(c, &activities.Activities{Store: gate}, worker.Options{TaskQueue: testQueue})
	if err := w.Start(); err != nil {
		t.Fatalf("worker: %v", err)
	}
	t.Cleanup(w.Stop)
	auth, err := server.NewAuth(testSecret, 0, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if logTo != nil {
		log = slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	// Webhook deliveries, tried quickly: an attempt has 1 s, retries come 200 ms, 400 ms ... apart.
	ww := worker.NewWebhooks(c, &webhooks.Activities{Store: store, Render: server.EventJSON,
		Client: webhooks.NewClient(webhooks.ClientOptions{AllowPrivate: true, Timeout: testWebhookPolicy.AttemptTimeout})}, 16, time.Second)
	if err := ww.Start(); err != nil {
		t.Fatalf("webhooks worker: %v", err)
	}
	t.Cleanup(ww.Stop)
	dispatchCtx, stopDispatch := context.WithCancel(context.Background())
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		// Its restarts of stalled deliveries are left to the tests that call them.
		(&webhooks.Dispatcher{Store: store, Temporal: c, Policy: testWebhookPolicy, Log: log, Every: 100 * time.Millisecond,
			RestartEvery: time.Hour}).Run(dispatchCtx)
	}()
	t.Cleanup(func() { stopDispatch(); <-dispatched })
	h := server.New(server.Config{
		AllowPrivateWebhooks: true,
		Ledger:               store, Limits: store, Transfers: service.New(store, c, testQueue, log).WithOptions(service.Options{WorkflowTaskTimeout: sagatest.WorkflowTaskTimeout}),
		Auth: auth, Log: log,
		Ready: map[string]server.Check{"postgres": store.Ping},
	})
	// The test server has the production server's timeouts and limits.
	srv := httptest.NewUnstartedServer(h.Handler())
	srv.Config = h.NewHTTPServer("")
	srv.Start()
	t.Cleanup(srv.Close)
	a := &api{t: t, url: srv.URL, dsn: dsn, store: store, auth: auth, handle: h, gate: gate, temporal: c}
	u, err := auth.NewUser("admin@example.com", "admin-password", "Admin", transfer.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	a.admin = a.token("admin@example.com", "admin-password")
	return a
}

// resp is an HTTP answer.
type resp struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into v, failing the test if it cannot.
func (r resp) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// problem decodes a problem body and checks its status, code and content type.
func (r resp) problem(t testing.TB, status int, code string) server.Problem {
	t.Helper()
	if r.status != status {
		t.Errorf("status: got %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("content type: got %q, want application/problem+json", ct)
	}
	var p server.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", r.body, err)
	}
	if p.Code != code || p.Status != status || p.Type == "" || p.Title == "" {
		t.Errorf("problem: got code %q status %d type %q title %q, want code %q status %d", p.Code, p.Status, p.Type, p.Title, code, status)
	}
	return p
}

// do sends a request. body is sent as is when it is a string, else marshalled to JSON.
func (a *api) do(method, path, token string, body any, headers ...string) resp {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// token signs in.
func (a *api) token(email, password string) string {
	a.t.Helper()
	r := a.do("POST", "/v1/auth/token", "", map[string]string{"email": email, "password": password})
	if r.status != http.StatusOK {
		a.t.Fatalf("token: %d %s", r.status, r.body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	r.json(a.t, &tok)
	return tok.AccessToken
}

// user signs a new user up and returns their token and id.
func (a *api) user() (token string, id string) {
	a.t.Helper()
	email := "u-" + uuid.NewString()[:8] + "@example.com"
	r := a.do("POST", "/v1/users", "", map[string]string{"email": email, "password": "password-123", "name": "Test"})
	if r.status != http.StatusCreated {
		a.t.Fatalf("sign up: %d %s", r.status, r.body)
	}
	var u struct{ ID string }
	r.json(a.t, &u)
	return a.token(email, "password-123"), u.ID
}

// account creates an account for the token's user.
func (a *api) account(token, currency string) string {
	a.t.Helper()
	r := a.do("POST", "/v1/accounts", token, map[string]any{"currency": currency})
	if r.status != http.StatusCreated {
		a.t.Fatalf("create account: %d %s", r.status, r.body)
	}
	var acct struct{ ID string }
	r.json(a.t, &acct)
	return acct.ID
}

// transferBody is a transfer as the API answers it.
type transferBody struct {
	ID             string  `json:"id"`
	Kind           string  `json:"kind"`
	FromAccountID  string  `json:"from_account_id"`
	ToAccountID    string  `json:"to_account_id"`
	Amount         int64   `json:"amount"`
	Currency       string  `json:"currency"`
	Status         string  `json:"status"`
	FailureCode    *string `json:"failure_code"`
	FailureMessage *string `json:"failure_message"`
	CompletedAt    *string `json:"completed_at"`
}

// deposit funds an account as the admin and waits for it to complete.
func (a *api) deposit(accountID string, amount int64, currency string) {
	a.t.Helper()
	r := a.do("POST", "/v1/deposits?wait=30s", a.admin, map[string]any{"account_id": accountID, "amount": amount, "currency": currency})
	var tr transferBody
	r.json(a.t, &tr)
	if r.status != http.StatusCreated || tr.Status != "completed" {
		a.t.Fatalf("deposit: %d %s", r.status, r.body)
	}
}

// transfer submits a transfer and waits up to 30s (the most a request may wait) for it to end.
func (a *api) transfer(token string, body map[string]any, headers ...string) (resp, transferBody) {
	a.t.Helper()
	r := a.do("POST", "/v1/transfers?wait=30s", token, body, headers...)
	var tr transferBody
	if r.status < 300 {
		r.json(a.t, &tr)
	}
	return r, tr
}

// awaitWorkflows waits for the transfers' workflows to close, each through Temporal's long poll on
// its result rather than by polling rows or sleeping, and fails the test if one still runs after
// 30 s, the most a request may wait. A workflow that closed failed, cancelled or terminated counts
// as closed: the caller checks the rows.
func (a *api) awaitWorkflows(t testing.TB, ids ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range ids {
		err := a.temporal.GetWorkflow(ctx, id, "").Get(ctx, nil)
		if ctx.Err() != nil {
			t.Fatalf("transfer %s: its workflow still runs after 30 s", id)
		}
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			t.Fatalf("transfer %s: no workflow: %v", id, err)
		}
	}
}

// accountBody is an account as the API answers it.
type accountBody struct {
	ID        string `json:"id"`
	OwnerID   string `json:"owner_id"`
	Currency  string `json:"currency"`
	Balance   int64  `json:"balance"`
	Available int64  `json:"available"`
	Reserved  int64  `json:"reserved"`
	Status    string `json:"status"`
}

func (a *api) getAccount(token, id string) accountBody {
	a.t.Helper()
	r := a.do("GET", "/v1/accounts/"+id, token, nil)
	if r.status != http.StatusOK {
		a.t.Fatalf("get account: %d %s", r.status, r.body)
	}
	var acct accountBody
	r.json(a.t, &acct)
	return acct
}

// audit fails the test on any invariant violation.
func (a *api) audit() {
	a.t.Helper()
	r, err := a.store.Audit(context.Background(), nil)
	if err != nil {
		a.t.Fatalf("audit: %v", err)
	}
	for _, v := range r.Violations {
		a.t.Errorf("audit: invariant %d (%s): %s: %s", v.Invariant, v.Name, v.Subject, v.Detail)
	}
}

// String shows an answer in failure messages.
func (r resp) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }
