//go:build linux

package chaos_test

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	full       = flag.Bool("chaos.full", false, "run make chaos's full fault schedule instead of make test's small one")
	seedFlag   = flag.Uint64("chaos.seed", 0, "seed of the load and of the fault schedule; 0 picks one, which the test logs")
	reportFile = flag.String("chaos.report", "", "append the run's summary, a markdown table row, to this file")
)

// plan is a run's load and faults.
type plan struct {
	name    string
	load    time.Duration
	clients int
	workers int
	faults  map[fault]int
}

// fault is a kind of fault the suite injects.
type fault string

const (
	workerKill      fault = "worker SIGKILL"
	apiKill         fault = "API SIGKILL"
	temporalRestart fault = "Temporal restart (SIGKILL)"
	pgOutage        fault = "PostgreSQL outage (3 s)"
	pgSlow          fault = "PostgreSQL latency 40 ms (8 s)"
	pgStall         fault = "PostgreSQL stall 12 s (activities time out)"
	pgRestart       fault = "PostgreSQL restart (immediate: crash recovery)"
)

// faultOrder is the order of the summary's fault columns.
var faultOrder = []fault{workerKill, apiKill, temporalRestart, pgOutage, pgRestart, pgSlow, pgStall}

var (
	small = plan{name: "small (make test)", load: 45 * time.Second, clients: 6, workers: 2, faults: map[fault]int{
		workerKill: 3, apiKill: 1, temporalRestart: 1, pgOutage: 1, pgRestart: 1, pgSlow: 1, pgStall: 1}}
	fullPlan = plan{name: "full (make chaos)", load: 150 * time.Second, clients: 8, workers: 3, faults: map[fault]int{
		workerKill: 12, apiKill: 3, temporalRestart: 1, pgOutage: 2, pgRestart: 2, pgSlow: 1, pgStall: 1}}
)

// TestChaos runs the load through the real binaries while it injects the plan's faults, waits for
// every transfer to end, and checks that money moved exactly once.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: builds and runs the transferd binaries")
	}
	p := small
	if *full {
		p = fullPlan
	}
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("plan %s, seed %d (rerun with -args -chaos.seed=%d)", p.name, seed, seed)

	pg := ownCluster(t)
	if pg == nil {
		t.Log("no PostgreSQL cluster of the suite's own (it needs root and pg_createcluster): PostgreSQL is not restarted")
		p.faults = maps.Clone(p.faults)
		delete(p.faults, pgRestart)
	}
	s := startStack(t, p.workers, pg)
	ctx := context.Background()
	// The setup's deposits wait up to 30 s for their outcome; the load's requests are short.
	setupClient := &api{base: s.apiURL, http: &http.Client{Timeout: 40 * time.Second}, until: time.Now().Add(2 * time.Minute)}
	w, err := setup(ctx, setupClient)
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	client := &api{base: s.apiURL, http: &http.Client{Timeout: 5 * time.Second}}
	before := s.totals()

	start := time.Now()
	client.until = start.Add(p.load + 2*time.Minute)
	b := &book{byID: map[string]*outcome{}}
	var wg sync.WaitGroup
	for i := range p.clients {
		wg.Go(func() { runClient(ctx, client, w, b, rand.New(rand.NewPCG(seed, uint64(i))), start.Add(p.load)) })
	}
	done, late := s.injectFaults(ctx, p, rand.New(rand.NewPCG(seed, 1<<32)), start)
	wg.Wait()
	loadTook := time.Since(start)
	s.allRunning()

	drainStart := time.Now()
	stuck := s.drain(3 * time.Minute)
	sum := s.check(b, w, before)
	sum.plan, sum.seed, sum.faults, sum.stuck = p.name, seed, done, stuck
	sum.loadTook, sum.drainTook = loadTook, time.Since(drainStart)
	for _, w := range s.workers {
		sum.timeoutLines += w.countLines("deadline exceeded", "timeout")
	}
	if code, out := s.audit(ctx); code != 0 {
		sum.auditViolations = true
		t.Errorf("transferd audit exit %d:\n%s", code, out)
	}
	// A fault that began after the clients stopped tested nothing.
	for _, f := range late {
		t.Errorf("%s began after the load had ended", f)
	}
	t.Log(sum.text())
	if *reportFile != "" {
		f, err := os.OpenFile(*reportFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatalf("report: %v", err)
		}
		defer f.Close()
		fmt.Fprintln(f, sum.row(t.Failed()))
	}
}

// outcome is what the clients saw of one transfer id.
type outcome struct {
	req transferRequest
	// first is the definitive answer to the first submission; err is set instead when none came.
	first answer
	err   error
	// repeats are the answers to the same request sent again, at once or later.
	repeats []answer
	// cancelSent says a cancel was sent; cancel is its answer, when one came.
	cancelSent bool
	cancel     *answer
}

// book is every outcome, by transfer id.
type book struct {
	mu   sync.Mutex
	byID map[string]*outcome
}

func (b *book) add(o *outcome) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.byID[o.req.ID] = o
}

// runClient submits transfers until end, each retried until it has a definitive answer. Some are
// sent twice at once, some again after their answer, and some are cancelled right away.
func runClient(ctx context.Context, a *api, w *world, b *book, r *rand.Rand, end time.Time) {
	for time.Now().Before(end) {
		o := &outcome{req: w.pick(r)}
		b.add(o)
		submit := func() (answer, error) { return a.do(ctx, "POST", "/v1/transfers", o.req.token, o.req) }
		var twin sync.WaitGroup
		var twinAnswer answer
		var twinErr error
		concurrent := r.IntN(10) == 0
		if concurrent {
			twin.Go(func() { twinAnswer, twinErr = submit() })
		}
		o.first, o.err = submit()
		twin.Wait()
		if concurrent && twinErr == nil {
			o.repeats = append(o.repeats, twinAnswer)
		}
		if o.err != nil || o.first.status/100 != 2 {
			continue
		}
		if r.IntN(10) == 0 {
			if again, err := submit(); err == nil {
				o.repeats = append(o.repeats, again)
			}
		}
		if r.IntN(20) == 0 {
			o.cancelSent = true
			if ans, err := a.do(ctx, "POST", "/v1/transfers/"+o.req.ID+"/cancel", o.req.token, nil); err == nil {
				o.cancel = &ans
			}
		}
	}
}

// injectFaults runs the plan's faults, shuffled, spread over the middle of the load, one after
// the other; it returns how many of each it injected, and the faults that began only after the
// load had ended, because those before them took longer than their share.
func (s *stack) injectFaults(ctx context.Context, p plan, r *rand.Rand, start time.Time) (map[fault]int, []fault) {
	// In faultOrder's order before the shuffle, so that the seed alone decides the schedule.
	var events []fault
	for _, f := range faultOrder {
		for range p.faults[f] {
			events = append(events, f)
		}
	}
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	done := map[fault]int{}
	var late []fault
	first, last := p.load/10, p.load*6/10
	for i, f := range events {
		at := first + (last-first)*time.Duration(i)/time.Duration(max(len(events)-1, 1))
		time.Sleep(time.Until(start.Add(at)))
		s.t.Logf("%6.1fs %s", time.Since(start).Seconds(), f)
		if time.Since(start) > p.load {
			late = append(late, f)
		}
		s.inject(ctx, f, r)
		done[f]++
	}
	return done, late
}

// inject injects one fault and returns once it is over and what it stopped is running again.
func (s *stack) inject(ctx context.Context, f fault, r *rand.Rand) {
	pause := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo))) }
	switch f {
	case workerKill:
		s.workers[r.IntN(len(s.workers))].restart(ctx, pause(100*time.Millisecond, 1500*time.Millisecond))
	case apiKill:
		s.api.restart(ctx, pause(200*time.Millisecond, time.Second))
	case temporalRestart:
		s.temporal.restart(ctx, pause(500*time.Millisecond, 2*time.Second))
	case pgOutage:
		s.pgAPI.Cut()
		s.pgWorkers.Cut()
		time.Sleep(3 * time.Second)
		s.pgAPI.Restore()
		s.pgWorkers.Restore()
	case pgRestart:
		if err := s.pg.restart(); err != nil {
			s.t.Error(err)
		}
	case pgSlow, pgStall:
		latency, hold := 40*time.Millisecond, 8*time.Second
		if f == pgStall {
			// Past the steps' 10 s start-to-close timeout: the activities in flight time out and
			// are retried while their first attempts are still running.
			latency, hold = 12*time.Second, 11*time.Second
		}
		s.pgAPI.SetLatency(latency)
		s.pgWorkers.SetLatency(latency)
		time.Sleep(hold)
		s.pgAPI.SetLatency(0)
		s.pgWorkers.SetLatency(0)
	}
}

// summary is a run's outcome.
type summary struct {
	plan                string
	seed                uint64
	faults              map[fault]int
	loadTook, drainTook time.Duration
	submitted, accepted int
	repeats, cancels    int
	completed, failed   int
	cancelled           int
	lost, invented      int
	duplicated, refused int
	unanswered, stuck   int
	// faultEnded counts transfers that ended for another reason than a business outcome or a cancel.
	faultEnded      int
	balanceErrors   int
	conserved       bool
	auditViolations bool
	maxAttempts     int
	// retries counts the requests sent again because an earlier one got no definitive answer.
	retries int
	// timeoutLines counts the workers' log lines that report a timeout, evidence that the stall made
	// steps time out.
	timeoutLines int
}

func (s summary) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos %s, seed %d: load %.0fs, drain %.1fs\n", s.plan, s.seed, s.loadTook.Seconds(), s.drainTook.Seconds())
	for _, f := range faultOrder {
		fmt.Fprintf(&b, "  %-45s %d\n", f, s.faults[f])
	}
	fmt.Fprintf(&b, "  transfers submitted %d, 2xx %d (completed %d, failed %d, cancelled %d); repeats %d, cancels %d; requests retried %d, most attempts for one request %d; worker log lines on timeouts %d\n",
		s.submitted, s.accepted, s.completed, s.failed, s.cancelled, s.repeats, s.cancels, s.retries, s.maxAttempts, s.timeoutLines)
	fmt.Fprintf(&b, "  lost %d, invented %d, applied twice %d, ended by a fault %d, refused %d, unanswered %d, not final %d, balance errors %d, totals conserved %v, audit clean %v",
		s.lost, s.invented, s.duplicated, s.faultEnded, s.refused, s.unanswered, s.stuck, s.balanceErrors, s.conserved, !s.auditViolations)
	return b.String()
}

// row is the summary as a markdown table row, for docs/reliability.md: when, seed, worker kills,
// API kills, Temporal restarts, PostgreSQL outages, PostgreSQL restarts, latency phases, transfers
// submitted, answered 2xx, lost, applied twice, not final, balance errors, audit violations, drain.
func (s summary) row(failed bool) string {
	verdict := "pass"
	if failed {
		verdict = "FAIL"
	}
	return fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %.1f s | %s |",
		time.Now().UTC().Format("2006-01-02 15:04"), s.seed,
		s.faults[workerKill], s.faults[apiKill], s.faults[temporalRestart], s.faults[pgOutage], s.faults[pgRestart],
		s.faults[pgSlow]+s.faults[pgStall], s.submitted, s.accepted, s.lost, s.duplicated, s.unanswered+s.stuck,
		s.balanceErrors, boolInt(s.auditViolations), s.drainTook.Seconds(), verdict)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
