-- Who holds which permission, decided in the transaction that appends the
-- event: a role's permissions and a user's roles are written by triggers on
-- `events`, so they commit with the event. Every api process sees a grant
-- or a revocation as soon as its command answers (as it sees a revoked
-- session), whether or not the projector is running; a request's
-- `min_position` needs no wait for its own authorization.
--
-- The read models (`roles_view`, `user_roles_view`) still serve the role
-- list and a user's detail; nothing decides access from them.
--
-- Names and paths are the domain's: `role.created`, `role.permissions_changed`
-- and `role.deleted` are `RoleEvent::{CREATED, PERMISSIONS_CHANGED, DELETED}`;
-- `user.role_assigned` and `user.role_unassigned` are
-- `UserEvent::{ROLE_ASSIGNED, ROLE_UNASSIGNED}`; the payload paths are
-- `RoleEvent::{CREATED_NAME, CREATED_PERMISSIONS, PERMISSIONS_CHANGED_PERMISSIONS}`
-- and `UserEvent::{ROLE_ASSIGNED_ROLE_ID, ROLE_UNASSIGNED_ROLE_ID}` (infra's
-- sql_contract test checks them against the contract).

CREATE TABLE role_grants
(
    role_id     uuid PRIMARY KEY,
    name        text   NOT NULL,
    permissions text[] NOT NULL
);

CREATE TABLE user_role_grants
(
    user_id uuid NOT NULL,
    role_id uuid NOT NULL,
    PRIMARY KEY (user_id, role_id)
);

CREATE INDEX user_role_grants_role_id_idx ON user_role_grants (role_id);

CREATE FUNCTION apply_role_grant() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF NEW.event_type = 'role.created' THEN
        INSERT INTO role_grants (role_id, name, permissions)
        VALUES (NEW.aggregate_id::uuid,
                NEW.payload -> 'Created' ->> 'name',
                ARRAY(SELECT json_array_elements_text(NEW.payload -> 'Created' -> 'permissions')))
        ON CONFLICT (role_id) DO NOTHING;
    ELSIF NEW.event_type = 'role.permissions_changed' THEN
        UPDATE role_grants
        SET permissions = ARRAY(SELECT json_array_elements_text(
                NEW.payload -> 'PermissionsChanged' -> 'permissions'))
        WHERE role_id = NEW.aggregate_id::uuid;
    ELSIF NEW.event_type = 'role.deleted' THEN
        DELETE FROM role_grants WHERE role_id = NEW.aggregate_id::uuid;
        DELETE FROM user_role_grants WHERE role_id = NEW.aggregate_id::uuid;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER apply_role_grant
    AFTER INSERT
    ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'role')
EXECUTE FUNCTION apply_role_grant();

CREATE FUNCTION apply_user_role_grant() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF NEW.event_type = 'user.role_assigned' THEN
        INSERT INTO user_role_grants (user_id, role_id)
        VALUES (NEW.aggregate_id::uuid, (NEW.payload -> 'RoleAssigned' ->> 'role_id')::uuid)
        ON CONFLICT DO NOTHING;
    ELSIF NEW.event_type = 'user.role_unassigned' THEN
        DELETE FROM user_role_grants
        WHERE user_id = NEW.aggregate_id::uuid
          AND role_id = (NEW.payload -> 'RoleUnassigned' ->> 'role_id')::uuid;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER apply_user_role_grant
    AFTER INSERT
    ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'user'
        AND NEW.event_type IN ('user.role_assigned', 'user.role_unassigned'))
EXECUTE FUNCTION apply_user_role_grant();

-- The grants the event store decides, written again from the events: each
-- role's last permissions unless deleted, each (user, role) pair whose last
-- event is an assignment, to a role that still exists. Run once below for
-- the events appended before this migration; an operator may run it again
-- (`SELECT rebuild_grants()`), e.g. after restoring only the event store.
CREATE FUNCTION rebuild_grants() RETURNS void
    LANGUAGE sql AS
$$
DELETE FROM user_role_grants;
DELETE FROM role_grants;
INSERT INTO role_grants (role_id, name, permissions)
SELECT created.aggregate_id::uuid,
       created.payload -> 'Created' ->> 'name',
       ARRAY(SELECT json_array_elements_text(
               COALESCE(latest.payload -> 'PermissionsChanged' -> 'permissions',
                        created.payload -> 'Created' -> 'permissions')))
FROM events created
         LEFT JOIN LATERAL (SELECT payload
                            FROM events changed
                            WHERE changed.aggregate_type = 'role'
                              AND changed.aggregate_id = created.aggregate_id
                              AND changed.event_type = 'role.permissions_changed'
                            ORDER BY changed.sequence DESC
                            LIMIT 1) latest ON true
WHERE created.aggregate_type = 'role'
  AND created.event_type = 'role.created'
  AND NOT EXISTS (SELECT 1
                  FROM events deleted
                  WHERE deleted.aggregate_type = 'role'
                    AND deleted.aggregate_id = created.aggregate_id
                    AND deleted.event_type = 'role.deleted');

INSERT INTO user_role_grants (user_id, role_id)
SELECT DISTINCT ON (e.aggregate_id, e.payload -> 'RoleAssigned' ->> 'role_id') e.aggregate_id::uuid,
                                                                             (e.payload -> 'RoleAssigned' ->> 'role_id')::uuid
FROM events e
WHERE e.aggregate_type = 'user'
  AND e.event_type = 'user.role_assigned'
  AND NOT EXISTS (SELECT 1
                  FROM events later
                  WHERE later.aggregate_type = 'user'
                    AND later.aggregate_id = e.aggregate_id
                    AND later.event_type = 'user.role_unassigned'
                    AND later.sequence > e.sequence
                    AND later.payload -> 'RoleUnassigned' ->> 'role_id'
                      = e.payload -> 'RoleAssigned' ->> 'role_id')
  AND (e.payload -> 'RoleAssigned' ->> 'role_id')::uuid IN (SELECT role_id FROM role_grants);
$$;

SELECT rebuild_grants();
