package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/internal/securetemporal"
	"github.com/transferd/transferd/internal/temporalclient"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/transfer"
)

// TestTemporalFlagsPrecedence checks the order in which the subcommands take each Temporal setting:
// the flag, then TRANSFERD_*, then the SDK's TEMPORAL_*, then the temporal.toml profile that
// TEMPORAL_CONFIG_FILE and TEMPORAL_PROFILE (or --temporal-profile) select, then the default.
func TestTemporalFlagsPrecedence(t *testing.T) {
	const profiles = `
[profile.default]
address = "profile:7233"
namespace = "profile-ns"
[profile.default.tls]
server_name = "profile-sni"

[profile.other]
address = "other-profile:7233"
`
	type want struct{ address, namespace, serverName string }
	tests := []struct {
		name     string
		profiles bool
		env      map[string]string
		args     []string
		want     want
	}{
		{name: "default", want: want{"127.0.0.1:7233", "default", ""}},
		{name: "profile over default", profiles: true, want: want{"profile:7233", "profile-ns", "profile-sni"}},
		{name: "TEMPORAL_* over profile", profiles: true,
			env:  map[string]string{"TEMPORAL_ADDRESS": "temporal:7233", "TEMPORAL_NAMESPACE": "temporal-ns", "TEMPORAL_TLS_SERVER_NAME": "temporal-sni"},
			want: want{"temporal:7233", "temporal-ns", "temporal-sni"}},
		{name: "TRANSFERD_* over TEMPORAL_*", profiles: true,
			env: map[string]string{"TEMPORAL_ADDRESS": "temporal:7233", "TEMPORAL_NAMESPACE": "temporal-ns", "TEMPORAL_TLS_SERVER_NAME": "temporal-sni",
				"TRANSFERD_TEMPORAL_ADDRESS": "transferd:7233", "TRANSFERD_TEMPORAL_NAMESPACE": "transferd-ns", "TRANSFERD_TEMPORAL_TLS_SERVER_NAME": "transferd-sni"},
			want: want{"transferd:7233", "transferd-ns", "transferd-sni"}},
		{name: "flag over TRANSFERD_*", profiles: true,
			env: map[string]string{"TEMPORAL_ADDRESS": "temporal:7233", "TEMPORAL_NAMESPACE": "temporal-ns", "TEMPORAL_TLS_SERVER_NAME": "temporal-sni",
				"TRANSFERD_TEMPORAL_ADDRESS": "transferd:7233", "TRANSFERD_TEMPORAL_NAMESPACE": "transferd-ns", "TRANSFERD_TEMPORAL_TLS_SERVER_NAME": "transferd-sni"},
			args: []string{"--temporal-address", "flag:7233", "--temporal-namespace", "flag-ns", "--temporal-tls-server-name", "flag-sni"},
			want: want{"flag:7233", "flag-ns", "flag-sni"}},
		{name: "each layer fills what the ones above leave", profiles: true,
			env:  map[string]string{"TEMPORAL_NAMESPACE": "temporal-ns", "TRANSFERD_TEMPORAL_TLS_SERVER_NAME": "transferd-sni"},
			args: []string{"--temporal-address", "flag:7233"},
			want: want{"flag:7233", "temporal-ns", "transferd-sni"}},
		{name: "--temporal-profile over TEMPORAL_PROFILE", profiles: true,
			env: map[string]string{"TEMPORAL_PROFILE": "default"}, args: []string{"--temporal-profile", "other"},
			want: want{"other-profile:7233", "default", ""}},
		{name: "TRANSFERD_TEMPORAL_TLS=false over the profile's TLS", profiles: true,
			env:  map[string]string{"TRANSFERD_TEMPORAL_TLS": "false"},
			want: want{"profile:7233", "profile-ns", ""}},
		{name: "--temporal-tls over TRANSFERD_TEMPORAL_TLS=false",
			env: map[string]string{"TRANSFERD_TEMPORAL_TLS": "false"}, args: []string{"--temporal-tls", "--temporal-tls-server-name", "flag-sni"},
			want: want{"127.0.0.1:7233", "default", "flag-sni"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			securetemporal.IsolateEnv(t)
			if tt.profiles {
				file := filepath.Join(t.TempDir(), "temporal.toml")
				securetemporal.WriteFile(t, file, []byte(profiles))
				t.Setenv("TEMPORAL_CONFIG_FILE", file)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var c config
			fs := c.flagSet("worker", io.Discard, c.temporalFlags)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			o, err := c.temporalOptions()
			if err != nil {
				t.Fatalf("temporalOptions: %v", err)
			}
			got := want{o.HostPort, o.Namespace, ""}
			if o.ConnectionOptions.TLS != nil && !o.ConnectionOptions.TLSDisabled {
				got.serverName = o.ConnectionOptions.TLS.ServerName
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if c.TemporalAddress != o.HostPort || c.TemporalNamespace != o.Namespace {
				t.Errorf("config: got %s %s, want the address and namespace settled on, %s %s", c.TemporalAddress, c.TemporalNamespace, o.HostPort, o.Namespace)
			}
		})
	}
}

// TestSubcommandsOverMTLS runs the worker, audit and repair subcommands against a real Temporal
// frontend that requires a client certificate, each given its certificate another way (flags,
// TEMPORAL_* variables, TRANSFERD_* variables): transfers complete through the worker, and audit
// checks the workflows; without the certificate, audit cannot reach Temporal.
func TestSubcommandsOverMTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server")
	}
	securetemporal.IsolateEnv(t)
	ctx := context.Background()
	clients := securetemporal.NewCA(t, "clients")
	srv := securetemporal.StartMTLS(t, clients)
	certFile, keyFile := clients.IssueFiles(t, t.TempDir(), "transferd")
	dsn := pgtest.NewDatabase(t)
	if err := run(ctx, []string{"migrate", "--database-url", dsn}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	const queue = "mtls-test"
	common := []string{"--database-url", dsn, "--task-queue", queue}

	// The worker, by flags.
	workerCtx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	go func() {
		workerDone <- run(workerCtx, append([]string{"worker", "--reconcile-every", "0", "--metrics-addr", "",
			"--temporal-address", srv.GetFrontendHostPort(), "--temporal-namespace", srv.GetDefaultNamespace(),
			"--temporal-tls-ca", srv.CAFile, "--temporal-tls-cert", certFile, "--temporal-tls-key", keyFile}, common...), io.Discard, io.Discard)
	}()
	defer func() {
		stopWorker()
		if err := <-workerDone; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()

	// Transfers through a client of the same builder.
	o, err := temporalclient.Options(temporalclient.Settings{Address: srv.GetFrontendHostPort(), Namespace: srv.GetDefaultNamespace(),
		TLSCA: srv.CAFile, TLSCert: certFile, TLSKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := client.DialContext(ctx, o)
	if err != nil {
		t.Fatalf("dial over mTLS: %v", err)
	}
	defer tc.Close()
	store, err := ledger.Open(ctx, dsn, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	svc := service.New(store, tc, queue, slog.New(slog.DiscardHandler)).WithOptions(service.Options{Namespace: srv.GetDefaultNamespace()})
	u, err := store.CreateUser(ctx, transfer.User{Email: uuid.NewString() + "@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := store.CreateAccount(ctx, ledger.NewAccount{OwnerID: u.ID, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	// The worker registers the search attributes a start names; until it has, a start is refused.
	// The retries send the same id, so a refused start leaves no second transfer for repair to find.
	var tr transfer.Transfer
	depositID := uuid.New()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		tr, _, err = svc.Submit(ctx, transfer.Request{ID: depositID, Kind: transfer.KindDeposit, ToAccountID: a.ID, Amount: 700, Currency: "EUR"})
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	if tr, err = svc.Wait(ctx, tr.ID, 20*time.Second); err != nil || tr.Status != transfer.StatusCompleted {
		t.Fatalf("deposit through the worker over mTLS: %s, %v; want completed", tr.Status, err)
	}

	// Audit, by the SDK's variables.
	t.Setenv("TEMPORAL_ADDRESS", srv.GetFrontendHostPort())
	t.Setenv("TEMPORAL_NAMESPACE", srv.GetDefaultNamespace())
	t.Setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", srv.CAFile)
	var out bytes.Buffer
	err = run(ctx, append([]string{"audit", "--json"}, common...), &out, io.Discard)
	var report ledger.AuditReport
	if jerr := json.Unmarshal(out.Bytes(), &report); err != nil || jerr != nil || report.WorkflowsChecked {
		t.Errorf("audit without a client certificate: %v, %+v; want a clean audit that could not check the workflows", err, report)
	}
	t.Setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", certFile)
	t.Setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", keyFile)
	out.Reset()
	err = run(ctx, append([]string{"audit", "--json"}, common...), &out, io.Discard)
	report = ledger.AuditReport{}
	if jerr := json.Unmarshal(out.Bytes(), &report); err != nil || jerr != nil || !report.WorkflowsChecked || !report.WorkflowResultsChecked {
		t.Errorf("audit with TEMPORAL_TLS_CLIENT_*: %v, %+v; want invariants 6 and 8 checked", err, report)
	}

	// Repair, by TRANSFERD_* variables over TEMPORAL_* ones that point elsewhere.
	t.Setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
	t.Setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", filepath.Join(t.TempDir(), "missing.pem"))
	t.Setenv("TRANSFERD_TEMPORAL_ADDRESS", srv.GetFrontendHostPort())
	t.Setenv("TRANSFERD_TEMPORAL_TLS_CERT", certFile)
	out.Reset()
	if err := run(ctx, append([]string{"repair"}, common...), &out, io.Discard); err != nil || !strings.Contains(out.String(), "started 0 workflow runs") {
		t.Errorf("repair with TRANSFERD_TEMPORAL_*: %v, %q", err, out.String())
	}
}

// TestSubcommandAPIKey runs audit with --temporal-api-key against a real frontend that takes only
// that key: the key alone turns TLS on and gets the workflows checked, a wrong key does not, and the
// key is never printed.
func TestSubcommandAPIKey(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server")
	}
	securetemporal.IsolateEnv(t)
	ctx := context.Background()
	const key = "transferd-test-api-key"
	srv := securetemporal.StartAPIKey(t, key)
	dsn := pgtest.NewDatabase(t)
	if err := run(ctx, []string{"migrate", "--database-url", dsn}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	audit := func(apiKey string) (ledger.AuditReport, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(ctx, []string{"audit", "--json", "--database-url", dsn, "--temporal-address", srv.GetFrontendHostPort(),
			"--temporal-namespace", srv.GetDefaultNamespace(), "--temporal-tls-ca", srv.CAFile, "--temporal-api-key", apiKey}, &out, &errOut)
		var r ledger.AuditReport
		if jerr := json.Unmarshal(out.Bytes(), &r); err != nil || jerr != nil {
			t.Fatalf("audit: %v, %v\n%s", err, jerr, errOut.String())
		}
		return r, errOut.String()
	}
	r, stderr := audit(key)
	if !r.WorkflowsChecked {
		t.Errorf("audit with the key: workflows not checked:\n%s", stderr)
	}
	if strings.Contains(stderr, key) || !strings.Contains(stderr, "temporal-api-key=xxxxx") {
		t.Errorf("audit's settings show the key, or do not show it masked:\n%s", stderr)
	}
	if r, _ := audit("a-wrong-key"); r.WorkflowsChecked {
		t.Error("audit with a wrong key: the workflows were checked")
	}
}

// TestAPIKeyNeverPrinted sets the key the ways that reach a flag's value, and checks that neither the
// help nor the settings printed at start show it.
func TestAPIKeyNeverPrinted(t *testing.T) {
	securetemporal.IsolateEnv(t)
	const key = "never-print-this-key"
	t.Setenv("TRANSFERD_TEMPORAL_API_KEY", key)
	var help bytes.Buffer
	if err := run(context.Background(), []string{"worker", "-h"}, io.Discard, &help); err != exitError(2) {
		t.Errorf("worker -h: got %v, want exit status 2", err)
	}
	var c config
	fs := c.flagSet("worker", io.Discard, c.temporalFlags)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	var printed bytes.Buffer
	c.print(&printed, fs)
	if c.TemporalAPIKey != key {
		t.Errorf("TRANSFERD_TEMPORAL_API_KEY: got %q, want it read", c.TemporalAPIKey)
	}
	for name, out := range map[string]string{"help": help.String(), "settings": printed.String()} {
		if strings.Contains(out, key) || !strings.Contains(out, "xxxxx") {
			t.Errorf("%s: shows the key, or no masked key:\n%s", name, out)
		}
	}
}

// TestJWTSecretNeverPrinted: the JWT secret set through TRANSFERD_JWT_SECRET was the flag's default,
// which `transferd server -h` printed.
func TestJWTSecretNeverPrinted(t *testing.T) {
	securetemporal.IsolateEnv(t)
	const secret = "never-print-this-jwt-secret-of-32-bytes"
	t.Setenv("TRANSFERD_JWT_SECRET", secret)
	var help bytes.Buffer
	if err := run(context.Background(), []string{"server", "-h"}, io.Discard, &help); err != exitError(2) {
		t.Errorf("server -h: got %v, want exit status 2", err)
	}
	if strings.Contains(help.String(), secret) {
		t.Errorf("server -h shows the JWT secret:\n%s", help.String())
	}
}
