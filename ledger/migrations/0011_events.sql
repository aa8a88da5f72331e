-- transferd:no-transaction
--
-- 0011: events and webhooks (api.md, "Events and webhooks").
--
-- An event records one change of a transfer's status that a type names: its creation
-- (transfer.created), a manual transfer's funds held (transfer.held: 'reserved' with capture method
-- manual), and its end (transfer.completed, transfer.failed, transfer.cancelled). A trigger on
-- transfers writes it, so it is part of the very statement that makes the change, whichever step
-- function (or binary of any release) runs it: no change without its event, no event without its
-- change. data is the transfer as it was then (its row and its terms), which the API shows through
-- the same view as the transfer itself, so a payee sees no more of it than of the transfer.
-- Transfers created before this migration have no events (they are exempt, not backfilled): their
-- past is not known change by change.
--
-- The same trigger enqueues the event's deliveries: one row of webhook_deliveries per enabled
-- endpoint that subscribes to its type and whose owner may see it (an admin's sees every event), in
-- the same transaction, so a delivery can never be lost between the change and the queue. The worker
-- starts a delivery workflow for each (webhooks/), which re-checks the endpoint and its owner before
-- every attempt.
--
-- Locks. The migration runs statement by statement under lock_timeout (ledger/migrate.go). The new
-- tables lock nothing else; the trigger's creation takes transfers' SHARE ROW EXCLUSIVE lock for a
-- moment (it waits for running writes and holds new ones back until it is in the catalog), and is
-- retried whole if it times out. Every statement can run again.

-- statement: events
CREATE TABLE IF NOT EXISTS events (
    id              uuid PRIMARY KEY,
    type            text NOT NULL CHECK (type IN ('transfer.created', 'transfer.held', 'transfer.completed',
                                                  'transfer.failed', 'transfer.cancelled')),
    transfer_id     uuid NOT NULL,
    from_account_id uuid NOT NULL,
    to_account_id   uuid NOT NULL,
    data            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    txid            xid8 NOT NULL DEFAULT pg_current_xact_id()
);

-- statement: events indexes
CREATE INDEX IF NOT EXISTS events_list_idx ON events (txid DESC, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS events_from_list_idx ON events (from_account_id, txid DESC, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS events_to_list_idx ON events (to_account_id, txid DESC, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS events_transfer_idx ON events (transfer_id);

-- statement: webhook_endpoints
-- secret and previous_secret are the signing keys' bytes (what follows whsec_, decoded); the service
-- must keep them to sign. previous_secret keeps signing beside the new one until
-- previous_expires_at, 24 hours after a rotation. failing_since is the time of the first failed
-- attempt since the last 2xx (NULL while the endpoint answers), and last_failure_at the latest: a
-- streak lasting five days disables the endpoint, and a failure a day after the last one starts a
-- new streak (the endpoint was not failing in between, only idle).
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id                  uuid PRIMARY KEY,
    user_id             uuid NOT NULL,
    url                 text NOT NULL CHECK (char_length(url) BETWEEN 1 AND 2048),
    event_types         text[] NOT NULL CHECK (cardinality(event_types) >= 1),
    description         text NOT NULL DEFAULT '',
    status              text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    disabled_reason     text,
    secret              bytea NOT NULL CHECK (octet_length(secret) BETWEEN 24 AND 64),
    previous_secret     bytea,
    previous_expires_at timestamptz,
    failing_since       timestamptz,
    last_failure_at     timestamptz,
    last_success_at     timestamptz,
    deleted_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    txid                xid8 NOT NULL DEFAULT pg_current_xact_id()
);

-- statement: webhook_endpoints indexes
CREATE INDEX IF NOT EXISTS webhook_endpoints_user_list_idx ON webhook_endpoints (user_id, txid DESC, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS webhook_endpoints_enabled_idx ON webhook_endpoints (user_id) WHERE status = 'enabled' AND deleted_at IS NULL;

-- statement: webhook_deliveries
-- A delivery is one event to one endpoint: enqueued by the trigger (or by a resend), started as a
-- workflow by the worker (started_at), and ended delivered or failed.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id           uuid PRIMARY KEY,
    endpoint_id  uuid NOT NULL,
    event_id     uuid NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts     int NOT NULL DEFAULT 0,
    started_at   timestamptz,
    next_attempt_at timestamptz,
    ended_at     timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- statement: webhook_deliveries indexes
CREATE INDEX IF NOT EXISTS webhook_deliveries_unstarted_idx ON webhook_deliveries (created_at) WHERE started_at IS NULL;
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending_idx ON webhook_deliveries (endpoint_id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_event_idx ON webhook_deliveries (event_id);
-- The deliveries whose attempt is due, for the dispatcher's search for workflows that
-- closed without ending their delivery.
CREATE INDEX IF NOT EXISTS webhook_deliveries_due_idx ON webhook_deliveries ((coalesce(next_attempt_at, started_at)), id)
    WHERE status = 'pending' AND started_at IS NOT NULL;

-- statement: webhook_attempts
-- The delivery log: every attempt, its answer or error, and when the next one is due.
CREATE TABLE IF NOT EXISTS webhook_attempts (
    id            uuid PRIMARY KEY,
    delivery_id   uuid NOT NULL,
    endpoint_id   uuid NOT NULL,
    event_id      uuid NOT NULL,
    attempt       int NOT NULL,
    response_status int,
    error         text,
    duration_ms   int NOT NULL,
    next_retry_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    txid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (delivery_id, attempt)
);

-- statement: webhook_attempts index
CREATE INDEX IF NOT EXISTS webhook_attempts_list_idx ON webhook_attempts (endpoint_id, txid DESC, created_at DESC, id DESC);

-- statement: users_admin_idx
-- The trigger below finds the admins, whose endpoints see every event, through this index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_admin_idx ON users (id) WHERE role = 'admin';

-- statement: transfer_event
-- A transfer is inserted 'pending' or 'scheduled' by the API; one inserted already final (the
-- bench's seed of a large journal) gets its end event too, so that every final transfer has one.
CREATE OR REPLACE FUNCTION transfer_event() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    types  text[] := '{}';
    typ    text;
    terms  transfer_terms%ROWTYPE;
    ev     uuid;
    snap   jsonb;
    act    text;
    who    record;
BEGIN
    SELECT * INTO terms FROM transfer_terms x WHERE x.transfer_id = NEW.id;
    -- The audit log's cancels and captures, in the statement that makes them, as the latest
    -- requester's (0010); a hold's expiry, and a cancel with no request through the API (the Web UI),
    -- are nobody's. step_capture sets the captured amount before the status, so it is read here.
    IF TG_OP = 'UPDATE' AND NEW.status IS DISTINCT FROM OLD.status
       AND (NEW.status = 'cancelled' OR (NEW.status = 'debited' AND terms.capture_method = 'manual')) THEN
        act := CASE WHEN NEW.status = 'cancelled' THEN 'transfer.cancelled' ELSE 'transfer.captured' END;
        SELECT l.actor_id, l.api_key_id INTO who FROM audit_log l
         WHERE l.subject_id = NEW.id
           AND l.action = CASE WHEN NEW.status = 'cancelled' THEN 'transfer.cancel_requested' ELSE 'transfer.capture_requested' END
           AND coalesce(NEW.failure_code, '') <> 'hold_expired'
           -- A capture is the requester's who asked for the amount captured (0: all of the hold):
           -- of two captures racing, the one refused is not credited with the other's.
           AND (NEW.status = 'cancelled'
                OR coalesce(nullif((l.detail->>'amount')::bigint, 0), NEW.amount) = terms.captured_amount)
         ORDER BY l.created_at DESC LIMIT 1;
        INSERT INTO audit_log (id, actor_id, api_key_id, action, subject_type, subject_id, detail)
        VALUES (gen_random_uuid(), who.actor_id, who.api_key_id, act, 'transfer', NEW.id,
                CASE WHEN NEW.status = 'cancelled' THEN jsonb_build_object('failure_code', NEW.failure_code)
                     ELSE jsonb_build_object('amount', terms.captured_amount, 'currency', NEW.currency) END)
        ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP = 'INSERT' THEN
        types := ARRAY['transfer.created'];
        IF NEW.status IN ('completed', 'failed', 'cancelled') THEN
            types := types || ('transfer.' || NEW.status);
        END IF;
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        typ := CASE NEW.status
            WHEN 'completed' THEN 'transfer.completed'
            WHEN 'failed' THEN 'transfer.failed'
            WHEN 'cancelled' THEN 'transfer.cancelled'
            WHEN 'reserved' THEN CASE WHEN terms.capture_method = 'manual' THEN 'transfer.held' END
        END;
        IF typ IS NOT NULL THEN
            types := ARRAY[typ];
        END IF;
    END IF;
    IF cardinality(types) = 0 THEN
        RETURN NULL;
    END IF;
    snap := (to_jsonb(NEW) - 'request_hash' - 'txid') || jsonb_build_object(
        'capture_method', terms.capture_method, 'scheduled_for', terms.scheduled_for,
        'hold_expires_at', terms.hold_expires_at, 'captured_amount', terms.captured_amount);
    FOREACH typ IN ARRAY types LOOP
        ev := gen_random_uuid();
        INSERT INTO events (id, type, transfer_id, from_account_id, to_account_id, data)
        VALUES (ev, typ, NEW.id, NEW.from_account_id, NEW.to_account_id, snap);
        -- The endpoints of the owners of the transfer's two accounts, and of every admin: each read
        -- through an index, however many endpoints others have.
        INSERT INTO webhook_deliveries (id, endpoint_id, event_id)
        SELECT gen_random_uuid(), w.id, ev
          FROM webhook_endpoints w
         WHERE w.status = 'enabled' AND w.deleted_at IS NULL
           AND w.user_id IN (SELECT a.owner_id FROM accounts a
                              WHERE a.id IN (NEW.from_account_id, NEW.to_account_id) AND a.kind = 'user' AND a.owner_id IS NOT NULL
                             UNION
                             SELECT u.id FROM users u WHERE u.role = 'admin')
           AND (w.event_types @> ARRAY['*'] OR w.event_types @> ARRAY[typ])
           AND NOT EXISTS (SELECT FROM user_access ua WHERE ua.user_id = w.user_id AND ua.status = 'disabled');
    END LOOP;
    RETURN NULL;
END
$fn$;

-- statement: transfers_events trigger
-- CREATE OR REPLACE TRIGGER (PostgreSQL 14) makes the statement safe to run again.
CREATE OR REPLACE TRIGGER transfers_events AFTER INSERT OR UPDATE OF status ON transfers
    FOR EACH ROW EXECUTE FUNCTION transfer_event();
