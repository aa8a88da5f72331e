package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/transferd/transferd/transfer"
)

type endpointRow struct {
	ID                uuid.UUID
	UserID            uuid.UUID
	URL               string
	EventTypes        string // the text[] as PostgreSQL prints it, read through array_to_json
	Description       string
	Status            string
	DisabledReason    *string
	Secret            []byte
	PreviousSecret    []byte
	PreviousExpiresAt *time.Time
	FailingSince      *time.Time
	LastSuccessAt     *time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
	Txid              uint64
}

// endpointColumns reads an endpoint (w) with its event types as JSON.
const endpointColumns = `w.id, w.user_id, w.url, array_to_json(w.event_types)::text AS event_types, w.description, w.status,
	w.disabled_reason, w.secret, w.previous_secret, w.previous_expires_at, w.failing_since, w.last_success_at,
	w.created_at, w.updated_at, w.txid`

func (r endpointRow) domain() (transfer.WebhookEndpoint, error) {
	e := transfer.WebhookEndpoint{ID: r.ID, UserID: r.UserID, URL: r.URL, Description: r.Description,
		Status: transfer.EndpointStatus(r.Status), Secret: r.Secret, PreviousSecret: r.PreviousSecret,
		PreviousExpiresAt: utcPtr(r.PreviousExpiresAt), FailingSince: utcPtr(r.FailingSince), LastSuccessAt: utcPtr(r.LastSuccessAt),
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
	if r.DisabledReason != nil {
		e.DisabledReason = *r.DisabledReason
	}
	if err := json.Unmarshal([]byte(r.EventTypes), &e.EventTypes); err != nil {
		return transfer.WebhookEndpoint{}, fmt.Errorf("ledger: endpoint %s: event types: %w", r.ID, err)
	}
	return e, nil
}

// textArray is the PostgreSQL array literal of strings, each quoted.
func textArray(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = quoteArrayElement(s)
	}
	return arrayLiteral(quoted)
}

// CreateEndpoint records a webhook endpoint and the audit entry of its creation in one transaction.
// With an IdempotencyKey that the same user used before for an endpoint, it returns that endpoint
// with created = false, or CodeIdempotencyConflict when the earlier request differed.
func (s *Store) CreateEndpoint(ctx context.Context, e transfer.NewEndpoint) (transfer.WebhookEndpoint, bool, error) {
	b, _ := json.Marshal([]any{e.URL, e.EventTypes, e.Description}) // Strings always marshal.
	sum := sha256.Sum256(b)
	var out transfer.WebhookEndpoint
	created := false
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if e.IdempotencyKey != "" {
			id, found, err := claimKey(tx, e.UserID, "webhook_endpoint", e.IdempotencyKey, e.ID, sum[:])
			if err != nil {
				return err
			}
			if found {
				var err error
				out, err = endpointByID(tx, e.UserID, id)
				return err
			}
		}
		if e.RefuseIfNew != nil {
			// The key's claim above rolls back with it.
			return e.RefuseIfNew
		}
		// The user's row, locked, serialises the user's creations, so the count below holds.
		if err := tx.Exec(`SELECT id FROM users WHERE id = ? FOR NO KEY UPDATE`, e.UserID).Error; err != nil {
			return fmt.Errorf("ledger: create endpoint: %w", err)
		}
		var n int64
		if err := tx.Raw(`SELECT count(*) FROM webhook_endpoints WHERE user_id = ? AND deleted_at IS NULL`, e.UserID).Scan(&n).Error; err != nil {
			return fmt.Errorf("ledger: create endpoint: %w", err)
		}
		if n >= MaxEndpointsPerUser {
			return transfer.Errorf(transfer.CodeTooManyEndpoints, "a user may have at most %d webhook endpoints; delete one first", MaxEndpointsPerUser)
		}
		var row endpointRow
		err := tx.Raw(`WITH w AS (INSERT INTO webhook_endpoints (id, user_id, url, event_types, description, secret)
			VALUES (?, ?, ?, ?::text[], ?, ?) RETURNING *) SELECT `+endpointColumns+` FROM w`,
			e.ID, e.UserID, e.URL, textArray(e.EventTypes), e.Description, e.Secret).Scan(&row).Error
		if err != nil {
			return fmt.Errorf("ledger: create endpoint: %w", err)
		}
		if out, err = row.domain(); err != nil {
			return err
		}
		created = true
		return recordAudit(tx, e.Actor, "webhook_endpoint.created", "webhook_endpoint", e.ID,
			map[string]any{"url": redactURL(e.URL), "event_types": e.EventTypes})
	})
	if err != nil {
		return transfer.WebhookEndpoint{}, false, businessOr(err)
	}
	return out, created, nil
}

// redactURL is a URL as the audit log keeps it: without its query, which may carry a token.
func redactURL(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}

// endpointByID reads one of the user's endpoints (uuid.Nil: anyone's) that is not deleted.
func endpointByID(db *gorm.DB, userID, id uuid.UUID) (transfer.WebhookEndpoint, error) {
	q := `SELECT ` + endpointColumns + ` FROM webhook_endpoints w WHERE w.id = ? AND w.deleted_at IS NULL`
	args := []any{id}
	if userID != uuid.Nil {
		q += ` AND w.user_id = ?`
		args = append(args, userID)
	}
	var row endpointRow
	if err := db.Raw(q, args...).Take(&row).Error; err != nil {
		return transfer.WebhookEndpoint{}, notFound(err, transfer.CodeNotFound, "webhook endpoint", id)
	}
	return row.domain()
}

// Endpoint returns one of the user's webhook endpoints; CodeNotFound for another's, a deleted one,
// or none.
func (s *Store) Endpoint(ctx context.Context, userID, id uuid.UUID) (transfer.WebhookEndpoint, error) {
	return endpointByID(s.db.WithContext(ctx), userID, id)
}

// Endpoints returns one page of the user's webhook endpoints, newest first.
func (s *Store) Endpoints(ctx context.Context, userID uuid.UUID, p transfer.Page) (transfer.List[transfer.WebhookEndpoint], error) {
	limit, err := pageLimit(p)
	if err != nil {
		return transfer.List[transfer.WebhookEndpoint]{}, err
	}
	if p, err = s.start(ctx, p); err != nil {
		return transfer.List[transfer.WebhookEndpoint]{}, err
	}
	where, args, err := keyset(p, []string{"w.user_id = ?", "w.deleted_at IS NULL"}, []any{userID}, "w.")
	if err != nil {
		return transfer.List[transfer.WebhookEndpoint]{}, err
	}
	var rows []endpointRow
	q := "SELECT " + endpointColumns + " FROM webhook_endpoints w WHERE " + strings.Join(where, " AND ") + keysetOrder("w.") + " LIMIT ?"
	if err := s.db.WithContext(ctx).Raw(q, append(args, limit+1)...).Scan(&rows).Error; err != nil {
		return transfer.List[transfer.WebhookEndpoint]{}, fmt.Errorf("ledger: list endpoints: %w", err)
	}
	return page(rows, limit, endpointRow.domain, func(r endpointRow) cursor { return rowCursor(r.Txid, r.CreatedAt, r.ID) })
}

// UpdateEndpoint changes one of the user's endpoints and records it in the audit log, in one
// transaction. Enabling an endpoint clears its disabled reason and its failing streak.
func (s *Store) UpdateEndpoint(ctx context.Context, actor transfer.Actor, userID, id uuid.UUID, patch transfer.EndpointPatch) (transfer.WebhookEndpoint, error) {
	var out transfer.WebhookEndpoint
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		before, err := endpointByID(tx, userID, id)
		if err != nil {
			return err
		}
		sets := []string{"updated_at = now()"}
		var args []any
		changes := map[string]any{}
		if patch.URL != nil && *patch.URL != before.URL {
			sets = append(sets, "url = ?")
			args = append(args, *patch.URL)
			changes["url"] = redactURL(*patch.URL)
		}
		if patch.EventTypes != nil && !slices.Equal(patch.EventTypes, before.EventTypes) {
			sets = append(sets, "event_types = ?::text[]")
			args = append(args, textArray(patch.EventTypes))
			changes["event_types"] = patch.EventTypes
		}
		if patch.Description != nil && *patch.Description != before.Description {
			sets = append(sets, "description = ?")
			args = append(args, *patch.Description)
			changes["description"] = *patch.Description
		}
		if patch.Status != nil && *patch.Status != before.Status {
			sets = append(sets, "status = ?")
			args = append(args, string(*patch.Status))
			if *patch.Status == transfer.EndpointEnabled {
				sets = append(sets, "disabled_reason = NULL", "failing_since = NULL")
			} else {
				sets = append(sets, "disabled_reason = 'disabled by its owner'")
			}
			changes["status"] = string(*patch.Status)
		}
		if len(changes) > 0 {
			if err := tx.Exec(`UPDATE webhook_endpoints SET `+strings.Join(sets, ", ")+` WHERE id = ?`, append(args, id)...).Error; err != nil {
				return fmt.Errorf("ledger: update endpoint: %w", err)
			}
			if err := recordAudit(tx, actor, "webhook_endpoint.changed", "webhook_endpoint", id, changes); err != nil {
				return err
			}
		}
		out, err = endpointByID(tx, userID, id)
		return err
	})
	if err != nil {
		return transfer.WebhookEndpoint{}, businessOr(err)
	}
	return out, nil
}

// DeleteEndpoint deletes one of the user's endpoints: it gets no more deliveries, and its delivery
// log stays for the audit. CodeNotFound for another's or a deleted one.
func (s *Store) DeleteEndpoint(ctx context.Context, actor transfer.Actor, userID, id uuid.UUID) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(`UPDATE webhook_endpoints SET deleted_at = now(), status = 'disabled', disabled_reason = 'deleted',
			updated_at = now() WHERE id = ? AND user_id = ? AND deleted_at IS NULL`, id, userID)
		if res.Error != nil {
			return fmt.Errorf("ledger: delete endpoint: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return transfer.Errorf(transfer.CodeNotFound, "no webhook endpoint %s", id)
		}
		return recordAudit(tx, actor, "webhook_endpoint.deleted", "webhook_endpoint", id, nil)
	})
	return businessOr(err)
}

// PreviousSecretFor is how long the secret before a rotation keeps signing beside the new one.
const PreviousSecretFor = 24 * time.Hour

// RotateSecret gives one of the user's endpoints a new signing secret; the old one keeps signing
// beside it for PreviousSecretFor. With an IdempotencyKey used before by the user for this
// endpoint's rotation, it rotates nothing and returns rotated = false.
func (s *Store) RotateSecret(ctx context.Context, actor transfer.Actor, userID, id uuid.UUID, secret []byte, idempotencyKey string) (transfer.WebhookEndpoint, bool, error) {
	var out transfer.WebhookEndpoint
	rotated := false
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if _, err := endpointByID(tx, userID, id); err != nil {
			return err
		}
		if idempotencyKey != "" {
			sum := sha256.Sum256(id[:])
			if _, found, err := claimKey(tx, userID, "secret_rotation", idempotencyKey, id, sum[:]); err != nil || found {
				if err == nil {
					out, err = endpointByID(tx, userID, id)
				}
				return err
			}
		}
		if err := tx.Exec(`UPDATE webhook_endpoints SET previous_secret = secret, previous_expires_at = now() + ?::interval,
			secret = ?, updated_at = now() WHERE id = ?`, PreviousSecretFor.String(), secret, id).Error; err != nil {
			return fmt.Errorf("ledger: rotate secret: %w", err)
		}
		rotated = true
		if err := recordAudit(tx, actor, "webhook_endpoint.rotated", "webhook_endpoint", id, nil); err != nil {
			return err
		}
		var err error
		out, err = endpointByID(tx, userID, id)
		return err
	})
	if err != nil {
		return transfer.WebhookEndpoint{}, false, businessOr(err)
	}
	return out, rotated, nil
}

// UnstartedDeliveries returns up to limit deliveries whose workflow has not been started yet,
// oldest first.
func (s *Store) UnstartedDeliveries(ctx context.Context, limit int) ([]transfer.Delivery, error) {
	var rows []transfer.Delivery
	err := s.db.WithContext(ctx).Raw(`SELECT id, endpoint_id, event_id, status, attempts, created_at FROM webhook_deliveries
		WHERE started_at IS NULL ORDER BY created_at LIMIT ?`, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("ledger: unstarted deliveries: %w", err)
	}
	return rows, nil
}

// MarkDeliveryStarted records that a delivery's workflow exists.
func (s *Store) MarkDeliveryStarted(ctx context.Context, id uuid.UUID) error {
	if err := s.db.WithContext(ctx).Exec(`UPDATE webhook_deliveries SET started_at = now() WHERE id = ? AND started_at IS NULL`, id).Error; err != nil {
		return fmt.Errorf("ledger: mark delivery started: %w", err)
	}
	return nil
}

// DeliveryTarget reads a delivery's target afresh; CodeNotFound for an unknown delivery.
func (s *Store) DeliveryTarget(ctx context.Context, deliveryID uuid.UUID) (transfer.DeliveryTarget, error) {
	db := s.db.WithContext(ctx)
	var out transfer.DeliveryTarget
	err := db.Raw(`SELECT id, endpoint_id, event_id, status, attempts, created_at, started_at FROM webhook_deliveries WHERE id = ?`, deliveryID).
		Take(&out.Delivery).Error
	if err != nil {
		return transfer.DeliveryTarget{}, notFound(err, transfer.CodeNotFound, "delivery", deliveryID)
	}
	var row struct {
		Endpoint   endpointRow `gorm:"embedded"`
		Deleted    bool
		Visible    bool
		OwnerAdmin bool
	}
	err = db.Raw(`SELECT `+endpointColumns+`, w.deleted_at IS NOT NULL AS deleted,
			EXISTS (SELECT FROM users u WHERE u.id = w.user_id AND u.role = 'admin') AS owner_admin,
			NOT EXISTS (SELECT FROM user_access ua WHERE ua.user_id = w.user_id AND ua.status = 'disabled')
			AND (EXISTS (SELECT FROM users u WHERE u.id = w.user_id AND u.role = 'admin')
			     OR EXISTS (SELECT FROM events e JOIN accounts a ON a.id IN (e.from_account_id, e.to_account_id)
			                WHERE e.id = ? AND a.owner_id = w.user_id)) AS visible
		FROM webhook_endpoints w WHERE w.id = ?`, out.Delivery.EventID, out.Delivery.EndpointID).Take(&row).Error
	if err != nil {
		return transfer.DeliveryTarget{}, fmt.Errorf("ledger: delivery %s: endpoint: %w", deliveryID, err)
	}
	if out.Endpoint, err = row.Endpoint.domain(); err != nil {
		return transfer.DeliveryTarget{}, err
	}
	out.Deleted, out.Visible, out.OwnerAdmin = row.Deleted, row.Visible, row.OwnerAdmin
	var ev eventRow
	if err := db.Raw(`SELECT `+eventColumns+` FROM events e WHERE e.id = ?`, out.Delivery.EventID).Take(&ev).Error; err != nil {
		return transfer.DeliveryTarget{}, fmt.Errorf("ledger: delivery %s: event: %w", deliveryID, err)
	}
	if out.Event, err = ev.domain(); err != nil {
		return transfer.DeliveryTarget{}, err
	}
	return out, nil
}

// RecordAttempt writes one attempt of a delivery to the delivery log and updates the delivery and
// its endpoint, in one transaction: a 2xx ends the endpoint's failing streak; a failure starts one
// if none runs, and an endpoint whose streak has lasted disableAfter is disabled, with the reason.
// It reports whether this attempt disabled the endpoint. Recording the same attempt again (a
// retried activity) changes nothing.
func (s *Store) RecordAttempt(ctx context.Context, a transfer.DeliveryAttempt, delivered bool, disableAfter time.Duration) (bool, error) {
	disabled := false
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(`INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, event_id, attempt, response_status, error, duration_ms, next_retry_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (delivery_id, attempt) DO NOTHING`,
			a.ID, a.DeliveryID, a.EndpointID, a.EventID, a.Attempt, nullable(a.ResponseStatus), nullable(a.Error),
			a.Duration.Milliseconds(), a.NextRetryAt)
		if res.Error != nil {
			return fmt.Errorf("ledger: record attempt: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return nil
		}
		if err := tx.Exec(`UPDATE webhook_deliveries SET attempts = greatest(attempts, ?), next_attempt_at = ? WHERE id = ?`,
			a.Attempt, a.NextRetryAt, a.DeliveryID).Error; err != nil {
			return fmt.Errorf("ledger: record attempt: %w", err)
		}
		if delivered {
			return tx.Exec(`UPDATE webhook_endpoints SET last_success_at = now(), failing_since = NULL, last_failure_at = NULL WHERE id = ?`, a.EndpointID).Error
		}
		var st struct {
			Status        string
			FailingSince  *time.Time
			LastFailureAt *time.Time
			Now           time.Time
		}
		if err := tx.Raw(`SELECT status, failing_since, last_failure_at, now() AS now FROM webhook_endpoints WHERE id = ? FOR UPDATE`, a.EndpointID).
			Take(&st).Error; err != nil {
			return fmt.Errorf("ledger: record attempt: %w", err)
		}
		since := st.Now
		if st.FailingSince != nil && st.LastFailureAt != nil && st.Now.Sub(*st.LastFailureAt) < streakGap {
			since = *st.FailingSince
		}
		status, reason := st.Status, (*string)(nil)
		if st.Status == string(transfer.EndpointEnabled) && st.Now.Sub(since) >= disableAfter {
			r := fmt.Sprintf("no 2xx answer since %s (%s): disabled automatically; enable it again with PATCH {\"status\":\"enabled\"}",
				since.UTC().Format(time.RFC3339), disableAfter)
			status, reason, disabled = string(transfer.EndpointDisabled), &r, true
		}
		err := tx.Exec(`UPDATE webhook_endpoints SET failing_since = ?, last_failure_at = now(), status = ?, disabled_reason = coalesce(?, disabled_reason),
			updated_at = CASE WHEN ? THEN now() ELSE updated_at END WHERE id = ?`, since, status, reason, disabled, a.EndpointID).Error
		if err != nil {
			return fmt.Errorf("ledger: record attempt: %w", err)
		}
		if disabled {
			// The attempt that disabled the endpoint is the delivery's last: its log line names
			// no retry.
			return tx.Exec(`UPDATE webhook_attempts SET next_retry_at = NULL WHERE id = ?`, a.ID).Error
		}
		return nil
	})
	return disabled, businessOr(err)
}

// streakGap is how long after its last failed attempt an endpoint's failing streak ends without a
// 2xx: an endpoint that got no event for a day was idle, not failing, and its next failure starts a
// new streak rather than disable it at once for a streak that began days ago.
const streakGap = 24 * time.Hour

// MaxEndpointsPerUser bounds a user's webhook endpoints: each event is enqueued to every endpoint
// that may see it in the statement of the status change, under the saga's locks.
const MaxEndpointsPerUser = 16

// EndDelivery marks a delivery delivered or failed.
func (s *Store) EndDelivery(ctx context.Context, id uuid.UUID, delivered bool) error {
	status := "failed"
	if delivered {
		status = "delivered"
	}
	err := s.db.WithContext(ctx).Exec(`UPDATE webhook_deliveries SET status = ?, ended_at = now(), next_attempt_at = NULL
		WHERE id = ? AND status = 'pending'`, status, id).Error
	if err != nil {
		return fmt.Errorf("ledger: end delivery: %w", err)
	}
	return nil
}

// Resend enqueues the event again to one of the user's endpoints, if the user may see the event;
// CodeNotFound otherwise, and CodeEndpointDisabled for a disabled endpoint, which would skip it. The worker starts its delivery like any other.
func (s *Store) Resend(ctx context.Context, userID, endpointID, eventID uuid.UUID, admin bool) (transfer.Delivery, error) {
	db := s.db.WithContext(ctx)
	e, err := endpointByID(db, userID, endpointID)
	if err != nil {
		return transfer.Delivery{}, err
	}
	if e.Status != transfer.EndpointEnabled {
		return transfer.Delivery{}, transfer.Errorf(transfer.CodeEndpointDisabled, "the endpoint is disabled; enable it before sending an event again")
	}
	visibleTo := userID
	if admin {
		visibleTo = uuid.Nil
	}
	if _, err := s.Event(ctx, eventID, visibleTo); err != nil {
		return transfer.Delivery{}, err
	}
	var d transfer.Delivery
	err = db.Raw(`INSERT INTO webhook_deliveries (id, endpoint_id, event_id) VALUES (?, ?, ?)
		RETURNING id, endpoint_id, event_id, status, attempts, created_at`, uuid.New(), endpointID, eventID).Scan(&d).Error
	if err != nil {
		return transfer.Delivery{}, fmt.Errorf("ledger: resend: %w", err)
	}
	return d, nil
}

type attemptRow struct {
	ID             uuid.UUID
	DeliveryID     uuid.UUID
	EndpointID     uuid.UUID
	EventID        uuid.UUID
	Attempt        int
	ResponseStatus *int
	Error          *string
	DurationMS     int `gorm:"column:duration_ms"`
	NextRetryAt    *time.Time
	CreatedAt      time.Time
	Txid           uint64
}

func (r attemptRow) domain() (transfer.DeliveryAttempt, error) {
	a := transfer.DeliveryAttempt{ID: r.ID, DeliveryID: r.DeliveryID, EndpointID: r.EndpointID, EventID: r.EventID, Attempt: r.Attempt,
		Duration: time.Duration(r.DurationMS) * time.Millisecond, NextRetryAt: utcPtr(r.NextRetryAt), CreatedAt: r.CreatedAt.UTC()}
	if r.ResponseStatus != nil {
		a.ResponseStatus = *r.ResponseStatus
	}
	if r.Error != nil {
		a.Error = *r.Error
	}
	return a, nil
}

// Attempts returns one page of an endpoint's delivery log, newest first.
func (s *Store) Attempts(ctx context.Context, endpointID uuid.UUID, p transfer.Page) (transfer.List[transfer.DeliveryAttempt], error) {
	limit, err := pageLimit(p)
	if err != nil {
		return transfer.List[transfer.DeliveryAttempt]{}, err
	}
	if p, err = s.start(ctx, p); err != nil {
		return transfer.List[transfer.DeliveryAttempt]{}, err
	}
	where, args, err := keyset(p, []string{"l.endpoint_id = ?"}, []any{endpointID}, "l.")
	if err != nil {
		return transfer.List[transfer.DeliveryAttempt]{}, err
	}
	var rows []attemptRow
	q := "SELECT l.* FROM webhook_attempts l WHERE " + strings.Join(where, " AND ") + keysetOrder("l.") + " LIMIT ?"
	if err := s.db.WithContext(ctx).Raw(q, append(args, limit+1)...).Scan(&rows).Error; err != nil {
		return transfer.List[transfer.DeliveryAttempt]{}, fmt.Errorf("ledger: list attempts: %w", err)
	}
	return page(rows, limit, attemptRow.domain, func(r attemptRow) cursor { return rowCursor(r.Txid, r.CreatedAt, r.ID) })
}

// PendingDeliveries counts the deliveries not yet ended, by endpoint: the backlog.
func (s *Store) PendingDeliveries(ctx context.Context) (map[uuid.UUID]int, error) {
	var rows []struct {
		EndpointID uuid.UUID
		N          int
	}
	if err := s.db.WithContext(ctx).Raw(`SELECT endpoint_id, count(*) AS n FROM webhook_deliveries WHERE status = 'pending' GROUP BY endpoint_id`).
		Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("ledger: pending deliveries: %w", err)
	}
	out := make(map[uuid.UUID]int, len(rows))
	for _, r := range rows {
		out[r.EndpointID] = r.N
	}
	return out, nil
}

// DeliveryStats are an endpoint's deliveries by status, their attempts, and the time from each
// delivered event's recording to its 2xx being recorded.
type DeliveryStats struct {
	Deliveries, Pending, Delivered, Failed, Attempts int64
	// P50, P90, P99 and Max are the delivered deliveries' event-to-2xx times, in milliseconds.
	P50, P90, P99, Max float64
}

// DeliveryStats reads the figures of an endpoint's deliveries of the events recorded since the time
// given (the bench's, an operator's).
func (s *Store) DeliveryStats(ctx context.Context, endpointID uuid.UUID, since time.Time) (DeliveryStats, error) {
	var out DeliveryStats
	err := s.db.WithContext(ctx).Raw(`WITH d AS (
			SELECT d.status, d.attempts, (extract(epoch FROM d.ended_at - e.created_at) * 1000)::float8 AS ms
			FROM webhook_deliveries d JOIN events e ON e.id = d.event_id WHERE d.endpoint_id = ? AND e.created_at >= ?)
		SELECT count(*) AS deliveries,
			count(*) FILTER (WHERE status = 'pending') AS pending,
			count(*) FILTER (WHERE status = 'delivered') AS delivered,
			count(*) FILTER (WHERE status = 'failed') AS failed,
			coalesce(sum(attempts), 0) AS attempts,
			coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE status = 'delivered'), 0) AS p50,
			coalesce(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms) FILTER (WHERE status = 'delivered'), 0) AS p90,
			coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FILTER (WHERE status = 'delivered'), 0) AS p99,
			coalesce(max(ms) FILTER (WHERE status = 'delivered'), 0) AS max
		FROM d`, endpointID, since).Scan(&out).Error
	if err != nil {
		return DeliveryStats{}, fmt.Errorf("ledger: delivery stats: %w", err)
	}
	return out, nil
}

// EventCount counts the events of the transfers named.
func (s *Store) EventCount(ctx context.Context, transferIDs []uuid.UUID) (int64, error) {
	var total int64
	for chunk := range slices.Chunk(transferIDs, 5000) {
		var n int64
		if err := s.db.WithContext(ctx).Raw(`SELECT count(*) FROM events WHERE transfer_id IN ?`, chunk).Scan(&n).Error; err != nil {
			return 0, fmt.Errorf("ledger: event count: %w", err)
		}
		total += n
	}
	return total, nil
}

// StalledDeliveries returns up to limit pending deliveries whose workflow was started and whose
// next attempt was due before dueBefore (the first when none was made yet), after the delivery of
// after (the zero value for the first), in the order of when they were due: the candidates for a
// workflow that closed without ending its delivery (an operator terminated it).
func (s *Store) StalledDeliveries(ctx context.Context, dueBefore time.Time, after transfer.StalledDelivery, limit int) ([]transfer.StalledDelivery, error) {
	var rows []transfer.StalledDelivery
	err := s.db.WithContext(ctx).Raw(`SELECT id, coalesce(next_attempt_at, started_at) AS due_at FROM webhook_deliveries
		WHERE status = 'pending' AND started_at IS NOT NULL AND coalesce(next_attempt_at, started_at) < ?
		AND (coalesce(next_attempt_at, started_at), id) > (?, ?)
		ORDER BY coalesce(next_attempt_at, started_at), id LIMIT ?`, dueBefore, after.DueAt, after.ID, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("ledger: stalled deliveries: %w", err)
	}
	return rows, nil
}
