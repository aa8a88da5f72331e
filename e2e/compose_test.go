package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestDockerComposeConfig validates docker-compose.yml with `docker-compose config`, which needs no
// Docker engine, and checks the pieces operators rely on: every service, the start order, the Web UI
// on this machine only, PostgreSQL's connections, and that the API refuses to start without a token
// secret. internal/tcluster's TestServerEnvIsCompose checks the temporal service's environment.
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
		"  postgres:", "  temporal-schema:", "  temporal:", "  temporal-setup:", "  temporal-ui:", "  migrate:",
		"  api:", "  worker:",
		"condition: service_completed_successfully", "condition: service_healthy",
		"TRANSFERD_JWT_SECRET: validation-only", "TEMPORAL_ADDRESS: temporal:7233",
		"- 127.0.0.1:8233:8080", "max_connections=", "- temporal-setup",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("docker-compose config lacks %q", want)
		}
	}
	// The worker publishes no port, or --scale worker=3 could not run three of them.
	worker := composeService(cfg, "worker")
	if worker == "" {
		t.Fatalf("no worker service in:\n%s", cfg)
	}
	if strings.Contains(worker, "published") || strings.Contains(worker, "ports:") {
		t.Errorf("the worker publishes a port; it must scale:\n%s", worker)
	}
	// The API and the worker start only once the namespace and its search attributes exist.
	for _, name := range []string{"api", "worker"} {
		if !strings.Contains(composeService(cfg, name), "temporal-setup:\n        condition: service_completed_successfully") {
			t.Errorf("%s does not wait for temporal-setup to succeed:\n%s", name, composeService(cfg, name))
		}
	}
	if strings.Contains(cfg, "auto-setup") {
		t.Error("docker-compose.yml uses the deprecated temporalio/auto-setup image")
	}

	cmd = exec.Command(bin, "-f", "../docker-compose.yml", "config", "-q")
	cmd.Env = withoutEnv(os.Environ(), "TRANSFERD_JWT_SECRET")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "TRANSFERD_JWT_SECRET") {
		t.Errorf("without TRANSFERD_JWT_SECRET: got %v, %s; want a refusal naming it", err, out)
	}
}

// nextKey starts the next key at a service's level, or at the top level.
var nextKey = regexp.MustCompile(`\n {0,2}[^ ]`)

// composeService is one service's part of docker-compose config's output.
func composeService(cfg, name string) string {
	i := strings.Index(cfg, "\n  "+name+":\n")
	if i < 0 {
		return ""
	}
	svc := cfg[i+1:]
	if next := nextKey.FindStringIndex(svc); next != nil {
		svc = svc[:next[0]]
	}
	return svc
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
