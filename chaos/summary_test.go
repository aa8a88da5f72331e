//go:build linux

package chaos_test

import (
	"fmt"
	"strings"
	"time"
)

// summary is a run's outcome.
type summary struct {
	plan                         string
	temporal                     temporalKind
	seed                         uint64
	faults                       map[fault]int
	loadTook, plannedLoad        time.Duration
	drainTook                    time.Duration
	submitted, accepted          int
	repeats, cancels             int
	completed, failed, cancelled int
	lost, invented               int
	duplicated, refused          int
	unanswered, stuck            int
	// holds, holdsCaptured and holdsExpired count the holds in the load, those captured and those
	// that expired; captures the captures sent; scheduled the scheduled transfers; late the holds and
	// schedules refused because their time passed before their request got through.
	holds, holdsCaptured, holdsExpired, captures, scheduled, late int
	// keyed counts the accepted transfers named by Idempotency-Key rather than by id.
	keyed int
	// webhooks is what the load's webhook receiver got.
	webhooks webhookSummary
	// captureAnswers counts the captures' answers by HTTP status.
	captureAnswers map[int]int
	// faultEnded counts transfers that ended for another reason than a business outcome or a cancel.
	faultEnded    int
	balanceErrors int
	conserved     bool
	maxAttempts   int
	// retries counts the requests sent again because an earlier one got no definitive answer.
	retries int

	// The operator's cancels (the Web UI's Request Cancellation): sent, accepted by a running
	// workflow, too late (the workflow had closed), and of those accepted, the ones the ledger
	// let win (the transfer ended cancelled) and lose (its debit came first). duringTask counts
	// those whose history shows the cancel arrived while a workflow task ran, and refusedTasks
	// those of them where the server then refused the task's completion (it would have closed
	// the run), so that the saga replayed with the ledger ahead of its history.
	opCancels, opCancelsLanded, opCancelsLate, opCancelsWon, opCancelsLost int
	duringTask, refusedTasks                                               int
	// The operator's terminations: sent, that terminated a running workflow, too late; repaired
	// counts those whose transfer the reconciler finished in a new run, finalFirst those whose row
	// was already final when the run was terminated.
	terminations, terminationsLanded, terminationsLate, repaired, finalFirst int
	// byTiming counts the operator's actions that landed, by when they were sent.
	byTiming map[opTiming]int
	// resultMismatches counts the workflows read whose latest run's result differs from the row, or
	// that ended otherwise than completed (or terminated over a final row); resultsRead how many
	// were read.
	resultMismatches, resultsRead int

	// debitKills counts the transfers seen debited right before every worker was killed,
	// stillDebited those whose row was still debited (not yet credited) once they were dead, and
	// lostTasks those whose history shows the workflow task that ran the debit timed out.
	debitKills, stillDebited, lostTasks int
	// frozenRefused counts the transfers of sources frozen by an admin that the ledger refused
	// (account_inactive) while they were frozen.
	frozenRefused int
	// stallTimeouts counts the steps that ran past their 10 s start-to-close timeout during or just
	// after the PostgreSQL stall (the worker's "LocalActivity completed after activity deadline"),
	// and outageConns the connections the PostgreSQL outages cut or refused.
	stallTimeouts int
	outageConns   int64
	// temporalOutageConns counts the connections between the cluster and PostgreSQL that the
	// outages of Temporal's persistence cut or refused.
	temporalOutageConns int64
	// missing lists the faults and checks that were scheduled and did not happen.
	missing []string

	audit auditResult
}

func (s summary) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos %s on Temporal %s, seed %d: load %.0fs (planned %.0fs), drain %.1fs\n", s.plan, s.temporal, s.seed, s.loadTook.Seconds(), s.plannedLoad.Seconds(), s.drainTook.Seconds())
	for _, f := range faultOrder {
		fmt.Fprintf(&b, "  %-48s %d\n", f, s.faults[f])
	}
	fmt.Fprintf(&b, "  transfers submitted %d, 2xx %d (completed %d, failed %d, cancelled %d); repeats %d, API cancels %d; requests retried %d, most attempts for one request %d\n",
		s.submitted, s.accepted, s.completed, s.failed, s.cancelled, s.repeats, s.cancels, s.retries, s.maxAttempts)
	fmt.Fprintf(&b, "  holds %d (captured %d, expired %d), captures sent %d (answered 200: %d, 409: %d, 422: %d); scheduled %d; refused as late (their time passed before the API answered) %d; named by Idempotency-Key %d\n",
		s.holds, s.holdsCaptured, s.holdsExpired, s.captures, s.captureAnswers[200], s.captureAnswers[409], s.captureAnswers[422], s.scheduled, s.late, s.keyed)
	fmt.Fprintf(&b, "  operator cancels %d: landed %d (won %d, lost %d; during a workflow task %d, of which refused its completion %d), too late %d\n",
		s.opCancels, s.opCancelsLanded, s.opCancelsWon, s.opCancelsLost, s.duringTask, s.refusedTasks, s.opCancelsLate)
	fmt.Fprintf(&b, "  operator terminations %d: landed %d (repaired by the reconciler %d, row already final %d), too late %d\n",
		s.terminations, s.terminationsLanded, s.repaired, s.finalFirst, s.terminationsLate)
	fmt.Fprintf(&b, "  operator actions landed by timing: at once %d, mid-task %d, shortly %d, later (sweep) %d; workflow results read %d, differing from their row %d\n",
		s.byTiming[atOnce], s.byTiming[midTask], s.byTiming[shortly], s.byTiming[later], s.resultsRead, s.resultMismatches)
	fmt.Fprintf(&b, "  debited when every worker died %d (still not credited %d, workflow task lost %d); refused while frozen %d; steps past their timeout in the stall %d; connections cut by outages %d\n",
		s.debitKills, s.stillDebited, s.lostTasks, s.frozenRefused, s.stallTimeouts, s.outageConns)
	if s.temporal == clusterPG {
		fmt.Fprintf(&b, "  connections between Temporal and PostgreSQL cut by its outages %d\n", s.temporalOutageConns)
	}
	fmt.Fprintf(&b, "  webhooks: events %d, enqueued for the receiver %d, received (by webhook-id) %d, duplicates %d, lost %d, never enqueued %d, bad signatures %d, deliveries failed %d; attempts %d, answered 500 %d, past the timeout %d; receiver down %s; delivery workflows terminated by the operator %d, restarted %d\n",
		s.webhooks.events, s.webhooks.enqueued, s.webhooks.received, s.webhooks.duplicates, s.webhooks.lost, s.webhooks.unqueued,
		s.webhooks.badSigs, s.webhooks.failedDeliveries, s.webhooks.arrivals, s.webhooks.failed, s.webhooks.hung, s.webhooks.downFor, s.webhooks.terminated, s.webhooks.restarted)
	fmt.Fprintf(&b, "  lost %d, invented %d, applied twice %d, ended by a fault %d, refused %d, unanswered %d, not final %d, balance errors %d, totals conserved %v, audit %s",
		s.lost, s.invented, s.duplicated, s.faultEnded, s.refused, s.unanswered, s.stuck, s.balanceErrors, s.conserved, s.audit)
	if len(s.missing) > 0 {
		fmt.Fprintf(&b, "\n  DID NOT HAPPEN: %s", strings.Join(s.missing, "; "))
	}
	return b.String()
}

// rowHeader is the header of the table that row's lines belong to, in docs/reliability.md.
const rowHeader = `| when (UTC) | seed | worker kills (after a debit: still debited) | API kills | Temporal restarts | PG outages | PG crashes | PG slow/stall (steps timed out) | source freezes (refused) | submitted | 2xx | operator cancels landed (won/lost/during a task) | terminations landed (repaired) | results ≠ row | lost | applied twice | not final | balance errors | audit violations | webhooks: events enqueued / received / duplicates / lost / bad signatures | load | drain | verdict |
|---|---|---|---:|---:|---:|---:|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|`

// clusterRowHeader is the header of the table of the runs on the Temporal cluster, in
// docs/reliability.md.
const clusterRowHeader = `| when (UTC) | seed | worker kills (after a debit: still debited) | API kills | PG outages (ledger) | source freezes (refused) | history kills | matching kills | frontend restarts | Temporal PG outages (conns cut) | submitted | 2xx | operator cancels landed (won/lost/during a task) | terminations landed (repaired) | results ≠ row | lost | applied twice | not final | balance errors | audit violations | webhooks: events enqueued / received / duplicates / lost / bad signatures | load | drain | verdict |
|---|---|---|---:|---:|---|---:|---:|---:|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|`

// header is the header of the table that row's lines belong to.
func (s summary) header() string {
	if s.temporal == clusterPG {
		return clusterRowHeader
	}
	return rowHeader
}

// row is the summary as a markdown table row under header.
func (s summary) row(failed bool) string {
	verdict := "pass"
	if failed {
		verdict = "FAIL"
	}
	if s.temporal == clusterPG {
		return fmt.Sprintf("| %s | %d | %d + %d (%d/%d) | %d | %d | %d (%d) | %d | %d | %d | %d (%d) | %d | %d | %d (%d/%d/%d) | %d (%d) | %d | %d | %d | %d | %d | %s | %s | %.0f s | %.1f s | %s |",
			time.Now().UTC().Format("2006-01-02 15:04"), s.seed,
			s.faults[workerKill], s.faults[debitKill], s.stillDebited, s.debitKills, s.faults[apiKill], s.faults[pgOutage],
			s.faults[sourceFreeze], s.frozenRefused, s.faults[historyKill], s.faults[matchingKill],
			s.faults[frontendRestart], s.faults[temporalPGOutage], s.temporalOutageConns, s.submitted, s.accepted,
			s.opCancelsLanded, s.opCancelsWon, s.opCancelsLost, s.duringTask, s.terminationsLanded, s.repaired, s.resultMismatches,
			s.lost, s.duplicated, s.unanswered+s.stuck, s.balanceErrors, s.audit.violationsCell(), s.webhookCell(), s.loadTook.Seconds(), s.drainTook.Seconds(), verdict)
	}
	return fmt.Sprintf("| %s | %d | %d + %d (%d/%d) | %d | %d | %d | %d | %d/%d (%d) | %d (%d) | %d | %d | %d (%d/%d/%d) | %d (%d) | %d | %d | %d | %d | %d | %s | %s | %.0f s | %.1f s | %s |",
		time.Now().UTC().Format("2006-01-02 15:04"), s.seed,
		s.faults[workerKill], s.faults[debitKill], s.stillDebited, s.debitKills, s.faults[apiKill], s.faults[temporalRestart],
		s.faults[pgOutage], s.faults[pgRestart], s.faults[pgSlow], s.faults[pgStall], s.stallTimeouts,
		s.faults[sourceFreeze], s.frozenRefused, s.submitted, s.accepted,
		s.opCancelsLanded, s.opCancelsWon, s.opCancelsLost, s.duringTask, s.terminationsLanded, s.repaired, s.resultMismatches,
		s.lost, s.duplicated, s.unanswered+s.stuck, s.balanceErrors, s.audit.violationsCell(), s.webhookCell(), s.loadTook.Seconds(), s.drainTook.Seconds(), verdict)
}

// webhookCell is the row's webhook column.
func (s summary) webhookCell() string {
	w := s.webhooks
	return fmt.Sprintf("%d / %d / %d / %d / %d", w.enqueued, w.received, w.duplicates, w.lost, w.badSigs)
}
