package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/transferd/transferd/transfer"
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
	switch {
	case status == http.StatusServiceUnavailable:
		// An outage or shed load: the dependency's state, not a bug, and many at once.
		level = slog.LevelWarn
	case status >= 500:
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

// checkQuery answers 400 when the query string does not parse, on every route, before its handler.
// Gin's c.Query ignores url.ParseQuery's error and drops the pair it could not decode, so without
// this check a bad cursor would restart a list at its first page and a bad filter would list
// everything. A bad cursor is invalid_cursor; any other bad pair is invalid_request.
func (s *Server) checkQuery(c *gin.Context) {
	name, bad := badQueryPair(c.Request.URL.RawQuery)
	switch {
	case !bad:
		c.Next()
	case name == "cursor":
		abortWithProblem(c, transfer.CodeInvalidCursor, "the cursor is not valid percent-encoding; send the next_cursor of the previous page as it came",
			FieldError{Field: name, Message: "is not valid percent-encoding"})
	default:
		abortWithProblem(c, codeInvalidRequest, "the query string is not valid percent-encoding",
			FieldError{Field: name, Message: "is not valid percent-encoding"})
	}
}

// maxQueryNameEcho bounds a bad pair's name that checkQuery repeats in its answer.
const maxQueryNameEcho = 64

// badQueryPair reports whether the raw query string is one that url.ParseQuery refuses, and names
// the first pair it refuses: by its decoded name, or "query" when the name itself does not decode
// (or is empty, or too long to repeat), or the pair has a semicolon, which Go no longer takes as a
// separator.
func badQueryPair(raw string) (name string, bad bool) {
	if _, err := url.ParseQuery(raw); err == nil {
		return "", false
	}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if strings.Contains(pair, ";") {
			return "query", true
		}
		key, value, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(key)
		if err != nil || name == "" || len(name) > maxQueryNameEcho {
			return "query", true
		}
		if _, err := url.QueryUnescape(value); err != nil {
			return name, true
		}
	}
	return "query", true
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
