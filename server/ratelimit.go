package server

import (
	"container/list"
	"crypto/sha256"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// SignInLimit slows password guessing on POST /v1/auth/token. Each attempt takes a token from two
// buckets, one for the email it names (in any case) and one for the client's address, and is
// answered 429 with Retry-After when either is empty: the first bounds guessing one user's password
// from many addresses, the second bounds trying many emails from one address. The zero value takes
// the defaults.
type SignInLimit struct {
	// PerEmail bounds the attempts on one email, whether or not a user has it; default 10 a minute.
	PerEmail Rate
	// PerIP bounds the attempts from one client address, an IPv6 client's whole /64 counting as one;
	// default 60 a minute.
	PerIP Rate
	// MaxKeys bounds how many emails, and separately how many addresses, are remembered; the least
	// recently seen is forgotten first, so memory stays bounded whatever clients send. Default 50000.
	MaxKeys int
	// Disabled turns the limit off.
	Disabled bool
}

// Rate is a token bucket: Attempts at once, refilled evenly at Attempts per Window.
type Rate struct {
	Attempts int
	Window   time.Duration
}

// The defaults of SignInLimit.
var (
	defaultPerEmail = Rate{Attempts: 10, Window: time.Minute}
	defaultPerIP    = Rate{Attempts: 60, Window: time.Minute}
)

const defaultMaxKeys = 50_000

// orDefault returns r, or def when r is not a usable rate.
func (r Rate) orDefault(def Rate) Rate {
	if r.Attempts <= 0 || r.Window <= 0 {
		return def
	}
	return r
}

// interval is the time one token takes to refill.
func (r Rate) interval() time.Duration { return max(r.Window/time.Duration(r.Attempts), 1) }

// signInLimiter holds the buckets of SignInLimit. It is safe for concurrent use.
type signInLimiter struct {
	mu      sync.Mutex
	byEmail *buckets
	byIP    *buckets
	now     func() time.Time
}

// newSignInLimiter returns the limiter of cfg, or nil when it is disabled.
func newSignInLimiter(cfg SignInLimit) *signInLimiter {
	if cfg.Disabled {
		return nil
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = defaultMaxKeys
	}
	return &signInLimiter{
		byEmail: newBuckets(cfg.PerEmail.orDefault(defaultPerEmail), cfg.MaxKeys),
		byIP:    newBuckets(cfg.PerIP.orDefault(defaultPerIP), cfg.MaxKeys),
		now:     time.Now,
	}
}

// allow takes a token from the address's bucket and one from the email's, or none when either is
// empty; it then returns false and how long until both have a token again. A refused attempt costs
// nothing, so hammering past the limit does not push the retry time further away.
func (l *signInLimiter) allow(ipKey, emailKey string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	ip, email := l.byIP.get(ipKey), l.byEmail.get(emailKey)
	if wait := max(l.byIP.wait(ip, now), l.byEmail.wait(email, now)); wait > 0 {
		return false, wait
	}
	l.byIP.take(ip, now)
	l.byEmail.take(email, now)
	return true, 0
}

// buckets are the token buckets of one rate, by key, remembering at most max keys. A forgotten key
// comes back with a full bucket, which is what the least recently seen key has most likely refilled
// to anyway.
type buckets struct {
	rate     Rate
	interval time.Duration
	max      int
	lru      *list.List // of *bucket, the most recently seen first
	byKey    map[string]*list.Element
}

// bucket is one key's bucket. Rather than a count of tokens that would need refilling, it holds
// the time at which it will be full again (in the past for a full one): each token taken pushes
// that time one interval further, in exact integer arithmetic.
type bucket struct {
	key  string
	full time.Time
}

func newBuckets(r Rate, max int) *buckets {
	return &buckets{rate: r, interval: r.interval(), max: max, lru: list.New(), byKey: map[string]*list.Element{}}
}

// get returns the key's bucket, creating a full one for a new key and forgetting the least recently
// seen key when there are more than max.
func (b *buckets) get(key string) *bucket {
	if e, ok := b.byKey[key]; ok {
		b.lru.MoveToFront(e)
		return e.Value.(*bucket)
	}
	k := &bucket{key: key}
	b.byKey[key] = b.lru.PushFront(k)
	for b.lru.Len() > b.max {
		oldest := b.lru.Back()
		b.lru.Remove(oldest)
		delete(b.byKey, oldest.Value.(*bucket).key)
	}
	return k
}

// wait is how long from now until the bucket holds a token; 0 when it does. It does while taking
// one leaves it no more than a whole window from full.
func (b *buckets) wait(k *bucket, now time.Time) time.Duration {
	if !k.full.After(now) {
		// Full; and the zero time's distance from now would overflow a Duration.
		return 0
	}
	return max(k.full.Sub(now)-b.rate.Window+b.interval, 0)
}

// take takes a token from the bucket.
func (b *buckets) take(k *bucket, now time.Time) {
	if k.full.Before(now) {
		k.full = now
	}
	k.full = k.full.Add(b.interval)
}

// len is how many keys are remembered.
func (b *buckets) len() int { return len(b.byKey) }

// emailKey is the bucket key of an email: its hash once trimmed and lower-cased, so that every
// spelling the ledger would match shares one bucket, and a key costs the same memory whatever its
// length.
func emailKey(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	return string(sum[:16])
}

// addressKey is the bucket key of the request's client: its IP address, or for IPv6 its /64, which
// one client usually holds whole. The address is the TCP peer's unless that peer is a trusted proxy
// (Config.TrustedProxies), so a client cannot choose its own key with X-Forwarded-For.
func addressKey(c *gin.Context) string {
	addr, err := netip.ParseAddr(c.ClientIP())
	if err != nil {
		return c.ClientIP()
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

// ParseTrustedProxies splits a comma-separated list of IP addresses and CIDRs into
// Config.TrustedProxies, refusing anything else, so that a typo stops the server at start rather
// than silently trusting no proxy.
func ParseTrustedProxies(list string) ([]string, error) {
	var out []string
	for p := range strings.SplitSeq(list, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil || strings.Contains(p, "%") {
				return nil, fmt.Errorf("server: trusted proxy %q is neither an IP address nor a CIDR", p)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// limitSignIn answers 429 with Retry-After and returns false when the attempt is over the limit.
func (s *Server) limitSignIn(c *gin.Context, email string) bool {
	ok, wait := s.signIn.allow(addressKey(c), emailKey(email))
	if ok {
		return true
	}
	secs := int(math.Ceil(wait.Seconds()))
	secs = max(secs, 1)
	c.Header("Retry-After", strconv.Itoa(secs))
	abortWithProblem(c, codeTooManyRequests, "too many sign-in attempts; retry in "+strconv.Itoa(secs)+" s")
	return false
}
