package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// keyBody is an API key as the API shows it.
type keyBody struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	Prefix     string  `json:"prefix"`
	ReadOnly   bool    `json:"read_only"`
	CreatedAt  string  `json:"created_at"`
	ExpiresAt  *string `json:"expires_at"`
	LastUsedAt *string `json:"last_used_at"`
	RevokedAt  *string `json:"revoked_at"`
	Key        *string `json:"key"`
	Notice     string  `json:"notice"`
}

// apiKey creates an API key with the token and returns it with its text.
func (a *api) apiKey(token string, body map[string]any) keyBody {
	a.t.Helper()
	r := a.do("POST", "/v1/api-keys", token, body)
	if r.status != http.StatusCreated {
		a.t.Fatalf("create API key: got %s, want 201", r)
	}
	var k keyBody
	r.json(a.t, &k)
	if k.Key == nil {
		a.t.Fatalf("create API key: no key in %s", r.body)
	}
	return k
}

// lockedBuffer is a log destination that handlers on several goroutines write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAPIKeys checks the contract's calls on API keys: creation (the key shown once, its prefix, its
// shape), use as a bearer credential acting as its owner, the list without key texts and with
// last_used_at, Idempotency-Key on creation, expiry, revocation from the next request on, another
// user's key, and the validation errors; and that no key text reaches the log.
func TestAPIKeys(t *testing.T) {
	logs := &lockedBuffer{}
	a := newAPIWithLog(t, logs)
	alice, aliceID := a.user()
	bob, _ := a.user()

	k := a.apiKey(alice, map[string]any{"name": "billing service"})
	key := *k.Key
	if !strings.HasPrefix(key, "tfd_") || len(key) != 52 || k.Prefix != key[:12] || k.ReadOnly || k.ExpiresAt != nil || k.LastUsedAt != nil {
		t.Errorf("new key: got %+v (key %d characters), want tfd_ and 48 more, prefix its first 12, not read-only, no expiry, never used", k, len(key))
	}
	for _, c := range key[4:] {
		if !strings.ContainsRune("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", c) {
			t.Fatalf("key %q has a character outside [0-9A-Za-z]", k.Prefix)
		}
	}
	if other := a.apiKey(alice, map[string]any{"name": "other"}); *other.Key == key || other.Prefix == k.Prefix {
		t.Errorf("two keys share their text or prefix")
	}

	// The key acts as its owner.
	r := a.do("GET", "/v1/me", key, nil)
	var me struct{ ID, Role, Status string }
	r.json(t, &me)
	if r.status != http.StatusOK || me.ID != aliceID || me.Role != "user" || me.Status != "active" {
		t.Errorf("GET /v1/me with the key: got %s, want alice, user, active", r)
	}
	acct := a.account(key, "USD")
	if r := a.do("GET", "/v1/accounts/"+acct, alice, nil); r.status != http.StatusOK {
		t.Errorf("the key's account seen with alice's token: got %s, want 200", r)
	}

	// The list shows the key's use but never its text.
	r = a.do("GET", "/v1/api-keys", alice, nil)
	if r.status != http.StatusOK || bytes.Contains(r.body, []byte(key)) || bytes.Contains(r.body, []byte(`"key"`)) {
		t.Fatalf("list: got %s, want 200 without any key text", r)
	}
	var list struct {
		Data       []keyBody `json:"data"`
		NextCursor *string   `json:"next_cursor"`
	}
	r.json(t, &list)
	if len(list.Data) != 2 || list.Data[1].ID != k.ID || list.Data[1].LastUsedAt == nil || list.NextCursor != nil {
		t.Errorf("list: got %+v, want both keys, the first one used", list)
	}
	if r := a.do("GET", "/v1/api-keys?limit=1", alice, nil); !bytes.Contains(r.body, []byte(`"next_cursor":"`)) {
		t.Errorf("a page of 1 of 2: got %s, want a next_cursor", r)
	}
	if r := a.do("GET", "/v1/api-keys", bob, nil); r.status != http.StatusOK || bytes.Contains(r.body, []byte(k.ID)) {
		t.Errorf("bob's list: got %s, want none of alice's keys", r)
	}

	t.Run("idempotency key", func(t *testing.T) {
		body := map[string]any{"name": "deploy bot", "read_only": true}
		first := a.do("POST", "/v1/api-keys", alice, body, "Idempotency-Key", "key-1")
		var k1 keyBody
		first.json(t, &k1)
		if first.status != http.StatusCreated || k1.Key == nil || !k1.ReadOnly {
			t.Fatalf("first: got %s, want 201 with a read-only key", first)
		}
		again := a.do("POST", "/v1/api-keys", alice, body, "Idempotency-Key", "key-1")
		var k2 keyBody
		again.json(t, &k2)
		if again.status != http.StatusOK || again.header.Get("Idempotent-Replayed") != "true" || k2.ID != k1.ID || k2.Key != nil ||
			k2.Notice == "" || bytes.Contains(again.body, []byte(*k1.Key)) {
			t.Errorf("retry: got %s, want 200 replayed, the same key, no text and a notice", again)
		}
		body["name"] = "another bot"
		a.do("POST", "/v1/api-keys", alice, body, "Idempotency-Key", "key-1").problem(t, http.StatusConflict, "idempotency_conflict")
		// Another user's same Idempotency-Key is theirs.
		if r := a.do("POST", "/v1/api-keys", bob, body, "Idempotency-Key", "key-1"); r.status != http.StatusCreated {
			t.Errorf("bob's same Idempotency-Key: got %s, want 201", r)
		}
		a.do("POST", "/v1/api-keys", alice, body, "Idempotency-Key", "").problem(t, http.StatusBadRequest, "invalid_request")
	})

	t.Run("validation", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			body any
		}{
			{"no name", map[string]any{}},
			{"blank name", map[string]any{"name": "  "}},
			{"long name", map[string]any{"name": strings.Repeat("n", 201)}},
			{"past expiry", map[string]any{"name": "n", "expires_at": "2020-01-01T00:00:00Z"}},
			{"bad expiry", map[string]any{"name": "n", "expires_at": "tomorrow"}},
			{"unknown field", map[string]any{"name": "n", "scopes": []string{"all"}}},
			{"read_only not a boolean", map[string]any{"name": "n", "read_only": "yes"}},
		} {
			if r := a.do("POST", "/v1/api-keys", alice, tc.body); r.status != http.StatusBadRequest {
				t.Errorf("%s: got %s, want 400", tc.name, r)
			}
		}
		a.do("POST", "/v1/api-keys", "", map[string]any{"name": "n"}).problem(t, http.StatusUnauthorized, "unauthorized")
	})

	t.Run("expiry", func(t *testing.T) {
		// Five seconds leave a loaded machine time for the key's creation and the call before it.
		expiry := time.Now().Add(5 * time.Second)
		shortBody := map[string]any{"name": "short", "expires_at": expiry.UTC().Format(time.RFC3339Nano)}
		r := a.do("POST", "/v1/api-keys", alice, shortBody, "Idempotency-Key", "short-lived")
		var soon keyBody
		if r.json(t, &soon); r.status != http.StatusCreated || soon.ExpiresAt == nil || soon.Key == nil {
			t.Fatalf("a key with an expiry: got %s, want 201 with expires_at and the key", r)
		}
		if r := a.do("GET", "/v1/me", *soon.Key, nil); r.status != http.StatusOK {
			t.Fatalf("before its expiry: got %s, want 200", r)
		}
		time.Sleep(time.Until(expiry) + 100*time.Millisecond)
		p := a.do("GET", "/v1/me", *soon.Key, nil).problem(t, http.StatusUnauthorized, "unauthorized")
		if !strings.Contains(p.Detail, "expired") {
			t.Errorf("after its expiry: detail %q, want it to say expired", p.Detail)
		}
		// A retry of its creation, past its expiry, is answered from it; a new request is refused.
		again := a.do("POST", "/v1/api-keys", alice, shortBody, "Idempotency-Key", "short-lived")
		var replayed keyBody
		if again.json(t, &replayed); again.status != http.StatusOK || replayed.ID != soon.ID || replayed.Key != nil {
			t.Errorf("retry past the expiry: got %s, want 200 with key %s and without its text", again, soon.ID)
		}
		p = a.do("POST", "/v1/api-keys", alice, shortBody, "Idempotency-Key", "short-lived-2").problem(t, http.StatusBadRequest, "invalid_request")
		if len(p.Errors) != 1 || p.Errors[0].Field != "expires_at" {
			t.Errorf("a new key past its expiry: errors %+v, want expires_at's", p.Errors)
		}
	})

	t.Run("revocation", func(t *testing.T) {
		a.do("DELETE", "/v1/api-keys/"+k.ID, bob, nil).problem(t, http.StatusNotFound, "not_found")
		a.do("DELETE", "/v1/api-keys/not-a-uuid", alice, nil).problem(t, http.StatusNotFound, "not_found")
		a.do("DELETE", "/v1/api-keys/"+uuid.NewString(), alice, nil).problem(t, http.StatusNotFound, "not_found")
		if r := a.do("GET", "/v1/me", key, nil); r.status != http.StatusOK {
			t.Fatalf("before the revocation: got %s", r)
		}
		for range 2 {
			if r := a.do("DELETE", "/v1/api-keys/"+k.ID, alice, nil); r.status != http.StatusNoContent {
				t.Errorf("revoke: got %s, want 204", r)
			}
		}
		p := a.do("GET", "/v1/me", key, nil).problem(t, http.StatusUnauthorized, "unauthorized")
		if !strings.Contains(p.Detail, "revoked") {
			t.Errorf("revoked key: detail %q, want it to say revoked", p.Detail)
		}
		a.do("GET", "/v1/me", "tfd_"+strings.Repeat("x", 48), nil).problem(t, http.StatusUnauthorized, "unauthorized")
		a.do("GET", "/v1/me", "tfd_", nil).problem(t, http.StatusUnauthorized, "unauthorized")
		// A key revokes itself with POST /v1/auth/revoke.
		self := a.apiKey(alice, map[string]any{"name": "self"})
		if r := a.do("POST", "/v1/auth/revoke", *self.Key, nil); r.status != http.StatusNoContent {
			t.Errorf("a key revoking itself: got %s, want 204", r)
		}
		a.do("GET", "/v1/me", *self.Key, nil).problem(t, http.StatusUnauthorized, "unauthorized")
	})

	if strings.Contains(logs.String(), key[12:]) || strings.Contains(logs.String(), key) {
		t.Errorf("a key's text reached the log")
	}
	if !strings.Contains(logs.String(), "/v1/api-keys") {
		t.Errorf("the log has no access lines: the check above saw nothing")
	}
}

// TestReadOnlyKeyRefusedEveryWrite sends, with an admin's read-only key, every route of the router
// whose method may change something, and checks that each is refused 403 and changed nothing; the
// same key reads. The routes come from the router itself, so a new route is covered when it is added.
func TestReadOnlyKeyRefusedEveryWrite(t *testing.T) {
	a := newAPI(t)
	ro := *a.apiKey(a.admin, map[string]any{"name": "dashboard", "read_only": true}).Key
	user, _ := a.user()
	acct := a.account(user, "USD")
	a.deposit(acct, 500, "USD")
	before := a.counts(t)

	// Routes that take no credential, and the revocation of the credential itself, are not writes
	// that a key's role governs.
	public := []string{"POST /v1/users", "POST /v1/auth/token", "POST /v1/auth/revoke"}
	writes := 0
	for _, route := range a.handle.Routes() {
		method, path, _ := strings.Cut(route, " ")
		if method == "GET" || method == "HEAD" || slices.Contains(public, route) || !strings.HasPrefix(path, "/v1/") {
			continue
		}
		writes++
		path = strings.NewReplacer("{id}", acct).Replace(path)
		p := a.do(method, path, ro, map[string]any{}).problem(t, http.StatusForbidden, "forbidden")
		if !strings.Contains(p.Detail, "read-only") {
			t.Errorf("%s: detail %q, want it to say read-only", route, p.Detail)
		}
	}
	if writes < 10 {
		t.Errorf("write routes found: %d, want every one (at least 10)", writes)
	}
	if after := a.counts(t); after != before {
		t.Errorf("rows after the refused writes: got %v, want %v", after, before)
	}
	for _, path := range []string{"/v1/me", "/v1/accounts", "/v1/accounts/" + acct, "/v1/transfers", "/v1/users", "/v1/audit-log", "/v1/api-keys"} {
		if r := a.do("GET", path, ro, nil); r.status != http.StatusOK {
			t.Errorf("GET %s with the read-only key: got %s, want 200", path, r)
		}
	}
	if r := a.do("POST", "/v1/auth/revoke", ro, nil); r.status != http.StatusNoContent {
		t.Errorf("the read-only key revoking itself: got %s, want 204", r)
	}
	a.do("GET", "/v1/me", ro, nil).problem(t, http.StatusUnauthorized, "unauthorized")
}

// counts are the rows of the tables that writes change.
func (a *api) counts(t *testing.T) [6]int64 {
	t.Helper()
	var out [6]int64
	for i, table := range []string{"users", "accounts", "transfers", "api_keys", "audit_log", "user_access"} {
		out[i] = int64(limitsDatabase{dsn: a.dsn}.count(t, "SELECT count(*) FROM "+table))
	}
	return out
}

// TestRevokeToken checks that POST /v1/auth/revoke refuses the token it is called with from the next
// request on, and only that token.
func TestRevokeToken(t *testing.T) {
	a := newAPI(t)
	email := "rev-" + uuid.NewString()[:8] + "@example.com"
	if r := a.do("POST", "/v1/users", "", map[string]string{"email": email, "password": "password-123", "name": "R"}); r.status != http.StatusCreated {
		t.Fatal(r)
	}
	t1, t2 := a.token(email, "password-123"), a.token(email, "password-123")
	if r := a.do("POST", "/v1/auth/revoke", t1, nil); r.status != http.StatusNoContent {
		t.Fatalf("revoke: got %s, want 204", r)
	}
	p := a.do("GET", "/v1/me", t1, nil).problem(t, http.StatusUnauthorized, "unauthorized")
	if !strings.Contains(p.Detail, "revoked") {
		t.Errorf("revoked token: detail %q, want it to say revoked", p.Detail)
	}
	a.do("POST", "/v1/auth/revoke", t1, nil).problem(t, http.StatusUnauthorized, "unauthorized")
	if r := a.do("GET", "/v1/me", t2, nil); r.status != http.StatusOK {
		t.Errorf("the user's other token: got %s, want 200", r)
	}
}

// TestDisableAndRoleChange checks the admin's calls on users: a disabled user's tokens and keys are
// refused at the next request and their sign-in gets invalid_credentials; after a re-enable the old
// tokens stay refused while new ones and the keys work; a promotion and a demotion hold at the next
// request of a token issued before; and only an admin may list or change users.
func TestDisableAndRoleChange(t *testing.T) {
	a := newAPI(t)
	email := "dis-" + uuid.NewString()[:8] + "@example.com"
	r := a.do("POST", "/v1/users", "", map[string]string{"email": email, "password": "password-123", "name": "D"})
	var u struct{ ID string }
	r.json(t, &u)
	tok := a.token(email, "password-123")
	key := *a.apiKey(tok, map[string]any{"name": "svc"}).Key
	other, _ := a.user()

	// Only admins list and change users.
	a.do("GET", "/v1/users", tok, nil).problem(t, http.StatusForbidden, "forbidden")
	a.do("PATCH", "/v1/users/"+u.ID, other, map[string]any{"status": "disabled"}).problem(t, http.StatusForbidden, "forbidden")
	a.do("GET", "/v1/audit-log", tok, nil).problem(t, http.StatusForbidden, "forbidden")
	a.do("PATCH", "/v1/users/"+uuid.NewString(), a.admin, map[string]any{"status": "disabled"}).problem(t, http.StatusNotFound, "not_found")
	for _, body := range []any{map[string]any{}, map[string]any{"status": "banned"}, map[string]any{"role": "root"}} {
		a.do("PATCH", "/v1/users/"+u.ID, a.admin, body).problem(t, http.StatusBadRequest, "invalid_request")
	}
	if r := a.do("PATCH", "/v1/users/"+u.ID, a.admin, map[string]any{"status": "disabled", "x": 1}); r.status != http.StatusBadRequest {
		t.Errorf("an unknown field: got %s, want 400", r)
	}

	patch := func(body map[string]any, want string) {
		t.Helper()
		r := a.do("PATCH", "/v1/users/"+u.ID, a.admin, body)
		if r.status != http.StatusOK || !strings.Contains(string(r.body), want) {
			t.Fatalf("PATCH %v: got %s, want 200 with %s", body, r, want)
		}
	}
	patch(map[string]any{"status": "disabled"}, `"status":"disabled"`)
	a.do("GET", "/v1/me", tok, nil).problem(t, http.StatusUnauthorized, "unauthorized")
	a.do("GET", "/v1/me", key, nil).problem(t, http.StatusUnauthorized, "unauthorized")
	a.do("POST", "/v1/auth/token", "", map[string]string{"email": email, "password": "password-123"}).problem(t, http.StatusUnauthorized, "invalid_credentials")

	patch(map[string]any{"status": "active"}, `"status":"active"`)
	a.do("GET", "/v1/me", tok, nil).problem(t, http.StatusUnauthorized, "unauthorized")
	fresh := a.token(email, "password-123")
	for name, cred := range map[string]string{"a new token": fresh, "the key": key} {
		if r := a.do("GET", "/v1/me", cred, nil); r.status != http.StatusOK {
			t.Errorf("%s after the re-enable: got %s, want 200", name, r)
		}
	}

	// A role change holds at once for a token and a key issued before it.
	a.do("GET", "/v1/users", fresh, nil).problem(t, http.StatusForbidden, "forbidden")
	patch(map[string]any{"role": "admin"}, `"role":"admin"`)
	for _, cred := range []string{fresh, key} {
		if r := a.do("GET", "/v1/users", cred, nil); r.status != http.StatusOK || !strings.Contains(string(r.body), email) {
			t.Errorf("GET /v1/users once promoted: got %s, want 200 listing the user", r)
		}
	}
	patch(map[string]any{"role": "user"}, `"role":"user"`)
	a.do("GET", "/v1/users", fresh, nil).problem(t, http.StatusForbidden, "forbidden")
	a.do("GET", "/v1/audit-log", key, nil).problem(t, http.StatusForbidden, "forbidden")

	// The list pages through every user.
	seen := map[string]bool{}
	cursor := ""
	for range 10 {
		r := a.do("GET", "/v1/users?limit=1"+cursor, a.admin, nil)
		var page struct {
			Data       []struct{ ID string } `json:"data"`
			NextCursor *string               `json:"next_cursor"`
		}
		r.json(t, &page)
		for _, u := range page.Data {
			if seen[u.ID] {
				t.Errorf("user %s listed twice", u.ID)
			}
			seen[u.ID] = true
		}
		if page.NextCursor == nil {
			break
		}
		cursor = "&cursor=" + *page.NextCursor
	}
	if len(seen) != 3 {
		t.Errorf("users listed: got %d, want 3 (the admin, the user and the other user)", len(seen))
	}
}

// TestAuditLog checks that the audit log records each action of the contract with its actor and
// the key used, and that it pages.
func TestAuditLog(t *testing.T) {
	a := newAPI(t)
	user, userID := a.user()
	k := a.apiKey(user, map[string]any{"name": "svc"})
	from, to := a.account(*k.Key, "USD"), a.account(user, "USD")
	a.deposit(from, 1_000, "USD")
	r, tr := a.transfer(*k.Key, map[string]any{"from_account_id": from, "to_account_id": to, "amount": 10, "currency": "USD"})
	if r.status >= 300 {
		t.Fatalf("transfer with the key: %s", r)
	}
	held := a.hold(user, from, to, 20, nil)
	if r := a.do("POST", "/v1/transfers/"+held.ID+"/capture?wait=30s", user, map[string]any{"amount": 15}); r.status != http.StatusOK {
		t.Fatalf("capture: %s", r)
	}
	held2 := a.hold(user, from, to, 5, nil)
	for range 2 {
		if r := a.do("POST", "/v1/transfers/"+held2.ID+"/cancel", *k.Key, nil); r.status != http.StatusOK {
			t.Fatalf("cancel: %s", r)
		}
	}
	// A hold that expires is cancelled by nobody.
	expiring := a.postHold(user, from, to, 7, map[string]any{"hold_expires_at": time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano)})
	a.awaitStatus(user, expiring.ID, "cancelled")
	a.do("PATCH", "/v1/accounts/"+to, a.admin, map[string]any{"status": "frozen"})
	a.do("PATCH", "/v1/users/"+userID, a.admin, map[string]any{"role": "admin"})
	a.do("PATCH", "/v1/users/"+userID, a.admin, map[string]any{"status": "disabled"})
	a.do("DELETE", "/v1/api-keys/"+k.ID, a.admin, nil) // Not the admin's: 404, nothing recorded.
	a.awaitWorkflows(t, tr.ID, held.ID, held2.ID, expiring.ID)

	type entry struct {
		Action      string         `json:"action"`
		ActorID     *string        `json:"actor_id"`
		APIKeyID    *string        `json:"api_key_id"`
		SubjectType string         `json:"subject_type"`
		SubjectID   string         `json:"subject_id"`
		Detail      map[string]any `json:"detail"`
	}
	var all []entry
	cursor := ""
	for range 50 {
		r := a.do("GET", "/v1/audit-log?limit=3"+cursor, a.admin, nil)
		var page struct {
			Data       []entry `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		r.json(t, &page)
		all = append(all, page.Data...)
		if page.NextCursor == nil {
			break
		}
		cursor = "&cursor=" + *page.NextCursor
	}
	find := func(action, subject string) *entry {
		var found *entry
		for i := range all {
			if all[i].Action == action && all[i].SubjectID == subject {
				if found != nil {
					t.Errorf("%s of %s recorded twice", action, subject)
				}
				found = &all[i]
			}
		}
		if found == nil {
			t.Errorf("%s of %s: not recorded; log %+v", action, subject, all)
		}
		return found
	}
	byKey := func(e *entry) bool {
		return e != nil && e.APIKeyID != nil && *e.APIKeyID == k.ID && e.ActorID != nil && *e.ActorID == userID
	}
	byUser := func(e *entry) bool { return e != nil && e.APIKeyID == nil && e.ActorID != nil && *e.ActorID == userID }
	if e := find("api_key.created", k.ID); !byUser(e) {
		t.Errorf("key created: got %+v, want by the user", e)
	}
	if e := find("transfer.created", tr.ID); !byKey(e) || e.Detail["amount"] != float64(10) {
		t.Errorf("transfer created with the key: got %+v, want by the user with the key, amount 10", e)
	}
	if e := find("transfer.captured", held.ID); !byUser(e) || e.Detail["amount"] != float64(15) {
		t.Errorf("capture: got %+v, want by the user, amount 15", e)
	}
	if e := find("transfer.cancelled", held2.ID); !byKey(e) {
		t.Errorf("cancel: got %+v, want by the user with the key, once", e)
	}
	if e := find("transfer.cancelled", expiring.ID); e == nil || e.ActorID != nil || e.Detail["failure_code"] != "hold_expired" {
		t.Errorf("the expiry: got %+v, want nobody's, hold_expired", e)
	}
	requests := 0
	for _, e := range all {
		if e.Action == "transfer.cancel_requested" && e.SubjectID == held2.ID && byKey(&e) {
			requests++
		}
	}
	if requests != 2 {
		t.Errorf("cancel requests of the second hold: got %d, want the 2 sent", requests)
	}
	find("transfer.capture_requested", held.ID)
	for _, action := range []string{"account.status_changed"} {
		find(action, to)
	}
	for _, action := range []string{"user.role_changed", "user.status_changed"} {
		if e := find(action, userID); e == nil || e.ActorID == nil || e.SubjectType != "user" {
			t.Errorf("%s: got %+v, want by the admin", action, e)
		}
	}
	for _, e := range all {
		if e.Action == "api_key.revoked" {
			t.Errorf("a refused revocation was recorded: %+v", e)
		}
	}
	if b, _ := json.Marshal(all); bytes.Contains(b, []byte(*k.Key)) {
		t.Errorf("the audit log holds a key's text")
	}
	a.do("GET", "/v1/audit-log?cursor=bogus", a.admin, nil).problem(t, http.StatusBadRequest, "invalid_cursor")
}
