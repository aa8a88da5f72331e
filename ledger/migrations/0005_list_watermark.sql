-- transferd:no-transaction
--
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
-- Locks. This migration runs outside a transaction, statement by statement (ledger/migrate.go),
-- under lock_timeout (1 s): each ALTER TABLE holds its table's ACCESS EXCLUSIVE lock only for its
-- own catalog change; the indexes are built CONCURRENTLY (SHARE UPDATE EXCLUSIVE, which blocks no
-- writer), and the old ones dropped CONCURRENTLY. Every statement can run again: a migrator that
-- died half-way is followed by one that finds the finished statements' work done, and an index a
-- failed build left invalid is set aside and built again.

-- statement: transfers.txid
ALTER TABLE transfers ADD COLUMN IF NOT EXISTS txid xid8 NOT NULL DEFAULT '0';

-- statement: transfers.txid default
ALTER TABLE transfers ALTER COLUMN txid SET DEFAULT pg_current_xact_id();

-- statement: accounts.txid
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS txid xid8 NOT NULL DEFAULT '0';

-- statement: accounts.txid default
ALTER TABLE accounts ALTER COLUMN txid SET DEFAULT pg_current_xact_id();

-- statement: set aside the indexes a failed build left invalid
-- IF NOT EXISTS would take an invalid index for built; renaming it clears the name for the build.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['transfers_list_idx', 'transfers_from_list_idx', 'transfers_to_list_idx',
                                'accounts_list_idx', 'accounts_owner_list_idx'] LOOP
        IF EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass(name) AND NOT indisvalid) THEN
            EXECUTE format('ALTER INDEX %I RENAME TO %I', name, name || '_invalid');
        END IF;
    END LOOP;
END
$$;

-- statement: drop transfers_list_idx_invalid
DROP INDEX CONCURRENTLY IF EXISTS transfers_list_idx_invalid;

-- statement: drop transfers_from_list_idx_invalid
DROP INDEX CONCURRENTLY IF EXISTS transfers_from_list_idx_invalid;

-- statement: drop transfers_to_list_idx_invalid
DROP INDEX CONCURRENTLY IF EXISTS transfers_to_list_idx_invalid;

-- statement: drop accounts_list_idx_invalid
DROP INDEX CONCURRENTLY IF EXISTS accounts_list_idx_invalid;

-- statement: drop accounts_owner_list_idx_invalid
DROP INDEX CONCURRENTLY IF EXISTS accounts_owner_list_idx_invalid;

-- Cursor pagination, most recently recorded first: all transfers, one account's outgoing and
-- incoming sides, all accounts, one owner's. They replace the created_at indexes of 0001, whose
-- leading columns they repeat.

-- statement: build transfers_list_idx
CREATE INDEX CONCURRENTLY IF NOT EXISTS transfers_list_idx ON transfers (txid DESC, created_at DESC, id DESC);

-- statement: build transfers_from_list_idx
CREATE INDEX CONCURRENTLY IF NOT EXISTS transfers_from_list_idx ON transfers (from_account_id, txid DESC, created_at DESC, id DESC);

-- statement: build transfers_to_list_idx
CREATE INDEX CONCURRENTLY IF NOT EXISTS transfers_to_list_idx ON transfers (to_account_id, txid DESC, created_at DESC, id DESC);

-- statement: build accounts_list_idx
CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_list_idx ON accounts (txid DESC, created_at DESC, id DESC);

-- statement: build accounts_owner_list_idx
CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_owner_list_idx ON accounts (owner_id, txid DESC, created_at DESC, id DESC);

-- statement: drop transfers_page_idx
DROP INDEX CONCURRENTLY IF EXISTS transfers_page_idx;

-- statement: drop transfers_from_page_idx
DROP INDEX CONCURRENTLY IF EXISTS transfers_from_page_idx;

-- statement: drop transfers_to_page_idx
DROP INDEX CONCURRENTLY IF EXISTS transfers_to_page_idx;

-- statement: drop accounts_page_idx
DROP INDEX CONCURRENTLY IF EXISTS accounts_page_idx;

-- statement: drop accounts_owner_page_idx
DROP INDEX CONCURRENTLY IF EXISTS accounts_owner_page_idx;
