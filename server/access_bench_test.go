package server_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkAuthenticatedRead measures one authenticated read (GET /v1/accounts/{id}) through the
// router over the real ledger: with a bearer token, and with an API key. Each request reads its
// credential from PostgreSQL (the token's user and revocation, or the key by its hash), which
// ledger's BenchmarkCredentialCheck measures alone. Run with
// `go test -run XXX -bench AuthenticatedRead ./server`; docs/benchmarks.md has the figures.
func BenchmarkAuthenticatedRead(b *testing.B) {
	a := newAPI(b)
	token, _ := a.user()
	acct := a.account(token, "USD")
	key := *a.apiKey(token, map[string]any{"name": "bench"}).Key
	h := a.handle.Handler()
	for _, tc := range []struct{ name, credential string }{{"token", token}, {"api key", key}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", "/v1/accounts/"+acct, nil)
				req.Header.Set("Authorization", "Bearer "+tc.credential)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("got %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
