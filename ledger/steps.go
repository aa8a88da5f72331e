package ledger

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/transferd/transferd/transfer"
)

// The saga steps. Each is one short transaction that begins by locking its transfer's row, so the
// steps of one transfer never interleave, and reads the transfer's status to see whether the step
// already ran: the status moves forward in the same transaction as the money, so "ran" and "status
// advanced" are one fact. Running a step again therefore has the effect of running it once. A step
// touches one account row, so steps of different transfers cannot deadlock on each other. Business
// outcomes are *transfer.Error values; every other error is transient and worth retrying.

// stepRow is the part of a transfer row that the steps need.
type stepRow struct {
	ID            uuid.UUID
	FromAccountID uuid.UUID
	ToAccountID   uuid.UUID
	Amount        int64
	Status        string
}

// step runs fn in a transaction with the transfer's row locked.
func (s *Store) step(ctx context.Context, name string, id uuid.UUID, fn func(tx *gorm.DB, t stepRow) error) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var t stepRow
		if err := tx.Raw(`SELECT id, from_account_id, to_account_id, amount, status FROM transfers WHERE id = ? FOR UPDATE`, id).
			Take(&t).Error; err != nil {
			return notFound(err, transfer.CodeNotFound, "transfer", id)
		}
		return fn(tx, t)
	})
	if err != nil && !isBusiness(err) {
		return fmt.Errorf("ledger: %s %s: %w", name, id, err)
	}
	return err
}

// outOfOrder is the error of a step asked for in a status that cannot lead to it, such as a debit of a
// transfer that was never reserved. It is a business error so that it is not retried: retrying cannot
// change the transfer's status.
func outOfOrder(step string, t stepRow) error {
	if transfer.Status(t.Status).Final() {
		return transfer.Errorf(transfer.CodeTransferClosed, "transfer %s is already %s; cannot %s", t.ID, t.Status, step)
	}
	return transfer.Errorf(transfer.CodeInternal, "transfer %s is %s; cannot %s", t.ID, t.Status, step)
}

// Reserve holds the transfer's amount on its source: it raises the source's reserved and records the
// hold, only if the source is active and has that much available (the system account may go
// negative). It fails with CodeInsufficientFunds, CodeAccountInactive or CodeAccountNotFound, and
// with CodeTransferClosed when the transfer has already ended. A transfer already reserved, or
// further along, is left as it is.
func (s *Store) Reserve(ctx context.Context, id uuid.UUID) error {
	return s.step(ctx, "reserve", id, reserveTx)
}

// reserveTx is Reserve's work inside the transaction that holds the transfer's row.
func reserveTx(tx *gorm.DB, t stepRow) error {
	switch transfer.Status(t.Status) {
	case transfer.StatusReserved, transfer.StatusDebited, transfer.StatusCompleted:
		return nil
	case transfer.StatusPending:
	default:
		return outOfOrder("reserve", t)
	}
	// One conditional UPDATE takes the row lock and checks status and funds at once.
	res := tx.Exec(`UPDATE accounts SET reserved = reserved + ?, updated_at = now()
		WHERE id = ? AND status = 'active' AND (kind = 'system' OR balance - reserved >= ?)`,
		t.Amount, t.FromAccountID, t.Amount)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return whyNotReserved(tx, t)
	}
	if err := tx.Exec(`INSERT INTO holds (transfer_id, account_id, amount, status) VALUES (?, ?, ?, 'held')`,
		t.ID, t.FromAccountID, t.Amount).Error; err != nil {
		return err
	}
	return setStatus(tx, t.ID, transfer.StatusReserved)
}

// whyNotReserved tells which business rule stopped a reserve.
func whyNotReserved(tx *gorm.DB, t stepRow) error {
	var a accountRow
	if err := tx.Raw(`SELECT * FROM accounts WHERE id = ?`, t.FromAccountID).Take(&a).Error; err != nil {
		return notFound(err, transfer.CodeAccountNotFound, "account", t.FromAccountID)
	}
	if a.Status != string(transfer.AccountActive) {
		return transfer.Errorf(transfer.CodeAccountInactive, "source account %s is %s", a.ID, a.Status)
	}
	return transfer.Errorf(transfer.CodeInsufficientFunds, "source account %s has %d available, the transfer needs %d",
		a.ID, a.Balance-a.Reserved, t.Amount)
}

// Debit posts the transfer's hold: the source's balance and reserved both fall by the amount, a debit
// entry is journaled, and the hold becomes posted. A source that was frozen or closed after the
// reserve fails with CodeAccountInactive, and the hold stays for Release. A transfer already debited
// or completed is left as it is.
func (s *Store) Debit(ctx context.Context, id uuid.UUID) error {
	return s.step(ctx, "debit", id, debitTx)
}

// debitTx is Debit's work inside the transaction that holds the transfer's row.
func debitTx(tx *gorm.DB, t stepRow) error {
	switch transfer.Status(t.Status) {
	case transfer.StatusDebited, transfer.StatusCompleted:
		return nil
	case transfer.StatusReserved:
	default:
		return outOfOrder("debit", t)
	}
	posted, err := post(tx, t, t.FromAccountID, transfer.EntryDebit, -t.Amount,
		`reserved = reserved - ?`, []any{t.Amount}, `status = 'active'`)
	if err != nil {
		return err
	}
	if !posted {
		return transfer.Errorf(transfer.CodeAccountInactive, "source account %s is no longer active", t.FromAccountID)
	}
	if err := tx.Exec(`UPDATE holds SET status = 'posted', updated_at = now() WHERE transfer_id = ? AND status = 'held'`,
		t.ID).Error; err != nil {
		return err
	}
	return setStatus(tx, t.ID, transfer.StatusDebited)
}

// Credit posts the amount to the destination and completes the transfer, only if the destination is
// active; otherwise it fails with CodeAccountInactive, and the saga refunds the source. A completed
// transfer is left as it is.
func (s *Store) Credit(ctx context.Context, id uuid.UUID) error {
	return s.step(ctx, "credit", id, creditTx)
}

// creditTx is Credit's work inside the transaction that holds the transfer's row.
func creditTx(tx *gorm.DB, t stepRow) error {
	switch transfer.Status(t.Status) {
	case transfer.StatusCompleted:
		return nil
	case transfer.StatusDebited:
	default:
		return outOfOrder("credit", t)
	}
	posted, err := post(tx, t, t.ToAccountID, transfer.EntryCredit, t.Amount, "", nil, `status = 'active'`)
	if err != nil {
		return err
	}
	if !posted {
		var a accountRow
		if err := tx.Raw(`SELECT * FROM accounts WHERE id = ?`, t.ToAccountID).Take(&a).Error; err != nil {
			return notFound(err, transfer.CodeAccountNotFound, "account", t.ToAccountID)
		}
		return transfer.Errorf(transfer.CodeAccountInactive, "destination account %s is %s", a.ID, a.Status)
	}
	return finish(tx, t.ID, transfer.StatusCompleted, "", "")
}

// Release ends a transfer that was not debited: it releases the hold, if there is one, and records
// the outcome. It always succeeds on a transfer in status pending or reserved, whatever its source's
// status. A transfer that already ended is left as it is; one that was debited needs Refund
// (CodeInternal).
func (s *Store) Release(ctx context.Context, id uuid.UUID, o transfer.Outcome) error {
	if o.Status != transfer.StatusFailed && o.Status != transfer.StatusCancelled {
		return transfer.Errorf(transfer.CodeInternal, "release needs a failed or cancelled outcome, not %q", o.Status)
	}
	return s.step(ctx, "release", id, func(tx *gorm.DB, t stepRow) error {
		switch transfer.Status(t.Status) {
		case transfer.StatusPending:
		case transfer.StatusReserved:
			if err := tx.Exec(`UPDATE accounts SET reserved = reserved - ?, updated_at = now() WHERE id = ?`,
				t.Amount, t.FromAccountID).Error; err != nil {
				return err
			}
			if err := tx.Exec(`UPDATE holds SET status = 'released', updated_at = now() WHERE transfer_id = ? AND status = 'held'`,
				t.ID).Error; err != nil {
				return err
			}
		case transfer.StatusDebited:
			return transfer.Errorf(transfer.CodeInternal, "transfer %s was debited; it needs a refund, not a release", t.ID)
		default:
			return nil
		}
		return finish(tx, t.ID, o.Status, o.Code, o.Message)
	})
}

// Refund ends a debited transfer whose credit failed: it posts a refund entry that returns the amount
// to the source, whatever the source's status (money owed back always lands), and records the
// transfer as failed with the code. A transfer that already ended is left as it is; one that was not
// debited needs Release (CodeInternal).
func (s *Store) Refund(ctx context.Context, id uuid.UUID, code transfer.Code, message string) error {
	return s.step(ctx, "refund", id, func(tx *gorm.DB, t stepRow) error {
		switch transfer.Status(t.Status) {
		case transfer.StatusDebited:
		case transfer.StatusPending, transfer.StatusReserved:
			return transfer.Errorf(transfer.CodeInternal, "transfer %s was not debited; it needs a release, not a refund", t.ID)
		default:
			return nil
		}
		posted, err := post(tx, t, t.FromAccountID, transfer.EntryRefund, t.Amount, "", nil, "")
		if err != nil {
			return err
		}
		if !posted {
			return transfer.Errorf(transfer.CodeAccountNotFound, "source account %s not found", t.FromAccountID)
		}
		return finish(tx, t.ID, transfer.StatusFailed, code, message)
	})
}

// post changes an account's balance by amount, applies the extra SET clause, takes the account's
// next entry seq and journals the entry, all only if cond (a SQL condition, or "") holds. It reports
// false when the account does not exist or cond does not hold.
func post(tx *gorm.DB, t stepRow, accountID uuid.UUID, kind transfer.EntryKind, amount int64,
	extraSet string, extraArgs []any, cond string) (bool, error) {
	set := "balance = balance + ?, entry_seq = entry_seq + 1, updated_at = now()"
	args := []any{amount}
	if extraSet != "" {
		set += ", " + extraSet
		args = append(args, extraArgs...)
	}
	where := "id = ?"
	args = append(args, accountID)
	if cond != "" {
		where += " AND " + cond
	}
	var after []struct {
		Balance  int64
		EntrySeq int64
	}
	if err := tx.Raw("UPDATE accounts SET "+set+" WHERE "+where+" RETURNING balance, entry_seq", args...).
		Scan(&after).Error; err != nil {
		return false, err
	}
	if len(after) == 0 {
		return false, nil
	}
	err := tx.Exec(`INSERT INTO entries (id, account_id, transfer_id, kind, amount, balance_after, seq) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		uuid.New(), accountID, t.ID, string(kind), amount, after[0].Balance, after[0].EntrySeq).Error
	return err == nil, err
}

func setStatus(tx *gorm.DB, id uuid.UUID, status transfer.Status) error {
	return tx.Exec(`UPDATE transfers SET status = ?, updated_at = now() WHERE id = ?`, string(status), id).Error
}

func finish(tx *gorm.DB, id uuid.UUID, status transfer.Status, code transfer.Code, message string) error {
	return tx.Exec(`UPDATE transfers SET status = ?, failure_code = ?, failure_message = ?, updated_at = now(), completed_at = now()
		WHERE id = ?`, string(status), nullable(string(code)), nullable(message), id).Error
}

// TransferInOneTransaction runs reserve, debit and credit of a pending transfer in one transaction,
// with the very statements the saga's steps run. It exists for `transferd bench`'s sql baseline: the
// cost of the money work alone, without Temporal. Business failures are returned as the steps return
// them, and the transaction then commits nothing.
func (s *Store) TransferInOneTransaction(ctx context.Context, id uuid.UUID) error {
	return s.step(ctx, "transfer in one transaction", id, func(tx *gorm.DB, t stepRow) error {
		// This transaction touches two accounts: it locks them in id order first, so that opposite
		// transfers wait for each other instead of deadlocking.
		if err := tx.Exec(`SELECT 1 FROM accounts WHERE id IN (?, ?) ORDER BY id FOR UPDATE`, t.FromAccountID, t.ToAccountID).Error; err != nil {
			return err
		}
		for _, step := range []func(*gorm.DB, stepRow) error{reserveTx, debitTx, creditTx} {
			if err := step(tx, t); err != nil {
				return err
			}
			// The next step reads the status the previous one wrote.
			t.Status = map[string]string{"pending": "reserved", "reserved": "debited", "debited": "completed"}[t.Status]
		}
		return nil
	})
}
