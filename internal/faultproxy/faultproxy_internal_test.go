package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// slowExit is how long a slowConn's Read takes to return once its connection is closed.
const slowExit = 300 * time.Millisecond

// slowConn is an upstream connection whose Read, once the connection is closed, takes slowExit to
// return, as a read stuck in a slow system call would. returned is set when such a Read returns.
type slowConn struct {
	net.Conn
	returned *atomic.Bool
}

func (c slowConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if errors.Is(err, net.ErrClosed) {
		time.Sleep(slowExit)
		c.returned.Store(true)
	}
	return n, err
}

// TestCloseWaitsForGoroutines checks that Close returns only after the goroutine reading from the
// upstream has returned, even when that takes a while after its connection is closed.
func TestCloseWaitsForGoroutines(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()

	var returned atomic.Bool
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return slowConn{Conn: c, returned: &returned}, nil
	}
	p, err := newProxy(ln.Addr().String(), dial)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	// Once the echo is back, the proxy's upstream reader is blocked in a Read again.
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !returned.Load() {
		t.Fatalf("Close returned after %v, before the upstream reader did", time.Since(start))
	}
}
