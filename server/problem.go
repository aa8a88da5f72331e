package server

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"

	"github.com/transferd/transferd/transfer"
)

// The codes the HTTP layer adds to the domain's codes in package transfer.
const (
	codeMalformedJSON        transfer.Code = "malformed_json"
	codeInvalidRequest       transfer.Code = "invalid_request"
	codeUnauthorized         transfer.Code = "unauthorized"
	codeInvalidCredentials   transfer.Code = "invalid_credentials"
	codeForbidden            transfer.Code = "forbidden"
	codeRouteNotFound        transfer.Code = "route_not_found"
	codeMethodNotAllowed     transfer.Code = "method_not_allowed"
	codeRequestTimeout       transfer.Code = "request_timeout"
	codePayloadTooLarge      transfer.Code = "payload_too_large"
	codeUnsupportedMediaType transfer.Code = "unsupported_media_type"
	codeTooManyRequests      transfer.Code = "too_many_requests"
	codeInvalidWebhookURL    transfer.Code = "invalid_webhook_url"
	// codeUnavailable is a dependency outage: PostgreSQL or Temporal did not answer. The request may
	// be sent again, after Retry-After.
	codeUnavailable transfer.Code = "unavailable"
)

// outageRetryAfter is the Retry-After of a 503 unavailable: long enough not to hammer a dependency
// that is coming back, short next to the restart of PostgreSQL or Temporal it usually waits for.
const outageRetryAfter = 5 * time.Second

// problemTypeBase prefixes each code to make the problem's type URI.
const problemTypeBase = "https://transferd.dev/problems/"

// problemKind is how one code is answered: its HTTP status and its title.
type problemKind struct {
	status int
	title  string
}

// problems is the one table from stable error codes to HTTP statuses and titles. A code missing here
// is answered as an internal error.
var problems = map[transfer.Code]problemKind{
	codeMalformedJSON:                {http.StatusBadRequest, "Malformed JSON"},
	codeInvalidRequest:               {http.StatusBadRequest, "Invalid request"},
	transfer.CodeInvalidInput:        {http.StatusBadRequest, "Invalid request"},
	transfer.CodeInvalidAmount:       {http.StatusBadRequest, "Invalid amount"},
	transfer.CodeInvalidCursor:       {http.StatusBadRequest, "Invalid cursor"},
	codeUnauthorized:                 {http.StatusUnauthorized, "Unauthorized"},
	codeInvalidCredentials:           {http.StatusUnauthorized, "Invalid credentials"},
	codeForbidden:                    {http.StatusForbidden, "Forbidden"},
	transfer.CodeNotFound:            {http.StatusNotFound, "Not found"},
	codeRouteNotFound:                {http.StatusNotFound, "Not found"},
	codeMethodNotAllowed:             {http.StatusMethodNotAllowed, "Method not allowed"},
	transfer.CodeEmailTaken:          {http.StatusConflict, "Email taken"},
	transfer.CodeIdempotencyConflict: {http.StatusConflict, "Idempotency conflict"},
	transfer.CodeNotCancellable:      {http.StatusConflict, "Not cancellable"},
	transfer.CodeNotCapturable:       {http.StatusConflict, "Not capturable"},
	transfer.CodeCaptureExceedsHold:  {http.StatusUnprocessableEntity, "Capture exceeds hold"},
	transfer.CodeAccountNotEmpty:     {http.StatusConflict, "Account not empty"},
	transfer.CodeExternalIDConflict:  {http.StatusConflict, "External id conflict"},
	transfer.CodeTooManyEndpoints:    {http.StatusConflict, "Too many endpoints"},
	transfer.CodeEndpointDisabled:    {http.StatusConflict, "Endpoint disabled"},
	codeRequestTimeout:               {http.StatusRequestTimeout, "Request timeout"},
	codePayloadTooLarge:              {http.StatusRequestEntityTooLarge, "Payload too large"},
	codeUnsupportedMediaType:         {http.StatusUnsupportedMediaType, "Unsupported media type"},
	transfer.CodeAccountNotFound:     {http.StatusUnprocessableEntity, "Account not found"},
	transfer.CodeSameAccount:         {http.StatusUnprocessableEntity, "Same account"},
	transfer.CodeCurrencyMismatch:    {http.StatusUnprocessableEntity, "Currency mismatch"},
	transfer.CodeUnsupportedCurrency: {http.StatusUnprocessableEntity, "Unsupported currency"},
	transfer.CodeInsufficientFunds:   {http.StatusUnprocessableEntity, "Insufficient funds"},
	transfer.CodeAccountInactive:     {http.StatusUnprocessableEntity, "Account inactive"},
	codeTooManyRequests:              {http.StatusTooManyRequests, "Too many requests"},
	codeInvalidWebhookURL:            {http.StatusUnprocessableEntity, "Invalid webhook URL"},
	transfer.CodeInternal:            {http.StatusInternalServerError, "Internal error"},
	codeUnavailable:                  {http.StatusServiceUnavailable, "Service unavailable"},
}

// Problem is an RFC 9457 problem detail, with the stable code and field errors of the API contract.
type Problem struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail,omitempty"`
	Instance string       `json:"instance,omitempty"`
	Code     string       `json:"code"`
	Errors   []FieldError `json:"errors,omitempty"`
}

// FieldError is one problem with one field of the request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// fieldErrors is a validation failure listing every bad field; it answers 400 invalid_request.
type fieldErrors []FieldError

func (f fieldErrors) Error() string {
	if len(f) == 0 {
		return "invalid request"
	}
	return f[0].Field + ": " + f[0].Message
}

// add records a problem with a field.
func (f *fieldErrors) add(field, format string) {
	*f = append(*f, FieldError{Field: field, Message: format})
}

// err returns f as an error, or nil when there is no problem.
func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return f
}

// abortWithError answers err as a problem and stops the handler chain. Business errors keep their
// code and message; a dependency outage is a 503 with Retry-After; anything else is a bug, answered
// as a bare 500. Both are logged, and no SQL, stack or host name ever reaches a client.
func abortWithError(c *gin.Context, err error) {
	var fe fieldErrors
	if errors.As(err, &fe) {
		abortWithProblem(c, codeInvalidRequest, "the request has invalid fields", fe...)
		return
	}
	// The ledger's own check of a new transfer's (or key's) times, by its clock.
	var we *transfer.WindowError
	if errors.As(err, &we) {
		abortWithProblem(c, codeInvalidRequest, "the request has invalid fields", windowErrors(we.Problems)...)
		return
	}
	var te *transfer.Error
	if errors.As(err, &te) {
		if _, known := problems[te.Code]; known && te.Code != transfer.CodeInternal {
			abortWithProblem(c, te.Code, te.Message)
			return
		}
	}
	if dependencyDown(err) {
		loggerFrom(c).WarnContext(c.Request.Context(), "dependency unavailable", "err", err.Error())
		c.Header("Retry-After", strconv.Itoa(int(outageRetryAfter.Seconds())))
		abortWithProblem(c, codeUnavailable, "a service this API depends on did not answer; send the request again later "+
			"(a transfer with the same id or Idempotency-Key, so that it is made at most once)")
		return
	}
	loggerFrom(c).ErrorContext(c.Request.Context(), "request failed", "err", err.Error())
	abortWithProblem(c, transfer.CodeInternal, "an internal error occurred; it has been logged with this request's id")
}

// dependencyDown reports whether err says that PostgreSQL or Temporal did not answer, or answered
// that it cannot serve now, rather than that the API has a bug. The ledger and the service wrap the
// errors of their drivers with %w, so the drivers' own types are still in the chain:
//   - a network failure of any kind (refused, reset, unreachable, a timeout): a net.Error, as pgx's
//     connection errors wrap it;
//   - a deadline that ran out: the request's context has none, so it is a dependency's own timeout,
//     such as pgx's connect timeout or a Temporal call's;
//   - database/sql's dead connections;
//   - PostgreSQL's SQLSTATE classes 08 (connection exception) and 53 (insufficient resources, such
//     as too many connections), a server shutting down or starting (57P01-57P03) and a statement
//     timeout (57014); read through the SQLState method, so that the driver's types stay in ledger;
//   - Temporal's unavailable, deadline exceeded, resource exhausted (rate limits) and namespace
//     unavailable.
func dependencyDown(err error) bool {
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		state := pg.SQLState()
		return strings.HasPrefix(state, "08") || strings.HasPrefix(state, "53") ||
			state == "57P01" || state == "57P02" || state == "57P03" || state == "57014"
	}
	var (
		unavailable          *serviceerror.Unavailable
		deadline             *serviceerror.DeadlineExceeded
		exhausted            *serviceerror.ResourceExhausted
		namespaceUnavailable *serviceerror.NamespaceUnavailable
	)
	return errors.As(err, &unavailable) || errors.As(err, &deadline) || errors.As(err, &exhausted) ||
		errors.As(err, &namespaceUnavailable)
}

// abortWithProblem answers a problem with the code's status and stops the handler chain.
func abortWithProblem(c *gin.Context, code transfer.Code, detail string, fields ...FieldError) {
	kind, ok := problems[code]
	if !ok {
		kind = problems[transfer.CodeInternal]
	}
	p := Problem{Type: problemTypeBase + string(code), Title: kind.title, Status: kind.status, Detail: detail,
		Instance: c.Request.URL.Path, Code: string(code), Errors: fields}
	// Gin's JSON renderer keeps a content type that is already set.
	c.Header("Content-Type", "application/problem+json")
	c.AbortWithStatusJSON(kind.status, p)
}

// loggerFrom returns the request's logger, which carries its request id.
func loggerFrom(c *gin.Context) *slog.Logger {
	if l, ok := c.Get(ctxLogger); ok {
		return l.(*slog.Logger)
	}
	return slog.Default()
}
