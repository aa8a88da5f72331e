package ledger

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// cursor marks where the previous page ended. Lists of recorded rows, ordered by (txid, created_at,
// id), use X, T and ID; the journal, ordered by seq, uses Seq. Clients see it only as an opaque
// base64url string.
//
// A cursor with X alone is the start of a list: the rows recorded below the watermark X. A list's
// first page is read after one (see start), so every page is a page after a cursor.
type cursor struct {
	// X is the txid of the row, the transaction that recorded it. It is a pointer because rows
	// recorded before migration 0005 have txid 0, and a cursor of the old shape, which has no X,
	// must not pass for one of them.
	X   *uint64   `json:"x,omitempty"`
	T   int64     `json:"t,omitempty"` // created_at in Unix microseconds, Postgres's precision.
	ID  uuid.UUID `json:"i,omitzero"`
	Seq int64     `json:"s,omitempty"`
}

// rowCursor is the cursor after a row of a list ordered by (txid, created_at, id).
func rowCursor(txid uint64, createdAt time.Time, id uuid.UUID) cursor {
	return cursor{X: &txid, T: createdAt.UnixMicro(), ID: id}
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

// watermark is a scalar SQL expression: a transaction id under which every transaction of this
// database had ended when the statement's snapshot was taken. It is the least of
//   - the snapshot's xmax: every later transaction id is handed out later, so a transaction that
//     has not written yet (and has no id) can only record rows at or above it;
//   - each transaction the snapshot sees running (pg_snapshot_xip) unless pg_stat_activity, read
//     after the snapshot, shows it still running in another database.
//
// A transaction of this database that the snapshot sees running therefore bounds the watermark
// whether it is still running or has ended since, and so does one whose database is unknown (a
// prepared transaction, a process with no database). Only another database's writers, running
// both when the snapshot was taken and when pg_stat_activity is read, are left out: transaction ids
// and pg_snapshot_xmin are cluster-wide, and a long transaction elsewhere on the server would
// otherwise hold back every list here. (pg_stat_activity shows backend_xid and datname of every
// role's sessions.)
//
// Every row below a watermark was committed, or rolled back, before the statement that took it, so
// any later statement sees all of them: the rows below it never change. That is what a list needs,
// and why the watermark is taken in a statement of its own before the page is read (see
// listWatermark), rather than in the page's statement, whose snapshot precedes its read of
// pg_stat_activity. A statement may also get a lower watermark than an earlier one, when another
// database's writer ends between its snapshot and its read of pg_stat_activity (one list in 30, on
// a server busy with another database's short transactions); so only the start of a list is a
// watermark, and the pages after a cursor are bounded by the cursor alone.
const watermark = `(SELECT least(pg_snapshot_xmax(wm_snap), (
	SELECT min(wm_xid) FROM pg_snapshot_xip(wm_snap) AS wm_xid
	WHERE NOT EXISTS (SELECT FROM pg_stat_activity wm_act
	                  WHERE wm_act.backend_xid = wm_xid::xid AND wm_act.datname <> current_database())))
	FROM pg_current_snapshot() AS wm_snap)`

// listWait is how long the start of a list waits for the transactions that began writing before
// it was asked for. Steps and inserts take milliseconds; a writer held up longer than this leaves
// the rows recorded after it out of the list until it ends.
const listWait = 200 * time.Millisecond

// listWatermark returns a watermark (see watermark) at or above every transaction id that this
// database had handed out when the call began, once every such transaction has ended, or after
// listWait the highest watermark it saw. A list starts below it, so it shows what its caller
// committed before asking: without the wait, any transaction that took its id before the row's
// would hide the row while it ran.
func (s *Store) listWatermark(ctx context.Context) (uint64, error) {
	deadline := time.Now().Add(listWait)
	var target, best uint64
	for delay := time.Millisecond; ; delay = min(2*delay, 16*time.Millisecond) {
		var w struct{ Watermark, Next uint64 }
		err := s.db.WithContext(ctx).Raw(`SELECT ` + watermark + ` AS watermark, pg_snapshot_xmax(pg_current_snapshot()) AS next`).
			Scan(&w).Error
		if err != nil {
			return 0, fmt.Errorf("ledger: list watermark: %w", err)
		}
		if target == 0 {
			target = w.Next
		}
		best = max(best, w.Watermark)
		if best >= target || time.Now().Add(delay).After(deadline) {
			return best, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("ledger: list watermark: %w", ctx.Err())
		case <-time.After(delay):
		}
	}
}

// start returns p, or if p asks for a list's first page, the page after the list's start: the
// cursor of the rows below a watermark taken now.
func (s *Store) start(ctx context.Context, p transfer.Page) (transfer.Page, error) {
	if p.Cursor != "" {
		return p, nil
	}
	w, err := s.listWatermark(ctx)
	if err != nil {
		return transfer.Page{}, err
	}
	p.Cursor = cursor{X: &w}.encode()
	return p, nil
}

// keyset adds to where, and its arguments to args, the rows after the cursor in p in the order
// (txid, created_at, id) descending: below a row, or below the watermark of a list's start. With no
// cursor, the rows below the watermark of the statement itself: safe too, but now and then lower
// than one taken before (see watermark). prefix names the table.
func keyset(p transfer.Page, where []string, args []any, prefix string) ([]string, []any, error) {
	if p.Cursor == "" {
		return append(where, prefix+"txid < "+watermark), args, nil
	}
	c, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case c.X == nil || c.Seq != 0 || (c.ID == uuid.Nil) != (c.T == 0):
		// A cursor issued before lists were ordered by txid has no X: it is refused rather than
		// taken for the first page, which would start the list over.
		return nil, nil, transfer.Errorf(transfer.CodeInvalidCursor, "cursor does not belong to this list")
	case c.ID == uuid.Nil:
		return append(where, prefix+"txid < ?::xid8"), append(args, *c.X), nil
	}
	where = append(where, "("+prefix+"txid, "+prefix+"created_at, "+prefix+"id) < (?::xid8, ?, ?)")
	return where, append(args, *c.X, c.time(), c.ID), nil
}

// keysetOrder is the ORDER BY of the lists keyset reads, newest recorded first.
func keysetOrder(prefix string) string {
	return " ORDER BY " + prefix + "txid DESC, " + prefix + "created_at DESC, " + prefix + "id DESC"
}
