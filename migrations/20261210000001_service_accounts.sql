-- Service accounts and their API keys, decided in the transaction that
-- appends the event (as `role_grants` and `user_role_grants` are): a key
-- revoked, expired, rotated away, or whose account is disabled or erased is
-- refused by every api process as soon as its command answers.
--
-- A service account's roles live in `user_role_grants` beside people's:
-- the table maps a principal (a user or a service account; the ids are
-- UUIDs and never collide) to its roles, so one query gives any caller's
-- permissions and deleting a role takes it from both.
--
-- Names and paths are the domain's (`ServiceAccountEvent::*` in
-- `domain::service_account`; infra's sql_contract test checks them).

CREATE TABLE service_accounts
(
    service_account_id uuid PRIMARY KEY,
    name               text        NOT NULL,
    description        text        NOT NULL,
    -- active | disabled | erased (domain::ServiceAccountStatus)
    status             text        NOT NULL DEFAULT 'active',
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);

CREATE TABLE api_keys
(
    key_id             uuid PRIMARY KEY,
    service_account_id uuid        NOT NULL REFERENCES service_accounts ON DELETE CASCADE,
    description        text        NOT NULL,
    scope              text[]      NOT NULL,
    -- Lowercase hex SHA-256 of the whole key.
    secret_hash        text        NOT NULL,
    issued_at          timestamptz NOT NULL,
    -- Lowered by a rotation to the end of its overlap.
    expires_at         timestamptz NOT NULL,
    revoked_at         timestamptz,
    replaced_by        uuid
);

CREATE INDEX api_keys_service_account_id_idx ON api_keys (service_account_id);

-- When each key was last used, written by the api at most once a minute
-- per key (not an event: a request is not a change of state).
CREATE TABLE api_key_usage
(
    key_id         uuid PRIMARY KEY,
    last_used_at   timestamptz NOT NULL,
    last_used_from text
);

CREATE FUNCTION apply_service_account_event(e events) RETURNS void
    LANGUAGE plpgsql AS
$$
DECLARE
    account uuid := e.aggregate_id::uuid;
BEGIN
    IF e.event_type = 'service_account.created' THEN
        INSERT INTO service_accounts (service_account_id, name, description, created_at, updated_at)
        VALUES (account,
                e.payload -> 'Created' ->> 'name',
                e.payload -> 'Created' ->> 'description',
                e.recorded_at, e.recorded_at)
        ON CONFLICT (service_account_id) DO NOTHING;
        RETURN;
    END IF;
    UPDATE service_accounts SET updated_at = e.recorded_at WHERE service_account_id = account;
    IF e.event_type = 'service_account.name_changed' THEN
        UPDATE service_accounts
        SET name = e.payload -> 'NameChanged' ->> 'name'
        WHERE service_account_id = account;
    ELSIF e.event_type = 'service_account.description_changed' THEN
        UPDATE service_accounts
        SET description = e.payload -> 'DescriptionChanged' ->> 'description'
        WHERE service_account_id = account;
    ELSIF e.event_type = 'service_account.disabled' THEN
        UPDATE service_accounts SET status = 'disabled' WHERE service_account_id = account;
    ELSIF e.event_type = 'service_account.enabled' THEN
        UPDATE service_accounts SET status = 'active' WHERE service_account_id = account;
    ELSIF e.event_type = 'service_account.role_assigned' THEN
        INSERT INTO user_role_grants (user_id, role_id)
        VALUES (account, (e.payload -> 'RoleAssigned' ->> 'role_id')::uuid)
        ON CONFLICT DO NOTHING;
    ELSIF e.event_type = 'service_account.role_unassigned' THEN
        DELETE FROM user_role_grants
        WHERE user_id = account
          AND role_id = (e.payload -> 'RoleUnassigned' ->> 'role_id')::uuid;
    ELSIF e.event_type = 'service_account.key_issued' THEN
        INSERT INTO api_keys (key_id, service_account_id, description, scope, secret_hash,
                              issued_at, expires_at)
        VALUES ((e.payload -> 'KeyIssued' ->> 'key_id')::uuid,
                account,
                e.payload -> 'KeyIssued' ->> 'description',
                ARRAY(SELECT json_array_elements_text(e.payload -> 'KeyIssued' -> 'scope')),
                e.payload -> 'KeyIssued' ->> 'secret_hash',
                e.recorded_at,
                (e.payload -> 'KeyIssued' ->> 'expires_at')::timestamptz)
        ON CONFLICT (key_id) DO NOTHING;
    ELSIF e.event_type = 'service_account.key_rotated' THEN
        UPDATE api_keys
        SET expires_at  = LEAST(expires_at, (e.payload -> 'KeyRotated' ->> 'valid_until')::timestamptz),
            replaced_by = (e.payload -> 'KeyRotated' ->> 'replaced_by')::uuid
        WHERE key_id = (e.payload -> 'KeyRotated' ->> 'key_id')::uuid;
    ELSIF e.event_type = 'service_account.key_revoked' THEN
        UPDATE api_keys
        SET revoked_at = e.recorded_at
        WHERE key_id = (e.payload -> 'KeyRevoked' ->> 'key_id')::uuid
          AND revoked_at IS NULL;
    ELSIF e.event_type = 'service_account.erased' THEN
        UPDATE service_accounts SET status = 'erased' WHERE service_account_id = account;
        UPDATE api_keys SET revoked_at = e.recorded_at
        WHERE service_account_id = account AND revoked_at IS NULL;
        DELETE FROM user_role_grants WHERE user_id = account;
    END IF;
END;
$$;

CREATE FUNCTION apply_service_account_grant() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM apply_service_account_event(NEW);
    RETURN NULL;
END;
$$;

CREATE TRIGGER apply_service_account_grant
    AFTER INSERT
    ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'service_account')
EXECUTE FUNCTION apply_service_account_grant();

-- `rebuild_grants()` (see the grants migration) now writes the service
-- accounts again too, by replaying their events through the trigger's code.
ALTER FUNCTION rebuild_grants() RENAME TO rebuild_user_and_role_grants;

CREATE FUNCTION rebuild_grants() RETURNS void
    LANGUAGE plpgsql AS
$$
DECLARE
    e events;
BEGIN
    PERFORM rebuild_user_and_role_grants();
    DELETE FROM api_keys;
    DELETE FROM service_accounts;
    FOR e IN SELECT * FROM events WHERE aggregate_type = 'service_account' ORDER BY global_position
        LOOP
            PERFORM apply_service_account_event(e);
        END LOOP;
    DELETE FROM user_role_grants g
    WHERE NOT EXISTS (SELECT 1 FROM role_grants r WHERE r.role_id = g.role_id);
END;
$$;

-- The API key a machine client acted with, for auditors' filter
-- (`metadata.api_key_id`; the account is the `actor_id`). No event before
-- this migration was caused by a key.
ALTER TABLE audit_log ADD COLUMN api_key_id text;
CREATE INDEX audit_log_api_key_idx ON audit_log (api_key_id, transaction_id, global_position);
