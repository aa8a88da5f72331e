package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// The events are written by the trigger of migration 0011, in the statement that changes a
// transfer's status; this file only reads them.

// eventRow is an event with the owner of its transfer's source, which decides how much of the
// transfer a viewer sees.
type eventRow struct {
	ID            uuid.UUID
	Type          string
	TransferID    uuid.UUID
	Data          []byte
	CreatedAt     time.Time
	Txid          uint64
	SourceOwnerID *uuid.UUID
}

// eventSnapshot is the transfer as the trigger recorded it: its row (to_jsonb) and its terms.
type eventSnapshot struct {
	ID             uuid.UUID       `json:"id"`
	Kind           string          `json:"kind"`
	FromAccountID  uuid.UUID       `json:"from_account_id"`
	ToAccountID    uuid.UUID       `json:"to_account_id"`
	Amount         int64           `json:"amount"`
	Currency       string          `json:"currency"`
	Status         string          `json:"status"`
	FailureCode    *string         `json:"failure_code"`
	FailureMessage *string         `json:"failure_message"`
	Description    string          `json:"description"`
	Labels         json.RawMessage `json:"labels"`
	InitiatedBy    *uuid.UUID      `json:"initiated_by"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	CompletedAt    *time.Time      `json:"completed_at"`
	CaptureMethod  *string         `json:"capture_method"`
	ScheduledFor   *time.Time      `json:"scheduled_for"`
	HoldExpiresAt  *time.Time      `json:"hold_expires_at"`
	CapturedAmount *int64          `json:"captured_amount"`
}

func (r eventRow) domain() (transfer.Event, error) {
	var s eventSnapshot
	if err := json.Unmarshal(r.Data, &s); err != nil {
		return transfer.Event{}, fmt.Errorf("ledger: event %s: %w", r.ID, err)
	}
	labels := []byte(s.Labels)
	if len(labels) == 0 || string(labels) == "null" {
		labels = []byte("{}")
	}
	t, err := transferRow{ID: s.ID, Kind: s.Kind, FromAccountID: s.FromAccountID, ToAccountID: s.ToAccountID, Amount: s.Amount,
		Currency: s.Currency, Status: s.Status, FailureCode: s.FailureCode, FailureMessage: s.FailureMessage,
		Description: s.Description, Labels: labels, InitiatedBy: s.InitiatedBy, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
		CompletedAt: s.CompletedAt, CaptureMethod: s.CaptureMethod, ScheduledFor: s.ScheduledFor, HoldExpiresAt: s.HoldExpiresAt,
		CapturedAmount: s.CapturedAmount}.domain()
	if err != nil {
		return transfer.Event{}, fmt.Errorf("ledger: event %s: %w", r.ID, err)
	}
	e := transfer.Event{ID: r.ID, Type: transfer.EventType(r.Type), Transfer: t, CreatedAt: r.CreatedAt.UTC()}
	if r.SourceOwnerID != nil {
		e.SourceOwnerID = *r.SourceOwnerID
	}
	return e, nil
}

// eventColumns reads an event (e) with its source's owner.
const eventColumns = `e.id, e.type, e.transfer_id, e.data, e.created_at, e.txid,
	(SELECT a.owner_id FROM accounts a WHERE a.id = e.from_account_id) AS source_owner_id`

// Event returns an event; CodeNotFound when there is none, or when f.VisibleTo is set and the
// event's transfer touches no account of that user.
func (s *Store) Event(ctx context.Context, id uuid.UUID, visibleTo uuid.UUID) (transfer.Event, error) {
	q := `SELECT ` + eventColumns + ` FROM events e WHERE e.id = ?`
	args := []any{id}
	if visibleTo != uuid.Nil {
		q += ` AND EXISTS (SELECT FROM accounts a WHERE a.owner_id = ? AND a.id IN (e.from_account_id, e.to_account_id))`
		args = append(args, visibleTo)
	}
	var row eventRow
	if err := s.db.WithContext(ctx).Raw(q, args...).Take(&row).Error; err != nil {
		return transfer.Event{}, notFound(err, transfer.CodeNotFound, "event", id)
	}
	return row.domain()
}

// Events returns one page of events, most recently recorded first (the lists' watermark order):
// every event, or those of the transfers touching an account of f.VisibleTo, read through the
// index of each of that user's accounts' sides as ListTransfers does.
func (s *Store) Events(ctx context.Context, f transfer.EventFilter, p transfer.Page) (transfer.List[transfer.Event], error) {
	limit, err := pageLimit(p)
	if err != nil {
		return transfer.List[transfer.Event]{}, err
	}
	if f.Type != "" && !f.Type.Valid() {
		return transfer.List[transfer.Event]{}, transfer.Errorf(transfer.CodeInvalidInput, "unknown event type %q", f.Type)
	}
	if p, err = s.start(ctx, p); err != nil {
		return transfer.List[transfer.Event]{}, err
	}
	var common []string
	var commonArgs []any
	if f.Type != "" {
		common = append(common, "e.type = ?")
		commonArgs = append(commonArgs, string(f.Type))
	}
	if f.TransferID != uuid.Nil {
		common = append(common, "e.transfer_id = ?")
		commonArgs = append(commonArgs, f.TransferID)
	}
	common, commonArgs, err = keyset(p, common, commonArgs, "e.")
	if err != nil {
		return transfer.List[transfer.Event]{}, err
	}
	order := keysetOrder("e.") + " LIMIT ?"
	part := func(cond string, args ...any) (string, []any) {
		where := append([]string{cond}, common...)
		return "SELECT " + eventColumns + " FROM events e WHERE " + strings.Join(where, " AND ") + order,
			append(append(args, commonArgs...), limit+1)
	}
	var q string
	var args []any
	if f.VisibleTo == uuid.Nil {
		q, args = part("true")
	} else {
		from, fromArgs := part("e.from_account_id = a.id")
		to, toArgs := part("e.to_account_id = a.id")
		q = "SELECT * FROM ((SELECT e.* FROM accounts a CROSS JOIN LATERAL (" + from + ") e WHERE a.owner_id = ?)" +
			" UNION (SELECT e.* FROM accounts a CROSS JOIN LATERAL (" + to + ") e WHERE a.owner_id = ?)) e" + order
		args = append(append(append(append(fromArgs, f.VisibleTo), toArgs...), f.VisibleTo), limit+1)
	}
	var rows []eventRow
	if err := s.db.WithContext(ctx).Raw(q, args...).Scan(&rows).Error; err != nil {
		return transfer.List[transfer.Event]{}, fmt.Errorf("ledger: list events: %w", err)
	}
	return page(rows, limit, eventRow.domain, func(r eventRow) cursor { return rowCursor(r.Txid, r.CreatedAt, r.ID) })
}
