package bench

import (
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

// Report is what the suite's report says: its runs' results, the audit after them, the growth runs,
// and how they were set up.
type Report struct {
	Settings
	Results []Result
	Audit   ledger.AuditReport
	Growth  []GrowthPoint
	// Split is the binary the split run started.
	Split Binary
}

// Write writes the report as Markdown to out and its results, audit and growth as JSON to jsonOut.
func (rep Report) Write(out, jsonOut string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	j, _ := json.MarshalIndent(map[string]any{"results": rep.Results, "audit": rep.Audit, "growth": rep.Growth}, "", "  ")
	if err := os.WriteFile(jsonOut, append(j, '\n'), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	find := func(target, mode string, rate bool) Result {
		for _, r := range rep.Results {
			if r.Target == target && r.Mode == mode && (r.Rate > 0) == rate {
				return r
			}
		}
		return Result{}
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
	audit := rep.Audit
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	if rep.Quick {
		fmt.Fprintf(&b, "**Quick run** (`--quick`, a few seconds): these figures only show the tool works.\n\n")
	}
	fmt.Fprintf(&b, "Written by `make bench` (`transferd bench suite`) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s\n- Go: %s, GOMAXPROCS %d\n- Commit: %s\n", machine(), runtime.Version(), runtime.GOMAXPROCS(0), commit(out, jsonOut))
	fmt.Fprintf(&b, "- Setup: one `transferd dev` process (API, worker and embedded Temporal server on SQLite) over the local PostgreSQL; the bench process drives it over HTTP with %d accounts; the closed-loop runs keep %d transfers in flight for %d transfers each. "+
		"The `split` run adds `transferd server` and `transferd worker` (%s) as two more processes on dev's Temporal server and the same database, driven at %.0f/s for %s.\n\n",
		rep.Accounts, rep.Concurrency, rep.Count, rep.Split.from(), split.Rate, secondsText(split.Duration))
	fmt.Fprintf(&b, "## Results\n\nLatencies in milliseconds. *accept* is the `202` answer of `POST /v1/transfers`; *final* is submit to final status. "+
		"`floor` starts and awaits an empty workflow per item on the same Temporal server; `sql` runs the saga's reserve, debit and credit statements in one PostgreSQL transaction per transfer, with no Temporal and no HTTP; "+
		"`saga` is transferd as shipped (every step a local activity, so a transfer whose steps succeed is one workflow task; one statement per step; eager start); `naive` is the same saga built the way Temporal's money-transfer sample is (a regular activity and a search-attribute upsert per step), run on a dev server restarted with `--saga-variant naive`.\n\n")
	WriteMarkdown(&b, rep.Results)
	fmt.Fprintf(&b, "\n## Ratios and targets\n\n")
	fmt.Fprintf(&b, "| figure | value | target |\n|---|---:|---|\n")
	fmt.Fprintf(&b, "| saga / floor, completed per second | %.2f | >= 0.7 |\n", ratio(saga.CompletedPerSec, floor.CompletedPerSec))
	fmt.Fprintf(&b, "| saga / naive, completed per second | %.2f | >= 4 |\n", ratio(saga.CompletedPerSec, naive.CompletedPerSec))
	fmt.Fprintf(&b, "| saga / sql, completed per second | %.3f | (the cost of durability) |\n", ratio(saga.CompletedPerSec, sql.CompletedPerSec))
	fmt.Fprintf(&b, "| p99 of the 202 at %.0f/s | %.1f ms | < 25 ms |\n", steady.Rate, steady.Accept.P99)
	fmt.Fprintf(&b, "| p50 submit-to-completed at %.0f/s | %.1f ms | < 100 ms |\n", steady.Rate, steady.Final.P50)
	target := fmt.Sprintf("< %d MB at %d/s for %.0f min", splitRSSLimit/1_000_000, SplitTargetRate, SplitTargetFor.Minutes())
	fmt.Fprintf(&b, "| peak RSS of the API process (`transferd server`), split run | %s | %s: %s |\n", mibText(split, splitAPI), target, rssVerdict(split, splitAPI))
	fmt.Fprintf(&b, "| peak RSS of the worker process (`transferd worker`), split run | %s | %s: %s |\n", mibText(split, splitWorker), target, rssVerdict(split, splitWorker))
	fmt.Fprintf(&b, "| peak RSS of `transferd dev` | %d MiB | (none: one process holds the API, the worker and the Temporal server) |\n", devPeakRSS(rep.Results))
	fmt.Fprintf(&b, "\nAudit after all runs: %d accounts, %d transfers, %d in flight, %d violations.\n", audit.Accounts, audit.Transfers, audit.InFlight, len(audit.Violations))
	fmt.Fprintf(&b, "\n## Growth\n\nMilliseconds, median of nine reads, pages of %d. A journal of completed deposits over 10 accounts grows in bulk "+
		"(`ledger.SeedDeposits`) on a database of its own; at each size the bench reads one account's history and transfers (the first page, "+
		"and a page's mean over a walk of 20 pages), the transfers its owner may see, all transfers, and runs a full `audit`. "+
		"Every list is a keyset read of an index in its order, so a page costs about the same at any size "+
		"(`TestListPagesReadAPageOfRows` checks the rows each page reads with `EXPLAIN ANALYZE`); the audit reads everything, and its cost per entry is the last column.\n\n",
		transfer.DefaultPageLimit)
	WriteGrowthMarkdown(&b, rep.Growth)
	fmt.Fprintf(&b, "\n## Reproduce\n\n```sh\nmake bench          # transferd bench suite: writes this file and docs/bench-results.json\n```\n\n"+
		"It needs PostgreSQL on `127.0.0.1:5432` (or `DATABASE_URL`); it creates and drops its own database, and starts its own `transferd dev` on free ports, "+
		"and for the split run a `transferd server` and a `transferd worker` on dev's Temporal server, which it stops with SIGTERM when the run ends or fails. "+
		"`--split-for` and `--split-rate` change the split run (%s at %d/s by default; %s with `--quick`); "+
		"its binary is built with `go build -tags nodev`, so the bench runs in the module's tree, unless `--split-binary` names one.\n",
		SplitTargetFor, SplitTargetRate, QuickSplitFor)
	b.WriteString(notes)
	return os.WriteFile(out, []byte(b.String()), 0o644)
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
	case r.Rate < SplitTargetRate || r.Duration < SplitTargetFor.Seconds():
		return fmt.Sprintf("not shown (under the limit, but in a run of %s at %.0f/s)", secondsText(r.Duration), r.Rate)
	case r.CompletedPerSec < 0.95*SplitTargetRate:
		return fmt.Sprintf("not shown (under the limit, but %.1f/s completed)", r.CompletedPerSec)
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
