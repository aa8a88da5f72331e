package server

import (
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// API keys are "tfd_", 8 characters that identify the key (its prefix, with the tag), and 40 secret
// ones, all from the 62 letters and digits: 48 random characters, about 285 bits. The tag lets
// secret scanners find leaked keys; the prefix lets their owner recognise one in a list.
const (
	apiKeyTag       = "tfd_"
	apiKeyIDChars   = 8
	apiKeySecret    = 40
	apiKeyPrefixLen = len(apiKeyTag) + apiKeyIDChars
	apiKeyLen       = apiKeyPrefixLen + apiKeySecret
	maxAPIKeyName   = 200
	revokePath      = "/v1/auth/revoke"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newAPIKey returns a new key's text.
func newAPIKey() string {
	var b strings.Builder
	b.WriteString(apiKeyTag)
	buf := make([]byte, apiKeyIDChars+apiKeySecret)
	// Rejection sampling keeps every character equally likely: 248 is the largest multiple of 62
	// below 256.
	for i := 0; i < len(buf); {
		var one [64]byte
		rand.Read(one[:]) // crypto/rand.Read never fails: it panics rather than return weak bytes.
		for _, x := range one {
			if x < 248 && i < len(buf) {
				buf[i] = base62[x%62]
				i++
			}
		}
	}
	b.Write(buf)
	return b.String()
}

// looksLikeAPIKey reports whether a bearer credential is an API key rather than a token.
func looksLikeAPIKey(s string) bool { return strings.HasPrefix(s, apiKeyTag) }

// hashAPIKey is what the ledger keeps of a key: its SHA-256. A key carries 285 random bits, so a
// fast hash is as safe as a slow one and costs a request nothing.
func hashAPIKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

type createAPIKeyRequest struct {
	Name      string `json:"name"`
	ExpiresAt string `json:"expires_at"`
	ReadOnly  bool   `json:"read_only"`
}

type apiKeyJSON struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	Prefix     string  `json:"prefix"`
	ReadOnly   bool    `json:"read_only"`
	CreatedAt  string  `json:"created_at"`
	ExpiresAt  *string `json:"expires_at"`
	LastUsedAt *string `json:"last_used_at"`
	RevokedAt  *string `json:"revoked_at"`
}

// newAPIKeyJSON is the answer to a key's creation: the key with its text, shown only there, or on a
// retry with the same Idempotency-Key, none and a notice that says why.
type newAPIKeyJSON struct {
	apiKeyJSON
	Key    *string `json:"key"`
	Notice string  `json:"notice,omitempty"`
}

func toAPIKeyJSON(k transfer.APIKey) apiKeyJSON {
	return apiKeyJSON{ID: k.ID.String(), Name: k.Name, Prefix: k.Prefix, ReadOnly: k.ReadOnly, CreatedAt: timestamp(k.CreatedAt),
		ExpiresAt: optionalTimestamp(k.ExpiresAt), LastUsedAt: optionalTimestamp(k.LastUsedAt), RevokedAt: optionalTimestamp(k.RevokedAt)}
}

// handleCreateAPIKey creates an API key of the caller, which acts as them with their current role.
// Its text is in this answer only; a retry with the same Idempotency-Key returns the key it created,
// without its text.
func (s *Server) handleCreateAPIKey(c *gin.Context) {
	var req createAPIKeyRequest
	if !decodeJSON(c, &req) {
		return
	}
	var fe fieldErrors
	name := strings.TrimSpace(req.Name)
	switch {
	case name == "":
		fe.add("name", "is required")
	case utf8.RuneCountInString(name) > maxAPIKeyName || strings.ContainsRune(name, 0):
		fe.add("name", "must be at most 200 characters, without NUL")
	}
	expires := parseOptionalTime(&fe, "expires_at", req.ExpiresAt)
	past := expires != nil && !expires.After(time.Now())
	if past {
		fe.add("expires_at", "must be in the future")
	}
	idemKey := idempotencyKeyHeader(&fe, c.Request.Header["Idempotency-Key"])
	// A retry (same Idempotency-Key) after its key's expiry is answered from that key: when the
	// past expiry is all that is wrong, the ledger refuses it only if the key names no API key yet.
	if past && idemKey != "" && len(fe) == 1 {
		fe = nil
	}
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	who := callerOf(c)
	text := newAPIKey()
	k, created, err := s.ledger.CreateAPIKey(c.Request.Context(), transfer.NewAPIKey{ID: uuid.New(), UserID: who.ID, Name: name,
		Prefix: text[:apiKeyPrefixLen], Hash: hashAPIKey(text), ReadOnly: req.ReadOnly, ExpiresAt: expires,
		IdempotencyKey: idemKey, Actor: who.actor()})
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Location", "/v1/api-keys/"+k.ID.String())
	if !created {
		c.Header("Idempotent-Replayed", "true")
		c.JSON(http.StatusOK, newAPIKeyJSON{apiKeyJSON: toAPIKeyJSON(k),
			Notice: "an earlier request with this Idempotency-Key created this key; its text was shown only in that answer"})
		return
	}
	c.JSON(http.StatusCreated, newAPIKeyJSON{apiKeyJSON: toAPIKeyJSON(k), Key: &text})
}

// handleListAPIKeys lists the caller's API keys, revoked ones included, without their text.
func (s *Server) handleListAPIKeys(c *gin.Context) {
	var fe fieldErrors
	p := parsePage(c, &fe)
	if err := fe.err(); err != nil {
		abortWithError(c, err)
		return
	}
	list, err := s.ledger.APIKeys(c.Request.Context(), callerOf(c).ID, p)
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.JSON(http.StatusOK, toListJSON(list, toAPIKeyJSON))
}

// handleRevokeAPIKey revokes one of the caller's API keys: it is refused from the next request on.
// Revoking a revoked key answers the same; another user's key, or none, is 404.
func (s *Server) handleRevokeAPIKey(c *gin.Context) {
	id, ok := idParam(c, "API key")
	if !ok {
		return
	}
	who := callerOf(c)
	if _, err := s.ledger.RevokeAPIKey(c.Request.Context(), who.actor(), who.ID, id); err != nil {
		abortWithError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// handleRevoke revokes the credential the request is sent with: its bearer token until it expires,
// or its API key.
func (s *Server) handleRevoke(c *gin.Context) {
	who := callerOf(c)
	var err error
	if who.KeyID != uuid.Nil {
		_, err = s.ledger.RevokeAPIKey(c.Request.Context(), who.actor(), who.ID, who.KeyID)
	} else {
		err = s.ledger.RevokeToken(c.Request.Context(), who.actor(), who.ID, who.TokenID, who.TokenExpires)
	}
	if err != nil {
		abortWithError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
