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

// claims are a token's contents.
type claims struct {
	Role string `json:"role"`
	jwt.RegisteredClaims
}

// Issue returns a signed token for the user and its lifetime.
func (a *Auth) Issue(u transfer.User) (string, time.Duration, error) {
	now := a.now()
	c := claims{Role: string(u.Role), RegisteredClaims: jwt.RegisteredClaims{
		Issuer: tokenIssuer, Subject: u.ID.String(), ID: uuid.NewString(),
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(a.ttl)),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.secret)
	if err != nil {
		return "", 0, fmt.Errorf("server: sign token: %w", err)
	}
	return s, a.ttl, nil
}

// caller is who a request comes from.
type caller struct {
	ID   uuid.UUID
	Role transfer.Role
}

func (c caller) admin() bool { return c.Role == transfer.RoleAdmin }

// verify checks a token's signature, algorithm, issuer and expiry and returns its caller.
func (a *Auth) verify(token string) (caller, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithIssuer(tokenIssuer),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(a.now))
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return caller{}, errors.New("the token has expired; get a new one from POST /v1/auth/token")
		}
		return caller{}, errors.New("the token is not valid")
	}
	id, err := uuid.Parse(c.Subject)
	role := transfer.Role(c.Role)
	if err != nil || (role != transfer.RoleUser && role != transfer.RoleAdmin) {
		return caller{}, errors.New("the token is not valid")
	}
	return caller{ID: id, Role: role}, nil
}

const ctxCaller = "transferd.caller"

// requireAuth answers 401 unless the request has a valid bearer token, and records its caller.
func (a *Auth) requireAuth(c *gin.Context) {
	h := c.GetHeader("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if h == "" {
		c.Header("WWW-Authenticate", `Bearer realm="transferd"`)
		abortWithProblem(c, codeUnauthorized, "send Authorization: Bearer <token>; get a token from POST /v1/auth/token")
		return
	}
	// A second Authorization header is refused rather than ignored: a proxy in front that read the
	// other one would disagree with this check about who is calling.
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" || len(c.Request.Header.Values("Authorization")) > 1 {
		c.Header("WWW-Authenticate", `Bearer realm="transferd", error="invalid_request"`)
		abortWithProblem(c, codeUnauthorized, "send one Authorization header, Bearer <token>")
		return
	}
	who, err := a.verify(strings.TrimSpace(token))
	if err != nil {
		c.Header("WWW-Authenticate", `Bearer realm="transferd", error="invalid_token"`)
		abortWithProblem(c, codeUnauthorized, err.Error())
		return
	}
	c.Set(ctxCaller, who)
	c.Next()
}

// callerOf returns the authenticated caller of a request behind requireAuth.
func callerOf(c *gin.Context) caller {
	v, _ := c.Get(ctxCaller)
	who, _ := v.(caller)
	return who
}
