package temporalclient_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/transferd/transferd/internal/securetemporal"
	"github.com/transferd/transferd/internal/temporalclient"
)

// dial connects with the options s makes and asks the server about the namespace, which is what a
// worker or the API does first. The client is closed when the test ends.
func dial(t *testing.T, s temporalclient.Settings, timeout time.Duration) (client.Client, error) {
	t.Helper()
	o, err := temporalclient.Options(s)
	if err != nil {
		t.Fatalf("Options: %v", err)
	}
	return dialOptions(t, o, timeout)
}

func dialOptions(t *testing.T, o client.Options, timeout time.Duration) (client.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := client.DialContext(ctx, o)
	if err != nil {
		return nil, err
	}
	t.Cleanup(c.Close)
	if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: o.Namespace}); err != nil {
		return nil, err
	}
	return c, nil
}

// TestMTLS runs against a real frontend that requires a client certificate: without one, or with one
// from a CA it does not trust, or without TLS, the client is refused; with the certificate given as
// files (through the settings or the TEMPORAL_TLS_* variables) it describes the namespace and runs a
// workflow on a worker of that client.
func TestMTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server")
	}
	securetemporal.IsolateEnv(t)
	trusted, untrusted := securetemporal.NewCA(t, "trusted-clients"), securetemporal.NewCA(t, "untrusted-clients")
	srv := securetemporal.StartMTLS(t, trusted)
	dir := t.TempDir()
	certFile, keyFile := trusted.IssueFiles(t, dir, "worker")
	badCert, badKey := untrusted.IssueFiles(t, dir, "stranger")
	base := temporalclient.Settings{Address: srv.GetFrontendHostPort(), Namespace: srv.GetDefaultNamespace(), TLSCA: srv.CAFile}

	// With the certificate first: the server is ready once it answers.
	withCert := base
	withCert.TLSCert, withCert.TLSKey = certFile, keyFile
	c, err := dial(t, withCert, 30*time.Second)
	if err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	w := sdkworker.New(c, "mtls", sdkworker.Options{})
	w.RegisterWorkflow(echo)
	if err := w.Start(); err != nil {
		t.Fatalf("worker over mTLS: %v", err)
	}
	defer w.Stop()
	if got := runEcho(t, c, "mtls", "over mTLS"); got != "over mTLS" {
		t.Errorf("workflow result: got %q, want %q", got, "over mTLS")
	}

	stranger := base
	stranger.TLSCert, stranger.TLSKey = badCert, badKey
	plain := base
	plain.TLSCA, plain.TLS = "", new(bool)
	// The refusal reads "certificate required", "bad certificate", or a broken pipe when the server
	// hangs up first; any error will do, as the server has just let the certificate in.
	for name, s := range map[string]temporalclient.Settings{"no client certificate": base, "an untrusted CA's certificate": stranger, "no TLS": plain} {
		if _, err := dial(t, s, 3*time.Second); err == nil {
			t.Errorf("%s: the server let the client in", name)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}

	// The same files through the SDK's variables.
	t.Setenv("TEMPORAL_ADDRESS", srv.GetFrontendHostPort())
	t.Setenv("TEMPORAL_NAMESPACE", srv.GetDefaultNamespace())
	t.Setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", srv.CAFile)
	t.Setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", certFile)
	t.Setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", keyFile)
	if _, err := dial(t, temporalclient.Settings{}, 10*time.Second); err != nil {
		t.Errorf("with TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH: %v", err)
	}
}

// TestCertificateRotation replaces the client certificate's files under options already built, as a
// running worker has them: once the server trusts only the new CA, the old certificate is refused,
// and a new connection made with the same options presents the new certificate, without a restart.
func TestCertificateRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server")
	}
	securetemporal.IsolateEnv(t)
	oldCA, newCA := securetemporal.NewCA(t, "old-clients"), securetemporal.NewCA(t, "new-clients")
	srv := securetemporal.StartMTLS(t, oldCA)
	dir := t.TempDir()
	certFile, keyFile := oldCA.IssueFiles(t, dir, "worker")
	o, err := temporalclient.Options(temporalclient.Settings{Address: srv.GetFrontendHostPort(), Namespace: srv.GetDefaultNamespace(),
		TLSCA: srv.CAFile, TLSCert: certFile, TLSKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialOptions(t, o, 30*time.Second); err != nil {
		t.Fatalf("before the rotation: %v", err)
	}

	srv.TrustClientCAs(newCA)
	if _, err := dialOptions(t, o, 3*time.Second); err == nil {
		t.Fatal("the server still takes the old certificate after trusting only the new CA; the test proves nothing")
	}
	// The rotation, as cert-manager or a secret volume does it: new files in place of the old.
	if got, _ := newCA.IssueFiles(t, dir, "worker"); got != certFile {
		t.Fatalf("rotated certificate written to %s, want %s", got, certFile)
	}
	if _, err := dialOptions(t, o, 10*time.Second); err != nil {
		t.Errorf("after the rotation, with the options built before it: %v", err)
	}
}

// TestAPIKey runs against a real frontend that serves TLS and reads the authorization header: the
// key reaches it as `Bearer <key>`, TLS comes on with the key alone, a wrong key is refused, and the
// settings' key wins over TEMPORAL_API_KEY and the profile's.
func TestAPIKey(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server")
	}
	securetemporal.IsolateEnv(t)
	const key = "the-right-key"
	srv := securetemporal.StartAPIKey(t, key)
	base := temporalclient.Settings{Address: srv.GetFrontendHostPort(), Namespace: srv.GetDefaultNamespace(), TLSCA: srv.CAFile}

	right := base
	right.APIKey = key
	if _, err := dial(t, right, 30*time.Second); err != nil {
		t.Fatalf("with the right key: %v", err)
	}
	if got := srv.Authorizations(); !slices.Contains(got, "Bearer "+key) {
		t.Errorf("authorization headers the server saw: got %q, want one %q", got, "Bearer "+key)
	}

	wrong := base
	wrong.APIKey = "a-wrong-key"
	if _, err := dial(t, wrong, 3*time.Second); err == nil {
		t.Error("with a wrong key: the server let the client in")
	}
	if got := srv.Authorizations(); !slices.Contains(got, "Bearer a-wrong-key") {
		t.Errorf("the wrong key never reached the server (headers %q): its refusal proves nothing", got)
	}
	if _, err := dial(t, base, 3*time.Second); err == nil {
		t.Error("without a key: the server let the client describe the namespace")
	}

	// TEMPORAL_API_KEY and a profile's api_key, under the settings' key.
	toml := filepath.Join(t.TempDir(), "temporal.toml")
	securetemporal.WriteFile(t, toml, []byte("[profile.cloud]\napi_key = \"a-wrong-key\"\n"))
	t.Setenv("TEMPORAL_CONFIG_FILE", toml)
	t.Setenv("TEMPORAL_PROFILE", "cloud")
	if _, err := dial(t, base, 3*time.Second); err == nil {
		t.Error("with the profile's wrong key: the server let the client in")
	}
	t.Setenv("TEMPORAL_API_KEY", key)
	if _, err := dial(t, base, 10*time.Second); err != nil {
		t.Errorf("with TEMPORAL_API_KEY over the profile's key: %v", err)
	}
	t.Setenv("TEMPORAL_API_KEY", "a-wrong-key")
	if _, err := dial(t, right, 10*time.Second); err != nil {
		t.Errorf("with the settings' key over TEMPORAL_API_KEY: %v", err)
	}
	for _, h := range srv.Authorizations() {
		if h != "" && !strings.HasPrefix(h, "Bearer ") {
			t.Errorf("authorization header %q is not a bearer key", h)
		}
	}
}

// echo is the trivial workflow the mTLS test runs.
func echo(_ workflow.Context, s string) (string, error) { return s, nil }

func runEcho(t *testing.T, c client.Client, queue, in string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: queue}, echo, in)
	if err != nil {
		t.Fatalf("start workflow: %v", err)
	}
	var out string
	if err := run.Get(ctx, &out); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	return out
}
