package server_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// signToken signs claims with the method and key, as a forger or a foreign issuer would.
func signToken(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return s
}

// userClaims are the claims of a valid user token for id, expiring in an hour.
func userClaims(id string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"iss": "transferd", "sub": id, "role": "user", "jti": uuid.NewString(),
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// with returns a copy of claims with the changes; a nil value removes the claim.
func with(claims jwt.MapClaims, changes jwt.MapClaims) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range claims {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

// flipSignature changes one character in the middle of a token's signature, where every bit counts
// (the last character of base64url may carry padding bits only).
func flipSignature(token string) string {
	dot := strings.LastIndex(token, ".")
	i := dot + 1 + (len(token)-dot-1)/2
	c := byte('A')
	if token[i] == 'A' {
		c = 'B'
	}
	return token[:i] + string(c) + token[i+1:]
}

// escalate rewrites a token's payload to claim the admin role and keeps its signature.
func escalate(t testing.TB, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	c["role"] = "admin"
	b, _ = json.Marshal(c)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	alice, aliceID := a.user()
	a.account(alice, "USD")
	claims := userClaims(aliceID)
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the role comes from the ledger, not the token", func(t *testing.T) {
		// Even a token signed with the secret that claims the admin role acts as the user's role now.
		forged := signToken(t, jwt.SigningMethodHS256, testSecret, with(claims, jwt.MapClaims{"role": "admin"}))
		a.do("GET", "/v1/users", forged, nil).problem(t, http.StatusForbidden, "forbidden")
	})

	t.Run("a valid token is accepted", func(t *testing.T) {
		for _, path := range []string{"/v1/me", "/v1/accounts"} {
			if r := a.do("GET", path, alice, nil); r.status != http.StatusOK {
				t.Errorf("GET %s: got %d %s, want 200", path, r.status, r.body)
			}
		}
		// The self-signed control: the crafted claims pass when signed like the service signs.
		if r := a.do("GET", "/v1/me", signToken(t, jwt.SigningMethodHS256, testSecret, claims), nil); r.status != http.StatusOK {
			t.Fatalf("control token: got %d %s, want 200", r.status, r.body)
		}
	})

	tests := []struct {
		name          string
		authorization string // the whole header; none when empty
	}{
		{"missing header", ""},
		{"basic scheme", "Basic YWxpY2U6cGFzc3dvcmQ="},
		{"scheme only", "Bearer"},
		{"scheme and blanks", "Bearer    "},
		{"token without scheme", alice},
		{"other scheme", "Token " + alice},
		{"not a JWT", "Bearer not-a-token"},
		{"two tokens", "Bearer " + alice + " " + alice},
		{"tampered signature", "Bearer " + flipSignature(alice)},
		{"payload rewritten to admin", "Bearer " + escalate(t, alice)},
		{"signature stripped", "Bearer " + alice[:strings.LastIndex(alice, ".")+1]},
		{"signed with another secret", "Bearer " + signToken(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-0123456789"), claims)},
		{"expired", "Bearer " + signToken(t, jwt.SigningMethodHS256, testSecret, with(claims, jwt.MapClaims{"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()}))},
		{"without expiry", "Bearer " + signToken(t, jwt.SigningMethodHS256, testSecret, with(claims, jwt.MapClaims{"exp": nil}))},
		{"not valid yet", "Bearer " + signToken(t, jwt.SigningMethodHS256, testSecret, with(claims, jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()}))},
		{"alg none", "Bearer " + none},
		{"HS512 with the right secret", "Bearer " + signToken(t, jwt.SigningMethodHS512, testSecret, claims)},
		{"another issuer", "Bearer " + signToken(t, jwt.SigningMethodHS256, testSecret, with(claims, jwt.MapClaims{"iss": "someone-else"}))},
		{"without issuer", "Bearer " + signToken(t, jwt.SigningMethodHS256, testSecret, with(claims, jwt.MapClaims{"iss": nil}))},
		{"without token id", "Bearer " + signToken(t, jwt.SigningMethodHS256, testSecret, with(claims, jwt.MapClaims{"jti": nil}))},
		{"of a user that does not exist", "Bearer " + signToken(t, jwt.SigningMethodHS256, testSecret, with(claims, jwt.MapClaims{"sub": uuid.NewString()}))},
		{"of another token generation", "Bearer " + signToken(t, jwt.SigningMethodHS256, testSecret, with(claims, jwt.MapClaims{"gen": 1}))},
		{"subject not a UUID", "Bearer " + signToken(t, jwt.SigningMethodHS256, testSecret, with(claims, jwt.MapClaims{"sub": "alice"}))},
	}
	for _, tt := range tests {
		for _, path := range []string{"/v1/me", "/v1/accounts"} {
			t.Run(tt.name+" on "+path, func(t *testing.T) {
				var headers []string
				if tt.authorization != "" {
					headers = []string{"Authorization", tt.authorization}
				}
				r := a.do("GET", path, "", nil, headers...)
				expectProblem(t, r, http.StatusUnauthorized, "unauthorized")
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate: got %q, want a Bearer challenge", r.header.Get("WWW-Authenticate"))
				}
			})
		}
	}
	// A refused token must not have done anything either.
	if r := a.do("POST", "/v1/accounts", "", map[string]any{"currency": "USD"}, "Authorization", "Bearer "+escalate(t, alice)); r.status != http.StatusUnauthorized {
		t.Errorf("POST /v1/accounts with a forged token: got %d %s, want 401", r.status, r.body)
	}
	if got := len(a.listAll(t, alice, "/v1/accounts")); got != 1 {
		t.Errorf("alice's accounts: got %d, want 1", got)
	}
}

func TestSignUp(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	email := "Ada.Lovelace-" + uuid.NewString()[:8] + "@Example.com"

	t.Run("created", func(t *testing.T) {
		r := a.do("POST", "/v1/users", "", map[string]any{"email": email, "password": "analytical-engine", "name": "Ada Lovelace"})
		if r.status != http.StatusCreated {
			t.Fatalf("status: got %d %s, want 201", r.status, r.body)
		}
		var u map[string]any
		r.json(t, &u)
		var keys []string
		for k := range u {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if got, want := strings.Join(keys, ","), "created_at,email,id,name,role,status"; got != want {
			t.Errorf("user fields: got %s, want %s", got, want)
		}
		if strings.Contains(strings.ToLower(string(r.body)), "password") || strings.Contains(string(r.body), "analytical-engine") || strings.Contains(string(r.body), "$2a$") {
			t.Errorf("the answer mentions the password or its hash: %s", r.body)
		}
		if id, _ := u["id"].(string); uuid.Validate(id) != nil {
			t.Errorf("id: got %v, want a UUID", u["id"])
		}
		if u["email"] != email || u["name"] != "Ada Lovelace" || u["role"] != "user" {
			t.Errorf("user: got %s, want email %s, name Ada Lovelace, role user", r.body, email)
		}
		ts, _ := u["created_at"].(string)
		if created, err := time.Parse(time.RFC3339, ts); err != nil || !strings.HasSuffix(ts, "Z") || time.Since(created) > time.Hour || time.Since(created) < -time.Hour {
			t.Errorf("created_at: got %q, want a recent RFC 3339 UTC time", ts)
		}
	})

	tests := []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"email taken in another case", map[string]any{"email": strings.ToUpper(email), "password": "password-123", "name": "Impostor"}, 409, "email_taken", ""},
		{"email taken in lower case", map[string]any{"email": strings.ToLower(email), "password": "password-123", "name": "Impostor"}, 409, "email_taken", ""},
		{"password of 7 characters", map[string]any{"email": "short@example.com", "password": "1234567", "name": "Short"}, 400, "invalid_request", "password"},
		{"empty password", map[string]any{"email": "short@example.com", "password": "", "name": "Short"}, 400, "invalid_request", "password"},
		{"missing password", map[string]any{"email": "short@example.com", "name": "Short"}, 400, "invalid_request", "password"},
		{"email without @", map[string]any{"email": "not-an-email", "password": "password-123", "name": "X"}, 400, "invalid_request", "email"},
		{"email with a display name", map[string]any{"email": "Ada <ada@example.com>", "password": "password-123", "name": "X"}, 400, "invalid_request", "email"},
		{"empty email", map[string]any{"email": "", "password": "password-123", "name": "X"}, 400, "invalid_request", "email"},
		{"email with a NUL", map[string]any{"email": "nul\x00@example.com", "password": "password-123", "name": "X"}, 400, "invalid_request", "email"},
		{"role admin", map[string]any{"email": "mallory@example.com", "password": "password-123", "name": "Mallory", "role": "admin"}, 400, "malformed_json", ""},
		{"role user", map[string]any{"email": "mallory@example.com", "password": "password-123", "name": "Mallory", "role": "user"}, 400, "malformed_json", ""},
		{"not JSON", "email=mallory@example.com", 400, "malformed_json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := expectProblem(t, a.do("POST", "/v1/users", "", tt.body), tt.status, tt.code)
			if tt.field != "" {
				expectFields(t, p, tt.field)
			}
		})
	}

	t.Run("a refused sign-up creates no user", func(t *testing.T) {
		for _, email := range []string{"mallory@example.com", "short@example.com"} {
			r := a.do("POST", "/v1/auth/token", "", map[string]any{"email": email, "password": "password-123"})
			expectProblem(t, r, http.StatusUnauthorized, "invalid_credentials")
		}
		// The impostors' passwords do not open the original account either.
		expectProblem(t, a.do("POST", "/v1/auth/token", "", map[string]any{"email": email, "password": "password-123"}), http.StatusUnauthorized, "invalid_credentials")
	})

	t.Run("a password of 8 characters is enough", func(t *testing.T) {
		if r := a.do("POST", "/v1/users", "", map[string]any{"email": "eight@example.com", "password": "12345678", "name": "Eight"}); r.status != http.StatusCreated {
			t.Errorf("got %d %s, want 201", r.status, r.body)
		}
	})
}

func TestTokens(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	email := "grace-" + uuid.NewString()[:8] + "@example.com"
	r := a.do("POST", "/v1/users", "", map[string]any{"email": email, "password": "cobol-rules-1959", "name": "Grace Hopper"})
	if r.status != http.StatusCreated {
		t.Fatalf("sign up: %d %s", r.status, r.body)
	}
	var grace struct{ ID string }
	r.json(t, &grace)

	t.Run("issued", func(t *testing.T) {
		for _, e := range []string{email, strings.ToUpper(email)} {
			r := a.do("POST", "/v1/auth/token", "", map[string]any{"email": e, "password": "cobol-rules-1959"})
			var tok struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				ExpiresIn   int64  `json:"expires_in"`
			}
			if r.status != http.StatusOK {
				t.Fatalf("token for %s: got %d %s, want 200", e, r.status, r.body)
			}
			r.json(t, &tok)
			if tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn <= 0 {
				t.Errorf("token for %s: got %s, want a Bearer token with a positive expires_in", e, r.body)
			}
			me := a.do("GET", "/v1/me", tok.AccessToken, nil)
			var u map[string]any
			me.json(t, &u)
			if me.status != http.StatusOK || u["id"] != grace.ID || u["email"] != email || u["name"] != "Grace Hopper" || u["role"] != "user" {
				t.Errorf("GET /v1/me: got %d %s, want Grace as a user", me.status, me.body)
			}
		}
	})

	t.Run("the admin's /v1/me says admin", func(t *testing.T) {
		var u map[string]any
		a.do("GET", "/v1/me", a.admin, nil).json(t, &u)
		if u["role"] != "admin" || u["email"] != "admin@example.com" {
			t.Errorf("admin /v1/me: got %v, want role admin", u)
		}
	})

	t.Run("wrong password and unknown email answer alike", func(t *testing.T) {
		tests := []struct {
			name string
			body map[string]any
		}{
			{"wrong password", map[string]any{"email": email, "password": "cobol-rules-1960"}},
			{"unknown email", map[string]any{"email": "nobody-" + uuid.NewString()[:8] + "@example.com", "password": "cobol-rules-1959"}},
			{"empty password", map[string]any{"email": email, "password": ""}},
			{"empty email", map[string]any{"email": "", "password": "cobol-rules-1959"}},
			{"email with a NUL", map[string]any{"email": "grace\x00@example.com", "password": "cobol-rules-1959"}},
		}
		var first string
		for _, tt := range tests {
			r := a.do("POST", "/v1/auth/token", "", tt.body)
			p := expectProblem(t, r, http.StatusUnauthorized, "invalid_credentials")
			if got := normalized(p); first == "" {
				first = got
			} else if got != first {
				t.Errorf("%s: got %s, want the same answer as the wrong password's %s", tt.name, got, first)
			}
			if strings.Contains(string(r.body), "password_hash") {
				t.Errorf("%s: the answer mentions the hash: %s", tt.name, r.body)
			}
		}
	})

	t.Run("unknown field", func(t *testing.T) {
		expectProblem(t, a.do("POST", "/v1/auth/token", "", map[string]any{"email": email, "password": "cobol-rules-1959", "scope": "admin"}), http.StatusBadRequest, "malformed_json")
	})
}
