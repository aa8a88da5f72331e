package ledger

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/transferd/transferd/transfer"
)

// NewAccount is what creating a user's account takes.
type NewAccount = transfer.NewAccount

// CreateAccount creates an active user account with zero balance. With an ExternalID it is
// idempotent per owner: when the owner already has an account with that external id and the same
// currency and labels, it returns that account and created = false; with a different currency or
// labels it returns CodeExternalIDConflict. An unknown owner is CodeNotFound.
func (s *Store) CreateAccount(ctx context.Context, in NewAccount) (acct transfer.Account, created bool, err error) {
	if in.OwnerID == uuid.Nil {
		return transfer.Account{}, false, transfer.Errorf(transfer.CodeInvalidInput, "an account needs an owner")
	}
	if _, ok := in.Currency.Exponent(); !ok {
		return transfer.Account{}, false, transfer.Errorf(transfer.CodeUnsupportedCurrency, "currency %q is not supported", in.Currency)
	}
	db := s.db.WithContext(ctx)
	var rows []accountRow
	err = db.Raw(`INSERT INTO accounts (id, owner_id, kind, currency, external_id, labels)
		VALUES (?, ?, 'user', ?, ?, ?::jsonb)
		ON CONFLICT (owner_id, external_id) WHERE external_id IS NOT NULL DO NOTHING
		RETURNING *`, uuid.New(), in.OwnerID, string(in.Currency), nullable(in.ExternalID), encodeLabels(in.Labels)).
		Scan(&rows).Error
	if errors.Is(s.translate(err), gorm.ErrForeignKeyViolated) {
		return transfer.Account{}, false, transfer.Errorf(transfer.CodeNotFound, "owner %s not found", in.OwnerID)
	}
	if err != nil {
		return transfer.Account{}, false, fmt.Errorf("ledger: create account: %w", err)
	}
	if len(rows) == 1 {
		acct, err := rows[0].domain()
		return acct, true, err
	}
	// The owner already has an account with this external id: the same request gets it back.
	var row accountRow
	if err := db.Raw(`SELECT * FROM accounts WHERE owner_id = ? AND external_id = ?`, in.OwnerID, in.ExternalID).
		Take(&row).Error; err != nil {
		return transfer.Account{}, false, fmt.Errorf("ledger: create account: %w", err)
	}
	existing, err := row.domain()
	if err != nil {
		return transfer.Account{}, false, err
	}
	labels := in.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	if existing.Currency != in.Currency || !maps.Equal(existing.Labels, labels) {
		return transfer.Account{}, false, transfer.Errorf(transfer.CodeExternalIDConflict,
			"external_id %q is already used by account %s with a different currency or labels", in.ExternalID, existing.ID)
	}
	return existing, false, nil
}

// SystemAccount returns the currency's system account, the counterpart of deposits and withdrawals,
// creating it on first use. Its balance goes negative by what was deposited.
func (s *Store) SystemAccount(ctx context.Context, cur transfer.Currency) (transfer.Account, error) {
	if _, ok := cur.Exponent(); !ok {
		return transfer.Account{}, transfer.Errorf(transfer.CodeUnsupportedCurrency, "currency %q is not supported", cur)
	}
	db := s.db.WithContext(ctx)
	if err := db.Exec(`INSERT INTO accounts (id, kind, currency) VALUES (?, 'system', ?)
		ON CONFLICT (currency) WHERE kind = 'system' DO NOTHING`, uuid.New(), string(cur)).Error; err != nil {
		return transfer.Account{}, fmt.Errorf("ledger: system account: %w", err)
	}
	var row accountRow
	if err := db.Raw(`SELECT * FROM accounts WHERE kind = 'system' AND currency = ?`, string(cur)).Take(&row).Error; err != nil {
		return transfer.Account{}, fmt.Errorf("ledger: system account: %w", err)
	}
	return row.domain()
}

// Account returns one account. An unknown id is CodeAccountNotFound.
func (s *Store) Account(ctx context.Context, id uuid.UUID) (transfer.Account, error) {
	var row accountRow
	if err := s.db.WithContext(ctx).Raw(`SELECT * FROM accounts WHERE id = ?`, id).Take(&row).Error; err != nil {
		return transfer.Account{}, notFound(err, transfer.CodeAccountNotFound, "account", id)
	}
	return row.domain()
}

// SetAccountStatus changes an account's status. Closing needs a zero balance, nothing reserved and no
// transfer in flight from or to the account (CodeAccountNotEmpty), since a refund or credit still to
// come would land on it. The system account's status never changes (CodeInvalidInput). A change is
// recorded in the audit log as actor's, in the same transaction.
func (s *Store) SetAccountStatus(ctx context.Context, actor transfer.Actor, id uuid.UUID, status transfer.AccountStatus) (transfer.Account, error) {
	if !status.Valid() {
		return transfer.Account{}, transfer.Errorf(transfer.CodeInvalidInput, "unknown account status %q", status)
	}
	var out transfer.Account
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row accountRow
		if err := tx.Raw(`SELECT * FROM accounts WHERE id = ? FOR UPDATE`, id).Take(&row).Error; err != nil {
			return notFound(err, transfer.CodeAccountNotFound, "account", id)
		}
		if row.Kind == string(transfer.AccountSystem) {
			return transfer.Errorf(transfer.CodeInvalidInput, "the system account's status cannot change")
		}
		if status == transfer.AccountClosed {
			var inFlight int64
			if err := tx.Raw(`SELECT count(*) FROM transfers
				WHERE (from_account_id = ? OR to_account_id = ?) AND status IN ('scheduled', 'pending', 'reserved', 'debited')`, id, id).
				Scan(&inFlight).Error; err != nil {
				return err
			}
			if row.Balance != 0 || row.Reserved != 0 || inFlight > 0 {
				return transfer.Errorf(transfer.CodeAccountNotEmpty,
					"account %s has balance %d, reserved %d and %d transfers in flight; it must be empty to close", id, row.Balance, row.Reserved, inFlight)
			}
		}
		from := row.Status
		if err := tx.Raw(`UPDATE accounts SET status = ?, updated_at = now() WHERE id = ? RETURNING *`, string(status), id).
			Scan(&row).Error; err != nil {
			return err
		}
		if from != string(status) {
			if err := recordAudit(tx, actor, transfer.AuditAccountStatus, "account", id,
				map[string]any{"from": from, "to": string(status)}); err != nil {
				return err
			}
		}
		a, err := row.domain()
		out = a
		return err
	})
	var te *transfer.Error
	if err != nil && !errors.As(err, &te) {
		return transfer.Account{}, fmt.Errorf("ledger: set account status: %w", err)
	}
	return out, err
}
