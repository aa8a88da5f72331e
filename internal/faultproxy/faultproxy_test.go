package faultproxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/faultproxy"
	"github.com/transferd/transferd/internal/pgtest"
)

// prompt is how long a test lets a connection take to notice a cut or a close. Failures are
// expected within milliseconds; the margin is for a loaded machine running -race.
const prompt = 5 * time.Second

// echoServer is an upstream that writes back whatever it reads, and counts its open connections so
// a test can see the proxy closed the upstream side too.
type echoServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open int
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &echoServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open++
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				_, _ = io.Copy(c, c)
				_ = c.Close()
				s.mu.Lock()
				s.open--
				s.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func (s *echoServer) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// newProxy starts a proxy in front of upstream and closes it when the test ends.
func newProxy(t *testing.T, upstream string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(upstream)
	if err != nil {
		t.Fatalf("New(%q): %v", upstream, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, prompt)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes msg and reads the same number of bytes back, failing the test on any error.
func roundTrip(t *testing.T, c net.Conn, msg []byte) []byte {
	t.Helper()
	got, err := tryRoundTrip(c, msg)
	if err != nil {
		t.Fatalf("round trip of %d bytes: %v", len(msg), err)
	}
	return got
}

// tryRoundTrip writes msg while it reads the same number of bytes back, so payloads larger than the
// socket buffers cannot deadlock against the echo.
func tryRoundTrip(c net.Conn, msg []byte) ([]byte, error) {
	if err := c.SetDeadline(time.Now().Add(prompt)); err != nil {
		return nil, err
	}
	defer c.SetDeadline(time.Time{})
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		werr <- err
	}()
	got := make([]byte, len(msg))
	_, rerr := io.ReadFull(c, got)
	if err := <-werr; err != nil {
		return nil, err
	}
	return got, rerr
}

// waitFor polls cond until it holds or the prompt passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(prompt)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantBroken reads from c until it fails, and wants that to be a reset or EOF, the way a client sees
// a cut connection, rather than a timeout. Bytes the proxy forwarded before the break may still be
// read first.
func wantBroken(t *testing.T, c net.Conn) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(prompt))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("Read timed out after %v, want a reset or EOF", time.Since(start))
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewRejectsBadUpstream(t *testing.T) {
	if p, err := faultproxy.New("no port here"); err == nil {
		_ = p.Close()
		t.Fatal("New accepted an upstream without a port, want an error")
	}
}

func TestForwardsBothWays(t *testing.T) {
	echo := newEchoServer(t)
	p := newProxy(t, echo.addr())
	tests := []struct {
		name string
		size int
	}{
		{"one byte", 1},
		{"one chunk", 32 << 10},
		{"one MiB", 1 << 20},
	}
	c := dial(t, p.Addr())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := randomBytes(t, tt.size)
			got := roundTrip(t, c, msg)
			if !bytes.Equal(got, msg) {
				t.Fatalf("got %d bytes back that differ from the %d sent", len(got), len(msg))
			}
		})
	}
	if got, want := p.Stats(), (faultproxy.Stats{Accepted: 1, Active: 1}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

// TestHalfClose checks that a client closing its write side still gets the rest of the answer, as a
// client that sends a request and then shuts down its side expects.
func TestHalfClose(t *testing.T) {
	echo := newEchoServer(t)
	p := newProxy(t, echo.addr())
	c := dial(t, p.Addr())
	msg := randomBytes(t, 100<<10)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(prompt))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("got %d bytes back that differ from the %d sent", len(got), len(msg))
	}
	waitFor(t, "the link to end", func() bool { return p.Stats().Active == 0 })
}

func TestCutBreaksLiveConnections(t *testing.T) {
	echo := newEchoServer(t)
	p := newProxy(t, echo.addr())
	conns := []net.Conn{dial(t, p.Addr()), dial(t, p.Addr())}
	for _, c := range conns {
		roundTrip(t, c, []byte("ping"))
	}

	p.Cut()
	for _, c := range conns {
		wantBroken(t, c)
		if _, err := tryRoundTrip(c, []byte("ping")); err == nil {
			t.Error("round trip on a cut connection succeeded, want an error")
		}
	}
	waitFor(t, "the upstream side to be closed", func() bool { return echo.openConns() == 0 })

	// While cut, a new connection is refused: either the dial fails or the connection is closed
	// before anything comes back.
	if c, err := net.DialTimeout("tcp", p.Addr(), prompt); err == nil {
		defer c.Close()
		_, _ = c.Write([]byte("ping"))
		wantBroken(t, c)
	}
	if got, want := echo.openConns(), 0; got != want {
		t.Errorf("upstream has %d open connections while cut, want %d", got, want)
	}
	want := faultproxy.Stats{Accepted: 2, Refused: 1, Cut: 2}
	waitFor(t, "the refusal to be counted", func() bool { return p.Stats() == want })
}

func TestRestore(t *testing.T) {
	echo := newEchoServer(t)
	p := newProxy(t, echo.addr())
	p.Cut()
	p.Restore()
	c := dial(t, p.Addr())
	if got := roundTrip(t, c, []byte("after restore")); string(got) != "after restore" {
		t.Fatalf("got %q back, want %q", got, "after restore")
	}

	// A second cut and restore behave the same way.
	p.Cut()
	wantBroken(t, c)
	p.Restore()
	c = dial(t, p.Addr())
	roundTrip(t, c, []byte("again"))
	if got, want := p.Stats(), (faultproxy.Stats{Accepted: 2, Cut: 1, Active: 1}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestLatency(t *testing.T) {
	const latency = 50 * time.Millisecond
	echo := newEchoServer(t)
	p := newProxy(t, echo.addr())

	// The latency applies to a connection that was already open when it was set.
	live := dial(t, p.Addr())
	roundTrip(t, live, []byte("warm up"))
	p.SetLatency(latency)
	start := time.Now()
	roundTrip(t, live, []byte("ping"))
	if got := time.Since(start); got < latency {
		t.Errorf("round trip on a live connection took %v, want at least %v", got, latency)
	}

	// It applies to new connections too.
	c := dial(t, p.Addr())
	start = time.Now()
	roundTrip(t, c, []byte("ping"))
	if got := time.Since(start); got < latency {
		t.Errorf("round trip on a new connection took %v, want at least %v", got, latency)
	}

	// Zero turns it off again; no upper bound is asserted, as a loaded machine may be slow anyway.
	p.SetLatency(0)
	roundTrip(t, c, []byte("ping"))
}

// TestLatencyKeepsOrder sends numbered messages in many small writes while the latency is lowered
// half way through, which would let later chunks overtake earlier ones if they were delayed
// independently.
func TestLatencyKeepsOrder(t *testing.T) {
	const n = 2000
	echo := newEchoServer(t)
	p := newProxy(t, echo.addr())
	p.SetLatency(100 * time.Millisecond)
	c := dial(t, p.Addr())
	_ = c.SetDeadline(time.Now().Add(prompt))

	werr := make(chan error, 1)
	go func() {
		var b [4]byte
		for i := range uint32(n) {
			if i == n/2 {
				p.SetLatency(0)
			}
			binary.BigEndian.PutUint32(b[:], i)
			if _, err := c.Write(b[:]); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	var b [4]byte
	for want := range uint32(n) {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatalf("reading message %d: %v", want, err)
		}
		if got := binary.BigEndian.Uint32(b[:]); got != want {
			t.Fatalf("got message %d, want %d", got, want)
		}
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
}

// TestUnreachableUpstream checks that a client whose upstream cannot be dialled sees its connection
// closed rather than hang.
func TestUnreachableUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := newProxy(t, addr)
	c := dial(t, p.Addr())
	wantBroken(t, c)
	waitFor(t, "the link to end", func() bool { return p.Stats().Active == 0 })
}

// TestCloseReleasesEverything runs Close with connections in every state (idle, with bytes held
// back by a long latency, in the middle of a large transfer) and wants it to return promptly,
// break every connection, and leave no goroutine of the proxy behind.
func TestCloseReleasesEverything(t *testing.T) {
	echo := newEchoServer(t)
	baseline := runtime.NumGoroutine()
	p, err := faultproxy.New(echo.addr())
	if err != nil {
		t.Fatal(err)
	}

	idle := dial(t, p.Addr())
	roundTrip(t, idle, []byte("ping"))
	busy := dial(t, p.Addr())
	go func() { _, _ = busy.Write(make([]byte, 8<<20)) }()
	p.SetLatency(time.Hour)
	held := dial(t, p.Addr())
	if _, err := held.Write([]byte("held back")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three links", func() bool { return p.Stats().Active == 3 })

	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := time.Since(start); got > prompt {
		t.Errorf("Close took %v", got)
	}
	// Close returns only after its goroutines have exited, so none may still be waiting on
	// anything; one may at most be returning from its last deferred call, so give those a moment.
	if blocked := blockedProxyGoroutines(); blocked != "" {
		t.Fatalf("goroutines of the proxy still blocked after Close returned:\n%s", blocked)
	}
	waitFor(t, "no faultproxy goroutines", func() bool { return blockedProxyGoroutines() == "" && !proxyGoroutines() })

	for _, c := range []net.Conn{idle, busy, held} {
		wantBroken(t, c)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), prompt); err == nil {
		_ = c.Close()
		t.Error("dial after Close succeeded, want an error")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
	waitFor(t, "the upstream side to be closed", func() bool { return echo.openConns() == 0 })
	waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}

// proxyFrame marks a stack that is in the proxy's own code.
const proxyFrame = "internal/faultproxy.(*"

// proxyGoroutines reports whether any goroutine is in the proxy's code, in whatever state.
func proxyGoroutines() bool {
	return strings.Contains(allStacks(), proxyFrame)
}

// blockedProxyGoroutines returns the stacks of goroutines in the proxy's code that are waiting
// (on I/O, a channel, a lock or a timer) rather than running, or "" if there are none.
func blockedProxyGoroutines() string {
	var blocked []string
	for _, g := range strings.Split(allStacks(), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		running := strings.Contains(header, "[running]") || strings.Contains(header, "[runnable]")
		if strings.Contains(g, proxyFrame) && !running {
			blocked = append(blocked, g)
		}
	}
	return strings.Join(blocked, "\n\n")
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// TestPostgres drives a real PostgreSQL connection through the proxy: a cut breaks the connection a
// query is using, and after a restore a new connection works.
func TestPostgres(t *testing.T) {
	cfg, err := pgx.ParseConfig(pgtest.AdminURL())
	if err != nil {
		t.Fatalf("parse %s: %v", pgtest.AdminURL(), err)
	}
	upstream := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		t.Skipf("PostgreSQL is on a Unix socket (%s), which the proxy cannot front", cfg.Host)
	}
	if c, err := net.DialTimeout("tcp", upstream, 2*time.Second); err != nil {
		t.Skipf("PostgreSQL is not reachable at %s: %v", upstream, err)
	} else {
		_ = c.Close()
	}

	p := newProxy(t, upstream)
	proxyAddr := p.Addr()
	host, port, _ := net.SplitHostPort(proxyAddr)
	portNum, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		t.Fatalf("proxy address %s: %v", proxyAddr, err)
	}
	cfg.Host = host
	cfg.Port = uint16(portNum)
	cfg.Fallbacks = nil
	cfg.ConnectTimeout = prompt

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connect := func() (*pgx.Conn, error) {
		conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
		if err == nil {
			t.Cleanup(func() { _ = conn.Close(context.Background()) })
		}
		return conn, err
	}
	query := func(conn *pgx.Conn) (int, error) {
		qctx, qcancel := context.WithTimeout(ctx, prompt)
		defer qcancel()
		var n int
		err := conn.QueryRow(qctx, "SELECT 41 + 1").Scan(&n)
		return n, err
	}

	conn, err := connect()
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	if n, err := query(conn); err != nil || n != 42 {
		t.Fatalf("query before the cut = %d, %v; want 42, nil", n, err)
	}

	p.Cut()
	start := time.Now()
	if _, err := query(conn); err == nil {
		t.Fatal("query on a cut connection succeeded, want an error")
	} else if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("query on a cut connection hung until its deadline (%v), want it to fail at once", time.Since(start))
	}
	if _, err := connect(); err == nil {
		t.Fatal("connect while cut succeeded, want an error")
	}

	p.Restore()
	conn, err = connect()
	if err != nil {
		t.Fatalf("connect after restore: %v", err)
	}
	if n, err := query(conn); err != nil || n != 42 {
		t.Fatalf("query after restore = %d, %v; want 42, nil", n, err)
	}
	// When a query breaks, pgx sends a cancel request to the server on a short-lived connection of
	// its own, which lands before or after the restore; so only the counts it cannot change are
	// exact, and the one live connection is the restored one once the cancel request's has ended.
	waitFor(t, "one live connection", func() bool { return p.Stats().Active == 1 })
	if got := p.Stats(); got.Cut != 1 || got.Refused < 1 || got.Accepted < 2 {
		t.Errorf("Stats() = %+v, want Cut 1, Refused >= 1 and Accepted >= 2", got)
	}
}
