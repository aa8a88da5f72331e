//go:build linux

package chaos_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/transferd/transferd/internal/tcluster"
)

// evidence is what the faults left behind that shows they hit something: a fault that ran and hit
// nothing tested nothing, and the run fails for it (checkFaultsHappened).
type evidence struct {
	mu sync.Mutex
	wg sync.WaitGroup
	// outageConns counts the PostgreSQL connections the outages cut or refused.
	outageConns int64
	// stallTimeouts counts the steps that ran past their start-to-close timeout during the stall.
	stallTimeouts int
	// debitKilled are the transfers seen debited right before every worker was killed, and
	// stillDebited those whose row was still debited once the workers were dead.
	debitKilled  []string
	stillDebited int
	// frozenRefused counts the transfers that the ledger refused because an admin had frozen their
	// source.
	frozenRefused int
	// temporalOutageConns counts the connections between Temporal's services and PostgreSQL that
	// the outages of the cluster's persistence cut or refused.
	temporalOutageConns int64
}

// add records evidence.
func (e *evidence) add(f func(e *evidence)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(e)
}

// later records evidence after d, without holding up the next fault.
func (e *evidence) later(d time.Duration, f func(e *evidence)) {
	e.wg.Go(func() {
		time.Sleep(d)
		e.add(f)
	})
}

// wait waits for the evidence recorded later.
func (e *evidence) wait() { e.wg.Wait() }

// stepsPastTimeout counts, over every worker's log, the local activities (the saga's steps) that
// returned after their deadline: the SDK logs each one, so the count says how many steps a stall
// made time out and be retried while their first attempt still ran.
func (s *stack) stepsPastTimeout() int {
	n := 0
	for _, w := range s.workers {
		n += w.countLines("LocalActivity completed after activity deadline")
	}
	return n
}

// killAfterDebit watches the ledger for a transfer that has just turned debited and kills every
// worker at that moment, so that the workflow task that ran the debit is lost after the debit
// committed, and most likely before the credit: the next run of the task replays with the ledger
// ahead of the history. It restarts the workers after pause, and reports whether it found a debit
// to kill them after.
func (s *stack) killAfterDebit(ctx context.Context, pause time.Duration) bool {
	// One connection for the whole watch: the suite's pool keeps none idle, and a connection per
	// poll would be slower than the window it watches for.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		s.t.Logf("kill after a debit: %v", err)
		return false
	}
	defer conn.Close()
	// A little latency between the workers and PostgreSQL holds each step's answer and the next
	// step's statement on the way for a while: the workers die after the debit committed and before
	// the credit, not after both, as a bare kill a few milliseconds late would.
	s.pgWorkers.SetLatency(debitKillLatency)
	defer s.pgWorkers.SetLatency(0)
	var id string
	watch := time.Now()
	for deadline := watch.Add(debitWatch); id == "" && time.Now().Before(deadline); {
		err := conn.QueryRowContext(ctx, `SELECT id::text FROM transfers
			WHERE status = 'debited' AND updated_at > now() - interval '1 second' LIMIT 1`).Scan(&id)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			time.Sleep(time.Millisecond)
		case err != nil:
			s.t.Logf("kill after a debit: %v", err)
			return false
		}
	}
	if id == "" {
		s.t.Logf("kill after a debit: no transfer turned debited in %s; the workers were not killed", debitWatch)
		return false
	}
	var killed sync.WaitGroup
	for _, w := range s.workers {
		killed.Go(func() { w.kill(syscall.SIGKILL) })
	}
	killed.Wait()
	s.pgWorkers.SetLatency(0)
	var status string
	if err := conn.QueryRowContext(ctx, `SELECT status FROM transfers WHERE id = $1`, id).Scan(&status); err != nil {
		status = "unknown: " + err.Error()
	}
	s.t.Logf("         transfer %s debited after %.1fs of watching: every worker killed; its row was then %s", id, time.Since(watch).Seconds(), status)
	s.evidence.add(func(e *evidence) {
		e.debitKilled = append(e.debitKilled, id)
		if status == "debited" {
			e.stillDebited++
		}
	})
	time.Sleep(pause)
	// All at once, and then wait for each: they start as fast as one does.
	for _, w := range s.workers {
		w.start()
	}
	restarted := time.Now()
	for _, w := range s.workers {
		w.waitReady(ctx)
	}
	s.t.Logf("         workers restarted %.1fs after the kill, ready %.1fs later", pause.Seconds(), time.Since(restarted).Seconds())
	return true
}

// freezeSource has an admin freeze, through the API, the source of a transfer in flight (a hot
// account if none is), holds the freeze until the ledger has refused at least one of its transfers
// (account_inactive, at its reserve or at its debit, which then releases the hold) or freezeMax
// passes, and unfreezes it. It reports whether the freeze refused a transfer.
func (s *stack) freezeSource(ctx context.Context, r *rand.Rand) bool {
	acct := s.world.hot[r.IntN(len(s.world.hot))]
	var from string
	if err := s.db.QueryRowContext(ctx, `SELECT from_account_id::text FROM transfers
		WHERE kind = 'transfer' AND status IN ('pending', 'reserved') ORDER BY created_at DESC LIMIT 1`).Scan(&from); err == nil {
		if a, ok := s.world.account(from); ok {
			acct = a
		}
	}
	refused := func() int {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM transfers
			WHERE from_account_id = $1 AND failure_code = 'account_inactive'`, acct.ID).Scan(&n); err != nil {
			s.t.Logf("freeze: %v", err)
		}
		return n
	}
	setStatus := func(status string) error {
		ans, err := s.admin.do(ctx, http.MethodPatch, "/v1/accounts/"+acct.ID, s.world.admin, map[string]string{"status": status})
		if err == nil && ans.status != http.StatusOK {
			err = fmt.Errorf("%d %s", ans.status, ans.body)
		}
		return err
	}
	before := refused()
	if err := setStatus("frozen"); err != nil {
		s.t.Errorf("freeze account %s: %v", acct.ID, err)
		return false
	}
	start := time.Now()
	for time.Since(start) < freezeMax && (time.Since(start) < freezeMin || refused() == before) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := setStatus("active"); err != nil {
		s.t.Errorf("unfreeze account %s: %v", acct.ID, err)
	}
	n := refused() - before
	s.t.Logf("         account %s frozen for %.1fs: %d of its transfers refused", acct.ID, time.Since(start).Seconds(), n)
	s.evidence.add(func(e *evidence) { e.frozenRefused += n })
	return n > 0
}

// killService SIGKILLs the cluster's svc, which must be running, and starts it again after pause,
// on the same ports; it returns once the service is ready again. It reports whether the kill found
// the service running and left it dead.
func (s *stack) killService(ctx context.Context, svc tcluster.Service, pause time.Duration) bool {
	if !s.tc.Running(svc) {
		s.t.Errorf("Temporal's %s was not running when its kill came: it had exited by itself", svc)
		return false
	}
	s.tc.Kill(svc)
	killed := !s.tc.Running(svc)
	time.Sleep(pause)
	start := time.Now()
	if err := s.tc.StartService(ctx, svc); err != nil {
		s.t.Fatalf("start Temporal's %s again: %v\n%s", svc, err, s.tc.LogTail(30))
	}
	s.t.Logf("         %s killed, started again %.1fs later, ready %.1fs after its start", svc, pause.Seconds(), time.Since(start).Seconds())
	return killed
}

// restartFrontend stops the cluster's frontend gracefully, as a rolling deploy would, and starts it
// again; it returns once the frontend is ready. It reports whether the frontend was running and
// stopped.
func (s *stack) restartFrontend(ctx context.Context) bool {
	if !s.tc.Running(tcluster.Frontend) {
		s.t.Errorf("Temporal's frontend was not running when its restart came: it had exited by itself")
		return false
	}
	start := time.Now()
	s.tc.Stop(tcluster.Frontend)
	stopped := !s.tc.Running(tcluster.Frontend)
	stoppedIn := time.Since(start)
	if err := s.tc.StartService(ctx, tcluster.Frontend); err != nil {
		s.t.Fatalf("start Temporal's frontend again: %v\n%s", err, s.tc.LogTail(30))
	}
	s.t.Logf("         frontend stopped in %.1fs, ready again %.1fs later", stoppedIn.Seconds(), (time.Since(start) - stoppedIn).Seconds())
	return stopped
}

// checkFaultsHappened fails the run for every fault that was scheduled and did not happen or hit
// nothing, and for every check that did not run.
func (s *stack) checkFaultsHappened(p plan, done map[fault]int, sum *summary) {
	s.evidence.add(func(e *evidence) {
		sum.outageConns, sum.stallTimeouts = e.outageConns, e.stallTimeouts
		sum.debitKills, sum.stillDebited, sum.frozenRefused = len(e.debitKilled), e.stillDebited, e.frozenRefused
		sum.temporalOutageConns = e.temporalOutageConns
	})
	miss := func(format string, args ...any) { sum.missing = append(sum.missing, fmt.Sprintf(format, args...)) }
	for _, f := range faultOrder {
		if done[f] < p.faults[f] {
			miss("%s: injected %d of the %d scheduled", f, done[f], p.faults[f])
		}
	}
	if p.faults[pgStall] > 0 && sum.stallTimeouts == 0 {
		miss("the PostgreSQL stall made no step time out")
	}
	if p.faults[pgOutage] > 0 && sum.outageConns == 0 {
		miss("the PostgreSQL outages cut no connection")
	}
	if p.faults[temporalPGOutage] > 0 && sum.temporalOutageConns == 0 {
		miss("the outages of Temporal's PostgreSQL cut no connection")
	}
	if p.faults[debitKill] > 0 && sum.lostTasks == 0 {
		miss("no kill after a debit lost the workflow task that ran the debit")
	}
	if sum.opCancelsLanded == 0 {
		miss("no operator cancel reached a running workflow")
	}
	if sum.duringTask == 0 {
		miss("no operator cancel landed during a workflow task")
	}
	if sum.terminationsLanded == 0 {
		miss("no operator termination reached a running workflow")
	}
	if sum.repaired == 0 {
		miss("no termination left a transfer for the reconciler to finish")
	}
	for _, m := range sum.missing {
		s.t.Errorf("did not happen: %s", m)
	}
}
