-- 0005: lists are ordered by the transaction that recorded each row, so a page never skips a row that
-- commits late.
--
-- created_at is its transaction's start, not its commit: a transaction that began before a page was
-- read can commit a row with an older created_at, below that page's cursor, where a keyset walk never
-- goes back. A sequence has the same flaw (its numbers are taken, not committed, in order). txid is
-- the top-level transaction id of the insert. Ids are handed out in increasing order, so a transaction
-- that has no id yet can only ever record rows above every id handed out so far. The lists are
-- ordered by (txid, created_at, id) and show only rows whose txid lies below a watermark under which
-- every transaction of this database has ended (ledger/cursor.go), so what a list can show only grows
-- at the top of its order, above any cursor already issued.
--
-- Rows recorded before this migration get txid 0, below every real transaction id, and keep their
-- created_at order among themselves. ADD COLUMN with a constant default only records the default in
-- the catalog (no rewrite of the table, no update of its rows), and SET DEFAULT then applies to new
-- rows only: each takes the table's ACCESS EXCLUSIVE lock for a moment.
--
-- The indexes are plain CREATE INDEX because Migrate runs every migration in one transaction
-- (ledger/migrate.go), where CREATE INDEX CONCURRENTLY cannot run. A plain build reads the whole
-- table, and the ALTER TABLE above it keeps the table locked until the migration commits: seconds
-- per million rows. Where that is too long, run this file's statements by hand first, with
-- CONCURRENTLY on each CREATE INDEX and DROP INDEX; every statement here is IF [NOT] EXISTS, so the
-- migration then finds its work done and only records itself.

ALTER TABLE transfers ADD COLUMN IF NOT EXISTS txid xid8 NOT NULL DEFAULT '0';
ALTER TABLE transfers ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS txid xid8 NOT NULL DEFAULT '0';
ALTER TABLE accounts ALTER COLUMN txid SET DEFAULT pg_current_xact_id();

-- Cursor pagination, most recently recorded first: all transfers, one account's outgoing and
-- incoming sides, all accounts, one owner's. They replace the created_at indexes of 0001, whose
-- leading columns they repeat.
CREATE INDEX IF NOT EXISTS transfers_list_idx ON transfers (txid DESC, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS transfers_from_list_idx ON transfers (from_account_id, txid DESC, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS transfers_to_list_idx ON transfers (to_account_id, txid DESC, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS accounts_list_idx ON accounts (txid DESC, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS accounts_owner_list_idx ON accounts (owner_id, txid DESC, created_at DESC, id DESC);
DROP INDEX IF EXISTS transfers_page_idx;
DROP INDEX IF EXISTS transfers_from_page_idx;
DROP INDEX IF EXISTS transfers_to_page_idx;
DROP INDEX IF EXISTS accounts_page_idx;
DROP INDEX IF EXISTS accounts_owner_page_idx;
