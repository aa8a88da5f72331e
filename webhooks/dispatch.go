package webhooks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/transfer"
)

// Metrics are the deliveries' Prometheus metrics; a nil *Metrics records nothing.
type Metrics struct {
	attempts   *prometheus.CounterVec
	latency    prometheus.Histogram
	deliveries *prometheus.CounterVec
	disabled   prometheus.Counter
	backlog    *prometheus.GaugeVec
}

// NewMetrics registers the deliveries' metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "transferd_webhook_attempts_total",
			Help: "Webhook delivery attempts, by outcome: delivered, non_2xx, timeout, error."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "transferd_webhook_attempt_seconds",
			Help: "Time from sending a webhook to its answer.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "transferd_webhook_deliveries_total",
			Help: "Webhook deliveries ended, by outcome: delivered, failed (retries exhausted), skipped (endpoint disabled, deleted, or the event no longer visible to its owner)."}, []string{"outcome"}),
		disabled: prometheus.NewCounter(prometheus.CounterOpts{Name: "transferd_webhook_endpoints_disabled_total",
			Help: "Endpoints disabled automatically for answering no 2xx for too long."}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "transferd_webhook_backlog",
			Help: "Deliveries not yet ended, by endpoint."}, []string{"endpoint_id"}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.latency, m.deliveries, m.disabled, m.backlog)
	}
	return m
}

func (m *Metrics) attempted(outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.attempts.WithLabelValues(outcome).Inc()
	if outcome != "error" || took > 0 {
		m.latency.Observe(took.Seconds())
	}
}

func (m *Metrics) delivered(outcome string) {
	if m != nil {
		m.deliveries.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) endpointDisabled() {
	if m != nil {
		m.disabled.Inc()
	}
}

// DispatchStore is what the dispatcher needs of the ledger.
type DispatchStore interface {
	// UnstartedDeliveries returns deliveries whose workflow has not been started, oldest first.
	UnstartedDeliveries(ctx context.Context, limit int) ([]transfer.Delivery, error)
	// MarkDeliveryStarted records that a delivery's workflow exists.
	MarkDeliveryStarted(ctx context.Context, id uuid.UUID) error
	// PendingDeliveries counts the deliveries not yet ended, by endpoint.
	PendingDeliveries(ctx context.Context) (map[uuid.UUID]int, error)
	// StalledDeliveries returns pending deliveries whose attempt was due before dueBefore, after
	// the one given, in the order of when they were due.
	StalledDeliveries(ctx context.Context, dueBefore time.Time, after transfer.StalledDelivery, limit int) ([]transfer.StalledDelivery, error)
	// DeliveryTarget reads a delivery afresh (with its endpoint and event); CodeNotFound.
	DeliveryTarget(ctx context.Context, deliveryID uuid.UUID) (transfer.DeliveryTarget, error)
}

// Dispatcher starts a delivery workflow for each delivery the ledger enqueued. Several may run (one
// per worker): a delivery's workflow id is its own, and a second start of it is refused, so each
// delivery runs once.
type Dispatcher struct {
	Store    DispatchStore
	Temporal client.Client
	Policy   Policy
	Metrics  *Metrics
	Log      *slog.Logger
	// Every is how often the ledger is asked for new deliveries; default 500 ms.
	Every time.Duration
	// StallAfter is how long past its due time a pending delivery may go without an attempt before
	// a look describes its workflow (RestartStalled), and starts a new run if none runs (an operator
	// terminated or cancelled it); default 5 minutes. RestartEvery is how often it looks; default a
	// minute.
	StallAfter, RestartEvery time.Duration

	// stalledAfter is where the next look goes on from.
	stalledAfter transfer.StalledDelivery
}

// Run dispatches until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	every := d.Every
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	restartEvery := cmp.Or(d.RestartEvery, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	lastBacklog, lastRestart := time.Time{}, time.Time{}
	for {
		for {
			n, err := d.DispatchOnce(ctx)
			if err != nil && ctx.Err() == nil {
				d.Log.Warn("webhooks: dispatch", "err", err.Error())
			}
			if err != nil || n < dispatchBatch {
				break
			}
		}
		if time.Since(lastBacklog) > 15*time.Second {
			d.updateBacklog(ctx)
			lastBacklog = time.Now()
		}
		if time.Since(lastRestart) > restartEvery {
			now := time.Now()
			closedBefore := now.Add(-d.Policy.orDefault().attemptBound() - orphanMargin)
			if _, err := d.RestartStalled(ctx, now.Add(-cmp.Or(d.StallAfter, 5*time.Minute)), closedBefore); err != nil && ctx.Err() == nil {
				d.Log.Warn("webhooks: restart stalled deliveries", "err", err.Error())
			}
			lastRestart = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// dispatchBatch is how many deliveries one round starts at most.
const dispatchBatch = 200

// DispatchOnce starts the workflows of the deliveries not started yet and returns how many.
func (d *Dispatcher) DispatchOnce(ctx context.Context) (int, error) {
	ds, err := d.Store.UnstartedDeliveries(ctx, dispatchBatch)
	if err != nil {
		return 0, err
	}
	for _, del := range ds {
		opts := client.StartWorkflowOptions{ID: WorkflowID(del.ID), TaskQueue: TaskQueue,
			WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING}
		_, err := d.Temporal.ExecuteWorkflow(ctx, opts, DeliveryWorkflowName, DeliveryInput{DeliveryID: del.ID, Policy: d.Policy.orDefault()})
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if err != nil && !errors.As(err, &started) {
			return 0, err
		}
		if err := d.Store.MarkDeliveryStarted(ctx, del.ID); err != nil {
			return 0, err
		}
	}
	return len(ds), nil
}

func (d *Dispatcher) updateBacklog(ctx context.Context) {
	if d.Metrics == nil {
		return
	}
	pending, err := d.Store.PendingDeliveries(ctx)
	if err != nil {
		return
	}
	d.Metrics.backlog.Reset()
	for id, n := range pending {
		d.Metrics.backlog.WithLabelValues(id.String()).Set(float64(n))
	}
}

// orphanMargin is how long past the bound of an attempt (Policy.attemptBound) the dispatcher waits
// after a delivery's workflow closed before it starts a new run: an attempt that was running when
// an operator terminated the workflow goes on (a terminate does not reach an activity that does not
// heartbeat), and may still record itself until its own timeout; the new run must see its record,
// or it would number an attempt the same.
const orphanMargin = 10 * time.Second

// stalledBatch is how many stalled deliveries one look describes at most.
const stalledBatch = 100

// RestartStalled looks at up to stalledBatch pending deliveries whose attempt was due before
// dueBefore and has not come, going on from where the previous look stopped, and starts a new
// workflow run for each whose workflow closed before closedBefore without ending it (an operator
// terminated or cancelled it; it failed or timed out): the run goes on from the delivery's attempts
// as the ledger has them then, to its first run's deadline. A delivery whose workflow still runs (a
// backlog, a ledger outage between its retries), or closed too recently for an attempt it left
// running to have ended, is left for a later look. Its cost is a describe for each delivery that
// late, which only a backlog of that length makes in normal operation. It returns how many runs it
// started.
func (d *Dispatcher) RestartStalled(ctx context.Context, dueBefore, closedBefore time.Time) (int, error) {
	ds, err := d.Store.StalledDeliveries(ctx, dueBefore, d.stalledAfter, stalledBatch)
	if err != nil {
		return 0, err
	}
	if len(ds) < stalledBatch {
		d.stalledAfter = transfer.StalledDelivery{}
	} else {
		d.stalledAfter = ds[len(ds)-1]
	}
	restarted := 0
	var errs []error
	for _, del := range ds {
		started, err := d.restart(ctx, del.ID, closedBefore)
		if err != nil {
			errs = append(errs, err)
		}
		if started {
			restarted++
		}
	}
	return restarted, errors.Join(errs...)
}

// restart starts a new run of a delivery's workflow if the ledger has it pending and no run runs
// or closed after closedBefore (a later look sees it again), and reports whether it started one.
func (d *Dispatcher) restart(ctx context.Context, deliveryID uuid.UUID, closedBefore time.Time) (bool, error) {
	// Read before the describe, and after closedBefore: an attempt of a run closed before then has
	// recorded itself by now, or never will.
	t, err := d.Store.DeliveryTarget(ctx, deliveryID)
	if err != nil || t.Delivery.Status != "pending" {
		return false, err
	}
	id := WorkflowID(deliveryID)
	desc, err := d.Temporal.DescribeWorkflowExecution(ctx, id, "")
	var gone *serviceerror.NotFound
	info := desc.GetWorkflowExecutionInfo()
	switch {
	case errors.As(err, &gone):
		// No run left within retention: start one.
	case err != nil:
		return false, fmt.Errorf("webhooks: describe %s: %w", id, err)
	case info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return false, nil
	case info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		// Every way a run completes ends its delivery first: a row still pending when read again
		// (not a read from before a restarted run delivered) is for an operator.
		if again, err := d.Store.DeliveryTarget(ctx, deliveryID); err == nil && again.Delivery.Status == "pending" {
			d.Log.Warn("webhooks: a delivery is pending although its workflow completed; resend its event",
				"delivery_id", deliveryID.String(), "run_id", info.GetExecution().GetRunId())
		}
		return false, nil
	case info.GetCloseTime().AsTime().After(closedBefore):
		return false, nil
	}
	p := d.Policy.orDefault()
	opts := client.StartWorkflowOptions{ID: id, TaskQueue: TaskQueue,
		// A run that completed ended its delivery first: never start after one; nor over a running
		// one (another dispatcher's).
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true}
	// The first run's deadline: its start (the dispatcher records it just after) and GiveUpAfter.
	first := t.Delivery.CreatedAt
	if t.Delivery.StartedAt != nil {
		first = *t.Delivery.StartedAt
	}
	in := DeliveryInput{DeliveryID: deliveryID, Policy: p, FirstAttempt: t.Delivery.Attempts + 1, GiveUpAt: first.Add(p.GiveUpAfter)}
	run, err := d.Temporal.ExecuteWorkflow(ctx, opts, DeliveryWorkflowName, in)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("webhooks: restart %s: %w", id, err)
	}
	d.Log.Info("webhooks: restarted a delivery whose workflow closed without ending it",
		"delivery_id", deliveryID.String(), "attempts", t.Delivery.Attempts, "run_id", run.GetRunID())
	return true, nil
}
