//go:build linux

package chaos_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/tcluster"
)

var (
	full             = flag.Bool("chaos.full", false, "run make chaos's full fault schedule instead of make test's small one")
	seedFlag         = flag.Uint64("chaos.seed", 0, "seed of the load and of the fault schedule; 0 picks one, which the test logs")
	clusterSmallFlag = flag.Bool("chaos.cluster", false, "run TestChaosCluster's small schedule, which make test skips (-chaos.full runs its full one)")
	reportFile       = flag.String("chaos.report", "", "append the run's summary, a markdown table row, to this file")
)

// plan is a run's load and faults.
type plan struct {
	name string
	// temporal is the Temporal the run is on.
	temporal temporalKind
	load     time.Duration
	clients  int
	workers  int
	faults   map[fault]int
	// slowFor is how long the PostgreSQL latency phase lasts.
	slowFor time.Duration
}

// fault is a kind of fault the suite injects.
type fault string

const (
	workerKill      fault = "worker SIGKILL"
	apiKill         fault = "API SIGKILL"
	temporalRestart fault = "Temporal restart (SIGKILL)"
	pgOutage        fault = "PostgreSQL outage (3 s)"
	pgSlow          fault = "PostgreSQL latency 40 ms (4 s small, 8 s full)"
	pgStall         fault = "PostgreSQL stall 12 s for 11 s (steps time out)"
	pgRestart       fault = "PostgreSQL restart (immediate: crash recovery)"
	debitKill       fault = "every worker SIGKILLed right after a debit"
	sourceFreeze    fault = "source frozen by an admin, then unfrozen"
	// The cluster's faults.
	historyKill      fault = "Temporal history SIGKILL"
	matchingKill     fault = "Temporal matching SIGKILL"
	frontendRestart  fault = "Temporal frontend restart"
	temporalPGOutage fault = "Temporal's PostgreSQL outage (4 s)"
)

// faultOrder is the order of the summary's fault columns.
var faultOrder = []fault{workerKill, debitKill, apiKill, temporalRestart, pgOutage, pgRestart, pgSlow, pgStall, sourceFreeze,
	historyKill, matchingKill, frontendRestart, temporalPGOutage}

var (
	small = plan{name: "small (make test)", temporal: devServer, load: 45 * time.Second, clients: 6, workers: 2, slowFor: 4 * time.Second, faults: map[fault]int{
		workerKill: 1, debitKill: 2, apiKill: 1, temporalRestart: 1, pgOutage: 1, pgRestart: 1, pgSlow: 1, pgStall: 1, sourceFreeze: 1}}
	fullPlan = plan{name: "full (make chaos)", temporal: devServer, load: 150 * time.Second, clients: 8, workers: 3, slowFor: 8 * time.Second, faults: map[fault]int{
		workerKill: 10, debitKill: 4, apiKill: 3, temporalRestart: 1, pgOutage: 2, pgRestart: 2, pgSlow: 1, pgStall: 1, sourceFreeze: 2}}
	// The cluster's schedules: the cluster's own faults, and of the dev server's the kills, the
	// ledger's outage and the freezes. Not the Temporal restart (of the dev server), nor the
	// PostgreSQL crash: the ledger and Temporal share the PostgreSQL server, so it would be an outage
	// of Temporal's persistence too, a fault of its own. Nor the latency and the stall, which test the
	// ledger's steps and would lengthen the run for nothing the cluster changes. Two kills after a
	// debit, as in the small schedule: the operator may terminate the run whose task a kill lost
	// before the task times out, and the run then shows no lost task.
	clusterSmall = plan{name: "cluster small", temporal: clusterPG, load: 60 * time.Second, clients: 6, workers: 2, faults: map[fault]int{
		workerKill: 1, debitKill: 2, apiKill: 1, pgOutage: 1, sourceFreeze: 1, historyKill: 1, matchingKill: 1, frontendRestart: 1, temporalPGOutage: 1}}
	clusterFull = plan{name: "cluster full (make chaos)", temporal: clusterPG, load: 150 * time.Second, clients: 8, workers: 3, faults: map[fault]int{
		workerKill: 4, debitKill: 2, apiKill: 2, pgOutage: 1, sourceFreeze: 1, historyKill: 2, matchingKill: 2, frontendRestart: 2, temporalPGOutage: 2}}
)

// The operator's share of the load: the percentage of accepted transfers that a client cancels
// through the API, or hands to an operator who cancels or terminates their workflow through the
// Temporal API, as the Web UI does, at once (while the workflow's first task most likely runs) or
// shortly after the 202. Besides these, the operator's sweep acts on a running workflow every
// sweepEvery or so.
const (
	apiCancelPercent          = 5
	opCancelAtOncePercent     = 2
	opCancelMidTaskPercent    = 3
	opCancelShortlyPercent    = 1
	opTerminateAtOncePercent  = 1
	opTerminateMidTaskPercent = 1
	opTerminateShortlyPercent = 1
	sweepEvery                = 1500 * time.Millisecond
	// shortlyMin and shortlyMax bound the delay of the actions sent shortly after the 202.
	shortlyMin, shortlyMax = 5 * time.Millisecond, 300 * time.Millisecond
)

// The faults' timings.
const (
	// loadTailAfterLastFault is how long the load goes on after the last fault, at least.
	loadTailAfterLastFault = 2 * time.Second
	// debitWatch bounds how long a kill after a debit waits to see one; debitKillLatency is the
	// latency added meanwhile between the workers and PostgreSQL.
	debitWatch       = 20 * time.Second
	debitKillLatency = 20 * time.Millisecond
	// freezeMin and freezeMax bound how long a source stays frozen: until the ledger has refused
	// one of its transfers, within these bounds. The bound is long for a loaded machine: with two
	// test suites on its two cores, a freeze of 10 s once met no transfer of its source.
	freezeMin, freezeMax = 1500 * time.Millisecond, 30 * time.Second
	// stallTimeoutsObservedIn is how long after a stall began its steps' timeouts are counted.
	stallTimeoutsObservedIn = 15 * time.Second
)

// TestChaos runs the load through the real binaries while it injects the plan's faults and an
// operator cancels and terminates workflows through the Temporal API, waits for every transfer to
// end, and checks that money moved exactly once, that every workflow's result is its row, and that
// every fault scheduled happened and hit something.
func TestChaos(t *testing.T) {
	p := small
	if *full {
		p = fullPlan
	}
	runChaos(t, p)
}

// TestChaosCluster is TestChaos on the production-shaped Temporal cluster (internal/tcluster)
// instead of the dev server, its persistence behind a fault proxy of its own: it SIGKILLs history
// and matching mid-load and starts them again, restarts the frontend, and cuts Temporal off from
// PostgreSQL for a while, besides killing workers and the API and cutting the ledger's connections.
//
// make chaos runs its full schedule. Its small one (-chaos.cluster) would take make test about two
// minutes more on two cores, for faults that internal/tcluster's TestCluster already injects there
// without load, so make test skips it.
func TestChaosCluster(t *testing.T) {
	p := clusterSmall
	switch {
	case *full:
		p = clusterFull
	case !*clusterSmallFlag:
		t.Skip("chaos on the Temporal cluster: make chaos runs it (-chaos.full); -chaos.cluster runs its small schedule")
	}
	runChaos(t, p)
}

// runChaos runs the plan: load, faults, operator, drain and checks.
func runChaos(t *testing.T, p plan) {
	if testing.Short() {
		t.Skip("chaos: builds and runs the transferd binaries")
	}
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("plan %s, seed %d (rerun with -args -chaos.seed=%d)", p.name, seed, seed)

	// On the Temporal cluster too: the cluster's connections and the processes' pools then do not
	// count against the limit of a PostgreSQL server that other tests share.
	pg, why := ownCluster(t)
	if pg == nil && p.faults[pgRestart] > 0 {
		// CI runs as root with Debian's tools precisely so that this fault runs: there, a run that
		// cannot crash PostgreSQL has not tested what it says it tested.
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set, and the suite could not create its own PostgreSQL cluster, so it cannot crash PostgreSQL: %s", why)
		}
		t.Logf("no PostgreSQL cluster of the suite's own (%s): PostgreSQL is not restarted", why)
		p.faults = maps.Clone(p.faults)
		delete(p.faults, pgRestart)
	}
	s := startStackOn(t, p.temporal, p.workers, pg, "")
	ctx := context.Background()
	w, client, op, before := s.prepareLoad(ctx)

	start := time.Now()
	clock := &loadClock{plannedEnd: start.Add(p.load), faultsOver: make(chan struct{})}
	client.until = start.Add(p.load + 4*time.Minute)
	s.admin.until, op.until = client.until, client.until
	// Every event from here on goes to a receiver that fails some attempts, and is down for a while
	// in the middle of the load (connections refused) while the faults hit the workers.
	hooks := startReceiver(t, seed)
	endpointID := s.subscribe(ctx, w, hooks, p.temporal)
	downFor := 10 * time.Second
	if *full {
		downFor = time.Minute
	}
	b := &book{byID: map[string]*outcome{}}
	var wg, operations sync.WaitGroup
	for i := range p.clients {
		wg.Go(func() {
			runClient(ctx, client, op, w, b, rand.New(rand.NewPCG(seed, uint64(i))), clock, &operations)
		})
	}
	wg.Go(func() { op.sweep(ctx, b, rand.New(rand.NewPCG(seed, 1<<33)), clock) })
	var deliveriesTerminated map[string]string
	wg.Go(func() { deliveriesTerminated = op.terminateDeliveries(ctx, rand.New(rand.NewPCG(seed, 1<<35)), clock) })
	wg.Go(func() {
		time.Sleep(p.load * 3 / 10)
		t.Logf("%6.1fs webhook receiver down for %s", time.Since(start).Seconds(), downFor)
		hooks.goDown(downFor)
	})
	done := s.injectFaults(ctx, p, rand.New(rand.NewPCG(seed, 1<<32)), start, clock)
	wg.Wait()
	operations.Wait()
	loadTook := time.Since(start)
	s.evidence.wait()
	s.allRunning()

	drainStart := time.Now()
	stuck := s.drain(3 * time.Minute)
	drainTook := time.Since(drainStart)
	sum := s.check(b, w, before)
	sum.plan, sum.temporal, sum.seed, sum.faults, sum.stuck = p.name, p.temporal, seed, done, stuck
	sum.loadTook, sum.plannedLoad, sum.drainTook = loadTook, p.load, drainTook
	s.checkOperated(ctx, op, b, &sum)
	s.checkFaultsHappened(p, done, &sum)
	sum.webhooks = s.checkWebhooks(ctx, hooks, endpointID, 3*time.Minute)
	sum.webhooks.downFor, sum.webhooks.terminated = downFor, len(deliveriesTerminated)
	sum.webhooks.restarted = op.restartedDeliveries(ctx, deliveriesTerminated)
	if sum.webhooks.restarted == 0 {
		t.Errorf("webhooks: the operator terminated %d delivery workflows and none was restarted: the restart of a terminated delivery was not exercised", sum.webhooks.terminated)
	}
	sum.audit = s.audit(ctx)
	t.Log(sum.text())
	if *reportFile != "" {
		f, err := os.OpenFile(*reportFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatalf("report: %v", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Size() == 0 {
			fmt.Fprintln(f, sum.header())
		}
		fmt.Fprintln(f, sum.row(t.Failed()))
	}
}

// prepareLoad sets up the world the load runs on (s.world) and the admin's client (s.admin), and
// returns the world, the load's API client, the operator and the money per currency before the load.
func (s *stack) prepareLoad(ctx context.Context) (*world, *api, *operator, map[string]int64) {
	s.t.Helper()
	// The setup's deposits wait up to 30 s for their outcome; the load's requests are short.
	setupClient := &api{base: s.apiURL, http: &http.Client{Timeout: 40 * time.Second}, until: time.Now().Add(2 * time.Minute)}
	w, err := setup(ctx, setupClient)
	if err != nil {
		s.t.Fatalf("setup: %v", err)
	}
	s.world = w
	w.newTerms.Store(true)
	client := &api{base: s.apiURL, http: &http.Client{Timeout: 5 * time.Second}}
	s.admin = &api{base: s.apiURL, http: &http.Client{Timeout: 5 * time.Second}}
	op := dialOperator(s.t, s.temporalAddr, s.namespace, s.db)
	return w, client, op, s.totals()
}

// outcome is what the clients saw of one transfer id.
type outcome struct {
	req transferRequest
	// id is the transfer's id: the request's, or for a keyed request the one its answer gave (until
	// an answer comes, "key:" and its key).
	id string
	// first is the definitive answer to the first submission; err is set instead when none came.
	first answer
	err   error
	// repeats are the answers to the same request sent again, at once or later.
	repeats []answer
	// cancelSent says a cancel was sent through the API; cancel is its answer, when one came.
	cancelSent bool
	cancel     *answer
	// op is what an operator did to the transfer's workflow through the Temporal API, if anything.
	// A transfer gets at most one of a cancel through the API and an operator's action.
	op *operatorAction
	// answeredAt is when the first submission's answer came.
	answeredAt time.Time
	// captures are the captures sent for a hold (the amount asked, 0 for all) and their answers.
	captures []captureSent
}

// captureSent is one capture of a hold and its answer, or the error when none came.
type captureSent struct {
	amount int64
	ans    answer
	err    error
}

// book is every outcome, by transfer id.
type book struct {
	mu   sync.Mutex
	byID map[string]*outcome
}

func (b *book) add(o *outcome) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.byID[o.id] = o
}

// claim reserves the transfer for one cancel or operator action, and reports whether it was still
// free; the action it is claimed for is then recorded in o.op or o.cancelSent.
func (b *book) claim(o *outcome, op *operatorAction) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o.cancelSent || o.op != nil {
		return false
	}
	if op == nil {
		o.cancelSent = true
	} else {
		o.op = op
	}
	return true
}

// loadClock says whether the clients go on submitting: until the planned end of the load, and past
// it until the last fault is over, so that no fault runs on an idle system when the machine is
// slow and the faults take longer than their share.
type loadClock struct {
	plannedEnd time.Time
	faultsOver chan struct{}
}

func (c *loadClock) on() bool {
	if time.Now().Before(c.plannedEnd) {
		return true
	}
	select {
	case <-c.faultsOver:
		return false
	default:
		return true
	}
}

// runClient submits transfers while the load is on, each retried until it has a definitive answer.
// Some are sent twice at once, some again after their answer, some are cancelled through the API
// right away, and some are handed to the operator, who cancels or terminates their workflow at once
// or shortly after (in operations, so as not to slow the client).
func runClient(ctx context.Context, a *api, op *operator, w *world, b *book, r *rand.Rand, clock *loadClock, operations *sync.WaitGroup) {
	for clock.on() {
		o := &outcome{req: w.pick(r)}
		o.id = o.req.ID
		if o.req.key != "" {
			o.id = "key:" + o.req.key
		}
		submit := func() (answer, error) {
			return a.do(ctx, "POST", "/v1/transfers", o.req.token, o.req, o.req.headers()...)
		}
		var twin sync.WaitGroup
		var twinAnswer answer
		var twinErr error
		concurrent := r.IntN(10) == 0
		if concurrent {
			twin.Go(func() { twinAnswer, twinErr = submit() })
		}
		o.first, o.err = submit()
		o.answeredAt = time.Now()
		twin.Wait()
		if concurrent && twinErr == nil {
			o.repeats = append(o.repeats, twinAnswer)
		}
		if o.req.key != "" && o.err == nil && o.first.status/100 == 2 {
			var tr transferJSON
			if err := json.Unmarshal(o.first.body, &tr); err == nil && tr.ID != "" {
				o.id = tr.ID
			}
		}
		b.add(o)
		if o.err != nil || o.first.status/100 != 2 {
			continue
		}
		if r.IntN(10) == 0 {
			if again, err := submit(); err == nil {
				o.repeats = append(o.repeats, again)
			}
		}
		if o.req.manual() {
			raceHold(ctx, a, b, o, r, operations)
		}
		delay := shortlyMin + time.Duration(r.Int64N(int64(shortlyMax-shortlyMin)))
		operate := func(kind opKind, timing opTiming) {
			act := &operatorAction{kind: kind, timing: timing}
			if !b.claim(o, act) {
				return
			}
			switch timing {
			case atOnce:
				op.act(ctx, o.id, act)
			case midTask:
				op.whenReserved(ctx, o.id)
				op.act(ctx, o.id, act)
			case shortly:
				operations.Go(func() {
					time.Sleep(delay)
					op.act(ctx, o.id, act)
				})
			}
		}
		// The percentages, in order: whichever range x falls in decides what happens to the transfer.
		x, upTo := r.IntN(100), 0
		in := func(percent int) bool {
			upTo += percent
			return x < upTo
		}
		switch {
		case in(apiCancelPercent):
			if b.claim(o, nil) {
				if ans, err := a.do(ctx, "POST", "/v1/transfers/"+o.id+"/cancel", o.req.token, nil); err == nil {
					o.cancel = &ans
				}
			}
		case in(opCancelAtOncePercent):
			operate(opCancel, atOnce)
		case in(opCancelMidTaskPercent):
			operate(opCancel, midTask)
		case in(opCancelShortlyPercent):
			operate(opCancel, shortly)
		case in(opTerminateAtOncePercent):
			operate(opTerminate, atOnce)
		case in(opTerminateMidTaskPercent):
			operate(opTerminate, midTask)
		case in(opTerminateShortlyPercent):
			operate(opTerminate, shortly)
		}
	}
}

// raceHold sends, for a hold, what its clients would: a capture (of all of it, or part) at a random
// moment before or around its expiry, sometimes twice, sometimes together with a cancel; or
// nothing, and the hold expires. Capture, cancel and expiry then race in the ledger.
func raceHold(ctx context.Context, a *api, b *book, o *outcome, r *rand.Rand, operations *sync.WaitGroup) {
	x := r.IntN(100)
	if x < 20 {
		return // left to expire
	}
	expires, _ := time.Parse(time.RFC3339Nano, o.req.HoldExpiresAt)
	// Up to a second past the expiry, so that some captures reach the ledger too late.
	delay := time.Duration(r.Int64N(int64(max(time.Until(expires)+time.Second, time.Millisecond))))
	amount := int64(0)
	if r.IntN(2) == 0 {
		amount = 1 + r.Int64N(o.req.Amount)
	}
	twice := x >= 90
	withCancel := x >= 75 && x < 90 && b.claim(o, nil)
	path := "/v1/transfers/" + o.id
	operations.Go(func() {
		time.Sleep(delay)
		var wg sync.WaitGroup
		if withCancel {
			wg.Go(func() {
				if ans, err := a.do(ctx, "POST", path+"/cancel", o.req.token, nil); err == nil {
					b.mu.Lock()
					o.cancel = &ans
					b.mu.Unlock()
				}
			})
		}
		capture := func() {
			var body any
			if amount != 0 {
				body = map[string]int64{"amount": amount}
			}
			ans, err := a.do(ctx, "POST", path+"/capture", o.req.token, body)
			b.mu.Lock()
			o.captures = append(o.captures, captureSent{amount: amount, ans: ans, err: err})
			b.mu.Unlock()
		}
		wg.Go(capture)
		if twice {
			wg.Go(capture)
		}
		wg.Wait()
	})
}

// injectFaults runs the plan's faults, shuffled, spread over the middle of the load, one after
// the other, and returns how many of each it injected: a fault whose effect could not be brought
// about (no debit to kill the workers after, no transfer refused by a frozen source) is not counted.
// Once the last is over it lets the load end, a little later.
func (s *stack) injectFaults(ctx context.Context, p plan, r *rand.Rand, start time.Time, clock *loadClock) map[fault]int {
	defer func() {
		time.Sleep(loadTailAfterLastFault)
		close(clock.faultsOver)
	}()
	// In faultOrder's order before the shuffle, so that the seed alone decides the schedule.
	var events []fault
	for _, f := range faultOrder {
		for range p.faults[f] {
			events = append(events, f)
		}
	}
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	done := map[fault]int{}
	first, last := p.load/10, p.load*6/10
	for i, f := range events {
		at := first + (last-first)*time.Duration(i)/time.Duration(max(len(events)-1, 1))
		time.Sleep(time.Until(start.Add(at)))
		s.t.Logf("%6.1fs %s", time.Since(start).Seconds(), f)
		if time.Since(start) > p.load {
			s.t.Logf("the faults before took longer than their share: the load goes on past its planned %s until they are over", p.load)
		}
		if s.inject(ctx, p, f, r) {
			done[f]++
		}
	}
	return done
}

// inject injects one fault and returns once it is over and what it stopped is running again. It
// reports whether the fault took effect.
func (s *stack) inject(ctx context.Context, p plan, f fault, r *rand.Rand) bool {
	pause := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo))) }
	switch f {
	case workerKill:
		s.workers[r.IntN(len(s.workers))].restart(ctx, pause(100*time.Millisecond, 1500*time.Millisecond))
	case debitKill:
		return s.killAfterDebit(ctx, pause(100*time.Millisecond, 1500*time.Millisecond))
	case apiKill:
		s.api.restart(ctx, pause(200*time.Millisecond, time.Second))
	case temporalRestart:
		s.temporal.restart(ctx, pause(500*time.Millisecond, 2*time.Second))
	case pgOutage:
		before := s.pgAPI.Stats().Cut + s.pgAPI.Stats().Refused + s.pgWorkers.Stats().Cut + s.pgWorkers.Stats().Refused
		s.pgAPI.Cut()
		s.pgWorkers.Cut()
		time.Sleep(3 * time.Second)
		s.pgAPI.Restore()
		s.pgWorkers.Restore()
		after := s.pgAPI.Stats().Cut + s.pgAPI.Stats().Refused + s.pgWorkers.Stats().Cut + s.pgWorkers.Stats().Refused
		s.evidence.add(func(e *evidence) { e.outageConns += after - before })
	case pgRestart:
		if err := s.pg.restart(); err != nil {
			s.t.Error(err)
			return false
		}
	case pgSlow:
		s.pgAPI.SetLatency(40 * time.Millisecond)
		s.pgWorkers.SetLatency(40 * time.Millisecond)
		time.Sleep(p.slowFor)
		s.pgAPI.SetLatency(0)
		s.pgWorkers.SetLatency(0)
	case pgStall:
		// Past the steps' 10 s start-to-close timeout: the steps in flight time out and are retried
		// while their first attempts still run. The API is stalled only at first: stalled for the
		// whole 11 s it accepts no transfer, and at a few transfers a second almost none is in
		// flight at the stall's first instant, so the stall would hit nothing. Once the API is back,
		// every transfer it accepts starts its saga against the stalled workers.
		// A stall that meets no transfer (the clients still backing off after an earlier fault,
		// say) is injected again, up to three times in all: a fault that hit nothing proves
		// nothing, and the run then fails for it.
		for attempt := 1; attempt <= 3; attempt++ {
			before := s.stepsPastTimeout()
			start := time.Now()
			s.pgAPI.SetLatency(12 * time.Second)
			s.pgWorkers.SetLatency(12 * time.Second)
			time.Sleep(3 * time.Second)
			s.pgAPI.SetLatency(0)
			time.Sleep(8 * time.Second)
			s.pgWorkers.SetLatency(0)
			// A step that began during the stall runs out its 10 s a little after the stall ends.
			for time.Since(start) < stallTimeoutsObservedIn && s.stepsPastTimeout() == before {
				time.Sleep(200 * time.Millisecond)
			}
			if n := s.stepsPastTimeout() - before; n > 0 {
				s.evidence.add(func(e *evidence) { e.stallTimeouts += n })
				break
			}
			s.t.Logf("         the stall (attempt %d) made no step time out", attempt)
		}
	case sourceFreeze:
		return s.freezeSource(ctx, r)
	case historyKill:
		return s.killService(ctx, tcluster.History, pause(200*time.Millisecond, 2*time.Second))
	case matchingKill:
		return s.killService(ctx, tcluster.Matching, pause(200*time.Millisecond, 2*time.Second))
	case frontendRestart:
		return s.restartFrontend(ctx)
	case temporalPGOutage:
		stats := func() int64 { st := s.pgTemporal.Stats(); return st.Cut + st.Refused }
		before := stats()
		s.pgTemporal.Cut()
		time.Sleep(4 * time.Second)
		s.pgTemporal.Restore()
		n := stats() - before
		s.t.Logf("         Temporal's PostgreSQL connections cut or refused: %d", n)
		s.evidence.add(func(e *evidence) { e.temporalOutageConns += n })
		return n > 0
	}
	return true
}
