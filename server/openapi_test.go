package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/transferd/transferd/docs"
	"github.com/transferd/transferd/server"
)

// TestOpenAPIMatchesRouter checks that every route of the router is in the OpenAPI document and
// every operation of the document is a route, and that the document is served as is.
func TestOpenAPIMatchesRouter(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(docs.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi version: got %q, want 3.1.0", doc.OpenAPI)
	}
	var documented []string
	for path, item := range doc.Paths {
		for method := range item {
			if method == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	auth, err := server.NewAuth(testSecret, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	routes := server.New(server.Config{Auth: auth}).Routes()
	slices.Sort(documented)
	slices.Sort(routes)
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in docs/openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("docs/openapi.json documents %s, which no route serves", d)
		}
	}
	if len(routes) != 37 {
		t.Errorf("got %d routes, want the 37 of api.md", len(routes))
	}
}

func TestOpenAPIServed(t *testing.T) {
	auth, err := server.NewAuth(testSecret, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	h := server.New(server.Config{Auth: auth}).Handler()
	rec := httptest.NewRecorder()
	req, _ := http.NewRequest("GET", "/openapi.json", nil)
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.String() != string(docs.OpenAPI) {
		t.Errorf("GET /openapi.json: got %d and %d bytes, want 200 and the document", rec.Code, rec.Body.Len())
	}
}
