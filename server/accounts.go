package server

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

type createAccountRequest struct {
	Currency   string            `json:"currency"`
	ExternalID *string           `json:"external_id"`
	Labels     map[string]string `json:"labels"`
	OwnerID    string            `json:"owner_id"`
}

// handleCreateAccount creates an account owned by the caller, or, for an admin, by owner_id. With an
// external_id it is idempotent: the same body again returns the account with 200.
func (s *Server) handleCreateAccount(c *gin.Context) {
	var req createAccountRequest
	if !decodeJSON(c, &req) {
		return
	}
	who := callerOf(c)
	var fe fieldErrors
	cur, err := parseCurrency(&fe, "currency", req.Currency)
	owner := parseOptionalID(&fe, "owner_id", req.OwnerID)
	var externalID string
	if req.ExternalID != nil {
		externalID = *req.ExternalID
		if externalID == "" {
			fe.add("external_id", "must not be empty when given")
		}
		checkText(&fe, "external_id", externalID, maxExternalID)
	}
	checkLabels(&fe, "labels", req.Labels)
	if ferr := fe.err(); ferr != nil {
		abortWithError(c, ferr)
		return
	}
	if err != nil {
		abortWithError(c, err)
		return
	}
	switch {
	case owner == uuid.Nil:
		owner = who.ID
	case owner != who.ID && !who.admin():
		abortWithProblem(c, codeForbidden, "only an admin may create an account for another user")
		return
	}
	acct, created, err := s.ledger.CreateAccount(c.Request.Context(), transfer.NewAccount{
		OwnerID: owner, Currency: cur, ExternalID: externalID, Labels: req.Labels})
	if transfer.IsCode(err, transfer.CodeNotFound) {
		abortWithError(c, fieldErrors{{Field: "owner_id", Message: "no user has this id"}})
		return
	}
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.Header("Location", "/v1/accounts/"+acct.ID.String())
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	c.JSON(status, toAccountJSON(acct))
}

// handleListAccounts lists the caller's accounts; an admin's lists all, the system accounts included.
func (s *Server) handleListAccounts(c *gin.Context) {
	who := callerOf(c)
	var fe fieldErrors
	p := parsePage(c, &fe)
	f := transfer.AccountFilter{ExternalID: c.Query("external_id")}
	checkQueryText(&fe, "external_id", f.ExternalID, maxExternalID)
	f.OwnerID = parseOptionalID(&fe, "owner_id", c.Query("owner_id"))
	var curErr error
	if q := c.Query("currency"); q != "" {
		f.Currency, curErr = parseCurrency(&fe, "currency", q)
	}
	for key, values := range c.Request.URL.Query() {
		label, ok := strings.CutPrefix(key, "label.")
		if !ok {
			continue
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		if label == "" || len(values) != 1 {
			fe.add(key, "must name one label once, as label.KEY=VALUE")
			continue
		}
		checkQueryText(&fe, key, label, maxLabelKey)
		checkQueryText(&fe, key, values[0], maxLabelValue)
		f.Labels[label] = values[0]
	}
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	if curErr != nil {
		// An unsupported currency matches no account.
		c.JSON(http.StatusOK, listJSON[accountJSON]{Data: []accountJSON{}})
		return
	}
	if who.admin() {
		f.IncludeSystem = f.OwnerID == uuid.Nil
	} else {
		if f.OwnerID != uuid.Nil && f.OwnerID != who.ID {
			abortWithProblem(c, codeForbidden, "only an admin may list another user's accounts")
			return
		}
		f.OwnerID = who.ID
	}
	list, err := s.ledger.ListAccounts(c.Request.Context(), f, p)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toListJSON(list, toAccountJSON))
}

// visibleAccount loads the account named by the path's id if the caller may see it: its owner or an
// admin. Anything else, including an account that exists but is someone else's, is a 404.
func (s *Server) visibleAccount(c *gin.Context) (transfer.Account, bool) {
	var fe fieldErrors
	id := parseID(&fe, "id", c.Param("id"))
	if fe.err() != nil {
		abortWithProblem(c, transfer.CodeNotFound, "no account has this id")
		return transfer.Account{}, false
	}
	acct, err := s.ledger.Account(c.Request.Context(), id)
	if transfer.IsCode(err, transfer.CodeAccountNotFound) || (err == nil && !canSee(callerOf(c), acct)) {
		abortWithProblem(c, transfer.CodeNotFound, "no account "+id.String())
		return transfer.Account{}, false
	}
	if err != nil {
		abortWithError(c, err)
		return transfer.Account{}, false
	}
	return acct, true
}

// canSee reports whether the caller owns the account or is an admin.
func canSee(who caller, a transfer.Account) bool {
	return who.admin() || (a.Kind == transfer.AccountUser && a.OwnerID == who.ID)
}

func (s *Server) handleGetAccount(c *gin.Context) {
	acct, ok := s.visibleAccount(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, toAccountJSON(acct))
}

type updateAccountRequest struct {
	Status string `json:"status"`
}

// handleUpdateAccount changes an account's status; admins only.
func (s *Server) handleUpdateAccount(c *gin.Context) {
	if !callerOf(c).admin() {
		abortWithProblem(c, codeForbidden, "only an admin may change an account's status")
		return
	}
	acct, ok := s.visibleAccount(c)
	if !ok {
		return
	}
	var req updateAccountRequest
	if !decodeJSON(c, &req) {
		return
	}
	status := transfer.AccountStatus(req.Status)
	if !status.Valid() {
		abortWithError(c, fieldErrors{{Field: "status", Message: "must be active, frozen or closed"}})
		return
	}
	acct, err := s.ledger.SetAccountStatus(c.Request.Context(), callerOf(c).actor(), acct.ID, status)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toAccountJSON(acct))
}

// handleListEntries lists an account's journal, newest first.
func (s *Server) handleListEntries(c *gin.Context) {
	acct, ok := s.visibleAccount(c)
	if !ok {
		return
	}
	var fe fieldErrors
	p := parsePage(c, &fe)
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	list, err := s.ledger.ListEntries(c.Request.Context(), acct.ID, p)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toListJSON(list, toEntryJSON))
}

// parsePage reads ?limit= and ?cursor=. A missing limit takes the default; a bad one is a field
// error. The cursor is checked by the list it belongs to.
func parsePage(c *gin.Context, fe *fieldErrors) transfer.Page {
	p := transfer.Page{Cursor: c.Query("cursor")}
	if raw, ok := c.GetQuery("limit"); ok {
		n, err := parseLimit(raw)
		if err != nil {
			fe.add("limit", "must be an integer from 1 to 100")
		}
		p.Limit = n
	}
	if _, ok := c.GetQuery("cursor"); ok && p.Cursor == "" {
		fe.add("cursor", "must not be empty when given")
	}
	return p
}

func parseLimit(raw string) (int, error) {
	var n int
	for _, r := range raw {
		if r < '0' || r > '9' || n > transfer.MaxPageLimit {
			return 0, errBadLimit
		}
		n = n*10 + int(r-'0')
	}
	if n < 1 || n > transfer.MaxPageLimit {
		return 0, errBadLimit
	}
	return n, nil
}

var errBadLimit = fieldErrors{{Field: "limit", Message: "must be an integer from 1 to 100"}}
