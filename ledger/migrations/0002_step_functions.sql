-- 0002: the saga steps as functions, so that each step is one statement and one round trip to
-- Postgres instead of a transaction of five to seven. A statement outside an explicit transaction
-- is its own transaction, so each step is still all or nothing. Each function begins by locking
-- its transfer's row and reads the status to see whether the step already ran: the status moves
-- forward in the same statement as the money, so "ran" and "status advanced" are one fact, and
-- running a step again has the effect of running it once.
--
-- A step returns a ledger_step_result: code NULL when the step took effect or had already, else a
-- business outcome (the transfer package's error codes) with a message. Anything raised is a
-- transient or internal error and is worth retrying.

CREATE TYPE ledger_step_result AS (code text, message text);

-- ledger_out_of_order is the result of a step asked for in a status that cannot lead to it.
CREATE FUNCTION ledger_out_of_order(step text, t transfers) RETURNS ledger_step_result
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE WHEN t.status IN ('completed', 'failed', 'cancelled')
        THEN ROW('transfer_closed', format('transfer %s is already %s; cannot %s', t.id, t.status, step))::ledger_step_result
        ELSE ROW('internal', format('transfer %s is %s; cannot %s', t.id, t.status, step))::ledger_step_result
    END
$fn$;

-- ledger_post changes an account's balance by amount and its reserved by -release, takes the
-- account's next entry seq and journals the entry, all only if the account exists and, when
-- only_active, is active. It reports whether it posted.
CREATE FUNCTION ledger_post(transfer_id uuid, account_id uuid, kind text, amount bigint, release bigint,
                            only_active boolean) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    after_balance bigint;
    after_seq     bigint;
BEGIN
    UPDATE accounts a
       SET balance = a.balance + ledger_post.amount, reserved = a.reserved - ledger_post.release,
           entry_seq = a.entry_seq + 1, updated_at = now()
     WHERE a.id = ledger_post.account_id AND (NOT only_active OR a.status = 'active')
    RETURNING a.balance, a.entry_seq INTO after_balance, after_seq;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO entries (id, account_id, transfer_id, kind, amount, balance_after, seq)
    VALUES (gen_random_uuid(), ledger_post.account_id, ledger_post.transfer_id, ledger_post.kind,
            ledger_post.amount, after_balance, after_seq);
    RETURN true;
END
$fn$;

-- ledger_finish records a transfer's final status.
CREATE FUNCTION ledger_finish(id uuid, status text, code text, message text) RETURNS void
LANGUAGE sql AS $fn$
    UPDATE transfers t
       SET status = ledger_finish.status, failure_code = NULLIF(code, ''), failure_message = NULLIF(message, ''),
           updated_at = now(), completed_at = now()
     WHERE t.id = ledger_finish.id
$fn$;

-- ledger_reserve holds the transfer's amount on its source, only if the source is active and has
-- that much available (the system account may go negative).
CREATE FUNCTION ledger_reserve(id uuid) RETURNS ledger_step_result
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers;
    a accounts;
BEGIN
    SELECT * INTO t FROM transfers WHERE transfers.id = ledger_reserve.id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ROW('not_found', format('transfer %s not found', ledger_reserve.id))::ledger_step_result;
    END IF;
    IF t.status IN ('reserved', 'debited', 'completed') THEN
        RETURN ROW(NULL, NULL)::ledger_step_result;
    ELSIF t.status <> 'pending' THEN
        RETURN ledger_out_of_order('reserve', t);
    END IF;
    -- One conditional UPDATE takes the account's row lock and checks its status and funds at once.
    UPDATE accounts
       SET reserved = reserved + t.amount, updated_at = now()
     WHERE accounts.id = t.from_account_id AND status = 'active'
       AND (kind = 'system' OR balance - reserved >= t.amount);
    IF NOT FOUND THEN
        SELECT * INTO a FROM accounts WHERE accounts.id = t.from_account_id;
        IF NOT FOUND THEN
            RETURN ROW('account_not_found', format('account %s not found', t.from_account_id))::ledger_step_result;
        ELSIF a.status <> 'active' THEN
            RETURN ROW('account_inactive', format('source account %s is %s', a.id, a.status))::ledger_step_result;
        END IF;
        RETURN ROW('insufficient_funds', format('source account %s has %s available, the transfer needs %s',
                                                a.id, a.balance - a.reserved, t.amount))::ledger_step_result;
    END IF;
    INSERT INTO holds (transfer_id, account_id, amount, status) VALUES (t.id, t.from_account_id, t.amount, 'held');
    UPDATE transfers SET status = 'reserved', updated_at = now() WHERE transfers.id = t.id;
    RETURN ROW(NULL, NULL)::ledger_step_result;
END
$fn$;

-- ledger_debit posts the transfer's hold: the source's balance and reserved both fall by the
-- amount, a debit entry is journaled and the hold becomes posted. A source frozen or closed after
-- the reserve fails with account_inactive, and the hold stays for the release.
CREATE FUNCTION ledger_debit(id uuid) RETURNS ledger_step_result
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers;
BEGIN
    SELECT * INTO t FROM transfers WHERE transfers.id = ledger_debit.id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ROW('not_found', format('transfer %s not found', ledger_debit.id))::ledger_step_result;
    END IF;
    IF t.status IN ('debited', 'completed') THEN
        RETURN ROW(NULL, NULL)::ledger_step_result;
    ELSIF t.status <> 'reserved' THEN
        RETURN ledger_out_of_order('debit', t);
    END IF;
    IF NOT ledger_post(t.id, t.from_account_id, 'debit', -t.amount, t.amount, true) THEN
        RETURN ROW('account_inactive', format('source account %s is no longer active', t.from_account_id))::ledger_step_result;
    END IF;
    UPDATE holds SET status = 'posted', updated_at = now() WHERE transfer_id = t.id AND status = 'held';
    UPDATE transfers SET status = 'debited', updated_at = now() WHERE transfers.id = t.id;
    RETURN ROW(NULL, NULL)::ledger_step_result;
END
$fn$;

-- ledger_credit posts the amount to the destination and completes the transfer, only if the
-- destination is active; otherwise account_inactive, and the saga refunds the source.
CREATE FUNCTION ledger_credit(id uuid) RETURNS ledger_step_result
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers;
    a accounts;
BEGIN
    SELECT * INTO t FROM transfers WHERE transfers.id = ledger_credit.id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ROW('not_found', format('transfer %s not found', ledger_credit.id))::ledger_step_result;
    END IF;
    IF t.status = 'completed' THEN
        RETURN ROW(NULL, NULL)::ledger_step_result;
    ELSIF t.status <> 'debited' THEN
        RETURN ledger_out_of_order('credit', t);
    END IF;
    IF NOT ledger_post(t.id, t.to_account_id, 'credit', t.amount, 0, true) THEN
        SELECT * INTO a FROM accounts WHERE accounts.id = t.to_account_id;
        IF NOT FOUND THEN
            RETURN ROW('account_not_found', format('account %s not found', t.to_account_id))::ledger_step_result;
        END IF;
        RETURN ROW('account_inactive', format('destination account %s is %s', a.id, a.status))::ledger_step_result;
    END IF;
    PERFORM ledger_finish(t.id, 'completed', NULL, NULL);
    RETURN ROW(NULL, NULL)::ledger_step_result;
END
$fn$;

-- ledger_release ends a transfer that was not debited with a failed or cancelled outcome,
-- releasing its hold if it has one, whatever its source's status.
CREATE FUNCTION ledger_release(id uuid, status text, code text, message text) RETURNS ledger_step_result
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers;
BEGIN
    SELECT * INTO t FROM transfers WHERE transfers.id = ledger_release.id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ROW('not_found', format('transfer %s not found', ledger_release.id))::ledger_step_result;
    END IF;
    IF t.status = 'reserved' THEN
        UPDATE accounts SET reserved = reserved - t.amount, updated_at = now() WHERE accounts.id = t.from_account_id;
        UPDATE holds SET status = 'released', updated_at = now() WHERE transfer_id = t.id AND holds.status = 'held';
    ELSIF t.status = 'debited' THEN
        RETURN ROW('internal', format('transfer %s was debited; it needs a refund, not a release', t.id))::ledger_step_result;
    ELSIF t.status <> 'pending' THEN
        RETURN ROW(NULL, NULL)::ledger_step_result;
    END IF;
    PERFORM ledger_finish(t.id, ledger_release.status, code, message);
    RETURN ROW(NULL, NULL)::ledger_step_result;
END
$fn$;

-- ledger_refund ends a debited transfer whose credit failed: a refund entry returns the amount to
-- the source whatever its status (money owed back always lands), and the transfer fails with code.
CREATE FUNCTION ledger_refund(id uuid, code text, message text) RETURNS ledger_step_result
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers;
BEGIN
    SELECT * INTO t FROM transfers WHERE transfers.id = ledger_refund.id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ROW('not_found', format('transfer %s not found', ledger_refund.id))::ledger_step_result;
    END IF;
    IF t.status IN ('pending', 'reserved') THEN
        RETURN ROW('internal', format('transfer %s was not debited; it needs a release, not a refund', t.id))::ledger_step_result;
    ELSIF t.status <> 'debited' THEN
        RETURN ROW(NULL, NULL)::ledger_step_result;
    END IF;
    IF NOT ledger_post(t.id, t.from_account_id, 'refund', t.amount, 0, false) THEN
        RETURN ROW('account_not_found', format('source account %s not found', t.from_account_id))::ledger_step_result;
    END IF;
    PERFORM ledger_finish(t.id, 'failed', code, message);
    RETURN ROW(NULL, NULL)::ledger_step_result;
END
$fn$;

-- ledger_transfer_at_once runs reserve, debit and credit of a pending transfer in one transaction,
-- with the very functions the saga's steps run: the bench's sql baseline, the cost of the money
-- work without Temporal. It locks the transfer, then both accounts in id order, so opposite
-- transfers wait for each other instead of deadlocking. On a business failure nothing it did
-- stays: the steps run in a block whose writes are undone.
CREATE FUNCTION ledger_transfer_at_once(id uuid) RETURNS ledger_step_result
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers;
    r ledger_step_result;
BEGIN
    SELECT * INTO t FROM transfers WHERE transfers.id = ledger_transfer_at_once.id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN ROW('not_found', format('transfer %s not found', ledger_transfer_at_once.id))::ledger_step_result;
    END IF;
    PERFORM 1 FROM accounts WHERE accounts.id IN (t.from_account_id, t.to_account_id) ORDER BY accounts.id FOR UPDATE;
    BEGIN
        r := ledger_reserve(t.id);
        IF r.code IS NULL THEN
            r := ledger_debit(t.id);
        END IF;
        IF r.code IS NULL THEN
            r := ledger_credit(t.id);
        END IF;
        IF r.code IS NOT NULL THEN
            -- Undo the block; r keeps its value, since variables are not rolled back.
            RAISE EXCEPTION USING ERRCODE = 'TD001', MESSAGE = r.message;
        END IF;
    EXCEPTION WHEN SQLSTATE 'TD001' THEN
        RETURN r;
    END;
    RETURN r;
END
$fn$;
