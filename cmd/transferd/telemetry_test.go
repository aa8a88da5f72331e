package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporaltest"
	"golang.org/x/crypto/bcrypt"

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/transfer"
)

// TestTelemetry runs a deposit and a failing transfer through the API wired as the binary wires it,
// then checks that /metrics exposes the API's, the SDK's and the saga's series, and that one trace
// runs from the HTTP request through the workflow into its activities.
func TestTelemetry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server")
	}
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	dsn := pgtest.NewDatabase(t)
	store, err := ledger.Open(ctx, dsn, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tel, err := newTelemetry(ctx, "transferd-test", log)
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewInMemoryExporter()
	if err := tel.enableTracing("transferd-test", sdktrace.WithSyncer(spans)); err != nil {
		t.Fatal(err)
	}
	defer tel.close(ctx)
	ts := temporaltest.NewServer(temporaltest.WithT(t), temporaltest.WithBaseClientOptions(tel.clientOptions(client.Options{})))
	tc := ts.GetDefaultClient()
	cfg := &config{TaskQueue: "telemetry", TemporalNamespace: ts.GetDefaultNamespace(), StopTimeout: time.Second}
	stop, err := startWorker(ctx, cfg, store, tc, tel.registry, log)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	auth, err := server.NewAuth([]byte(strings.Repeat("k", 32)), 0, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tel.wrapHTTP(newAPI(store, tc, cfg.TaskQueue, auth, log, tel.registry, service.Options{}).Handler()))
	defer srv.Close()

	u, err := auth.NewUser("ops@example.com", "password-123", "Ops", transfer.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	call := func(method, path, token string, body any, out any) int {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		if out != nil {
			_ = json.Unmarshal(raw, out)
		}
		return res.StatusCode
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	call("POST", "/v1/auth/token", "", map[string]string{"email": "ops@example.com", "password": "password-123"}, &tok)
	var acct struct{ ID string }
	var other struct{ ID string }
	call("POST", "/v1/accounts", tok.AccessToken, map[string]string{"currency": "EUR"}, &acct)
	call("POST", "/v1/accounts", tok.AccessToken, map[string]string{"currency": "EUR"}, &other)
	var dep struct{ ID, Status string }
	if code := call("POST", "/v1/deposits?wait=30s", tok.AccessToken, map[string]any{"account_id": acct.ID, "amount": 500, "currency": "EUR"}, &dep); code != 201 || dep.Status != "completed" {
		t.Fatalf("deposit: %d %s", code, dep.Status)
	}
	var failed struct{ Status string }
	call("POST", "/v1/transfers?wait=30s", tok.AccessToken, map[string]any{"from_account_id": acct.ID, "to_account_id": other.ID, "amount": 501, "currency": "EUR"}, &failed)
	if failed.Status != "failed" {
		t.Fatalf("overdraft: got %s, want failed", failed.Status)
	}

	// Each wanted series: its name, labels it must carry (the SDK adds its own, such as namespace and
	// task_queue), and its value, or "" for any.
	want := []struct {
		name   string
		labels []string
		value  string
	}{
		{"transferd_http_requests_total", []string{`method="POST"`, `route="/v1/deposits"`, `status="201"`}, "1"},
		{"transferd_http_request_duration_seconds_bucket", []string{`route="/v1/deposits"`}, ""},
		{"transferd_transfers_finished_total", []string{`status="completed"`, `failure_code="none"`}, "1"},
		{"transferd_transfers_finished_total", []string{`status="failed"`, `failure_code="insufficient_funds"`}, "1"},
		{"transferd_saga_step_duration_seconds_bucket", []string{`step="credit"`}, ""},
		{"transferd_saga_step_duration_seconds_bucket", []string{`step="release"`}, ""},
		{"transferd_compensations_total", []string{`kind="release"`}, "1"},
		{"temporal_workflow_completed", nil, ""},
		{"temporal_local_activity_execution_latency_bucket", []string{`activity_type="Reserve"`}, ""},
		{"go_goroutines", nil, ""},
	}
	has := func(body, name string, labels []string, value string) bool {
		for _, line := range strings.Split(body, "\n") {
			if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
				continue
			}
			ok := value == "" || strings.HasSuffix(line, " "+value)
			for _, l := range labels {
				ok = ok && strings.Contains(line, l)
			}
			if ok {
				return true
			}
		}
		return false
	}
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		res, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		body = string(raw)
		missing := 0
		for _, w := range want {
			if !has(body, w.name, w.labels, w.value) {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, w := range want {
		if !has(body, w.name, w.labels, w.value) {
			t.Errorf("/metrics lacks %s with %v = %q", w.name, w.labels, w.value)
		}
	}

	// One trace from the deposit's HTTP request to its activities.
	var httpSpan sdktrace.ReadOnlySpan
	names := map[string]bool{}
	for _, s := range spans.GetSpans().Snapshots() {
		if s.Name() == "POST /v1/deposits" {
			httpSpan = s
		}
	}
	if httpSpan == nil {
		t.Fatalf("no span named after the deposit route; spans: %v", spanNames(spans))
	}
	for _, s := range spans.GetSpans().Snapshots() {
		if s.SpanContext().TraceID() == httpSpan.SpanContext().TraceID() {
			names[s.Name()] = true
		}
	}
	for _, w := range []string{"StartWorkflow:TransferWorkflow", "RunWorkflow:TransferWorkflow", "RunActivity:Reserve", "RunActivity:Debit", "RunActivity:Credit"} {
		if !names[w] {
			t.Errorf("the deposit's trace lacks span %s; it has %v", w, names)
		}
	}
}

func spanNames(e *tracetest.InMemoryExporter) []string {
	var out []string
	for _, s := range e.GetSpans().Snapshots() {
		out = append(out, s.Name())
	}
	return out
}
