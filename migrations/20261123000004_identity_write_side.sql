-- Role names are unique (case-insensitively) among roles that are not
-- deleted: the same claim mechanism as user emails (migration ...02). The
-- claim is confirmed by the transaction that appends role.created and freed
-- by the one that appends role.deleted.
CREATE FUNCTION confirm_role_name_claim() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF NEW.event_type = 'role.created' THEN
        UPDATE unique_claims SET confirmed = true
         WHERE scope = 'role.name' AND value = lower(NEW.payload -> 'Created' ->> 'name')
           AND owner_id = NEW.aggregate_id;
    ELSIF NEW.event_type = 'role.deleted' THEN
        DELETE FROM unique_claims WHERE scope = 'role.name' AND owner_id = NEW.aggregate_id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER role_name_claims
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'role')
    EXECUTE FUNCTION confirm_role_name_claim();

-- The sessions of a user, found in the event store itself (not a read model)
-- so that revoking "all sessions of a user" cannot miss one the projector has
-- not applied yet.
CREATE INDEX events_session_user_idx
    ON events ((payload -> 'Started' ->> 'user_id'))
    WHERE aggregate_type = 'session' AND event_type = 'session.started';
