// Package worker wires the Temporal worker: it registers TransferWorkflow and the saga's activities
// on the task queue, and registers the custom search attributes the workflow keeps current. It is
// the one package that imports the SDK's worker package.
package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	namespacepb "go.temporal.io/api/namespace/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/workflows"
)

// Options configures a worker. Zero values take the defaults.
type Options struct {
	// TaskQueue defaults to workflows.DefaultTaskQueue.
	TaskQueue string
	// MaxConcurrentActivities bounds the activities running at once; default 64.
	MaxConcurrentActivities int
	// MaxConcurrentWorkflowTasks bounds the workflow tasks running at once; default 64.
	MaxConcurrentWorkflowTasks int
	// WorkflowTaskPollers is how many long polls wait for workflow tasks at once; default 8. A
	// workflow started without eager start reaches a worker only through a waiting poll, and the
	// SDK's default of 2 left transfers queued in matching for a second or more at 50 per second.
	WorkflowTaskPollers int
	// StopTimeout is how long Stop waits for running activities to finish; default 30s.
	StopTimeout time.Duration
}

// New returns a worker that runs transfers on opts.TaskQueue with the given activities. Start it
// with Run or Start; Stop lets running activities finish for up to opts.StopTimeout.
func New(c client.Client, acts *activities.Activities, opts Options) sdkworker.Worker {
	if opts.TaskQueue == "" {
		opts.TaskQueue = workflows.DefaultTaskQueue
	}
	if opts.MaxConcurrentActivities <= 0 {
		opts.MaxConcurrentActivities = 64
	}
	if opts.MaxConcurrentWorkflowTasks <= 0 {
		opts.MaxConcurrentWorkflowTasks = 64
	}
	if opts.WorkflowTaskPollers <= 0 {
		opts.WorkflowTaskPollers = 8
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 30 * time.Second
	}
	w := sdkworker.New(c, opts.TaskQueue, sdkworker.Options{
		MaxConcurrentActivityExecutionSize:     opts.MaxConcurrentActivities,
		MaxConcurrentWorkflowTaskExecutionSize: opts.MaxConcurrentWorkflowTasks,
		WorkerStopTimeout:                      opts.StopTimeout,
		MaxConcurrentWorkflowTaskPollers:       opts.WorkflowTaskPollers,
	})
	Register(w, acts)
	return w
}

// Register registers the workflow and the activities on a worker or a test environment.
func Register(r sdkworker.Registry, acts *activities.Activities) {
	RegisterWorkflows(r)
	r.RegisterActivity(acts)
}

// RegisterWorkflows registers the workflow alone, as a replayer needs.
func RegisterWorkflows(r sdkworker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(workflows.TransferWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowName})
}

// SearchAttributes are the custom search attributes of the spec's ledger.md with their types.
var SearchAttributes = map[string]enumspb.IndexedValueType{
	workflows.AttrStatus.GetName():      enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	workflows.AttrFromAccount.GetName(): enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	workflows.AttrToAccount.GetName():   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	workflows.AttrCurrency.GetName():    enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	workflows.AttrAmount.GetName():      enumspb.INDEXED_VALUE_TYPE_INT,
	// Holds and scheduled transfers (issue 13): when a scheduled transfer runs, and when a held
	// transfer's hold expires.
	workflows.AttrScheduledFor.GetName():  enumspb.INDEXED_VALUE_TYPE_DATETIME,
	workflows.AttrHoldExpiresAt.GetName(): enumspb.INDEXED_VALUE_TYPE_DATETIME,
}

// EnsureSearchAttributes registers, in the namespace, the search attributes that are missing. It is
// safe to call from several processes at once.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	ops := c.OperatorService()
	have, err := ops.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("worker: list search attributes: %w", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range SearchAttributes {
		if got, ok := have.GetCustomAttributes()[name]; ok {
			if got != typ {
				return fmt.Errorf("worker: search attribute %s exists with type %s, want %s", name, got, typ)
			}
			continue
		}
		missing[name] = typ
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = ops.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: namespace, SearchAttributes: missing,
	})
	var exists *serviceerror.AlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("worker: add search attributes: %w", err)
	}
	return nil
}

// DefaultRetention is how long a namespace set up for transferd keeps closed workflows: a week, in
// which `transferd audit` checks every completed workflow's result against its row (invariant 8)
// and operators find finished transfers in the Web UI.
const DefaultRetention = 7 * 24 * time.Hour

// EnsureNamespace registers the namespace with the given retention (how long Temporal keeps closed
// workflows) if it does not exist, and sets the retention of one that exists with another. It says
// what it did, for the log.
func EnsureNamespace(ctx context.Context, c client.Client, namespace string, retention time.Duration) (string, error) {
	ws := c.WorkflowService()
	desc, err := ws.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
	var notFound *serviceerror.NamespaceNotFound
	switch {
	case errors.As(err, &notFound):
		_, err = ws.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
			Namespace: namespace, WorkflowExecutionRetentionPeriod: durationpb.New(retention),
			Description: "transferd's transfers",
		})
		var exists *serviceerror.NamespaceAlreadyExists
		if err != nil && !errors.As(err, &exists) {
			return "", fmt.Errorf("worker: register namespace %s: %w", namespace, err)
		}
		return fmt.Sprintf("registered namespace %s with retention %s", namespace, retention), nil
	case err != nil:
		return "", fmt.Errorf("worker: describe namespace %s: %w", namespace, err)
	}
	if got := desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration(); got == retention {
		return fmt.Sprintf("namespace %s exists with retention %s", namespace, retention), nil
	}
	_, err = ws.UpdateNamespace(ctx, &workflowservice.UpdateNamespaceRequest{Namespace: namespace,
		Config: &namespacepb.NamespaceConfig{WorkflowExecutionRetentionTtl: durationpb.New(retention)}})
	if err != nil {
		return "", fmt.Errorf("worker: set the retention of namespace %s: %w", namespace, err)
	}
	return fmt.Sprintf("namespace %s: retention set to %s", namespace, retention), nil
}

// SetupNamespace makes a namespace ready for transferd: EnsureNamespace, then
// EnsureSearchAttributes, retried every half second until ctx ends while the frontend does not know
// a namespace registered a moment ago (its namespace cache refreshes every few seconds).
func SetupNamespace(ctx context.Context, c client.Client, namespace string, retention time.Duration) (string, error) {
	did, err := EnsureNamespace(ctx, c, namespace, retention)
	if err != nil {
		return "", err
	}
	for {
		err := EnsureSearchAttributes(ctx, c, namespace)
		if err == nil {
			return did + "; transferd's search attributes are registered", nil
		}
		var notFound *serviceerror.NamespaceNotFound
		if !errors.As(err, &notFound) {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (waiting for namespace %s: %w)", err, namespace, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// NewFloor returns a worker that runs only the bench's empty FloorWorkflow on taskQueue.
func NewFloor(c client.Client, taskQueue string) sdkworker.Worker {
	w := sdkworker.New(c, taskQueue, sdkworker.Options{MaxConcurrentWorkflowTaskExecutionSize: 64})
	w.RegisterWorkflowWithOptions(workflows.FloorWorkflow, workflow.RegisterOptions{Name: workflows.FloorWorkflowName})
	return w
}
