-- Read models of roles, role assignments and sessions. Every index is named
-- as `CREATE TABLE x_next (LIKE x INCLUDING ALL)` names it, so that a
-- rebuilt table (projector rebuild) ends with the same index names.

-- Set by user.locked, cleared by user.unlocked.
ALTER TABLE users_view ADD COLUMN locked_until timestamptz NULL;

CREATE TABLE roles_view
(
    role_id         uuid PRIMARY KEY,
    name            text        NOT NULL,
    name_key        text        NOT NULL,
    description     text        NOT NULL,
    permissions     text[]      NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    -- A deleted role keeps its row: its sequence still guards against late
    -- and duplicate deliveries. Queries filter on deleted_at IS NULL.
    deleted_at      timestamptz NULL,
    sequence        bigint      NOT NULL,
    global_position bigint      NOT NULL
);

CREATE INDEX roles_view_name_key_idx ON roles_view (name_key);

-- Derived from user events: users_view.sequence guards these rows too.
CREATE TABLE user_roles_view
(
    user_id         uuid        NOT NULL,
    role_id         uuid        NOT NULL,
    assigned_at     timestamptz NOT NULL,
    global_position bigint      NOT NULL,
    PRIMARY KEY (user_id, role_id)
);

CREATE INDEX user_roles_view_role_id_idx ON user_roles_view (role_id);

CREATE TABLE sessions_view
(
    session_id           uuid PRIMARY KEY,
    user_id              uuid        NOT NULL,
    status               text        NOT NULL CHECK (status IN ('active', 'revoked', 'expired')),
    end_reason           text        NULL,
    ip                   text        NULL,
    user_agent           text        NULL,
    started_at           timestamptz NOT NULL,
    expires_at           timestamptz NOT NULL,
    idle_timeout_seconds bigint      NOT NULL,
    last_activity_at     timestamptz NOT NULL,
    -- last_activity_at + idle_timeout_seconds, stored so that the expiry scan
    -- can use an index.
    idle_expires_at      timestamptz NOT NULL,
    ended_at             timestamptz NULL,
    sequence             bigint      NOT NULL,
    global_position      bigint      NOT NULL
);

CREATE INDEX sessions_view_user_id_started_at_idx ON sessions_view (user_id, started_at);
CREATE INDEX sessions_view_expires_at_idx ON sessions_view (expires_at) WHERE status = 'active';
CREATE INDEX sessions_view_idle_expires_at_idx ON sessions_view (idle_expires_at) WHERE status = 'active';

-- One projection writes every view in one transaction with one checkpoint.
UPDATE projection_checkpoints SET projection = 'read_models' WHERE projection = 'users_view';
