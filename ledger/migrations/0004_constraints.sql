-- transferd:no-transaction
--
-- 0004: the rows of a transfer agree with each other, enforced by the schema. A transfer's currency
-- is both of its accounts' currencies, and its kind says which side is the system account (a
-- deposit comes from the currency's system account to a user account, a withdrawal goes the other
-- way, a transfer is between two user accounts). Its hold is on its source and for its amount. Its
-- debit and refund are on its source and its credit on its destination. Neither buggy Go code, nor
-- a step function, nor a hand-written UPDATE can record a row that breaks one of these rules;
-- `transferd audit` checks the same rules, for rows written with a rule dropped.
--
-- How each rule is enforced, and its name in errors:
--   transfers_from_currency_fkey, transfers_to_currency_fkey: foreign keys (from_account_id,
--     currency) and (to_account_id, currency) to accounts (id, currency), over the unique index
--     accounts_id_currency_key.
--   holds_transfer_account_amount_fkey: foreign key (transfer_id, account_id, amount) to transfers
--     (id, from_account_id, amount), over the unique index transfers_id_from_amount_key.
--   transfers_account_kinds: the kinds of a transfer's accounts, which a foreign key could only
--     compare through a column derived from the transfer's kind.
--   entries_from_side, entries_to_side: a debit or refund is on its transfer's source, a credit on
--     its destination. (That an entry is for its transfer's amount stays the audit's: a partial
--     capture will post less than the amount.)
--   entries_one_side: a CHECK that an entry is of a kind that has a side, so a kind added later is
--     placed on one rather than escaping both rules.
--   accounts_immutable, transfers_immutable: an account's kind and currency, and a transfer's kind,
--     accounts, amount and currency never change.
-- The rules that need another table's row and no foreign key can express are constraint triggers
-- (AFTER ... FOR EACH ROW, listed in pg_constraint under their names) raising SQLSTATE 23514
-- check_violation with the rule's name as the constraint, as a CHECK would. They fire after the
-- row's CHECKs, unique keys and foreign keys (triggers fire in name order, and PostgreSQL's own
-- "RI_ConstraintTrigger_" ones sort first), so a row that breaks one of those is reported under
-- that name first. A trigger reads the other row without locking it, which is race-free only
-- because what it reads never changes: hence the two immutability triggers, created before the
-- others. (A BEFORE trigger would fire before the CHECKs and foreign keys, and report a transfer to
-- itself, or a transfer's amount changed under its hold, as an immutable column changed.)
--
-- Adding no column to transfers or entries is deliberate: a stored generated column (what a foreign
-- key over a transfer's kind needs) rewrites its table under ACCESS EXCLUSIVE (this migration's
-- first form, applied in one transaction, stopped every transfer for 27 s on a ledger of 500,000
-- transfers on this machine), and a new column of transfers makes every running process's cached
-- SELECT * of it fail once per connection (SQLSTATE 0A000, "cached plan must not change result
-- type").
--
-- Locks. This migration runs outside a transaction, statement by statement (ledger/migrate.go),
-- under lock_timeout (1 s), so no lock is held past its own statement and none is queued for long.
-- Below, what each statement locks and, from two runs of
-- TestConstraintsMigrationDoesNotStopTransfers with TRANSFERD_TEST_LOADED_DEPOSITS=500000 (500,000
-- transfers and holds, 1 million entries; four goroutines creating and stepping transfers
-- throughout; a 2-core machine shared with other work), how long it held a lock that stops a
-- transfer's INSERT or a step's UPDATE ("held": sampled from pg_locks every 2 ms, so an upper bound
-- within about 4 ms), or else how long it took:
--   - CREATE OR REPLACE FUNCTION, four: no table lock; 2 to 67 ms each.
--   - CREATE CONSTRAINT TRIGGER accounts_immutable, transfers_immutable, transfers_account_kinds,
--     entries_from_side, entries_to_side: SHARE ROW EXCLUSIVE on the trigger's table, which stops
--     its writers (not its readers): held <= 20 ms each (7 to 48 ms in all, its wait included).
--   - Setting invalid indexes aside (ALTER INDEX RENAME) and DROP INDEX CONCURRENTLY IF EXISTS:
--     SHARE UPDATE EXCLUSIVE, which stops no writer; 1 ms with nothing to do.
--   - CREATE UNIQUE INDEX CONCURRENTLY accounts_id_currency_key: SHARE UPDATE EXCLUSIVE on
--     accounts; 0.04 and 0.15 s. transfers_id_from_amount_key: the same on transfers; 4.7 and
--     6.9 s.
--   - ADD FOREIGN KEY ... NOT VALID, the two currency keys in one statement: SHARE ROW EXCLUSIVE
--     on accounts, then on transfers; catalog only: held <= 27 ms (accounts) and <= 13 ms
--     (transfers). The hold's key: the same on holds, then transfers: held <= 20 and <= 13 ms.
--   - ADD CONSTRAINT entries_one_side CHECK ... NOT VALID: ACCESS EXCLUSIVE on entries, which
--     stops its readers too; catalog only: held <= 6 ms.
--   - VALIDATE CONSTRAINT: SHARE UPDATE EXCLUSIVE, and ROW SHARE on a foreign key's referenced
--     table, which stop no writer: 0.5 to 1.1 s for each currency key, 2.5 and 4.6 s for the hold's
--     key, 0.7 and 1.3 s for entries_one_side.
--   - The checks of the existing rows against the trigger rules (below): ACCESS SHARE, which stops
--     no writer: 0.7 and 1.3 s for transfers, 3.3 and 6.3 s for entries.
-- In all 13 and 23 s, during which the slowest of 4,818 and 5,479 create and step calls took 139
-- and 125 ms (before the migration, 181 and 333 ms: this machine's noise).
--
-- A statement that takes a lock on two tables takes them in the order a step does (a step's UPDATE
-- of accounts, or its INSERT into holds or entries, comes before its UPDATE of transfers; its
-- SELECT ... FOR UPDATE of the transfer takes only ROW SHARE, which these locks let through), so a
-- step half-way through cannot deadlock with it. SeedDeposits writes transfers before accounts and
-- can; the deadlock then costs the migration an attempt or the seed its transaction.
--
-- Rows written before this migration. Each foreign key is added NOT VALID and then validated; the
-- trigger rules are checked over the existing rows by a query that fails like a VALIDATE would,
-- once the triggers cover every new row (their CREATE waited for every writer of the table). A
-- ledger that already breaks a rule makes the migration fail there, naming the rule and a row, with
-- the rule in force for new rows and the migration not recorded: run `transferd audit`, which names
-- every such row, repair them, and migrate again.

-- statement: function ledger_immutable
CREATE OR REPLACE FUNCTION ledger_immutable() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    col text;
BEGIN
    -- TG_ARGV names the columns that never change; the trigger's WHEN says one of them did.
    FOREACH col IN ARRAY TG_ARGV LOOP
        IF to_jsonb(OLD) -> col IS DISTINCT FROM to_jsonb(NEW) -> col THEN
            RAISE EXCEPTION USING ERRCODE = 'check_violation', CONSTRAINT = TG_NAME,
                SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME, COLUMN = col,
                MESSAGE = format('%s: the %s of %s %s never changes (from %s to %s)', TG_NAME, col,
                                 rtrim(TG_TABLE_NAME, 's'), OLD.id, to_jsonb(OLD) -> col, to_jsonb(NEW) -> col);
        END IF;
    END LOOP;
    RETURN NULL;
END
$fn$;

-- statement: trigger accounts_immutable
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'accounts'::regclass AND tgname = 'accounts_immutable') THEN
        CREATE CONSTRAINT TRIGGER accounts_immutable AFTER UPDATE OF kind, currency ON accounts
            FOR EACH ROW WHEN (OLD.kind IS DISTINCT FROM NEW.kind OR OLD.currency IS DISTINCT FROM NEW.currency)
            EXECUTE FUNCTION ledger_immutable('kind', 'currency');
    END IF;
END
$$;

-- statement: trigger transfers_immutable
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'transfers'::regclass AND tgname = 'transfers_immutable') THEN
        CREATE CONSTRAINT TRIGGER transfers_immutable
            AFTER UPDATE OF kind, from_account_id, to_account_id, amount, currency ON transfers
            FOR EACH ROW WHEN (OLD.kind IS DISTINCT FROM NEW.kind
                            OR OLD.from_account_id IS DISTINCT FROM NEW.from_account_id
                            OR OLD.to_account_id IS DISTINCT FROM NEW.to_account_id
                            OR OLD.amount IS DISTINCT FROM NEW.amount
                            OR OLD.currency IS DISTINCT FROM NEW.currency)
            EXECUTE FUNCTION ledger_immutable('kind', 'from_account_id', 'to_account_id', 'amount', 'currency');
    END IF;
END
$$;

-- statement: function ledger_transfers_account_kinds
CREATE OR REPLACE FUNCTION ledger_transfers_account_kinds() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    want_from text := CASE NEW.kind WHEN 'deposit' THEN 'system' ELSE 'user' END;
    want_to   text := CASE NEW.kind WHEN 'withdrawal' THEN 'system' ELSE 'user' END;
    from_kind text;
    to_kind   text;
BEGIN
    SELECT (SELECT kind FROM accounts WHERE id = NEW.from_account_id),
           (SELECT kind FROM accounts WHERE id = NEW.to_account_id)
      INTO from_kind, to_kind;
    IF from_kind IS DISTINCT FROM want_from OR to_kind IS DISTINCT FROM want_to THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation', CONSTRAINT = TG_NAME,
            SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME,
            MESSAGE = format('%s: a %s needs a %s source and a %s destination, but transfer %s is from %s account %s to %s account %s',
                             TG_NAME, NEW.kind, want_from, want_to, NEW.id, coalesce(from_kind, 'no'), NEW.from_account_id,
                             coalesce(to_kind, 'no'), NEW.to_account_id);
    END IF;
    RETURN NULL;
END
$fn$;

-- statement: trigger transfers_account_kinds
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'transfers'::regclass AND tgname = 'transfers_account_kinds') THEN
        CREATE CONSTRAINT TRIGGER transfers_account_kinds
            AFTER INSERT OR UPDATE OF kind, from_account_id, to_account_id ON transfers
            FOR EACH ROW EXECUTE FUNCTION ledger_transfers_account_kinds();
    END IF;
END
$$;

-- statement: function ledger_entries_side
CREATE OR REPLACE FUNCTION ledger_entries_side() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    -- TG_ARGV[0] is the side the trigger's entries belong on: source or destination.
    side    text := TG_ARGV[0];
    account uuid;
BEGIN
    SELECT CASE side WHEN 'source' THEN from_account_id ELSE to_account_id END INTO account
      FROM transfers WHERE id = NEW.transfer_id;
    -- A missing transfer is entries_transfer_id_fkey's to report.
    IF FOUND AND NEW.account_id IS DISTINCT FROM account THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation', CONSTRAINT = TG_NAME,
            SCHEMA = TG_TABLE_SCHEMA, TABLE = TG_TABLE_NAME,
            MESSAGE = format('%s: a %s is on its transfer''s %s, but entry %s is on account %s and transfer %s''s %s is account %s',
                             TG_NAME, NEW.kind, side, NEW.id, NEW.account_id, NEW.transfer_id, side, account);
    END IF;
    RETURN NULL;
END
$fn$;

-- statement: trigger entries_from_side
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'entries'::regclass AND tgname = 'entries_from_side') THEN
        CREATE CONSTRAINT TRIGGER entries_from_side AFTER INSERT OR UPDATE OF account_id, transfer_id, kind ON entries
            FOR EACH ROW WHEN (NEW.kind IN ('debit', 'refund'))
            EXECUTE FUNCTION ledger_entries_side('source');
    END IF;
END
$$;

-- statement: trigger entries_to_side
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'entries'::regclass AND tgname = 'entries_to_side') THEN
        CREATE CONSTRAINT TRIGGER entries_to_side AFTER INSERT OR UPDATE OF account_id, transfer_id, kind ON entries
            FOR EACH ROW WHEN (NEW.kind = 'credit')
            EXECUTE FUNCTION ledger_entries_side('destination');
    END IF;
END
$$;

-- statement: set aside the indexes a failed build left invalid
-- A CREATE INDEX CONCURRENTLY that failed, or whose migrator died, leaves its index behind marked
-- invalid, where IF NOT EXISTS would take it for built. Renaming it (SHARE UPDATE EXCLUSIVE on the
-- index only) clears the name for the build and lets the next statements drop it concurrently,
-- which no DO block can.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['accounts_id_currency_key', 'transfers_id_from_amount_key'] LOOP
        IF EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass(name) AND NOT indisvalid) THEN
            EXECUTE format('ALTER INDEX %I RENAME TO %I', name, name || '_invalid');
        END IF;
    END LOOP;
END
$$;

-- statement: drop accounts_id_currency_key_invalid
DROP INDEX CONCURRENTLY IF EXISTS accounts_id_currency_key_invalid;

-- statement: drop transfers_id_from_amount_key_invalid
DROP INDEX CONCURRENTLY IF EXISTS transfers_id_from_amount_key_invalid;

-- statement: build accounts_id_currency_key
-- The keys the foreign keys point at are unique indexes and not UNIQUE constraints over them: a
-- foreign key needs only the index, and ADD CONSTRAINT ... USING INDEX would take ACCESS EXCLUSIVE.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_id_currency_key ON accounts (id, currency);

-- statement: build transfers_id_from_amount_key
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS transfers_id_from_amount_key ON transfers (id, from_account_id, amount);

-- statement: add transfers_from_currency_fkey and transfers_to_currency_fkey, not valid
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'transfers'::regclass AND conname = 'transfers_from_currency_fkey')
       OR NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'transfers'::regclass AND conname = 'transfers_to_currency_fkey') THEN
        -- ALTER TABLE transfers would lock transfers, then accounts; a step holds accounts before
        -- it writes transfers, so accounts is locked first (see the header).
        LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE;
        IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'transfers'::regclass AND conname = 'transfers_from_currency_fkey') THEN
            ALTER TABLE transfers ADD CONSTRAINT transfers_from_currency_fkey
                FOREIGN KEY (from_account_id, currency) REFERENCES accounts (id, currency) NOT VALID;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'transfers'::regclass AND conname = 'transfers_to_currency_fkey') THEN
            ALTER TABLE transfers ADD CONSTRAINT transfers_to_currency_fkey
                FOREIGN KEY (to_account_id, currency) REFERENCES accounts (id, currency) NOT VALID;
        END IF;
    END IF;
END
$$;

-- statement: add holds_transfer_account_amount_fkey, not valid
-- A hold is on its transfer's source and for its transfer's amount. (A partial capture will record
-- the captured amount in a column of its own; the hold stays the transfer's amount.) ALTER TABLE
-- holds locks holds, then transfers: a step's order.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'holds'::regclass AND conname = 'holds_transfer_account_amount_fkey') THEN
        ALTER TABLE holds ADD CONSTRAINT holds_transfer_account_amount_fkey FOREIGN KEY (transfer_id, account_id, amount)
            REFERENCES transfers (id, from_account_id, amount) NOT VALID;
    END IF;
END
$$;

-- statement: add entries_one_side, not valid
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'entries'::regclass AND conname = 'entries_one_side') THEN
        ALTER TABLE entries ADD CONSTRAINT entries_one_side CHECK (kind IN ('debit', 'refund', 'credit')) NOT VALID;
    END IF;
END
$$;

-- statement: validate transfers_from_currency_fkey
ALTER TABLE transfers VALIDATE CONSTRAINT transfers_from_currency_fkey;

-- statement: validate transfers_to_currency_fkey
ALTER TABLE transfers VALIDATE CONSTRAINT transfers_to_currency_fkey;

-- statement: validate holds_transfer_account_amount_fkey
ALTER TABLE holds VALIDATE CONSTRAINT holds_transfer_account_amount_fkey;

-- statement: validate entries_one_side
ALTER TABLE entries VALIDATE CONSTRAINT entries_one_side;

-- statement: check existing transfers against transfers_account_kinds
-- SELECT INTO stops at the first row; the query has no LIMIT, which would have the planner expect
-- an early match and walk an index once per row (6 s for a million entries here, 1 s by hash join).
DO $$
DECLARE
    bad record;
BEGIN
    SELECT t.id, t.kind, f.kind AS from_kind, d.kind AS to_kind INTO bad
      FROM transfers t
      LEFT JOIN accounts f ON f.id = t.from_account_id
      LEFT JOIN accounts d ON d.id = t.to_account_id
     WHERE f.kind IS DISTINCT FROM CASE t.kind WHEN 'deposit' THEN 'system' ELSE 'user' END
        OR d.kind IS DISTINCT FROM CASE t.kind WHEN 'withdrawal' THEN 'system' ELSE 'user' END;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation', CONSTRAINT = 'transfers_account_kinds', TABLE = 'transfers',
            MESSAGE = format('transfers_account_kinds: existing transfer %s, a %s, is from a %s account to a %s account; transferd audit names every such row',
                             bad.id, bad.kind, coalesce(bad.from_kind, 'missing'), coalesce(bad.to_kind, 'missing'));
    END IF;
END
$$;

-- statement: check existing entries against entries_from_side and entries_to_side
DO $$
DECLARE
    bad record;
BEGIN
    SELECT e.id, e.kind, e.account_id, t.id AS transfer_id,
           CASE e.kind WHEN 'credit' THEN 'entries_to_side' ELSE 'entries_from_side' END AS rule
      INTO bad
      FROM entries e JOIN transfers t ON t.id = e.transfer_id
     WHERE e.account_id <> CASE e.kind WHEN 'credit' THEN t.to_account_id ELSE t.from_account_id END;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation', CONSTRAINT = bad.rule, TABLE = 'entries',
            MESSAGE = format('%s: existing %s %s is on account %s, the wrong side of transfer %s; transferd audit names every such row',
                             bad.rule, bad.kind, bad.id, bad.account_id, bad.transfer_id);
    END IF;
END
$$;
