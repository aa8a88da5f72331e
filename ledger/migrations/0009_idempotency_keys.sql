-- 0009: Idempotency-Key is remembered per caller. Until now a key named the transfer whose id was
-- derived from (caller, key), in the same namespace as the ids clients choose, so anyone who knew a
-- user's id and a key they would use could create that transfer id first and make the user's
-- request answer 409. Now the mapping is a row keyed by (caller, scope, key), written in the
-- transaction that creates what the key names: nobody but the caller can occupy it. A new key's
-- transfer still gets the legacy derived id when nobody holds it, so that an API process of the
-- previous release, which derives that id, names the same transfer during a rolling upgrade; when
-- someone else took the id first, the transfer gets a random one. A key whose derived id names a
-- transfer that the same caller created (a retry of a request sent before this migration) is mapped
-- to that transfer on its first use.
--
-- scope is what the key created: 'transfer' (transfers, deposits, withdrawals: one namespace, as
-- before), or another kind of object (API keys, secret rotations); resource_id is its id and
-- request_hash the request it answered, for the scopes that tell a retry from another request by it.
-- key_hash is the SHA-256 of the key as sent (1 to 255 bytes of any header text), so the table holds
-- a fixed size per key and never text that PostgreSQL would refuse.
--
-- There are no foreign keys: resource_id names rows of several tables, and a foreign key to
-- transfers or users would take locks on those hot tables when it is added and on every insert. The
-- audit checks instead that every transfer key names a transfer its caller created.
CREATE TABLE idempotency_keys (
    caller_id    uuid NOT NULL,
    scope        text NOT NULL CHECK (scope IN ('transfer', 'api_key', 'webhook_endpoint', 'secret_rotation', 'capture')),
    key_hash     bytea NOT NULL CHECK (octet_length(key_hash) = 32),
    resource_id  uuid NOT NULL,
    request_hash bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller_id, scope, key_hash)
);
