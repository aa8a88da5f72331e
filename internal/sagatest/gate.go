// Package sagatest helps tests hold a real saga at a chosen point, so they can act on a transfer
// while it is before its debit.
package sagatest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/workflows"
)

// WorkflowTaskTimeout is the workflow task timeout for services whose tests hold a step: the saga
// runs its steps as local activities inside the workflow task, so a cancel or a query reaches a
// workflow with a held step only when the SDK heartbeats the task, at 80% of this timeout.
const WorkflowTaskTimeout = time.Second

// Gate is a real activities.Store with one hook: a step of a transfer can be held back until the
// test lets it through.
type Gate struct {
	activities.Store
	mu   sync.Mutex
	held map[gateKey]chan struct{}
}

type gateKey struct {
	id   uuid.UUID
	step transfer.Step
}

// NewGate wraps store.
func NewGate(store activities.Store) *Gate {
	return &Gate{Store: store, held: map[gateKey]chan struct{}{}}
}

// Hold makes the transfer's reserve wait until the returned function is called (once or more).
func (g *Gate) Hold(id uuid.UUID) (release func()) {
	return g.HoldStep(id, transfer.StepReserve)
}

// HoldStep makes the transfer's step wait until the returned function is called (once or more).
func (g *Gate) HoldStep(id uuid.UUID, step transfer.Step) (release func()) {
	ch := make(chan struct{})
	g.mu.Lock()
	g.held[gateKey{id, step}] = ch
	g.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// Step waits while the transfer's step is held, then runs it in the real store.
func (g *Gate) Step(ctx context.Context, id uuid.UUID, step transfer.Step, o transfer.Outcome) (transfer.Outcome, error) {
	g.mu.Lock()
	ch := g.held[gateKey{id, step}]
	g.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return transfer.Outcome{}, ctx.Err()
		}
	}
	return g.Store.Step(ctx, id, step, o)
}

// WaitCancelRequested polls the transfer's status query until its workflow has accepted a cancel, or
// has already ended (a cancel that arrives before the reserve even started ends the saga at once), so
// a test can let a held reserve through knowing the cancel will be honoured.
func WaitCancelRequested(ctx context.Context, t testing.TB, c client.Client, id uuid.UUID) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var s workflows.State
		v, err := c.QueryWorkflow(ctx, id.String(), "", workflows.QueryStatus)
		if err == nil && v.Get(&s) == nil && (s.CancelRequested || s.Status.Final()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfer %s: no cancel accepted after 20s (last error %v)", id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
