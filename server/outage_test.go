package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/client"

	"github.com/transferd/transferd/internal/faultproxy"
	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/service"
	"github.com/transferd/transferd/transfer"
)

// TestDependencyOutageIs503 checks what docs/reliability.md promises: while PostgreSQL or Temporal
// does not answer, reads and writes answer 503 unavailable with Retry-After, naming no host or
// driver, rather than 500; and that an error that is no outage is still a 500.
func TestDependencyOutageIs503(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	dsn := pgtest.NewDatabase(t)
	// One store reaches the database directly; the other through a proxy that the test cuts.
	direct, err := ledger.Open(ctx, dsn, ledger.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { direct.Close() })
	if _, err := direct.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	u.Host = proxy.Addr()
	proxied, err := ledger.Open(ctx, u.String(), ledger.Options{})
	if err != nil {
		t.Fatalf("open through the proxy: %v", err)
	}
	t.Cleanup(func() { proxied.Close() })
	// Temporal is a client of an address where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	deadTemporal, err := client.NewLazyClient(client.Options{HostPort: deadAddr, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deadTemporal.Close)
	auth, err := server.NewAuth(testSecret, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	handler := func(l server.Ledger, store service.Store) http.Handler {
		return server.New(server.Config{Ledger: l, Transfers: service.New(store, deadTemporal, testQueue, log), Auth: auth, Log: log}).Handler()
	}
	hash, err := auth.HashPassword("password-123")
	if err != nil {
		t.Fatal(err)
	}
	user, err := direct.CreateUser(ctx, transfer.User{ID: uuid.New(), Email: "payer@example.com", Name: "Payer", Role: transfer.RoleUser, PasswordHash: hash})
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := auth.Issue(user)
	if err != nil {
		t.Fatal(err)
	}
	from, _, err := direct.CreateAccount(ctx, transfer.NewAccount{OwnerID: user.ID, Currency: "USD"})
	if err != nil {
		t.Fatal(err)
	}
	to, _, err := direct.CreateAccount(ctx, transfer.NewAccount{OwnerID: user.ID, Currency: "USD"})
	if err != nil {
		t.Fatal(err)
	}
	transferBody := func() string {
		return fmt.Sprintf(`{"id":%q,"from_account_id":%q,"to_account_id":%q,"amount":100,"currency":"USD"}`, uuid.NewString(), from.ID, to.ID)
	}
	// A transfer whose row is recorded though its workflow could not start.
	pending, _, err := direct.CreateTransfer(ctx, transfer.Request{ID: uuid.New(), Kind: transfer.KindTransfer,
		FromAccountID: from.ID, ToAccountID: to.ID, Amount: 100, Currency: "USD", InitiatedBy: user.ID})
	if err != nil {
		t.Fatal(err)
	}

	serve := func(h http.Handler, method, path, token, body string) resp {
		var req *http.Request
		if body == "" {
			req = httptest.NewRequest(method, path, nil)
		} else {
			req = httptest.NewRequest(method, path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return resp{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	}
	unavailable := func(t *testing.T, r resp) {
		t.Helper()
		expectProblem(t, r, http.StatusServiceUnavailable, "unavailable")
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("Retry-After: got %q, want a number of seconds", r.header.Get("Retry-After"))
		}
	}

	t.Run("Temporal down", func(t *testing.T) {
		h := handler(direct, direct)
		t.Run("create a transfer", func(t *testing.T) {
			unavailable(t, serve(h, "POST", "/v1/transfers", token, transferBody()))
		})
		t.Run("cancel a transfer", func(t *testing.T) {
			unavailable(t, serve(h, "POST", "/v1/transfers/"+pending.ID.String()+"/cancel", token, ""))
		})
		t.Run("reads need only PostgreSQL", func(t *testing.T) {
			if r := serve(h, "GET", "/v1/transfers/"+pending.ID.String(), token, ""); r.status != http.StatusOK {
				t.Errorf("GET a transfer: got %s, want 200", r)
			}
		})
	})

	t.Run("a slow PostgreSQL sheds submissions", func(t *testing.T) {
		// Two submissions at a time; the others wait 100 ms for a slot, then are told to come back,
		// long before the slow writes of the two admitted could have ended, and record nothing.
		// The credential check of each request reads the ledger directly, so that what is timed is the
		// submissions' queue, not the check's round trips through the slow proxy.
		h := server.New(server.Config{Ledger: directCredentials{Ledger: proxied, direct: direct}, Transfers: service.New(proxied, deadTemporal, testQueue, log), Auth: auth, Log: log,
			MaxSubmits: 2, SubmitQueueWait: 100 * time.Millisecond}).Handler()
		if r := serve(h, "GET", "/v1/accounts/"+from.ID.String(), token, ""); r.status != http.StatusOK {
			t.Fatalf("before the latency: got %s, want 200", r)
		}
		proxy.SetLatency(500 * time.Millisecond)
		defer proxy.SetLatency(0)
		type answer struct {
			id   string
			r    resp
			took time.Duration
		}
		answers := make(chan answer, 8)
		for range 8 {
			go func() {
				id := uuid.NewString()
				body := fmt.Sprintf(`{"id":%q,"from_account_id":%q,"to_account_id":%q,"amount":100,"currency":"USD"}`, id, from.ID, to.ID)
				start := time.Now()
				r := serve(h, "POST", "/v1/transfers", token, body)
				answers <- answer{id, r, time.Since(start)}
			}()
		}
		shed := 0
		for range 8 {
			a := <-answers
			unavailable(t, a.r)
			if !bytes.Contains(a.r.body, []byte("at capacity")) {
				continue // admitted: its slow write, then the dead Temporal, made it a 503
			}
			shed++
			// An admitted write takes at least two round trips of 500 ms; a loaded machine may
			// start a request's goroutine late, so the bound leaves room above the queue wait.
			if a.took > 900*time.Millisecond {
				t.Errorf("shed after %v, want within about the 100 ms queue wait, before any admitted write could end", a.took)
			}
			if _, err := direct.Transfer(ctx, uuid.MustParse(a.id)); !transfer.IsCode(err, transfer.CodeNotFound) {
				t.Errorf("shed transfer %s: got %v, want no row", a.id, err)
			}
		}
		if shed != 6 {
			t.Errorf("shed %d of 8 submissions, want 6 (2 admitted)", shed)
		}
	})

	t.Run("PostgreSQL down", func(t *testing.T) {
		h := handler(proxied, proxied)
		if r := serve(h, "GET", "/v1/accounts/"+from.ID.String(), token, ""); r.status != http.StatusOK {
			t.Fatalf("before the cut: got %s, want 200", r)
		}
		proxy.Cut()
		for _, tt := range []struct{ method, path, token, body string }{
			{"GET", "/v1/me", token, ""},
			{"GET", "/v1/accounts", token, ""},
			{"GET", "/v1/accounts/" + from.ID.String(), token, ""},
			{"GET", "/v1/transfers", token, ""},
			{"GET", "/v1/transfers/" + pending.ID.String(), token, ""},
			{"POST", "/v1/accounts", token, `{"currency":"USD"}`},
			{"POST", "/v1/transfers", token, transferBody()},
			{"POST", "/v1/auth/token", "", `{"email":"payer@example.com","password":"password-123"}`},
		} {
			t.Run(tt.method+" "+tt.path, func(t *testing.T) {
				unavailable(t, serve(h, tt.method, tt.path, tt.token, tt.body))
			})
		}
		proxy.Close()
		t.Run("refused", func(t *testing.T) {
			unavailable(t, serve(h, "GET", "/v1/accounts", token, ""))
		})
	})

	t.Run("a bug is still a 500", func(t *testing.T) {
		h := handler(brokenLedger{direct}, direct)
		r := serve(h, "GET", "/v1/accounts/"+from.ID.String(), token, "")
		expectProblem(t, r, http.StatusInternalServerError, "internal")
		if got := r.header.Get("Retry-After"); got != "" {
			t.Errorf("Retry-After: got %q on a 500, want none", got)
		}
	})
}

// brokenLedger is a ledger with a bug: reading an account fails in a way no retry can fix.
type brokenLedger struct{ server.Ledger }

func (brokenLedger) Account(context.Context, uuid.UUID) (transfer.Account, error) {
	return transfer.Account{}, fmt.Errorf("ledger: account: %w", errors.New("cannot scan NULL into *int64"))
}

// directCredentials is a ledger whose credential checks go to another store.
type directCredentials struct {
	server.Ledger
	direct *ledger.Store
}

func (d directCredentials) Credential(ctx context.Context, userID, tokenID uuid.UUID) (transfer.Credential, error) {
	return d.direct.Credential(ctx, userID, tokenID)
}
