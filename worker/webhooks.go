package worker

import (
	"time"

	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/transferd/transferd/webhooks"
)

// NewWebhooks returns the worker of webhook deliveries, on its own task queue (webhooks.TaskQueue):
// an endpoint that answers slowly holds one of its activity slots for at most an attempt's timeout,
// and never a slot of the transfers' sagas.
func NewWebhooks(c client.Client, acts *webhooks.Activities, maxConcurrent int, stopTimeout time.Duration) sdkworker.Worker {
	if maxConcurrent <= 0 {
		maxConcurrent = 64
	}
	if stopTimeout <= 0 {
		stopTimeout = 30 * time.Second
	}
	w := sdkworker.New(c, webhooks.TaskQueue, sdkworker.Options{
		MaxConcurrentActivityExecutionSize: maxConcurrent,
		WorkerStopTimeout:                  stopTimeout,
	})
	RegisterWebhooks(w, acts)
	return w
}

// RegisterWebhooks registers the delivery workflow and its activity on a worker or a test
// environment.
func RegisterWebhooks(r sdkworker.Registry, acts *webhooks.Activities) {
	r.RegisterWorkflowWithOptions(webhooks.DeliveryWorkflow, workflow.RegisterOptions{Name: webhooks.DeliveryWorkflowName})
	r.RegisterActivity(acts)
}
