package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/transferd/transferd/transfer"
)

// Credential returns what a request with a bearer token of the user needs to know, read in one
// statement at the time of the request (migration 0010): the user as they are now (role, status,
// token generation) and whether the token tokenID was revoked. An unknown user is CodeNotFound.
func (s *Store) Credential(ctx context.Context, userID, tokenID uuid.UUID) (transfer.Credential, error) {
	var row struct {
		User    userRow `gorm:"embedded"`
		Revoked bool
	}
	err := s.db.WithContext(ctx).Raw(`SELECT u.id, u.email, u.name, u.role, u.created_at,
			coalesce(a.status, 'active') AS status, coalesce(a.token_generation, 0) AS token_generation,
			EXISTS (SELECT FROM revoked_tokens r WHERE r.token_id = ?) AS revoked
		FROM users u LEFT JOIN user_access a ON a.user_id = u.id WHERE u.id = ?`, tokenID, userID).Take(&row).Error
	if err != nil {
		return transfer.Credential{}, notFound(err, transfer.CodeNotFound, "user", userID)
	}
	return transfer.Credential{User: row.User.domain(), TokenRevoked: row.Revoked}, nil
}

// keyTouchEvery is how stale last_used_at may grow: a key's use is written at most once a minute,
// so that a busy service's requests do not each write a row.
const keyTouchEvery = time.Minute

// KeyAccess finds the API key whose text hashes to hash, with its user as they are now; CodeNotFound
// when there is none. It records the key's use (last_used_at, to the minute) when it is usable.
func (s *Store) KeyAccess(ctx context.Context, hash []byte) (transfer.KeyAccess, error) {
	var row struct {
		Key  apiKeyRow `gorm:"embedded"`
		User userRow   `gorm:"embedded;embeddedPrefix:user_"`
		Now  time.Time
	}
	db := s.db.WithContext(ctx)
	err := db.Raw(`SELECT k.*, u.id AS user_id, u.email AS user_email, u.name AS user_name, u.role AS user_role,
			u.created_at AS user_created_at, coalesce(a.status, 'active') AS user_status,
			coalesce(a.token_generation, 0) AS user_token_generation, now() AS now
		FROM api_keys k JOIN users u ON u.id = k.user_id LEFT JOIN user_access a ON a.user_id = u.id
		WHERE k.key_hash = ?`, hash).Take(&row).Error
	if err != nil {
		return transfer.KeyAccess{}, notFound(err, transfer.CodeNotFound, "API key", "with that text")
	}
	out := transfer.KeyAccess{Key: row.Key.domain(), User: row.User.domain()}
	if out.Key.Usable(row.Now) && (out.Key.LastUsedAt == nil || row.Now.Sub(*out.Key.LastUsedAt) >= keyTouchEvery) {
		if err := db.Exec(`UPDATE api_keys SET last_used_at = now() WHERE id = ?
				AND (last_used_at IS NULL OR last_used_at < now() - ?::interval)`, out.Key.ID, keyTouchEvery.String()).Error; err != nil {
			return transfer.KeyAccess{}, fmt.Errorf("ledger: record an API key's use: %w", err)
		}
	}
	return out, nil
}

// CreateAPIKey records a new API key of k.UserID, and the audit entry of its creation, in one
// transaction. With an IdempotencyKey that the same user used before for a key, it returns that key
// with created = false (its text is not shown again: the ledger never had it), or
// CodeIdempotencyConflict when the earlier request differed (name, read_only, expires_at).
func (s *Store) CreateAPIKey(ctx context.Context, k transfer.NewAPIKey) (transfer.APIKey, bool, error) {
	if k.ID == uuid.Nil || k.UserID == uuid.Nil || len(k.Hash) != sha256.Size || k.Name == "" {
		return transfer.APIKey{}, false, transfer.Errorf(transfer.CodeInvalidInput, "an API key needs an id, a user, a name and its hash")
	}
	reqHash := apiKeyRequestHash(k)
	var out transfer.APIKey
	created := false
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if k.IdempotencyKey != "" {
			id, found, err := claimKey(tx, k.UserID, "api_key", k.IdempotencyKey, k.ID, reqHash)
			if err != nil {
				return err
			}
			if found {
				var row apiKeyRow
				if err := tx.Raw(`SELECT * FROM api_keys WHERE id = ?`, id).Take(&row).Error; err != nil {
					return fmt.Errorf("ledger: the API key of an idempotency key: %w", err)
				}
				out = row.domain()
				return nil
			}
		}
		// Checked here, after the key's claim, so that a retry after the expiry of the key its
		// first request created is answered from that key, as it is before.
		if k.ExpiresAt != nil {
			now, err := clockNow(tx)
			if err != nil {
				return err
			}
			if !k.ExpiresAt.After(now) {
				return &transfer.WindowError{Problems: []transfer.WindowProblem{{Field: "expires_at", Message: "must be in the future"}}}
			}
		}
		var row apiKeyRow
		err := tx.Raw(`INSERT INTO api_keys (id, user_id, name, prefix, key_hash, read_only, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *`, k.ID, k.UserID, k.Name, k.Prefix, k.Hash, k.ReadOnly, k.ExpiresAt).
			Scan(&row).Error
		if err != nil {
			return fmt.Errorf("ledger: create API key: %w", err)
		}
		out, created = row.domain(), true
		detail := map[string]any{"name": k.Name, "prefix": k.Prefix, "read_only": k.ReadOnly}
		return recordAudit(tx, k.Actor, transfer.AuditAPIKeyCreated, "api_key", k.ID, detail)
	})
	if err != nil {
		return transfer.APIKey{}, false, businessOr(err)
	}
	return out, created, nil
}

// apiKeyRequestHash is the digest of what defines a key request, to tell its retry from another
// request with the same Idempotency-Key.
func apiKeyRequestHash(k transfer.NewAPIKey) []byte {
	var expires string
	if k.ExpiresAt != nil {
		expires = k.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	b, _ := json.Marshal([]any{k.Name, k.ReadOnly, expires}) // Strings and a bool always marshal.
	sum := sha256.Sum256(b)
	return sum[:]
}

// claimKey remembers the caller's Idempotency-Key of scope for the object id, inside tx. found is
// true when the key was remembered already, with the id it named then: the caller's retry, or
// CodeIdempotencyConflict when its request hash differs. A concurrent claim of the same key makes
// this one wait for that transaction's end.
func claimKey(tx *gorm.DB, caller uuid.UUID, scope, key string, id uuid.UUID, reqHash []byte) (uuid.UUID, bool, error) {
	sum := sha256.Sum256([]byte(key))
	var claimed []uuid.UUID
	err := tx.Raw(`INSERT INTO idempotency_keys (caller_id, scope, key_hash, resource_id, request_hash)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING resource_id`, caller, scope, sum[:], id, reqHash).Scan(&claimed).Error
	if err != nil {
		return uuid.Nil, false, fmt.Errorf("ledger: remember idempotency key: %w", err)
	}
	if len(claimed) > 0 {
		return id, false, nil
	}
	var prior struct {
		ResourceID  uuid.UUID
		RequestHash []byte
	}
	if err := tx.Raw(`SELECT resource_id, request_hash FROM idempotency_keys WHERE caller_id = ? AND scope = ? AND key_hash = ?`,
		caller, scope, sum[:]).Take(&prior).Error; err != nil {
		return uuid.Nil, false, fmt.Errorf("ledger: idempotency key: %w", err)
	}
	if string(prior.RequestHash) != string(reqHash) {
		return uuid.Nil, false, transfer.Errorf(transfer.CodeIdempotencyConflict, "this Idempotency-Key was used for another request")
	}
	return prior.ResourceID, true, nil
}

// APIKeys returns one page of a user's API keys, most recently created first.
func (s *Store) APIKeys(ctx context.Context, userID uuid.UUID, p transfer.Page) (transfer.List[transfer.APIKey], error) {
	limit, err := pageLimit(p)
	if err != nil {
		return transfer.List[transfer.APIKey]{}, err
	}
	if p, err = s.start(ctx, p); err != nil {
		return transfer.List[transfer.APIKey]{}, err
	}
	where, args, err := keyset(p, []string{"k.user_id = ?"}, []any{userID}, "k.")
	if err != nil {
		return transfer.List[transfer.APIKey]{}, err
	}
	var rows []apiKeyRow
	q := "SELECT k.* FROM api_keys k WHERE " + strings.Join(where, " AND ") + keysetOrder("k.") + " LIMIT ?"
	if err := s.db.WithContext(ctx).Raw(q, append(args, limit+1)...).Scan(&rows).Error; err != nil {
		return transfer.List[transfer.APIKey]{}, fmt.Errorf("ledger: list API keys: %w", err)
	}
	return page(rows, limit, func(r apiKeyRow) (transfer.APIKey, error) { return r.domain(), nil },
		func(r apiKeyRow) cursor { return rowCursor(r.Txid, r.CreatedAt, r.ID) })
}

// RevokeAPIKey revokes one of the user's API keys, and records it in the audit log, in one
// transaction; revoking a revoked key changes nothing. A key of someone else, or none, is
// CodeNotFound.
func (s *Store) RevokeAPIKey(ctx context.Context, actor transfer.Actor, userID, id uuid.UUID) (transfer.APIKey, error) {
	var out transfer.APIKey
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var rows []apiKeyRow
		if err := tx.Raw(`UPDATE api_keys SET revoked_at = now() WHERE id = ? AND user_id = ? AND revoked_at IS NULL RETURNING *`,
			id, userID).Scan(&rows).Error; err != nil {
			return fmt.Errorf("ledger: revoke API key: %w", err)
		}
		if len(rows) == 1 {
			out = rows[0].domain()
			return recordAudit(tx, actor, transfer.AuditAPIKeyRevoked, "api_key", id, map[string]any{"prefix": out.Prefix})
		}
		var row apiKeyRow
		if err := tx.Raw(`SELECT * FROM api_keys WHERE id = ? AND user_id = ?`, id, userID).Take(&row).Error; err != nil {
			return notFound(err, transfer.CodeNotFound, "API key", id)
		}
		out = row.domain()
		return nil
	})
	if err != nil {
		return transfer.APIKey{}, businessOr(err)
	}
	return out, nil
}

// RevokeToken revokes the bearer token tokenID of the user until it expires, and records it in the
// audit log, in one transaction; revoking it again changes nothing. It also forgets tokens that
// expired a day ago, which no check needs any more, even on an API process whose clock is behind.
func (s *Store) RevokeToken(ctx context.Context, actor transfer.Actor, userID, tokenID uuid.UUID, expiresAt time.Time) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(`INSERT INTO revoked_tokens (token_id, user_id, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
			tokenID, userID, expiresAt)
		if res.Error != nil {
			return fmt.Errorf("ledger: revoke token: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return nil
		}
		if err := tx.Exec(`DELETE FROM revoked_tokens WHERE token_id IN (
				SELECT token_id FROM revoked_tokens WHERE expires_at < now() - interval '1 day' LIMIT 100)`).Error; err != nil {
			return fmt.Errorf("ledger: forget expired tokens: %w", err)
		}
		return recordAudit(tx, actor, transfer.AuditTokenRevoked, "user", userID, map[string]any{"token_id": tokenID.String()})
	})
	return businessOr(err)
}

// UpdateUser changes a user's status or role and records each change in the audit log, in one
// transaction under the user's row lock. Disabling raises the user's token generation, so that their
// tokens issued before stay refused after a re-enable. An unknown user is CodeNotFound.
func (s *Store) UpdateUser(ctx context.Context, actor transfer.Actor, id uuid.UUID, patch transfer.UserPatch) (transfer.User, error) {
	if (patch.Status != nil && !patch.Status.Valid()) || (patch.Role != nil && !patch.Role.Valid()) {
		return transfer.User{}, transfer.Errorf(transfer.CodeInvalidInput, "unknown status or role")
	}
	var out transfer.User
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row userRow
		// NO KEY UPDATE: only role changes, so accounts created for the user meanwhile need not wait.
		if err := tx.Raw(`SELECT id FROM users WHERE id = ? FOR NO KEY UPDATE`, id).Take(&row).Error; err != nil {
			return notFound(err, transfer.CodeNotFound, "user", id)
		}
		if err := tx.Raw(userSelect+` WHERE u.id = ?`, id).Take(&row).Error; err != nil {
			return fmt.Errorf("ledger: read user: %w", err)
		}
		before := row.domain()
		if patch.Role != nil && *patch.Role != before.Role {
			if err := tx.Exec(`UPDATE users SET role = ? WHERE id = ?`, string(*patch.Role), id).Error; err != nil {
				return fmt.Errorf("ledger: change role: %w", err)
			}
			if err := recordAudit(tx, actor, transfer.AuditUserRole, "user", id,
				map[string]any{"from": string(before.Role), "to": string(*patch.Role)}); err != nil {
				return err
			}
		}
		if patch.Status != nil && *patch.Status != before.Status {
			// A disable raises the generation; a re-enable keeps it, so the tokens refused stay refused.
			raise := 0
			if *patch.Status == transfer.UserDisabled {
				raise = 1
			}
			if err := tx.Exec(`INSERT INTO user_access (user_id, status, token_generation) VALUES (?, ?, ?)
				ON CONFLICT (user_id) DO UPDATE SET status = excluded.status,
					token_generation = user_access.token_generation + ?, updated_at = now()`,
				id, string(*patch.Status), raise, raise).Error; err != nil {
				return fmt.Errorf("ledger: change status: %w", err)
			}
			if err := recordAudit(tx, actor, transfer.AuditUserStatus, "user", id,
				map[string]any{"from": string(before.Status), "to": string(*patch.Status)}); err != nil {
				return err
			}
		}
		if err := tx.Raw(userSelect+` WHERE u.id = ?`, id).Take(&row).Error; err != nil {
			return fmt.Errorf("ledger: read user: %w", err)
		}
		out = row.domain()
		return nil
	})
	if err != nil {
		return transfer.User{}, businessOr(err)
	}
	return out, nil
}

// Users returns one page of every user, most recently created first. Users are few and created one
// statement each, so the page order is (created_at, id) without the lists' watermark: a sign-up
// whose transaction started before a page was read and committed after it could sort below that
// page's cursor (a window of the statement's few milliseconds).
func (s *Store) Users(ctx context.Context, p transfer.Page) (transfer.List[transfer.User], error) {
	limit, err := pageLimit(p)
	if err != nil {
		return transfer.List[transfer.User]{}, err
	}
	q := userSelect
	var args []any
	if p.Cursor != "" {
		c, err := decodeCursor(p.Cursor)
		if err != nil {
			return transfer.List[transfer.User]{}, err
		}
		if c.X != nil || c.Seq != 0 || c.ID == uuid.Nil {
			return transfer.List[transfer.User]{}, transfer.Errorf(transfer.CodeInvalidCursor, "cursor does not belong to this list")
		}
		q += ` WHERE (u.created_at, u.id) < (?, ?)`
		args = append(args, c.time(), c.ID)
	}
	q += ` ORDER BY u.created_at DESC, u.id DESC LIMIT ?`
	var rows []userRow
	if err := s.db.WithContext(ctx).Raw(q, append(args, limit+1)...).Scan(&rows).Error; err != nil {
		return transfer.List[transfer.User]{}, fmt.Errorf("ledger: list users: %w", err)
	}
	return page(rows, limit, func(r userRow) (transfer.User, error) { return r.domain(), nil },
		func(r userRow) cursor { return cursor{T: r.CreatedAt.UnixMicro(), ID: r.ID} })
}

// RecordAudit writes one audit entry on its own: the API's request of a transfer's cancel or capture,
// recorded before the request is sent (the ledger's step that decides it records the cancel or
// capture itself, as the latest requester's: migration 0011).
func (s *Store) RecordAudit(ctx context.Context, actor transfer.Actor, action, subjectType string, subjectID uuid.UUID, detail map[string]any) error {
	return recordAudit(s.db.WithContext(ctx), actor, action, subjectType, subjectID, detail)
}

// recordAudit writes one audit entry with db, inside the caller's transaction when it has one.
func recordAudit(db *gorm.DB, actor transfer.Actor, action, subjectType string, subjectID uuid.UUID, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	b, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("ledger: audit detail: %w", err)
	}
	err = db.Exec(`INSERT INTO audit_log (id, actor_id, api_key_id, action, subject_type, subject_id, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?::jsonb) ON CONFLICT DO NOTHING`, uuid.New(), nullable(actor.UserID), nullable(actor.APIKeyID),
		action, subjectType, subjectID, string(b)).Error
	if err != nil {
		return fmt.Errorf("ledger: record %s: %w", action, err)
	}
	return nil
}

// AuditLog returns one page of the audit log, most recent first.
func (s *Store) AuditLog(ctx context.Context, p transfer.Page) (transfer.List[transfer.AuditEntry], error) {
	limit, err := pageLimit(p)
	if err != nil {
		return transfer.List[transfer.AuditEntry]{}, err
	}
	if p, err = s.start(ctx, p); err != nil {
		return transfer.List[transfer.AuditEntry]{}, err
	}
	where, args, err := keyset(p, nil, nil, "l.")
	if err != nil {
		return transfer.List[transfer.AuditEntry]{}, err
	}
	var rows []auditRow
	q := "SELECT l.* FROM audit_log l WHERE " + strings.Join(where, " AND ") + keysetOrder("l.") + " LIMIT ?"
	if err := s.db.WithContext(ctx).Raw(q, append(args, limit+1)...).Scan(&rows).Error; err != nil {
		return transfer.List[transfer.AuditEntry]{}, fmt.Errorf("ledger: list audit log: %w", err)
	}
	return page(rows, limit, auditRow.domain, func(r auditRow) cursor { return rowCursor(r.Txid, r.CreatedAt, r.ID) })
}

// businessOr returns a business error as it is and wraps anything else as the ledger's.
func businessOr(err error) error {
	if err == nil || isBusiness(err) {
		return err
	}
	return fmt.Errorf("ledger: %w", err)
}

type apiKeyRow struct {
	ID         uuid.UUID
	UserID     uuid.UUID
	Name       string
	Prefix     string
	ReadOnly   bool
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
	Txid       uint64
}

func (r apiKeyRow) domain() transfer.APIKey {
	return transfer.APIKey{ID: r.ID, UserID: r.UserID, Name: r.Name, Prefix: r.Prefix, ReadOnly: r.ReadOnly,
		CreatedAt: r.CreatedAt.UTC(), ExpiresAt: utcPtr(r.ExpiresAt), LastUsedAt: utcPtr(r.LastUsedAt), RevokedAt: utcPtr(r.RevokedAt)}
}

type auditRow struct {
	ID          uuid.UUID
	ActorID     *uuid.UUID
	APIKeyID    *uuid.UUID `gorm:"column:api_key_id"`
	Action      string
	SubjectType string
	SubjectID   uuid.UUID
	Detail      []byte
	CreatedAt   time.Time
	Txid        uint64
}

func (r auditRow) domain() (transfer.AuditEntry, error) {
	e := transfer.AuditEntry{ID: r.ID, Action: r.Action, SubjectType: r.SubjectType, SubjectID: r.SubjectID, CreatedAt: r.CreatedAt.UTC()}
	if r.ActorID != nil {
		e.Actor.UserID = *r.ActorID
	}
	if r.APIKeyID != nil {
		e.Actor.APIKeyID = *r.APIKeyID
	}
	if err := json.Unmarshal(r.Detail, &e.Detail); err != nil {
		return transfer.AuditEntry{}, fmt.Errorf("ledger: audit entry %s: %w", r.ID, err)
	}
	return e, nil
}
