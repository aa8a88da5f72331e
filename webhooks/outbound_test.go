package webhooks

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeResolver answers from a fixed table, so that no test depends on real DNS.
type fakeResolver map[string][]netip.Addr

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	addrs, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return addrs, nil
}

var resolver = fakeResolver{
	"hooks.example":    {netip.MustParseAddr("93.184.216.34")},
	"internal.example": {netip.MustParseAddr("10.0.0.5")},
	"mixed.example":    {netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("127.0.0.1")},
	// localhost answers public here and loopback on the real resolver, for
	// the rebinding test.
	"localhost": {netip.MustParseAddr("93.184.216.34")},
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		name         string
		raw          string
		allowPrivate bool
		wantErr      bool
	}{
		{"plain http", "http://example.com/hook", false, true},
		{"loopback", "https://127.0.0.1/hook", false, true},
		{"private 10/8", "https://10.1.2.3/hook", false, true},
		{"private 172.16/12", "https://172.16.0.1/hook", false, true},
		{"private 192.168/16", "https://192.168.1.1/hook", false, true},
		{"cloud metadata", "https://169.254.169.254/latest/meta-data/", false, true},
		{"IPv6 loopback", "https://[::1]/hook", false, true},
		{"IPv6 link-local", "https://[fe80::1]/hook", false, true},
		{"IPv4-mapped loopback", "https://[::ffff:127.0.0.1]/hook", false, true},
		{"unspecified", "https://0.0.0.0/hook", false, true},
		{"carrier-grade NAT", "https://100.64.0.1/hook", false, true},
		{"name resolving to private", "https://internal.example/hook?token=s3cr3t", false, true},
		{"name resolving to public and loopback", "https://mixed.example/hook", false, true},
		{"name that does not resolve", "https://nowhere.example/hook", false, true},
		{"userinfo", "https://user:s3cr3t@hooks.example/hook", false, true},
		{"userinfo even when private allowed", "http://user:s3cr3t@127.0.0.1:8080/hook", true, true},
		{"fragment", "https://hooks.example/hook#frag", false, true},
		{"empty fragment", "https://hooks.example/hook#", false, true},
		{"ftp", "ftp://hooks.example/hook?token=s3cr3t", false, true},
		{"relative", "/hook", false, true},
		{"scheme-relative", "//hooks.example/hook", false, true},
		{"empty host", "https:///hook", false, true},
		{"opaque", "https:hooks.example", false, true},
		{"too long", "https://hooks.example/" + strings.Repeat("a", maxURLBytes), false, true},
		{"public address", "https://93.184.216.34/hook", false, false},
		{"public name", "https://hooks.example/hook?topic=transfers", false, false},
		{"public IPv6", "https://[2606:2800:220:1:248:1893:25c8:1946]/hook", false, false},
		{"private allowed", "http://127.0.0.1:8080/hook", true, false},
		{"private name allowed", "https://internal.example/hook", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkURL(t.Context(), tt.raw, tt.allowPrivate, resolver.LookupNetIP)
			if !tt.wantErr {
				if err != nil {
					t.Errorf("checkURL(%q) = %v, want nil", tt.raw, err)
				}
				return
			}
			var ue *URLError
			if !errors.As(err, &ue) {
				t.Fatalf("checkURL(%q) = %v, want a *URLError", tt.raw, err)
			}
			if strings.Contains(ue.Reason, "s3cr3t") {
				t.Errorf("checkURL(%q) reason = %q, want no secret", tt.raw, ue.Reason)
			}
		})
	}
}

func TestDisallowed(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"127.0.0.1", true},
		{"10.0.0.1", true},
		{"172.31.255.255", true},
		{"192.168.0.1", true},
		{"169.254.169.254", true},
		{"100.64.0.1", true},
		{"192.0.0.8", true},
		{"198.18.0.1", true},
		{"224.0.0.1", true},
		{"240.0.0.1", true},
		{"255.255.255.255", true},
		{"::", true},
		{"::1", true},
		{"::127.0.0.1", true},
		{"::ffff:10.0.0.1", true},
		{"fe80::1", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"ff02::1", true},
		{"64:ff9b::10.0.0.1", true},
		{"64:ff9b::169.254.169.254", true},
		{"2002:7f00:1::1", true},
		{"2001:0:4136:e378::1", true},
		{"8.8.8.8", false},
		{"93.184.216.34", false},
		{"172.32.0.1", false},
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::8.8.8.8", false},
		{"2606:4700:4700::1111", false},
	}
	for _, tt := range tests {
		if got := Disallowed(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Disallowed(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// startTLS starts a loopback TLS server and returns it with a pool that trusts
// its certificate and a count of the connections it accepted.
func startTLS(t *testing.T, h http.Handler) (*httptest.Server, *x509.CertPool, *atomic.Int64) {
	t.Helper()
	conns := new(atomic.Int64)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, pool, conns
}

func TestPostDelivers(t *testing.T) {
	var gotType, gotSig, gotBody string
	srv, pool, _ := startTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotType, gotSig = r.Header.Get("Content-Type"), r.Header.Get("Webhook-Signature")
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		io.WriteString(w, "ok")
	}))
	c := NewClient(ClientOptions{AllowPrivate: true, RootCAs: pool})

	headers := http.Header{"Webhook-Signature": {"v1,abc"}}
	resp, err := c.Post(t.Context(), srv.URL+"/hook", headers, []byte(`{"type":"transfer.completed"}`))
	if err != nil {
		t.Fatalf("Post: %v", err)
	}
	if resp.Status != http.StatusOK || string(resp.Body) != "ok" || resp.Truncated {
		t.Errorf("Post = %d %q truncated=%v, want 200 \"ok\" truncated=false", resp.Status, resp.Body, resp.Truncated)
	}
	if gotType != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", gotType)
	}
	if gotSig != "v1,abc" {
		t.Errorf("Webhook-Signature = %q, want %q", gotSig, "v1,abc")
	}
	if gotBody != `{"type":"transfer.completed"}` {
		t.Errorf("body = %q, want the posted JSON", gotBody)
	}
}

func TestPostRefusesRebinding(t *testing.T) {
	srv, pool, conns := startTLS(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	raw := "https://localhost:" + port + "/hook"

	// At registration the name resolves to a public address; at delivery the
	// real resolver answers 127.0.0.1, as a rebinding attacker would arrange.
	if err := checkURL(t.Context(), raw, false, resolver.LookupNetIP); err != nil {
		t.Fatalf("checkURL(%q) = %v, want nil", raw, err)
	}
	_, err := NewClient(ClientOptions{RootCAs: pool}).Post(t.Context(), raw, nil, []byte(`{}`))
	if !errors.Is(err, ErrDestinationRefused) {
		t.Errorf("Post(%q) = %v, want ErrDestinationRefused", raw, err)
	}
	// localhost may resolve to ::1 as well, so the message's address varies.
	if want := "POST https://localhost:" + port + ": destination address "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Post(%q) error = %v, want prefix %q", raw, err, want)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("server accepted %d connections, want 0", n)
	}
}

func TestPostDoesNotFollowRedirects(t *testing.T) {
	target, _, targetConns := startTLS(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv, pool, _ := startTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/internal", http.StatusFound)
	}))
	c := NewClient(ClientOptions{AllowPrivate: true, RootCAs: pool})

	resp, err := c.Post(t.Context(), srv.URL+"/hook", nil, []byte(`{}`))
	if err != nil {
		t.Fatalf("Post: %v", err)
	}
	if resp.Status != http.StatusFound {
		t.Errorf("Post status = %d, want %d", resp.Status, http.StatusFound)
	}
	if n := targetConns.Load(); n != 0 {
		t.Errorf("redirect target accepted %d connections, want 0", n)
	}
}

func TestPostTruncatesHugeBody(t *testing.T) {
	srv, pool, _ := startTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 16 << 10 { // 1 GiB: reading it all would take far longer than the bound below
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	const limit = 64 << 10
	c := NewClient(ClientOptions{AllowPrivate: true, RootCAs: pool, MaxResponseBytes: limit})

	start := time.Now()
	resp, err := c.Post(t.Context(), srv.URL, nil, []byte(`{}`))
	if err != nil {
		t.Fatalf("Post: %v", err)
	}
	if len(resp.Body) != limit || !resp.Truncated {
		t.Errorf("Post body = %d bytes truncated=%v, want %d bytes truncated=true", len(resp.Body), resp.Truncated, limit)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Post took %v, want under 5s", d)
	}
}

// hang answers after 30 seconds, or earlier if the client hangs up. It
// reads the body first because only then does the server notice a hang-up.
var hang = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	select {
	case <-time.After(30 * time.Second):
	case <-r.Context().Done():
	}
})

func TestPostTimeout(t *testing.T) {
	srv, pool, _ := startTLS(t, hang)
	c := NewClient(ClientOptions{AllowPrivate: true, RootCAs: pool, Timeout: 300 * time.Millisecond})

	start := time.Now()
	_, err := c.Post(t.Context(), srv.URL, nil, []byte(`{}`))
	elapsed := time.Since(start)
	var de *DeliveryError
	if !errors.As(err, &de) || !de.Timeout() {
		t.Fatalf("Post = %v, want a *DeliveryError with Timeout() true", err)
	}
	if want := "timeout after 300ms"; !strings.HasSuffix(err.Error(), want) {
		t.Errorf("Post error = %q, want suffix %q", err, want)
	}
	if elapsed > 5*time.Second {
		t.Errorf("Post took %v, want under 5s (the server waits 30s)", elapsed)
	}
}

// lateCtx is a context whose deadline has passed but whose timer has not yet
// run, so Err is still nil: what a transport timer of the same length that
// fires first sees. CI saw it once as "timeout awaiting response headers".
type lateCtx struct{ context.Context }

func (lateCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

func TestFailNamesTheBudgetOnceTheDeadlineHasPassed(t *testing.T) {
	c := NewClient(ClientOptions{AllowPrivate: true, Timeout: 300 * time.Millisecond})
	u := mustParse(t, "https://hooks.example/in")
	headerTimeout := &net.OpError{Op: "read", Err: timeoutErr{}}
	e := c.fail(lateCtx{context.Background()}, u, 300*time.Millisecond, headerTimeout)
	if !e.Timeout() || !strings.HasSuffix(e.Error(), "timeout after 300ms") {
		t.Errorf("fail = %q (timeout %v), want a timeout naming the 300ms budget", e, e.Timeout())
	}
	// Before the deadline, a transport's own timeout is reported as itself.
	e = c.fail(context.Background(), u, 300*time.Millisecond, headerTimeout)
	if !e.Timeout() || strings.Contains(e.Error(), "timeout after") {
		t.Errorf("fail before the deadline = %q (timeout %v), want the transport's timeout as it is", e, e.Timeout())
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestPostErrors(t *testing.T) {
	sleepy, pool, _ := startTLS(t, hang)
	closed := freePort(t)
	headers := http.Header{"Webhook-Signature": {"v1,SIGNATURE"}}

	tests := []struct {
		name        string
		opts        ClientOptions
		raw         string
		wantPrefix  string
		wantRefused bool
		wantTimeout bool
	}{
		{
			name:       "connection refused",
			opts:       ClientOptions{AllowPrivate: true},
			raw:        "https://" + closed + "/hook?secret=s3cr3t",
			wantPrefix: "POST https://" + closed + ": ",
		},
		{
			name:        "destination refused",
			opts:        ClientOptions{},
			raw:         "https://" + closed + "/hook?secret=s3cr3t",
			wantPrefix:  "POST https://" + closed + ": ",
			wantRefused: true,
		},
		{
			name:        "timeout",
			opts:        ClientOptions{AllowPrivate: true, RootCAs: pool, Timeout: 200 * time.Millisecond},
			raw:         sleepy.URL + "/hook?secret=s3cr3t",
			wantPrefix:  "POST " + sleepy.URL + ": ",
			wantTimeout: true,
		},
		{
			name:       "untrusted certificate",
			opts:       ClientOptions{AllowPrivate: true},
			raw:        sleepy.URL + "/hook?secret=s3cr3t",
			wantPrefix: "POST " + sleepy.URL + ": ",
		},
		{
			name:       "userinfo",
			opts:       ClientOptions{AllowPrivate: true},
			raw:        "https://user:s3cr3t@" + closed + "/hook",
			wantPrefix: "POST https://" + closed + ": ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.opts).Post(t.Context(), tt.raw, headers, []byte(`{}`))
			var de *DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("Post = %v, want a *DeliveryError", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "s3cr3t") || strings.Contains(msg, "SIGNATURE") {
				t.Errorf("Post error = %q, want neither the secret nor the signature", msg)
			}
			if !strings.HasPrefix(msg, tt.wantPrefix) {
				t.Errorf("Post error = %q, want prefix %q", msg, tt.wantPrefix)
			}
			if got := errors.Is(err, ErrDestinationRefused); got != tt.wantRefused {
				t.Errorf("errors.Is(%q, ErrDestinationRefused) = %v, want %v", msg, got, tt.wantRefused)
			}
			if got := de.Timeout(); got != tt.wantTimeout {
				t.Errorf("Timeout() of %q = %v, want %v", msg, got, tt.wantTimeout)
			}
		})
	}
}

// freePort returns a loopback host:port on which nothing listens.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
