package transfer

import "time"

// Rate is a rate limit's token bucket: Attempts at once, refilled evenly at Attempts per Window.
type Rate struct {
	Attempts int
	Window   time.Duration
}

// Valid reports whether the rate allows at least one attempt per a positive window.
func (r Rate) Valid() bool { return r.Attempts > 0 && r.Window > 0 }

// Interval is the time one token takes to refill, at least a microsecond (the precision the buckets
// are kept at).
func (r Rate) Interval() time.Duration {
	return max(r.Window/time.Duration(r.Attempts), time.Microsecond)
}

// Bucket is one key's bucket of a rate limit, such as the sign-in attempts on one email. Keys are
// shared by every process that uses the same store, so each names its limit as well as its subject.
type Bucket struct {
	Key  string
	Rate Rate
}
