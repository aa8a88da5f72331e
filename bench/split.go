package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/devtemporal"
	"github.com/transferd/transferd/ledger"
)

// The names of the split run's processes, whose peak RSS it reports.
const (
	splitAPI    = "api"
	splitWorker = "worker"
)

// splitTaskQueue is the split run's task queue, which the stack's worker does not poll.
const splitTaskQueue = "bench-split"

// The target of the split run: the API and the worker each under 150 MB of RSS at 50 transfers per
// second for five minutes.
const (
	splitRSSLimit = 150_000_000 // bytes
	// SplitTargetRate and SplitTargetFor are the rate and length of the run that shows the target:
	// the split run's by default.
	SplitTargetRate = 50
	SplitTargetFor  = 5 * time.Minute
	// QuickSplitFor is the split run's length with --quick: enough to start, measure and stop both.
	QuickSplitFor = 3 * time.Second
	// DevSplitRate is the dev server's split run's rate by default: what dev's SQLite-backed server
	// sustains here when every workflow goes through its matching (at 50/s it falls behind, and
	// the backlog drains at a transfer or two a second); the target's rate is the cluster's run.
	DevSplitRate = 20
	// ClusterRate is the cluster's fixed-rate run's rate by default. At 50/s, the target's rate, the
	// cluster's persistence gave out on this 2-core machine's disk and its backlog did not drain
	// within the suite's patience (docs/profile-cluster.md), so the suite failed; --cluster-rate 50
	// runs the target's rate where the machine can take it.
	ClusterRate = 20
)

// Binary is the transferd executable the split run starts as `transferd server` and `transferd
// worker`.
type Binary struct {
	// Path is the executable.
	Path string
	// From says in the report where it came from; empty for its path.
	From string
}

// from is what the report says of where b came from.
func (b Binary) from() string {
	if b.From != "" {
		return b.From
	}
	return "`" + b.Path + "`"
}

// BuildNodev builds the main package of the running program (transferd) with -tags nodev into dir,
// as the Dockerfile builds the image's, for the split run. The API and the worker are deployed from
// that build: the embedded Temporal server and Web UI of the full one add some 150 MB of file-backed
// pages to the resident set of every process it runs, whatever the subcommand. The build reuses the
// build cache; -trimpath, which would not, changes nothing that is resident.
func BuildNodev(ctx context.Context, dir string) (Binary, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Binary{}, errors.New("bench: this binary has no build information to rebuild it for the split run; pass --split-binary")
	}
	out := filepath.Join(dir, "transferd")
	b, err := exec.CommandContext(ctx, "go", "build", "-tags", "nodev", "-ldflags=-s -w", "-o", out, bi.Path).CombinedOutput()
	if err != nil {
		return Binary{}, fmt.Errorf("bench: go build -tags nodev %s for the split run: %v\n%s(run the bench in the module's tree, or pass --split-binary)", bi.Path, err, b)
	}
	return Binary{Path: out, From: "built by the bench with `-tags nodev`, as the image's is"}, nil
}

// splitRun is what the split run needs of the suite.
type splitRun struct {
	// binary is the transferd the run starts.
	binary string
	// dsn is the suite's database; the processes connect to it and to the Temporal server of dep.
	dsn string
	dep Deployment
	// accounts, rate and duration shape the run.
	accounts int
	rate     float64
	duration time.Duration
	// profileDir receives CPU profiles of the run's processes and the stack's (startProfiles).
	profileDir string
}

// runSplit runs the saga through `transferd server` and `transferd worker` started as two processes,
// as they are deployed, on the stack's Temporal server and database, at a fixed rate, and reports the
// peak RSS of each. The two work on a task queue of their own, which the stack's worker does not
// poll, so the split worker runs every workflow the split API starts. Both are stopped on every path;
// the run fails unless both were measured, transfers completed, and both stopped cleanly.
func runSplit(ctx context.Context, tc client.Client, store *ledger.Store, s splitRun, stdout, progress io.Writer) (Result, error) {
	apiAddr, err := devtemporal.FreeAddrOutside(s.dep.Reserved)
	if err != nil {
		return Result{}, err
	}
	// The API signs its own tokens: the bench signs in through it, so any secret will do, and one
	// set keeps the API from warning about a random one.
	var secret [32]byte
	_, _ = rand.Read(secret[:])
	env := append(withoutTemporalEnv(os.Environ()), "TRANSFERD_JWT_SECRET="+hex.EncodeToString(secret[:]))
	// What decides where the processes connect and what they run is set by flags, which win over
	// any TRANSFERD_* variables of the shell; the shell's Temporal connection (TLS, API key,
	// profile), meant for a real cluster, is left out of their environment. Ten connections each
	// leave room under PostgreSQL's default limit of 100 for the stack's pool and the bench's own.
	common := []string{"--database-url", s.dsn, "--db-max-conns", "10", "--temporal-address", s.dep.Temporal.HostPort,
		"--temporal-namespace", s.dep.Temporal.Namespace, "--task-queue", splitTaskQueue}
	pprof := maps.Clone(s.dep.Pprof)
	if pprof == nil {
		pprof = map[string]string{}
	}
	wargs, err := withPprof(s.profileDir != "", s.dep.Reserved, pprof, splitWorker, slices.Concat([]string{"worker"}, common, []string{"--metrics-addr", ""}))
	if err != nil {
		return Result{}, err
	}
	wrk, err := startProcess(s.binary, splitWorker, env, wargs)
	if err != nil {
		return Result{}, err
	}
	defer wrk.stop()
	aargs, err := withPprof(s.profileDir != "", s.dep.Reserved, pprof, splitAPI, slices.Concat([]string{"server"}, common,
		[]string{"--addr", apiAddr, "--with-worker=false", "--saga-variant", "fast", "--bcrypt-cost", "4", "--sign-ups-per-hour", "0"}))
	if err != nil {
		return Result{}, err
	}
	api, err := startProcess(s.binary, splitAPI, env, aargs)
	if err != nil {
		return Result{}, err
	}
	defer api.stop()
	apiURL := "http://" + apiAddr
	if err := waitReady(ctx, tc, splitTaskQueue, apiURL, api, wrk); err != nil {
		return Result{}, err
	}
	fmt.Fprintf(stdout, "bench: split run: transferd server (pid %d) on %s, transferd worker (pid %d), task queue %s\n",
		api.pid(), apiURL, wrk.pid(), splitTaskQueue)

	target := &API{URL: apiURL, Email: s.dep.AdminEmail, Password: s.dep.AdminPassword, Label: "split"}
	// The stack's processes too: they run the Temporal server the two use.
	procs := maps.Clone(s.dep.Processes)
	procs[splitAPI], procs[splitWorker] = api.pid(), wrk.pid()
	profiled := startProfiles(ctx, s.profileDir, "dev-", pprof, profileDelay(s.duration))
	res, err := Run(ctx, target, Config{Accounts: s.accounts, Mode: ModeRandom, Rate: s.rate, Duration: s.duration,
		Processes: procs, Progress: progress})
	if perr := profiled(); err == nil {
		err = perr
	}
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
func checkSplit(r Result) error {
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

// waitReady waits until the API answers /readyz with 200 and each of the workers polls taskQueue,
// for at most 90 seconds: a little more than the minute each waits for its dependencies. A worker is
// known among the task queue's pollers by its identity, which the SDK begins with its pid (pollers of
// stopped workers stay listed for minutes). It fails at once if any of the processes exits.
func waitReady(ctx context.Context, tc client.Client, taskQueue, apiURL string, api *process, workers ...*process) error {
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
	polling := func() int {
		d, err := tc.DescribeTaskQueue(ctx, taskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
		if err != nil {
			return 0
		}
		n := 0
		for _, w := range workers {
			if slices.ContainsFunc(d.GetPollers(), func(p *taskqueuepb.PollerInfo) bool {
				return strings.HasPrefix(p.GetIdentity(), fmt.Sprintf("%d@", w.pid()))
			}) {
				n++
			}
		}
		return n
	}
	const patience = 90 * time.Second
	deadline := time.Now().Add(patience)
	for {
		for _, p := range append([]*process{api}, workers...) {
			select {
			case <-p.exited:
				return fmt.Errorf("bench: transferd %s exited before it was ready (%v); its last words:\n%s", p.name, p.err, p.stderr.String())
			default:
			}
		}
		a, w := apiReady(), polling()
		if a && w == len(workers) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: not ready after %s (API ready: %t, workers polling: %d of %d); the API's last words:\n%s",
				patience, a, w, len(workers), api.stderr.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// withoutTemporalEnv is env without the variables that say how to connect to Temporal (TEMPORAL_*
// and TRANSFERD_TEMPORAL_*), for the processes the bench points at its stack's Temporal server.
func withoutTemporalEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return strings.HasPrefix(kv, "TEMPORAL_") || strings.HasPrefix(kv, "TRANSFERD_TEMPORAL_")
	})
}
