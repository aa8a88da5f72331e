package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/worker"
)

// Settings are the suite's loads, as the flags of `transferd bench suite` give them.
type Settings struct {
	// Count is the transfers of each closed-loop run, Concurrency those it keeps in flight, and
	// Accounts those each run sets up.
	Count, Concurrency, Accounts int
	// Rate and RateFor are the saga's fixed-rate run: transfers per second, and for how long.
	Rate    float64
	RateFor time.Duration
	// SplitRate and SplitFor are the split run's on the dev server; ClusterRate is the rate of the
	// cluster's fixed-rate run, which lasts SplitFor too.
	SplitRate   float64
	SplitFor    time.Duration
	ClusterRate float64
	// Quick marks a run of a few seconds that only shows the tool works: the report says so, and
	// the growth runs stop at 10,000 entries.
	Quick bool
}

// Shorten returns s for a run of a few seconds (--quick). The split run keeps its length when
// keepSplitFor, as it does when --split-for is given.
func (s Settings) Shorten(keepSplitFor bool) Settings {
	s.Quick = true
	s.Count, s.Concurrency, s.Accounts, s.Rate, s.RateFor = 40, 4, 8, 10, 2*time.Second
	if !keepSplitFor {
		s.SplitFor = QuickSplitFor
	}
	return s
}

// growthSizes are the journal sizes of the growth runs.
func (s Settings) growthSizes() []int {
	if s.Quick {
		return []int{1_000, 10_000}
	}
	return []int{1_000, 10_000, 100_000, 1_000_000}
}

// Suite is `transferd bench suite`: floor, sql, the saga in each mode and at a fixed rate, the split
// run and the naive saga, one after another on one stack and one database; the audit after them; the
// growth runs on a database of their own; and the report.
type Suite struct {
	Settings
	// DatabaseURL names the PostgreSQL server on which the suite creates, and drops, its databases.
	DatabaseURL string
	// Stack runs what the suite drives on the dev server; the suite starts it, starts it again for
	// the naive saga, and closes it.
	Stack Stack
	// Cluster, when not nil, runs the suite's second part on a Temporal cluster on PostgreSQL
	// (ClusterStack): floor, the saga closed-loop and at the split run's rate and length with one
	// worker process, the saga again with two, and the naive saga, on a database of its own.
	Cluster Stack
	// ProfileDir, when not empty, receives 30-second CPU profiles of every process that serves them
	// (Deployment.Pprof, and the split run's), taken during the split run and the cluster's
	// fixed-rate run: dev-<name>.pprof and cluster-<name>.pprof.
	ProfileDir string
	// Split is the transferd executable of the split run.
	Split Binary
	// Out and JSONOut are where the Markdown report and the JSON results go.
	Out, JSONOut string
	// PrintAudit writes the audit's report as `transferd audit` prints it.
	PrintAudit func(w io.Writer, r ledger.AuditReport)
	// Stdout gets what the suite says as it goes: what it started, the results' table, the audit.
	// Progress gets the progress bars and lines.
	Stdout, Progress io.Writer
}

// ErrViolations is Run's error when the audit after the runs finds violations, which PrintAudit has
// written; the report is not written.
var ErrViolations = errors.New("bench: the audit after the runs found violations")

// Run runs the suite and writes its report. Whatever it started is stopped, and the databases it
// created dropped, when it returns, whether it succeeded or failed.
func (s *Suite) Run(ctx context.Context) error {
	results, audit, err := s.runDev(ctx)
	if err != nil {
		return err
	}
	rep := Report{Settings: s.Settings, Results: results, Audit: audit, Split: s.Split}
	if s.Cluster != nil {
		cluster, audit, err := s.runCluster(ctx)
		if err != nil {
			return err
		}
		rep.Results = append(rep.Results, cluster...)
		rep.ClusterAudit = &audit
	}
	WriteTable(s.Stdout, rep.Results)

	// Growth: lists and audit as the journal grows, on a database of their own.
	if rep.Growth, err = runGrowth(ctx, s.DatabaseURL, s.growthSizes(), s.Progress); err != nil {
		return err
	}
	if err := rep.Write(s.Out, s.JSONOut); err != nil {
		return err
	}
	fmt.Fprintf(s.Stdout, "bench: wrote %s and %s\n", s.Out, s.JSONOut)
	return nil
}

// runDev runs the suite's first part on the dev stack, and audits its database.
func (s *Suite) runDev(ctx context.Context) ([]Result, ledger.AuditReport, error) {
	var none ledger.AuditReport
	dsn, drop, err := throwawayDatabase(ctx, s.DatabaseURL)
	if err != nil {
		return nil, none, err
	}
	defer drop()
	defer s.Stack.Close()
	dep, err := s.Stack.Start(ctx, StackStart{Database: dsn})
	if err != nil {
		return nil, none, err
	}
	fmt.Fprintf(s.Stdout, "bench: %s\n", dep.Summary)

	store, err := ledger.Open(ctx, dsn, ledger.Options{MaxOpenConns: 40})
	if err != nil {
		return nil, none, err
	}
	defer store.Close()
	results, err := s.runShipped(ctx, dep, dsn, store)
	if err != nil {
		return nil, none, err
	}
	// The saga again with a webhook endpoint subscribed to every event, and its deliveries drained.
	fmt.Fprintf(s.Stdout, "bench: saga+webhooks run\n")
	wh, err := s.runWebhooks(ctx, dep, store, 10*time.Minute)
	if err != nil {
		return nil, none, fmt.Errorf("saga+webhooks run: %w", err)
	}
	results = append(results, wh)

	// The naive variant: the same saga with a regular activity and a search-attribute upsert per
	// step, as Temporal's money-transfer sample is built, on the stack started again to run it. The
	// transfers still in flight resume on it.
	fmt.Fprintf(s.Stdout, "bench: the dev stack again, for the naive run\n")
	_ = s.Stack.Stop()
	if dep, err = s.Stack.Start(ctx, StackStart{Database: dsn, SagaVariant: "naive"}); err != nil {
		return nil, none, fmt.Errorf("restart for the naive run: %w", err)
	}
	naive := &API{URL: dep.API, Email: dep.AdminEmail, Password: dep.AdminPassword, Label: "naive"}
	res, err := Run(ctx, naive, s.closed(ModeRandom, dep))
	if err != nil {
		return nil, none, fmt.Errorf("naive run: %w", err)
	}
	results = append(results, res)
	for i := range results {
		results[i].Server = ServerDev
	}
	if err := addLedgerViews(ctx, store, results); err != nil {
		return nil, none, err
	}
	audit, err := s.audit(ctx, store, dep)
	return results, audit, err
}

// audit audits the ledger of a stack, its workflows included, and prints the report; it fails on a
// violation.
func (s *Suite) audit(ctx context.Context, store *ledger.Store, dep Deployment) (ledger.AuditReport, error) {
	tc, err := client.DialContext(ctx, dep.Temporal)
	if err != nil {
		return ledger.AuditReport{}, err
	}
	defer tc.Close()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	audit, err := store.Audit(ctx, service.New(store, tc, dep.TaskQueue, log))
	if err != nil {
		return audit, err
	}
	if s.PrintAudit != nil {
		s.PrintAudit(s.Stdout, audit)
	}
	if !audit.OK() {
		return audit, ErrViolations
	}
	return audit, nil
}

// runCluster runs the suite's second part on the cluster stack, on a database of its own: floor and
// the saga, closed-loop and then at the split run's rate and length, with one worker process; the
// saga closed-loop with two; the naive saga with two; then the audit.
func (s *Suite) runCluster(ctx context.Context) ([]Result, ledger.AuditReport, error) {
	var none ledger.AuditReport
	dsn, drop, err := throwawayDatabase(ctx, s.DatabaseURL)
	if err != nil {
		return nil, none, err
	}
	defer drop()
	defer s.Cluster.Close()
	dep, err := s.Cluster.Start(ctx, StackStart{Database: dsn, Workers: 1})
	if err != nil {
		return nil, none, err
	}
	fmt.Fprintf(s.Stdout, "bench: %s\n", dep.Summary)
	store, err := ledger.Open(ctx, dsn, ledger.Options{MaxOpenConns: 10})
	if err != nil {
		return nil, none, err
	}
	defer store.Close()
	tc, err := client.DialContext(ctx, dep.Temporal)
	if err != nil {
		return nil, none, err
	}
	defer tc.Close()
	floorWorker := worker.NewFloor(tc, "bench-floor")
	if err := floorWorker.Start(); err != nil {
		return nil, none, err
	}
	defer floorWorker.Stop()

	var results []Result
	run := func(t Target, cfg Config, workers int) error {
		res, err := Run(ctx, t, cfg)
		res.Server, res.Workers = ServerCluster, workers
		results = append(results, res)
		return err
	}
	api := func(dep Deployment, label string) *API {
		return &API{URL: dep.API, Email: dep.AdminEmail, Password: dep.AdminPassword, Label: label}
	}
	for _, eager := range []bool{false, true} {
		if err := run(&Floor{Client: tc, TaskQueue: "bench-floor", Eager: eager}, s.closed(ModeRandom, dep), 0); err != nil {
			return nil, none, err
		}
	}
	if err := run(api(dep, "saga"), s.closed(ModeRandom, dep), 1); err != nil {
		return nil, none, err
	}
	profiled := startProfiles(ctx, s.ProfileDir, "cluster-", dep.Pprof, profileDelay(s.SplitFor))
	err = run(api(dep, "saga"), Config{Accounts: s.Accounts, Mode: ModeRandom, Rate: s.ClusterRate, Duration: s.SplitFor,
		Processes: dep.Processes, Progress: s.Progress}, 1)
	if perr := profiled(); err == nil {
		err = perr
	}
	if err != nil {
		return nil, none, err
	}
	// Above what the machine sustains, the run leaves a backlog that grows with its length.
	if err := drain(ctx, store, 10*time.Minute+s.SplitFor, s.Progress); err != nil {
		return nil, none, err
	}
	for _, variant := range []string{"", "naive"} {
		if err := s.Cluster.Stop(); err != nil {
			return nil, none, err
		}
		if dep, err = s.Cluster.Start(ctx, StackStart{Database: dsn, Workers: 2, SagaVariant: variant}); err != nil {
			return nil, none, err
		}
		if err := run(api(dep, cmp.Or(variant, "saga")), s.closed(ModeRandom, dep), 2); err != nil {
			return nil, none, err
		}
	}
	if err := addLedgerViews(ctx, store, results); err != nil {
		return nil, none, err
	}
	audit, err := s.audit(ctx, store, dep)
	return results, audit, err
}

// addLedgerViews reads the ledger's view of each run of results that went through the API.
func addLedgerViews(ctx context.Context, store *ledger.Store, results []Result) error {
	for i := range results {
		if len(results[i].accepted) == 0 || results[i].Target == "floor" || results[i].Target == "floor-eager" || results[i].Target == "sql" {
			continue
		}
		v, err := LedgerView(ctx, store, results[i])
		if err != nil {
			return err
		}
		results[i].Ledger = v
	}
	return nil
}

// startProfiles takes a 30-second CPU profile of each process of addrs (name: the address of its
// pprof handlers) into dir, as <prefix><name>.pprof, beginning after a delay; the returned function
// waits for them and reports every failure. It does nothing when dir is empty.
func startProfiles(ctx context.Context, dir, prefix string, addrs map[string]string, after time.Duration) func() error {
	if dir == "" || len(addrs) == 0 {
		return func() error { return nil }
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for name, addr := range addrs {
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(after):
			}
			err := fetchProfile(ctx, addr, filepath.Join(dir, prefix+strings.ReplaceAll(name, " ", "-")+".pprof"))
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	return func() error {
		wg.Wait()
		return errors.Join(errs...)
	}
}

// profileDelay is when the profiles of a fixed-rate run of length d begin: a third of the way in, at
// most a minute.
func profileDelay(d time.Duration) time.Duration { return min(time.Minute, d/3) }

// fetchProfile saves a 30-second CPU profile of the pprof handlers at addr to path.
func fetchProfile(ctx context.Context, addr, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/debug/pprof/profile?seconds=30", nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("bench: profile of %s: %w", addr, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: profile of %s: %s", addr, res.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runShipped runs, on the stack as first started, floor, sql, the saga as shipped in each mode and at
// a fixed rate, and the split run.
func (s *Suite) runShipped(ctx context.Context, dep Deployment, dsn string, store *ledger.Store) ([]Result, error) {
	tc, err := client.DialContext(ctx, dep.Temporal)
	if err != nil {
		return nil, err
	}
	defer tc.Close()
	floorWorker := worker.NewFloor(tc, "bench-floor")
	if err := floorWorker.Start(); err != nil {
		return nil, err
	}
	defer floorWorker.Stop()

	api := &API{URL: dep.API, Email: dep.AdminEmail, Password: dep.AdminPassword}
	steady := Config{Accounts: s.Accounts, Mode: ModeRandom, Rate: s.Rate, Duration: s.RateFor, Processes: dep.Processes, Progress: s.Progress}
	runs := []struct {
		target Target
		cfg    Config
	}{
		{&Floor{Client: tc, TaskQueue: "bench-floor"}, s.closed(ModeRandom, dep)},
		{&Floor{Client: tc, TaskQueue: "bench-floor", Eager: true}, s.closed(ModeRandom, dep)},
		{&SQL{Ledger: store}, s.closed(ModeRandom, dep)},
		{api, s.closed(ModeRandom, dep)},
		{api, s.closed(ModeHot, dep)},
		{api, s.closed(ModeOpposite, dep)},
		{api, steady},
	}
	var results []Result
	for _, r := range runs {
		res, err := Run(ctx, r.target, r.cfg)
		if err != nil {
			return nil, err
		}
		results = append(results, res)
	}
	// A fixed rate above what the machine sustains leaves a backlog: let it drain before the next run.
	if err := drain(ctx, store, 5*time.Minute, s.Progress); err != nil {
		return nil, err
	}
	split, err := runSplit(ctx, tc, store, splitRun{binary: s.Split.Path, dsn: dsn, dep: dep,
		accounts: s.Accounts, rate: s.SplitRate, duration: s.SplitFor, profileDir: s.ProfileDir}, s.Stdout, s.Progress)
	if err != nil {
		return nil, err
	}
	return append(results, split), nil
}

// closed is a closed-loop run in mode on dep, measuring its processes.
func (s *Suite) closed(mode string, dep Deployment) Config {
	return Config{Accounts: s.Accounts, Mode: mode, Concurrency: s.Concurrency, Count: s.Count, Processes: dep.Processes, Progress: s.Progress}
}

// drain waits until no transfer is in flight, for at most patience.
func drain(ctx context.Context, store *ledger.Store, patience time.Duration, progress io.Writer) error {
	deadline := time.Now().Add(patience)
	for {
		inFlight, err := store.InFlightTransfers(ctx, time.Now().Add(time.Hour), 100000)
		if err != nil {
			return err
		}
		if len(inFlight) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %d transfers still in flight after %s", len(inFlight), patience)
		}
		fmt.Fprintf(progress, "\rdraining: %d transfers in flight   ", len(inFlight))
		time.Sleep(time.Second)
	}
}

// runGrowth runs the growth measurements on a throwaway, migrated database.
func runGrowth(ctx context.Context, databaseURL string, sizes []int, progress io.Writer) ([]GrowthPoint, error) {
	dsn, drop, err := throwawayDatabase(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	defer drop()
	if _, err := ledger.CreateDatabase(ctx, dsn); err != nil {
		return nil, err
	}
	store, err := ledger.Open(ctx, dsn, ledger.Options{})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	if _, err := store.Migrate(ctx); err != nil {
		return nil, err
	}
	audit := func(ctx context.Context) error {
		r, err := store.Audit(ctx, nil)
		if err == nil && !r.OK() {
			err = fmt.Errorf("audit: %d violations, first: %v", len(r.Violations), r.Violations[0])
		}
		return err
	}
	return Growth(ctx, store, audit, GrowthConfig{Sizes: sizes, Progress: progress})
}

// throwawayDatabase names a database that does not exist yet on the server of dsn, and returns a
// function that drops it.
func throwawayDatabase(ctx context.Context, dsn string) (string, func(), error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", nil, fmt.Errorf("bench: --database-url: %w", err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "transferd_bench_" + hex.EncodeToString(b[:])
	u.Path = "/" + name
	return u.String(), func() { _ = ledger.DropDatabase(context.WithoutCancel(ctx), u.String()) }, nil
}
