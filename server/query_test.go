package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/server"
	"github.com/transferd/transferd/transfer"
)

// TestUnparsableQueryIsRefused checks that every route of the router, authenticated or not, answers
// a query string that is not valid percent-encoding with a 400 problem, before its handler runs: a
// bad cursor must not restart a list at its first page, nor a bad filter return everything. The
// routes come from the router itself, so a new route is covered without a change here. The server
// has no ledger and no service: a request that got past the check to its handler would panic (500).
func TestUnparsableQueryIsRefused(t *testing.T) {
	auth, err := server.NewAuth(testSecret, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	h := server.New(server.Config{Auth: auth}).Handler()
	token, _, err := auth.Issue(transfer.User{ID: uuid.New(), Role: transfer.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	queries := []struct {
		query, code, field string
	}{
		{"cursor=%zz", "invalid_cursor", "cursor"},
		{"limit=20&cursor=abc%", "invalid_cursor", "cursor"},
		{"cursor=ok&cursor=%zz", "invalid_cursor", "cursor"},
		{"status=%zz", "invalid_request", "status"},
		{"limit=%zz", "invalid_request", "limit"},
		{"account_id=%zz&cursor=ok", "invalid_request", "account_id"},
		{"%", "invalid_request", "query"},
		{"%zz=1", "invalid_request", "query"},
		{"status=failed;kind=transfer", "invalid_request", "query"},
		{"wait=5s&label.a=%e", "invalid_request", "label.a"},
	}
	routes := server.New(server.Config{Auth: auth}).Routes()
	if len(routes) == 0 {
		t.Fatal("the router lists no routes")
	}
	for _, route := range routes {
		method, path, _ := strings.Cut(route, " ")
		path = strings.ReplaceAll(path, "{id}", uuid.NewString())
		for _, q := range queries {
			t.Run(route+"?"+q.query, func(t *testing.T) {
				req := httptest.NewRequest(method, path+"?"+q.query, strings.NewReader(`{}`))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				r := resp{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
				p := expectProblem(t, r, http.StatusBadRequest, q.code)
				if q.code == "invalid_request" {
					expectFields(t, p, q.field)
				}
			})
		}
	}

	// A query that parses still reaches the handler.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz?probe=a%20b&x=%2F", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("GET /healthz with a valid query: got %d %s, want 200", rec.Code, rec.Body)
	}
}

// TestUnparsableQueryOverHTTP checks the defect as a client met it: a bad cursor restarted the list at
// its first page and a bad filter listed everything, each with a 200.
func TestUnparsableQueryOverHTTP(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	alice, _ := a.user()
	from := a.account(alice, "USD")
	a.deposit(from, 100, "USD")
	a.deposit(from, 200, "USD")
	if p := a.getPage(t, alice, "/v1/transfers?limit=1"); p.NextCursor == nil {
		t.Fatalf("first page: got no next cursor, want one")
	}
	for _, tt := range []struct{ path, code string }{
		{"/v1/transfers?limit=1&cursor=%zz", "invalid_cursor"},
		{"/v1/transfers?status=%zz", "invalid_request"},
		{"/v1/accounts?currency=%zz", "invalid_request"},
		{"/v1/accounts/" + from + "/entries?cursor=%", "invalid_cursor"},
	} {
		expectProblem(t, a.do("GET", tt.path, alice, nil), http.StatusBadRequest, tt.code)
	}
}
