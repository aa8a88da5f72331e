-- 0008: the API's rate limits (sign-in, sign-up) keep their token buckets here, so that every API
-- process on the database counts against the same limit, and a restart forgets nothing.
--
-- A bucket is one row: the time at which it will be full again (in the past for a full one). Taking a
-- token pushes that time one refill interval further; a bucket has a token while taking one leaves
-- it no more than a window from full. A full bucket says nothing that a missing row does not, so a
-- row is only ever written by an attempt that took a token, and rows that are full again are
-- deleted by later attempts: the table holds about as many rows as the limits took tokens for in
-- their last window, whatever clients send. Nothing is ever forgotten early: an attacker cannot push
-- a victim's bucket out to reset it.
CREATE TABLE rate_limit_buckets (
    key     text PRIMARY KEY,
    full_at timestamptz NOT NULL
);
CREATE INDEX rate_limit_buckets_full_at_idx ON rate_limit_buckets (full_at);

-- rate_limit_wait is how long, in microseconds, until a bucket that is full at full_at holds a
-- token at time t, for a refill interval of interval_us and a window of window_us; 0 when it does.
CREATE FUNCTION rate_limit_wait(full_at timestamptz, t timestamptz, interval_us bigint, window_us bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE WHEN full_at <= t THEN 0
        ELSE greatest((extract(epoch FROM full_at - t) * 1000000)::bigint - window_us + interval_us, 0)
    END
$fn$;

-- rate_limit_take takes one token from each of the buckets keys (with the refill intervals and
-- windows at the same positions, in microseconds) at time at_time (now() when NULL), or none when
-- any of them has none. It returns 0 when it took them, else the microseconds until every one of
-- them holds a token again. It is one statement, so the attempt is counted whole or not at all.
--
-- A refused attempt, the cheap one an attacker repeats, first reads the existing rows without
-- locking or writing anything. An attempt that may pass locks its buckets in key order (so two
-- attempts sharing buckets queue rather than deadlock), creating the rows of new keys, decides on
-- what it locked, and either takes its tokens or deletes the rows it created. Each attempt that takes
-- tokens also deletes a few rows that are full again, so the table stays bounded without a sweeper.
CREATE FUNCTION rate_limit_take(keys text[], interval_us bigint[], window_us bigint[], at_time timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    t        timestamptz := coalesce(at_time, now());
    wait_us  bigint;
    b        record;
    full_till timestamptz;
    created  text[] := '{}';
BEGIN
    SELECT coalesce(max(rate_limit_wait(r.full_at, t, k.iv, k.win)), 0) INTO wait_us
      FROM unnest(keys, interval_us, window_us) AS k (key, iv, win)
      JOIN rate_limit_buckets r ON r.key = k.key;
    IF wait_us > 0 THEN
        RETURN wait_us;
    END IF;
    FOR b IN SELECT * FROM unnest(keys, interval_us, window_us) AS k (key, iv, win) ORDER BY k.key LOOP
        LOOP
            SELECT r.full_at INTO full_till FROM rate_limit_buckets r WHERE r.key = b.key FOR UPDATE;
            EXIT WHEN FOUND;
            -- A concurrent attempt creating the same key makes this insert wait for its end: then
            -- the row is there to lock (it took its token), or gone (it was refused).
            INSERT INTO rate_limit_buckets (key, full_at) VALUES (b.key, t) ON CONFLICT DO NOTHING;
            IF FOUND THEN
                created := created || b.key;
                full_till := t;
                EXIT;
            END IF;
        END LOOP;
        wait_us := greatest(wait_us, rate_limit_wait(full_till, t, b.iv, b.win));
    END LOOP;
    IF wait_us > 0 THEN
        DELETE FROM rate_limit_buckets r WHERE r.key = ANY (created);
        RETURN wait_us;
    END IF;
    UPDATE rate_limit_buckets r SET full_at = greatest(r.full_at, t) + k.iv * interval '1 microsecond'
      FROM unnest(keys, interval_us, window_us) AS k (key, iv, win)
     WHERE r.key = k.key;
    -- Twice as many rows as this attempt may have created, so that rows that are full again are
    -- deleted faster than rows are created.
    DELETE FROM rate_limit_buckets r WHERE r.key IN (
        SELECT o.key FROM rate_limit_buckets o WHERE o.full_at < t
         ORDER BY o.full_at LIMIT 2 * cardinality(keys) FOR UPDATE SKIP LOCKED);
    RETURN 0;
END
$fn$;
