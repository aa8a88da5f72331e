// Package docs holds the project's documentation sources; the API embeds its OpenAPI document from
// here, so the document served is the one in the repository.
package docs

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document of the HTTP API (openapi.json).
//
//go:embed openapi.json
var OpenAPI []byte
