package transfer

import "fmt"

// MaxAmount is the largest amount the service accepts: 2^53-1, the largest integer that every JSON
// client can represent exactly.
const MaxAmount int64 = 1<<53 - 1

// Amount is a positive count of a currency's minor unit (USD 1250 is 12.50 USD). It is never a float.
type Amount int64

// NewAmount validates n as a transfer amount: 1 <= n <= MaxAmount. It returns an *Error with code
// CodeInvalidAmount otherwise.
func NewAmount(n int64) (Amount, error) {
	if n < 1 || n > MaxAmount {
		return 0, Errorf(CodeInvalidAmount, "amount must be an integer from 1 to %d minor units, got %d", MaxAmount, n)
	}
	return Amount(n), nil
}

// Int64 returns the amount as a plain integer of minor units.
func (a Amount) Int64() int64 { return int64(a) }

// String formats the amount as its integer count of minor units.
func (a Amount) String() string { return fmt.Sprintf("%d", int64(a)) }
