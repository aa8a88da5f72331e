package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/server/temporaltest"

	"github.com/transferd/transferd/internal/tcluster"
	"github.com/transferd/transferd/worker"
)

// backend is a Temporal server the end-to-end tests run on.
type backend struct {
	name string
	// temporal returns a client of a namespace of t's own that has transferd's search attributes,
	// and the namespace; both go away when t ends.
	temporal func(t *testing.T) (client.Client, string)
}

// devServer is the Temporal dev server in-process (temporaltest: SQLite in memory), one per test.
var devServer = backend{name: "dev", temporal: func(t *testing.T) (client.Client, string) {
	ctx := context.Background()
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	if err := worker.EnsureSearchAttributes(ctx, c, ts.GetDefaultNamespace()); err != nil {
		t.Fatalf("search attributes: %v", err)
	}
	// A second call finds them all and changes nothing.
	if err := worker.EnsureSearchAttributes(ctx, c, ts.GetDefaultNamespace()); err != nil {
		t.Fatalf("search attributes again: %v", err)
	}
	return c, ts.GetDefaultNamespace()
}}

// pgCluster is the production-shaped cluster (internal/tcluster): the official temporal-server as
// four processes on PostgreSQL with SQL visibility, shared by the package's tests, a namespace per
// test.
var pgCluster = backend{name: "cluster", temporal: func(t *testing.T) (client.Client, string) {
	cl := sharedCluster(t)
	namespace := "e2e-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	start := time.Now()
	if err := cl.AddNamespace(context.Background(), namespace); err != nil {
		t.Fatalf("namespace: %v", err)
	}
	t.Logf("namespace %s ready in %s", namespace, time.Since(start).Round(time.Millisecond))
	c, err := client.Dial(client.Options{HostPort: cl.HostPort(), Namespace: namespace,
		Logger: tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatalf("dial the cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c, namespace
}}

// forEachBackend runs f as a subtest on each backend, on a stack of its own.
func forEachBackend(t *testing.T, f func(t *testing.T, s *stack)) {
	for _, b := range []backend{devServer, pgCluster} {
		t.Run(b.name, func(t *testing.T) { f(t, newStackOn(t, b)) })
	}
}

// shared is the package's one cluster, started by the first test that needs it and closed by
// TestMain.
var shared struct {
	once sync.Once
	c    *tcluster.Cluster
	err  error
	took time.Duration
}

// sharedCluster returns the package's cluster, starting it on first use, and prints the tail of its
// logs if t fails.
func sharedCluster(t *testing.T) *tcluster.Cluster {
	t.Helper()
	shared.once.Do(func() {
		start := time.Now()
		shared.c, shared.err = tcluster.Start(context.Background(), tcluster.Options{
			// The tests poll visibility every 100 ms, past the default 10 requests a second.
			DynamicConfig: map[string]any{"frontend.namespaceRPS.visibility": 100},
		})
		shared.took = time.Since(start)
		if shared.err == nil {
			fmt.Fprintf(os.Stderr, "e2e: Temporal cluster on PostgreSQL (%s) started in %s\n", shared.c.HostPort(), shared.took.Round(time.Millisecond))
		}
	})
	if shared.err != nil {
		t.Fatalf("start the Temporal cluster: %v", shared.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Temporal cluster logs:\n%s", shared.c.LogTail(30))
		}
	})
	return shared.c
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.c != nil {
		shared.c.Close()
	}
	os.Exit(code)
}
