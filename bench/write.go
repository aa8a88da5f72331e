package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/transfer"
)

// Report is what the suite's report says: its runs' results, the audits after them, the growth runs,
// and how they were set up.
type Report struct {
	Settings
	Results []Result
	// Audit is the dev stack's database's; ClusterAudit the cluster stack's, when it ran.
	Audit        ledger.AuditReport
	ClusterAudit *ledger.AuditReport
	Growth       []GrowthPoint
	// Split is the binary the split run started.
	Split Binary
}

// The targets of the split deployment (the API and the workers as processes of their own), on
// either server.
const (
	// splitFinalP50 is the p50 of submit-to-completed at SplitTargetRate, in milliseconds.
	splitFinalP50 = 200
	// sagaFloorTarget is the least saga / floor, completed per second, on either server.
	sagaFloorTarget = 0.8
)

// find returns the result of target in mode on server, at a fixed rate or not, with workers worker
// processes (0 for any), or the zero Result.
func (rep Report) find(server, target, mode string, rate bool, workers int) Result {
	for _, r := range rep.Results {
		if cmp.Or(r.Server, ServerDev) == server && r.Target == target && r.Mode == mode && (r.Rate > 0) == rate &&
			(workers == 0 || r.Workers == workers) {
			return r
		}
	}
	return Result{}
}

// Write writes the report as Markdown to out and its results, audits and growth as JSON to jsonOut.
func (rep Report) Write(out, jsonOut string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	j, _ := json.MarshalIndent(map[string]any{"results": rep.Results, "audit": rep.Audit, "cluster_audit": rep.ClusterAudit, "growth": rep.Growth}, "", "  ")
	if err := os.WriteFile(jsonOut, append(j, '\n'), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	saga, sql := rep.find(ServerDev, "saga", ModeRandom, false, 0), rep.find(ServerDev, "sql", ModeRandom, false, 0)
	floor, eager := rep.find(ServerDev, "floor", ModeRandom, false, 0), rep.find(ServerDev, "floor-eager", ModeRandom, false, 0)
	naive := rep.find(ServerDev, "naive", ModeRandom, false, 0)
	steady, split := rep.find(ServerDev, "saga", ModeRandom, true, 0), rep.find(ServerDev, "split", ModeRandom, true, 0)
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	if rep.Quick {
		fmt.Fprintf(&b, "**Quick run** (`--quick`, a few seconds): these figures only show the tool works.\n\n")
	}
	fmt.Fprintf(&b, "Written by `make bench` (`transferd bench suite`) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s\n- Go: %s, GOMAXPROCS %d\n- Commit: %s\n", machine(), runtime.Version(), runtime.GOMAXPROCS(0), commit(out, jsonOut))
	fmt.Fprintf(&b, "- Server `dev`: one `transferd dev` process (API, worker and embedded Temporal server on SQLite) over the local PostgreSQL; the bench process drives it over HTTP with %d accounts; the closed-loop runs keep %d transfers in flight for %d transfers each. "+
		"The `split` run adds `transferd server` and `transferd worker` (%s) as two more processes on dev's Temporal server and the same database, driven at %.0f/s for %s.\n",
		rep.Accounts, rep.Concurrency, rep.Count, rep.Split.from(), split.Rate, secondsText(split.Duration))
	if rep.ClusterAudit != nil {
		fmt.Fprintf(&b, "- Server `cluster`: the official temporal-server of go.mod's version as four processes (frontend, history, matching, worker; `internal/tcluster`, configured as docker-compose.yml configures its temporal service) on the same PostgreSQL, in databases of their own; "+
			"`transferd server` (no worker in it, so no eager start) and one, then two, `transferd worker` processes (%s) on a database of their own. The same runs, and the saga at %.0f/s for %s with one worker.\n",
			rep.Split.from(), rep.ClusterRate, secondsText(rep.SplitFor.Seconds()))
	}
	fmt.Fprintf(&b, "\n## Results\n\nLatencies in milliseconds. *accept* is the `202` answer of `POST /v1/transfers`; *final* is submit to final status. "+
		"`floor` starts and awaits an empty workflow per item on the same Temporal server (from the bench's process, not eagerly); `sql` runs the saga's reserve, debit and credit statements in one PostgreSQL transaction per transfer, with no Temporal and no HTTP; "+
		"`saga` is transferd as shipped (every step a local activity, so a transfer whose steps succeed is one workflow task; one statement per step; on dev, started eagerly by the worker in dev's process); `naive` is the same saga built the way Temporal's money-transfer sample is (a regular activity and a search-attribute upsert per step), run on the stack restarted with `--saga-variant naive`.\n\n")
	WriteMarkdown(&b, rep.Results)

	fmt.Fprintf(&b, "\n## Ratios and targets\n\n")
	fmt.Fprintf(&b, "| server | figure | value | target |\n|---|---|---:|---|\n")
	fmt.Fprintf(&b, "| dev | floor-eager / floor, completed per second: what an eager start saves | %.2f | |\n", ratio(eager.CompletedPerSec, floor.CompletedPerSec))
	// dev's saga starts eagerly, so its floor is the eager one.
	fmt.Fprintf(&b, "| dev | saga / floor-eager, completed per second (both started eagerly) | %.2f | >= %.1f: %s |\n", ratio(saga.CompletedPerSec, eager.CompletedPerSec), sagaFloorTarget, atLeast(ratio(saga.CompletedPerSec, eager.CompletedPerSec), sagaFloorTarget))
	fmt.Fprintf(&b, "| dev | split run / floor, completed per second (neither started eagerly) | %.2f | |\n", ratio(split.CompletedPerSec, floor.CompletedPerSec))
	fmt.Fprintf(&b, "| dev | saga / naive, completed per second | %.2f | >= 4 |\n", ratio(saga.CompletedPerSec, naive.CompletedPerSec))
	fmt.Fprintf(&b, "| dev | saga / sql, completed per second | %.3f | (the cost of durability) |\n", ratio(saga.CompletedPerSec, sql.CompletedPerSec))
	fmt.Fprintf(&b, "| dev | p99 of the 202 at %.0f/s | %.1f ms | < 25 ms |\n", steady.Rate, steady.Accept.P99)
	fmt.Fprintf(&b, "| dev | p50 submit-to-completed at %.0f/s | %.1f ms | < 100 ms |\n", steady.Rate, steady.Final.P50)
	rep.splitTargets(&b, "dev, split run", split, splitAPI, splitWorker)
	fmt.Fprintf(&b, "| dev | peak RSS of `transferd dev` | %d MiB | (none: one process holds the API, the worker and the Temporal server) |\n", devPeakRSS(rep.Results))
	if rep.ClusterAudit != nil {
		cfloor, ceager := rep.find(ServerCluster, "floor", ModeRandom, false, 0), rep.find(ServerCluster, "floor-eager", ModeRandom, false, 0)
		csaga1, csaga2 := rep.find(ServerCluster, "saga", ModeRandom, false, 1), rep.find(ServerCluster, "saga", ModeRandom, false, 2)
		cnaive, crate := rep.find(ServerCluster, "naive", ModeRandom, false, 0), rep.find(ServerCluster, "saga", ModeRandom, true, 0)
		r1, r2 := ratio(csaga1.CompletedPerSec, cfloor.CompletedPerSec), ratio(csaga2.CompletedPerSec, cfloor.CompletedPerSec)
		fmt.Fprintf(&b, "| cluster | floor-eager / floor, completed per second: what an eager start saves | %.2f | |\n", ratio(ceager.CompletedPerSec, cfloor.CompletedPerSec))
		fmt.Fprintf(&b, "| cluster | saga (1 worker) / floor, completed per second (neither started eagerly) | %.2f | >= %.1f: %s |\n", r1, sagaFloorTarget, atLeast(r1, sagaFloorTarget))
		fmt.Fprintf(&b, "| cluster | saga (2 workers) / floor, completed per second (neither started eagerly) | %.2f | >= %.1f: %s |\n", r2, sagaFloorTarget, atLeast(r2, sagaFloorTarget))
		fmt.Fprintf(&b, "| cluster | saga / naive (2 workers each), completed per second | %.2f | >= 4 |\n", ratio(csaga2.CompletedPerSec, cnaive.CompletedPerSec))
		rep.splitTargets(&b, "cluster", crate, clusterAPI, clusterWorker)
	}
	fmt.Fprintf(&b, "\nAudit after the dev server's runs: %s.\n", auditText(rep.Audit))
	if rep.ClusterAudit != nil {
		fmt.Fprintf(&b, "Audit after the cluster's runs: %s.\n", auditText(*rep.ClusterAudit))
	}

	fmt.Fprintf(&b, "\n## CPU per transfer\n\nCPU milliseconds (user and system) that each process used per transfer that ended, over the fixed-rate runs "+
		"(setup excluded, the waits for the last outcomes included). *postgres* is every PostgreSQL process of the machine: the ledger's and, on the cluster, Temporal's persistence; *bench client* is the load generator.\n\n")
	var fixed []Result
	for _, r := range rep.Results {
		if r.Rate > 0 {
			fixed = append(fixed, r)
		}
	}
	WriteCPUMarkdown(&b, fixed)

	if wh := rep.find(ServerDev, webhooksTarget, ModeRandom, false, 0); wh.Webhooks != nil {
		writeWebhooks(&b, saga, wh)
	}

	fmt.Fprintf(&b, "\n## The ledger's view\n\nEach run through the API as the ledger recorded it, read once every transfer had ended: what the stack did, whatever the bench saw in time. "+
		"*ended in run* counts the accepted transfers that ended while a fixed-rate run submitted; the latency is from each transfer's `created_at` (its acceptance) to its `completed_at`, in milliseconds.\n\n")
	WriteLedgerMarkdown(&b, rep.Results)

	fmt.Fprintf(&b, "\n## Growth\n\nMilliseconds, median of nine reads, pages of %d. A journal of completed deposits over 10 accounts grows in bulk "+
		"(`ledger.SeedDeposits`) on a database of its own; at each size the bench reads one account's history and transfers (the first page, "+
		"and a page's mean over a walk of 20 pages), the transfers its owner may see, all transfers, and runs a full `audit`. "+
		"Every list is a keyset read of an index in its order, so a page costs about the same at any size "+
		"(`TestListPagesReadAPageOfRows` checks the rows each page reads with `EXPLAIN ANALYZE`); the audit reads everything, and its cost per entry is the last column.\n\n",
		transfer.DefaultPageLimit)
	WriteGrowthMarkdown(&b, rep.Growth)
	fmt.Fprintf(&b, "\n## Reproduce\n\n```sh\nmake bench          # transferd bench suite: writes this file and docs/bench-results.json\n```\n\n"+
		"It needs PostgreSQL on `127.0.0.1:5432` (or `DATABASE_URL`); it creates and drops its own databases, and starts its own `transferd dev` on free ports, "+
		"and for the split run a `transferd server` and a `transferd worker` on dev's Temporal server; then its own Temporal cluster (`internal/tcluster`, building temporal-server once) with a `transferd server` and `transferd worker` processes on it. "+
		"It stops each with SIGTERM when its runs end or fail. `--servers dev` leaves the cluster out. "+
		"`--split-for` changes the length of the split run and of the cluster's fixed-rate run (%s by default; %s with `--quick`), `--split-rate` the split run's rate (%d/s: what the dev server sustains when every workflow goes through its matching) and `--cluster-rate` the cluster's (%d/s; the split deployment's target is shown only at 50/s, where this machine's disk gave out); "+
		"`--profile-dir DIR` saves 30-second CPU profiles of the cluster's processes during its fixed-rate run. "+
		"The binary of the split processes is built with `go build -tags nodev`, so the bench runs in the module's tree, unless `--split-binary` names one.\n",
		SplitTargetFor, QuickSplitFor, DevSplitRate, ClusterRate)
	b.WriteString(notes)
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// splitTargets writes the rows of the split deployment's targets for the fixed-rate run r, whose API
// and worker processes are named api and worker.
func (rep Report) splitTargets(b *strings.Builder, server string, r Result, api, worker string) {
	target := fmt.Sprintf("< %d MB at %d/s for %.0f min", splitRSSLimit/1_000_000, SplitTargetRate, SplitTargetFor.Minutes())
	// The ledger's view, when read, is what the stack did; the bench's, what it saw in time.
	sustained, p50, how := r.CompletedPerSec, r.Final.P50, "seen by the bench"
	if l := r.Ledger; l != nil && r.Duration > 0 {
		sustained, p50, how = l.InRunPerSec, l.Latency.P50, "ledger"
	}
	fmt.Fprintf(b, "| %s | ended per second while submitting at %.0f/s for %s (%s) | %.1f | %d/s sustained for %.0f min: %s |\n", server, r.Rate, secondsText(r.Duration),
		how, sustained, SplitTargetRate, SplitTargetFor.Minutes(), rateVerdict(r, sustained))
	fmt.Fprintf(b, "| %s | p50 accepted-to-completed at %.0f/s (%s) | %.1f ms | < %d ms: %s |\n", server, r.Rate, how, p50, splitFinalP50, p50Verdict(r, p50, sustained))
	fmt.Fprintf(b, "| %s | peak RSS of the API process (`transferd server`) | %s | %s: %s |\n", server, mibText(r, api), target, rssVerdict(r, api))
	fmt.Fprintf(b, "| %s | peak RSS of the worker process (`transferd worker`) | %s | %s: %s |\n", server, mibText(r, worker), target, rssVerdict(r, worker))
}

// ratio is a / b, or 0 when b is.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// atLeast says whether v meets the target of at least want.
func atLeast(v, want float64) string {
	if v >= want {
		return "met"
	}
	return "**not met**"
}

// shown says why the fixed-rate run r, which sustained sustained per second, cannot show a target
// of the split deployment, or "" when it can: it must run at the target's rate for at least its
// length, and sustain 95% of that rate.
func shown(r Result, sustained float64) string {
	switch {
	case r.Rate < SplitTargetRate || r.Duration < SplitTargetFor.Seconds():
		return fmt.Sprintf("in a run of %s at %.0f/s", secondsText(r.Duration), r.Rate)
	case sustained < 0.95*SplitTargetRate:
		return fmt.Sprintf("%.1f/s sustained", sustained)
	}
	return ""
}

// sustainedOf is what r sustained: the ledger's figure when it was read, else what the bench saw.
func sustainedOf(r Result) float64 {
	if r.Ledger != nil && r.Duration > 0 {
		return r.Ledger.InRunPerSec
	}
	return r.CompletedPerSec
}

// rateVerdict says whether r sustained the target rate for the target's length.
func rateVerdict(r Result, sustained float64) string {
	if r.Rate < SplitTargetRate || r.Duration < SplitTargetFor.Seconds() {
		return fmt.Sprintf("not shown (in a run of %s at %.0f/s)", secondsText(r.Duration), r.Rate)
	}
	if sustained < 0.95*SplitTargetRate {
		return "**not met**"
	}
	return "met"
}

// p50Verdict says whether r shows the p50 of its transfers' latency under its target.
func p50Verdict(r Result, p50, sustained float64) string {
	if p50 <= 0 {
		return "not measured"
	}
	if p50 >= splitFinalP50 {
		return "**not met**"
	}
	if why := shown(r, sustained); why != "" {
		return "not shown (under the limit, but " + why + ")"
	}
	return "met"
}

// auditText summarizes an audit.
func auditText(a ledger.AuditReport) string {
	return fmt.Sprintf("%d accounts, %d transfers, %d in flight, %d violations", a.Accounts, a.Transfers, a.InFlight, len(a.Violations))
}

// devPeakRSS is the highest peak RSS of `transferd dev` over the runs.
func devPeakRSS(results []Result) int64 {
	var peak int64
	for _, r := range results {
		peak = max(peak, r.PeakRSSMiB[devProcess])
	}
	return peak
}

// mibText is the peak RSS of a process in r, or "-" when it was not measured.
func mibText(r Result, process string) string {
	if mib := r.PeakRSSMiB[process]; mib > 0 {
		return fmt.Sprintf("%d MiB", mib)
	}
	return "-"
}

// rssVerdict says whether the split run r shows process under the target: its peak, rounded up to the
// next MiB, under the limit, in a run at the target's rate for at least the target's length that
// completed transfers at 95% of that rate or more.
func rssVerdict(r Result, process string) string {
	mib := r.PeakRSSMiB[process]
	switch {
	case mib <= 0:
		return "not measured"
	case (mib+1)<<20 > splitRSSLimit:
		return "**not met**"
	}
	if why := shown(r, sustainedOf(r)); why != "" {
		return "not shown (under the limit, but " + why + ")"
	}
	return "met"
}

// secondsText is a length in seconds, rounded to the second.
func secondsText(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

// machine describes this machine: cores, CPU model, memory, OS and architecture.
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

// notes is the report's fixed part: how to read the figures.
const notes = `
## Reading the figures

- **What a transfer costs Temporal.** Every step (reserve, debit, credit, and a compensation when one
  runs) is a local activity: it runs in the worker inside the workflow task, as one PostgreSQL statement
  (a step function), and leaves a marker in the history. A transfer whose steps succeed is therefore one
  workflow task: on dev, started eagerly with the workflow, as floor-eager's empty workflow is; on the
  cluster, through matching, as floor's is. What it adds to its floor is its markers, its
  search-attribute upserts and the PostgreSQL work.
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
- **When the split run falls behind.** Its workflows are not started eagerly: each goes through
  matching to a worker's poll. If a fixed-rate row's completed/s is under its rate, this machine did
  not keep up, and the backlog cleared once the load stopped. The bench learns each outcome by
  asking again with ` + "`?wait=10s`" + `, through at most 64 such requests at once: the API's memory is
  its own, not that of one held request per transfer in flight. Under a backlog an outcome can be
  seen late, so a transfer's *final* latency runs to the ledger's ` + "`completed_at`" + `, not to when
  the bench saw it; a transfer not seen final within 60 s counts as ` + "`still_unobserved_after_wait`" + `
  or ` + "`timeout`" + ` even if it ended later. (A shorter wait through more waiters loaded the dev
  server enough to make its split run fall behind.) The ledger's view of each run (its own table) is
  the truth: when each accepted transfer ended, read from the ledger once every one has.
- **The cluster** (` + "`cluster`" + ` rows) is the deployment the README's Production section describes:
  the official temporal-server's four services, each a process, on PostgreSQL (16 history shards
  and 8 + 4 connections per service, sized as a deployment: ` + "`internal/tcluster`" + `'s test default of 4
  connections collapsed under load, docs/profile-cluster.md), with ` + "`transferd server`" + ` and ` + "`transferd worker`" + `
  as processes of their own, all sharing the two cores with PostgreSQL and the bench's client. Its
  saga is never started eagerly (the API runs no worker), so its floor is the non-eager one.
  ` + "`docs/profile-cluster.md`" + ` reads its CPU per transfer and profiles: where the time goes, and what
  saturates first.
- **CPU per transfer** is read from ` + "`/proc/<pid>/stat`" + ` before and after each run, so it covers the
  run's whole work, background work included (a Temporal service's timers, PostgreSQL's
  checkpoints), divided by the transfers that ended in it.
`
