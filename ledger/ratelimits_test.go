package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/transfer"
)

// TestTakeTokens plays attempts at chosen times against small limits and checks which pass and,
// for those refused, how long the store says to wait.
func TestTakeTokens(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	// One token every 20s per email, one every 12s per address.
	perEmail := transfer.Rate{Attempts: 3, Window: time.Minute}
	perIP := transfer.Rate{Attempts: 5, Window: time.Minute}
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		name      string
		at        time.Duration
		ip, email string
		wantWait  time.Duration // 0: taken
	}{
		{"first attempt on an email", 0, "ip1", "e1", 0},
		{"second attempt on the email", 0, "ip1", "e1", 0},
		{"third attempt on the email", 0, "ip1", "e1", 0},
		{"fourth attempt on the email: refused until one token refills", 0, "ip1", "e1", 20 * time.Second},
		{"another email from the same address", 0, "ip1", "e2", 0},
		{"the address's last token", 0, "ip1", "e3", 0},
		{"a fresh email from the exhausted address", 0, "ip1", "e4", 12 * time.Second},
		{"the exhausted email from another address", 0, "ip2", "e1", 20 * time.Second},
		{"refused attempts cost nothing (1)", time.Second, "ip2", "e1", 19 * time.Second},
		{"refused attempts cost nothing (2)", 2 * time.Second, "ip2", "e1", 18 * time.Second},
		{"the address refilled one token", 12 * time.Second, "ip1", "e4", 0},
		{"the address is empty again", 12 * time.Second, "ip1", "e5", 12 * time.Second},
		{"the email refilled one token, used from another address", 20 * time.Second, "ip2", "e1", 0},
		{"the email is empty again", 20 * time.Second, "ip2", "e1", 20 * time.Second},
		{"after a whole window everything has refilled", 10 * time.Minute, "ip1", "e1", 0},
		{"but a bucket holds no more than its size", 10 * time.Minute, "ip1", "e1", 0},
		{"third attempt after the window", 10 * time.Minute, "ip1", "e1", 0},
		{"fourth attempt after the window", 10 * time.Minute, "ip1", "e1", 20 * time.Second},
	}
	for _, st := range steps {
		got, err := s.TakeTokensAt(ctx, start.Add(st.at), []transfer.Bucket{{Key: "ip:" + st.ip, Rate: perIP}, {Key: "email:" + st.email, Rate: perEmail}})
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if (got - st.wantWait).Abs() > time.Millisecond {
			t.Errorf("%s: got wait %v, want %v", st.name, got, st.wantWait)
		}
	}
	if _, err := s.TakeTokens(ctx, []transfer.Bucket{{Key: "k", Rate: transfer.Rate{Attempts: 0, Window: time.Minute}}}); !transfer.IsCode(err, transfer.CodeInvalidInput) {
		t.Errorf("a rate of no attempts: got %v, want invalid_input", err)
	}
	// Keys may hold any text PostgreSQL does.
	for _, key := range []string{`a,b`, `{x}`, `"q"`, `back\slash`, "", "ключ"} {
		if got, err := s.TakeTokens(ctx, []transfer.Bucket{{Key: key, Rate: perIP}}); err != nil || got != 0 {
			t.Errorf("key %q: got %v, %v; want a token", key, got, err)
		}
	}
}

// TestTakeTokensForgetsOnlyFullBuckets checks that the table keeps every bucket that is not full,
// however many other keys are used, and that attempts which take tokens delete the rows of
// buckets that are full again, so the table stays bounded; refused attempts write nothing.
func TestTakeTokensForgetsOnlyFullBuckets(t *testing.T) {
	s, db := newStoreDB(t)
	ctx := context.Background()
	rate := transfer.Rate{Attempts: 2, Window: time.Hour}
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	take := func(at time.Duration, keys ...string) time.Duration {
		t.Helper()
		var bs []transfer.Bucket
		for _, k := range keys {
			bs = append(bs, transfer.Bucket{Key: k, Rate: rate})
		}
		wait, err := s.TakeTokensAt(ctx, start.Add(at), bs)
		if err != nil {
			t.Fatal(err)
		}
		return wait
	}
	take(0, "victim")
	take(0, "victim")
	// A flood of attempts on 1000 new keys, each refused because the victim's bucket is empty,
	// writes nothing.
	for i := range 1000 {
		if w := take(time.Second, fmt.Sprint("flood-", i), "victim"); w == 0 {
			t.Fatalf("flood attempt %d was allowed", i)
		}
	}
	if n := countRows(t, db, "SELECT count(*) FROM rate_limit_buckets"); n != 1 {
		t.Errorf("rows after refused attempts: got %d, want 1 (the victim's)", n)
	}
	// 500 keys that take a token each, then a day later, when all are full again, attempts on new
	// keys delete them as they go: twice as many rows as they write.
	for i := range 500 {
		take(time.Minute, fmt.Sprint("old-", i))
	}
	if w := take(2*time.Minute, "victim"); w == 0 {
		t.Errorf("the victim's bucket was forgotten among 500 others")
	}
	for i := range 300 {
		take(24*time.Hour, fmt.Sprint("new-", i))
	}
	if n := countRows(t, db, "SELECT count(*) FROM rate_limit_buckets WHERE key LIKE 'old-%' OR key = 'victim'"); n != 0 {
		t.Errorf("full buckets left after 300 attempts that took tokens: got %d rows, want 0", n)
	}
	if n := countRows(t, db, "SELECT count(*) FROM rate_limit_buckets"); n != 300 {
		t.Errorf("rows: got %d, want the 300 buckets that are not full", n)
	}
}

// TestTakeTokensConcurrently checks that attempts racing on the same buckets, new or not, in any
// order of keys, take no more tokens than the buckets hold and never deadlock.
func TestTakeTokensConcurrently(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	rate := transfer.Rate{Attempts: 5, Window: time.Hour}
	var taken atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			// Half name the shared buckets in one order, half in the other; each has a new key too.
			bs := []transfer.Bucket{{Key: "shared-a", Rate: rate}, {Key: "shared-b", Rate: rate}, {Key: fmt.Sprint("own-", i), Rate: rate}}
			if i%2 == 1 {
				bs[0], bs[1] = bs[1], bs[0]
			}
			wait, err := s.TakeTokens(ctx, bs)
			if err != nil {
				errs <- err
				return
			}
			if wait == 0 {
				taken.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("take: %v", err)
	}
	if got := taken.Load(); got != 5 {
		t.Errorf("attempts that took tokens: got %d, want 5", got)
	}
}
