//go:build !nodev

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/devtemporal"
	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/internal/testbin"
)

// devProcess is `transferd dev` running as a subprocess.
type devProcess struct {
	cmd      *exec.Cmd
	api      string
	password string // the bootstrap admin's, when this start created it
	stderr   *bytes.Buffer
}

func portOf(addr string) int {
	_, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	return p
}

// startDev starts `transferd dev` and waits for its ready line.
func startDev(t *testing.T, bin string, args ...string) *devProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"dev"}, args...)...)
	cmd.Env = append(os.Environ(), "TRANSFERD_BCRYPT_COST=4")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &devProcess{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	type result struct {
		banner devBanner
		err    error
	}
	ready := make(chan result, 1)
	go func() {
		b, err := readDevBanner(stdout)
		ready <- result{b, err}
	}()
	select {
	case r := <-ready:
		if r.err != nil {
			t.Fatalf("%v:\n%s", r.err, p.stderr)
		}
		p.api, p.password = r.banner.API, r.banner.Password
		return p
	case <-time.After(90 * time.Second):
		t.Fatalf("transferd dev was not ready after 90s:\n%s", p.stderr)
	}
	return nil
}

// call sends a JSON request to the dev API and decodes the answer into out.
func (p *devProcess) call(method, path, token string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.api+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, err
	}
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			return res.StatusCode, fmt.Errorf("decode %s: %w", b, err)
		}
	}
	return res.StatusCode, nil
}

// TestDevSurvivesSIGKILL starts `transferd dev` on free ports with a database it must create, runs a
// transfer, kills the process with SIGKILL in the middle of a batch of transfers, starts it again on
// the same data, and checks that every transfer the API accepted reaches a final status and that the
// audit is clean.
func TestDevSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs transferd dev")
	}
	began := time.Now()
	bin := testbin.Transferd(t)
	t.Logf("built in %s", time.Since(began).Round(time.Millisecond))
	dsn := pgtest.NewDatabaseURL(t)
	temporalPort, err := devtemporal.FreeFrontendPort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	temporalAddr := fmt.Sprintf("127.0.0.1:%d", temporalPort)
	apiAddr, err := devtemporal.FreeAddrOutside(devtemporal.Ports(temporalPort))
	if err != nil {
		t.Fatal(err)
	}
	uiAddr, err := devtemporal.FreeAddrOutside(append(devtemporal.Ports(temporalPort), portOf(apiAddr)))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--database-url", dsn, "--data-dir", t.TempDir(), "--addr", apiAddr,
		"--temporal-address", temporalAddr, "--ui-addr", uiAddr, "--reconcile-every", "2s"}

	dev := startDev(t, bin, args...)
	if dev.password == "" {
		t.Fatal("the first start printed no bootstrap admin")
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if code, err := dev.call("POST", "/v1/auth/token", "", map[string]string{"email": bootstrapAdminEmail, "password": dev.password}, &tok); err != nil || code != 200 {
		t.Fatalf("admin token: %d %v", code, err)
	}
	admin := tok.AccessToken
	var accounts [2]struct{ ID string }
	for i := range accounts {
		if code, err := dev.call("POST", "/v1/accounts", admin, map[string]string{"currency": "USD"}, &accounts[i]); err != nil || code != 201 {
			t.Fatalf("account: %d %v", code, err)
		}
	}
	var tr struct{ ID, Status string }
	code, err := dev.call("POST", "/v1/deposits?wait=30s", admin, map[string]any{"account_id": accounts[0].ID, "amount": 1_000_000, "currency": "USD"}, &tr)
	if err != nil || code != 201 || tr.Status != "completed" {
		t.Fatalf("deposit: %d %s %v", code, tr.Status, err)
	}
	code, err = dev.call("POST", "/v1/transfers?wait=30s", admin, map[string]any{"from_account_id": accounts[0].ID, "to_account_id": accounts[1].ID, "amount": 100, "currency": "USD"}, &tr)
	if err != nil || code != 201 || tr.Status != "completed" {
		t.Fatalf("transfer: %d %s %v", code, tr.Status, err)
	}

	// A batch of transfers in both directions from several clients; SIGKILL lands in the middle.
	var (
		mu       sync.Mutex
		accepted []string
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	// The kill lands once enough transfers were accepted, however slow the machine is.
	const enough = 20
	enoughAccepted := make(chan struct{})
	for c := range 6 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				from, to := accounts[0].ID, accounts[1].ID
				if (c+i)%3 == 0 {
					from, to = to, from
				}
				id := uuid.NewString()
				code, err := dev.call("POST", "/v1/transfers", admin, map[string]any{"id": id, "from_account_id": from, "to_account_id": to, "amount": 1 + i%50, "currency": "USD"}, nil)
				if err != nil {
					return // the process is gone
				}
				if code == http.StatusAccepted {
					mu.Lock()
					accepted = append(accepted, id)
					if len(accepted) == enough {
						close(enoughAccepted)
					}
					mu.Unlock()
				}
			}
		})
	}
	select {
	case <-enoughAccepted:
	case <-time.After(90 * time.Second):
		t.Fatalf("fewer than %d transfers accepted in 90 s", enough)
	}
	if err := dev.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = dev.cmd.Wait()
	close(stop)
	wg.Wait()
	t.Logf("%d transfers accepted before SIGKILL", len(accepted))

	restarted := time.Now()
	dev = startDev(t, bin, args...)
	t.Logf("restarted in %s", time.Since(restarted).Round(time.Millisecond))
	if dev.password != "" {
		t.Errorf("the restart printed a new bootstrap admin; it must be created once")
	}
	// The token survives the restart: the secret is kept in the data dir.
	deadline := time.Now().Add(90 * time.Second)
	for _, id := range accepted {
		for {
			var got struct{ Status string }
			code, err := dev.call("GET", "/v1/transfers/"+id, admin, nil, &got)
			if err != nil || code != 200 {
				t.Fatalf("transfer %s after restart: %d %v", id, code, err)
			}
			if got.Status == "completed" || got.Status == "failed" || got.Status == "cancelled" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("transfer %s still %s 90s after the restart", id, got.Status)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	t.Logf("every accepted transfer final %s after the restart", time.Since(restarted).Round(time.Millisecond))
	var out, errOut bytes.Buffer
	err = run(context.Background(), []string{"audit", "--database-url", dsn, "--temporal-address", temporalAddr}, &out, &errOut)
	if err != nil {
		t.Errorf("audit after the restart: %v\n%s%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "OK, no violations") || strings.Contains(out.String(), "not checked") {
		t.Errorf("audit output:\n%s", out.String())
	}
}

// TestBenchQuick runs `transferd bench suite --quick` to keep the tool working: every target runs on
// both servers (the dev server, and a Temporal cluster on PostgreSQL with the API and the workers as
// processes of their own), both audits after them are clean, and the report is written with every
// row, CPU per transfer included. The figures are not asserted.
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs transferd dev")
	}
	bin := testbin.Transferd(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "benchmarks.md")
	cmd := exec.Command(bin, "bench", "suite", "--quick", "--database-url", pgtest.AdminURL(), "--out", out, "--json", filepath.Join(dir, "results.json"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		// The error itself is on stderr, after the progress bars.
		errTail := stderr.String()
		errTail = errTail[max(0, len(errTail)-2000):]
		t.Fatalf("bench suite: %v\n%s\nstderr's end:\n%s", err, stdout.String(), errTail)
	}
	if n := strings.Count(stdout.String(), "audit: OK, no violations"); n != 2 {
		t.Errorf("bench output has %d clean audits, want 2 (dev and cluster)", n)
	}
	report, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{"| dev | floor | random |", "| dev | sql | random |", "| dev | saga | random |", "| dev | saga | hot |", "| dev | saga | opposite |",
		"| dev | naive | random |", "| dev | split | random |", "peak RSS of the API process", "peak RSS of the worker process", "saga / floor", "saga / naive",
		"| cluster | floor | random | c=4 |", "| cluster, 1 worker | saga | random | c=4 |", "| cluster, 1 worker | saga | random | 20/s |",
		"| cluster, 2 workers | saga | random | c=4 |", "| cluster, 2 workers | naive | random | c=4 |", "| cluster | saga (1 worker) / floor", "| dev | floor-eager | random |", "| cluster | floor-eager | random |",
		"| cluster | p50 accepted-to-completed at 20/s (ledger) |", "Audit after the cluster's runs: ", "## CPU per transfer", "temporal history", "## The ledger's view", "(ledger)",
		"| dev | saga+webhooks | random |", "## Events and webhooks", "| deliveries (per transfer) |", "/ 0 / 0 |"} {
		if !strings.Contains(string(report), row) {
			t.Errorf("report lacks %q", row)
		}
	}
}

// TestMain removes the shared test binary after the run.
func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }
