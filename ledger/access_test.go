package ledger_test

import (
	"context"
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// TestCredential checks what a token's check reads: the user's current role, status and token
// generation, and the token's own revocation, field by field.
func TestCredential(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	u, admin := newUser(t, s), newUser(t, s)
	tok := uuid.New()
	c, err := s.Credential(ctx, u.ID, tok)
	if err != nil || c.User.ID != u.ID || c.User.Email != u.Email || c.User.Role != transfer.RoleUser ||
		c.User.Status != transfer.UserActive || c.User.TokenGeneration != 0 || c.TokenRevoked {
		t.Fatalf("fresh user: got %+v, %v", c, err)
	}
	actor := transfer.Actor{UserID: admin.ID}
	role, disabled, active := transfer.RoleAdmin, transfer.UserDisabled, transfer.UserActive
	if _, err := s.UpdateUser(ctx, actor, u.ID, transfer.UserPatch{Role: &role}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Credential(ctx, u.ID, tok); c.User.Role != transfer.RoleAdmin {
		t.Errorf("after the promotion: role %q", c.User.Role)
	}
	got, err := s.UpdateUser(ctx, actor, u.ID, transfer.UserPatch{Status: &disabled})
	if err != nil || got.Status != transfer.UserDisabled || got.TokenGeneration != 1 {
		t.Errorf("disable: got %+v, %v; want disabled at generation 1", got, err)
	}
	// A second disable changes nothing; a re-enable keeps the generation.
	if got, _ := s.UpdateUser(ctx, actor, u.ID, transfer.UserPatch{Status: &disabled}); got.TokenGeneration != 1 {
		t.Errorf("disable again: generation %d, want 1", got.TokenGeneration)
	}
	if got, _ := s.UpdateUser(ctx, actor, u.ID, transfer.UserPatch{Status: &active}); got.Status != transfer.UserActive || got.TokenGeneration != 1 {
		t.Errorf("re-enable: got %+v, want active at generation 1", got)
	}
	if byEmail, _ := s.UserByEmail(ctx, u.Email); byEmail.TokenGeneration != 1 || byEmail.Status != transfer.UserActive {
		t.Errorf("UserByEmail: got %+v, want the generation a new token carries", byEmail)
	}
	for range 2 {
		if err := s.RevokeToken(ctx, transfer.Actor{UserID: u.ID}, u.ID, tok, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if c, _ := s.Credential(ctx, u.ID, tok); !c.TokenRevoked {
		t.Errorf("revoked token: not reported revoked")
	}
	if c, _ := s.Credential(ctx, u.ID, uuid.New()); c.TokenRevoked {
		t.Errorf("another token of the user: reported revoked")
	}
	_, err = s.Credential(ctx, uuid.New(), tok)
	checkCode(t, err, transfer.CodeNotFound)
	_, err = s.UpdateUser(ctx, actor, uuid.New(), transfer.UserPatch{Status: &disabled})
	checkCode(t, err, transfer.CodeNotFound)
	if n := countRows(t, db, `SELECT count(*) FROM audit_log WHERE subject_id = $1`, u.ID); n != 4 {
		t.Errorf("audit entries of the user: got %d, want 4 (role, disable, enable, token revoked once)", n)
	}
}

// TestAPIKeyAccess checks a key's record and its lookup by hash: every field the check needs, the
// use recorded at most once a minute, revocation by its owner only, and Idempotency-Key on creation
// under concurrent retries.
func TestAPIKeyAccess(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	u, other := newUser(t, s), newUser(t, s)
	hash := sha256.Sum256([]byte("tfd_AAAAAAAAsecret"))
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	k, created, err := s.CreateAPIKey(ctx, transfer.NewAPIKey{ID: uuid.New(), UserID: u.ID, Name: "svc", Prefix: "tfd_AAAAAAAA",
		Hash: hash[:], ReadOnly: true, ExpiresAt: &expires, Actor: transfer.Actor{UserID: u.ID}})
	if err != nil || !created {
		t.Fatalf("create: %v", err)
	}
	got, err := s.KeyAccess(ctx, hash[:])
	if err != nil || got.Key.ID != k.ID || got.Key.UserID != u.ID || !got.Key.ReadOnly || got.Key.RevokedAt != nil ||
		got.Key.ExpiresAt == nil || !got.Key.ExpiresAt.Equal(expires) || got.Key.Prefix != "tfd_AAAAAAAA" ||
		got.User.ID != u.ID || got.User.Role != transfer.RoleUser || got.User.Status != transfer.UserActive {
		t.Fatalf("KeyAccess: got %+v, %v", got, err)
	}
	again, _ := s.KeyAccess(ctx, hash[:])
	if again.Key.LastUsedAt == nil {
		t.Fatalf("last_used_at: not recorded")
	}
	first := *again.Key.LastUsedAt
	if third, _ := s.KeyAccess(ctx, hash[:]); !third.Key.LastUsedAt.Equal(first) {
		t.Errorf("last_used_at moved within the minute: %v then %v", first, third.Key.LastUsedAt)
	}
	wrong := sha256.Sum256([]byte("tfd_AAAAAAAAsecreT"))
	_, err = s.KeyAccess(ctx, wrong[:])
	checkCode(t, err, transfer.CodeNotFound)

	_, err = s.RevokeAPIKey(ctx, transfer.Actor{UserID: other.ID}, other.ID, k.ID)
	checkCode(t, err, transfer.CodeNotFound)
	for range 2 {
		if r, err := s.RevokeAPIKey(ctx, transfer.Actor{UserID: u.ID}, u.ID, k.ID); err != nil || r.RevokedAt == nil {
			t.Fatalf("revoke: got %+v, %v", r, err)
		}
	}
	if got, _ := s.KeyAccess(ctx, hash[:]); got.Key.RevokedAt == nil || got.Key.Usable(time.Now()) {
		t.Errorf("revoked key: got %+v, want revoked", got.Key)
	}
	if n := countRows(t, db, `SELECT count(*) FROM audit_log WHERE subject_id = $1`, k.ID); n != 2 {
		t.Errorf("audit entries of the key: got %d, want 2 (created, revoked once)", n)
	}

	// Concurrent retries with one Idempotency-Key create one key.
	var wg sync.WaitGroup
	ids := make(chan uuid.UUID, 10)
	for i := range 10 {
		wg.Go(func() {
			h := sha256.Sum256([]byte{byte(i)})
			k, _, err := s.CreateAPIKey(ctx, transfer.NewAPIKey{ID: uuid.New(), UserID: u.ID, Name: "deploy", Prefix: "tfd_BBBBBBBB",
				Hash: h[:], IdempotencyKey: "once", Actor: transfer.Actor{UserID: u.ID}})
			if err != nil {
				t.Errorf("retry %d: %v", i, err)
				return
			}
			ids <- k.ID
		})
	}
	wg.Wait()
	close(ids)
	var firstID uuid.UUID
	for id := range ids {
		if firstID == uuid.Nil {
			firstID = id
		}
		if id != firstID {
			t.Errorf("retries answered keys %s and %s", firstID, id)
		}
	}
	if n := countRows(t, db, `SELECT count(*) FROM api_keys WHERE name = 'deploy'`); n != 1 {
		t.Errorf("keys created by 10 retries: got %d, want 1", n)
	}
	h := sha256.Sum256([]byte("x"))
	_, _, err = s.CreateAPIKey(ctx, transfer.NewAPIKey{ID: uuid.New(), UserID: u.ID, Name: "deploy", Prefix: "tfd_CCCCCCCC",
		Hash: h[:], ReadOnly: true, IdempotencyKey: "once"})
	checkCode(t, err, transfer.CodeIdempotencyConflict)
	if _, created, err := s.CreateAPIKey(ctx, transfer.NewAPIKey{ID: uuid.New(), UserID: other.ID, Name: "deploy", Prefix: "tfd_CCCCCCCC",
		Hash: h[:], IdempotencyKey: "once"}); err != nil || !created {
		t.Errorf("another user's same Idempotency-Key: created %v, %v", created, err)
	}
	mustAudit(t, s)
}
