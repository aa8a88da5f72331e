package workflows

import "go.temporal.io/sdk/workflow"

// FloorWorkflowName is the workflow type of the bench's floor baseline.
const FloorWorkflowName = "FloorWorkflow"

// FloorWorkflow does nothing. `transferd bench --variant floor` starts and awaits one per item: what
// one workflow per transfer costs at least, on the same Temporal server as the real saga.
func FloorWorkflow(ctx workflow.Context) error { return nil }
