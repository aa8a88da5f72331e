package server

import (
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

const ctxLogger = "transferd.logger"

// requestIDPattern is what a client-sent X-Request-Id must look like to be kept.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID gives each request an id, the client's X-Request-Id when it is sane, echoes it in the
// response and puts it on the request's logger.
func (s *Server) requestID(c *gin.Context) {
	id := c.GetHeader("X-Request-Id")
	if !requestIDPattern.MatchString(id) {
		id = uuid.NewString()
	}
	c.Header("X-Request-Id", id)
	c.Set(ctxLogger, s.log.With("request_id", id))
	c.Next()
}

// accessLog logs one structured line per request and records the request's metrics.
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	elapsed := time.Since(start)
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	status := c.Writer.Status()
	s.metrics.requests.WithLabelValues(c.Request.Method, route, strconv.Itoa(status)).Inc()
	s.metrics.latency.WithLabelValues(c.Request.Method, route).Observe(elapsed.Seconds())
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	attrs := []any{"method", c.Request.Method, "route", route, "path", c.Request.URL.Path, "status", status,
		"duration_ms", float64(elapsed.Microseconds()) / 1000, "bytes", c.Writer.Size()}
	if who := callerOf(c); who.ID != uuid.Nil {
		attrs = append(attrs, "user_id", who.ID.String())
	}
	if id, ok := c.Get(ctxTransferID); ok {
		attrs = append(attrs, "transfer_id", id, "workflow_id", id)
	}
	// With tracing on, the request's span is named after its route rather than its path.
	if span := trace.SpanFromContext(c.Request.Context()); span.SpanContext().IsValid() {
		span.SetName(c.Request.Method + " " + route)
		attrs = append(attrs, "trace_id", span.SpanContext().TraceID().String())
	}
	loggerFrom(c).Log(c.Request.Context(), level, "http request", attrs...)
}

// ctxTransferID is set by handlers that concern one transfer, for the access log.
const ctxTransferID = "transferd.transfer_id"

// recoverPanic answers a panic as a bare 500 problem and logs it with its stack; the client sees
// no internals.
func (s *Server) recoverPanic(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			loggerFrom(c).ErrorContext(c.Request.Context(), "panic serving request",
				"panic", fmt.Sprint(r), "stack", strings.ReplaceAll(string(debug.Stack()), "\t", "  "))
			if c.Writer.Written() {
				c.Abort()
				return
			}
			abortWithProblem(c, "internal", "an internal error occurred; it has been logged with this request's id")
		}
	}()
	c.Next()
}

// httpMetrics are the API's Prometheus series.
type httpMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "transferd_http_requests_total", Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "transferd_http_request_duration_seconds", Help: "HTTP request latency by method and route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}
