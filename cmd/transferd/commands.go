package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/transferd/transferd/activities"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/webhooks"
	"github.com/transferd/transferd/worker"
)

// The wiring: only this package knows that the ledger satisfies the interfaces of the packages that
// use it.
var (
	_ activities.Store       = (*ledger.Store)(nil)
	_ service.Store          = (*ledger.Store)(nil)
	_ ledger.WorkflowChecker = (*service.Service)(nil)
	_ ledger.WorkflowResults = (*service.Service)(nil)
)

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := c.flagSet("migrate", stderr, nil)
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	c.print(stderr, fs)
	store, err := openStore(ctx, &c)
	if err != nil {
		return err
	}
	defer store.Close()
	applied, err := store.Migrate(ctx)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "migrate: schema is current")
		return nil
	}
	for _, v := range applied {
		fmt.Fprintln(stdout, "migrate: applied", v)
	}
	return nil
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := c.flagSet("worker", stderr, func(fs *flag.FlagSet) {
		c.temporalFlags(fs)
		c.workerFlags(fs)
		c.pprofFlag(fs)
		fs.StringVar(&c.MetricsAddr, "metrics-addr", env("METRICS_ADDR", ":9090"), "address of the worker's Prometheus /metrics; empty for none (TRANSFERD_METRICS_ADDR)")
	})
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	opts, err := c.temporalOptions()
	if err != nil {
		return err
	}
	c.print(stderr, fs)
	if c.PprofAddr != "" {
		go servePprof(ctx, c.PprofAddr, log)
	}
	deps, err := connect(ctx, &c, opts, "transferd-worker", log)
	if err != nil {
		return err
	}
	defer deps.close(ctx)
	store, tc, tel := deps.store, deps.temporal, deps.tel
	if c.MetricsAddr != "" {
		go tel.serveMetrics(ctx, c.MetricsAddr, log)
	}
	stop, err := startWorker(ctx, &c, store, tc, tel.registry, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	stop()
	return nil
}

// deps are what a long-running subcommand connects to: its telemetry, PostgreSQL and Temporal.
type deps struct {
	tel      *telemetry
	store    *ledger.Store
	temporal client.Client
}

// connect sets up the telemetry of service, then connects to PostgreSQL and to Temporal with opts
// (and the telemetry's metrics and tracing), waiting for each with backoff.
func connect(ctx context.Context, c *config, opts client.Options, service string, log *slog.Logger) (*deps, error) {
	tel, err := newTelemetry(ctx, service, log)
	if err != nil {
		return nil, err
	}
	d := &deps{tel: tel}
	if d.store, err = openStore(ctx, c); err != nil {
		d.close(ctx)
		return nil, err
	}
	if d.temporal, err = dialTemporal(ctx, opts, log, tel); err != nil {
		d.close(ctx)
		return nil, err
	}
	return d, nil
}

// close closes what connect opened, flushing telemetry last.
func (d *deps) close(ctx context.Context) {
	if d.temporal != nil {
		d.temporal.Close()
	}
	if d.store != nil {
		_ = d.store.Close()
	}
	d.tel.close(context.WithoutCancel(ctx))
}

// startWorker registers the search attributes (unless told not to), starts the worker and its
// reconciler, and returns the function that stops them, letting running activities finish.
func startWorker(ctx context.Context, c *config, store *ledger.Store, tc client.Client, reg prometheus.Registerer, log *slog.Logger) (stop func(), err error) {
	if !c.SkipSearchAttributes {
		if err := worker.EnsureSearchAttributes(ctx, tc, c.TemporalNamespace); err != nil {
			return nil, err
		}
	}
	w := worker.New(tc, &activities.Activities{Store: store}, worker.Options{
		TaskQueue: c.TaskQueue, MaxConcurrentActivities: c.MaxConcurrentActivities, WorkflowTaskPollers: c.WorkflowTaskPollers, StopTimeout: c.StopTimeout,
	})
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("worker: start: %w", err)
	}
	log.Info("worker started", "task_queue", c.TaskQueue, "namespace", c.TemporalNamespace)
	metrics := webhooks.NewMetrics(reg)
	outbound := webhooks.NewClient(webhooks.ClientOptions{AllowPrivate: c.AllowPrivateWebhooks, Timeout: c.WebhookPolicy.AttemptTimeout})
	ww := worker.NewWebhooks(tc, &webhooks.Activities{Store: store, Client: outbound, Render: server.EventJSON, Metrics: metrics},
		c.MaxConcurrentActivities, c.StopTimeout)
	if err := ww.Start(); err != nil {
		w.Stop()
		return nil, fmt.Errorf("worker: start webhooks: %w", err)
	}
	reconcileCtx, stopReconcile := context.WithCancel(context.WithoutCancel(ctx))
	if c.ReconcileEvery > 0 {
		svc := service.New(store, tc, c.TaskQueue, log).WithOptions(service.Options{Namespace: c.TemporalNamespace})
		go reconcile(reconcileCtx, svc, c.ReconcileEvery, log)
	}
	d := &webhooks.Dispatcher{Store: store, Temporal: tc, Policy: c.WebhookPolicy, RestartEvery: c.WebhookRestartEvery, StallAfter: c.WebhookStallAfter, Metrics: metrics, Log: log}
	go d.Run(reconcileCtx)
	return func() {
		stopReconcile()
		log.Info("worker stopping: finishing activities in progress", "timeout", c.StopTimeout.String())
		ww.Stop()
		w.Stop()
		log.Info("worker stopped")
	}, nil
}

// workerFlags adds the flags of the subcommands that run a worker.
func (c *config) workerFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.MaxConcurrentActivities, "max-concurrent-activities", envInt("MAX_CONCURRENT_ACTIVITIES", 64), "activities run at once (TRANSFERD_MAX_CONCURRENT_ACTIVITIES)")
	fs.IntVar(&c.WorkflowTaskPollers, "workflow-task-pollers", envInt("WORKFLOW_TASK_POLLERS", 8), "long polls for workflow tasks at once (TRANSFERD_WORKFLOW_TASK_POLLERS)")
	fs.DurationVar(&c.ReconcileEvery, "reconcile-every", envDuration("RECONCILE_EVERY", 30*time.Second), "how often to repair accepted transfers that are not final and have no running workflow (a lost start, or a workflow closed by an operator); 0 turns it off (TRANSFERD_RECONCILE_EVERY)")
	fs.DurationVar(&c.StopTimeout, "stop-timeout", envDuration("STOP_TIMEOUT", 30*time.Second), "how long a stop waits for running activities (TRANSFERD_STOP_TIMEOUT)")
	fs.BoolVar(&c.SkipSearchAttributes, "skip-search-attributes", envBool("SKIP_SEARCH_ATTRIBUTES", false), "do not register the custom search attributes (TRANSFERD_SKIP_SEARCH_ATTRIBUTES)")
	d := webhooks.DefaultPolicy
	fs.BoolVar(&c.AllowPrivateWebhooks, "allow-private-webhooks", envBool("ALLOW_PRIVATE_WEBHOOKS", false), "let webhook endpoints be plain http and on loopback, private or link-local addresses, for receivers on a private network (TRANSFERD_ALLOW_PRIVATE_WEBHOOKS; transferd dev turns it on)")
	fs.DurationVar(&c.WebhookPolicy.AttemptTimeout, "webhook-attempt-timeout", envDuration("WEBHOOK_ATTEMPT_TIMEOUT", d.AttemptTimeout), "how long a webhook endpoint has to answer one delivery attempt (TRANSFERD_WEBHOOK_ATTEMPT_TIMEOUT)")
	fs.DurationVar(&c.WebhookPolicy.FirstBackoff, "webhook-first-backoff", envDuration("WEBHOOK_FIRST_BACKOFF", d.FirstBackoff), "wait after a delivery's first failed attempt; each later wait doubles (TRANSFERD_WEBHOOK_FIRST_BACKOFF)")
	fs.DurationVar(&c.WebhookPolicy.MaxBackoff, "webhook-max-backoff", envDuration("WEBHOOK_MAX_BACKOFF", d.MaxBackoff), "longest wait between two attempts of a delivery (TRANSFERD_WEBHOOK_MAX_BACKOFF)")
	fs.DurationVar(&c.WebhookPolicy.GiveUpAfter, "webhook-give-up-after", envDuration("WEBHOOK_GIVE_UP_AFTER", d.GiveUpAfter), "how long a delivery is tried before it is marked failed (TRANSFERD_WEBHOOK_GIVE_UP_AFTER)")
	fs.DurationVar(&c.WebhookStallAfter, "webhook-stall-after", envDuration("WEBHOOK_STALL_AFTER", 5*time.Minute), "how late a webhook delivery's attempt may be before the worker checks that its workflow runs, and starts a new run if not (one an operator terminated) (TRANSFERD_WEBHOOK_STALL_AFTER)")
	fs.DurationVar(&c.WebhookRestartEvery, "webhook-restart-every", envDuration("WEBHOOK_RESTART_EVERY", time.Minute), "how often the worker looks for webhook deliveries that late (TRANSFERD_WEBHOOK_RESTART_EVERY)")
	fs.DurationVar(&c.WebhookPolicy.DisableAfter, "webhook-disable-after", envDuration("WEBHOOK_DISABLE_AFTER", d.DisableAfter), "how long an endpoint may answer no 2xx before it is disabled (TRANSFERD_WEBHOOK_DISABLE_AFTER)")
}

// reconcile repairs, every period, the accepted transfers that are not final and have no running
// workflow (service.Reconcile), until ctx ends.
func reconcile(ctx context.Context, svc *service.Service, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r, err := svc.Reconcile(ctx, every)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("reconcile: some transfers could not be repaired; will try again", "err", err,
				"looked", r.Looked, "repaired", r.Repaired, "failed", r.Failed)
		case r.Repaired > 0:
			log.Info("reconcile: repaired transfers that had no running workflow", "looked", r.Looked, "repaired", r.Repaired)
		}
	}
}

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := c.flagSet("audit", stderr, func(fs *flag.FlagSet) {
		c.temporalFlags(fs)
		fs.BoolVar(&c.JSON, "json", false, "print the report as JSON")
		fs.DurationVar(&c.StuckAfter, "stuck-after", envDuration("AUDIT_STUCK_AFTER", ledger.DefaultStuckAfter), "report transfers whose saga step has kept failing this long with no progress (TRANSFERD_AUDIT_STUCK_AFTER)")
		fs.BoolVar(&c.NoTemporal, "no-temporal", envBool("AUDIT_NO_TEMPORAL", false), "skip invariants 6 and 8, which ask Temporal whether in-flight transfers have running workflows and whether closed workflows' results equal their rows")
	})
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	var opts client.Options
	if !c.NoTemporal {
		var err error
		if opts, err = c.temporalOptions(); err != nil {
			return err
		}
		opts.Logger = tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	}
	c.print(stderr, fs)
	store, err := openStore(ctx, &c)
	if err != nil {
		return err
	}
	defer store.Close()
	var checker ledger.WorkflowChecker
	if !c.NoTemporal {
		dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		tc, err := client.DialContext(dialCtx, opts)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "audit: Temporal at %s is not reachable (%v); invariants 6 and 8 are not checked\n", c.TemporalAddress, err)
		} else {
			defer tc.Close()
			checker = service.New(store, tc, c.TaskQueue, nil).WithOptions(service.Options{Namespace: c.TemporalNamespace})
		}
	}
	report, err := store.AuditWith(ctx, checker, ledger.AuditOptions{StuckAfter: c.StuckAfter})
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		printReport(stdout, report)
	}
	if !report.OK() {
		return exitError(1)
	}
	return nil
}

func printReport(w io.Writer, r ledger.AuditReport) {
	fmt.Fprintf(w, "audit: %d accounts, %d transfers (%d in flight), %d entries\n", r.Accounts, r.Transfers, r.InFlight, r.Entries)
	if !r.WorkflowsChecked {
		fmt.Fprintln(w, "audit: invariant 6 (workflows of in-flight transfers) not checked")
	}
	if !r.WorkflowResultsChecked {
		fmt.Fprintln(w, "audit: invariant 8 (closed workflows' results equal their rows) not checked")
	}
	if r.OK() {
		fmt.Fprintln(w, "audit: OK, no violations")
		return
	}
	fmt.Fprintf(w, "audit: %d VIOLATIONS\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  invariant %d (%s): %s: %s\n", v.Invariant, v.Name, v.Subject, v.Detail)
	}
}

// openStore connects to Postgres, retrying with backoff for up to connectPatience so that a process
// started alongside its database waits for it. It says in one line what to do if it cannot.
func openStore(ctx context.Context, c *config) (*ledger.Store, error) {
	store, err := withBackoff(ctx, func() (*ledger.Store, error) {
		return ledger.Open(ctx, c.DatabaseURL, ledger.Options{MaxOpenConns: c.DBMaxConns})
	})
	if err != nil {
		return nil, fmt.Errorf("cannot reach PostgreSQL at %s: %w (start it, or set --database-url / DATABASE_URL)", maskURL(c.DatabaseURL), err)
	}
	return store, nil
}

// dialTemporal connects to Temporal with opts (temporalOptions), its logger log and the telemetry,
// retrying with backoff for up to connectPatience.
func dialTemporal(ctx context.Context, opts client.Options, log *slog.Logger, tel *telemetry) (client.Client, error) {
	opts.Logger = tlog.NewStructuredLogger(log)
	opts = tel.clientOptions(opts)
	tc, err := withBackoff(ctx, func() (client.Client, error) {
		return client.DialContext(ctx, opts)
	})
	if err != nil {
		return nil, fmt.Errorf("cannot reach Temporal at %s namespace %s: %w (start it, or set --temporal-address / TEMPORAL_ADDRESS, and for a secured cluster --temporal-tls-* / TEMPORAL_TLS_* or --temporal-api-key / TEMPORAL_API_KEY)", opts.HostPort, opts.Namespace, err)
	}
	return tc, nil
}

// connectPatience is how long a process waits at start for a dependency to answer.
const connectPatience = 60 * time.Second

// withBackoff calls connect until it succeeds, waiting 250ms, 500ms, ... up to 5s between tries,
// for at most connectPatience; then it returns the last error.
func withBackoff[T any](ctx context.Context, connect func() (T, error)) (T, error) {
	deadline := time.Now().Add(connectPatience)
	for wait := 250 * time.Millisecond; ; wait = min(wait*2, 5*time.Second) {
		v, err := connect()
		if err == nil || time.Now().Add(wait).After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(wait):
		}
	}
}
