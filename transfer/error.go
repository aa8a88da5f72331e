package transfer

import (
	"errors"
	"fmt"
)

// Code is a stable snake_case error code that clients can switch on. Codes never change meaning; the
// HTTP layer maps each one to a status and a problem type in one table.
type Code string

// The codes of business outcomes and rejected requests.
const (
	CodeInsufficientFunds   Code = "insufficient_funds"
	CodeAccountInactive     Code = "account_inactive"
	CodeAccountNotFound     Code = "account_not_found"
	CodeCurrencyMismatch    Code = "currency_mismatch"
	CodeUnsupportedCurrency Code = "unsupported_currency"
	CodeSameAccount         Code = "same_account"
	CodeIdempotencyConflict Code = "idempotency_conflict"
	CodeNotCancellable      Code = "not_cancellable"
	CodeNotCapturable       Code = "not_capturable"
	CodeCaptureExceedsHold  Code = "capture_exceeds_hold"
	// CodeHoldExpired is the failure code of a manual transfer whose hold expired uncaptured.
	CodeHoldExpired        Code = "hold_expired"
	CodeAccountNotEmpty    Code = "account_not_empty"
	CodeExternalIDConflict Code = "external_id_conflict"
	CodeTooManyEndpoints   Code = "too_many_endpoints"
	CodeEndpointDisabled   Code = "endpoint_disabled"
	CodeEmailTaken         Code = "email_taken"
	CodeInvalidAmount      Code = "invalid_amount"
	CodeInvalidCursor      Code = "invalid_cursor"
	CodeInvalidInput       Code = "invalid_input"
	CodeNotFound           Code = "not_found"
	// CodeTransferClosed means a step was asked of a transfer that has already ended, for example a
	// reserve arriving after the transfer was cancelled.
	CodeTransferClosed Code = "transfer_closed"
	// CodeInternal is an unexpected failure; its message is never shown to clients.
	CodeInternal Code = "internal"
)

// Error is a business error with a stable code and a human message.
type Error struct {
	Code    Code
	Message string
}

// Error implements error.
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or CodeInternal when there is none.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsCode reports whether err carries the given code.
func IsCode(err error, code Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
