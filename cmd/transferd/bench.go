//go:build !nodev

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/transferd/transferd/bench"
	"github.com/transferd/transferd/devtemporal"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/worker"
)

// The bench's checks that wiring holds.
var _ bench.Ledger = (*ledger.Store)(nil)

// runBench runs `transferd bench suite`: it starts its own `transferd dev` on a throwaway database,
// runs the floor, sql and saga targets one after another on the same Temporal server and PostgreSQL,
// audits the ledger, and writes the report.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "suite" {
		fmt.Fprintln(stderr, "usage: transferd bench suite [--quick] [--out docs/benchmarks.md] [--count N] [--concurrency N] [--accounts N]")
		return exitError(2)
	}
	var c config
	var out, jsonOut string
	var quick bool
	var count, concurrency, accounts int
	var rate float64
	var rateFor time.Duration
	fs := c.flagSet("bench suite", stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&out, "out", "docs/benchmarks.md", "where to write the Markdown report")
		fs.StringVar(&jsonOut, "json", "docs/bench-results.json", "where to write the results as JSON")
		fs.BoolVar(&quick, "quick", false, "a run of a few seconds, to keep the tool working (make test)")
		fs.IntVar(&count, "count", 1500, "transfers per closed-loop run")
		fs.IntVar(&concurrency, "concurrency", 32, "transfers in flight in the closed-loop runs")
		fs.IntVar(&accounts, "accounts", 200, "accounts")
		fs.Float64Var(&rate, "rate", 50, "transfers per second of the fixed-rate run")
		fs.DurationVar(&rateFor, "rate-for", 30*time.Second, "length of the fixed-rate run")
	})
	if err := fs.Parse(args[1:]); err != nil {
		return exitError(2)
	}
	if quick {
		count, concurrency, accounts, rate, rateFor = 40, 4, 8, 10, 2*time.Second
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))

	// A throwaway database on the server of --database-url.
	benchDB, drop, err := throwawayDatabase(ctx, c.DatabaseURL)
	if err != nil {
		return err
	}
	defer drop()
	dataDir, err := os.MkdirTemp("", "transferd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	temporalPort, err := devtemporal.FreeFrontendPort("127.0.0.1")
	if err != nil {
		return err
	}
	temporalAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(temporalPort))
	apiAddr, err := freeTCPAddrOutside(devtemporal.Ports(temporalPort))
	if err != nil {
		return err
	}
	dev, err := startDevProcess(ctx, benchDB, dataDir, temporalAddr, apiAddr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench: transferd dev (pid %d) on %s, Temporal %s\n", dev.cmd.Process.Pid, dev.api, dev.temporal)

	store, err := ledger.Open(ctx, benchDB, ledger.Options{MaxOpenConns: 40})
	if err != nil {
		return err
	}
	defer store.Close()
	tc, err := client.DialContext(ctx, client.Options{HostPort: dev.temporal, Namespace: "default", Logger: tlog.NewStructuredLogger(log)})
	if err != nil {
		dev.stop()
		return err
	}
	floorWorker := worker.NewFloor(tc, "bench-floor")
	if err := floorWorker.Start(); err != nil {
		return err
	}

	pids := map[string]int{"dev (API+worker)": dev.cmd.Process.Pid}
	closed := func(mode string) bench.Config {
		return bench.Config{Accounts: accounts, Mode: mode, Concurrency: concurrency, Count: count, Processes: pids, Progress: stderr}
	}
	api := &bench.API{URL: dev.api, Email: bootstrapAdminEmail, Password: dev.password}
	runs := []struct {
		target bench.Target
		cfg    bench.Config
	}{
		{&bench.Floor{Client: tc, TaskQueue: "bench-floor"}, closed(bench.ModeRandom)},
		{&bench.SQL{Ledger: store}, closed(bench.ModeRandom)},
		{api, closed(bench.ModeRandom)},
		{api, closed(bench.ModeHot)},
		{api, closed(bench.ModeOpposite)},
		{api, bench.Config{Accounts: accounts, Mode: bench.ModeRandom, Rate: rate, Duration: rateFor, Processes: pids, Progress: stderr}},
	}
	var results []bench.Result
	for _, r := range runs {
		res, err := bench.Run(ctx, r.target, r.cfg)
		if err != nil {
			return err
		}
		results = append(results, res)
	}
	// A fixed rate above what the machine sustains leaves a backlog: let it drain before the next run.
	if err := drain(ctx, store, 5*time.Minute, stderr); err != nil {
		return err
	}
	// The naive variant: the same saga with a regular activity and a search-attribute upsert per
	// step, as Temporal's money-transfer sample is built, on a dev server restarted to run it.
	floorWorker.Stop()
	tc.Close()
	dev.stop()
	// The admin exists now; the restarted dev prints no password, so the first one serves. The
	// restart keeps the data directory, so transfers still in flight resume on it.
	password := dev.password
	dev, err = startDevProcess(ctx, benchDB, dataDir, temporalAddr, apiAddr, "--saga-variant", "naive")
	if err != nil {
		return err
	}
	defer dev.stop()
	tc, err = client.DialContext(ctx, client.Options{HostPort: dev.temporal, Namespace: "default", Logger: tlog.NewStructuredLogger(log)})
	if err != nil {
		return err
	}
	defer tc.Close()
	naivePIDs := map[string]int{"dev (API+worker)": dev.cmd.Process.Pid}
	naive := &bench.API{URL: dev.api, Email: bootstrapAdminEmail, Password: password, Label: "naive"}
	cfg := closed(bench.ModeRandom)
	cfg.Processes = naivePIDs
	res, err := bench.Run(ctx, naive, cfg)
	if err != nil {
		return err
	}
	results = append(results, res)
	bench.WriteTable(stdout, results)

	report, err := store.Audit(ctx, service.New(store, tc, "transfers", log))
	if err != nil {
		return err
	}
	printReport(stdout, report)
	if !report.OK() {
		return exitError(1)
	}

	// Growth: lists and audit as the journal grows, on a database of their own.
	sizes := []int{1_000, 10_000, 100_000, 1_000_000}
	if quick {
		sizes = []int{1_000, 10_000}
	}
	growth, err := runGrowth(ctx, c.DatabaseURL, sizes, stderr)
	if err != nil {
		return err
	}
	if err := writeBenchReport(out, jsonOut, results, report, growth, quick, count, concurrency, accounts); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench: wrote %s and %s\n", out, jsonOut)
	return nil
}

// runGrowth runs the growth measurements on a throwaway, migrated database.
func runGrowth(ctx context.Context, databaseURL string, sizes []int, progress io.Writer) ([]bench.GrowthPoint, error) {
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
	return bench.Growth(ctx, store, audit, bench.GrowthConfig{Sizes: sizes, Progress: progress})
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

// benchDev is a `transferd dev` the bench started.
type benchDev struct {
	cmd                     *exec.Cmd
	api, temporal, password string
}

func (d *benchDev) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		_ = d.cmd.Process.Kill()
	}
}

// startDevProcess runs this binary's dev command on free ports with its own data directory.
// A restart passes the addresses of the first start: the embedded Temporal server comes back as the
// same hosts and resumes at once.
func startDevProcess(ctx context.Context, dsn, dataDir, temporal, addr string, extra ...string) (*benchDev, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, append([]string{"dev", "--database-url", dsn, "--data-dir", dataDir, "--addr", addr,
		"--temporal-address", temporal, "--ui-addr", "", "--bcrypt-cost", "4"}, extra...)...)
	var errTail tailBuffer
	cmd.Stderr = &errTail
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	banner, err := readDevBanner(stdout)
	if err == nil {
		return &benchDev{cmd: cmd, temporal: temporal, api: banner.API, password: banner.Password}, nil
	}
	(&benchDev{cmd: cmd}).stop()
	return nil, fmt.Errorf("bench: transferd dev did not start; its last words:\n%s", errTail.String())
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// freeTCPAddrOutside returns a free loopback address whose port is none of taken.
func freeTCPAddrOutside(taken []int) (string, error) {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !slices.Contains(taken, port) {
			return ln.Addr().String(), nil
		}
	}
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

// writeBenchReport writes the Markdown report and the JSON results.
func writeBenchReport(out, jsonOut string, results []bench.Result, audit ledger.AuditReport, growth []bench.GrowthPoint,
	quick bool, count, concurrency, accounts int) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	j, _ := json.MarshalIndent(map[string]any{"results": results, "audit": audit, "growth": growth}, "", "  ")
	if err := os.WriteFile(jsonOut, append(j, '\n'), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	find := func(target, mode string, rate bool) bench.Result {
		for _, r := range results {
			if r.Target == target && r.Mode == mode && (r.Rate > 0) == rate {
				return r
			}
		}
		return bench.Result{}
	}
	saga, floor, sql := find("saga", "random", false), find("floor", "random", false), find("sql", "random", false)
	naive := find("naive", "random", false)
	steady := find("saga", "random", true)
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	if quick {
		fmt.Fprintf(&b, "**Quick run** (`--quick`, a few seconds): these figures only show the tool works.\n\n")
	}
	fmt.Fprintf(&b, "Written by `make bench` (`transferd bench suite`) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s\n- Go: %s, GOMAXPROCS %d\n- Commit: %s\n", machine(), runtime.Version(), runtime.GOMAXPROCS(0), commit())
	fmt.Fprintf(&b, "- Setup: one `transferd dev` process (API, worker and embedded Temporal server on SQLite) over the local PostgreSQL; the bench process drives it over HTTP with %d accounts; the closed-loop runs keep %d transfers in flight for %d transfers each.\n\n", accounts, concurrency, count)
	fmt.Fprintf(&b, "## Results\n\nLatencies in milliseconds. *accept* is the `202` answer of `POST /v1/transfers`; *final* is submit to final status. "+
		"`floor` starts and awaits an empty workflow per item on the same Temporal server; `sql` runs the saga's reserve, debit and credit statements in one PostgreSQL transaction per transfer, with no Temporal and no HTTP; "+
		"`saga` is transferd as shipped (every step a local activity, so a transfer whose steps succeed is one workflow task; one statement per step; eager start); `naive` is the same saga built the way Temporal's money-transfer sample is (a regular activity and a search-attribute upsert per step), run on a dev server restarted with `--saga-variant naive`.\n\n")
	bench.WriteMarkdown(&b, results)
	fmt.Fprintf(&b, "\n## Ratios and targets\n\n")
	fmt.Fprintf(&b, "| figure | value | target |\n|---|---:|---|\n")
	fmt.Fprintf(&b, "| saga / floor, completed per second | %.2f | >= 0.7 |\n", ratio(saga.CompletedPerSec, floor.CompletedPerSec))
	fmt.Fprintf(&b, "| saga / naive, completed per second | %.2f | >= 4 |\n", ratio(saga.CompletedPerSec, naive.CompletedPerSec))
	fmt.Fprintf(&b, "| saga / sql, completed per second | %.3f | (the cost of durability) |\n", ratio(saga.CompletedPerSec, sql.CompletedPerSec))
	fmt.Fprintf(&b, "| p99 of the 202 at %.0f/s | %.1f ms | < 25 ms |\n", steady.Rate, steady.Accept.P99)
	fmt.Fprintf(&b, "| p50 submit-to-completed at %.0f/s | %.1f ms | < 100 ms |\n", steady.Rate, steady.Final.P50)
	fmt.Fprintf(&b, "| peak RSS of API+worker | %s | < 150 MB each |\n", rssText(results))
	fmt.Fprintf(&b, "\nAudit after all runs: %d accounts, %d transfers, %d in flight, %d violations.\n", audit.Accounts, audit.Transfers, audit.InFlight, len(audit.Violations))
	fmt.Fprintf(&b, "\n## Growth\n\nMilliseconds, median of nine reads, pages of %d. A journal of completed deposits over 10 accounts grows in bulk "+
		"(`ledger.SeedDeposits`) on a database of its own; at each size the bench reads one account's history and transfers (the first page, "+
		"and a page's mean over a walk of 20 pages), the transfers its owner may see, all transfers, and runs a full `audit`. "+
		"Every list is a keyset read of an index in its order, so a page costs about the same at any size "+
		"(`TestListPagesReadAPageOfRows` checks the rows each page reads with `EXPLAIN ANALYZE`); the audit reads everything, and its cost per entry is the last column.\n\n",
		transfer.DefaultPageLimit)
	bench.WriteGrowthMarkdown(&b, growth)
	fmt.Fprintf(&b, "\n## Reproduce\n\n```sh\nmake bench          # transferd bench suite: writes this file and docs/bench-results.json\n```\n\n"+
		"It needs PostgreSQL on `127.0.0.1:5432` (or `DATABASE_URL`); it creates and drops its own database, and starts its own `transferd dev` on free ports.\n")
	b.WriteString(benchNotes)
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

func rssText(results []bench.Result) string {
	var peak int64
	for _, r := range results {
		for _, v := range r.PeakRSSMiB {
			peak = max(peak, v)
		}
	}
	return fmt.Sprintf("%d MiB (one process)", peak)
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib int64
		if _, err := fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kib); err == nil {
			mem = fmt.Sprintf(", %.0f GiB", float64(kib)/(1<<20))
		}
	}
	return fmt.Sprintf("%d cores, %s%s, %s/%s", runtime.NumCPU(), cpu, mem, runtime.GOOS, runtime.GOARCH)
}

func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

// benchNotes is the report's fixed part: how to read the figures.
const benchNotes = `
## Reading the figures

- **What a transfer costs Temporal.** Every step (reserve, debit, credit, and a compensation when one
  runs) is a local activity: it runs in the worker inside the workflow task, as one PostgreSQL statement
  (a step function), and leaves a marker in the history. A transfer whose steps succeed is therefore one
  workflow task, started eagerly with the workflow, as the floor's empty workflow is; what it adds to
  the floor is its markers, its search-attribute upserts and the PostgreSQL work.
- **What bounds it here.** In ` + "`transferd dev`" + ` the Temporal server persists to SQLite, which has
  a single writer, and the API, the worker, the Temporal server, PostgreSQL and the bench's own client
  share two cores. A Temporal cluster on PostgreSQL or Cassandra (as in docker-compose.yml) and
  separate machines remove both bounds; ` + "`docs/profile-dev-saga.md`" + ` has a CPU profile.
- **saga / naive** cannot exceed floor / naive, since the saga costs at least the floor: with the naive
  saga at about a quarter of the floor on this server, the target of 4 is at the edge of what any
  design could reach here.
- **Closed loop versus fixed rate.** The closed-loop runs keep 32 transfers in flight on a saturated
  machine, so their latencies are mostly queueing (Little's law: in flight / rate); the fixed-rate run
  shows the latency of a transfer on a machine that keeps up.
- **sql** has no durability of progress between steps and no retries across crashes; it is the cost of
  the money work alone, the lower bound of any design.
- **Peak RSS** is the kernel's VmHWM of the one ` + "`transferd dev`" + ` process, which holds the API,
  the worker and the embedded Temporal server together. Separate API and worker processes against a
  Temporal cluster were not measured here (no cluster on this machine), so the per-process target is
  not shown as met.
`
