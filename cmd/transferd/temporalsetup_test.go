package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/server/temporaltest"

	"github.com/transferd/transferd/worker"
)

// TestTemporalSetup runs docker-compose's setup job against a fresh server: it registers a new
// namespace with the retention asked for and exactly transferd's search attributes, a second run
// changes nothing, a run with another retention sets it, and a retention under a day is refused.
func TestTemporalSetup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server")
	}
	ctx := context.Background()
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	setup := func(retention string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, []string{"temporal-setup", "--temporal-address", ts.GetFrontendHostPort(),
			"--temporal-namespace", "payments", "--retention", retention}, &out, io.Discard)
		return out.String(), err
	}
	retention := func() time.Duration {
		t.Helper()
		d, err := ts.GetDefaultClient().WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "payments"})
		if err != nil {
			t.Fatal(err)
		}
		return d.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration()
	}

	out, err := setup("72h")
	if err != nil || !strings.Contains(out, "registered namespace payments") {
		t.Fatalf("first run: got %q, %v; want the namespace registered", out, err)
	}
	if got := retention(); got != 72*time.Hour {
		t.Errorf("retention: got %s, want 72h", got)
	}
	sa, err := ts.GetDefaultClient().OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(sa.GetCustomAttributes()), len(worker.SearchAttributes); got != want {
		t.Errorf("custom search attributes: got %v, want only transferd's %v", sa.GetCustomAttributes(), worker.SearchAttributes)
	}
	for name, typ := range worker.SearchAttributes {
		if got := sa.GetCustomAttributes()[name]; got != typ {
			t.Errorf("search attribute %s: got %s, want %s", name, got, typ)
		}
	}

	if out, err := setup("72h"); err != nil || !strings.Contains(out, "exists with retention 72h") {
		t.Errorf("second run: got %q, %v; want nothing changed", out, err)
	}
	if out, err := setup("96h"); err != nil || !strings.Contains(out, "retention set to 96h") {
		t.Errorf("run with another retention: got %q, %v; want it set", out, err)
	}
	if got := retention(); got != 96*time.Hour {
		t.Errorf("retention after the third run: got %s, want 96h", got)
	}
	if _, err := setup("1h"); err != exitError(2) {
		t.Errorf("--retention 1h: got %v, want exit status 2", err)
	}
}
