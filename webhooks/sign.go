// Package webhooks delivers events to the endpoints users register, as the Standard Webhooks
// specification says (https://www.standardwebhooks.com): each delivery is a Temporal workflow that
// tries until a 2xx answer or for days, each attempt signed afresh with the endpoint's secrets and
// sent through an outbound client that refuses private destinations (outbound.go).
package webhooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// secretPrefix starts an endpoint's secret as users see it; what follows is the base64 of the key.
const secretPrefix = "whsec_"

// SecretBytes is the size of a new signing key: 32 random bytes.
const SecretBytes = 32

// NewSecret returns a new signing key.
func NewSecret() []byte {
	b := make([]byte, SecretBytes)
	rand.Read(b) // crypto/rand.Read never fails: it panics rather than return weak bytes.
	return b
}

// EncodeSecret is a key as shown to its endpoint's owner: whsec_ and its base64.
func EncodeSecret(key []byte) string { return secretPrefix + base64.StdEncoding.EncodeToString(key) }

// DecodeSecret turns a shown secret back into its key.
func DecodeSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return nil, errors.New("webhooks: a secret starts with whsec_")
	}
	return base64.StdEncoding.DecodeString(rest)
}

// Headers are the Standard Webhooks headers of one attempt.
type Headers struct {
	ID        string // webhook-id: the event's id, the same on every attempt
	Timestamp string // webhook-timestamp: Unix seconds of this attempt
	Signature string // webhook-signature: "v1,<base64>" per key, space-separated
}

// Sign signs one attempt of a delivery at time at with each of keys (the endpoint's current secret,
// and during a rotation its previous one): HMAC-SHA256 over "id.timestamp.body", so that a receiver
// holding either secret verifies it.
func Sign(id string, at time.Time, body []byte, keys [][]byte) Headers {
	ts := strconv.FormatInt(at.Unix(), 10)
	sigs := make([]string, 0, len(keys))
	for _, k := range keys {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(ts))
		mac.Write([]byte{'.'})
		mac.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return Headers{ID: id, Timestamp: ts, Signature: strings.Join(sigs, " ")}
}
