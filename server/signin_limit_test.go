package server_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/transferd/transferd/internal/pgtest"
	"github.com/transferd/transferd/ledger"
	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/transfer"
)

// usersOnly is a Ledger that knows users and nothing else: signing in reads nothing more.
type usersOnly struct {
	server.Ledger
	users map[string]transfer.User
}

func (l usersOnly) UserByEmail(_ context.Context, email string) (transfer.User, error) {
	if u, ok := l.users[strings.ToLower(strings.TrimSpace(email))]; ok {
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
	users := usersOnly{users: map[string]transfer.User{email: u}}
	limit := server.SignInLimit{PerEmailAddress: server.Rate{Attempts: 3, Window: time.Hour},
		PerEmail: server.Rate{Attempts: 5, Window: time.Hour}, PerIP: server.Rate{Attempts: 5, Window: time.Hour}}
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
		{name: "an email's limit holds per address and in all, in any case", attempts: []attempt{
			{from: peer, email: email, password: wrong, want: 401},
			{from: peer, email: email, password: wrong, want: 401},
			{from: peer, email: email, want: 200},
			{from: peer, email: email, want: 429},
			{from: peer, email: " GRACE@Example.com", want: 429},
			{from: other, email: email, want: 200},
			{from: other, email: " GRACE@Example.com", want: 200},
			{from: "192.0.2.77:40000", email: email, want: 429},
			{from: peer, email: "someone-else@example.com", want: 401},
		}},
		{name: "one address cannot lock a user out", attempts: []attempt{
			{from: peer, email: email, password: wrong, want: 401},
			{from: peer, email: email, password: wrong, want: 401},
			{from: peer, email: email, password: wrong, want: 401},
			{from: peer, email: email, password: wrong, want: 429},
			{from: peer, email: email, password: wrong, want: 429},
			{from: peer, email: email, password: wrong, want: 429},
			{from: other, email: email, want: 200},
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
			h := server.New(server.Config{Ledger: users, Limits: limitsDB(t).store, Auth: auth, SignInLimit: limit, TrustedProxies: tt.proxies, Log: slog.New(slog.DiscardHandler)}).Handler()
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
				// The wait is one token's refill, 20 minutes per email and address, 12 per email or
				// per address, less the time the test has taken.
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

// TestSignInLimitSurvivesEviction plays the eviction attack: an attacker exhausts the victim's
// email, then floods sign-in with random emails (refused, cheaply, by its address's limit) so that
// a limiter that forgets the least recently seen keys forgets the victim's; the victim's email must
// stay limited, from any address.
func TestSignInLimitSurvivesEviction(t *testing.T) {
	auth, err := server.NewAuth(testSecret, 0, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	const victim, password = "victim@example.com", "correct-horse-battery"
	u, err := auth.NewUser(victim, password, "Victim", transfer.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	u.ID = uuid.New()
	users := usersOnly{users: map[string]transfer.User{victim: u}}
	limit := server.SignInLimit{PerEmail: server.Rate{Attempts: 3, Window: time.Hour}, PerIP: server.Rate{Attempts: 5, Window: time.Hour}}
	db := limitsDB(t)
	h := server.New(server.Config{Ledger: users, Limits: db.store, Auth: auth, SignInLimit: limit, Log: slog.New(slog.DiscardHandler)}).Handler()
	signIn := func(from, email, pw string) int {
		b, _ := json.Marshal(map[string]string{"email": email, "password": pw})
		req := httptest.NewRequest("POST", "/v1/auth/token", strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = from
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	// The victim's email is exhausted by guesses from several addresses.
	for i := range 3 {
		if got := signIn(fmt.Sprintf("198.51.100.%d:40000", i+1), victim, "guess"); got != http.StatusUnauthorized {
			t.Fatalf("guess #%d: got %d, want 401", i, got)
		}
	}
	if got := signIn("198.51.100.9:40000", victim, "guess"); got != http.StatusTooManyRequests {
		t.Fatalf("guess after the limit: got %d, want 429", got)
	}
	// The flood: random emails from one address, all but its first 5 refused.
	for i := range 2000 {
		signIn("203.0.113.66:40000", fmt.Sprintf("flood-%d-%s@example.com", i, uuid.NewString()[:8]), "x")
	}
	if got := signIn("192.0.2.77:40000", victim, password); got != http.StatusTooManyRequests {
		t.Fatalf("the victim's email after a flood of refused attempts with random emails: got %d, want 429 (the flood freed it)", got)
	}
	// Refused attempts wrote nothing: the buckets are those of the 8 attempts that took tokens, at
	// most 3 each.
	if got := db.count(t, "SELECT count(*) FROM rate_limit_buckets"); got > 24 {
		t.Errorf("buckets after the flood: got %d rows, want at most 24", got)
	}
}

// limitsDatabase is a fresh, migrated database and a ledger on it, to keep rate limits in.
type limitsDatabase struct {
	dsn   string
	store *ledger.Store
}

func limitsDB(t *testing.T) limitsDatabase {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	store := openLedger(t, dsn)
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return limitsDatabase{dsn: dsn, store: store}
}

// openLedger opens one more connection pool on the database, as another process would.
func openLedger(t *testing.T, dsn string) *ledger.Store {
	t.Helper()
	store, err := ledger.Open(context.Background(), dsn, ledger.Options{MaxOpenConns: 4})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// count runs a query that counts something.
func (d limitsDatabase) count(t *testing.T, query string) int {
	t.Helper()
	db, err := sql.Open("pgx", d.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestRateLimitsAreSharedByProcesses runs two API instances, each with its own connection pool, on
// one database, and checks that sign-in attempts and sign-ups made on either count against one limit.
func TestRateLimitsAreSharedByProcesses(t *testing.T) {
	auth, err := server.NewAuth(testSecret, 0, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	db := limitsDB(t)
	var urls []string
	for range 2 {
		store := openLedger(t, db.dsn)
		h := server.New(server.Config{Ledger: store, Limits: store, Auth: auth, Log: slog.New(slog.DiscardHandler),
			SignInLimit: server.SignInLimit{PerEmail: server.Rate{Attempts: 3, Window: time.Hour}},
			SignUpLimit: server.SignUpLimit{PerIP: server.Rate{Attempts: 2, Window: time.Hour}}})
		srv := httptest.NewServer(h.Handler())
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	post := func(base, path string, body any) resp {
		t.Helper()
		b, _ := json.Marshal(body)
		res, err := http.Post(base+path, "application/json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return resp{status: res.StatusCode, header: res.Header, body: out}
	}
	tooMany := func(r resp) {
		t.Helper()
		r.problem(t, http.StatusTooManyRequests, "too_many_requests")
		if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 || secs > 1800 {
			t.Errorf("Retry-After: got %q, want whole seconds from 1 to 1800", r.header.Get("Retry-After"))
		}
	}

	t.Run("sign-in", func(t *testing.T) {
		guess := map[string]string{"email": "ada@example.com", "password": "not-her-password"}
		for i, want := range []int{401, 401, 401} {
			if r := post(urls[i%2], "/v1/auth/token", guess); r.status != want {
				t.Fatalf("attempt #%d on instance %d: got %s, want %d", i, i%2, r, want)
			}
		}
		tooMany(post(urls[1], "/v1/auth/token", guess))
		tooMany(post(urls[0], "/v1/auth/token", guess))
	})

	t.Run("sign-up", func(t *testing.T) {
		signUp := func(email string) map[string]string {
			return map[string]string{"email": email, "password": "password-123", "name": "N"}
		}
		// Invalid sign-ups are answered 400 and take nothing.
		for i := range 3 {
			post(urls[i%2], "/v1/users", signUp("not an email")).problem(t, http.StatusBadRequest, "invalid_request")
		}
		for i, email := range []string{"one@example.com", "two@example.com"} {
			if r := post(urls[i%2], "/v1/users", signUp(email)); r.status != http.StatusCreated {
				t.Fatalf("sign-up #%d on instance %d: got %s, want 201", i, i%2, r)
			}
		}
		tooMany(post(urls[0], "/v1/users", signUp("three@example.com")))
		tooMany(post(urls[1], "/v1/users", signUp("three@example.com")))
		if n := db.count(t, "SELECT count(*) FROM users WHERE email = 'three@example.com'"); n != 0 {
			t.Errorf("a refused sign-up created a user")
		}
	})
}
