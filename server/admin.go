package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// requireAdmin answers 403 unless the caller is an admin now.
func requireAdmin(c *gin.Context, what string) bool {
	if !callerOf(c).admin() {
		abortWithProblem(c, codeForbidden, "only an admin may "+what)
		return false
	}
	return true
}

// handleListUsers lists every user, newest first; admins only.
func (s *Server) handleListUsers(c *gin.Context) {
	if !requireAdmin(c, "list users") {
		return
	}
	var fe fieldErrors
	p := parsePage(c, &fe)
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	list, err := s.ledger.Users(c.Request.Context(), p)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toListJSON(list, toUserJSON))
}

type updateUserRequest struct {
	Status *string `json:"status"`
	Role   *string `json:"role"`
}

// handleUpdateUser disables or re-enables a user, or changes their role; admins only. Either holds
// from the next request on: a disabled user's tokens and keys are refused (and tokens issued before
// stay refused after a re-enable), and every request reads the role afresh.
func (s *Server) handleUpdateUser(c *gin.Context) {
	if !requireAdmin(c, "change a user") {
		return
	}
	id, ok := idParam(c, "user")
	if !ok {
		return
	}
	var req updateUserRequest
	if !decodeJSON(c, &req) {
		return
	}
	var fe fieldErrors
	var patch transfer.UserPatch
	if req.Status != nil {
		st := transfer.UserStatus(*req.Status)
		if !st.Valid() {
			fe.add("status", "must be active or disabled")
		}
		patch.Status = &st
	}
	if req.Role != nil {
		r := transfer.Role(*req.Role)
		if !r.Valid() {
			fe.add("role", "must be user or admin")
		}
		patch.Role = &r
	}
	if patch.Status == nil && patch.Role == nil {
		fe.add("status", "send status, role or both")
	}
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	u, err := s.ledger.UpdateUser(c.Request.Context(), callerOf(c).actor(), id, patch)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toUserJSON(u))
}

type auditEntryJSON struct {
	ID          string         `json:"id"`
	Action      string         `json:"action"`
	ActorID     *string        `json:"actor_id"`
	APIKeyID    *string        `json:"api_key_id"`
	SubjectType string         `json:"subject_type"`
	SubjectID   string         `json:"subject_id"`
	Detail      map[string]any `json:"detail"`
	CreatedAt   string         `json:"created_at"`
}

func toAuditEntryJSON(e transfer.AuditEntry) auditEntryJSON {
	out := auditEntryJSON{ID: e.ID.String(), Action: e.Action, SubjectType: e.SubjectType, SubjectID: e.SubjectID.String(),
		Detail: e.Detail, CreatedAt: timestamp(e.CreatedAt)}
	if out.Detail == nil {
		out.Detail = map[string]any{}
	}
	if e.Actor.UserID != uuid.Nil {
		s := e.Actor.UserID.String()
		out.ActorID = &s
	}
	if e.Actor.APIKeyID != uuid.Nil {
		s := e.Actor.APIKeyID.String()
		out.APIKeyID = &s
	}
	return out
}

// handleListAuditLog lists who did what, most recent first; admins only.
func (s *Server) handleListAuditLog(c *gin.Context) {
	if !requireAdmin(c, "read the audit log") {
		return
	}
	var fe fieldErrors
	p := parsePage(c, &fe)
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	list, err := s.ledger.AuditLog(c.Request.Context(), p)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toListJSON(list, toAuditEntryJSON))
}

// idParam parses the path's id of a thing; a malformed one is answered 404, like an unknown one.
func idParam(c *gin.Context, thing string) (uuid.UUID, bool) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		abortWithProblem(c, transfer.CodeNotFound, "no "+thing+" "+c.Param("id"))
		return uuid.Nil, false
	}
	return id, true
}
