package webhooks_test

import (
	"net/http"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/transferd/transferd/webhooks"
)

// TestSignVerifiesWithTheStandardLibrary checks our signatures with the Standard Webhooks Go
// library, not with our own code: a receiver holding the secret as shown (whsec_...) verifies
// every attempt, during a rotation with either secret, and refuses a changed body or another secret.
func TestSignVerifiesWithTheStandardLibrary(t *testing.T) {
	current, previous := webhooks.NewSecret(), webhooks.NewSecret()
	body := []byte(`{"id":"e","type":"transfer.completed","data":{"object":{"amount":100}}}`)
	at := time.Now()
	headers := func(keys [][]byte, b []byte) http.Header {
		h := webhooks.Sign("8f8c5d4e-0000-4000-8000-000000000001", at, b, keys)
		out := http.Header{}
		out.Set("webhook-id", h.ID)
		out.Set("webhook-timestamp", h.Timestamp)
		out.Set("webhook-signature", h.Signature)
		return out
	}
	verifier := func(key []byte) *standardwebhooks.Webhook {
		wh, err := standardwebhooks.NewWebhook(webhooks.EncodeSecret(key))
		if err != nil {
			t.Fatal(err)
		}
		return wh
	}
	tests := []struct {
		name   string
		signer [][]byte
		holder []byte
		body   []byte
		ok     bool
	}{
		{"the current secret", [][]byte{current}, current, body, true},
		{"during a rotation, a receiver with the new secret", [][]byte{current, previous}, current, body, true},
		{"during a rotation, a receiver with the old secret", [][]byte{current, previous}, previous, body, true},
		{"after the rotation, the old secret", [][]byte{current}, previous, body, false},
		{"a changed body", [][]byte{current}, current, append([]byte(nil), `{"amount":1}`...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := headers(tt.signer, body)
			err := verifier(tt.holder).Verify(tt.body, h)
			if (err == nil) != tt.ok {
				t.Errorf("verify: got %v, want ok %v", err, tt.ok)
			}
		})
	}
	if key, err := webhooks.DecodeSecret(webhooks.EncodeSecret(current)); err != nil || string(key) != string(current) {
		t.Errorf("DecodeSecret(EncodeSecret(k)): got %x, %v", key, err)
	}
	if len(webhooks.EncodeSecret(current)) < len("whsec_")+32 {
		t.Errorf("a secret of %d bytes is too short", len(current))
	}
}
