package tcluster

import (
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestServerEnvIsCompose checks that the cluster configures temporal-server as docker-compose.yml
// configures its temporal service: the same variables of the embedded config template, apart from
// the ones that separate processes on one host need (their ports and broadcast address), and the
// same values where they do not depend on the host.
func TestServerEnvIsCompose(t *testing.T) {
	data, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	temporal, ok := compose.Services["temporal"]
	if !ok {
		t.Fatal("docker-compose.yml has no temporal service")
	}
	c, err := newCluster(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ours := map[string]string{}
	for _, kv := range c.Env() {
		k, v, _ := strings.Cut(kv, "=")
		ours[k] = v
	}
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		delete(ours, k)
	}
	for k := range temporal.Environment {
		if _, ok := ours[k]; !ok {
			t.Errorf("docker-compose.yml gives temporal %s; the cluster does not", k)
		}
	}
	for k := range ours {
		if _, ok := temporal.Environment[k]; !ok && !slices.Contains(perProcessVars, k) {
			t.Errorf("the cluster gives temporal-server %s; docker-compose.yml does not", k)
		}
	}
	for _, k := range []string{"DB", "TEMPORAL_ALLOW_NO_AUTH"} {
		if ours[k] != temporal.Environment[k] {
			t.Errorf("%s: cluster %q, docker-compose.yml %q", k, ours[k], temporal.Environment[k])
		}
	}
	// The compose file names the shard count: it can never change after the first start.
	if temporal.Environment["NUM_HISTORY_SHARDS"] == "" {
		t.Error("docker-compose.yml leaves NUM_HISTORY_SHARDS to the image's default")
	}
	// The images are of the server version this module builds.
	bin := strings.TrimPrefix(serverVersion(t), "v")
	for name, want := range map[string]string{"temporal": "temporalio/server:" + bin, "temporal-schema": "temporalio/admin-tools:" + bin} {
		if got := compose.Services[name].Image; got != want {
			t.Errorf("service %s: image %q, want %q (go.temporal.io/server %s)", name, got, want, bin)
		}
	}
}

// serverVersion is go.mod's version of go.temporal.io/server.
func serverVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == serverModule {
			return f[1]
		}
	}
	t.Fatalf("go.mod does not require %s", serverModule)
	return ""
}
