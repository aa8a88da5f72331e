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

// admitSubmit is the middleware of the submitting routes: it takes a slot before the handler's
// first call to a dependency (the source account's check), waiting up to maxWait, and answers 503
// unavailable with Retry-After when none frees up. The handler gives the slot back as soon as its
// submission is done (releaseSubmit), so that the waiting of ?wait= holds none; whatever the
// handler did, the slot is given back when it returns.
func (s *Server) admitSubmit(c *gin.Context) {
	a := s.admission
	release := sync.OnceFunc(func() { <-a.slots })
	select {
	case a.slots <- struct{}{}:
	default:
		timer := time.NewTimer(a.maxWait)
		defer timer.Stop()
		select {
		case a.slots <- struct{}{}:
		case <-timer.C:
			a.reject(c)
			return
		case <-c.Request.Context().Done():
			a.reject(c)
			return
		}
	}
	defer release()
	c.Set(ctxReleaseSubmit, release)
	c.Next()
}

// reject answers a request that found no slot.
func (a *admission) reject(c *gin.Context) {
	a.shed.Inc()
	c.Header("Retry-After", strconv.Itoa(int(shedRetryAfter.Seconds())))
	abortWithProblem(c, codeUnavailable, "the service is at capacity: "+strconv.Itoa(cap(a.slots))+
		" submissions are in progress; nothing was recorded, send the request again after Retry-After")
}

// ctxReleaseSubmit is the gin context key of the slot's release that admitSubmit took.
const ctxReleaseSubmit = "transferd.releaseSubmit"

// releaseSubmit gives back the request's submission slot, if it holds one.
func releaseSubmit(c *gin.Context) {
	if v, ok := c.Get(ctxReleaseSubmit); ok {
		v.(func())()
	}
}
