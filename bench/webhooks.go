package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/transferd/transferd/ledger"
)

// webhooksTarget is the label of the saga's run with a webhook endpoint subscribed.
const webhooksTarget = "saga+webhooks"

// WebhookFigures are what events and deliveries cost the saga's run with an endpoint subscribed to
// every event: an admin's endpoint, on a receiver in the bench's process that verifies every
// delivery with the Standard Webhooks library and answers 204.
type WebhookFigures struct {
	// Transfers are the run's accepted transfers; Events the events the ledger recorded for them.
	Transfers int64 `json:"transfers"`
	Events    int64 `json:"events"`
	// Deliveries are the endpoint's deliveries of events recorded from the run's start (its setup's
	// deposits left out), by how they ended, and their attempts.
	Deliveries int64 `json:"deliveries"`
	Delivered  int64 `json:"delivered"`
	Failed     int64 `json:"failed"`
	Pending    int64 `json:"pending"`
	Attempts   int64 `json:"attempts"`
	// Received counts the distinct webhook-ids the receiver verified, Duplicates the deliveries of
	// an id it had already verified, BadSignatures those the library refused.
	Received      int64 `json:"received"`
	Duplicates    int64 `json:"duplicates"`
	BadSignatures int64 `json:"bad_signatures"`
	// DrainSeconds is how long the last deliveries took once the run's transfers had all ended.
	DrainSeconds float64 `json:"drain_seconds"`
	// Delivery is from an event's recording to its 2xx being recorded, in the ledger's clock.
	Delivery Latency `json:"event_to_delivered"`
	// CPUPerTransfer is each process's CPU milliseconds per transfer over the run and the drain of
	// its deliveries.
	CPUPerTransfer map[string]float64 `json:"cpu_ms_per_transfer_with_drain"`
}

// receiver is the bench's webhook receiver.
type receiver struct {
	url string
	srv *http.Server

	mu   sync.Mutex
	wh   *standardwebhooks.Webhook
	seen map[string]int
	bad  int64
}

// startReceiver listens on a free loopback port. Until it knows the endpoint's secret it answers
// 503, which the sender retries.
func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + ln.Addr().String() + "/hooks", seen: map[string]int{}}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wh == nil {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.bad++
		http.Error(w, "bad signature", http.StatusBadRequest)
		return
	}
	r.seen[req.Header.Get("webhook-id")]++
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) setSecret(secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.wh = wh
	r.mu.Unlock()
	return nil
}

// counts returns the distinct ids verified, the repeats, and the refused signatures.
func (r *receiver) counts() (received, duplicates, bad int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.seen {
		received++
		duplicates += int64(n - 1)
	}
	return received, duplicates, r.bad
}

func (r *receiver) close() { _ = r.srv.Close() }

// runWebhooks runs the saga closed-loop, as the saga's random run, with an admin's endpoint
// subscribed to every event; waits until every delivery of the run's events has ended, for at most
// patience; and reads what they cost. The endpoint is deleted before it returns.
func (s *Suite) runWebhooks(ctx context.Context, dep Deployment, store *ledger.Store, patience time.Duration) (Result, error) {
	rcv, err := startReceiver()
	if err != nil {
		return Result{}, err
	}
	defer rcv.close()
	// The admin's client, signed in as a run's target signs in.
	admin := &API{URL: dep.API, http: &http.Client{Timeout: time.Minute}}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if _, err := admin.call(ctx, "POST", "/v1/auth/token", map[string]string{"email": dep.AdminEmail, "password": dep.AdminPassword}, &tok); err != nil {
		return Result{}, err
	}
	admin.token = tok.AccessToken
	var ep struct {
		ID     uuid.UUID `json:"id"`
		Secret string    `json:"secret"`
	}
	if _, err := admin.call(ctx, "POST", "/v1/webhook-endpoints",
		map[string]any{"url": rcv.url, "event_types": []string{"*"}, "description": "bench receiver"}, &ep); err != nil {
		return Result{}, err
	}
	defer func() {
		_, _ = admin.call(context.WithoutCancel(ctx), "DELETE", "/v1/webhook-endpoints/"+ep.ID.String(), nil, nil)
	}()
	if err := rcv.setSecret(ep.Secret); err != nil {
		return Result{}, err
	}

	cpu := sampleCPU(dep.Processes)
	res, err := Run(ctx, &API{URL: dep.API, Email: dep.AdminEmail, Password: dep.AdminPassword, Label: webhooksTarget}, s.closed(ModeRandom, dep))
	if err != nil {
		return res, err
	}
	if err := drain(ctx, store, patience, s.Progress); err != nil {
		return res, err
	}
	ended := time.Now()
	var stats ledger.DeliveryStats
	for {
		if stats, err = store.DeliveryStats(ctx, ep.ID, res.began); err != nil {
			return res, err
		}
		if stats.Pending == 0 {
			break
		}
		if time.Since(ended) > patience {
			return res, fmt.Errorf("bench: %d webhook deliveries still pending %s after the run's transfers ended", stats.Pending, patience)
		}
		fmt.Fprintf(s.Progress, "\rdelivering: %d webhook deliveries pending   ", stats.Pending)
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	f := &WebhookFigures{Transfers: res.Accepted, Deliveries: stats.Deliveries, Delivered: stats.Delivered,
		Failed: stats.Failed, Pending: stats.Pending, Attempts: stats.Attempts, DrainSeconds: time.Since(ended).Seconds(),
		Delivery: Latency{P50: stats.P50, P90: stats.P90, P99: stats.P99, Max: stats.Max}, CPUPerTransfer: map[string]float64{}}
	if ended := res.Completed + res.Failed; ended > 0 {
		for name, sec := range cpu() {
			f.CPUPerTransfer[name] = sec * 1000 / float64(ended)
		}
	}
	if f.Events, err = store.EventCount(ctx, res.accepted); err != nil {
		return res, err
	}
	f.Received, f.Duplicates, f.BadSignatures = rcv.counts()
	res.Webhooks = f
	return res, checkWebhooks(f)
}

// checkWebhooks fails a run whose deliveries lost, refused or failed anything: on a receiver that
// always answers, every event of the run arrives, verified.
func checkWebhooks(f *WebhookFigures) error {
	var errs []error
	if f.BadSignatures > 0 {
		errs = append(errs, fmt.Errorf("%d deliveries failed the receiver's signature check", f.BadSignatures))
	}
	if f.Failed > 0 || f.Pending > 0 {
		errs = append(errs, fmt.Errorf("%d deliveries failed and %d are pending", f.Failed, f.Pending))
	}
	if f.Deliveries < f.Events || f.Received < f.Delivered {
		errs = append(errs, fmt.Errorf("%d events, %d deliveries, %d delivered, %d received", f.Events, f.Deliveries, f.Delivered, f.Received))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: webhooks: %w", err)
	}
	return nil
}
