//go:build !nodev

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

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
		fmt.Fprintln(stderr, "usage: transferd bench suite [--quick] [--out docs/benchmarks.md] [--count N] [--concurrency N] [--accounts N] [--split-for 5m] [--split-binary PATH]")
		return exitError(2)
	}
	var c config
	var out, jsonOut, splitBinary string
	var quick bool
	var count, concurrency, accounts int
	var rate, splitRate float64
	var rateFor, splitFor time.Duration
	fs := c.flagSet("bench suite", stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&out, "out", "docs/benchmarks.md", "where to write the Markdown report")
		fs.StringVar(&jsonOut, "json", "docs/bench-results.json", "where to write the results as JSON")
		fs.BoolVar(&quick, "quick", false, "a run of a few seconds, to keep the tool working (make test)")
		fs.IntVar(&count, "count", 1500, "transfers per closed-loop run")
		fs.IntVar(&concurrency, "concurrency", 32, "transfers in flight in the closed-loop runs")
		fs.IntVar(&accounts, "accounts", 200, "accounts")
		fs.Float64Var(&rate, "rate", 50, "transfers per second of the fixed-rate run")
		fs.DurationVar(&rateFor, "rate-for", 30*time.Second, "length of the fixed-rate run")
		fs.Float64Var(&splitRate, "split-rate", splitTargetRate, "transfers per second of the split run (transferd server and transferd worker as two processes)")
		fs.DurationVar(&splitFor, "split-for", splitTargetFor, "length of the split run")
		fs.StringVar(&splitBinary, "split-binary", "", "the transferd binary the split run starts, built with -tags nodev as the image's is; empty to build one with go build from the module in the working directory")
	})
	if err := fs.Parse(args[1:]); err != nil {
		return exitError(2)
	}
	if quick {
		count, concurrency, accounts, rate, rateFor = 40, 4, 8, 10, 2*time.Second
		// --quick shortens the split run too, unless --split-for says how long it is.
		splitForSet := false
		fs.Visit(func(f *flag.Flag) { splitForSet = splitForSet || f.Name == "split-for" })
		if !splitForSet {
			splitFor = quickSplitFor
		}
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))

	// The split run's binary first: without it the suite cannot finish.
	splitFrom := "`" + splitBinary + "`"
	if splitBinary == "" {
		binDir, err := os.MkdirTemp("", "transferd-bench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(binDir)
		if splitBinary, err = buildNodev(ctx, binDir); err != nil {
			return err
		}
		splitFrom = "built by the bench with `-tags nodev`, as the image's is"
	}

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
	// Whichever dev runs when the suite returns, whether it succeeded or failed, stops with it.
	defer func() {
		if dev != nil {
			dev.stop()
		}
	}()
	fmt.Fprintf(stdout, "bench: transferd dev (pid %d) on %s, Temporal %s\n", dev.cmd.Process.Pid, dev.api, dev.temporal)

	store, err := ledger.Open(ctx, benchDB, ledger.Options{MaxOpenConns: 40})
	if err != nil {
		return err
	}
	defer store.Close()
	opts, err := devTemporalOptions(dev.temporal, "default", log)
	if err != nil {
		return err
	}
	tc, err := client.DialContext(ctx, opts)
	if err != nil {
		return err
	}
	floorWorker := worker.NewFloor(tc, "bench-floor")
	if err := floorWorker.Start(); err != nil {
		return err
	}

	pids := map[string]int{devRSSName: dev.cmd.Process.Pid}
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
	split, err := runSplit(ctx, tc, store, splitRun{binary: splitBinary, dsn: benchDB, temporal: dev.temporal, password: dev.password,
		taken: devtemporal.Ports(temporalPort), accounts: accounts, rate: splitRate, duration: splitFor}, stdout, stderr)
	if err != nil {
		return err
	}
	results = append(results, split)
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
	if opts, err = devTemporalOptions(dev.temporal, "default", log); err != nil {
		return err
	}
	tc, err = client.DialContext(ctx, opts)
	if err != nil {
		return err
	}
	defer tc.Close()
	naivePIDs := map[string]int{devRSSName: dev.cmd.Process.Pid}
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
	if err := writeBenchReport(out, jsonOut, results, report, growth, quick, count, concurrency, accounts, splitFrom); err != nil {
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

// The names of the processes whose peak RSS the runs report.
const (
	devRSSName  = "dev (API+worker)"
	splitAPI    = "api"
	splitWorker = "worker"
)

// splitTaskQueue is the split run's task queue, which dev's in-process worker does not poll.
const splitTaskQueue = "bench-split"

// The target of the split run: the API and the worker each under 150 MB of RSS at 50 transfers per
// second for five minutes.
const (
	splitRSSLimit   = 150_000_000 // bytes
	splitTargetRate = 50
	splitTargetFor  = 5 * time.Minute
	// quickSplitFor is the split run's length with --quick: enough to start, measure and stop both.
	quickSplitFor = 3 * time.Second
)

// splitRun is what the split run needs of the suite.
type splitRun struct {
	// binary is the transferd the run starts.
	binary string
	// dsn and temporal are the database and Temporal frontend of the suite's dev.
	dsn, temporal string
	// password is the bootstrap admin's, who signs in through the split API.
	password string
	// taken are ports to leave alone: those of dev's Temporal server, which a restart binds again.
	taken    []int
	accounts int
	rate     float64
	duration time.Duration
}

// runSplit runs the saga through `transferd server` and `transferd worker` started as two processes,
// as they are deployed, on dev's Temporal server and database, at a fixed rate, and reports the peak
// RSS of each. The two work on a task queue of their own, which dev's in-process worker does not poll,
// so the split worker runs every workflow the split API starts. Both are stopped on every path; the
// run fails unless both were measured, transfers completed, and both stopped cleanly.
func runSplit(ctx context.Context, tc client.Client, store *ledger.Store, s splitRun, stdout, progress io.Writer) (bench.Result, error) {
	apiAddr, err := freeTCPAddrOutside(s.taken)
	if err != nil {
		return bench.Result{}, err
	}
	// The API signs its own tokens: the bench signs in through it, so any secret will do, and one
	// set keeps the API from warning about a random one.
	var secret [32]byte
	_, _ = rand.Read(secret[:])
	env := append(withoutTemporalEnv(os.Environ()), "TRANSFERD_JWT_SECRET="+hex.EncodeToString(secret[:]))
	// What decides where the processes connect and what they run is set by flags, which win over
	// any TRANSFERD_* variables of the shell; the shell's Temporal connection (TLS, API key,
	// profile), meant for a real cluster, is left out of their environment. Ten connections each
	// leave room under PostgreSQL's default limit of 100 for dev's pool and the bench's own.
	common := []string{"--database-url", s.dsn, "--db-max-conns", "10", "--temporal-address", s.temporal,
		"--temporal-namespace", "default", "--task-queue", splitTaskQueue}
	wrk, err := startBenchProcess(s.binary, splitWorker, env, slices.Concat([]string{"worker"}, common, []string{"--metrics-addr", ""}))
	if err != nil {
		return bench.Result{}, err
	}
	defer wrk.stop()
	api, err := startBenchProcess(s.binary, splitAPI, env, slices.Concat([]string{"server"}, common,
		[]string{"--addr", apiAddr, "--with-worker=false", "--saga-variant", "fast", "--bcrypt-cost", "4"}))
	if err != nil {
		return bench.Result{}, err
	}
	defer api.stop()
	apiURL := "http://" + apiAddr
	if err := waitSplitReady(ctx, tc, apiURL, api, wrk); err != nil {
		return bench.Result{}, err
	}
	fmt.Fprintf(stdout, "bench: split run: transferd server (pid %d) on %s, transferd worker (pid %d), task queue %s\n",
		api.cmd.Process.Pid, apiURL, wrk.cmd.Process.Pid, splitTaskQueue)

	target := &bench.API{URL: apiURL, Email: bootstrapAdminEmail, Password: s.password, Label: "split"}
	res, err := bench.Run(ctx, target, bench.Config{Accounts: s.accounts, Mode: bench.ModeRandom, Rate: s.rate, Duration: s.duration,
		Processes: map[string]int{splitAPI: api.cmd.Process.Pid, splitWorker: wrk.cmd.Process.Pid}, Progress: progress})
	if err != nil {
		return res, err
	}
	// The split worker alone runs these workflows: let them end before it stops. A machine that
	// does not keep up at the rate leaves a backlog that grows with the run's length.
	if err := drain(ctx, store, 5*time.Minute+s.duration, progress); err != nil {
		return res, err
	}
	// The API first, so nothing starts a workflow while the worker stops.
	if err := api.stop(); err != nil {
		return res, err
	}
	if err := wrk.stop(); err != nil {
		return res, err
	}
	return res, checkSplit(res)
}

// checkSplit fails a split run that measured either process's peak RSS as nothing, or completed no
// transfer: its figures would say nothing of the target.
func checkSplit(r bench.Result) error {
	for _, name := range []string{splitAPI, splitWorker} {
		if r.PeakRSSMiB[name] <= 0 {
			return fmt.Errorf("bench: the split run measured no peak RSS of the %s process", name)
		}
	}
	if r.Completed == 0 {
		return fmt.Errorf("bench: the split run completed no transfer (errors: %v)", r.Errors)
	}
	return nil
}

// waitSplitReady waits until the split API answers /readyz with 200 and the split worker polls its
// task queue, for at most 90 seconds: a little more than the minute each waits for its dependencies.
// It fails at once if either process exits.
func waitSplitReady(ctx context.Context, tc client.Client, apiURL string, api, wrk *benchProcess) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	apiReady := func() bool {
		req, err := http.NewRequestWithContext(ctx, "GET", apiURL+"/readyz", nil)
		if err != nil {
			return false
		}
		res, err := hc.Do(req)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
	workerPolling := func() bool {
		d, err := tc.DescribeTaskQueue(ctx, splitTaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
		return err == nil && len(d.GetPollers()) > 0
	}
	const patience = 90 * time.Second
	deadline := time.Now().Add(patience)
	for {
		for _, p := range []*benchProcess{api, wrk} {
			select {
			case <-p.exited:
				return fmt.Errorf("bench: transferd %s exited before it was ready (%v); its last words:\n%s", p.name, p.err, p.stderr.String())
			default:
			}
		}
		a, w := apiReady(), workerPolling()
		if a && w {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: the split run was not ready after %s (API ready: %t, worker polling: %t); the API's last words:\n%s\nthe worker's:\n%s",
				patience, a, w, api.stderr.String(), wrk.stderr.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// withoutTemporalEnv is env without the variables that say how to connect to Temporal (TEMPORAL_*
// and TRANSFERD_TEMPORAL_*), for the processes the bench points at its own dev server.
func withoutTemporalEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return strings.HasPrefix(kv, "TEMPORAL_") || strings.HasPrefix(kv, "TRANSFERD_TEMPORAL_")
	})
}

// buildNodev builds this command with -tags nodev into dir, as the Dockerfile builds the image's, for
// the split run. The API and the worker are deployed from that build: the embedded Temporal server and
// Web UI of the full one add some 150 MB of file-backed pages to the resident set of every process it
// runs, whatever the subcommand. The build reuses the build cache; -trimpath, which would not, changes
// nothing that is resident.
func buildNodev(ctx context.Context, dir string) (string, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", errors.New("bench: this binary has no build information to rebuild it for the split run; pass --split-binary")
	}
	out := filepath.Join(dir, "transferd")
	b, err := exec.CommandContext(ctx, "go", "build", "-tags", "nodev", "-ldflags=-s -w", "-o", out, bi.Path).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("bench: go build -tags nodev %s for the split run: %v\n%s(run the bench in the module's tree, or pass --split-binary)", bi.Path, err, b)
	}
	return out, nil
}

// benchProcess is a transferd subcommand the bench started, with the tail of its stderr.
type benchProcess struct {
	name   string
	cmd    *exec.Cmd
	stderr tailBuffer
	// exited is closed once the process has exited, with err its exit's error.
	exited chan struct{}
	err    error
}

// startBenchProcess runs binary with args and env; name names it in errors.
func startBenchProcess(binary, name string, env, args []string) (*benchProcess, error) {
	p := newBenchProcess(name, exec.Command(binary, args...))
	p.cmd.Env = env
	return p, p.start()
}

// newBenchProcess wraps cmd, not started yet, keeping the tail of its stderr; name names it in
// errors.
func newBenchProcess(name string, cmd *exec.Cmd) *benchProcess {
	p := &benchProcess{name: name, cmd: cmd, exited: make(chan struct{})}
	p.cmd.Stderr = &p.stderr
	return p
}

// start starts the process and watches for its exit.
func (p *benchProcess) start() error {
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("bench: start transferd %s: %w", p.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	return nil
}

// stop ends the process as an orchestrator does, with SIGTERM, and waits for it to exit, killing it
// after 40 seconds. It returns an error unless the process exited cleanly, and may be called again.
func (p *benchProcess) stop() error {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(40 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if p.err != nil {
		return fmt.Errorf("bench: transferd %s did not stop cleanly (%v); its last words:\n%s", p.name, p.err, p.stderr.String())
	}
	return nil
}

// benchDev is a `transferd dev` the bench started; stop stops it as any bench process.
type benchDev struct {
	*benchProcess
	api, temporal, password string
}

// startDevProcess runs this binary's dev command on free ports with its own data directory.
// A restart passes the addresses of the first start: the embedded Temporal server comes back as the
// same hosts and resumes at once.
func startDevProcess(ctx context.Context, dsn, dataDir, temporal, addr string, extra ...string) (*benchDev, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p := newBenchProcess("dev", exec.CommandContext(ctx, self, append([]string{"dev", "--database-url", dsn, "--data-dir", dataDir, "--addr", addr,
		"--temporal-address", temporal, "--ui-addr", "", "--bcrypt-cost", "4"}, extra...)...))
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	banner, err := readDevBanner(stdout)
	if err == nil {
		return &benchDev{benchProcess: p, temporal: temporal, api: banner.API, password: banner.Password}, nil
	}
	_ = p.stop()
	return nil, fmt.Errorf("bench: transferd dev did not start; its last words:\n%s", p.stderr.String())
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
	quick bool, count, concurrency, accounts int, splitFrom string) error {
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
	steady, split := find("saga", "random", true), find("split", "random", true)
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
	fmt.Fprintf(&b, "- Machine: %s\n- Go: %s, GOMAXPROCS %d\n- Commit: %s\n", machine(), runtime.Version(), runtime.GOMAXPROCS(0), commit(out, jsonOut))
	fmt.Fprintf(&b, "- Setup: one `transferd dev` process (API, worker and embedded Temporal server on SQLite) over the local PostgreSQL; the bench process drives it over HTTP with %d accounts; the closed-loop runs keep %d transfers in flight for %d transfers each. "+
		"The `split` run adds `transferd server` and `transferd worker` (%s) as two more processes on dev's Temporal server and the same database, driven at %.0f/s for %s.\n\n",
		accounts, concurrency, count, splitFrom, split.Rate, secondsText(split.Duration))
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
	target := fmt.Sprintf("< %d MB at %d/s for %.0f min", splitRSSLimit/1_000_000, splitTargetRate, splitTargetFor.Minutes())
	fmt.Fprintf(&b, "| peak RSS of the API process (`transferd server`), split run | %s | %s: %s |\n", mibText(split, splitAPI), target, rssVerdict(split, splitAPI))
	fmt.Fprintf(&b, "| peak RSS of the worker process (`transferd worker`), split run | %s | %s: %s |\n", mibText(split, splitWorker), target, rssVerdict(split, splitWorker))
	fmt.Fprintf(&b, "| peak RSS of `transferd dev` | %d MiB | (none: one process holds the API, the worker and the Temporal server) |\n", devPeakRSS(results))
	fmt.Fprintf(&b, "\nAudit after all runs: %d accounts, %d transfers, %d in flight, %d violations.\n", audit.Accounts, audit.Transfers, audit.InFlight, len(audit.Violations))
	fmt.Fprintf(&b, "\n## Growth\n\nMilliseconds, median of nine reads, pages of %d. A journal of completed deposits over 10 accounts grows in bulk "+
		"(`ledger.SeedDeposits`) on a database of its own; at each size the bench reads one account's history and transfers (the first page, "+
		"and a page's mean over a walk of 20 pages), the transfers its owner may see, all transfers, and runs a full `audit`. "+
		"Every list is a keyset read of an index in its order, so a page costs about the same at any size "+
		"(`TestListPagesReadAPageOfRows` checks the rows each page reads with `EXPLAIN ANALYZE`); the audit reads everything, and its cost per entry is the last column.\n\n",
		transfer.DefaultPageLimit)
	bench.WriteGrowthMarkdown(&b, growth)
	fmt.Fprintf(&b, "\n## Reproduce\n\n```sh\nmake bench          # transferd bench suite: writes this file and docs/bench-results.json\n```\n\n"+
		"It needs PostgreSQL on `127.0.0.1:5432` (or `DATABASE_URL`); it creates and drops its own database, and starts its own `transferd dev` on free ports, "+
		"and for the split run a `transferd server` and a `transferd worker` on dev's Temporal server, which it stops with SIGTERM when the run ends or fails. "+
		"`--split-for` and `--split-rate` change the split run (%s at %d/s by default; %s with `--quick`); "+
		"its binary is built with `go build -tags nodev`, so the bench runs in the module's tree, unless `--split-binary` names one.\n",
		splitTargetFor, splitTargetRate, quickSplitFor)
	b.WriteString(benchNotes)
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// devPeakRSS is the highest peak RSS of `transferd dev` over the runs.
func devPeakRSS(results []bench.Result) int64 {
	var peak int64
	for _, r := range results {
		peak = max(peak, r.PeakRSSMiB[devRSSName])
	}
	return peak
}

// mibText is the peak RSS of a process in r, or "-" when it was not measured.
func mibText(r bench.Result, process string) string {
	if mib := r.PeakRSSMiB[process]; mib > 0 {
		return fmt.Sprintf("%d MiB", mib)
	}
	return "-"
}

// rssVerdict says whether the split run r shows process under the target: its peak, rounded up to the
// next MiB, under the limit, in a run at the target's rate for at least the target's length that
// completed transfers at 95% of that rate or more.
func rssVerdict(r bench.Result, process string) string {
	mib := r.PeakRSSMiB[process]
	switch {
	case mib <= 0:
		return "not measured"
	case (mib+1)<<20 > splitRSSLimit:
		return "**not met**"
	case r.Rate < splitTargetRate || r.Duration < splitTargetFor.Seconds():
		return fmt.Sprintf("not shown (under the limit, but in a run of %s at %.0f/s)", secondsText(r.Duration), r.Rate)
	case r.CompletedPerSec < 0.95*splitTargetRate:
		return fmt.Sprintf("not shown (under the limit, but %.1f/s completed)", r.CompletedPerSec)
	}
	return "met"
}

// secondsText is a length in seconds, rounded to the second.
func secondsText(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
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

// commit is the checkout's commit, marked when files other than the report's own outputs (which the
// suite has just written) differ from it.
func commit(outputs ...string) string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	args := []string{"status", "--porcelain", "--untracked-files=no", "--", "."}
	for _, o := range outputs {
		args = append(args, ":(exclude)"+o)
	}
	if st, err := exec.Command("git", args...).Output(); err == nil && len(st) > 0 {
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
- **Peak RSS** is the kernel's VmHWM, the high-water mark of a process's resident set over its whole
  life, read from ` + "`/proc/<pid>/status`" + ` as each run ends. ` + "`transferd dev`" + ` holds the API, the
  worker and the embedded Temporal server in one process, so its figure has no target.
- **The split run** measures the processes of the target as they are deployed: the bench starts
  ` + "`transferd server`" + ` and ` + "`transferd worker`" + ` as two processes of a binary built with ` + "`-tags nodev`" + `,
  as the image's is (the full build's embedded Temporal server and Web UI add some 150 MB of
  file-backed pages to the resident set of any process it runs), pointed at dev's
  Temporal frontend and the same database, on a task queue of their own (` + "`bench-split`" + `) that dev's
  in-process worker does not poll, so the split worker runs every workflow the split API starts (not
  eagerly: the API has no worker of its own). Once the API answers ` + "`/readyz`" + ` and the worker polls its
  queue, the bench signs in through the split API, sets up its accounts, drives the saga at a fixed rate,
  waits for every transfer to end, and stops both with SIGTERM; each peak covers the process's whole
  life, setup included. The Temporal server is still dev's, on SQLite, and shares the machine; a
  target is shown as met only by a run at its rate for its length, which ` + "`--quick`" + ` is not.
- **When the split run falls behind.** Its workflows are not started eagerly: each goes through the
  dev server's matching to a worker's poll, which costs the SQLite-backed server more than an eager
  start does. If the split row's completed/s is under its rate, this machine did not keep up, and the
  backlog cleared once the load stopped. The bench waits for each outcome with a ` + "`?wait=30s`" + `
  request, so the API then holds one waiting request per transfer in flight, thousands of them, and its
  RSS grows with them: ` + "`--split-rate`" + ` at a rate the machine sustains measures the API without that backlog.
`
