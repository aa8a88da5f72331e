package tcluster_test

import (
	"context"
	"database/sql"
	"log/slog"
	"slices"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // The database/sql driver "pgx".
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/internal/tcluster"
)

// echo is the workflow of the test: it waits on a timer, so a run spans the faults, and returns its
// input.
func echo(ctx workflow.Context, s string) (string, error) {
	if err := workflow.Sleep(ctx, time.Second); err != nil {
		return "", err
	}
	return s, nil
}

// TestCluster starts a cluster, runs workflows on it, and SIGKILLs and restarts history and
// matching and restarts the frontend while a workflow runs: each service comes back on its ports,
// rejoins the membership, and the workflow completes. Close drops the cluster's databases.
func TestCluster(t *testing.T) {
	ctx := context.Background()
	var pers tcluster.Persistence
	t.Cleanup(func() {
		// Registered first, so it runs after the cluster's Close.
		if pers.Database == "" {
			return
		}
		if left := databases(t, pers.Database, pers.VisibilityDatabase); len(left) > 0 {
			t.Errorf("databases left after Close: %v", left)
		}
	})
	c := tcluster.ForTest(t, tcluster.Options{HistoryShards: 2})
	pers = c.Persistence()
	if got := databases(t, pers.Database, pers.VisibilityDatabase); len(got) != 2 {
		t.Fatalf("databases of the cluster: got %v, want %s and %s", got, pers.Database, pers.VisibilityDatabase)
	}
	for _, svc := range tcluster.Services {
		if !c.Running(svc) {
			t.Errorf("%s is not running", svc)
		}
	}

	tc, err := client.Dial(client.Options{HostPort: c.HostPort(), Namespace: c.Namespace(),
		Logger: tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	w := sdkworker.New(tc, "tcluster-test", sdkworker.Options{})
	w.RegisterWorkflow(echo)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	run := func(id string) client.WorkflowRun {
		t.Helper()
		r, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "tcluster-test"}, echo, id)
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		return r
	}
	result := func(r client.WorkflowRun) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		var got string
		if err := r.Get(ctx, &got); err != nil || got != r.GetID() {
			t.Fatalf("workflow %s: got %q, %v; want its id", r.GetID(), got, err)
		}
	}
	result(run("before"))

	for _, step := range []struct {
		name  string
		fault func() error
	}{
		{"history killed", func() error { c.Kill(tcluster.History); return c.StartService(ctx, tcluster.History) }},
		{"matching killed", func() error { c.Kill(tcluster.Matching); return c.StartService(ctx, tcluster.Matching) }},
		{"frontend restarted", func() error { return c.Restart(ctx, tcluster.Frontend) }},
	} {
		r := run(step.name)
		start := time.Now()
		if err := step.fault(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		t.Logf("%s: back in %s", step.name, time.Since(start).Round(time.Millisecond))
		result(r)
	}
	result(run("after"))
}

// databases returns which of names exist on the admin server.
func databases(t *testing.T, names ...string) []string {
	t.Helper()
	db, err := sql.Open("pgx", pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT datname FROM pg_database")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(names, n) {
			found = append(found, n)
		}
	}
	return found
}
