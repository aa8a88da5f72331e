package server

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

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
	codeUnavailable          transfer.Code = "unavailable"
)

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
	transfer.CodeAccountNotEmpty:     {http.StatusConflict, "Account not empty"},
	transfer.CodeExternalIDConflict:  {http.StatusConflict, "External id conflict"},
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
// code and message; anything else is logged and answered as a bare 500, so no SQL, stack or host
// name ever reaches a client.
func abortWithError(c *gin.Context, err error) {
	var fe fieldErrors
	if errors.As(err, &fe) {
		abortWithProblem(c, codeInvalidRequest, "the request has invalid fields", fe...)
		return
	}
	var te *transfer.Error
	if errors.As(err, &te) {
		if _, known := problems[te.Code]; known && te.Code != transfer.CodeInternal {
			abortWithProblem(c, te.Code, te.Message)
			return
		}
	}
	loggerFrom(c).ErrorContext(c.Request.Context(), "request failed", "err", err.Error())
	abortWithProblem(c, transfer.CodeInternal, "an internal error occurred; it has been logged with this request's id")
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
