package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/server/temporaltest"

	"github.com/transferd/transferd/devtemporal"
	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/internal/testbin"
)

// apiProcess is `transferd server` running as a subprocess.
type apiProcess struct {
	url    string
	stderr *bytes.Buffer
}

// startAPI starts `transferd server` on a free port and waits until it is ready.
func startAPI(t *testing.T, bin string, env []string, args ...string) *apiProcess {
	t.Helper()
	// Below the ephemeral range: an outgoing connection could take a port from it before the
	// process listens.
	addr, err := devtemporal.FreeAddrOutside(nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"server", "--addr", addr}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p := &apiProcess{url: "http://" + addr, stderr: &bytes.Buffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(p.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("transferd server was not ready after 60s:\n%s", p.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// call sends a JSON request and returns the status and the body.
func (p *apiProcess) call(t *testing.T, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// TestTwoAPIProcesses runs two `transferd server` processes on one database and checks that what
// happens on one holds on the other from its next request: the sign-up and sign-in limits count
// both processes' requests, and a key revoked, a token revoked, a user disabled or demoted on one is
// refused on the other.
func TestTwoAPIProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server and two API processes")
	}
	ctx := context.Background()
	bin := testbin.Transferd(t)
	dsn := pgtest.NewDatabase(t)
	if err := run(ctx, []string{"migrate", "--database-url", dsn}, io.Discard, io.Discard); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := run(ctx, []string{"users", "create", "--database-url", dsn, "--bcrypt-cost", "4", "--email", "root@example.com",
		"--password", "root-password", "--name", "Root", "--admin"}, io.Discard, io.Discard); err != nil {
		t.Fatalf("users create: %v", err)
	}
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	env := []string{"TRANSFERD_JWT_SECRET=" + strings.Repeat("s", 32), "TRANSFERD_BCRYPT_COST=4"}
	args := []string{"--database-url", dsn, "--temporal-address", ts.GetFrontendHostPort(), "--temporal-namespace", ts.GetDefaultNamespace(),
		"--sign-ups-per-hour", "2", "--sign-ins-per-minute", "12"}
	a, b := startAPI(t, bin, env, args...), startAPI(t, bin, env, args...)

	signUp := func(p *apiProcess, email string) int {
		status, _ := p.call(t, "POST", "/v1/users", "", map[string]string{"email": email, "password": "password-123", "name": "N"})
		return status
	}
	signIn := func(p *apiProcess, email, password string) (int, string) {
		status, body := p.call(t, "POST", "/v1/auth/token", "", map[string]string{"email": email, "password": password})
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		_ = json.Unmarshal(body, &tok)
		return status, tok.AccessToken
	}
	want := func(what string, got, want int, body ...[]byte) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: got %d %s, want %d", what, got, body, want)
		}
	}

	// The sign-up limit (2 an hour per address) counts both processes.
	want("sign-up on A", signUp(a, "ada@example.com"), http.StatusCreated)
	want("sign-up on B", signUp(b, "bob@example.com"), http.StatusCreated)
	want("third sign-up on A", signUp(a, "cy@example.com"), http.StatusTooManyRequests)
	want("third sign-up on B", signUp(b, "cy@example.com"), http.StatusTooManyRequests)

	// Two sign-ins a minute per email and address (a sixth of 12): guesses on A spend B's too.
	for range 2 {
		status, _ := signIn(a, "bob@example.com", "wrong-password")
		want("a guess on A", status, http.StatusUnauthorized)
	}
	status, _ := signIn(b, "bob@example.com", "password-123")
	want("bob's sign-in on B after two guesses on A", status, http.StatusTooManyRequests)

	status, ada := signIn(b, "ada@example.com", "password-123")
	want("ada's sign-in on B", status, http.StatusOK)
	status, root := signIn(a, "root@example.com", "root-password")
	want("root's sign-in on A", status, http.StatusOK)

	// A key made on A works on B; revoked on B, it is refused on A.
	status, body := a.call(t, "POST", "/v1/api-keys", ada, map[string]any{"name": "svc"})
	want("key on A", status, http.StatusCreated, body)
	var k struct{ ID, Key string }
	_ = json.Unmarshal(body, &k)
	status, _ = b.call(t, "GET", "/v1/me", k.Key, nil)
	want("the key on B", status, http.StatusOK)
	status, _ = b.call(t, "DELETE", "/v1/api-keys/"+k.ID, ada, nil)
	want("revoke on B", status, http.StatusNoContent)
	status, _ = a.call(t, "GET", "/v1/me", k.Key, nil)
	want("the revoked key on A", status, http.StatusUnauthorized)

	// A token revoked on A is refused on B.
	status, spare := signIn(a, "root@example.com", "root-password")
	want("root's second sign-in", status, http.StatusOK)
	status, _ = a.call(t, "POST", "/v1/auth/revoke", spare, nil)
	want("revoke a token on A", status, http.StatusNoContent)
	status, _ = b.call(t, "GET", "/v1/me", spare, nil)
	want("the revoked token on B", status, http.StatusUnauthorized)

	// A promotion on B holds on A for a token issued before it, and so do a demotion and a disable.
	var ada2 struct{ ID string }
	_, body = a.call(t, "GET", "/v1/me", ada, nil)
	_ = json.Unmarshal(body, &ada2)
	if _, err := uuid.Parse(ada2.ID); err != nil {
		t.Fatalf("ada's id: %s", body)
	}
	status, _ = a.call(t, "GET", "/v1/users", ada, nil)
	want("ada lists users before her promotion", status, http.StatusForbidden)
	status, body = b.call(t, "PATCH", "/v1/users/"+ada2.ID, root, map[string]any{"role": "admin"})
	want("promote on B", status, http.StatusOK, body)
	status, _ = a.call(t, "GET", "/v1/users", ada, nil)
	want("ada lists users on A once promoted", status, http.StatusOK)
	status, _ = b.call(t, "PATCH", "/v1/users/"+ada2.ID, root, map[string]any{"role": "user"})
	want("demote on B", status, http.StatusOK)
	status, _ = a.call(t, "GET", "/v1/users", ada, nil)
	want("ada lists users on A once demoted", status, http.StatusForbidden)
	status, _ = b.call(t, "PATCH", "/v1/users/"+ada2.ID, root, map[string]any{"status": "disabled"})
	want("disable on B", status, http.StatusOK)
	status, _ = a.call(t, "GET", "/v1/me", ada, nil)
	want("ada's token on A once disabled", status, http.StatusUnauthorized)
}
