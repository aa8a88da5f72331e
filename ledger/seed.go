package ledger

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/transferd/transferd/transfer"
)

// SeedDeposits appends n completed deposits of one minor unit each from the currency's system
// account to the accounts, round robin, straight in SQL and in one transaction: the transfers, their
// posted holds and their two entries each, with the balances and entry seqs the saga would have left,
// so every invariant Audit checks still holds. It exists to grow a journal to millions of entries in
// seconds, for `transferd bench`'s growth runs and the tests that check a page's cost does not grow
// with the journal. The accounts must be user accounts of that currency.
func (s *Store) SeedDeposits(ctx context.Context, cur transfer.Currency, accounts []uuid.UUID, n int) error {
	if n <= 0 || len(accounts) == 0 {
		return nil
	}
	sys, err := s.SystemAccount(ctx, cur)
	if err != nil {
		return err
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// The accounts' rows are locked in id order, as any step would, and their current balance and
		// seq are where the new entries continue from.
		ids := append([]uuid.UUID{sys.ID}, accounts...)
		if err := tx.Exec(`SELECT 1 FROM accounts WHERE id IN ? ORDER BY id FOR UPDATE`, ids).Error; err != nil {
			return err
		}
		list := make([]string, len(accounts))
		for i, id := range accounts {
			list[i] = id.String()
		}
		k := len(accounts)
		stmts := []struct {
			sql  string
			args []any
		}{
			// seed has one row per deposit: its account (round robin) and the seq and balance it
			// leaves on that account and on the system account. created_at advances a microsecond
			// per deposit, so lists have a strict order.
			{`CREATE TEMP TABLE seed ON COMMIT DROP AS
			  WITH acc AS (
			      SELECT a.id, a.balance, a.entry_seq, o.k
			      FROM unnest(?::uuid[]) WITH ORDINALITY AS o(id, k) JOIN accounts a ON a.id = o.id),
			  sys AS (SELECT balance, entry_seq FROM accounts WHERE id = ?)
			  SELECT gen_random_uuid() AS tid, acc.id AS account_id,
			         acc.entry_seq + (i - 1) / ? + 1 AS seq, acc.balance + (i - 1) / ? + 1 AS balance_after,
			         sys.entry_seq + i AS sys_seq, sys.balance - i AS sys_balance_after,
			         clock_timestamp() + i * interval '1 microsecond' AS at
			  FROM generate_series(1, ?) AS i CROSS JOIN sys JOIN acc ON acc.k = (i - 1) % ? + 1`,
				[]any{"{" + strings.Join(list, ",") + "}", sys.ID, k, k, n, k}},
			{`INSERT INTO transfers (id, kind, from_account_id, to_account_id, amount, currency, status, request_hash,
			                         created_at, updated_at, completed_at)
			  SELECT tid, 'deposit', ?, account_id, 1, ?, 'completed', decode(md5(tid::text), 'hex'), at, at, at FROM seed`,
				[]any{sys.ID, string(cur)}},
			{`INSERT INTO holds (transfer_id, account_id, amount, status, created_at, updated_at)
			  SELECT tid, ?, 1, 'posted', at, at FROM seed`, []any{sys.ID}},
			{`INSERT INTO entries (id, account_id, transfer_id, kind, amount, balance_after, seq, created_at)
			  SELECT gen_random_uuid(), ?, tid, 'debit', -1, sys_balance_after, sys_seq, at FROM seed
			  UNION ALL
			  SELECT gen_random_uuid(), account_id, tid, 'credit', 1, balance_after, seq, at FROM seed`, []any{sys.ID}},
			{`UPDATE accounts a SET balance = a.balance + g.n, entry_seq = a.entry_seq + g.n, updated_at = now()
			  FROM (SELECT account_id, count(*) AS n FROM seed GROUP BY account_id) g WHERE a.id = g.account_id`, nil},
			{`UPDATE accounts SET balance = balance - ?, entry_seq = entry_seq + ?, updated_at = now() WHERE id = ?`,
				[]any{n, n, sys.ID}},
		}
		for _, st := range stmts {
			if err := tx.Exec(st.sql, st.args...).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: seed deposits: %w", s.translate(err))
	}
	return nil
}
