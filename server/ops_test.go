package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestReadyz(t *testing.T) {
	auth, err := NewAuth([]byte(strings.Repeat("s", 32)), 0, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("dial tcp 10.1.2.3:5432: connection refused") }
	for _, tc := range []struct {
		name   string
		checks map[string]Check
		status int
		want   map[string]string
	}{
		{"all answer", map[string]Check{"postgres": ok, "temporal": ok}, 200, map[string]string{"postgres": "ok", "temporal": "ok"}},
		{"temporal down", map[string]Check{"postgres": ok, "temporal": down}, 503, map[string]string{"postgres": "ok", "temporal": "unavailable"}},
		{"postgres down", map[string]Check{"postgres": down, "temporal": ok}, 503, map[string]string{"postgres": "unavailable", "temporal": "ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New(Config{Auth: auth, Ready: tc.checks}).Handler()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			if rec.Code != tc.status {
				t.Errorf("status: got %d, want %d", rec.Code, tc.status)
			}
			var body struct{ Checks map[string]string }
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if body.Checks[k] != v {
					t.Errorf("check %s: got %q, want %q", k, body.Checks[k], v)
				}
			}
			if strings.Contains(rec.Body.String(), "10.1.2.3") {
				t.Errorf("readyz leaks the dependency's address: %s", rec.Body)
			}
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != http.StatusOK {
				t.Errorf("healthz: got %d, want 200 whatever the dependencies", rec.Code)
			}
		})
	}
}
