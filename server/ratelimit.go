package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/transferd/transferd/transfer"
)

// SignInLimit slows password guessing on POST /v1/auth/token. Each attempt takes a token from three
// buckets and is answered 429 with Retry-After when any is empty: one for the client's address
// (trying many emails from one address), one for the email it names (in any case) from that address
// (guessing one password from one address), and one for the email from everywhere (guessing from many
// addresses). The last is large enough that one address, held to its own per-email rate, can never
// empty it alone: locking a user out takes many addresses at once, not one script. The buckets are
// kept in Config.Limits, shared by every API process. The zero value takes the defaults.
type SignInLimit struct {
	// PerEmailAddress bounds the attempts on one email from one client address, whether or not a
	// user has the email; default 10 a minute.
	PerEmailAddress Rate
	// PerEmail bounds the attempts on one email from all addresses together; default 100 per 10
	// minutes, which one address at PerEmailAddress's default cannot empty.
	PerEmail Rate
	// PerIP bounds the attempts from one client address, an IPv6 client's whole /64 counting as one;
	// default 60 a minute.
	PerIP Rate
	// Disabled turns the limit off.
	Disabled bool
}

// SignUpLimit slows the creation of users on POST /v1/users: each sign-up that passes validation
// takes a token from its client address's bucket (kept in Config.Limits, like SignInLimit's) and is
// answered 429 with Retry-After when it is empty. The zero value takes the default.
type SignUpLimit struct {
	// PerIP bounds the sign-ups from one client address, an IPv6 client's whole /64 counting as one;
	// default 60 an hour.
	PerIP Rate
	// Disabled turns the limit off.
	Disabled bool
}

// Rate is a token bucket: Attempts at once, refilled evenly at Attempts per Window.
type Rate = transfer.Rate

// The defaults of SignInLimit and SignUpLimit.
var (
	defaultPerEmailAddr = Rate{Attempts: 10, Window: time.Minute}
	defaultPerEmail     = Rate{Attempts: 100, Window: 10 * time.Minute}
	defaultPerIP        = Rate{Attempts: 60, Window: time.Minute}
	defaultSignUpsPerIP = Rate{Attempts: 60, Window: time.Hour}
)

// orDefault returns r, or def when r is not a usable rate.
func orDefault(r, def Rate) Rate {
	if !r.Valid() {
		return def
	}
	return r
}

// limits are the rate limits of a Server, their defaults filled in; a nil *limits limits nothing.
type limits struct {
	store                                           Limits
	signInPerEmailAddr, signInPerEmail, signInPerIP Rate
	signUpPerIP                                     Rate
	signIn, signUp                                  bool
}

// newLimits returns the limits of the configuration, or nil when there is no store to keep them in.
func newLimits(store Limits, in SignInLimit, up SignUpLimit) *limits {
	if store == nil {
		return nil
	}
	return &limits{store: store,
		signInPerEmailAddr: orDefault(in.PerEmailAddress, defaultPerEmailAddr), signInPerEmail: orDefault(in.PerEmail, defaultPerEmail), signInPerIP: orDefault(in.PerIP, defaultPerIP),
		signUpPerIP: orDefault(up.PerIP, defaultSignUpsPerIP), signIn: !in.Disabled, signUp: !up.Disabled}
}

// Bucket keys name their limit and a hash of their subject, so that the table holds a fixed size
// per key and no email or address in the clear.
const (
	keySignInEmail   = "sign-in:email:"
	keySignInPair    = "sign-in:email-address:"
	keySignInAddress = "sign-in:address:"
	keySignUpAddress = "sign-up:address:"
)

// signInBuckets are the buckets a sign-in attempt takes from, none when the limit is off.
func (l *limits) signInBuckets(address, email string) []transfer.Bucket {
	if l == nil || !l.signIn {
		return nil
	}
	return []transfer.Bucket{
		{Key: keySignInAddress + subjectKey(address), Rate: l.signInPerIP},
		{Key: keySignInPair + subjectKey(emailKey(email)+"\x00"+address), Rate: l.signInPerEmailAddr},
		{Key: keySignInEmail + emailKey(email), Rate: l.signInPerEmail},
	}
}

// signUpBuckets are the buckets a sign-up takes from, none when the limit is off.
func (l *limits) signUpBuckets(address string) []transfer.Bucket {
	if l == nil || !l.signUp {
		return nil
	}
	return []transfer.Bucket{{Key: keySignUpAddress + subjectKey(address), Rate: l.signUpPerIP}}
}

// emailKey is the bucket key of an email: its subjectKey once trimmed and lower-cased, so that
// every spelling the ledger would match shares one bucket.
func emailKey(email string) string {
	return subjectKey(strings.ToLower(strings.TrimSpace(email)))
}

// subjectKey is the hex of the first 16 bytes of the subject's SHA-256: the same size whatever the
// subject's length, and text PostgreSQL accepts whatever bytes the subject holds.
func subjectKey(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return hex.EncodeToString(sum[:16])
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

// withinLimit takes a token from each bucket and reports whether the request may go on. Over the limit
// it answers 429 too_many_requests with Retry-After (whole seconds, at least 1) and a detail that
// names what is limited; when the store cannot be reached, the error's answer (503). A refused
// attempt takes nothing, so hammering past the limit does not push the retry time further away.
func (s *Server) withinLimit(c *gin.Context, what string, buckets []transfer.Bucket) bool {
	if len(buckets) == 0 {
		return true
	}
	wait, err := s.limits.store.TakeTokens(c.Request.Context(), buckets)
	if err != nil {
		abortWithError(c, err)
		return false
	}
	if wait <= 0 {
		return true
	}
	secs := max(int(math.Ceil(wait.Seconds())), 1)
	c.Header("Retry-After", strconv.Itoa(secs))
	abortWithProblem(c, codeTooManyRequests, "too many "+what+"; retry in "+strconv.Itoa(secs)+" s")
	return false
}
