-- 0010: access that can be taken back (api.md, "API keys for services"): API keys, revoked tokens,
-- disabled users, and the audit log.
--
-- Every authenticated request reads its user's current role and status, and its key or token's
-- revocation, from these tables (ledger/access.go), so a change holds from the next request on in
-- every API process: nothing is cached.
--
-- None of it is a new column of users: a new column makes every running process's cached SELECT * of
-- the table fail once per connection (SQLSTATE 0A000; 0004's header), which a rolling upgrade would
-- see as errors. user_access holds a user's status and token generation, one row per user whose
-- access has ever changed; a user without a row is active, at generation 0. The tables are new and
-- have no foreign keys to users, so that creating them locks nothing that the running release
-- uses; the audit checks that what they name exists.

-- A token carries the generation of its user's access when it was issued (claim gen); disabling a
-- user raises the generation, so that every token issued before stays refused after a re-enable.
CREATE TABLE user_access (
    user_id          uuid PRIMARY KEY,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    token_generation bigint NOT NULL DEFAULT 0 CHECK (token_generation >= 0),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- A token revoked by POST /v1/auth/revoke, by its id (claim jti), kept until it would have expired
-- anyway; later revocations delete the rows of expired ones.
CREATE TABLE revoked_tokens (
    token_id   uuid PRIMARY KEY,
    user_id    uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);

-- An API key is known by the SHA-256 of its text only: the key itself is shown once, at its
-- creation. prefix is its first 12 characters ('tfd_' and 8 that identify it), for lists and secret
-- scanners; it is not unique (48 bits), the hash is. Lists are ordered by (txid, created_at, id) under the watermark, as those of 0005.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL,
    name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    prefix       text NOT NULL CHECK (prefix ~ '^tfd_[0-9A-Za-z]{8}$'),
    key_hash     bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    read_only    boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX api_keys_user_list_idx ON api_keys (user_id, txid DESC, created_at DESC, id DESC);

-- The audit log: who (actor_id, and api_key_id when a key was used) did what (action) to what
-- (subject_type, subject_id), written in the transaction of the action. actor_id is NULL for the
-- operator's command line, the Web UI and the system (a hold's expiry). A transfer's cancel and
-- capture are decided by a saga step that does not know who asked: the API records the request
-- (transfer.cancel_requested, transfer.capture_requested) before it sends it, and the events trigger
-- of 0011 records the cancel or capture itself, in the statement that makes it, as the latest
-- requester's.
CREATE TABLE audit_log (
    id           uuid PRIMARY KEY,
    actor_id     uuid,
    api_key_id   uuid,
    action       text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    subject_type text NOT NULL,
    subject_id   uuid NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX audit_log_list_idx ON audit_log (txid DESC, created_at DESC, id DESC);
-- The events trigger of 0011 finds a transfer's latest cancel or capture request through it.
CREATE INDEX audit_log_subject_idx ON audit_log (subject_id, created_at DESC)
    WHERE action IN ('transfer.cancel_requested', 'transfer.capture_requested');
-- One entry per action that happens once to its subject (a transfer's cancel, its capture), however
-- often its request is retried.
CREATE UNIQUE INDEX audit_log_once_idx ON audit_log (action, subject_id)
    WHERE action IN ('transfer.cancelled', 'transfer.captured', 'transfer.created');
