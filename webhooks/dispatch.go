package webhooks

import (
	"context"
	"errors"
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
}

// Run dispatches until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	every := d.Every
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	lastBacklog := time.Time{}
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
		_, err := d.Temporal.ExecuteWorkflow(ctx, opts, DeliveryWorkflowName, DeliveryInput{DeliveryID: del.ID, Policy: d.Policy})
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
