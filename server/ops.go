package server

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/transferd/transferd/docs"
)

// handleHealthz answers 200 while the process runs.
func (s *Server) handleHealthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// handleReadyz answers 200 only when every dependency answers, else 503 naming the ones that do not.
func (s *Server) handleReadyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	var failing []string
	for name, check := range s.ready {
		if err := check(ctx); err != nil {
			// The error may name hosts; it goes to the log, not to the client.
			loggerFrom(c).WarnContext(ctx, "readiness check failed", "dependency", name, "err", err.Error())
			checks[name] = "unavailable"
			failing = append(failing, name)
			continue
		}
		checks[name] = "ok"
	}
	if len(failing) > 0 {
		sort.Strings(failing)
		c.Header("Content-Type", "application/problem+json")
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{
			"type": problemTypeBase + string(codeUnavailable), "title": "Service unavailable", "status": http.StatusServiceUnavailable,
			"detail": "not ready: " + strings.Join(failing, ", ") + " did not answer", "code": codeUnavailable, "checks": checks})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "checks": checks})
}

// handleMetrics serves the Prometheus text format.
func (s *Server) handleMetrics(c *gin.Context) {
	promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}).ServeHTTP(c.Writer, c.Request)
}

// handleOpenAPI serves the OpenAPI 3.1 document of the API.
func (s *Server) handleOpenAPI(c *gin.Context) {
	c.Data(http.StatusOK, "application/json", docs.OpenAPI)
}
