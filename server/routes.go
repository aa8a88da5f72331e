package server

import (
	"strings"

	"github.com/gin-gonic/gin"
)

// routes builds the router: every route of the API is here.
func (s *Server) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.Use(s.requestID, s.accessLog, s.recoverPanic, s.checkQuery)
	r.NoRoute(func(c *gin.Context) {
		abortWithProblem(c, codeRouteNotFound, "no route "+c.Request.Method+" "+c.Request.URL.Path)
	})
	r.NoMethod(func(c *gin.Context) {
		abortWithProblem(c, codeMethodNotAllowed, "method "+c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})

	// Operational endpoints: no authentication, no /v1.
	r.GET("/healthz", s.handleHealthz)
	r.GET("/readyz", s.handleReadyz)
	r.GET("/metrics", s.handleMetrics)
	r.GET("/openapi.json", s.handleOpenAPI)

	v1 := r.Group("/v1")
	v1.POST("/users", s.handleCreateUser)
	v1.POST("/auth/token", s.handleCreateToken)

	authed := v1.Group("", s.requireAuth)
	authed.GET("/me", s.handleGetMe)
	authed.POST("/auth/revoke", s.handleRevoke)
	authed.GET("/users", s.handleListUsers)
	authed.PATCH("/users/:id", s.handleUpdateUser)
	authed.POST("/api-keys", s.handleCreateAPIKey)
	authed.GET("/api-keys", s.handleListAPIKeys)
	authed.DELETE("/api-keys/:id", s.handleRevokeAPIKey)
	authed.GET("/audit-log", s.handleListAuditLog)

	authed.GET("/events", s.handleListEvents)
	authed.GET("/events/:id", s.handleGetEvent)
	authed.POST("/webhook-endpoints", s.handleCreateEndpoint)
	authed.GET("/webhook-endpoints", s.handleListEndpoints)
	authed.GET("/webhook-endpoints/:id", s.handleGetEndpoint)
	authed.PATCH("/webhook-endpoints/:id", s.handleUpdateEndpoint)
	authed.DELETE("/webhook-endpoints/:id", s.handleDeleteEndpoint)
	authed.POST("/webhook-endpoints/:id/rotate-secret", s.handleRotateSecret)
	authed.GET("/webhook-endpoints/:id/deliveries", s.handleListDeliveries)
	authed.POST("/webhook-endpoints/:id/deliveries", s.handleResend)
	authed.GET("/currencies", s.handleListCurrencies)

	authed.POST("/accounts", s.handleCreateAccount)
	authed.GET("/accounts", s.handleListAccounts)
	authed.GET("/accounts/:id", s.handleGetAccount)
	authed.PATCH("/accounts/:id", s.handleUpdateAccount)
	authed.GET("/accounts/:id/entries", s.handleListEntries)

	authed.POST("/transfers", s.handleCreateTransfer)
	authed.GET("/transfers", s.handleListTransfers)
	authed.GET("/transfers/:id", s.handleGetTransfer)
	authed.POST("/transfers/:id/cancel", s.handleCancelTransfer)
	authed.POST("/transfers/:id/capture", s.handleCaptureTransfer)
	authed.POST("/deposits", s.handleCreateDeposit)
	authed.POST("/withdrawals", s.handleCreateWithdrawal)
	return r
}

// openAPIPath turns a Gin path (/v1/accounts/:id) into an OpenAPI one (/v1/accounts/{id}).
func openAPIPath(p string) string {
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if strings.HasPrefix(part, ":") {
			parts[i] = "{" + part[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}
