package server

import (
	"net/http"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/transferd/transferd/transfer"
)

type createUserRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

// NewUser validates a sign-up and returns the user to store, its password hashed. The operator's
// `transferd users create` uses it too, so both paths apply the same rules.
func (a *Auth) NewUser(email, password, name string, role transfer.Role) (transfer.User, error) {
	if err := checkNewUser(email, password, name); err != nil {
		return transfer.User{}, err
	}
	hash, err := a.HashPassword(password)
	if err != nil {
		return transfer.User{}, err
	}
	return transfer.User{Email: strings.TrimSpace(email), Name: strings.TrimSpace(name), Role: role, PasswordHash: hash}, nil
}

// checkNewUser returns the field errors of a sign-up, or nil when it is valid.
func checkNewUser(email, password, name string) error {
	var fe fieldErrors
	email = strings.TrimSpace(email)
	if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email || len(email) > maxEmail {
		fe.add("email", "must be a plain email address such as ada@example.com")
	}
	switch {
	case utf8.RuneCountInString(password) < minPassword:
		fe.add("password", "must be at least 8 characters")
	case len(password) > maxPasswordBytes:
		fe.add("password", "must be at most 72 bytes")
	case strings.ContainsRune(password, 0):
		fe.add("password", "must not contain NUL characters")
	}
	checkText(&fe, "name", name, maxName)
	return fe.err()
}

// handleCreateUser signs a user up. Public sign-up only ever creates the role user. Sign-ups that
// pass validation are rate limited per client address (SignUpLimit) before the password is hashed.
func (s *Server) handleCreateUser(c *gin.Context) {
	var req createUserRequest
	if !decodeJSON(c, &req) {
		return
	}
	if err := checkNewUser(req.Email, req.Password, req.Name); err != nil {
		abortWithError(c, err)
		return
	}
	if !s.withinLimit(c, "sign-ups from this address", s.limits.signUpBuckets(addressKey(c))) {
		return
	}
	u, err := s.auth.NewUser(req.Email, req.Password, req.Name, transfer.RoleUser)
	if err != nil {
		abortWithError(c, err)
		return
	}
	u, err = s.ledger.CreateUser(c.Request.Context(), u)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.Header("Location", "/v1/me")
	c.JSON(http.StatusCreated, toUserJSON(u))
}

type tokenRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// handleCreateToken exchanges an email and password for a bearer token. A wrong email and a wrong
// password get the same answer in the same time. Attempts are rate limited per email and per client
// (SignInLimit) before the password is checked, whether or not the email is a user's.
func (s *Server) handleCreateToken(c *gin.Context) {
	var req tokenRequest
	if !decodeJSON(c, &req) {
		return
	}
	if !s.withinLimit(c, "sign-in attempts", s.limits.signInBuckets(addressKey(c), req.Email)) {
		return
	}
	var u transfer.User
	var err error
	// An email that no user could have (too long, or not text PostgreSQL can hold) is simply unknown.
	if len(req.Email) <= maxEmail && utf8.ValidString(req.Email) && !strings.ContainsRune(req.Email, 0) {
		u, err = s.ledger.UserByEmail(c.Request.Context(), req.Email)
	}
	if err != nil && !transfer.IsCode(err, transfer.CodeNotFound) {
		abortWithError(c, err)
		return
	}
	// A disabled user's password is still checked, so that the answer takes the same time, and
	// gets the same answer as a wrong one.
	if !s.auth.checkPassword(u.PasswordHash, req.Password) || u.Status == transfer.UserDisabled {
		abortWithProblem(c, codeInvalidCredentials, "the email or the password is wrong")
		return
	}
	token, ttl, err := s.auth.Issue(u)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, tokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int64(ttl.Seconds())})
}

// handleGetMe returns the caller.
func (s *Server) handleGetMe(c *gin.Context) {
	u, err := s.ledger.User(c.Request.Context(), callerOf(c).ID)
	if transfer.IsCode(err, transfer.CodeNotFound) {
		abortWithProblem(c, codeUnauthorized, "the token's user no longer exists")
		return
	}
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toUserJSON(u))
}

// handleListCurrencies lists the accepted currencies with their ISO 4217 exponents.
func (s *Server) handleListCurrencies(c *gin.Context) {
	c.JSON(http.StatusOK, transfer.Currencies())
}
