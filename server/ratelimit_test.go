package server

import (
	"fmt"
	"testing"
	"time"
)

// TestSignInLimiter plays attempts at chosen times against small limits and checks which pass and,
// for those refused, how long the limiter says to wait.
func TestSignInLimiter(t *testing.T) {
	// One token every 20s per email, one every 12s per address.
	l := newSignInLimiter(SignInLimit{PerEmail: Rate{Attempts: 3, Window: time.Minute}, PerIP: Rate{Attempts: 5, Window: time.Minute}})
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		name      string
		at        time.Duration
		ip, email string
		wantOK    bool
		wantWait  time.Duration
	}{
		{"first attempt on an email", 0, "ip1", "e1", true, 0},
		{"second attempt on the email", 0, "ip1", "e1", true, 0},
		{"third attempt on the email", 0, "ip1", "e1", true, 0},
		{"fourth attempt on the email: refused until one token refills", 0, "ip1", "e1", false, 20 * time.Second},
		{"another email from the same address", 0, "ip1", "e2", true, 0},
		{"the address's last token", 0, "ip1", "e3", true, 0},
		{"a fresh email from the exhausted address", 0, "ip1", "e4", false, 12 * time.Second},
		{"the exhausted email from another address", 0, "ip2", "e1", false, 20 * time.Second},
		{"refused attempts cost nothing (1)", time.Second, "ip2", "e1", false, 19 * time.Second},
		{"refused attempts cost nothing (2)", 2 * time.Second, "ip2", "e1", false, 18 * time.Second},
		{"the address refilled one token", 12 * time.Second, "ip1", "e4", true, 0},
		{"the address is empty again", 12 * time.Second, "ip1", "e5", false, 12 * time.Second},
		{"the email refilled one token, used from another address", 20 * time.Second, "ip2", "e1", true, 0},
		{"the email is empty again", 20 * time.Second, "ip2", "e1", false, 20 * time.Second},
		{"after a whole window everything has refilled", 10 * time.Minute, "ip1", "e1", true, 0},
		{"but a bucket holds no more than its size", 10 * time.Minute, "ip1", "e1", true, 0},
		{"third attempt after the window", 10 * time.Minute, "ip1", "e1", true, 0},
		{"fourth attempt after the window", 10 * time.Minute, "ip1", "e1", false, 20 * time.Second},
	}
	for _, s := range steps {
		l.now = func() time.Time { return start.Add(s.at) }
		ok, wait := l.allow(s.ip, s.email)
		if ok != s.wantOK || (wait-s.wantWait).Abs() > time.Millisecond {
			t.Errorf("%s: got ok=%v wait=%v, want ok=%v wait=%v", s.name, ok, wait, s.wantOK, s.wantWait)
		}
	}
}

// TestSignInLimiterDefaults checks that the zero SignInLimit allows 10 attempts per email and 60 per
// address before refusing, and that a disabled one never refuses.
func TestSignInLimiterDefaults(t *testing.T) {
	tests := []struct {
		name      string
		cfg       SignInLimit
		ip, email func(i int) string
		wantFirst int // the first refused attempt, 0-based; -1 for none in 1000
	}{
		{"one email from one address", SignInLimit{}, same("ip"), same("e"), 10},
		{"one email from many addresses", SignInLimit{}, numbered("ip"), same("e"), 10},
		{"many emails from one address", SignInLimit{}, same("ip"), numbered("e"), 60},
		{"a rate without a window takes the default", SignInLimit{PerEmail: Rate{Attempts: 3}}, same("ip"), same("e"), 10},
		{"disabled", SignInLimit{Disabled: true}, same("ip"), same("e"), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newSignInLimiter(tt.cfg)
			if l != nil {
				now := time.Now()
				l.now = func() time.Time { return now }
			}
			got := -1
			for i := range 1000 {
				if ok, _ := l.allow(tt.ip(i), emailKey(tt.email(i))); !ok {
					got = i
					break
				}
			}
			if got != tt.wantFirst {
				t.Errorf("first refused attempt: got #%d, want #%d", got, tt.wantFirst)
			}
		})
	}
}

func same(s string) func(int) string     { return func(int) string { return s } }
func numbered(s string) func(int) string { return func(i int) string { return fmt.Sprint(s, i) } }

// TestBucketsAreBounded checks that buckets never remember more than their maximum of keys, and
// forget the least recently seen first.
func TestBucketsAreBounded(t *testing.T) {
	now := time.Now()
	empty := now.Add(time.Hour)
	b := newBuckets(Rate{Attempts: 2, Window: time.Hour}, 3)
	for _, k := range []string{"a", "b", "c"} {
		b.get(k).full = empty
	}
	b.get("a") // a is now the most recently seen, b the least.
	b.get("d")
	if got := b.len(); got != 3 {
		t.Errorf("keys after a fourth: got %d, want 3", got)
	}
	for _, tt := range []struct {
		key      string
		wantFull time.Time
	}{
		{"a", empty}, {"c", empty}, {"d", time.Time{}}, {"b", time.Time{}}, // b was forgotten: it comes back full.
	} {
		if got := b.get(tt.key).full; !got.Equal(tt.wantFull) {
			t.Errorf("%s full at: got %v, want %v", tt.key, got, tt.wantFull)
		}
	}

	// A flood of distinct keys, as from an attacker cycling emails, keeps memory at the bound.
	l := newSignInLimiter(SignInLimit{MaxKeys: 1000, PerIP: Rate{Attempts: 1 << 30, Window: time.Second}})
	for i := range 100_000 {
		l.allow(fmt.Sprint("ip", i%5000), emailKey(fmt.Sprint("victim-", i, "@example.com")))
	}
	for name, b := range map[string]*buckets{"emails": l.byEmail, "addresses": l.byIP} {
		if got := b.len(); got != 1000 || b.lru.Len() != 1000 {
			t.Errorf("%s remembered: got %d keys and %d in the LRU, want 1000", name, got, b.lru.Len())
		}
	}
}

// TestEmailKey checks that every spelling the ledger matches as one email shares one bucket, and
// that keys have a fixed size however long the email.
func TestEmailKey(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"ada@example.com", "ada@example.com", true},
		{"ada@example.com", "ADA@Example.COM", true},
		{"ada@example.com", "  ada@example.com\t", true},
		{"ada@example.com", "ada@example.org", false},
		{"ada@example.com", "ada@example.com\x00", false},
	}
	for _, tt := range tests {
		if got := emailKey(tt.a) == emailKey(tt.b); got != tt.same {
			t.Errorf("emailKey(%q) == emailKey(%q): got %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
	if got := len(emailKey(string(make([]byte, 1<<16)))); got != 16 {
		t.Errorf("key of a 64 KiB email: got %d bytes, want 16", got)
	}
}
