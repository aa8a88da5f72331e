package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/transferd/transferd/transfer"
)

// CreateUser stores a new user whose password the caller has already hashed. It assigns the id when
// u.ID is nil. An email that exists in any case is an *transfer.Error with code CodeEmailTaken.
func (s *Store) CreateUser(ctx context.Context, u transfer.User) (transfer.User, error) {
	if u.ID == uuid.Nil {
		u.ID = uuid.New()
	}
	if u.Role == "" {
		u.Role = transfer.RoleUser
	}
	var row userRow
	err := s.db.WithContext(ctx).Raw(`INSERT INTO users (id, email, password_hash, name, role)
		VALUES (?, ?, ?, ?, ?) RETURNING *`, u.ID, strings.TrimSpace(u.Email), u.PasswordHash, u.Name, string(u.Role)).
		Scan(&row).Error
	if errors.Is(s.translate(err), gorm.ErrDuplicatedKey) {
		return transfer.User{}, transfer.Errorf(transfer.CodeEmailTaken, "email %s is already registered", u.Email)
	}
	if err != nil {
		return transfer.User{}, fmt.Errorf("ledger: create user: %w", err)
	}
	return row.domain(), nil
}

// userSelect reads users (u) with their access (user_access, migration 0010): a user without a row
// there is active, at token generation 0.
const userSelect = `SELECT u.id, u.email, u.password_hash, u.name, u.role, u.created_at,
		coalesce(a.status, 'active') AS status, coalesce(a.token_generation, 0) AS token_generation
	FROM users u LEFT JOIN user_access a ON a.user_id = u.id`

// UserByEmail finds a user by email, case-insensitively. An unknown email is CodeNotFound.
func (s *Store) UserByEmail(ctx context.Context, email string) (transfer.User, error) {
	var row userRow
	err := s.db.WithContext(ctx).Raw(userSelect+` WHERE lower(u.email) = lower(?)`, strings.TrimSpace(email)).
		Take(&row).Error
	if err != nil {
		return transfer.User{}, notFound(err, transfer.CodeNotFound, "user", email)
	}
	return row.domain(), nil
}

// User finds a user by id. An unknown id is CodeNotFound.
func (s *Store) User(ctx context.Context, id uuid.UUID) (transfer.User, error) {
	var row userRow
	if err := s.db.WithContext(ctx).Raw(userSelect+` WHERE u.id = ?`, id).Take(&row).Error; err != nil {
		return transfer.User{}, notFound(err, transfer.CodeNotFound, "user", id)
	}
	return row.domain(), nil
}

// HasAdmin reports whether any admin exists.
func (s *Store) HasAdmin(ctx context.Context) (bool, error) {
	var n int64
	if err := s.db.WithContext(ctx).Raw(`SELECT count(*) FROM users WHERE role = 'admin'`).Scan(&n).Error; err != nil {
		return false, fmt.Errorf("ledger: has admin: %w", err)
	}
	return n > 0, nil
}
