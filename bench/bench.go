// Package bench drives transfers at a target and measures them: accepted and completed per second,
// latency percentiles of acceptance and of submit-to-final, errors by code, and the peak RSS of the
// processes under test. Targets are the real saga through the HTTP API, and two baselines on the same
// Temporal server and PostgreSQL: floor (an empty workflow per item) and sql (the saga's statements
// in one transaction, no Temporal).
//
// Suite is `transferd bench suite`: it runs the targets one after another on a Stack (where transferd
// and its Temporal server run: DevStack is `transferd dev` as a process), adds the split run
// (`transferd server` and `transferd worker` as two processes) and the growth runs, audits the
// ledger, and writes the report. cmd/transferd parses the flags and hands it the executables.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Target is what the bench drives.
type Target interface {
	// Name names the target in reports: saga, floor or sql.
	Name() string
	// Setup prepares n funded accounts of the target and returns their ids.
	Setup(ctx context.Context, n int) ([]string, error)
	// Submit submits one transfer and returns once the target has accepted it; final then waits for
	// its outcome. An error is reported by its code (Code).
	Submit(ctx context.Context, id uuid.UUID, from, to string, amount int64) (final func(context.Context) (string, error), err error)
}

// endedAt is a Target that knows when a transfer ended, which its final may learn late.
type endedAt interface {
	EndedAt(id uuid.UUID) (time.Time, bool)
}

// CodedError is an error with a stable code for the errors-by-code table.
type CodedError struct {
	Code string
	Err  error
}

func (e *CodedError) Error() string { return e.Code + ": " + e.Err.Error() }
func (e *CodedError) Unwrap() error { return e.Err }

// Code returns err's code for the report.
func Code(err error) string {
	var c *CodedError
	if errors.As(err, &c) {
		return c.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "error"
}

// The modes choose the pairs of accounts.
const (
	// ModeRandom picks two distinct accounts at random.
	ModeRandom = "random"
	// ModeHot sends 80% of transfers from or to one of a few hot accounts.
	ModeHot = "hot"
	// ModeOpposite pairs the accounts and alternates the direction on each pair, so opposite
	// transfers on the same pair run at the same time.
	ModeOpposite = "opposite"
)

// Config is one run.
type Config struct {
	Accounts    int
	Mode        string
	HotAccounts int
	// Concurrency is the number of transfers in flight in closed loop, when Rate is 0.
	Concurrency int
	// Rate is transfers started per second in open loop; 0 for closed loop.
	Rate float64
	// Count ends the run after this many transfers; Duration after this long; the first reached.
	Count    int
	Duration time.Duration
	// FinalTimeout bounds the wait for one transfer's outcome.
	FinalTimeout time.Duration
	// Processes are sampled for their peak RSS, by name: pid.
	Processes map[string]int
	// Progress receives a live progress bar; nil for none.
	Progress io.Writer
}

// Latency is a distribution's percentiles, in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Result is a run's figures. Seconds is how long the run took, the waits for the last outcomes
// included; Duration is how long a run bounded by time submitted transfers, in seconds.
type Result struct {
	Target          string           `json:"target"`
	Mode            string           `json:"mode"`
	Accounts        int              `json:"accounts"`
	Concurrency     int              `json:"concurrency,omitempty"`
	Rate            float64          `json:"rate,omitempty"`
	Submitted       int64            `json:"submitted"`
	Accepted        int64            `json:"accepted"`
	Completed       int64            `json:"completed"`
	Failed          int64            `json:"failed"`
	Seconds         float64          `json:"seconds"`
	Duration        float64          `json:"duration_seconds,omitempty"`
	AcceptedPerSec  float64          `json:"accepted_per_sec"`
	CompletedPerSec float64          `json:"completed_per_sec"`
	Accept          Latency          `json:"accept_latency"`
	Final           Latency          `json:"submit_to_final_latency"`
	Errors          map[string]int64 `json:"errors"`
	PeakRSSMiB      map[string]int64 `json:"peak_rss_mib,omitempty"`
	// CPUSeconds is the CPU time each process used over the run, by name (sampleCPU); CPUPerTransfer
	// is that, in milliseconds, per transfer that ended.
	CPUSeconds     map[string]float64 `json:"cpu_seconds,omitempty"`
	CPUPerTransfer map[string]float64 `json:"cpu_ms_per_transfer,omitempty"`
	// Server names the Temporal server of the stack the run ran on: ServerDev or ServerCluster.
	Server string `json:"server,omitempty"`
	// Workers is how many worker processes ran the saga, on the cluster stack.
	Workers int `json:"workers,omitempty"`
	// Ledger is the run as the ledger recorded it (LedgerView), for the runs through the API.
	Ledger *LedgerFigures `json:"ledger,omitempty"`
	// Webhooks is what events and deliveries cost, for the run with an endpoint subscribed.
	Webhooks *WebhookFigures `json:"webhooks,omitempty"`
	// accepted are the ids of the transfers the target accepted, and began when the run began.
	accepted []uuid.UUID
	began    time.Time
}

// The servers the suite runs on.
const (
	// ServerDev is `transferd dev`'s embedded Temporal server on SQLite (DevStack).
	ServerDev = "dev"
	// ServerCluster is a Temporal cluster on PostgreSQL (ClusterStack).
	ServerCluster = "cluster"
)

// Run sets the target up and drives it as cfg says.
func Run(ctx context.Context, t Target, cfg Config) (Result, error) {
	if cfg.Accounts < 2 {
		cfg.Accounts = 2
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeRandom
	}
	if cfg.HotAccounts <= 0 {
		cfg.HotAccounts = min(4, cfg.Accounts)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.Count <= 0 && cfg.Duration <= 0 {
		cfg.Count = 1000
	}
	if cfg.FinalTimeout <= 0 {
		cfg.FinalTimeout = 60 * time.Second
	}
	switch cfg.Mode {
	case ModeRandom, ModeHot, ModeOpposite:
	default:
		return Result{}, fmt.Errorf("bench: unknown mode %q (random, hot, opposite)", cfg.Mode)
	}
	accounts, err := t.Setup(ctx, cfg.Accounts)
	if err != nil {
		return Result{}, fmt.Errorf("bench: setup %s: %w", t.Name(), err)
	}
	r := &run{cfg: cfg, target: t, accounts: accounts, errors: map[string]int64{}}
	return r.drive(ctx)
}

type run struct {
	cfg      Config
	target   Target
	accounts []string

	next      atomic.Int64 // transfers started
	accepted  atomic.Int64
	completed atomic.Int64
	failed    atomic.Int64

	mu      sync.Mutex
	ids     []uuid.UUID
	accept  []time.Duration
	final   []time.Duration
	errors  map[string]int64
	stopped atomic.Bool
}

// take reserves the next transfer's number, or reports that the run is over.
func (r *run) take(deadline time.Time) (int64, bool) {
	if r.stopped.Load() || (!deadline.IsZero() && time.Now().After(deadline)) {
		return 0, false
	}
	n := r.next.Add(1)
	if r.cfg.Count > 0 && n > int64(r.cfg.Count) {
		return 0, false
	}
	return n, true
}

func (r *run) drive(ctx context.Context) (Result, error) {
	var deadline time.Time
	if r.cfg.Duration > 0 {
		deadline = time.Now().Add(r.cfg.Duration)
	}
	rss := sampleRSS(r.cfg.Processes)
	cpu := sampleCPU(r.cfg.Processes)
	progressDone := r.progress(deadline)
	start := time.Now()
	var wg sync.WaitGroup
	if r.cfg.Rate > 0 {
		interval := time.Duration(float64(time.Second) / r.cfg.Rate)
		tick := time.NewTicker(interval)
	open:
		for {
			n, ok := r.take(deadline)
			if !ok {
				break
			}
			wg.Go(func() { r.one(ctx, n) })
			select {
			case <-ctx.Done():
				break open
			case <-tick.C:
			}
		}
		tick.Stop()
	} else {
		for range r.cfg.Concurrency {
			wg.Go(func() {
				for {
					n, ok := r.take(deadline)
					if !ok || ctx.Err() != nil {
						return
					}
					r.one(ctx, n)
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	r.stopped.Store(true)
	progressDone <- struct{}{}
	<-progressDone
	res := Result{Target: r.target.Name(), Mode: r.cfg.Mode, Accounts: len(r.accounts), Rate: r.cfg.Rate,
		Submitted: r.accepted.Load() + sum(r.errors), Accepted: r.accepted.Load(), Completed: r.completed.Load(),
		Failed: r.failed.Load(), Seconds: elapsed.Seconds(), Errors: r.errors, PeakRSSMiB: rss(), CPUSeconds: cpu(),
		accepted: r.ids, began: start}
	if ended := res.Completed + res.Failed; ended > 0 {
		res.CPUPerTransfer = map[string]float64{}
		for name, s := range res.CPUSeconds {
			res.CPUPerTransfer[name] = s * 1000 / float64(ended)
		}
	}
	if r.cfg.Rate == 0 {
		res.Concurrency = r.cfg.Concurrency
	}
	if r.cfg.Duration > 0 {
		res.Duration = r.cfg.Duration.Seconds()
	}
	res.AcceptedPerSec = float64(res.Accepted) / elapsed.Seconds()
	res.CompletedPerSec = float64(res.Completed) / elapsed.Seconds()
	res.Accept = percentiles(r.accept)
	res.Final = percentiles(r.final)
	return res, ctx.Err()
}

// one runs transfer number n.
func (r *run) one(ctx context.Context, n int64) {
	from, to := r.pair(n)
	amount := 1 + rand.Int64N(100)
	began := time.Now()
	id := uuid.New()
	final, err := r.target.Submit(ctx, id, from, to, amount)
	accepted := time.Since(began)
	if err != nil {
		r.record(func() { r.errors[Code(err)]++ })
		return
	}
	r.accepted.Add(1)
	r.record(func() { r.ids = append(r.ids, id) })
	fctx, cancel := context.WithTimeout(ctx, r.cfg.FinalTimeout)
	status, err := final(fctx)
	cancel()
	done := time.Since(began)
	// A target that knows when the transfer really ended says so: it may have seen the end late.
	if e, ok := r.target.(endedAt); ok {
		if at, ok := e.EndedAt(id); ok && at.After(began) && at.Before(began.Add(done)) {
			done = at.Sub(began)
		}
	}
	switch {
	case err != nil:
		r.record(func() { r.errors[Code(err)]++; r.accept = append(r.accept, accepted) })
	case status == "completed":
		r.completed.Add(1)
		r.record(func() { r.accept = append(r.accept, accepted); r.final = append(r.final, done) })
	case status == "failed" || status == "cancelled":
		r.failed.Add(1)
		r.record(func() {
			r.errors["ended_"+status]++
			r.accept = append(r.accept, accepted)
			r.final = append(r.final, done)
		})
	default:
		// The wait for the outcome ran out with the transfer still in flight.
		r.record(func() {
			r.errors["still_"+status+"_after_wait"]++
			r.accept = append(r.accept, accepted)
		})
	}
}

func (r *run) record(f func()) {
	r.mu.Lock()
	f()
	r.mu.Unlock()
}

// pair chooses transfer n's accounts by the mode.
func (r *run) pair(n int64) (string, string) {
	a := r.accounts
	switch r.cfg.Mode {
	case ModeHot:
		if rand.IntN(10) < 8 {
			hot := a[rand.IntN(r.cfg.HotAccounts)]
			other := hot
			for other == hot {
				other = a[rand.IntN(len(a))]
			}
			if rand.IntN(2) == 0 {
				return hot, other
			}
			return other, hot
		}
	case ModeOpposite:
		pairs := int64(len(a) / 2)
		p := n % pairs
		if (n/pairs)%2 == 0 {
			return a[2*p], a[2*p+1]
		}
		return a[2*p+1], a[2*p]
	}
	i := rand.IntN(len(a))
	j := rand.IntN(len(a) - 1)
	if j >= i {
		j++
	}
	return a[i], a[j]
}

// progress draws a live progress bar until a value is sent on the returned channel; it closes the
// channel once the last line is drawn.
func (r *run) progress(deadline time.Time) chan struct{} {
	done := make(chan struct{})
	if r.cfg.Progress == nil {
		go func() { <-done; close(done) }()
		return done
	}
	start := time.Now()
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprintf(r.cfg.Progress, "\r%s\n", r.bar(start, deadline))
				close(done)
				return
			case <-t.C:
				fmt.Fprintf(r.cfg.Progress, "\r%s", r.bar(start, deadline))
			}
		}
	}()
	return done
}

func (r *run) bar(start, deadline time.Time) string {
	frac := 0.0
	if r.cfg.Count > 0 {
		frac = float64(r.completed.Load()+r.failed.Load()) / float64(r.cfg.Count)
	}
	if !deadline.IsZero() {
		frac = max(frac, float64(time.Since(start))/float64(deadline.Sub(start)))
	}
	frac = min(frac, 1)
	const width = 30
	filled := int(frac * width)
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = '.'
		if i < filled {
			bar[i] = '#'
		}
	}
	secs := time.Since(start).Seconds()
	r.mu.Lock()
	errs := sum(r.errors)
	r.mu.Unlock()
	return fmt.Sprintf("%-5s [%s] %3.0f%%  accepted %d  completed %d  failed %d  errors %d  %.0f/s   ",
		r.target.Name(), bar, frac*100, r.accepted.Load(), r.completed.Load(), r.failed.Load(), errs,
		float64(r.completed.Load())/max(secs, 0.001))
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func percentiles(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q * float64(len(s)-1))
		return float64(s[i].Microseconds()) / 1000
	}
	return Latency{P50: at(.5), P90: at(.9), P99: at(.99), Max: float64(s[len(s)-1].Microseconds()) / 1000}
}
