-- transferd:no-transaction
--
-- 0007: holds and scheduled transfers (api.md, "Holds" and "Scheduled transfers").
--
-- A manual transfer (capture_method 'manual') is reserved as any other, then waits in 'reserved'
-- with its funds held until one of three decides its outcome, each one statement that locks the
-- transfer's row, so exactly one of them wins whatever order they arrive in:
--   step_capture(id, amount): debits the captured amount (all of the hold, or part of it) and
--     releases the whole hold in the same statement, then the saga credits the captured amount;
--     refused once the database's clock (clock_timestamp(), read after the row's lock) is at or
--     past hold_expires_at, even if the workflow's timer has not fired yet;
--   step_release(..., 'cancelled', ...): the cancel, as for every transfer not yet debited;
--   step_expire(id): at hold_expires_at, releases the hold and ends the transfer 'cancelled' with
--     failure_code 'hold_expired'; before that time by the database's clock it changes nothing.
-- A scheduled transfer is recorded 'scheduled' and holds nothing; step_due(id) makes it 'pending'
-- at scheduled_for (the workflow's durable timer), and the saga runs from there. It can be
-- cancelled while 'scheduled' (step_release accepts that status).
--
-- The terms of a transfer (capture method, schedule, hold expiry, captured amount) live in
-- transfer_terms, one row per transfer that has any, not in new columns of transfers: a new column
-- of transfers makes every running process's cached SELECT * of it fail once per connection
-- (SQLSTATE 0A000), which a rolling upgrade would see as errors (0004's header says the same). An
-- automatic transfer that runs at once has no row there, and its steps read none.
--
-- Every step answers with the row as before, plus hold_expires_at and captured_amount (two
-- attributes added to step_answer). Binaries of the previous release select the answer's first
-- five attributes by name, so they go on working during a rolling upgrade. A worker of the
-- previous release that picked up a manual transfer would try to debit it: step_debit refuses
-- that (not_capturable), so its saga releases the hold and the transfer fails, and no money moves
-- without a capture. Upgrade the workers before the API offers holds (README, "Upgrading").
--
-- Locks: CREATE TABLE with its foreign key takes SHARE ROW EXCLUSIVE on transfers for a moment;
-- the index of unfinished transfers is built CONCURRENTLY (SHARE UPDATE EXCLUSIVE, no writer stops);
-- the status CHECK is added NOT VALID (ACCESS EXCLUSIVE on transfers, catalog only), validated
-- (SHARE UPDATE EXCLUSIVE, which stops no writer) and the old one dropped (ACCESS EXCLUSIVE,
-- catalog only); the functions are replaced in one transaction that takes no table lock. Each
-- statement is idempotent, as a no-transaction migration's must be.

-- statement: table transfer_terms
CREATE TABLE IF NOT EXISTS transfer_terms (
    transfer_id     uuid PRIMARY KEY REFERENCES transfers (id),
    capture_method  text NOT NULL CHECK (capture_method IN ('automatic', 'manual')),
    -- scheduled_for is when a scheduled transfer's saga runs; NULL runs it at once.
    scheduled_for   timestamptz,
    -- hold_expires_at is when a manual transfer's uncaptured hold is released: given by the client,
    -- or scheduled_for + 7 days, or else set by the reserve to 7 days after the hold is placed.
    hold_expires_at timestamptz,
    -- captured_amount is what the capture debited (all of the amount or part of it); NULL until then.
    captured_amount bigint CHECK (captured_amount > 0),
    CONSTRAINT transfer_terms_manual_only CHECK (capture_method = 'manual' OR (hold_expires_at IS NULL AND captured_amount IS NULL)),
    CONSTRAINT transfer_terms_needed CHECK (capture_method = 'manual' OR scheduled_for IS NOT NULL),
    CONSTRAINT transfer_terms_expiry_after_schedule CHECK (scheduled_for IS NULL OR hold_expires_at IS NULL OR hold_expires_at > scheduled_for)
);

-- statement: add transfers_status_known
DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'transfers_status_known' AND conrelid = 'transfers'::regclass) THEN
        ALTER TABLE transfers ADD CONSTRAINT transfers_status_known
            CHECK (status IN ('scheduled', 'pending', 'reserved', 'debited', 'completed', 'failed', 'cancelled')) NOT VALID;
    END IF;
END
$do$;

-- statement: validate transfers_status_known
ALTER TABLE transfers VALIDATE CONSTRAINT transfers_status_known;

-- statement: drop transfers_status_check
ALTER TABLE transfers DROP CONSTRAINT IF EXISTS transfers_status_check;

-- statement: set aside an invalid transfers_unfinished_idx
-- IF NOT EXISTS would take an index that a failed build left invalid for built; renaming it clears
-- the name for the build.
DO $do$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['transfers_unfinished_idx', 'transfers_pending_idx', 'transfers_scheduled_idx'] LOOP
        IF EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass(name) AND NOT indisvalid) THEN
            EXECUTE format('ALTER INDEX %I RENAME TO %I', name, name || '_invalid');
        END IF;
    END LOOP;
END
$do$;

-- statement: drop transfers_unfinished_idx_invalid
DROP INDEX CONCURRENTLY IF EXISTS transfers_unfinished_idx_invalid;

-- statement: drop transfers_pending_idx_invalid
DROP INDEX CONCURRENTLY IF EXISTS transfers_pending_idx_invalid;

-- statement: drop transfers_scheduled_idx_invalid
DROP INDEX CONCURRENTLY IF EXISTS transfers_scheduled_idx_invalid;

-- statement: build transfers_unfinished_idx
-- The transfers that are not final, scheduled ones included, for the reconciler and the audit
-- (transfers_in_flight_idx of 0001 leaves scheduled ones out; it stays for binaries of the
-- previous release).
CREATE INDEX CONCURRENTLY IF NOT EXISTS transfers_unfinished_idx ON transfers (created_at, id)
    WHERE status IN ('scheduled', 'pending', 'reserved', 'debited');

-- statement: build transfers_pending_idx
-- The pending transfers, for the reconciler's lost starts: a hold waits in reserved for days, and
-- the sweep must not read every hold to find the few transfers that are pending.
CREATE INDEX CONCURRENTLY IF NOT EXISTS transfers_pending_idx ON transfers (created_at, id) WHERE status = 'pending';

-- statement: build transfers_scheduled_idx
-- The scheduled transfers, for the reconciler's overdue ones (a lost start shows when its time has
-- passed and it is still scheduled).
CREATE INDEX CONCURRENTLY IF NOT EXISTS transfers_scheduled_idx ON transfers (created_at, id) WHERE status = 'scheduled';

-- statement: step functions
DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'step_answer'::regclass AND attname = 'hold_expires_at') THEN
        ALTER TYPE step_answer ADD ATTRIBUTE hold_expires_at timestamptz, ADD ATTRIBUTE captured_amount bigint;
    END IF;
END
$do$;

-- step_answer_of answers with the row id as it is now (its terms included), and the refusal, if any.
CREATE OR REPLACE FUNCTION step_answer_of(id uuid, code text, message text) RETURNS step_answer
LANGUAGE sql AS $fn$
    SELECT step_answer_of.code, step_answer_of.message, t.status, t.failure_code, t.failure_message,
           x.hold_expires_at, x.captured_amount
      FROM transfers t LEFT JOIN transfer_terms x ON x.transfer_id = t.id
     WHERE t.id = step_answer_of.id
$fn$;

CREATE OR REPLACE FUNCTION step_missing(id uuid) RETURNS step_answer
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT ROW('not_found', format('transfer %s not found', id), NULL, NULL, NULL, NULL, NULL)::step_answer
$fn$;

-- step_terms returns the transfer's terms, or a row of NULLs when it has none (automatic, at once).
CREATE OR REPLACE FUNCTION step_terms(id uuid) RETURNS transfer_terms
LANGUAGE sql STABLE AS $fn$
    SELECT * FROM transfer_terms WHERE transfer_id = step_terms.id
$fn$;

-- step_hold_expired reports whether a manual transfer's hold has expired by the database's clock:
-- from that moment the expiry has won, whether or not step_expire has run yet.
CREATE OR REPLACE FUNCTION step_hold_expired(x transfer_terms) RETURNS boolean
LANGUAGE sql VOLATILE AS $fn$
    SELECT x.capture_method = 'manual' AND x.captured_amount IS NULL AND x.hold_expires_at IS NOT NULL
           AND clock_timestamp() >= x.hold_expires_at
$fn$;

-- step_end_expired ends a transfer whose hold expired, releasing the hold if it holds one.
CREATE OR REPLACE FUNCTION step_end_expired(t transfers, x transfer_terms) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF t.status = 'reserved' THEN
        UPDATE accounts SET reserved = reserved - t.amount, updated_at = now() WHERE accounts.id = t.from_account_id;
        UPDATE holds SET status = 'released', updated_at = now() WHERE transfer_id = t.id AND holds.status = 'held';
    END IF;
    PERFORM ledger_finish(t.id, 'cancelled', 'hold_expired',
                          format('the hold expired at %s', to_char(x.hold_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')));
END
$fn$;

-- step_amount is what a transfer's debit, credit and refund post: its captured amount once
-- captured, else its amount.
CREATE OR REPLACE FUNCTION step_amount(t transfers) RETURNS bigint
LANGUAGE sql STABLE AS $fn$
    SELECT coalesce((SELECT captured_amount FROM transfer_terms WHERE transfer_id = t.id), t.amount)
$fn$;

-- step_reserve holds the amount on the source of a pending transfer, only if the source is active
-- and has that much available (the system account may go negative). A manual transfer's hold gets
-- its expiry: the one asked for, or 7 days from now; one whose expiry has already passed (a
-- backlog) ends expired and holds nothing.
CREATE OR REPLACE FUNCTION step_reserve(id uuid) RETURNS step_answer
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers := step_lock(id);
    a accounts;
    x transfer_terms;
BEGIN
    IF t.id IS NULL THEN
        RETURN step_missing(id);
    ELSIF t.status <> 'pending' THEN
        RETURN step_answer_of(t.id, NULL, NULL);
    END IF;
    x := step_terms(t.id);
    IF step_hold_expired(x) THEN
        -- The hold's expiry passed before it could be placed (a backlog): it expires, holding nothing.
        PERFORM step_end_expired(t, x);
        RETURN step_answer_of(t.id, NULL, NULL);
    END IF;
    UPDATE accounts
       SET reserved = reserved + t.amount, updated_at = now()
     WHERE accounts.id = t.from_account_id AND status = 'active'
       AND (kind = 'system' OR balance - reserved >= t.amount);
    IF NOT FOUND THEN
        SELECT * INTO a FROM accounts WHERE accounts.id = t.from_account_id;
        IF NOT FOUND THEN
            RETURN step_answer_of(t.id, 'account_not_found', format('account %s not found', t.from_account_id));
        ELSIF a.status <> 'active' THEN
            RETURN step_answer_of(t.id, 'account_inactive', format('source account %s is %s', a.id, a.status));
        END IF;
        RETURN step_answer_of(t.id, 'insufficient_funds', format('source account %s has %s available, the transfer needs %s',
                                                                  a.id, a.balance - a.reserved, t.amount));
    END IF;
    INSERT INTO holds (transfer_id, account_id, amount, status) VALUES (t.id, t.from_account_id, t.amount, 'held');
    UPDATE transfer_terms tt SET hold_expires_at = coalesce(tt.hold_expires_at, now() + interval '7 days')
     WHERE tt.transfer_id = t.id AND tt.capture_method = 'manual';
    UPDATE transfers SET status = 'reserved', updated_at = now() WHERE transfers.id = t.id;
    RETURN step_answer_of(t.id, NULL, NULL);
END
$fn$;

-- step_debit posts a reserved transfer's hold as a debit of its source. A source frozen or closed
-- after the reserve refuses it with account_inactive, and the hold stays for the release. A manual
-- transfer is debited only by its capture: asked to debit one (a worker of an earlier release
-- running a manual transfer's saga), it refuses with not_capturable and the saga releases it.
CREATE OR REPLACE FUNCTION step_debit(id uuid) RETURNS step_answer
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers := step_lock(id);
BEGIN
    IF t.id IS NULL THEN
        RETURN step_missing(id);
    ELSIF t.status <> 'reserved' THEN
        RETURN step_answer_of(t.id, NULL, NULL);
    ELSIF (step_terms(t.id)).capture_method = 'manual' THEN
        RETURN step_answer_of(t.id, 'not_capturable', format('transfer %s is captured manually, not debited by its saga', t.id));
    END IF;
    IF NOT ledger_post(t.id, t.from_account_id, 'debit', -t.amount, t.amount, true) THEN
        RETURN step_answer_of(t.id, 'account_inactive', format('source account %s is no longer active', t.from_account_id));
    END IF;
    UPDATE holds SET status = 'posted', updated_at = now() WHERE transfer_id = t.id AND status = 'held';
    UPDATE transfers SET status = 'debited', updated_at = now() WHERE transfers.id = t.id;
    RETURN step_answer_of(t.id, NULL, NULL);
END
$fn$;

-- step_credit posts a debited transfer's amount (its captured amount, once captured) to its
-- destination and completes it, only if the destination is active; otherwise account_inactive (or
-- account_not_found), and the saga refunds.
CREATE OR REPLACE FUNCTION step_credit(id uuid) RETURNS step_answer
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers := step_lock(id);
    a accounts;
BEGIN
    IF t.id IS NULL THEN
        RETURN step_missing(id);
    ELSIF t.status <> 'debited' THEN
        RETURN step_answer_of(t.id, NULL, NULL);
    END IF;
    IF NOT ledger_post(t.id, t.to_account_id, 'credit', step_amount(t), 0, true) THEN
        SELECT * INTO a FROM accounts WHERE accounts.id = t.to_account_id;
        IF NOT FOUND THEN
            RETURN step_answer_of(t.id, 'account_not_found', format('account %s not found', t.to_account_id));
        END IF;
        RETURN step_answer_of(t.id, 'account_inactive', format('destination account %s is %s', a.id, a.status));
    END IF;
    PERFORM ledger_finish(t.id, 'completed', NULL, NULL);
    RETURN step_answer_of(t.id, NULL, NULL);
END
$fn$;

-- step_release is "release unless debited": a transfer that was not debited (scheduled, pending or
-- reserved) ends with the outcome, its hold released if it has one, whatever its source's status.
-- A transfer that was debited (or captured), or has ended, is left as it is: the answer says so,
-- and the saga goes on to the credit or ends as the row says. This is the statement that decides
-- whether a cancel wins. A held transfer whose expiry the database's clock has reached ends
-- expired instead, so a cancel after the expiry loses to it as a capture does.
CREATE OR REPLACE FUNCTION step_release(id uuid, status text, code text, message text) RETURNS step_answer
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers := step_lock(id);
    x transfer_terms;
BEGIN
    IF t.id IS NULL THEN
        RETURN step_missing(id);
    ELSIF step_release.status NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION 'step_release: % is not an outcome of a release', step_release.status USING ERRCODE = '22023';
    ELSIF t.status NOT IN ('scheduled', 'pending', 'reserved') THEN
        RETURN step_answer_of(t.id, NULL, NULL);
    END IF;
    x := step_terms(t.id);
    IF step_hold_expired(x) THEN
        -- The hold's expiry, by the database's clock, came before this release (held, or still
        -- pending or scheduled in a backlog): the expiry wins.
        PERFORM step_end_expired(t, x);
        RETURN step_answer_of(t.id, NULL, NULL);
    END IF;
    IF t.status = 'reserved' THEN
        UPDATE accounts SET reserved = reserved - t.amount, updated_at = now() WHERE accounts.id = t.from_account_id;
        UPDATE holds SET status = 'released', updated_at = now() WHERE transfer_id = t.id AND holds.status = 'held';
    END IF;
    PERFORM ledger_finish(t.id, step_release.status, code, message);
    RETURN step_answer_of(t.id, NULL, NULL);
END
$fn$;

-- step_refund ends a debited transfer whose credit was refused: a refund entry returns what was
-- debited (the captured amount, once captured) to the source whatever its status (money owed back
-- always lands), and the transfer fails with the code. Any other status is left as it is and
-- answered.
CREATE OR REPLACE FUNCTION step_refund(id uuid, code text, message text) RETURNS step_answer
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers := step_lock(id);
BEGIN
    IF t.id IS NULL THEN
        RETURN step_missing(id);
    ELSIF t.status <> 'debited' THEN
        RETURN step_answer_of(t.id, NULL, NULL);
    END IF;
    IF NOT ledger_post(t.id, t.from_account_id, 'refund', step_amount(t), 0, false) THEN
        -- The source exists (a foreign key says so); not posting means the database changed under us.
        RAISE EXCEPTION 'step_refund: could not post the refund of transfer %', t.id;
    END IF;
    PERFORM ledger_finish(t.id, 'failed', code, message);
    RETURN step_answer_of(t.id, NULL, NULL);
END
$fn$;

-- step_capture captures a manual transfer's hold: amount (NULL for all of it) is debited from the
-- source and the whole hold released in one statement, and the transfer is 'debited' (the saga
-- credits the captured amount next). Capturing again with the amount already captured answers
-- the row with no refusal; every other capture that cannot be is refused, the row unchanged:
-- not_capturable (automatic, not yet held, captured with another amount, ended, or the hold's
-- expiry reached by the database's clock), capture_exceeds_hold (more than the hold),
-- account_inactive (the source is frozen or closed; the hold stays until a cancel or its expiry).
CREATE OR REPLACE FUNCTION step_capture(id uuid, amount bigint) RETURNS step_answer
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers := step_lock(id);
    x transfer_terms;
    want bigint;
BEGIN
    IF t.id IS NULL THEN
        RETURN step_missing(id);
    END IF;
    x := step_terms(t.id);
    want := coalesce(step_capture.amount, t.amount);
    IF x.capture_method IS DISTINCT FROM 'manual' THEN
        RETURN step_answer_of(t.id, 'not_capturable', format('transfer %s is captured automatically', t.id));
    ELSIF x.captured_amount IS NOT NULL THEN
        IF x.captured_amount = want THEN
            RETURN step_answer_of(t.id, NULL, NULL);
        END IF;
        RETURN step_answer_of(t.id, 'not_capturable', format('transfer %s was already captured for %s', t.id, x.captured_amount));
    ELSIF t.status <> 'reserved' THEN
        RETURN step_answer_of(t.id, 'not_capturable', CASE
            WHEN t.status IN ('scheduled', 'pending') THEN format('transfer %s holds nothing yet', t.id)
            WHEN t.failure_code = 'hold_expired' THEN format('the hold of transfer %s expired at %s', t.id, x.hold_expires_at)
            ELSE format('transfer %s is %s', t.id, t.status) END);
    ELSIF want < 1 THEN
        RETURN step_answer_of(t.id, 'invalid_input', 'a capture is of at least 1');
    ELSIF want > t.amount THEN
        RETURN step_answer_of(t.id, 'capture_exceeds_hold', format('the hold is of %s, the capture asks for %s', t.amount, want));
    ELSIF step_hold_expired(x) THEN
        RETURN step_answer_of(t.id, 'not_capturable', format('the hold of transfer %s expired at %s', t.id, x.hold_expires_at));
    END IF;
    IF NOT ledger_post(t.id, t.from_account_id, 'debit', -want, t.amount, true) THEN
        RETURN step_answer_of(t.id, 'account_inactive', format('source account %s is no longer active', t.from_account_id));
    END IF;
    UPDATE holds SET status = 'posted', updated_at = now() WHERE transfer_id = t.id AND status = 'held';
    UPDATE transfer_terms SET captured_amount = want WHERE transfer_id = t.id;
    UPDATE transfers SET status = 'debited', updated_at = now() WHERE transfers.id = t.id;
    RETURN step_answer_of(t.id, NULL, NULL);
END
$fn$;

-- step_expire releases a manual transfer's uncaptured hold once the database's clock has reached
-- hold_expires_at, and ends it 'cancelled' with failure_code 'hold_expired'. Earlier, or for any
-- other transfer or status, it changes nothing and answers the row (the workflow's timer may fire
-- a moment before the database's clock agrees).
CREATE OR REPLACE FUNCTION step_expire(id uuid) RETURNS step_answer
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers := step_lock(id);
    x transfer_terms;
BEGIN
    IF t.id IS NULL THEN
        RETURN step_missing(id);
    END IF;
    x := step_terms(t.id);
    IF t.status <> 'reserved' OR NOT step_hold_expired(x) THEN
        RETURN step_answer_of(t.id, NULL, NULL);
    END IF;
    PERFORM step_end_expired(t, x);
    RETURN step_answer_of(t.id, NULL, NULL);
END
$fn$;

-- step_due starts a scheduled transfer's saga once the database's clock has reached its
-- scheduled_for: 'scheduled' becomes 'pending', and the reserve follows. Earlier, and in any other
-- status (a cancel may have won), the row is answered as it is.
CREATE OR REPLACE FUNCTION step_due(id uuid) RETURNS step_answer
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers := step_lock(id);
BEGIN
    IF t.id IS NULL THEN
        RETURN step_missing(id);
    ELSIF t.status = 'scheduled' AND clock_timestamp() >= coalesce((step_terms(t.id)).scheduled_for, '-infinity') THEN
        UPDATE transfers SET status = 'pending', updated_at = now() WHERE transfers.id = t.id;
    END IF;
    RETURN step_answer_of(t.id, NULL, NULL);
END
$fn$;
