-- 0006: the saga steps that keep failing. A step's transient errors are retried for as long as it
-- takes, which is right for a lost connection and wrong for an error that can never succeed (a
-- CHECK violation on data a migration or an operator changed): retried for ever, it alarms nobody.
-- The worker records each failed attempt here (one row per transfer and step), and `transferd
-- audit` reports the transfers whose step has been failing for longer than a threshold with no
-- progress since. A success writes nothing: a row is stale as soon as its transfer has moved on
-- (updated_at after last_failed_at), and the reconciler's sweeps delete the stale rows, so the
-- table stays the size of what is failing now.
CREATE TABLE step_failures (
    transfer_id     uuid NOT NULL REFERENCES transfers (id),
    step            text NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    attempts        bigint NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    -- permanent says the last error was of a kind that retrying cannot fix (a constraint violation,
    -- bad data, an error in a statement), as opposed to a lost connection or a deadlock.
    permanent       boolean NOT NULL,
    last_error      text NOT NULL,
    PRIMARY KEY (transfer_id, step)
);
