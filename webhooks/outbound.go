// Package webhooks delivers signed webhooks to URLs that users register.
//
// Because users choose the URLs, every delivery is a request the service makes
// on a stranger's behalf. This file holds the defences against server-side
// request forgery: CheckURL refuses bad URLs when an endpoint is saved, and the
// Client refuses private and reserved addresses again at dial time, which is
// the check that counts, since DNS may answer differently by then.
package webhooks

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// maxURLBytes bounds the length of a webhook URL; real endpoints are far shorter.
const maxURLBytes = 2048

// ErrDestinationRefused is wrapped by the errors of deliveries whose dialed
// address is private or reserved, so callers can tell a refusal, which will
// not heal by retrying, from a network failure.
var ErrDestinationRefused = errors.New("destination address is not allowed")

// URLError reports why a webhook URL was refused.
type URLError struct {
	// Reason is a short sentence fit to show the user who registered the URL.
	// It never quotes the URL, whose query or userinfo may hold secrets, nor
	// resolved addresses, which would map the internal network for an attacker.
	Reason string
}

// Error returns the reason with a prefix naming what was refused.
func (e *URLError) Error() string { return "webhook URL refused: " + e.Reason }

// lookupFunc resolves a host name; net.DefaultResolver.LookupNetIP is one.
// Tests inject their own so that they never depend on real DNS.
type lookupFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// CheckURL validates a webhook URL when an endpoint is created or changed. It
// returns a *URLError unless raw is an absolute https URL without userinfo or
// fragment whose host is, or resolves only to, public addresses. allowPrivate,
// meant for development and tests, also admits http and private addresses.
func CheckURL(ctx context.Context, raw string, allowPrivate bool) error {
	return checkURL(ctx, raw, allowPrivate, net.DefaultResolver.LookupNetIP)
}

func checkURL(ctx context.Context, raw string, allowPrivate bool, lookup lookupFunc) error {
	u, err := parseURL(raw, allowPrivate)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if !allowPrivate && Disallowed(ip) {
			return &URLError{Reason: "host is a private or reserved address"}
		}
		return nil
	}
	addrs, err := lookup(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return &URLError{Reason: "host name does not resolve"}
	}
	if allowPrivate {
		return nil
	}
	// One bad address is enough to refuse: the dialer may pick any of them.
	for _, ip := range addrs {
		if Disallowed(ip) {
			return &URLError{Reason: "host name resolves to a private or reserved address"}
		}
	}
	return nil
}

// parseURL applies the checks that need no DNS. It returns the parsed URL even
// when it refuses it, so that Post can name the URL in its error.
func parseURL(raw string, allowPrivate bool) (*url.URL, error) {
	if len(raw) > maxURLBytes {
		return nil, &URLError{Reason: fmt.Sprintf("URL is longer than %d bytes", maxURLBytes)}
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The parse error quotes raw, so it stays out of the reason.
		return nil, &URLError{Reason: "URL is not valid"}
	}
	refuse := func(reason string) (*url.URL, error) { return u, &URLError{Reason: reason} }
	if u.Opaque != "" || !(u.Scheme == "https" || (u.Scheme == "http" && allowPrivate)) {
		return refuse("URL must start with https://")
	}
	if u.User != nil {
		return refuse("URL must not contain a user name or password")
	}
	// u.Fragment is empty for a bare trailing "#", so look at raw itself.
	if strings.Contains(raw, "#") {
		return refuse("URL must not contain a fragment")
	}
	if u.Hostname() == "" {
		return refuse("URL must name a host")
	}
	return u, nil
}

// Prefixes that Disallowed refuses beyond what netip's predicates cover.
var (
	nat64 = netip.MustParsePrefix("64:ff9b::/96")

	reserved = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
		netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT
		netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
		netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
		netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and 255.255.255.255
		netip.MustParsePrefix("::/96"),          // deprecated IPv4-compatible
		netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
		netip.MustParsePrefix("2001::/32"),      // Teredo tunnels
		netip.MustParsePrefix("2002::/16"),      // 6to4 tunnels
		netip.MustParsePrefix("fec0::/10"),      // deprecated site-local
	}
)

// Disallowed reports whether ip is an address that webhooks must never reach:
// unspecified, loopback, private, link-local, multicast or otherwise reserved,
// including NAT64 and tunnel addresses that could lead to such an address.
// IPv4-mapped IPv6 addresses are judged by the IPv4 address they carry.
func Disallowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsLoopback() || ip.IsPrivate() ||
		ip.IsLinkLocalUnicast() || ip.IsMulticast() {
		return true
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		return Disallowed(netip.AddrFrom4([4]byte(b[12:])))
	}
	for _, p := range reserved {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientOptions configures a Client; the zero value is the production setting.
type ClientOptions struct {
	// AllowPrivate admits http and private addresses, for development and tests.
	AllowPrivate bool
	// Timeout bounds one delivery from dial to last body byte; 10s if zero.
	Timeout time.Duration
	// MaxResponseBytes bounds the response body kept; 64 KiB if zero.
	MaxResponseBytes int64
	// RootCAs replaces the host's root certificates when set, for tests and
	// private deployments.
	RootCAs *x509.CertPool
}

// Client posts webhooks. It is safe for concurrent use.
type Client struct {
	hc       *http.Client
	private  bool
	timeout  time.Duration
	maxBytes int64
}

// NewClient returns a Client whose every dial is checked with Disallowed,
// which never uses a proxy and never follows redirects.
func NewClient(o ClientOptions) *Client {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = 64 << 10
	}
	phase := min(o.Timeout, 5*time.Second)
	dialer := &net.Dialer{Timeout: phase, KeepAlive: 30 * time.Second}
	if !o.AllowPrivate {
		// Control sees the address actually dialed, after DNS, so a name that
		// resolved to a public address at CheckURL time cannot rebind to an
		// internal one now.
		dialer.Control = refuseDisallowed
	}
	transport := &http.Transport{
		// A proxy would dial on our behalf, past the Control check, so
		// HTTPS_PROXY and friends are ignored on purpose.
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.RootCAs},
		TLSHandshakeTimeout:    phase,
		ResponseHeaderTimeout:  o.Timeout,
		MaxResponseHeaderBytes: 32 << 10,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
	}
	return &Client{
		hc: &http.Client{
			Transport: transport,
			// A redirect could point anywhere, including at an address that
			// CheckURL never saw, so a 3xx is just another non-2xx answer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		private:  o.AllowPrivate,
		timeout:  o.Timeout,
		maxBytes: o.MaxResponseBytes,
	}
}

// refuseDisallowed is a net.Dialer Control function that refuses to connect
// to a disallowed address.
func refuseDisallowed(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return ErrDestinationRefused
	}
	if Disallowed(ap.Addr()) {
		return &refusedError{addr: ap.Addr().Unmap()}
	}
	return nil
}

// refusedError names the refused address, which the operator needs in logs.
type refusedError struct{ addr netip.Addr }

// Error names no address: the message reaches the endpoint's owner through the delivery log, and
// the internal address a name resolved to is not theirs to learn.
func (e *refusedError) Error() string {
	return "destination address is not allowed (loopback, private or internal)"
}
func (e *refusedError) Unwrap() error { return ErrDestinationRefused }

// Response is the endpoint's answer to one delivery.
type Response struct {
	// Status is the HTTP status code; a 3xx is not followed.
	Status int
	// Body holds at most MaxResponseBytes; Truncated says whether more followed.
	Body      []byte
	Truncated bool
	// Duration is the time from sending to the end of the body or the error.
	Duration time.Duration
}

// DeliveryError reports a failed delivery. Its message names the URL's scheme and
// host only and never includes header values, which carry the
// signature. errors.Is(err, ErrDestinationRefused) tells a refused address.
type DeliveryError struct {
	URL     string // scheme and host only
	Err     error  // the cause, for errors.Is and errors.As
	reason  string
	timeout bool
}

// Error returns "POST <url>: <reason>".
func (e *DeliveryError) Error() string { return "POST " + e.URL + ": " + e.reason }

// Unwrap returns the cause.
func (e *DeliveryError) Unwrap() error { return e.Err }

// Timeout reports whether the delivery ran out of time, as opposed to being
// refused or failing on the network.
func (e *DeliveryError) Timeout() bool { return e.timeout }

// Post sends body as one JSON POST to rawURL with headers, within the
// client's Timeout. Any status, 3xx included, is a Response without error;
// on error, the returned Response carries only the Duration.
func (c *Client) Post(ctx context.Context, rawURL string, headers http.Header, body []byte) (Response, error) {
	start := time.Now()
	u, err := parseURL(rawURL, c.private)
	if err != nil {
		return Response{}, &DeliveryError{URL: redact(u), Err: err, reason: err.Error()}
	}
	budget := c.timeout
	if deadline, ok := ctx.Deadline(); ok {
		budget = max(0, min(budget, time.Until(deadline).Round(time.Millisecond)))
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return Response{}, c.fail(ctx, u, budget, err)
	}
	if headers != nil {
		req.Header = headers.Clone()
	}
	req.Header.Set("Content-Type", "application/json")

	resp, err := c.hc.Do(req)
	if err != nil {
		return Response{Duration: time.Since(start)}, c.fail(ctx, u, budget, err)
	}
	// Closing without draining drops the connection rather than reading an
	// unbounded body just to reuse it.
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return Response{Duration: time.Since(start)}, c.fail(ctx, u, budget, err)
	}
	truncated := int64(len(data)) > c.maxBytes
	if truncated {
		data = data[:c.maxBytes]
	}
	return Response{Status: resp.StatusCode, Body: data, Truncated: truncated, Duration: time.Since(start)}, nil
}

// fail turns err into a *DeliveryError for u. ctx is the delivery's own
// context, whose deadline tells a timeout of the whole delivery.
func (c *Client) fail(ctx context.Context, u *url.URL, budget time.Duration, err error) *DeliveryError {
	// url.Error's message repeats the full URL, query included, so keep only
	// what it wraps.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	e := &DeliveryError{URL: redact(u), Err: err, reason: err.Error()}
	var refused *refusedError
	var ne net.Error
	switch {
	case errors.As(err, &refused):
		e.reason = refused.Error()
	case pastDeadline(ctx):
		e.timeout = true
		e.reason = "timeout after " + budget.String()
	case errors.As(err, &ne) && ne.Timeout():
		e.timeout = true
	}
	return e
}

// pastDeadline reports whether ctx's deadline has passed. It reads the clock
// rather than ctx.Err: a transport timer of the same length (the response
// header timeout) can fire, and its error reach fail, before the context's
// own timer has run.
func pastDeadline(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	deadline, ok := ctx.Deadline()
	return ok && !time.Now().Before(deadline)
}

// redact returns u's scheme and host only: its userinfo, query and fragment may hold secrets, and so
// may its path (some services put a token there), and errors reach the delivery log.
func redact(u *url.URL) string {
	if u == nil {
		return "(invalid URL)"
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host}
	return r.String()
}
