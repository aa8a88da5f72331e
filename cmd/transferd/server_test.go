package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestServeDrainsRequestsInFlight stops the server while a request is in flight: the request still
// gets its answer, and serve returns cleanly.
func TestServeDrainsRequestsInFlight(t *testing.T) {
	started := make(chan struct{})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			time.Sleep(500 * time.Millisecond)
			io.WriteString(w, "done")
		}),
		WriteTimeout: 5 * time.Second,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, srv, ln, slog.New(slog.DiscardHandler)) }()

	type answer struct {
		body string
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		res, err := http.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		answered <- answer{string(b), err}
	}()
	<-started
	stop()
	if a := <-answered; a.err != nil || a.body != "done" {
		t.Errorf("request in flight during shutdown: got %q, %v; want done", a.body, a.err)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		t.Errorf("server still accepts connections after shutdown")
	}
}
