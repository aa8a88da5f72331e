-- 0003: the saga's steps answer with where the transfer stands, so the ledger decides and the
-- workflow follows. A workflow task can be lost after its local activities committed, and the
-- replay then runs with the history behind the ledger: a decision made from workflow memory
-- ("not debited yet, so this cancel wins") can be wrong. Each step_* function locks the transfer's
-- row, takes effect only from the status that leads to it, and in every case answers with the row
-- as it is after the statement: status, failure code and message. A step asked for in any other
-- status changes nothing and says where the transfer is, so the workflow goes on from there.
--
-- The ledger_* functions of 0002 stay for binaries of the previous release during a rolling
-- upgrade and for the bench's one-transaction baseline; nothing of this release calls their
-- per-step forms.

-- step_answer: code is NULL unless the step was refused for a business reason (the row is then as
-- it was); status, failure_code and failure_message are the row after the statement.
CREATE TYPE step_answer AS (code text, message text, status text, failure_code text, failure_message text);

-- step_lock locks and returns the transfer's row, or NULL when there is none.
CREATE FUNCTION step_lock(id uuid) RETURNS transfers
LANGUAGE sql AS $fn$
    SELECT * FROM transfers WHERE transfers.id = step_lock.id FOR UPDATE
$fn$;

-- step_answer_of answers with the row id as it is now, and the refusal, if any.
CREATE FUNCTION step_answer_of(id uuid, code text, message text) RETURNS step_answer
LANGUAGE sql AS $fn$
    SELECT step_answer_of.code, step_answer_of.message, t.status, t.failure_code, t.failure_message
      FROM transfers t WHERE t.id = step_answer_of.id
$fn$;

-- step_missing is the answer for a transfer that does not exist.
CREATE FUNCTION step_missing(id uuid) RETURNS step_answer
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT ROW('not_found', format('transfer %s not found', id), NULL, NULL, NULL)::step_answer
$fn$;

-- step_reserve holds the amount on the source of a pending transfer, only if the source is active
-- and has that much available (the system account may go negative).
CREATE FUNCTION step_reserve(id uuid) RETURNS step_answer
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers := step_lock(id);
    a accounts;
BEGIN
    IF t.id IS NULL THEN
        RETURN step_missing(id);
    ELSIF t.status <> 'pending' THEN
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
    UPDATE transfers SET status = 'reserved', updated_at = now() WHERE transfers.id = t.id;
    RETURN step_answer_of(t.id, NULL, NULL);
END
$fn$;

-- step_debit posts a reserved transfer's hold as a debit of its source. A source frozen or closed
-- after the reserve refuses it with account_inactive, and the hold stays for the release.
CREATE FUNCTION step_debit(id uuid) RETURNS step_answer
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers := step_lock(id);
BEGIN
    IF t.id IS NULL THEN
        RETURN step_missing(id);
    ELSIF t.status <> 'reserved' THEN
        RETURN step_answer_of(t.id, NULL, NULL);
    END IF;
    IF NOT ledger_post(t.id, t.from_account_id, 'debit', -t.amount, t.amount, true) THEN
        RETURN step_answer_of(t.id, 'account_inactive', format('source account %s is no longer active', t.from_account_id));
    END IF;
    UPDATE holds SET status = 'posted', updated_at = now() WHERE transfer_id = t.id AND status = 'held';
    UPDATE transfers SET status = 'debited', updated_at = now() WHERE transfers.id = t.id;
    RETURN step_answer_of(t.id, NULL, NULL);
END
$fn$;

-- step_credit posts a debited transfer's amount to its destination and completes it, only if the
-- destination is active; otherwise account_inactive (or account_not_found), and the saga refunds.
CREATE FUNCTION step_credit(id uuid) RETURNS step_answer
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
    IF NOT ledger_post(t.id, t.to_account_id, 'credit', t.amount, 0, true) THEN
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

-- step_release is "release unless debited": a transfer that was not debited (pending or reserved)
-- ends with the outcome, its hold released if it has one, whatever its source's status. A transfer
-- that was debited, or has ended, is left as it is: the answer says so, and the saga goes on to the
-- credit or ends as the row says. This is the statement that decides whether a cancel wins.
CREATE FUNCTION step_release(id uuid, status text, code text, message text) RETURNS step_answer
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers := step_lock(id);
BEGIN
    IF t.id IS NULL THEN
        RETURN step_missing(id);
    ELSIF step_release.status NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION 'step_release: % is not an outcome of a release', step_release.status USING ERRCODE = '22023';
    ELSIF t.status NOT IN ('pending', 'reserved') THEN
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

-- step_refund ends a debited transfer whose credit was refused: a refund entry returns the amount
-- to the source whatever its status (money owed back always lands), and the transfer fails with
-- the code. Any other status is left as it is and answered.
CREATE FUNCTION step_refund(id uuid, code text, message text) RETURNS step_answer
LANGUAGE plpgsql AS $fn$
DECLARE
    t transfers := step_lock(id);
BEGIN
    IF t.id IS NULL THEN
        RETURN step_missing(id);
    ELSIF t.status <> 'debited' THEN
        RETURN step_answer_of(t.id, NULL, NULL);
    END IF;
    IF NOT ledger_post(t.id, t.from_account_id, 'refund', t.amount, 0, false) THEN
        -- The source exists (a foreign key says so); not posting means the database changed under us.
        RAISE EXCEPTION 'step_refund: could not post the refund of transfer %', t.id;
    END IF;
    PERFORM ledger_finish(t.id, 'failed', code, message);
    RETURN step_answer_of(t.id, NULL, NULL);
END
$fn$;
