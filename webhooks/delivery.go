package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/transferd/transferd/transfer"
)

// DeliveryWorkflowName is the delivery workflow's type, and TaskQueue the queue of the webhook
// worker: apart from the transfers', so that slow endpoints never hold the sagas' slots.
const (
	DeliveryWorkflowName = "WebhookDelivery"
	TaskQueue            = "webhooks"
)

// WorkflowID is the id of a delivery's workflow: one per delivery, however often it is started.
func WorkflowID(deliveryID uuid.UUID) string { return "webhook-delivery-" + deliveryID.String() }

// Policy is how a delivery is tried. The zero value takes DefaultPolicy's fields.
type Policy struct {
	// AttemptTimeout bounds one attempt: a 2xx within it is a delivery.
	AttemptTimeout time.Duration
	// FirstBackoff is the wait after the first failed attempt; each later wait doubles, up to
	// MaxBackoff.
	FirstBackoff, MaxBackoff time.Duration
	// GiveUpAfter is how long after its first attempt a delivery stops being tried: it is then
	// marked failed.
	GiveUpAfter time.Duration
	// DisableAfter is how long an endpoint may answer no 2xx before it is disabled.
	DisableAfter time.Duration
}

// DefaultPolicy tries for 3 days (attempts 10 s apart at first, then up to 6 hours apart), and
// disables an endpoint after 5 days without a 2xx.
var DefaultPolicy = Policy{AttemptTimeout: 10 * time.Second, FirstBackoff: 10 * time.Second, MaxBackoff: 6 * time.Hour,
	GiveUpAfter: 72 * time.Hour, DisableAfter: 120 * time.Hour}

func (p Policy) orDefault() Policy {
	d := DefaultPolicy
	if p.AttemptTimeout > 0 {
		d.AttemptTimeout = p.AttemptTimeout
	}
	if p.FirstBackoff > 0 {
		d.FirstBackoff = p.FirstBackoff
	}
	if p.MaxBackoff > 0 {
		d.MaxBackoff = p.MaxBackoff
	}
	if p.GiveUpAfter > 0 {
		d.GiveUpAfter = p.GiveUpAfter
	}
	if p.DisableAfter > 0 {
		d.DisableAfter = p.DisableAfter
	}
	return d
}

// attemptBound bounds one attempt's activity: the POST's own timeout, plus the ledger's reads and
// writes around it.
func (p Policy) attemptBound() time.Duration { return p.AttemptTimeout + 20*time.Second }

// DeliveryInput is the delivery workflow's input.
type DeliveryInput struct {
	DeliveryID uuid.UUID
	Policy     Policy
	// FirstAttempt numbers the run's first attempt (1 when zero), and GiveUpAt, when set, is the
	// deadline instead of the run's start plus Policy.GiveUpAfter: a run started over a delivery
	// whose workflow closed without ending it goes on from where that one stopped.
	FirstAttempt int       `json:",omitempty"`
	GiveUpAt     time.Time `json:",omitzero"`
}

// DeliveryResult is how a delivery ended.
type DeliveryResult struct {
	Delivered bool
	Attempts  int
	// Reason says why an undelivered delivery stopped.
	Reason string
}

// AttemptInput is one attempt of a delivery. NextRetryAt is when the next attempt comes at the
// earliest if this one fails, nil for the last: the attempt ends the delivery failed when there is
// none. Wait, when set, is the backoff to count from the attempt's end (capped at GiveUpAt): the
// attempt records the later of the two in the delivery log and answers it, so that an attempt that
// ran out its timeout is followed by the whole wait, not at once. (Runs scheduled by an earlier
// release set neither, and sleep until NextRetryAt.)
type AttemptInput struct {
	DeliveryID   uuid.UUID
	Attempt      int
	NextRetryAt  *time.Time
	DisableAfter time.Duration
	Wait         time.Duration `json:",omitempty"`
	GiveUpAt     time.Time     `json:",omitzero"`
}

// nextRetry is when the attempt that ended at end is tried again: Wait after end, but not past
// GiveUpAt, and not before NextRetryAt.
func (in AttemptInput) nextRetry(end time.Time) time.Time {
	if in.Wait <= 0 {
		return *in.NextRetryAt
	}
	after := end.Add(in.Wait)
	if !in.GiveUpAt.IsZero() {
		after = earlier(after, in.GiveUpAt)
	}
	return later(*in.NextRetryAt, after)
}

// AttemptResult is one attempt's outcome.
type AttemptResult struct {
	Delivered bool
	// Stop says not to try again: the endpoint is disabled or deleted, or its owner may no longer
	// see the event.
	Stop   bool
	Reason string
	// NextRetryAt is when to try again after a failed attempt that is not the last (nil from an
	// attempt of an earlier release: then AttemptInput's).
	NextRetryAt *time.Time `json:",omitempty"`
}

// DeliveryWorkflow sends one event to one endpoint until a 2xx answer, trying again after growing
// waits on durable timers until Policy.GiveUpAfter has passed since the first attempt (the last
// attempt comes at that time). Every attempt is an activity that reads the endpoint afresh, signs
// anew and records itself. The dispatcher passes a policy with every field set, so a change of
// DefaultPolicy never changes the commands of a delivery in flight.
func DeliveryWorkflow(ctx workflow.Context, in DeliveryInput) (DeliveryResult, error) {
	p := in.Policy.orDefault()
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: p.attemptBound(),
		// Only the ledger or the worker failing makes the activity fail: retry it, as the same
		// attempt (its record is written once).
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	})
	var a *Activities
	start := workflow.Now(ctx)
	wait := p.FirstBackoff
	deadline := start.Add(p.GiveUpAfter)
	if !in.GiveUpAt.IsZero() {
		deadline = in.GiveUpAt
	}
	for attempt := max(1, in.FirstAttempt); ; attempt++ {
		now := workflow.Now(ctx)
		next := now.Add(wait)
		if next.After(deadline) {
			// One last attempt at the deadline itself, so that a delivery is tried for all of
			// GiveUpAfter, not for up to a wait less.
			next = deadline
		}
		try := AttemptInput{DeliveryID: in.DeliveryID, Attempt: attempt, DisableAfter: p.DisableAfter}
		if now.Before(deadline) {
			try.NextRetryAt, try.Wait, try.GiveUpAt = &next, wait, deadline
		}
		var out AttemptResult
		if err := workflow.ExecuteActivity(ctx, a.Attempt, try).Get(ctx, &out); err != nil {
			return DeliveryResult{}, err
		}
		switch {
		case out.Delivered:
			return DeliveryResult{Delivered: true, Attempts: attempt}, nil
		case out.Stop:
			return DeliveryResult{Attempts: attempt, Reason: out.Reason}, nil
		case try.NextRetryAt == nil:
			return DeliveryResult{Attempts: attempt, Reason: "no 2xx answer within " + p.GiveUpAfter.String()}, nil
		}
		retryAt := *try.NextRetryAt
		if out.NextRetryAt != nil {
			// The attempt's answer, by its host's clock, bounded by this workflow's own: a host
			// clock running ahead must not push the retry out (up to the give-up time).
			retryAt = later(retryAt, earlier(*out.NextRetryAt, workflow.Now(ctx).Add(wait)))
		}
		if err := workflow.Sleep(ctx, retryAt.Sub(workflow.Now(ctx))); err != nil {
			return DeliveryResult{}, err
		}
		wait = min(wait*2, p.MaxBackoff)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Store is what the delivery activities need of the ledger.
type Store interface {
	// DeliveryTarget reads a delivery, its endpoint and its event afresh; CodeNotFound.
	DeliveryTarget(ctx context.Context, deliveryID uuid.UUID) (transfer.DeliveryTarget, error)
	// RecordAttempt writes an attempt to the delivery log (once) and reports whether it disabled
	// the endpoint.
	RecordAttempt(ctx context.Context, a transfer.DeliveryAttempt, delivered bool, disableAfter time.Duration) (bool, error)
	// EndDelivery marks a delivery delivered or failed.
	EndDelivery(ctx context.Context, id uuid.UUID, delivered bool) error
}

// Render is the JSON body of an event as a viewer sees it (seesSource: all of the transfer, as its
// payer does; else as its payee does): the API's own rendering, so a delivery and GET /v1/events
// say the same.
type Render func(e transfer.Event, seesSource bool) ([]byte, error)

// Activities are the delivery's activities and what they need.
type Activities struct {
	Store   Store
	Client  *Client
	Render  Render
	Metrics *Metrics
	// Now is the clock that signs (time.Now when nil).
	Now func() time.Time
}

// Attempt makes one attempt of a delivery: it re-reads the endpoint and checks that its owner may
// still see the event, signs the event with the endpoint's current secrets, POSTs it, and records
// the attempt (and the endpoint's streak) in the ledger. A non-2xx answer or a network failure is a
// failed attempt, not an activity error; an error means the ledger could not be read or written.
func (a *Activities) Attempt(ctx context.Context, in AttemptInput) (AttemptResult, error) {
	t, err := a.Store.DeliveryTarget(ctx, in.DeliveryID)
	if err != nil {
		return AttemptResult{}, err
	}
	stop := func(reason string) (AttemptResult, error) {
		if err := a.Store.EndDelivery(ctx, in.DeliveryID, false); err != nil {
			return AttemptResult{}, err
		}
		a.Metrics.delivered("skipped")
		return AttemptResult{Stop: true, Reason: reason}, nil
	}
	switch {
	case t.Delivery.Status != "pending":
		return AttemptResult{Delivered: t.Delivery.Status == "delivered", Stop: true, Reason: "delivery already " + t.Delivery.Status}, nil
	case t.Deleted:
		return stop("the endpoint was deleted")
	case t.Endpoint.Status != transfer.EndpointEnabled:
		return stop("the endpoint is disabled")
	case !t.Visible:
		return stop("the endpoint's owner may no longer see the event")
	}
	body, err := a.Render(t.Event, t.OwnerAdmin || t.Event.SourceOwnerID == t.Endpoint.UserID)
	if err != nil {
		// An event its own release cannot render will not render on a retry either: end the
		// delivery rather than fail the workflow over a row left pending.
		return stop("the event could not be rendered: " + err.Error())
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	at := now()
	h := Sign(t.Event.ID.String(), at, body, t.Endpoint.Secrets(at))
	headers := http.Header{}
	headers.Set("webhook-id", h.ID)
	headers.Set("webhook-timestamp", h.Timestamp)
	headers.Set("webhook-signature", h.Signature)
	headers.Set("User-Agent", "transferd-webhooks/1")
	res, postErr := a.Client.Post(ctx, t.Endpoint.URL, headers, body)
	delivered := postErr == nil && res.Status/100 == 2
	rec := transfer.DeliveryAttempt{ID: uuid.New(), DeliveryID: in.DeliveryID, EndpointID: t.Endpoint.ID, EventID: t.Event.ID,
		Attempt: in.Attempt, ResponseStatus: res.Status, Duration: res.Duration}
	outcome := "delivered"
	switch {
	case postErr != nil:
		rec.Error = postErr.Error()
		outcome = "error"
		var de *DeliveryError
		if errors.As(postErr, &de) && de.Timeout() {
			outcome = "timeout"
		}
	case !delivered:
		rec.Error = fmt.Sprintf("answered %d", res.Status)
		outcome = "non_2xx"
	}
	var next *time.Time
	if !delivered && in.NextRetryAt != nil {
		at := in.nextRetry(now())
		next = &at
	}
	rec.NextRetryAt = next
	disabled, err := a.Store.RecordAttempt(ctx, rec, delivered, in.DisableAfter)
	if err != nil {
		return AttemptResult{}, err
	}
	a.Metrics.attempted(outcome, res.Duration)
	if disabled {
		a.Metrics.endpointDisabled()
	}
	if delivered || in.NextRetryAt == nil || disabled {
		if err := a.Store.EndDelivery(ctx, in.DeliveryID, delivered); err != nil {
			return AttemptResult{}, err
		}
		if delivered {
			a.Metrics.delivered("delivered")
		} else {
			a.Metrics.delivered("failed")
		}
	}
	if disabled {
		return AttemptResult{Stop: true, Reason: "the endpoint was disabled: no 2xx answer for " + in.DisableAfter.String()}, nil
	}
	return AttemptResult{Delivered: delivered, NextRetryAt: next}, nil
}
