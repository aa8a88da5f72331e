// Package server is transferd's HTTP API, on Gin: every route of the spec's api.md, with bearer-token
// authentication, ownership checks, strict JSON decoding and RFC 9457 problem+json errors. It reads
// and writes through two small interfaces, Ledger and Transfers, that cmd/transferd satisfies with
// the ledger and the service.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/transferd/transferd/transfer"
)

// Ledger is what the API reads and writes directly.
type Ledger interface {
	// CreateUser stores a user whose password is already hashed; CodeEmailTaken when the email is
	// registered in any case.
	CreateUser(ctx context.Context, u transfer.User) (transfer.User, error)
	// UserByEmail finds a user case-insensitively; CodeNotFound when there is none.
	UserByEmail(ctx context.Context, email string) (transfer.User, error)
	// User finds a user by id; CodeNotFound when there is none.
	User(ctx context.Context, id uuid.UUID) (transfer.User, error)
	// CreateAccount creates an account, or returns the owner's account with the same external id and
	// body with created = false; CodeExternalIDConflict for the same external id with another body,
	// CodeNotFound for an unknown owner.
	CreateAccount(ctx context.Context, in transfer.NewAccount) (transfer.Account, bool, error)
	// Account returns an account; CodeAccountNotFound when there is none.
	Account(ctx context.Context, id uuid.UUID) (transfer.Account, error)
	// ListAccounts returns a page of accounts, newest first; CodeInvalidCursor, CodeInvalidInput.
	ListAccounts(ctx context.Context, f transfer.AccountFilter, p transfer.Page) (transfer.List[transfer.Account], error)
	// SetAccountStatus changes an account's status; CodeAccountNotEmpty when closing an account that
	// holds or awaits money, CodeAccountNotFound, CodeInvalidInput for the system account.
	SetAccountStatus(ctx context.Context, actor transfer.Actor, id uuid.UUID, s transfer.AccountStatus) (transfer.Account, error)
	// ListEntries returns a page of an account's journal, newest first; CodeInvalidCursor,
	// CodeInvalidInput.
	ListEntries(ctx context.Context, accountID uuid.UUID, p transfer.Page) (transfer.List[transfer.Entry], error)
	// Transfer returns a transfer; CodeNotFound when there is none.
	Transfer(ctx context.Context, id uuid.UUID) (transfer.Transfer, error)
	// ListTransfers returns a page of transfers, newest first; CodeInvalidCursor, CodeInvalidInput.
	ListTransfers(ctx context.Context, f transfer.TransferFilter, p transfer.Page) (transfer.List[transfer.Transfer], error)
	Access
	Webhooks
}

// Webhooks is what the API needs of the ledger for events and webhook endpoints.
type Webhooks interface {
	// Event returns an event, of a transfer touching an account of visibleTo unless it is
	// uuid.Nil; CodeNotFound otherwise.
	Event(ctx context.Context, id, visibleTo uuid.UUID) (transfer.Event, error)
	// Events returns a page of events, newest first; CodeInvalidCursor, CodeInvalidInput.
	Events(ctx context.Context, f transfer.EventFilter, p transfer.Page) (transfer.List[transfer.Event], error)
	// CreateEndpoint records an endpoint; with an Idempotency-Key used before by the user, the
	// endpoint it created (created = false), or CodeIdempotencyConflict.
	CreateEndpoint(ctx context.Context, e transfer.NewEndpoint) (endpoint transfer.WebhookEndpoint, created bool, err error)
	// Endpoint returns one of the user's endpoints; CodeNotFound.
	Endpoint(ctx context.Context, userID, id uuid.UUID) (transfer.WebhookEndpoint, error)
	// Endpoints returns a page of the user's endpoints, newest first.
	Endpoints(ctx context.Context, userID uuid.UUID, p transfer.Page) (transfer.List[transfer.WebhookEndpoint], error)
	// UpdateEndpoint changes one of the user's endpoints; CodeNotFound.
	UpdateEndpoint(ctx context.Context, actor transfer.Actor, userID, id uuid.UUID, patch transfer.EndpointPatch) (transfer.WebhookEndpoint, error)
	// DeleteEndpoint deletes one of the user's endpoints; CodeNotFound.
	DeleteEndpoint(ctx context.Context, actor transfer.Actor, userID, id uuid.UUID) error
	// RotateSecret gives one of the user's endpoints a new secret (rotated = false for a retry
	// with the same Idempotency-Key); CodeNotFound, CodeIdempotencyConflict.
	RotateSecret(ctx context.Context, actor transfer.Actor, userID, id uuid.UUID, secret []byte, idempotencyKey string) (endpoint transfer.WebhookEndpoint, rotated bool, err error)
	// Attempts returns a page of an endpoint's delivery log, newest first.
	Attempts(ctx context.Context, endpointID uuid.UUID, p transfer.Page) (transfer.List[transfer.DeliveryAttempt], error)
	// Resend enqueues an event again to one of the user's endpoints; CodeNotFound for an endpoint
	// or an event the user may not see.
	Resend(ctx context.Context, userID, endpointID, eventID uuid.UUID, admin bool) (transfer.Delivery, error)
}

// Access is what the API needs of the ledger to tell who may do what, from one request to the
// next, and to record who did it.
type Access interface {
	// Credential returns the user of a bearer token as they are now, and whether the token was
	// revoked; CodeNotFound for an unknown user.
	Credential(ctx context.Context, userID, tokenID uuid.UUID) (transfer.Credential, error)
	// KeyAccess returns the API key with the hash, and its user as they are now, and records the
	// key's use; CodeNotFound when there is none.
	KeyAccess(ctx context.Context, hash []byte) (transfer.KeyAccess, error)
	// CreateAPIKey records a key; with an Idempotency-Key used before by the user, the key it
	// created (created = false), or CodeIdempotencyConflict for another request.
	CreateAPIKey(ctx context.Context, k transfer.NewAPIKey) (key transfer.APIKey, created bool, err error)
	// APIKeys returns a page of a user's keys, newest first; CodeInvalidCursor, CodeInvalidInput.
	APIKeys(ctx context.Context, userID uuid.UUID, p transfer.Page) (transfer.List[transfer.APIKey], error)
	// RevokeAPIKey revokes one of the user's keys (again: no change); CodeNotFound for a key that
	// is not theirs.
	RevokeAPIKey(ctx context.Context, actor transfer.Actor, userID, id uuid.UUID) (transfer.APIKey, error)
	// RevokeToken revokes a bearer token until it expires.
	RevokeToken(ctx context.Context, actor transfer.Actor, userID, tokenID uuid.UUID, expiresAt time.Time) error
	// UpdateUser changes a user's status or role; CodeNotFound, CodeInvalidInput.
	UpdateUser(ctx context.Context, actor transfer.Actor, id uuid.UUID, patch transfer.UserPatch) (transfer.User, error)
	// Users returns a page of every user, newest first; CodeInvalidCursor, CodeInvalidInput.
	Users(ctx context.Context, p transfer.Page) (transfer.List[transfer.User], error)
	// AuditLog returns a page of the audit log, newest first; CodeInvalidCursor, CodeInvalidInput.
	AuditLog(ctx context.Context, p transfer.Page) (transfer.List[transfer.AuditEntry], error)
	// RecordAudit records a request (a transfer's cancel or capture) before it is sent.
	RecordAudit(ctx context.Context, actor transfer.Actor, action, subjectType string, subjectID uuid.UUID, detail map[string]any) error
}

// Limits keeps the token buckets of the rate limits where every API process shares them.
type Limits interface {
	// TakeTokens takes one token from each of the buckets, or none when any of them is empty, and
	// then returns how long until every one of them holds a token again; 0 when it took them. An
	// error means nothing was taken and the attempt must not go on.
	TakeTokens(ctx context.Context, buckets []transfer.Bucket) (time.Duration, error)
}

// Transfers runs transfers' sagas.
type Transfers interface {
	// Submit records a transfer and starts its saga; for an id that exists with the same request, or
	// an IdempotencyKey that the same caller used for the same request, it returns that transfer
	// with created = false. CodeIdempotencyConflict, CodeAccountNotFound,
	// CodeSameAccount, CodeCurrencyMismatch and CodeUnsupportedCurrency reject the request.
	Submit(ctx context.Context, r transfer.Request) (t transfer.Transfer, created bool, err error)
	// Wait waits up to d for the transfer to end and returns its state then; CodeNotFound.
	Wait(ctx context.Context, id uuid.UUID, d time.Duration) (transfer.Transfer, error)
	// Cancel cancels a transfer before its debit; CodeNotCancellable after it, CodeNotFound.
	Cancel(ctx context.Context, id uuid.UUID, reason string) (transfer.Transfer, error)
	// Capture captures a manual transfer's hold, all of it (amount 0) or part, and returns the
	// transfer once the ledger captured it; CodeNotCapturable, CodeCaptureExceedsHold,
	// CodeAccountInactive, CodeNotFound.
	Capture(ctx context.Context, id uuid.UUID, amount int64) (transfer.Transfer, error)
}

// Check is a readiness check of one dependency: nil when it answers.
type Check func(ctx context.Context) error

// Config is what a Server is built from.
type Config struct {
	Ledger    Ledger
	Transfers Transfers
	Auth      *Auth
	Log       *slog.Logger
	// Ready names the dependencies /readyz checks, such as "postgres" and "temporal".
	Ready map[string]Check
	// Metrics is where the API registers its metrics; Gatherer serves /metrics. A nil pair gets a
	// fresh registry.
	Metrics  prometheus.Registerer
	Gatherer prometheus.Gatherer
	// MaxWait bounds ?wait= on transfer creation; default 30s.
	MaxWait time.Duration
	// Limits keeps the buckets of SignInLimit and SignUpLimit, shared by every API process on it
	// (cmd/transferd passes the ledger). Without it nothing is rate limited.
	Limits Limits
	// SignInLimit slows password guessing on POST /v1/auth/token; the zero value takes its defaults.
	SignInLimit SignInLimit
	// SignUpLimit slows sign-ups on POST /v1/users; the zero value takes its defaults.
	SignUpLimit SignUpLimit
	// AllowPrivateWebhooks lets webhook endpoints be plain http and on loopback, private or
	// link-local addresses (transferd dev's local receivers); off, such URLs are refused.
	AllowPrivateWebhooks bool
	// TrustedProxies are the addresses or CIDRs of reverse proxies whose X-Forwarded-For and
	// X-Real-IP name the client. By default none is trusted and the client is the TCP peer, so that
	// a client cannot pick the address that the rate limits count it under. An invalid entry is logged
	// and trusts nothing.
	TrustedProxies []string
	// MaxSubmits bounds the submissions (POST /v1/transfers, deposits, withdrawals) in progress at
	// once, default 64; one beyond it waits up to SubmitQueueWait (default 1 s) for a slot, then is
	// answered 503 unavailable with Retry-After, having changed nothing. The waiting of ?wait= does
	// not hold a slot.
	MaxSubmits      int
	SubmitQueueWait time.Duration
}

// Server is the HTTP API. Its Handler is safe for concurrent use.
type Server struct {
	ledger    Ledger
	transfers Transfers
	auth      *Auth
	log       *slog.Logger
	ready     map[string]Check
	gatherer  prometheus.Gatherer
	metrics   *httpMetrics
	maxWait   time.Duration
	limits    *limits
	admission *admission
	// allowPrivateWebhooks is Config.AllowPrivateWebhooks.
	allowPrivateWebhooks bool
	engine               *gin.Engine
}

// New builds the API's handler from cfg.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Metrics == nil || cfg.Gatherer == nil {
		reg := prometheus.NewRegistry()
		cfg.Metrics, cfg.Gatherer = reg, reg
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 30 * time.Second
	}
	s := &Server{ledger: cfg.Ledger, transfers: cfg.Transfers, auth: cfg.Auth, log: cfg.Log, ready: cfg.Ready,
		gatherer: cfg.Gatherer, metrics: newHTTPMetrics(cfg.Metrics), maxWait: cfg.MaxWait,
		limits: newLimits(cfg.Limits, cfg.SignInLimit, cfg.SignUpLimit), admission: newAdmission(cfg.MaxSubmits, cfg.SubmitQueueWait, cfg.Metrics),
		allowPrivateWebhooks: cfg.AllowPrivateWebhooks}
	s.engine = s.routes()
	if cfg.Limits == nil && cfg.Log != nil {
		cfg.Log.Warn("no rate-limit store: sign-in and sign-up are not rate limited")
	}
	if err := s.engine.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		cfg.Log.Error("invalid trusted proxies: trusting none", "err", err.Error())
		_ = s.engine.SetTrustedProxies(nil)
	}
	return s
}

// Handler returns the API's http.Handler.
func (s *Server) Handler() http.Handler { return s.engine }

// Routes lists every route as "METHOD /path/{param}", for the OpenAPI consistency test.
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.engine.Routes() {
		out = append(out, r.Method+" "+openAPIPath(r.Path))
	}
	return out
}

// The limits of NewHTTPServer on slow and greedy clients.
const (
	// readHeaderTimeout bounds the arrival of a request's headers, against slowloris.
	readHeaderTimeout = 5 * time.Second
	// readTimeout bounds the arrival of a whole request, body included (at most maxBodyBytes).
	readTimeout = 15 * time.Second
	// writeMargin is what the write timeout leaves for the handler's own work and the answer.
	writeMargin = 15 * time.Second
	// idleTimeout bounds how long a kept-alive connection waits for its next request.
	idleTimeout = 120 * time.Second
	// maxHeaderBytes bounds the request line and headers; a larger one is answered 431 by net/http.
	maxHeaderBytes = 64 << 10
)

// NewHTTPServer wraps the handler in an http.Server with timeouts that bound slow clients. The
// write timeout runs from the end of the headers, so it covers the reading of the body as well as a
// ?wait= of up to MaxWait, and leaves a margin after both.
func (s *Server) NewHTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s.engine,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      readTimeout + s.maxWait + writeMargin,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}
