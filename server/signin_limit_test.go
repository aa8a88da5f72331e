package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/transfer"
)

// usersOnly is a Ledger that knows users and nothing else: signing in reads nothing more.
type usersOnly struct {
	server.Ledger
	users map[string]transfer.User
}

func (l usersOnly) UserByEmail(_ context.Context, email string) (transfer.User, error) {
	if u, ok := l.users[strings.ToLower(email)]; ok {
		return u, nil
	}
	return transfer.User{}, transfer.Errorf(transfer.CodeNotFound, "no user has this email")
}

// attempt is one sign-in in a sequence.
type attempt struct {
	from     string // the TCP peer, host:port
	email    string
	password string // the right one unless set
	headers  []string
	body     string // sent instead of the JSON of email and password when set
	want     int
}

// TestSignInRateLimit plays sequences of sign-ins through the handler, each on a fresh server with
// 3 attempts an hour per email and 5 per address, and checks which are answered 429.
func TestSignInRateLimit(t *testing.T) {
	auth, err := server.NewAuth(testSecret, 0, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	const email, password = "grace@example.com", "cobol-rules-1959"
	u, err := auth.NewUser(email, password, "Grace", transfer.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	u.ID = uuid.New()
	ledger := usersOnly{users: map[string]transfer.User{email: u}}
	limit := server.SignInLimit{PerEmail: server.Rate{Attempts: 3, Window: time.Hour}, PerIP: server.Rate{Attempts: 5, Window: time.Hour}}
	wrong := "not-the-password"
	const peer, other = "198.51.100.1:40000", "203.0.113.7:40000"
	// emails returns n attempts with distinct unknown emails.
	emails := func(n int, from string, want int, headers ...string) []attempt {
		var out []attempt
		for i := range n {
			out = append(out, attempt{from: from, email: fmt.Sprintf("nobody-%d-%s@example.com", i, uuid.NewString()[:8]), headers: headers, want: want})
		}
		return out
	}
	concat := func(parts ...[]attempt) []attempt {
		var out []attempt
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}

	tests := []struct {
		name     string
		proxies  []string
		attempts []attempt
	}{
		{name: "the email's limit holds from any address and in any case", attempts: []attempt{
			{from: peer, email: email, password: wrong, want: 401},
			{from: peer, email: email, password: wrong, want: 401},
			{from: peer, email: email, want: 200},
			{from: peer, email: email, want: 429},
			{from: other, email: email, want: 429},
			{from: other, email: " GRACE@Example.com", want: 429},
			{from: peer, email: "someone-else@example.com", want: 401},
		}},
		{name: "an unknown email is limited like a user's", attempts: []attempt{
			{from: peer, email: "ghost@example.com", want: 401},
			{from: peer, email: "ghost@example.com", want: 401},
			{from: peer, email: "ghost@example.com", want: 401},
			{from: peer, email: "ghost@example.com", want: 429},
		}},
		{name: "the address's limit holds for any email", attempts: concat(
			emails(5, peer, 401),
			[]attempt{{from: peer, email: email, want: 429}, {from: other, email: email, want: 200}},
		)},
		{name: "X-Forwarded-For from an untrusted peer does not choose the address", attempts: concat(
			emails(1, peer, 401, "X-Forwarded-For", "10.0.0.1"),
			emails(1, peer, 401, "X-Forwarded-For", "10.0.0.2"),
			emails(1, peer, 401, "X-Real-IP", "10.0.0.3"),
			emails(1, peer, 401, "X-Forwarded-For", "10.0.0.4, 10.0.0.5"),
			emails(1, peer, 401, "X-Forwarded-For", "2001:db8::6"),
			emails(1, peer, 429, "X-Forwarded-For", "10.0.0.7"),
		)},
		{name: "a trusted proxy's X-Forwarded-For names the client", proxies: []string{"192.0.2.0/24"}, attempts: concat(
			emails(5, "192.0.2.1:40000", 401, "X-Forwarded-For", "203.0.113.9"),
			emails(1, "192.0.2.2:40000", 429, "X-Forwarded-For", "203.0.113.9"),
			emails(1, "192.0.2.1:40000", 401, "X-Forwarded-For", "203.0.113.10"),
			// A peer outside the trusted range is itself the client, whatever it forwards.
			emails(5, "198.51.100.9:40000", 401, "X-Forwarded-For", "203.0.113.11"),
			emails(1, "198.51.100.9:40000", 429, "X-Forwarded-For", "203.0.113.12"),
		)},
		{name: "an IPv6 client counts as its /64", attempts: concat(
			emails(1, "[2001:db8:1:2::1]:40000", 401),
			emails(1, "[2001:db8:1:2::2]:40000", 401),
			emails(1, "[2001:db8:1:2:aaaa::3]:40000", 401),
			emails(1, "[2001:db8:1:2:ffff:ffff:ffff:ffff]:40000", 401),
			emails(1, "[2001:db8:1:2::5]:40000", 401),
			emails(1, "[2001:db8:1:2::6]:40000", 429),
			emails(1, "[2001:db8:1:3::1]:40000", 401),
		)},
		{name: "an IPv4-mapped IPv6 peer counts as its IPv4 address", attempts: concat(
			emails(5, "[::ffff:198.51.100.1]:40000", 401),
			emails(1, peer, 429),
		)},
		{name: "malformed attempts are not counted", attempts: concat(
			[]attempt{
				{from: peer, body: `{"email":`, want: 400}, {from: peer, body: `{"email":"x","pass":"y"}`, want: 400},
				{from: peer, body: `[]`, want: 400}, {from: peer, body: `{"email":"x","password":"y"}x`, want: 400},
				{from: peer, body: `{"email":`, want: 400}, {from: peer, body: `{"email":`, want: 400},
			},
			emails(5, peer, 401),
		)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := server.New(server.Config{Ledger: ledger, Auth: auth, SignInLimit: limit, TrustedProxies: tt.proxies, Log: slog.New(slog.DiscardHandler)}).Handler()
			for i, at := range tt.attempts {
				pw := at.password
				if pw == "" {
					pw = password
				}
				body := at.body
				if body == "" {
					b, _ := json.Marshal(map[string]string{"email": at.email, "password": pw})
					body = string(b)
				}
				req := httptest.NewRequest("POST", "/v1/auth/token", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.RemoteAddr = at.from
				for j := 0; j+1 < len(at.headers); j += 2 {
					req.Header.Set(at.headers[j], at.headers[j+1])
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != at.want {
					t.Fatalf("attempt #%d (%s from %s %v): got %d %s, want %d", i, at.email, at.from, at.headers, rec.Code, rec.Body, at.want)
				}
				if rec.Code != http.StatusTooManyRequests {
					continue
				}
				r := resp{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
				p := r.problem(t, http.StatusTooManyRequests, "too_many_requests")
				// The wait is one token's refill, 20 minutes per email or 12 per address, less the
				// time the test has taken.
				secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
				if err != nil || secs < 600 || secs > 1200 {
					t.Errorf("attempt #%d: Retry-After: got %q, want whole seconds from 600 to 1200", i, rec.Header().Get("Retry-After"))
				}
				if strings.Contains(p.Detail, at.email) || strings.Contains(p.Detail, "198.51") {
					t.Errorf("attempt #%d: detail names the email or the address: %q", i, p.Detail)
				}
			}
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	tests := []struct {
		list    string
		want    []string
		wantErr bool
	}{
		{list: "", want: nil},
		{list: " , ", want: nil},
		{list: "10.0.0.1", want: []string{"10.0.0.1"}},
		{list: "10.0.0.0/8, 2001:db8::/32 ,::1", want: []string{"10.0.0.0/8", "2001:db8::/32", "::1"}},
		{list: "10.0.0.0/33", wantErr: true},
		{list: "proxy.internal", wantErr: true},
		{list: "10.0.0.1,10.0.0.300", wantErr: true},
		{list: "fe80::1%eth0", wantErr: true},
	}
	for _, tt := range tests {
		got, err := server.ParseTrustedProxies(tt.list)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParseTrustedProxies(%q): got %q, %v; want %q, error %v", tt.list, got, err, tt.want, tt.wantErr)
		}
	}
}
