package ledger_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

func TestCreateUser(t *testing.T) {
	ctx := context.Background()
	s, db := newStoreDB(t)
	first, err := s.CreateUser(ctx, transfer.User{Email: " Ada@Example.com ", PasswordHash: "hash", Name: "Ada"})
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	if first.ID == uuid.Nil || first.Email != "Ada@Example.com" || first.Role != transfer.RoleUser || first.CreatedAt.IsZero() {
		t.Errorf("created user: got %+v, want an id, email %q trimmed, role user and a creation time", first, "Ada@Example.com")
	}
	tests := []struct {
		name  string
		email string
		want  transfer.Code // "" for success
	}{
		{name: "same email", email: "Ada@Example.com", want: transfer.CodeEmailTaken},
		{name: "same email in another case", email: "ada@example.COM", want: transfer.CodeEmailTaken},
		{name: "same email with spaces", email: "  ada@example.com", want: transfer.CodeEmailTaken},
		{name: "another email", email: "grace@example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := countRows(t, db, "SELECT count(*) FROM users")
			_, err := s.CreateUser(ctx, transfer.User{Email: tc.email, PasswordHash: "hash"})
			var wantNew int64
			if tc.want != "" {
				checkCode(t, err, tc.want)
			} else if err != nil {
				t.Errorf("got error %v, want none", err)
			} else {
				wantNew = 1
			}
			if got := countRows(t, db, "SELECT count(*) FROM users") - before; got != wantNew {
				t.Errorf("users recorded: got %d more, want %d", got, wantNew)
			}
		})
	}
	got, err := s.UserByEmail(ctx, "ADA@example.com")
	if err != nil || got.ID != first.ID {
		t.Errorf("user by email in another case: got %s, %v; want %s", got.ID, err, first.ID)
	}
	_, err = s.UserByEmail(ctx, "nobody@example.com")
	checkCode(t, err, transfer.CodeNotFound)
	_, err = s.User(ctx, uuid.New())
	checkCode(t, err, transfer.CodeNotFound)
}
