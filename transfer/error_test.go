package transfer

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrorf(t *testing.T) {
	err := Errorf(CodeInsufficientFunds, "need %d more", 5)
	if err.Code != CodeInsufficientFunds {
		t.Errorf("Code = %q, want %q", err.Code, CodeInsufficientFunds)
	}
	if want := "need 5 more"; err.Message != want {
		t.Errorf("Message = %q, want %q", err.Message, want)
	}
	if want := "insufficient_funds: need 5 more"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestErrorCodeAndIsCode(t *testing.T) {
	base := Errorf(CodeAccountInactive, "account is frozen")
	tests := []struct {
		name string
		err  error
		want Code
	}{
		{"bare", base, CodeAccountInactive},
		{"wrapped once", fmt.Errorf("ledger: reserve: %w", base), CodeAccountInactive},
		{"wrapped twice", fmt.Errorf("activity: %w", fmt.Errorf("ledger: %w", base)), CodeAccountInactive},
		{"joined", errors.Join(errors.New("other"), base), CodeAccountInactive},
		{"first of two codes wins", fmt.Errorf("%w: %w", Errorf(CodeNotFound, "x"), base), CodeNotFound},
		{"plain error", errors.New("connection reset"), CodeInternal},
		{"formatted, not wrapped", fmt.Errorf("ledger: %v", base), CodeInternal},
		{"nil", nil, CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ErrorCode(tt.err); got != tt.want {
				t.Errorf("ErrorCode(%v) = %q, want %q", tt.err, got, tt.want)
			}
			// IsCode agrees with ErrorCode for a code present in the chain...
			if tt.want != CodeInternal && !IsCode(tt.err, tt.want) {
				t.Errorf("IsCode(%v, %q) = false, want true", tt.err, tt.want)
			}
			// ...and is false for another code, and for CodeInternal when there is no *Error.
			if IsCode(tt.err, CodeSameAccount) {
				t.Errorf("IsCode(%v, %q) = true, want false", tt.err, CodeSameAccount)
			}
			if tt.want == CodeInternal && IsCode(tt.err, CodeInternal) {
				t.Errorf("IsCode(%v, %q) = true for an error without a code, want false", tt.err, CodeInternal)
			}
		})
	}
}

func TestErrorsAsThroughWrapping(t *testing.T) {
	err := fmt.Errorf("service: %w", Errorf(CodeIdempotencyConflict, "different request"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(%v, *Error) = false, want true", err)
	}
	if e.Code != CodeIdempotencyConflict || e.Message != "different request" {
		t.Errorf("errors.As gave %+v, want code %q and message %q", e, CodeIdempotencyConflict, "different request")
	}
}
