package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/transferd/transferd/transfer"
)

// CreateTransfer records a pending transfer for r, after checking what can be checked before the saga
// starts: both accounts exist (CodeAccountNotFound), they differ (CodeSameAccount), and the currency
// is both accounts' (CodeCurrencyMismatch). A system account is found only on its side of a deposit
// or withdrawal. The transfer id is the idempotency key: if r.ID exists
// with the same request hash, it returns the existing transfer in its current state and created =
// false; with a different hash, CodeIdempotencyConflict. Funds and account status are the saga's to
// check, not this call's.
//
// A request with an IdempotencyKey is idempotent by its key instead, per caller (InitiatedBy): the
// key's first request creates the transfer with r.ID and remembers the key in the same transaction,
// and every later one answers like a repeat of that transfer's id, whatever ids others have taken.
// A key whose legacy id (transfer.LegacyKeyID) names a transfer this caller created names that
// transfer.
func (s *Store) CreateTransfer(ctx context.Context, r transfer.Request) (t transfer.Transfer, created bool, err error) {
	if r.ID == uuid.Nil {
		return transfer.Transfer{}, false, transfer.Errorf(transfer.CodeInvalidInput, "a transfer needs an id")
	}
	if r.IdempotencyKey != "" && r.InitiatedBy == uuid.Nil {
		return transfer.Transfer{}, false, transfer.Errorf(transfer.CodeInvalidInput, "an idempotency key needs the user who sent it")
	}
	if !r.Kind.Valid() {
		return transfer.Transfer{}, false, transfer.Errorf(transfer.CodeInvalidInput, "unknown transfer kind %q", r.Kind)
	}
	if _, err := transfer.NewAmount(int64(r.Amount)); err != nil {
		return transfer.Transfer{}, false, err
	}
	hash := r.Hash()
	db := s.db.WithContext(ctx)
	// A repeat of an existing transfer is answered from its row, whatever has happened to its
	// accounts since.
	var keyHash []byte
	if r.IdempotencyKey != "" {
		sum := sha256.Sum256([]byte(r.IdempotencyKey))
		keyHash = sum[:]
		t, created, err := s.keyedRepeat(db, r.InitiatedBy, keyHash, transfer.LegacyKeyID(r.InitiatedBy, r.IdempotencyKey), hash)
		if !errors.Is(err, errKeyNotFound) {
			return t, created, err
		}
	} else if t, found, err := s.existingTransfer(db, r.ID, hash); found || err != nil {
		return t, false, err
	}
	if r.FromAccountID == r.ToAccountID {
		return transfer.Transfer{}, false, transfer.Errorf(transfer.CodeSameAccount, "from and to are the same account %s", r.FromAccountID)
	}
	if _, ok := r.Currency.Exponent(); !ok {
		return transfer.Transfer{}, false, transfer.Errorf(transfer.CodeUnsupportedCurrency, "currency %q is not supported", r.Currency)
	}
	var accts []accountRow
	if err := db.Raw(`SELECT * FROM accounts WHERE id IN (?, ?)`, r.FromAccountID, r.ToAccountID).Scan(&accts).Error; err != nil {
		return transfer.Transfer{}, false, fmt.Errorf("ledger: create transfer: %w", err)
	}
	// The system account is the outside world: a deposit comes from it, a withdrawal goes to it, and
	// no plain transfer may name it, on either side.
	fromKind, toKind := transfer.AccountUser, transfer.AccountUser
	switch r.Kind {
	case transfer.KindDeposit:
		fromKind = transfer.AccountSystem
	case transfer.KindWithdrawal:
		toKind = transfer.AccountSystem
	}
	for i, id := range []uuid.UUID{r.FromAccountID, r.ToAccountID} {
		var found *accountRow
		for j := range accts {
			if accts[j].ID == id {
				found = &accts[j]
			}
		}
		if found == nil || found.Kind != string([]transfer.AccountKind{fromKind, toKind}[i]) {
			return transfer.Transfer{}, false, transfer.Errorf(transfer.CodeAccountNotFound, "account %s not found", id)
		}
		if found.Currency != string(r.Currency) {
			return transfer.Transfer{}, false, transfer.Errorf(transfer.CodeCurrencyMismatch,
				"account %s holds %s, not %s", id, found.Currency, r.Currency)
		}
	}
	if keyHash != nil {
		return s.createKeyedTransfer(db, r, hash, keyHash)
	}
	rows, err := insertNewTransfer(db, r, hash)
	if err != nil {
		return transfer.Transfer{}, false, err
	}
	if len(rows) == 0 {
		// A concurrent request with the same id won the insert.
		t, _, err := s.existingTransfer(db, r.ID, hash)
		return t, false, err
	}
	t, err = rows[0].domain()
	return t, true, err
}

// insertNewTransfer is insertTransfer for a request without a key. A request with times is inserted
// in a transaction that checks them once the row is in (checkPassed): an insert racing a
// concurrent one of the same id waits for that one's outcome before it is checked.
func insertNewTransfer(db *gorm.DB, r transfer.Request, hash []byte) ([]transferRow, error) {
	if r.ScheduledFor == nil && r.HoldExpiresAt == nil {
		return insertTransfer(db, r, hash)
	}
	var rows []transferRow
	err := db.Transaction(func(tx *gorm.DB) error {
		var err error
		if rows, err = insertTransfer(tx, r, hash); err != nil || len(rows) == 0 {
			return err
		}
		return checkPassed(tx, r)
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// checkPassed refuses, with a *transfer.WindowError, a new transfer whose scheduled_for or
// hold_expires_at is not ahead of the database's clock read now (clock_timestamp, not the
// transaction's start). It runs in the transaction that records the transfer, once the row and
// its key are in: a retry that raced its first attempt has then waited for that attempt's outcome
// and is its repeat, so a request is refused only if it is new, whatever the clocks of the API
// processes that took the two said.
func checkPassed(tx *gorm.DB, r transfer.Request) error {
	if r.ScheduledFor == nil && r.HoldExpiresAt == nil {
		return nil
	}
	now, err := clockNow(tx)
	if err != nil {
		return err
	}
	if problems := r.Passed(now); len(problems) > 0 {
		return &transfer.WindowError{Problems: problems}
	}
	return nil
}

// clockNow reads the database's clock as it is now, not at the transaction's start (clock_timestamp,
// not now()): a statement that waited on a lock sees the time after the wait.
func clockNow(tx *gorm.DB) (time.Time, error) {
	var now time.Time
	if err := tx.Raw(`SELECT clock_timestamp()`).Scan(&now).Error; err != nil {
		return time.Time{}, fmt.Errorf("ledger: clock: %w", err)
	}
	return now, nil
}

// insertTransfer inserts the transfer's row unless its id exists, and returns it (none if it did).
func insertTransfer(db *gorm.DB, r transfer.Request, hash []byte) ([]transferRow, error) {
	var rows []transferRow
	// ON CONFLICT names no key: every unique key of transfers begins with id (migration 0004 adds
	// transfers_id_from_amount_key for the hold's foreign key), and an insert racing one of the same
	// id, if it named only (id), would fail on that key instead of doing nothing (ON CONFLICT (id)
	// does not cover it; TestCreateTransferConcurrentlyWithOneID fails with it). The terms of a hold
	// or a schedule are inserted by the same statement, so a transfer never exists without them.
	status := transfer.StatusPending
	if r.ScheduledFor != nil {
		status = transfer.StatusScheduled
	}
	method := transfer.CaptureAutomatic
	if r.Manual() {
		method = transfer.CaptureManual
	}
	hasTerms := r.Manual() || r.ScheduledFor != nil
	err := db.Raw(`WITH t AS (
			INSERT INTO transfers (id, kind, from_account_id, to_account_id, amount, currency, description, labels, request_hash, initiated_by, status)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?, ?, ?)
			ON CONFLICT DO NOTHING RETURNING *),
		x AS (
			INSERT INTO transfer_terms (transfer_id, capture_method, scheduled_for, hold_expires_at)
			SELECT t.id, ?, ?::timestamptz, ?::timestamptz FROM t WHERE ?
			RETURNING *),
		a AS (
			INSERT INTO audit_log (id, actor_id, api_key_id, action, subject_type, subject_id, detail)
			SELECT gen_random_uuid(), t.initiated_by, ?::uuid, '`+transfer.AuditTransferCreated+`', 'transfer', t.id,
			       jsonb_build_object('kind', t.kind, 'amount', t.amount, 'currency', t.currency) FROM t
			ON CONFLICT DO NOTHING)
		SELECT `+transferColumns+` FROM t LEFT JOIN x ON x.transfer_id = t.id`,
		r.ID, string(r.Kind), r.FromAccountID, r.ToAccountID, int64(r.Amount), string(r.Currency), r.Description,
		encodeLabels(r.Labels), hash, nullable(r.InitiatedBy), string(status),
		string(method), r.ScheduledFor, holdExpiry(r), hasTerms, nullable(r.APIKeyID)).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("ledger: create transfer: %w", err)
	}
	return rows, nil
}

// errKeyTaken rolls back a keyed transfer whose key a concurrent request remembered first, and
// errIDTaken one whose id another transfer holds.
var (
	errKeyTaken = errors.New("ledger: idempotency key taken")
	errIDTaken  = errors.New("ledger: transfer id taken")
)

// createKeyedTransfer records the transfer of a request with an idempotency key, and the key, in one
// transaction. The transfer gets the key's legacy id (transfer.LegacyKeyID) when nobody holds it, so
// that an API process of the previous release, which derives that id from the key, names the same
// transfer during a rolling upgrade; else r.ID, which nobody else can know. A concurrent request
// with the same key that remembered it first makes this one wait for its commit and then answer as
// its repeat.
func (s *Store) createKeyedTransfer(db *gorm.DB, r transfer.Request, hash, keyHash []byte) (transfer.Transfer, bool, error) {
	legacy := transfer.LegacyKeyID(r.InitiatedBy, r.IdempotencyKey)
	for _, id := range []uuid.UUID{legacy, r.ID} {
		r.ID = id
		t, err := s.insertKeyedTransfer(db, r, hash, keyHash)
		switch {
		case err == nil:
			return t, true, nil
		case errors.Is(err, errKeyTaken):
			return s.keyedRepeat(db, r.InitiatedBy, keyHash, uuid.Nil, hash)
		case errors.Is(err, errIDTaken) && id == legacy:
			// A process of the previous release may have just created the key's transfer under its
			// legacy id; if this caller created it, it is the key's. Else someone else holds the id.
			if t, created, err := s.keyedRepeat(db, r.InitiatedBy, keyHash, legacy, hash); err == nil || !errors.Is(err, errKeyNotFound) {
				return t, created, err
			}
		case errors.Is(err, errIDTaken):
			return transfer.Transfer{}, false, transfer.Errorf(transfer.CodeIdempotencyConflict, "transfer %s already exists", id)
		default:
			return transfer.Transfer{}, false, err
		}
	}
	return transfer.Transfer{}, false, errors.New("ledger: create transfer: no id left for the key")
}

// errKeyNotFound is keyedRepeat's answer for a key that names nothing.
var errKeyNotFound = errors.New("ledger: idempotency key names no transfer")

// keyedRepeat answers a request whose key names a transfer (with the key's legacyID, or uuid.Nil, as
// for keyedTransfer) as a repeat of it; errKeyNotFound when the key names none.
func (s *Store) keyedRepeat(db *gorm.DB, caller uuid.UUID, keyHash []byte, legacyID uuid.UUID, hash []byte) (transfer.Transfer, bool, error) {
	id, found, err := s.keyedTransfer(db, caller, keyHash, legacyID)
	if err != nil {
		return transfer.Transfer{}, false, err
	}
	if !found {
		return transfer.Transfer{}, false, errKeyNotFound
	}
	t, found, err := s.existingTransfer(db, id, hash)
	if err == nil && !found {
		// Transfers are never deleted: a key naming none is a broken ledger (the audit reports it).
		return transfer.Transfer{}, false, fmt.Errorf("ledger: idempotency key names transfer %s, which does not exist", id)
	}
	return t, false, err
}

// insertKeyedTransfer inserts the transfer with r.ID and remembers its key, in one transaction:
// errIDTaken when the id exists, errKeyTaken when the caller's key names another transfer.
func (s *Store) insertKeyedTransfer(db *gorm.DB, r transfer.Request, hash, keyHash []byte) (transfer.Transfer, error) {
	var row transferRow
	err := db.Transaction(func(tx *gorm.DB) error {
		rows, err := insertTransfer(tx, r, hash)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return errIDTaken
		}
		row = rows[0]
		var mapped []uuid.UUID
		err = tx.Raw(`INSERT INTO idempotency_keys (caller_id, scope, key_hash, resource_id) VALUES (?, 'transfer', ?, ?)
			ON CONFLICT DO NOTHING RETURNING resource_id`, r.InitiatedBy, keyHash, r.ID).Scan(&mapped).Error
		if err != nil {
			return fmt.Errorf("ledger: remember idempotency key: %w", err)
		}
		if len(mapped) == 0 {
			return errKeyTaken
		}
		return checkPassed(tx, r)
	})
	if err != nil {
		if isBusiness(err) || errors.Is(err, errIDTaken) || errors.Is(err, errKeyTaken) {
			return transfer.Transfer{}, err
		}
		return transfer.Transfer{}, fmt.Errorf("ledger: create transfer: %w", err)
	}
	return row.domain()
}

// holdExpiry is the hold expiry recorded with a new transfer: the client's, or for a scheduled
// hold scheduled_for + DefaultHoldFor; nil leaves it to the reserve (DefaultHoldFor from then).
func holdExpiry(r transfer.Request) *time.Time {
	switch {
	case !r.Manual():
		return nil
	case r.HoldExpiresAt != nil:
		return r.HoldExpiresAt
	case r.ScheduledFor != nil:
		t := r.ScheduledFor.Add(transfer.DefaultHoldFor)
		return &t
	}
	return nil
}

// keyedTransfer returns the id of the transfer that the caller's idempotency key names, and whether
// there is one. A key not remembered yet names the transfer of its legacy id if, and only if, the
// same caller created that transfer: the key is then remembered for it (uuid.Nil for no legacy id).
// It is one statement: the insert finds nothing to insert for a key that is remembered already.
func (s *Store) keyedTransfer(db *gorm.DB, caller uuid.UUID, keyHash []byte, legacyID uuid.UUID) (uuid.UUID, bool, error) {
	var ids []uuid.UUID
	// A request sent before keys were remembered, retried now: its key took its caller's legacy id.
	// A transfer of that id that someone else created is theirs, not this key's.
	err := db.Raw(`WITH legacy AS (
			INSERT INTO idempotency_keys (caller_id, scope, key_hash, resource_id)
			SELECT ?, 'transfer', ?, id FROM transfers WHERE id = ? AND initiated_by = ?
			ON CONFLICT DO NOTHING RETURNING resource_id)
		SELECT resource_id FROM legacy
		UNION ALL
		SELECT resource_id FROM idempotency_keys WHERE caller_id = ? AND scope = 'transfer' AND key_hash = ?`,
		caller, keyHash, legacyID, caller, caller, keyHash).Scan(&ids).Error
	if err != nil {
		return uuid.Nil, false, fmt.Errorf("ledger: idempotency key: %w", err)
	}
	return firstID(ids)
}

// firstID returns the first of ids, and whether there is one.
func firstID(ids []uuid.UUID) (uuid.UUID, bool, error) {
	if len(ids) == 0 {
		return uuid.Nil, false, nil
	}
	return ids[0], true, nil
}

// existingTransfer returns the transfer with the id if it exists and was created by a request with
// the same hash, found = false if it does not exist, and CodeIdempotencyConflict otherwise.
func (s *Store) existingTransfer(db *gorm.DB, id uuid.UUID, hash []byte) (transfer.Transfer, bool, error) {
	var rows []transferRow
	if err := db.Raw(`SELECT `+transferColumns+` FROM `+transferTable+` WHERE t.id = ?`, id).Scan(&rows).Error; err != nil {
		return transfer.Transfer{}, false, fmt.Errorf("ledger: transfer: %w", err)
	}
	if len(rows) == 0 {
		return transfer.Transfer{}, false, nil
	}
	if !bytes.Equal(rows[0].RequestHash, hash) {
		return transfer.Transfer{}, true, transfer.Errorf(transfer.CodeIdempotencyConflict,
			"transfer %s already exists with a different request", id)
	}
	t, err := rows[0].domain()
	return t, true, err
}

// Transfer returns one transfer. An unknown id is CodeNotFound.
func (s *Store) Transfer(ctx context.Context, id uuid.UUID) (transfer.Transfer, error) {
	var row transferRow
	if err := s.db.WithContext(ctx).Raw(`SELECT `+transferColumns+` FROM `+transferTable+` WHERE t.id = ?`, id).Take(&row).Error; err != nil {
		return transfer.Transfer{}, notFound(err, transfer.CodeNotFound, "transfer", id)
	}
	return row.domain()
}

// TransferFilter narrows a list of transfers.
type TransferFilter = transfer.TransferFilter

// ListTransfers returns one page of transfers, most recently recorded first (see keyset). A bad
// cursor is CodeInvalidCursor and a bad limit CodeInvalidInput.
func (s *Store) ListTransfers(ctx context.Context, f TransferFilter, p transfer.Page) (transfer.List[transfer.Transfer], error) {
	limit, err := pageLimit(p)
	if err != nil {
		return transfer.List[transfer.Transfer]{}, err
	}
	if p, err = s.start(ctx, p); err != nil {
		return transfer.List[transfer.Transfer]{}, err
	}
	q, args, err := transfersQuery(f, p, limit)
	if err != nil {
		return transfer.List[transfer.Transfer]{}, err
	}
	var rows []listedTransfer
	if err := s.db.WithContext(ctx).Raw(q, args...).Scan(&rows).Error; err != nil {
		return transfer.List[transfer.Transfer]{}, fmt.Errorf("ledger: list transfers: %w", err)
	}
	return page(rows, limit, func(r listedTransfer) (transfer.Transfer, error) { return r.Row.domain() },
		func(r listedTransfer) cursor { return rowCursor(r.Txid, r.Row.CreatedAt, r.Row.ID) })
}

// listedTransfer is a transfer row with the transaction that recorded it, which orders the list.
type listedTransfer struct {
	Row  transferRow `gorm:"embedded"`
	Txid uint64
}

// transfersQuery builds ListTransfers' statement and its arguments. Every part of it reads one
// index in its order, (txid, created_at, id) descending, and stops after a page: the whole table
// through transfers_list_idx, or one account's side through transfers_from_list_idx or
// transfers_to_list_idx. A page then reads about limit rows per part however long the journal
// grows. The plain "from = $1 OR to = $1", or "any account of this owner", would read every matching
// transfer and sort them, on every page.
//
// An account's transfers are its outgoing part and its incoming part. A user sees the transfers of
// the accounts they own, one outgoing and one incoming part per account (LATERAL), and the union
// removes a transfer between two of their own accounts, seen from both sides. A user filtering on an
// account sees all of its transfers if they own it, and otherwise those whose other side is theirs.
func transfersQuery(f TransferFilter, p transfer.Page, limit int) (string, []any, error) {
	var common []string
	var commonArgs []any
	if f.Status != "" {
		common = append(common, "t.status = ?")
		commonArgs = append(commonArgs, string(f.Status))
	}
	if f.Kind != "" {
		common = append(common, "t.kind = ?")
		commonArgs = append(commonArgs, string(f.Kind))
	}
	common, commonArgs, err := keyset(p, common, commonArgs, "t.")
	if err != nil {
		return "", nil, err
	}
	order := keysetOrder("t.") + " LIMIT ?"
	// part is one index-ordered read of at most limit+1 transfers that meet cond and the filters.
	part := func(cond string, args ...any) (string, []any) {
		where := append([]string{cond}, common...)
		args = append(append(args, commonArgs...), limit+1)
		return "SELECT " + transferColumns + " FROM " + transferTable + " WHERE " + strings.Join(where, " AND ") + order, args
	}
	// ownedPart is part for each account of the owner, cond naming the account as a.id.
	ownedPart := func(cond string, owner uuid.UUID, args ...any) (string, []any) {
		q, args := part(cond, args...)
		return "SELECT t.* FROM accounts a CROSS JOIN LATERAL (" + q + ") t WHERE a.owner_id = ?", append(args, owner)
	}
	const owns = "EXISTS (SELECT 1 FROM accounts o WHERE o.id = ? AND o.owner_id = ?)"
	var parts []string
	var args []any
	add := func(q string, a []any) {
		parts = append(parts, "("+q+")")
		args = append(args, a...)
	}
	switch {
	case f.AccountID == uuid.Nil && f.VisibleTo == uuid.Nil:
		q, a := part("true")
		return q, a, nil
	case f.VisibleTo == uuid.Nil:
		add(part("t.from_account_id = ?", f.AccountID))
		add(part("t.to_account_id = ?", f.AccountID))
	case f.AccountID == uuid.Nil:
		add(ownedPart("t.from_account_id = a.id", f.VisibleTo))
		add(ownedPart("t.to_account_id = a.id", f.VisibleTo))
	default:
		add(part("t.from_account_id = ? AND "+owns, f.AccountID, f.AccountID, f.VisibleTo))
		add(part("t.to_account_id = ? AND "+owns, f.AccountID, f.AccountID, f.VisibleTo))
		add(ownedPart("t.from_account_id = a.id AND t.to_account_id = ?", f.VisibleTo, f.AccountID))
		add(ownedPart("t.to_account_id = a.id AND t.from_account_id = ?", f.VisibleTo, f.AccountID))
	}
	q := "SELECT * FROM (" + strings.Join(parts, " UNION ") + ") t" + order
	return q, append(args, limit+1), nil
}

// page turns limit+1 rows into a page of at most limit items and the cursor after the last one.
func page[R, T any](rows []R, limit int, conv func(R) (T, error), next func(R) cursor) (transfer.List[T], error) {
	out := transfer.List[T]{Items: make([]T, 0, min(len(rows), limit))}
	if len(rows) > limit {
		rows = rows[:limit]
		out.NextCursor = next(rows[limit-1]).encode()
	}
	for _, r := range rows {
		item, err := conv(r)
		if err != nil {
			return transfer.List[T]{}, err
		}
		out.Items = append(out.Items, item)
	}
	return out, nil
}

// TransfersByID returns those of the transfers that exist, in no particular order.
func (s *Store) TransfersByID(ctx context.Context, ids []uuid.UUID) ([]transfer.Transfer, error) {
	var rows []transferRow
	for chunk := range slices.Chunk(ids, 5000) {
		var part []transferRow
		if err := s.db.WithContext(ctx).Raw(`SELECT `+transferColumns+` FROM `+transferTable+` WHERE t.id IN ?`, chunk).Scan(&part).Error; err != nil {
			return nil, fmt.Errorf("ledger: transfers by id: %w", err)
		}
		rows = append(rows, part...)
	}
	return domainTransfers(rows)
}

// InFlightTransfers returns up to limit transfers that are not final and were last updated before
// the given time, oldest first: the candidates for a workflow that may never have started.
func (s *Store) InFlightTransfers(ctx context.Context, updatedBefore time.Time, limit int) ([]transfer.Transfer, error) {
	var rows []transferRow
	err := s.db.WithContext(ctx).Raw(`SELECT `+transferColumns+` FROM `+transferTable+`
		WHERE t.status IN ('scheduled', 'pending', 'reserved', 'debited') AND t.updated_at < ?
		ORDER BY t.created_at LIMIT ?`, updatedBefore, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("ledger: in-flight transfers: %w", err)
	}
	return domainTransfers(rows)
}

// isBusiness reports whether err is a *transfer.Error or a *transfer.WindowError, which cross this
// package's boundary as they are.
func isBusiness(err error) bool {
	var te *transfer.Error
	var we *transfer.WindowError
	return errors.As(err, &te) || errors.As(err, &we)
}
