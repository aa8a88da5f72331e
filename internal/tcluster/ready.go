package tcluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/api/adminservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/transferd/transferd/worker"
)

// readyPatience is how long a service has to become ready after its start: on two busy cores a
// cold start of the four services takes a while.
const readyPatience = 2 * time.Minute

// healthNames are the gRPC health service names that temporal-server sets SERVING once a service
// serves: the frontend once it answers, history once it owns its shards, matching once it started.
// The worker service serves no health check; it is ready once the membership has it.
var healthNames = map[Service]string{
	Frontend: "temporal.api.workflowservice.v1.WorkflowService",
	History:  "temporal.api.workflowservice.v1.HistoryService",
	Matching: "temporal.api.workflowservice.v1.MatchingService",
}

// waitReady waits until svc answers its health check and the frontend's view of the membership has
// it, or fails at once if its process exits.
func (c *Cluster) waitReady(ctx context.Context, svc Service) error {
	ctx, cancel := context.WithTimeout(ctx, readyPatience)
	defer cancel()
	frontend, err := grpc.NewClient(c.HostPort(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("tcluster: %w", err)
	}
	defer frontend.Close()
	own := frontend
	if svc != Frontend {
		if own, err = grpc.NewClient(c.Address(svc), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			return fmt.Errorf("tcluster: %w", err)
		}
		defer own.Close()
	}
	var last error
	for {
		c.mu.Lock()
		p := c.procs[svc]
		c.mu.Unlock()
		if p.exited() {
			return fmt.Errorf("tcluster: %s exited at start: %v (see %s)", svc, p.err, c.LogFile(svc))
		}
		if last = c.ready(ctx, svc, own, frontend); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tcluster: %s not ready after %s: %w", svc, readyPatience, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ready returns nil if svc is ready, else why not.
func (c *Cluster) ready(ctx context.Context, svc Service, own, frontend *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if name, ok := healthNames[svc]; ok {
		resp, err := healthpb.NewHealthClient(own).Check(ctx, &healthpb.HealthCheckRequest{Service: name})
		if err != nil {
			return fmt.Errorf("health check: %w", err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health check: %s", resp.GetStatus())
		}
	}
	desc, err := adminservice.NewAdminServiceClient(frontend).DescribeCluster(ctx, &adminservice.DescribeClusterRequest{})
	if err != nil {
		return fmt.Errorf("describe cluster: %w", err)
	}
	addr := c.Address(svc)
	var seen []string
	for _, ring := range desc.GetMembershipInfo().GetRings() {
		if ring.GetRole() != string(svc) {
			continue
		}
		for _, m := range ring.GetMembers() {
			if m.GetIdentity() == addr {
				return nil
			}
			seen = append(seen, m.GetIdentity())
		}
	}
	return fmt.Errorf("the membership's %s ring has %v, not %s", svc, seen, addr)
}

// AddNamespace registers a namespace with the cluster's retention and transferd's search attributes
// (worker.SetupNamespace) and returns once a workflow can start in it and a visibility query on the
// search attributes is accepted. Tests that share a cluster take a namespace each.
func (c *Cluster) AddNamespace(ctx context.Context, namespace string) error {
	ctx, cancel := context.WithTimeout(ctx, readyPatience)
	defer cancel()
	tc, err := client.DialContext(ctx, client.Options{HostPort: c.HostPort(), Namespace: namespace, Logger: quietLogger{}})
	if err != nil {
		return fmt.Errorf("tcluster: dial %s: %w", c.HostPort(), err)
	}
	defer tc.Close()
	if _, err := worker.SetupNamespace(ctx, tc, namespace, c.opts.Retention); err != nil {
		return fmt.Errorf("tcluster: %w", err)
	}
	query := probeQuery()
	for {
		err := c.namespaceReady(ctx, tc, namespace, query)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tcluster: namespace %s not ready: %w", namespace, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// namespaceReady returns nil once visibility accepts query in namespace and history answers for it.
func (c *Cluster) namespaceReady(ctx context.Context, tc client.Client, namespace, query string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: namespace, Query: query}); err != nil {
		return fmt.Errorf("list %q: %w", query, err)
	}
	// History answers "not found" for a workflow that never ran once it owns the workflow's shard.
	_, err := tc.DescribeWorkflowExecution(ctx, "tcluster-probe-"+randomHex(8), "")
	var notFound *serviceerror.NotFound
	if !errors.As(err, &notFound) {
		return fmt.Errorf("describe a workflow that never ran: got %v, want not found", err)
	}
	return nil
}

// probeQuery is a visibility query on every one of transferd's search attributes.
func probeQuery() string {
	var terms []string
	for name, typ := range worker.SearchAttributes {
		switch typ {
		case enumspb.INDEXED_VALUE_TYPE_INT:
			terms = append(terms, name+" = 0")
		case enumspb.INDEXED_VALUE_TYPE_DATETIME:
			terms = append(terms, name+" = '2000-01-01T00:00:00Z'")
		default:
			terms = append(terms, name+" = 'tcluster-probe'")
		}
	}
	sort.Strings(terms)
	return strings.Join(terms, " AND ")
}

// quietLogger drops the SDK client's log lines.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
