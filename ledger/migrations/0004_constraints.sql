-- 0004: the rows of a transfer agree with each other, enforced by the schema. A transfer's currency
-- is both of its accounts' currencies, and its kind says which side is the system account (a
-- deposit comes from the currency's system account to a user account, a withdrawal goes the other
-- way, a transfer is between two user accounts). Its hold is on its source and for its amount. Its
-- debit and refund are on its source and its credit on its destination. Each rule is a composite
-- foreign key, so neither buggy Go code, nor a step function, nor a hand-written UPDATE can record
-- a row that breaks it; `transferd audit` checks the same rules, for rows written before this
-- migration or with a constraint dropped.
--
-- A foreign key compares columns, so what it compares is spelled out as columns: the kind of
-- account each side of a transfer must be (from_account_kind, to_account_kind) and the side an
-- entry is on (from_side, to_side: the entry's account on its side, NULL on the other, which the
-- foreign key then skips). They are stored generated columns, computed from the row's own kind,
-- so every insert that exists (CreateTransfer, the step functions, SeedDeposits) and any binary of
-- the previous release still writes valid rows without naming them. The unique keys the foreign
-- keys point at are unique indexes, not UNIQUE constraints over them: a foreign key needs only the
-- index, and ADD CONSTRAINT ... USING INDEX would take ACCESS EXCLUSIVE on accounts as well.
--
-- Locks. Each constraint is added NOT VALID, then validated, which is how a constraint goes onto a
-- hot table: ADD ... NOT VALID changes only the catalog (ADD FOREIGN KEY under SHARE ROW EXCLUSIVE
-- on both tables, which blocks writes; ADD CHECK under ACCESS EXCLUSIVE) and VALIDATE then scans
-- under SHARE UPDATE EXCLUSIVE, which blocks neither reads nor writes. But Migrate applies every
-- pending migration in one transaction, and PostgreSQL holds every lock to the transaction's end.
-- Inside that transaction the split buys nothing: the lock that ADD took is still held while
-- VALIDATE scans, exactly as a plain ADD CONSTRAINT would hold it. Likewise CREATE INDEX
-- CONCURRENTLY cannot run in a transaction block, so each unique index is built by a plain CREATE
-- UNIQUE INDEX, which blocks writes to its table until the commit; and a stored generated column
-- rewrites its table under ACCESS EXCLUSIVE. Every saga step writes transfers and accounts, so
-- under this runner the migration stops all money movement, and blocks reads of transfers and
-- entries, for as long as it runs, which grows with the tables: on a 2-core machine shared with
-- other work, a ledger of 500,000 transfers and 1 million entries (500 MB with indexes) took 27 s,
-- two thirds of it rewriting transfers and entries. Apply it at a quiet moment. Meeting
-- ledger.md's "no lock that stops transfers for more than a moment" needs a runner that applies a
-- migration marked as such statement by statement outside a transaction; this migration would then
-- become CREATE UNIQUE INDEX CONCURRENTLY, ADD ... NOT VALID (a moment each), each VALIDATE in its
-- own transaction, and plain derived columns filled by a trigger and backfilled in batches instead
-- of generated ones, since a rewrite can never be online.
--
-- The new columns also change what SELECT * FROM transfers returns. The step functions of running
-- processes go on working, but a statement that a process's pgx cache prepared for the old columns
-- (Transfer, CreateTransfer's RETURNING *, the lists) fails once on each connection, with SQLSTATE
-- 0A000 "cached plan must not change result type", before pgx prepares it again: the API answers
-- that request with a 500, and the client's retry of it succeeds.
--
-- Within the one transaction, it keeps the stall as short and as safe as it can: it takes every
-- table lock it needs first, transfers first as every step does (a step locks its transfer's row
-- before anything else), so once it holds that lock no step is halfway through and none can
-- deadlock with it; lock_timeout bounds the wait for them, so a long query (an audit, a report)
-- makes the migration fail, with nothing applied, rather than queue every transfer behind it until
-- that query ends; each table is rewritten once (both of its columns in one ALTER) and before its
-- indexes are built, so no index is built twice. A ledger that already breaks a rule fails its
-- VALIDATE with the constraint's name, and the migration applies nothing: run `transferd audit`,
-- which names the rows, and repair them first.

SET LOCAL lock_timeout = '5s';
LOCK TABLE transfers IN ACCESS EXCLUSIVE MODE;
LOCK TABLE accounts, holds IN SHARE ROW EXCLUSIVE MODE;
LOCK TABLE entries IN ACCESS EXCLUSIVE MODE;

-- from_account_kind and to_account_kind are the kinds of account the transfer's kind needs on each
-- side. They serve the foreign keys only; nothing reads them.
ALTER TABLE transfers
    ADD COLUMN from_account_kind text NOT NULL
        GENERATED ALWAYS AS (CASE kind WHEN 'deposit' THEN 'system' ELSE 'user' END) STORED,
    ADD COLUMN to_account_kind text NOT NULL
        GENERATED ALWAYS AS (CASE kind WHEN 'withdrawal' THEN 'system' ELSE 'user' END) STORED;

-- from_side is the account of an entry on its transfer's source (a debit or a refund) and to_side
-- that of an entry on its destination (a credit); the other is NULL. They serve the foreign keys.
ALTER TABLE entries
    ADD COLUMN from_side uuid GENERATED ALWAYS AS (CASE WHEN kind IN ('debit', 'refund') THEN account_id END) STORED,
    ADD COLUMN to_side uuid GENERATED ALWAYS AS (CASE WHEN kind = 'credit' THEN account_id END) STORED;

CREATE UNIQUE INDEX accounts_id_currency_kind_key ON accounts (id, currency, kind);
CREATE UNIQUE INDEX transfers_id_from_amount_key ON transfers (id, from_account_id, amount);
CREATE UNIQUE INDEX transfers_id_from_key ON transfers (id, from_account_id);
CREATE UNIQUE INDEX transfers_id_to_key ON transfers (id, to_account_id);

-- Each side of a transfer is an account of the transfer's currency and of the kind its kind needs.
ALTER TABLE transfers
    ADD CONSTRAINT transfers_from_currency_kind_fkey FOREIGN KEY (from_account_id, currency, from_account_kind)
        REFERENCES accounts (id, currency, kind) NOT VALID,
    ADD CONSTRAINT transfers_to_currency_kind_fkey FOREIGN KEY (to_account_id, currency, to_account_kind)
        REFERENCES accounts (id, currency, kind) NOT VALID;

-- A hold is on its transfer's source and for its transfer's amount. (A partial capture will record
-- the captured amount in a column of its own; the hold stays the transfer's amount.)
ALTER TABLE holds
    ADD CONSTRAINT holds_transfer_account_amount_fkey FOREIGN KEY (transfer_id, account_id, amount)
        REFERENCES transfers (id, from_account_id, amount) NOT VALID;

-- A debit or a refund is on its transfer's source, a credit on its destination. entries_one_side
-- makes sure a kind of entry added later is placed on a side too, rather than skipping both keys.
ALTER TABLE entries
    ADD CONSTRAINT entries_one_side CHECK (num_nonnulls(from_side, to_side) = 1) NOT VALID,
    ADD CONSTRAINT entries_from_side_fkey FOREIGN KEY (transfer_id, from_side)
        REFERENCES transfers (id, from_account_id) NOT VALID,
    ADD CONSTRAINT entries_to_side_fkey FOREIGN KEY (transfer_id, to_side)
        REFERENCES transfers (id, to_account_id) NOT VALID;

ALTER TABLE transfers VALIDATE CONSTRAINT transfers_from_currency_kind_fkey;
ALTER TABLE transfers VALIDATE CONSTRAINT transfers_to_currency_kind_fkey;
ALTER TABLE holds VALIDATE CONSTRAINT holds_transfer_account_amount_fkey;
ALTER TABLE entries VALIDATE CONSTRAINT entries_one_side;
ALTER TABLE entries VALIDATE CONSTRAINT entries_from_side_fkey;
ALTER TABLE entries VALIDATE CONSTRAINT entries_to_side_fkey;

SET LOCAL lock_timeout = DEFAULT;
