package server

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
	"github.com/transferd/transferd/webhooks"
)

// maxEndpointDescription bounds an endpoint's description.
const maxEndpointDescription = 500

type endpointJSON struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	EventTypes     []string `json:"event_types"`
	Description    string   `json:"description"`
	Status         string   `json:"status"`
	DisabledReason *string  `json:"disabled_reason"`
	CreatedAt      string   `json:"created_at"`
	UpdatedAt      string   `json:"updated_at"`
	// Secret is shown only by the creation and by a rotation.
	Secret *string `json:"secret,omitempty"`
	// Notice says, on a retry with the same Idempotency-Key, that the secret was shown only once.
	Notice string `json:"notice,omitempty"`
}

func toEndpointJSON(e transfer.WebhookEndpoint) endpointJSON {
	out := endpointJSON{ID: e.ID.String(), URL: e.URL, EventTypes: e.EventTypes, Description: e.Description, Status: string(e.Status),
		CreatedAt: timestamp(e.CreatedAt), UpdatedAt: timestamp(e.UpdatedAt)}
	if e.DisabledReason != "" && e.Status == transfer.EndpointDisabled {
		r := e.DisabledReason
		out.DisabledReason = &r
	}
	return out
}

type createEndpointRequest struct {
	URL         string   `json:"url"`
	EventTypes  []string `json:"event_types"`
	Description string   `json:"description"`
}

type updateEndpointRequest struct {
	URL         *string  `json:"url"`
	EventTypes  []string `json:"event_types"`
	Description *string  `json:"description"`
	Status      *string  `json:"status"`
}

// checkEventTypes validates an endpoint's event types: known types or "*", at least one, no repeats.
func checkEventTypes(fe *fieldErrors, types []string) {
	if len(types) == 0 {
		fe.add("event_types", "must list at least one event type, or \"*\" for all")
		return
	}
	for i, t := range types {
		if t != "*" && !transfer.EventType(t).Valid() {
			fe.add("event_types", "unknown event type "+quoteField(t)+"; the types are transfer.created, transfer.held, transfer.completed, transfer.failed, transfer.cancelled, or \"*\"")
			return
		}
		if slices.Contains(types[:i], t) {
			fe.add("event_types", "lists "+quoteField(t)+" twice")
			return
		}
	}
}

// quoteField quotes a client's value for a message, cut short.
func quoteField(s string) string {
	if len(s) > 64 || !utf8.ValidString(s) {
		return "(a value)"
	}
	return `"` + s + `"`
}

// checkWebhookURL answers 422 invalid_webhook_url for a URL the service will not deliver to.
func (s *Server) checkWebhookURL(c *gin.Context, raw string) bool {
	if detail, ok := s.webhookURLRefusal(c, raw); !ok {
		abortURLRefused(c, detail)
		return false
	}
	return true
}

// webhookURLRefusal checks a URL the service is to deliver to, and says why it will not.
func (s *Server) webhookURLRefusal(c *gin.Context, raw string) (detail string, ok bool) {
	err := webhooks.CheckURL(c.Request.Context(), raw, s.allowPrivateWebhooks)
	if err == nil {
		return "", true
	}
	var ue *webhooks.URLError
	if errors.As(err, &ue) {
		return ue.Reason, false
	}
	return "the URL is not one the service delivers to", false
}

func abortURLRefused(c *gin.Context, detail string) {
	abortWithProblem(c, codeInvalidWebhookURL, detail, FieldError{Field: "url", Message: detail})
}

// errURLRefused is the ledger's answer to an endpoint creation whose URL the API refused now and
// whose Idempotency-Key names no endpoint yet.
var errURLRefused = errors.New("server: webhook URL refused")

// handleCreateEndpoint registers a webhook endpoint of the caller. Its secret is in this answer
// only; a retry with the same Idempotency-Key returns the endpoint without it.
func (s *Server) handleCreateEndpoint(c *gin.Context) {
	var req createEndpointRequest
	if !decodeJSON(c, &req) {
		return
	}
	var fe fieldErrors
	if strings.TrimSpace(req.URL) == "" {
		fe.add("url", "is required")
	}
	checkEventTypes(&fe, req.EventTypes)
	checkText(&fe, "description", req.Description, maxEndpointDescription)
	key := idempotencyKeyHeader(&fe, c.Request.Header["Idempotency-Key"])
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	// A retry (same Idempotency-Key) is answered from the endpoint its first request created even
	// if the URL no longer passes the check (a name that stopped resolving, a stricter operator):
	// the ledger refuses the request only if the key names no endpoint.
	detail, urlOK := s.webhookURLRefusal(c, req.URL)
	var refuse error
	switch {
	case !urlOK && key == "":
		abortURLRefused(c, detail)
		return
	case !urlOK:
		refuse = errURLRefused
	}
	who := callerOf(c)
	secret := webhooks.NewSecret()
	e, created, err := s.ledger.CreateEndpoint(c.Request.Context(), transfer.NewEndpoint{ID: uuid.New(), UserID: who.ID, URL: req.URL,
		EventTypes: req.EventTypes, Description: req.Description, Secret: secret, IdempotencyKey: key, Actor: who.actor(),
		RefuseIfNew: refuse})
	if errors.Is(err, errURLRefused) {
		abortURLRefused(c, detail)
		return
	}
	if err != nil {
		abortWithError(c, err)
		return
	}
	out := toEndpointJSON(e)
	c.Header("Cache-Control", "no-store")
	c.Header("Location", "/v1/webhook-endpoints/"+e.ID.String())
	if !created {
		out.Notice = "an earlier request with this Idempotency-Key created this endpoint; its secret was shown only in that answer"
		c.Header("Idempotent-Replayed", "true")
		c.JSON(http.StatusOK, out)
		return
	}
	shown := webhooks.EncodeSecret(secret)
	out.Secret = &shown
	c.JSON(http.StatusCreated, out)
}

// handleListEndpoints lists the caller's endpoints, newest first.
func (s *Server) handleListEndpoints(c *gin.Context) {
	var fe fieldErrors
	p := parsePage(c, &fe)
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	list, err := s.ledger.Endpoints(c.Request.Context(), callerOf(c).ID, p)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toListJSON(list, toEndpointJSON))
}

// endpointParam parses the path's endpoint id; a malformed one is a 404 like an unknown one.
func endpointParam(c *gin.Context) (uuid.UUID, bool) { return idParam(c, "webhook endpoint") }

// handleGetEndpoint returns one of the caller's endpoints, without its secret.
func (s *Server) handleGetEndpoint(c *gin.Context) {
	id, ok := endpointParam(c)
	if !ok {
		return
	}
	e, err := s.ledger.Endpoint(c.Request.Context(), callerOf(c).ID, id)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toEndpointJSON(e))
}

// handleUpdateEndpoint changes an endpoint's url, event types, description or status.
func (s *Server) handleUpdateEndpoint(c *gin.Context) {
	id, ok := endpointParam(c)
	if !ok {
		return
	}
	var req updateEndpointRequest
	if !decodeJSON(c, &req) {
		return
	}
	var fe fieldErrors
	patch := transfer.EndpointPatch{URL: req.URL, Description: req.Description}
	if req.EventTypes != nil {
		checkEventTypes(&fe, req.EventTypes)
		patch.EventTypes = req.EventTypes
	}
	if req.Description != nil {
		checkText(&fe, "description", *req.Description, maxEndpointDescription)
	}
	if req.Status != nil {
		st := transfer.EndpointStatus(*req.Status)
		if st != transfer.EndpointEnabled && st != transfer.EndpointDisabled {
			fe.add("status", "must be enabled or disabled")
		}
		patch.Status = &st
	}
	if req.URL == nil && req.EventTypes == nil && req.Description == nil && req.Status == nil {
		fe.add("url", "send url, event_types, description or status")
	}
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	if req.URL != nil && !s.checkWebhookURL(c, *req.URL) {
		return
	}
	who := callerOf(c)
	e, err := s.ledger.UpdateEndpoint(c.Request.Context(), who.actor(), who.ID, id, patch)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toEndpointJSON(e))
}

// handleDeleteEndpoint deletes an endpoint: it gets no more deliveries.
func (s *Server) handleDeleteEndpoint(c *gin.Context) {
	id, ok := endpointParam(c)
	if !ok {
		return
	}
	who := callerOf(c)
	if err := s.ledger.DeleteEndpoint(c.Request.Context(), who.actor(), who.ID, id); err != nil {
		abortWithError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// handleRotateSecret gives an endpoint a new secret, shown in this answer only; the old one keeps
// signing beside it for 24 hours. A retry with the same Idempotency-Key rotates nothing.
func (s *Server) handleRotateSecret(c *gin.Context) {
	id, ok := endpointParam(c)
	if !ok {
		return
	}
	var fe fieldErrors
	key := idempotencyKeyHeader(&fe, c.Request.Header["Idempotency-Key"])
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	who := callerOf(c)
	secret := webhooks.NewSecret()
	e, rotated, err := s.ledger.RotateSecret(c.Request.Context(), who.actor(), who.ID, id, secret, key)
	if err != nil {
		abortWithError(c, err)
		return
	}
	out := toEndpointJSON(e)
	c.Header("Cache-Control", "no-store")
	if !rotated {
		out.Notice = "an earlier request with this Idempotency-Key rotated this endpoint's secret; the new secret was shown only in that answer"
		c.Header("Idempotent-Replayed", "true")
	} else {
		shown := webhooks.EncodeSecret(secret)
		out.Secret = &shown
	}
	c.JSON(http.StatusOK, out)
}

type attemptJSON struct {
	ID             string  `json:"id"`
	EventID        string  `json:"event_id"`
	DeliveryID     string  `json:"delivery_id"`
	Attempt        int     `json:"attempt"`
	AttemptedAt    string  `json:"attempted_at"`
	ResponseStatus *int    `json:"response_status"`
	Error          *string `json:"error"`
	DurationMS     int64   `json:"duration_ms"`
	NextRetryAt    *string `json:"next_retry_at"`
}

func toAttemptJSON(a transfer.DeliveryAttempt) attemptJSON {
	out := attemptJSON{ID: a.ID.String(), EventID: a.EventID.String(), DeliveryID: a.DeliveryID.String(), Attempt: a.Attempt,
		AttemptedAt: timestamp(a.CreatedAt), DurationMS: a.Duration.Milliseconds(), NextRetryAt: optionalTimestamp(a.NextRetryAt)}
	if a.ResponseStatus != 0 {
		st := a.ResponseStatus
		out.ResponseStatus = &st
	}
	if a.Error != "" {
		e := a.Error
		out.Error = &e
	}
	return out
}

// handleListDeliveries lists an endpoint's delivery log: each attempt, newest first.
func (s *Server) handleListDeliveries(c *gin.Context) {
	id, ok := endpointParam(c)
	if !ok {
		return
	}
	var fe fieldErrors
	p := parsePage(c, &fe)
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	if _, err := s.ledger.Endpoint(c.Request.Context(), callerOf(c).ID, id); err != nil {
		abortWithError(c, err)
		return
	}
	list, err := s.ledger.Attempts(c.Request.Context(), id, p)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toListJSON(list, toAttemptJSON))
}

type resendRequest struct {
	EventID string `json:"event_id"`
}

type deliveryJSON struct {
	ID         string `json:"id"`
	EndpointID string `json:"endpoint_id"`
	EventID    string `json:"event_id"`
	Status     string `json:"status"`
	CreatedAt  string `json:"created_at"`
}

// handleResend sends an event again to one of the caller's endpoints, as a new delivery: 202, and
// its attempts appear in the endpoint's delivery log.
func (s *Server) handleResend(c *gin.Context) {
	id, ok := endpointParam(c)
	if !ok {
		return
	}
	var req resendRequest
	if !decodeJSON(c, &req) {
		return
	}
	var fe fieldErrors
	eventID := parseID(&fe, "event_id", req.EventID)
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	who := callerOf(c)
	d, err := s.ledger.Resend(c.Request.Context(), who.ID, id, eventID, who.admin())
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusAccepted, deliveryJSON{ID: d.ID.String(), EndpointID: d.EndpointID.String(), EventID: d.EventID.String(),
		Status: d.Status, CreatedAt: timestamp(d.CreatedAt)})
}
