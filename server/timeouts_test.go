package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/transfer"
)

// timeScale is how much faster than in production the slow-client tests run the HTTP server's
// timeouts, all of them, so that their proportions stay those of production.
const timeScale = 25

// statusLog is a slog handler that passes on the status of each access log line.
type statusLog struct{ statuses chan int }

func (h statusLog) Enabled(context.Context, slog.Level) bool { return true }
func (h statusLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h statusLog) WithGroup(string) slog.Handler            { return h }
func (h statusLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "http request" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "status" {
				h.statuses <- int(a.Value.Int64())
			}
			return true
		})
	}
	return nil
}

// slowTransfers accepts every transfer and waits as long as asked, timeScale times faster.
type slowTransfers struct{ server.Transfers }

func (slowTransfers) Submit(_ context.Context, r transfer.Request) (transfer.Transfer, bool, error) {
	return transfer.Transfer{ID: uuid.New(), Kind: r.Kind, ToAccountID: r.ToAccountID, Amount: r.Amount, Currency: r.Currency, Status: transfer.StatusPending}, true, nil
}

func (slowTransfers) Wait(ctx context.Context, id uuid.UUID, d time.Duration) (transfer.Transfer, error) {
	select {
	case <-time.After(d / timeScale):
	case <-ctx.Done():
		return transfer.Transfer{}, ctx.Err()
	}
	return transfer.Transfer{ID: id, Status: transfer.StatusPending}, nil
}

// TestHTTPServerLimits checks that the http.Server of NewHTTPServer bounds every phase of a request:
// without a timeout a slow client could hold a connection and a handler forever.
func TestHTTPServerLimits(t *testing.T) {
	auth, err := server.NewAuth(testSecret, 0, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	const maxWait = 30 * time.Second
	srv := server.New(server.Config{Auth: auth, MaxWait: maxWait}).NewHTTPServer(":0")
	tests := []struct {
		name string
		ok   bool
	}{
		{fmt.Sprintf("ReadHeaderTimeout %v is set and at most 10s", srv.ReadHeaderTimeout), srv.ReadHeaderTimeout > 0 && srv.ReadHeaderTimeout <= 10*time.Second},
		{fmt.Sprintf("ReadTimeout %v is set, at least ReadHeaderTimeout and at most 30s", srv.ReadTimeout), srv.ReadTimeout >= srv.ReadHeaderTimeout && srv.ReadTimeout <= 30*time.Second},
		// The write deadline is set when the headers have arrived: it must cover the slowest body
		// the read timeout lets in, then a ?wait= of MaxWait, and leave time to answer.
		{fmt.Sprintf("WriteTimeout %v covers ReadTimeout %v, MaxWait %v and 5s", srv.WriteTimeout, srv.ReadTimeout, maxWait), srv.WriteTimeout >= srv.ReadTimeout+maxWait+5*time.Second},
		{fmt.Sprintf("WriteTimeout %v is at most 2 minutes", srv.WriteTimeout), srv.WriteTimeout <= 2*time.Minute},
		{fmt.Sprintf("IdleTimeout %v is set and at most 5 minutes", srv.IdleTimeout), srv.IdleTimeout > 0 && srv.IdleTimeout <= 5*time.Minute},
		{fmt.Sprintf("MaxHeaderBytes %d is from 16 KiB to 1 MiB", srv.MaxHeaderBytes), srv.MaxHeaderBytes >= 16<<10 && srv.MaxHeaderBytes <= 1<<20},
	}
	for _, tt := range tests {
		if !tt.ok {
			t.Errorf("got %s: false, want true", tt.name)
		}
	}
	if srv.Handler == nil {
		t.Errorf("handler: got nil, want the API")
	}
}

// TestSlowClientsAreCutOff runs the http.Server of NewHTTPServer, its timeouts scaled down by
// timeScale, against clients that send their headers or body a byte at a time, or go idle, and
// checks that each is cut off in time, that a handler reading a slow body answers 408 and returns,
// and that a legitimate ?wait= of MaxWait is still answered.
func TestSlowClientsAreCutOff(t *testing.T) {
	t.Parallel()
	auth, err := server.NewAuth(testSecret, 0, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	admin, _, err := auth.Issue(transfer.User{ID: uuid.New(), Role: transfer.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	// start serves a fresh API and returns its address, its scaled server and its access log.
	start := func(t *testing.T) (string, *http.Server, chan int) {
		log := statusLog{statuses: make(chan int, 100)}
		api := server.New(server.Config{Ledger: trustTokens{}, Auth: auth, Transfers: slowTransfers{}, Log: slog.New(log)})
		srv := api.NewHTTPServer("127.0.0.1:0")
		for _, d := range []*time.Duration{&srv.ReadHeaderTimeout, &srv.ReadTimeout, &srv.WriteTimeout, &srv.IdleTimeout} {
			*d /= timeScale
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String(), srv, log.statuses
	}
	// closedWithin reads the connection until the server closes it and returns what it answered,
	// failing the test if that takes longer than d.
	closedWithin := func(t *testing.T, conn net.Conn, d time.Duration) string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(d))
		b, err := io.ReadAll(conn)
		if err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("connection still open after %v: %v (read %q)", d, err, b)
		}
		return string(b)
	}
	// trickle writes one byte of s every 20ms until it is written or the server stops reading.
	trickle := func(conn net.Conn, s string) {
		for i := range len(s) {
			if _, err := conn.Write([]byte{s[i]}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// connect opens a connection to addr, closed when the subtest ends.
	connect := func(t *testing.T, addr string) net.Conn {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	// slack covers scheduling on a busy machine.
	const slack = 2 * time.Second

	t.Run("headers sent a byte at a time", func(t *testing.T) {
		t.Parallel()
		addr, srv, statuses := start(t)
		// Before the dial: the server's clock starts at its accept, which a descheduled test may see late.
		began := time.Now()
		conn := connect(t, addr)
		go trickle(conn, "POST /v1/auth/token HTTP/1.1\r\nHost: transferd\r\n"+strings.Repeat("X-Slow: loris\r\n", 1000))
		closedWithin(t, conn, srv.ReadHeaderTimeout+slack)
		if took := time.Since(began); took < srv.ReadHeaderTimeout/2 {
			t.Errorf("closed after %v, before ReadHeaderTimeout %v", took, srv.ReadHeaderTimeout)
		}
		select {
		case s := <-statuses:
			t.Errorf("a handler ran (status %d) for a request whose headers never ended", s)
		default:
		}
	})

	t.Run("body sent a byte at a time", func(t *testing.T) {
		t.Parallel()
		addr, srv, statuses := start(t)
		began := time.Now() // before the dial, as above
		conn := connect(t, addr)
		body := `{"email":"ada@example.com","password":"` + strings.Repeat("p", 900) + `"}`
		fmt.Fprintf(conn, "POST /v1/auth/token HTTP/1.1\r\nHost: transferd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
		go trickle(conn, body)
		select {
		case s := <-statuses:
			if s != http.StatusRequestTimeout {
				t.Errorf("handler's status: got %d, want 408", s)
			}
			if took := time.Since(began); took < srv.ReadTimeout/2 {
				t.Errorf("handler returned after %v, before ReadTimeout %v", took, srv.ReadTimeout)
			}
		case <-time.After(srv.ReadTimeout + slack):
			t.Fatalf("the handler still runs %v after the request began; ReadTimeout is %v", srv.ReadTimeout+slack, srv.ReadTimeout)
		}
		answer := closedWithin(t, conn, slack)
		res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(answer)), nil)
		if err != nil {
			t.Fatalf("answer %q: %v", answer, err)
		}
		b, _ := io.ReadAll(res.Body)
		r := resp{status: res.StatusCode, header: res.Header, body: b}
		r.problem(t, http.StatusRequestTimeout, "request_timeout")
	})

	t.Run("a ?wait= of MaxWait is answered", func(t *testing.T) {
		t.Parallel()
		addr, _, _ := start(t)
		body := `{"account_id":"` + uuid.NewString() + `","amount":100,"currency":"USD"}`
		req, err := http.NewRequest("POST", "http://"+addr+"/v1/deposits?wait=30s", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		began := time.Now()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("deposit with ?wait=30s: %v", err)
		}
		res.Body.Close()
		if took := time.Since(began); res.StatusCode != http.StatusAccepted || took < 30*time.Second/timeScale {
			t.Errorf("deposit with ?wait=30s: got %d after %v, want 202 after at least %v", res.StatusCode, took, 30*time.Second/timeScale)
		}
	})

	t.Run("an idle connection is closed", func(t *testing.T) {
		t.Parallel()
		addr, srv, _ := start(t)
		conn := connect(t, addr)
		fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: transferd\r\n\r\n")
		rd := bufio.NewReader(conn)
		res, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		began := time.Now()
		conn.SetReadDeadline(time.Now().Add(srv.IdleTimeout + slack))
		if _, err := rd.ReadByte(); err != io.EOF {
			t.Fatalf("idle connection: got %v after %v, want it closed within IdleTimeout %v", err, time.Since(began), srv.IdleTimeout)
		}
		if took := time.Since(began); took < srv.IdleTimeout/2 {
			t.Errorf("idle connection closed after %v, before IdleTimeout %v", took, srv.IdleTimeout)
		}
	})

	t.Run("headers over MaxHeaderBytes", func(t *testing.T) {
		t.Parallel()
		addr, _, statuses := start(t)
		conn := connect(t, addr)
		go fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: transferd\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 1<<20))
		answer := closedWithin(t, conn, slack)
		if !strings.HasPrefix(answer, "HTTP/1.1 431") {
			t.Errorf("answer: got %.40q, want 431", answer)
		}
		select {
		case s := <-statuses:
			t.Errorf("a handler ran (status %d) for headers over the limit", s)
		default:
		}
	})
}

// trustTokens is a ledger that knows every token's user as an active admin, for tests of the HTTP
// server's own behaviour that need a caller and no database.
type trustTokens struct{ server.Ledger }

func (trustTokens) Credential(_ context.Context, userID, _ uuid.UUID) (transfer.Credential, error) {
	return transfer.Credential{User: transfer.User{ID: userID, Role: transfer.RoleAdmin, Status: transfer.UserActive}}, nil
}
