package ledger_test

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// BenchmarkCredentialCheck measures the statement each authenticated request runs: Credential for a
// bearer token, KeyAccess for an API key (its use recorded at most once a minute). Run with
// `go test -run XXX -bench CredentialCheck ./ledger`; docs/benchmarks.md has the figures.
func BenchmarkCredentialCheck(b *testing.B) {
	ctx := context.Background()
	s, _ := newStoreDB(b)
	u := newUser(b, s)
	hash := sha256.Sum256([]byte("tfd_benchbenchsecret"))
	if _, _, err := s.CreateAPIKey(ctx, transfer.NewAPIKey{ID: uuid.New(), UserID: u.ID, Name: "bench", Prefix: "tfd_benchben",
		Hash: hash[:]}); err != nil {
		b.Fatal(err)
	}
	token := uuid.New()
	b.Run("token", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Credential(ctx, u.ID, token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("api key", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.KeyAccess(ctx, hash[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
