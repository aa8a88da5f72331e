package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/transferd/transferd/transfer"
)

// PendingTransfers returns up to limit transfers whose workflow may never have started, in
// (created_at, id) order after the key (none for a zero key): pending transfers last updated
// before the time, and scheduled ones whose scheduled_for is before it (a scheduled transfer
// waits, unchanged, until its time; one still scheduled after it is a lost start, or a workflow
// that Repair finds running and leaves alone). Each part reads a partial index of its status
// (migration 0007), so a sweep costs the pending and the scheduled transfers, never the holds that
// wait in reserved, and asks Temporal only about those that are overdue.
func (s *Store) PendingTransfers(ctx context.Context, updatedBefore time.Time, after transfer.Key, limit int) ([]transfer.Transfer, error) {
	var rows []transferRow
	err := s.db.WithContext(ctx).Raw(`SELECT * FROM (
		(SELECT `+transferColumns+` FROM `+transferTable+`
		  WHERE t.status = 'pending' AND t.updated_at < ? AND (t.created_at, t.id) > (?, ?)
		  ORDER BY t.created_at, t.id LIMIT ?)
		UNION ALL
		(SELECT `+transferColumns+` FROM `+transferTable+`
		  WHERE t.status = 'scheduled' AND x.scheduled_for < ? AND (t.created_at, t.id) > (?, ?)
		  ORDER BY t.created_at, t.id LIMIT ?)) p
		ORDER BY created_at, id LIMIT ?`,
		updatedBefore, after.CreatedAt, after.ID, limit, updatedBefore, after.CreatedAt, after.ID, limit, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("ledger: pending transfers: %w", err)
	}
	return domainTransfers(rows)
}

// domainTransfers converts rows to transfers.
func domainTransfers(rows []transferRow) ([]transfer.Transfer, error) {
	out := make([]transfer.Transfer, 0, len(rows))
	for _, r := range rows {
		t, err := r.domain()
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// InFlightTransfersAfter returns up to limit transfers that are not final, in (created_at, id)
// order after the key (none for a zero key), through the partial index of transfers in flight.
func (s *Store) InFlightTransfersAfter(ctx context.Context, after transfer.Key, limit int) ([]transfer.Transfer, error) {
	var rows []transferRow
	err := s.db.WithContext(ctx).Raw(`SELECT `+transferColumns+` FROM `+transferTable+`
		WHERE t.status IN ('scheduled', 'pending', 'reserved', 'debited') AND (t.created_at, t.id) > (?, ?)
		ORDER BY t.created_at, t.id LIMIT ?`, after.CreatedAt, after.ID, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("ledger: in-flight transfers: %w", err)
	}
	return domainTransfers(rows)
}

// TransferStatuses returns the status, failure code and message of those of the transfers that
// exist, in one query.
func (s *Store) TransferStatuses(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]transfer.Outcome, error) {
	var rows []struct {
		ID             uuid.UUID
		Status         string
		FailureCode    *string
		FailureMessage *string
	}
	if len(ids) > 0 {
		if err := s.db.WithContext(ctx).Raw(`SELECT id, status, failure_code, failure_message FROM transfers WHERE id IN ?`, ids).
			Scan(&rows).Error; err != nil {
			return nil, fmt.Errorf("ledger: transfer statuses: %w", err)
		}
	}
	out := make(map[uuid.UUID]transfer.Outcome, len(rows))
	for _, r := range rows {
		out[r.ID] = transfer.Outcome{Status: transfer.Status(r.Status), Code: transfer.Code(deref(r.FailureCode)), Message: deref(r.FailureMessage)}
	}
	return out, nil
}
