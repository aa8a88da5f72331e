package ledger

import (
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// cursor marks where the previous page ended. Lists ordered by (created_at, id) use T and ID; the
// journal, ordered by seq, uses Seq. Clients see it only as an opaque base64url string.
type cursor struct {
	T   int64     `json:"t,omitempty"` // created_at in Unix microseconds, Postgres's precision.
	ID  uuid.UUID `json:"i,omitzero"`
	Seq int64     `json:"s,omitempty"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c) // A struct of numbers and a UUID always marshals.
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &c) != nil {
		return cursor{}, transfer.Errorf(transfer.CodeInvalidCursor, "cursor is not one this service issued")
	}
	return c, nil
}

func (c cursor) time() time.Time { return time.UnixMicro(c.T).UTC() }

// pageLimit validates a page's limit, taking the default for zero.
func pageLimit(p transfer.Page) (int, error) {
	switch {
	case p.Limit == 0:
		return transfer.DefaultPageLimit, nil
	case p.Limit < 1 || p.Limit > transfer.MaxPageLimit:
		return 0, transfer.Errorf(transfer.CodeInvalidInput, "limit must be from 1 to %d, got %d", transfer.MaxPageLimit, p.Limit)
	}
	return p.Limit, nil
}

// keyset adds "(created_at, id) < cursor" to where and its arguments to args for a page after the
// cursor in p, or nothing for the first page.
func keyset(p transfer.Page, where []string, args []any, prefix string) ([]string, []any, error) {
	if p.Cursor == "" {
		return where, args, nil
	}
	c, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, nil, err
	}
	if c.ID == uuid.Nil || c.T == 0 {
		return nil, nil, transfer.Errorf(transfer.CodeInvalidCursor, "cursor does not belong to this list")
	}
	where = append(where, "("+prefix+"created_at, "+prefix+"id) < (?, ?)")
	return where, append(args, c.time(), c.ID), nil
}
