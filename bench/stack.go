package bench

import (
	"context"

	"go.temporal.io/sdk/client"
)

// Stack is where the suite runs what it drives: transferd's API and worker over the suite's
// database, and the Temporal server they use. DevStack runs `transferd dev`, which holds all three in
// one process; ClusterStack runs a Temporal cluster on PostgreSQL and the API and the workers as
// processes of their own on it. The suite runs the same sequence on either.
type Stack interface {
	// Start starts the API and the worker, and the Temporal server where the stack runs one, and
	// returns once the API answers. A Start after Stop runs on the same Temporal state at the same
	// addresses, so the transfers in flight resume.
	Start(ctx context.Context, in StackStart) (Deployment, error)
	// Stop stops what Start started, and returns an error unless it stopped cleanly. Calling it
	// again, or before Start, does nothing.
	Stop() error
	// Close stops the stack and releases what it keeps between starts (its data, its ports).
	Close() error
}

// StackStart is what one start of a stack runs.
type StackStart struct {
	// Database is the URL of the suite's PostgreSQL database, which the stack creates and migrates
	// when it does not exist yet.
	Database string
	// SagaVariant is the saga the worker runs: empty for transferd's as shipped, "naive" for the
	// same saga built as Temporal's money-transfer sample is (--saga-variant).
	SagaVariant string
	// Workers is how many worker processes a stack that runs its workers apart from the API
	// starts; default 1. DevStack runs its worker in dev's process, and ignores it.
	Workers int
}

// Deployment is a started stack, as the suite reaches it.
type Deployment struct {
	// API is the base URL of the HTTP API.
	API string
	// AdminEmail and AdminPassword sign in an admin, who may move money between any accounts.
	AdminEmail, AdminPassword string
	// Temporal are the options of a client of the stack's Temporal server; the split run's
	// processes connect to their HostPort and Namespace.
	Temporal client.Options
	// TaskQueue is the task queue the stack's worker polls.
	TaskQueue string
	// Processes are the stack's processes whose peak RSS each run reports, by name: pid.
	Processes map[string]int
	// Reserved are loopback ports the stack holds or binds again when it starts again, which the
	// suite's own listeners leave free.
	Reserved []int
	// Pprof are the addresses of the pprof handlers (/debug/pprof/) of the stack's processes that
	// serve them, by name.
	Pprof map[string]string
	// Summary says in a line what runs where, for the suite's output.
	Summary string
}
