//go:build linux

package chaos_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/transferd/transferd/internal/testbin"
	"github.com/transferd/transferd/worker"
	"github.com/transferd/transferd/workflows"
)

var upgradeFrom = flag.String("chaos.upgrade-from", "", "the previous release TestUpgrade starts on: a commit or tag; "+
	"the newest tag when empty, else the commit in chaos/testdata/previous-release")

// The upgrade's schedule, from the start of the load.
const (
	upgradeLoad      = 90 * time.Second
	upgradeMigrateAt = 15 * time.Second
	// upgradeWorkersAt is when each worker in turn is replaced, upgradeAPIAt when the API is.
	upgradeWorkersAt = 25 * time.Second
	upgradeWorkerGap = 10 * time.Second
	upgradeAPIAt     = 50 * time.Second
)

// TestUpgrade is an upgrade without a pause: the load runs on the previous release's API and
// workers (built from its commit), then, mid-load, this checkout's migrations run over the live
// database, and the workers one by one and then the API are replaced by this checkout's binaries.
// Every transfer must end exactly once, as in TestChaos (an operator cancels and terminates
// workflows meanwhile), every workflow that the previous release's workers started must replay
// on this checkout's workflow code, and the audit must be clean. make chaos runs it.
func TestUpgrade(t *testing.T) {
	if testing.Short() || !*full {
		t.Skip("upgrade: make chaos runs it (-chaos.full)")
	}
	rev := previousRelease(t)
	old := buildRelease(t, rev)
	t.Logf("upgrading from %s", rev)

	s := startStackOf(t, 2, nil, old)
	ctx := context.Background()
	w, client, op, before := s.prepareLoad(ctx)
	// Clients ask for holds and schedules once the API that offers them serves (README, Upgrading).
	w.newTerms.Store(false)

	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -args -chaos.full -chaos.seed=%d)", seed, seed)
	start := time.Now()
	clock := &loadClock{plannedEnd: start.Add(upgradeLoad), faultsOver: make(chan struct{})}
	client.until = start.Add(upgradeLoad + 4*time.Minute)
	op.until = client.until
	b := &book{byID: map[string]*outcome{}}
	var wg, operations sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			runClient(ctx, client, op, w, b, rand.New(rand.NewPCG(seed, uint64(i))), clock, &operations)
		})
	}

	at := func(d time.Duration, what string) {
		time.Sleep(time.Until(start.Add(d)))
		t.Logf("%6.1fs %s", time.Since(start).Seconds(), what)
	}
	at(upgradeMigrateAt, "this checkout's migrations over the live database")
	if out, err := exec.CommandContext(ctx, testbin.Transferd(t), "migrate", "--database-url", s.directURL).CombinedOutput(); err != nil {
		t.Fatalf("migrate to this checkout: %v\n%s", err, out)
	}
	var lastOldWorker time.Time
	for i, wk := range s.workers {
		at(upgradeWorkersAt+time.Duration(i)*upgradeWorkerGap, "worker "+wk.name+" replaced by this checkout's")
		wk.bin = ""
		wk.restart(ctx, 200*time.Millisecond)
		lastOldWorker = time.Now()
	}
	at(upgradeAPIAt, "API replaced by this checkout's")
	s.api.bin = ""
	s.api.restart(ctx, 200*time.Millisecond)
	w.newTerms.Store(true)
	close(clock.faultsOver)
	wg.Wait()
	operations.Wait()
	loadTook := time.Since(start)
	s.allRunning()

	drainStart := time.Now()
	stuck := s.drain(3 * time.Minute)
	sum := s.check(b, w, before)
	sum.plan, sum.seed, sum.stuck = "upgrade from "+rev, seed, stuck
	sum.loadTook, sum.plannedLoad, sum.drainTook = loadTook, upgradeLoad, time.Since(drainStart)
	s.checkOperated(ctx, op, b, &sum)
	replayed := s.replayOldRuns(ctx, op, start, lastOldWorker)
	sum.audit = s.audit(ctx)
	t.Log(sum.text())
	t.Logf("%d workflow runs started before the last old worker stopped replayed on this checkout's code", replayed)
	if sum.accepted == 0 {
		t.Error("no transfer was accepted: the upgrade ran on an idle system")
	}
}

// replayOldRuns replays, on this checkout's workflow code, the history of every transfer workflow
// run that started between the start of the load and the moment the last of the previous
// release's workers stopped, and returns how many it replayed; a run that does not replay fails
// the test, and so does finding none.
func (s *stack) replayOldRuns(ctx context.Context, op *operator, from, to time.Time) int {
	t := s.t
	t.Helper()
	query := fmt.Sprintf("WorkflowType = '%s' AND StartTime >= '%s' AND StartTime <= '%s'", workflows.WorkflowName,
		from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano))
	replayer := sdkworker.NewWorkflowReplayer()
	worker.RegisterWorkflows(replayer)
	n := 0
	var token []byte
	for {
		page, err := op.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: op.namespace, Query: query, PageSize: 200, NextPageToken: token})
		if err != nil {
			t.Fatalf("list the old workers' runs: %v", err)
		}
		for _, e := range page.GetExecutions() {
			if e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				continue
			}
			id, run := e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()
			it := op.tc.GetWorkflowHistory(ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			h := &historypb.History{}
			for it.HasNext() {
				e, err := it.Next()
				if err != nil {
					t.Fatalf("history of %s/%s: %v", id, run, err)
				}
				h.Events = append(h.Events, e)
			}
			if err := replayer.ReplayWorkflowHistory(nil, h); err != nil {
				t.Errorf("run %s/%s, started by the previous release, does not replay on this checkout: %v", id, run, err)
			}
			n++
		}
		if token = page.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	if n == 0 {
		t.Error("no workflow run of the previous release's workers was found to replay")
	}
	return n
}

// previousRelease is the commit the upgrade starts from: -chaos.upgrade-from, else the newest tag,
// else the commit that chaos/testdata/previous-release names (each landing that makes a release
// updates it).
func previousRelease(t *testing.T) string {
	t.Helper()
	if *upgradeFrom != "" {
		return *upgradeFrom
	}
	if out, err := exec.Command("git", "describe", "--tags", "--abbrev=0").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		return string(bytes.TrimSpace(out))
	}
	b, err := os.ReadFile(filepath.Join("testdata", "previous-release"))
	if err != nil {
		t.Fatalf("previous release: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line
		}
	}
	t.Fatal("previous release: chaos/testdata/previous-release names no commit")
	return ""
}

// buildRelease builds the transferd binary of the commit rev from this repository's history
// (git archive, so the checkout is left alone) and returns its path.
func buildRelease(t *testing.T, rev string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("the repository's top: %v", err)
	}
	// From the top, or git archive takes only the subtree of the working directory.
	archive := exec.Command("git", "archive", "--format=tar", rev)
	archive.Dir = string(bytes.TrimSpace(top))
	extract := exec.Command("tar", "-x", "-C", src)
	var stderr bytes.Buffer
	archive.Stderr, extract.Stderr = &stderr, &stderr
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	extract.Stdin = pipe
	if err := extract.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s (a clone needs the history of main): %v\n%s", rev, err, stderr.Bytes())
	}
	if err := extract.Wait(); err != nil {
		t.Fatalf("extract %s: %v\n%s", rev, err, stderr.Bytes())
	}
	bin := filepath.Join(dir, "transferd-"+rev)
	build := exec.Command("go", "build", "-o", bin, "./cmd/transferd")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", rev, err, out)
	}
	return bin
}
