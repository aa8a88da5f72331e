package ledger

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/transferd/transferd/transfer"
)

// TakeTokens takes one token from each of the buckets, or none when any of them is empty; it then
// returns how long until every one of them holds a token again, and 0 when it took them. The
// buckets live in the database (migration 0008), so every process on it shares them, and the
// attempt is one statement on the database's clock: counted whole or not at all. A bucket that is
// full again is forgotten, never one that is not, whatever keys clients send. Each rate must be
// Valid (CodeInvalidInput).
func (s *Store) TakeTokens(ctx context.Context, buckets []transfer.Bucket) (time.Duration, error) {
	return s.takeTokens(ctx, time.Time{}, buckets)
}

// takeTokens is TakeTokens at a chosen time, or on the database's clock for the zero time.
func (s *Store) takeTokens(ctx context.Context, at time.Time, buckets []transfer.Bucket) (time.Duration, error) {
	if len(buckets) == 0 {
		return 0, nil
	}
	keys := make([]string, len(buckets))
	intervals := make([]string, len(buckets))
	windows := make([]string, len(buckets))
	for i, b := range buckets {
		if !b.Rate.Valid() {
			return 0, transfer.Errorf(transfer.CodeInvalidInput, "rate limit %q has no attempts or no window", b.Key)
		}
		// Array literals, since GORM would expand a slice into a list; each key quoted, so that no
		// character in it can end its element.
		keys[i] = quoteArrayElement(b.Key)
		intervals[i] = strconv.FormatInt(b.Rate.Interval().Microseconds(), 10)
		windows[i] = strconv.FormatInt(b.Rate.Window.Microseconds(), 10)
	}
	var when any // NULL: the database's clock.
	if !at.IsZero() {
		when = at
	}
	var waitUS int64
	err := s.db.WithContext(ctx).Raw(`SELECT rate_limit_take(?::text[], ?::bigint[], ?::bigint[], ?::timestamptz)`,
		arrayLiteral(keys), arrayLiteral(intervals), arrayLiteral(windows), when).Scan(&waitUS).Error
	if err != nil {
		return 0, fmt.Errorf("ledger: take rate-limit tokens: %w", err)
	}
	return time.Duration(waitUS) * time.Microsecond, nil
}

// arrayLiteral is the PostgreSQL array literal of elements that are already quoted as need be.
func arrayLiteral(elems []string) string { return "{" + strings.Join(elems, ",") + "}" }

// quoteArrayElement quotes a string as an element of an array literal, so that no character in it
// can end the element.
func quoteArrayElement(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
