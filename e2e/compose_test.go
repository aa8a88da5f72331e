package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDockerComposeConfig validates docker-compose.yml with `docker-compose config`, which needs no
// Docker engine, and checks the pieces operators rely on: every service, the start order, and that
// the API refuses to start without a token secret.
func TestDockerComposeConfig(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("docker-compose is not installed (apt-get install docker-compose)")
	}
	cmd := exec.Command(bin, "-f", "../docker-compose.yml", "config")
	cmd.Env = append(os.Environ(), "TRANSFERD_JWT_SECRET=validation-only")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	cfg := string(out)
	for _, want := range []string{
		"  postgres:", "  temporal:", "  temporal-ui:", "  migrate:", "  api:", "  worker:",
		"condition: service_completed_successfully", "condition: service_healthy",
		"TRANSFERD_JWT_SECRET: validation-only", "TEMPORAL_ADDRESS: temporal:7233",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("docker-compose config lacks %q", want)
		}
	}
	// The worker publishes no port, or --scale worker=3 could not run three of them.
	worker := cfg[strings.Index(cfg, "  worker:"):]
	if next := strings.Index(worker[1:], "\n  ") + 1; next > 0 {
		worker = worker[:next]
	}
	if strings.Contains(worker, "published") || strings.Contains(worker, "ports:") {
		t.Errorf("the worker publishes a port; it must scale:\n%s", worker)
	}

	cmd = exec.Command(bin, "-f", "../docker-compose.yml", "config", "-q")
	cmd.Env = withoutEnv(os.Environ(), "TRANSFERD_JWT_SECRET")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "TRANSFERD_JWT_SECRET") {
		t.Errorf("without TRANSFERD_JWT_SECRET: got %v, %s; want a refusal naming it", err, out)
	}
}

func withoutEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
