package server

import (
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

// The defaults of Config.MaxSubmits and Config.SubmitQueueWait.
const (
	defaultMaxSubmits      = 64
	defaultSubmitQueueWait = time.Second
	// shedRetryAfter is the Retry-After of a shed request: the backlog it met drains in about that.
	shedRetryAfter = time.Second
)

// admission bounds the submissions (a row written to PostgreSQL and a workflow started in Temporal)
// in progress at once. When PostgreSQL or Temporal slows down, the requests beyond the bound wait a
// little for a slot and are then answered 503 with Retry-After, having changed nothing, instead of
// piling up until their calls time out: an overloaded dependency turns into prompt 503s, not into
// a queue of requests that all fail late (and as 500s when a deadline hits mid-call).
type admission struct {
	slots   chan struct{}
	maxWait time.Duration
	shed    prometheus.Counter
}

func newAdmission(max int, wait time.Duration, reg prometheus.Registerer) *admission {
	if max <= 0 {
		max = defaultMaxSubmits
	}
	if wait <= 0 {
		wait = defaultSubmitQueueWait
	}
	a := &admission{slots: make(chan struct{}, max), maxWait: wait,
		shed: prometheus.NewCounter(prometheus.CounterOpts{Name: "transferd_http_shed_total",
			Help: "Submissions answered 503 because MaxSubmits were already in progress for longer than SubmitQueueWait."})}
	reg.MustRegister(a.shed)
	return a
}

// admit takes a submission slot for the request, waiting up to maxWait, and reports whether it got
// one; without one it has answered 503 unavailable with Retry-After. Handlers call it once the body
// is read and valid, before their first call to a dependency (the source account's check), so that
// a client trickling its body holds no slot; they defer releaseSubmit, and submit gives the slot
// back as soon as the submission is done, so that the waiting of ?wait= holds none.
func (s *Server) admit(c *gin.Context) bool {
	a := s.admission
	select {
	case a.slots <- struct{}{}:
	default:
		timer := time.NewTimer(a.maxWait)
		defer timer.Stop()
		select {
		case a.slots <- struct{}{}:
		case <-timer.C:
			a.reject(c)
			return false
		case <-c.Request.Context().Done():
			// The client has gone: nothing to answer, and no overload to count.
			c.Abort()
			return false
		}
	}
	c.Set(ctxReleaseSubmit, sync.OnceFunc(func() { <-a.slots }))
	return true
}

// reject answers a request that found no slot.
func (a *admission) reject(c *gin.Context) {
	a.shed.Inc()
	c.Header("Retry-After", strconv.Itoa(int(shedRetryAfter.Seconds())))
	abortWithProblem(c, codeUnavailable, "the service is at capacity: "+strconv.Itoa(cap(a.slots))+
		" submissions are in progress; this request recorded nothing: send it again, with the same id or Idempotency-Key, after Retry-After")
}

// ctxReleaseSubmit is the gin context key of the slot's release that admitSubmit took.
const ctxReleaseSubmit = "transferd.releaseSubmit"

// releaseSubmit gives back the request's submission slot, if it holds one.
func releaseSubmit(c *gin.Context) {
	if v, ok := c.Get(ctxReleaseSubmit); ok {
		v.(func())()
	}
}
