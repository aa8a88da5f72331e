-- 0001: users, accounts, transfers, holds and the journal. The money rules are enforced here, by
-- CHECK constraints, foreign keys and unique keys, so no code path can break them.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL CHECK (email <> ''),
    password_hash text NOT NULL,
    name          text NOT NULL DEFAULT '',
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique case-insensitively.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE accounts (
    id          uuid PRIMARY KEY,
    owner_id    uuid REFERENCES users (id),
    kind        text NOT NULL CHECK (kind IN ('user', 'system')),
    currency    char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance     bigint NOT NULL DEFAULT 0,
    reserved    bigint NOT NULL DEFAULT 0,
    -- entry_seq is the seq of the account's last journal entry; the next entry takes entry_seq + 1
    -- under this row's lock, so seqs run 1..n with no gap or repeat.
    entry_seq   bigint NOT NULL DEFAULT 0 CHECK (entry_seq >= 0),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'closed')),
    external_id text CHECK (external_id IS NULL OR external_id <> ''),
    labels      jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_reserved_nonnegative CHECK (reserved >= 0),
    -- The system account stands for the outside world and goes negative by what was deposited.
    CONSTRAINT accounts_no_overdraft CHECK (kind = 'system' OR balance - reserved >= 0),
    CONSTRAINT accounts_owner CHECK ((kind = 'system') = (owner_id IS NULL)),
    CONSTRAINT accounts_closed_empty CHECK (status <> 'closed' OR (balance = 0 AND reserved = 0))
);
CREATE UNIQUE INDEX accounts_system_currency_key ON accounts (currency) WHERE kind = 'system';
CREATE UNIQUE INDEX accounts_owner_external_id_key ON accounts (owner_id, external_id) WHERE external_id IS NOT NULL;
-- Cursor pagination, newest first, for all accounts and for one owner's.
CREATE INDEX accounts_page_idx ON accounts (created_at DESC, id DESC);
CREATE INDEX accounts_owner_page_idx ON accounts (owner_id, created_at DESC, id DESC);

CREATE TABLE transfers (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('transfer', 'deposit', 'withdrawal')),
    from_account_id uuid NOT NULL REFERENCES accounts (id),
    to_account_id   uuid NOT NULL REFERENCES accounts (id),
    amount          bigint NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740991),
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'reserved', 'debited', 'completed', 'failed', 'cancelled')),
    failure_code    text,
    failure_message text,
    description     text NOT NULL DEFAULT '',
    labels          jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
    -- request_hash identifies the creating request: the same id with another hash is a conflict.
    request_hash    bytea NOT NULL,
    initiated_by    uuid REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    CONSTRAINT transfers_distinct_accounts CHECK (from_account_id <> to_account_id),
    CONSTRAINT transfers_final_completed_at CHECK ((status IN ('completed', 'failed', 'cancelled')) = (completed_at IS NOT NULL)),
    CONSTRAINT transfers_failure_code CHECK ((status IN ('failed', 'cancelled')) OR failure_code IS NULL)
);
CREATE INDEX transfers_page_idx ON transfers (created_at DESC, id DESC);
CREATE INDEX transfers_from_page_idx ON transfers (from_account_id, created_at DESC, id DESC);
CREATE INDEX transfers_to_page_idx ON transfers (to_account_id, created_at DESC, id DESC);
-- Transfers in flight, for the reconciler and the audit.
CREATE INDEX transfers_in_flight_idx ON transfers (created_at)
    WHERE status IN ('pending', 'reserved', 'debited');

-- A hold is the money a transfer reserves on its source: one per transfer, so reserve cannot hold
-- twice. It is 'held' until the debit posts it or a compensation releases it.
CREATE TABLE holds (
    transfer_id uuid PRIMARY KEY REFERENCES transfers (id),
    account_id  uuid NOT NULL REFERENCES accounts (id),
    amount      bigint NOT NULL CHECK (amount > 0),
    status      text NOT NULL CHECK (status IN ('held', 'posted', 'released')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX holds_account_held_idx ON holds (account_id) WHERE status = 'held';

-- entries is the journal. Each (transfer, kind) posts at most once, so no step can post twice.
CREATE TABLE entries (
    id            uuid PRIMARY KEY,
    account_id    uuid NOT NULL REFERENCES accounts (id),
    transfer_id   uuid NOT NULL REFERENCES transfers (id),
    kind          text NOT NULL CHECK (kind IN ('debit', 'credit', 'refund')),
    amount        bigint NOT NULL,
    balance_after bigint NOT NULL,
    seq           bigint NOT NULL CHECK (seq >= 1),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT entries_transfer_kind_key UNIQUE (transfer_id, kind),
    CONSTRAINT entries_account_seq_key UNIQUE (account_id, seq),
    CONSTRAINT entries_sign CHECK ((kind = 'debit' AND amount < 0) OR (kind <> 'debit' AND amount > 0))
);
