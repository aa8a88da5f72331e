package server

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/transferd/transferd/transfer"
)

// tokenIssuer is the iss claim of transferd's tokens.
const tokenIssuer = "transferd"

// Auth issues and checks bearer tokens (JWT, HS256) and hashes passwords with bcrypt.
type Auth struct {
	secret   []byte
	ttl      time.Duration
	cost     int
	now      func() time.Time
	fakeHash []byte
}

// NewAuth returns an Auth signing with secret (at least 32 bytes), issuing tokens valid for ttl and
// hashing passwords at the bcrypt cost (bcrypt.DefaultCost when 0).
func NewAuth(secret []byte, ttl time.Duration, cost int) (*Auth, error) {
	if len(secret) < 32 {
		return nil, errors.New("server: the JWT secret must be at least 32 bytes")
	}
	if ttl <= 0 {
		ttl = time.Hour
	}
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	a := &Auth{secret: secret, ttl: ttl, cost: cost, now: time.Now}
	// fakeHash is compared against when an email is unknown, so that a wrong email and a wrong
	// password take the same time.
	h, err := bcrypt.GenerateFromPassword([]byte("not a real password"), cost)
	if err != nil {
		return nil, err
	}
	a.fakeHash = h
	return a, nil
}

// HashPassword returns the bcrypt hash of a password.
func (a *Auth) HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), a.cost)
	if err != nil {
		return "", fmt.Errorf("server: hash password: %w", err)
	}
	return string(h), nil
}

// checkPassword reports whether password matches hash; with an empty hash it still spends the time
// of a comparison and reports false.
func (a *Auth) checkPassword(hash, password string) bool {
	if hash == "" {
		_ = bcrypt.CompareHashAndPassword(a.fakeHash, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// claims are a token's contents. Role is informational: every request reads the user's current
// role from the ledger. Gen is the user's token generation when it was issued (absent, 0, in tokens
// of releases before it).
type claims struct {
	Role string `json:"role"`
	Gen  int64  `json:"gen,omitempty"`
	jwt.RegisteredClaims
}

// Issue returns a signed token for the user and its lifetime.
func (a *Auth) Issue(u transfer.User) (string, time.Duration, error) {
	now := a.now()
	c := claims{Role: string(u.Role), Gen: u.TokenGeneration, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: tokenIssuer, Subject: u.ID.String(), ID: uuid.NewString(),
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(a.ttl)),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.secret)
	if err != nil {
		return "", 0, fmt.Errorf("server: sign token: %w", err)
	}
	return s, a.ttl, nil
}

// caller is who a request comes from, as the ledger knows them at the time of the request.
type caller struct {
	ID   uuid.UUID
	Role transfer.Role
	// KeyID and ReadOnly describe the API key the request was sent with, if any.
	KeyID    uuid.UUID
	ReadOnly bool
	// TokenID and TokenExpires describe the bearer token the request was sent with, if any.
	TokenID      uuid.UUID
	TokenExpires time.Time
}

func (c caller) admin() bool { return c.Role == transfer.RoleAdmin }

// actor is the caller as the audit log records them.
func (c caller) actor() transfer.Actor { return transfer.Actor{UserID: c.ID, APIKeyID: c.KeyID} }

// token is what a valid token's signature vouches for.
type token struct {
	UserID  uuid.UUID
	ID      uuid.UUID
	Gen     int64
	Expires time.Time
}

// verify checks a token's signature, algorithm, issuer and expiry and returns what it says. Whether
// it still holds (revoked, user disabled) is the ledger's to say.
func (a *Auth) verify(raw string) (token, error) {
	var c claims
	_, err := jwt.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithIssuer(tokenIssuer),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(a.now))
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return token{}, errors.New("the token has expired; get a new one from POST /v1/auth/token")
		}
		return token{}, errors.New("the token is not valid")
	}
	id, err := uuid.Parse(c.Subject)
	tid, terr := uuid.Parse(c.ID)
	if err != nil || terr != nil || c.Gen < 0 || c.ExpiresAt == nil {
		return token{}, errors.New("the token is not valid")
	}
	return token{UserID: id, ID: tid, Gen: c.Gen, Expires: c.ExpiresAt.Time}, nil
}

const ctxCaller = "transferd.caller"

// errRefused is a credential that was valid once and is not any more, or never was: 401.
type errRefused string

func (e errRefused) Error() string { return string(e) }

// requireAuth answers 401 unless the request has a bearer token or API key that holds now, by the
// ledger (not revoked, not expired, its user not disabled), and records its caller with the user's
// current role. A read-only key gets 403 on every method that may change something.
func (s *Server) requireAuth(c *gin.Context) {
	h := c.GetHeader("Authorization")
	scheme, credential, ok := strings.Cut(h, " ")
	if h == "" {
		c.Header("WWW-Authenticate", `Bearer realm="transferd"`)
		abortWithProblem(c, codeUnauthorized, "send Authorization: Bearer <token>; get a token from POST /v1/auth/token")
		return
	}
	// A second Authorization header is refused rather than ignored: a proxy in front that read the
	// other one would disagree with this check about who is calling.
	credential = strings.TrimSpace(credential)
	if !ok || !strings.EqualFold(scheme, "Bearer") || credential == "" || len(c.Request.Header.Values("Authorization")) > 1 {
		c.Header("WWW-Authenticate", `Bearer realm="transferd", error="invalid_request"`)
		abortWithProblem(c, codeUnauthorized, "send one Authorization header, Bearer <token>")
		return
	}
	var who caller
	var err error
	if looksLikeAPIKey(credential) {
		who, err = s.keyCaller(c, credential)
	} else {
		who, err = s.tokenCaller(c, credential)
	}
	var refused errRefused
	if errors.As(err, &refused) {
		c.Header("WWW-Authenticate", `Bearer realm="transferd", error="invalid_token"`)
		abortWithProblem(c, codeUnauthorized, refused.Error())
		return
	}
	if err != nil {
		abortWithError(c, err)
		return
	}
	if who.ReadOnly && !readOnlyMethod(c.Request.Method) && c.FullPath() != revokePath {
		abortWithProblem(c, codeForbidden, "this API key is read-only: it may only read")
		return
	}
	c.Set(ctxCaller, who)
	c.Next()
}

// readOnlyMethod reports whether a request with the method changes nothing.
func readOnlyMethod(m string) bool {
	return m == "GET" || m == "HEAD" || m == "OPTIONS"
}

// tokenCaller checks a bearer token's signature, then asks the ledger whether it still holds.
func (s *Server) tokenCaller(c *gin.Context, raw string) (caller, error) {
	tok, err := s.auth.verify(raw)
	if err != nil {
		return caller{}, errRefused(err.Error())
	}
	cred, err := s.ledger.Credential(c.Request.Context(), tok.UserID, tok.ID)
	switch {
	case transfer.IsCode(err, transfer.CodeNotFound):
		return caller{}, errRefused("the token's user no longer exists")
	case err != nil:
		return caller{}, err
	case cred.User.Status != transfer.UserActive:
		return caller{}, errRefused("the user is disabled")
	case cred.TokenRevoked || tok.Gen != cred.User.TokenGeneration:
		return caller{}, errRefused("the token was revoked; get a new one from POST /v1/auth/token")
	}
	return caller{ID: cred.User.ID, Role: cred.User.Role, TokenID: tok.ID, TokenExpires: tok.Expires}, nil
}

// keyCaller finds an API key by its hash and checks that it and its user still hold.
func (s *Server) keyCaller(c *gin.Context, key string) (caller, error) {
	access, err := s.ledger.KeyAccess(c.Request.Context(), hashAPIKey(key))
	switch {
	case transfer.IsCode(err, transfer.CodeNotFound):
		return caller{}, errRefused("the API key is not valid")
	case err != nil:
		return caller{}, err
	case access.Key.RevokedAt != nil:
		return caller{}, errRefused("the API key was revoked")
	case !access.Key.Usable(s.auth.now()):
		return caller{}, errRefused("the API key has expired")
	case access.User.Status != transfer.UserActive:
		return caller{}, errRefused("the user is disabled")
	}
	return caller{ID: access.User.ID, Role: access.User.Role, KeyID: access.Key.ID, ReadOnly: access.Key.ReadOnly}, nil
}

// callerOf returns the authenticated caller of a request behind requireAuth.
func callerOf(c *gin.Context) caller {
	v, _ := c.Get(ctxCaller)
	who, _ := v.(caller)
	return who
}
