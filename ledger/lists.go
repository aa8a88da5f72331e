package ledger

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// AccountFilter narrows a list of accounts.
type AccountFilter = transfer.AccountFilter

// ListAccounts returns one page of accounts, most recently recorded first (see keyset). A bad
// cursor is CodeInvalidCursor and a bad limit CodeInvalidInput.
func (s *Store) ListAccounts(ctx context.Context, f AccountFilter, p transfer.Page) (transfer.List[transfer.Account], error) {
	limit, err := pageLimit(p)
	if err != nil {
		return transfer.List[transfer.Account]{}, err
	}
	if p, err = s.start(ctx, p); err != nil {
		return transfer.List[transfer.Account]{}, err
	}
	var where []string
	var args []any
	if !f.IncludeSystem {
		where = append(where, "a.kind = 'user'")
	}
	if f.OwnerID != uuid.Nil {
		where = append(where, "a.owner_id = ?")
		args = append(args, f.OwnerID)
	}
	if f.Currency != "" {
		where = append(where, "a.currency = ?")
		args = append(args, string(f.Currency))
	}
	if f.ExternalID != "" {
		where = append(where, "a.external_id = ?")
		args = append(args, f.ExternalID)
	}
	if len(f.Labels) > 0 {
		where = append(where, "a.labels @> ?::jsonb")
		args = append(args, encodeLabels(f.Labels))
	}
	where, args, err = keyset(p, where, args, "a.")
	if err != nil {
		return transfer.List[transfer.Account]{}, err
	}
	q := "SELECT a.* FROM accounts a WHERE " + strings.Join(where, " AND ") + keysetOrder("a.") + " LIMIT ?"
	var rows []listedAccount
	if err := s.db.WithContext(ctx).Raw(q, append(args, limit+1)...).Scan(&rows).Error; err != nil {
		return transfer.List[transfer.Account]{}, fmt.Errorf("ledger: list accounts: %w", err)
	}
	return page(rows, limit, func(r listedAccount) (transfer.Account, error) { return r.Row.domain() },
		func(r listedAccount) cursor { return rowCursor(r.Txid, r.Row.CreatedAt, r.Row.ID) })
}

// listedAccount is an account row with the transaction that recorded it, which orders the list.
type listedAccount struct {
	Row  accountRow `gorm:"embedded"`
	Txid uint64
}

// ListEntries returns one page of an account's journal, newest first. Entries are ordered by their
// per-account seq, which is assigned under the account's row lock, so pages never skip or repeat an
// entry while new ones are posted. An unknown account gives an empty page: callers check ownership
// (and so existence) first.
func (s *Store) ListEntries(ctx context.Context, accountID uuid.UUID, p transfer.Page) (transfer.List[transfer.Entry], error) {
	limit, err := pageLimit(p)
	if err != nil {
		return transfer.List[transfer.Entry]{}, err
	}
	q, args, err := entriesQuery(accountID, p, limit)
	if err != nil {
		return transfer.List[transfer.Entry]{}, err
	}
	var rows []entryRow
	if err := s.db.WithContext(ctx).Raw(q, args...).Scan(&rows).Error; err != nil {
		return transfer.List[transfer.Entry]{}, fmt.Errorf("ledger: list entries: %w", err)
	}
	return page(rows, limit, func(r entryRow) (transfer.Entry, error) { return r.domain(), nil },
		func(r entryRow) cursor { return cursor{Seq: r.Seq} })
}

// entriesQuery builds ListEntries' statement and its arguments: a backward read of the
// entries_account_seq_key index from the cursor's seq, so a page reads limit+1 entries however long
// the account's journal is.
func entriesQuery(accountID uuid.UUID, p transfer.Page, limit int) (string, []any, error) {
	// Entries need no watermark: seq is numbered under the account's row lock, so entries commit in seq order.
	q := "SELECT * FROM entries WHERE account_id = ?"
	args := []any{accountID}
	if p.Cursor != "" {
		c, err := decodeCursor(p.Cursor)
		if err != nil {
			return "", nil, err
		}
		if c.Seq < 1 || c.ID != uuid.Nil {
			return "", nil, transfer.Errorf(transfer.CodeInvalidCursor, "cursor does not belong to this list")
		}
		q += " AND seq < ?"
		args = append(args, c.Seq)
	}
	return q + " ORDER BY seq DESC LIMIT ?", append(args, limit+1), nil
}
