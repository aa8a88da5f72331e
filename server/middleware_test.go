package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/bcrypt"
)

// TestPanicIsAnInternalProblem checks that a panic in a handler is answered as a bare 500 problem
// that names no internals, and that the server keeps serving.
func TestPanicIsAnInternalProblem(t *testing.T) {
	auth, err := NewAuth([]byte(strings.Repeat("s", 32)), 0, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Auth: auth})
	s.engine.GET("/boom", func(c *gin.Context) { panic("secret internal state at db.internal:5432") })

	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status: got %d, want 500", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content type: got %q", ct)
	}
	var p Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Code != "internal" || p.Status != 500 {
		t.Errorf("body: got %s (%v), want an internal problem", rec.Body, err)
	}
	if strings.Contains(rec.Body.String(), "secret") || strings.Contains(rec.Body.String(), "5432") {
		t.Errorf("body leaks the panic: %s", rec.Body)
	}
	if rec.Header().Get("X-Request-Id") == "" {
		t.Errorf("no X-Request-Id on the answer")
	}

	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("after a panic, /healthz: got %d, want 200", rec.Code)
	}
}
