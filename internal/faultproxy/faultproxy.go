// Package faultproxy is a small TCP proxy for fault-injection tests. It sits between a client, such
// as a worker's Postgres pool, and an upstream address, and lets a test cut every connection at once,
// refuse new ones until it restores them, and add latency to the bytes it forwards.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// chunkSize is the most a pump reads from one side before handing the bytes to the other side.
const chunkSize = 32 << 10

// queueLen is how many chunks may wait in one direction for their latency to pass. It bounds the
// memory a direction holds to queueLen*chunkSize, as a real link's bandwidth-delay product would.
const queueLen = 16

// dialTimeout bounds how long a new connection waits for the upstream to answer.
const dialTimeout = 10 * time.Second

// Proxy forwards TCP connections from its own address to an upstream address. Its methods are safe
// for concurrent use.
type Proxy struct {
	upstream string
	dial     func(ctx context.Context, network, address string) (net.Conn, error)
	ln       net.Listener
	latency  atomic.Int64 // time.Duration added to each chunk, read at the moment it is due.

	mu     sync.Mutex
	links  map[*link]struct{}
	cut    bool
	closed bool
	stats  Stats

	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // closed by Close, so the accept loop's back-off returns at once.
	wg        sync.WaitGroup
}

// Stats counts what a Proxy did with its connections, for test assertions.
type Stats struct {
	// Accepted is how many client connections the proxy accepted and began forwarding.
	Accepted int64
	// Refused is how many client connections the proxy closed at once because it was cut.
	Refused int64
	// Cut is how many live connections Cut closed.
	Cut int64
	// Active is how many connections are being forwarded now.
	Active int
}

// New starts a proxy listening on 127.0.0.1 at a free port, forwarding every connection to upstream
// (a host:port). The upstream is only dialled when a client connects, so it need not be up yet.
func New(upstream string) (*Proxy, error) {
	var d net.Dialer
	return newProxy(upstream, d.DialContext)
}

// newProxy is New with the function that dials the upstream, which tests replace to watch the
// upstream connections.
func newProxy(upstream string, dial func(ctx context.Context, network, address string) (net.Conn, error)) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(upstream); err != nil {
		return nil, fmt.Errorf("faultproxy: upstream %q: %w", upstream, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{
		upstream: upstream,
		dial:     dial,
		ln:       ln,
		links:    map[*link]struct{}{},
		done:     make(chan struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the host:port clients should dial instead of the upstream.
func (p *Proxy) Addr() string {
	return p.ln.Addr().String()
}

// Cut closes every live connection at once, both towards the client and towards the upstream, with
// a reset rather than an orderly shutdown, so a client sees its connection fail mid-query. Until
// Restore is called, new connections are accepted and closed at once.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	links := p.takeLinks()
	p.stats.Cut += int64(len(links))
	p.mu.Unlock()
	for _, l := range links {
		l.kill(true)
	}
}

// Restore makes the proxy forward new connections again after Cut. Connections that Cut closed stay
// closed; clients must dial again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// SetLatency delays each chunk forwarded in either direction by d, on live connections as well as
// new ones; zero or less turns the delay off. Bytes are delayed but never reordered: a chunk waits
// for the ones before it even if the latency was lowered in between.
func (p *Proxy) SetLatency(d time.Duration) {
	p.latency.Store(int64(max(d, 0)))
}

// Stats returns the proxy's counters as they are now.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Active = len(p.links)
	return s
}

// Close stops listening, closes every connection and returns once all of the proxy's goroutines have
// exited. Calling it again does nothing and returns the first call's error.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		links := p.takeLinks()
		p.mu.Unlock()
		close(p.done)
		if err := p.ln.Close(); err != nil {
			p.closeErr = fmt.Errorf("faultproxy: close listener: %w", err)
		}
		for _, l := range links {
			l.kill(false)
		}
		p.wg.Wait()
	})
	return p.closeErr
}

// takeLinks empties the set of live links and returns them. The caller holds p.mu.
func (p *Proxy) takeLinks() []*link {
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	clear(p.links)
	return links
}

// acceptLoop hands each accepted connection to a link until the listener is closed.
func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Other errors, such as running out of file descriptors, may pass; back off as
			// net/http does rather than spin or give up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
				continue
			case <-p.done:
				return
			}
		}
		backoff = 0
		p.admit(c)
	}
}

// admit starts forwarding c, or closes it if the proxy is cut or closed.
func (p *Proxy) admit(c net.Conn) {
	p.mu.Lock()
	if p.closed || p.cut {
		if p.cut && !p.closed {
			p.stats.Refused++
		}
		p.mu.Unlock()
		abort(c)
		return
	}
	l := &link{p: p, client: c, done: make(chan struct{})}
	p.links[l] = struct{}{}
	p.stats.Accepted++
	// The link is registered before its goroutine starts, so Cut and Close see it even while it
	// is still dialling the upstream, and Close's Wait counts it.
	p.wg.Add(1)
	p.mu.Unlock()
	go l.run()
}

// forget removes l from the live links once it has ended by itself.
func (p *Proxy) forget(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// link is one client connection and its upstream connection.
type link struct {
	p      *Proxy
	client net.Conn

	mu         sync.Mutex
	upstream   net.Conn           // nil until dialled.
	cancelDial context.CancelFunc // non-nil while dialling, so kill can stop the dial.
	killed     bool
	done       chan struct{} // closed by kill, to stop the pumps' waits.
}

// run dials the upstream and forwards both directions until they have both ended or the link is
// killed, then closes both connections.
func (l *link) run() {
	defer l.p.wg.Done()
	defer l.p.forget(l)

	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	l.mu.Lock()
	if l.killed {
		l.mu.Unlock()
		return
	}
	l.cancelDial = cancel
	l.mu.Unlock()
	up, err := l.p.dial(ctx, "tcp", l.p.upstream)
	if err != nil {
		l.kill(false)
		return
	}
	l.mu.Lock()
	l.cancelDial = nil
	if l.killed {
		l.mu.Unlock()
		abort(up)
		return
	}
	l.upstream = up
	l.mu.Unlock()

	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); l.pump(up, l.client) }()
	go func() { defer pumps.Done(); l.pump(l.client, up) }()
	pumps.Wait()
	l.kill(false)
}

// kill closes both connections, with a reset if abortive, and stops the link's pumps. Only the first
// call has any effect.
func (l *link) kill(abortive bool) {
	l.mu.Lock()
	if l.killed {
		l.mu.Unlock()
		return
	}
	l.killed = true
	close(l.done)
	if l.cancelDial != nil {
		l.cancelDial()
	}
	up := l.upstream
	l.mu.Unlock()
	closeConn := func(c net.Conn) { _ = c.Close() }
	if abortive {
		closeConn = abort
	}
	closeConn(l.client)
	if up != nil {
		closeConn(up)
	}
}

// chunk is what one read from a source returned, stamped with when it was read.
type chunk struct {
	data []byte
	err  error
	at   time.Time
}

// pump copies src to dst, holding each chunk until the proxy's latency has passed since it was read.
// A reader goroutine keeps reading while the writer waits, so the latency delays the bytes without
// lowering the throughput below queueLen*chunkSize per latency. When src ends cleanly, pump shuts
// down dst's write side so the other end sees EOF and the opposite direction may go on; on any
// error it kills the link.
func (l *link) pump(dst, src net.Conn) {
	queue := make(chan chunk, queueLen)
	l.p.wg.Add(1)
	go func() {
		defer l.p.wg.Done()
		for {
			buf := make([]byte, chunkSize)
			n, err := src.Read(buf)
			c := chunk{data: buf[:n], err: err, at: time.Now()}
			select {
			case queue <- c:
			case <-l.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var c chunk
		select {
		case c = <-queue:
		case <-l.done:
			return
		}
		if wait := time.Until(c.at.Add(time.Duration(l.p.latency.Load()))); wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-l.done:
				return
			}
		}
		if len(c.data) > 0 {
			if _, err := dst.Write(c.data); err != nil {
				l.kill(false)
				return
			}
		}
		if c.err != nil {
			if errors.Is(c.err, io.EOF) {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
					return
				}
			}
			l.kill(false)
			return
		}
	}
}

// abort closes c with a TCP reset where it can, so the peer sees the connection fail rather than
// end in order.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
