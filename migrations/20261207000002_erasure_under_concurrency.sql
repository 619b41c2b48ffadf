-- Erasure under concurrency: once `user.erased` commits, nothing the person
-- sends lands unscrubbed, whichever api process writes it.
--
-- * `erased_users` holds the id of every erased person. A trigger writes it
--   in the transaction that appends `user.erased`, so it commits with the
--   event, never before or after.
-- * Per-person advisory locks order appends against that commit:
--   `pg_advisory_xact_lock(1701994753, hashtext(user_id))` (namespace
--   0x65726101, "era\x01"; `infra::erased::LOCK_SPACE`), exclusive while the
--   erasure is recorded, shared by every append of a session start for the
--   person or of an event the person caused. Such an append either commits
--   before the erasure (the erasure then revokes and scrubs it, finding it in
--   the event store) or sees the erasure once the lock is granted: a
--   session start is refused (SQLSTATE ERA01, `infra::erased::REFUSED`,
--   answered as a failed login), and another event of the person is stored
--   with its client address and agent already `[erased]` with null salts,
--   as a later scrub would leave them.
--
-- Names and paths are the domain's: `user.erased` is `UserEvent::ERASED`,
-- `session.started` is `SessionEvent::STARTED`, `payload -> 'Started' ->>
-- 'user_id'` is `SessionEvent::STARTED_USER_ID` (infra's sql_contract test
-- checks both against the contract); `actor_id`, `request_ip` and
-- `user_agent` are `bus::metadata_keys`, `[erased]` is `domain::ERASED`
-- (infra::erased's test pins those).

CREATE TABLE erased_users
(
    user_id   text PRIMARY KEY,
    erased_at timestamptz NOT NULL
);

INSERT INTO erased_users (user_id, erased_at)
SELECT aggregate_id, min(recorded_at)
FROM events
WHERE aggregate_type = 'user'
  AND event_type = 'user.erased'
GROUP BY aggregate_id;

-- After `user.erased` is inserted: wait for the person's appends in flight,
-- then record the erasure (visible with the event's commit).
CREATE FUNCTION record_erasure() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_advisory_xact_lock(1701994753, hashtext(NEW.aggregate_id));
    INSERT INTO erased_users (user_id, erased_at)
    VALUES (NEW.aggregate_id, NEW.recorded_at)
    ON CONFLICT (user_id) DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER record_erasure
    AFTER INSERT
    ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'user' AND NEW.event_type = 'user.erased')
EXECUTE FUNCTION record_erasure();

-- Before an event is inserted, after `seal_event` (triggers fire in name
-- order: 'shield...' > 'seal...'), so its salts exist to be nulled. Each
-- check runs once the shared lock is granted, in a statement of its own,
-- so it sees an erasure that committed while this append waited.
CREATE FUNCTION shield_erased_person() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    subject text;
    actor   text := NEW.metadata ->> 'actor_id';
    key     text;
BEGIN
    IF NEW.aggregate_type = 'session' AND NEW.event_type = 'session.started' THEN
        subject := NEW.payload -> 'Started' ->> 'user_id';
        PERFORM pg_advisory_xact_lock_shared(1701994753, hashtext(subject));
        IF EXISTS (SELECT 1 FROM erased_users e WHERE e.user_id = subject) THEN
            RAISE EXCEPTION 'user % is erased: no session starts for them', subject
                USING ERRCODE = 'ERA01';
        END IF;
    END IF;
    IF actor IS NULL THEN
        RETURN NEW;
    END IF;
    IF actor IS DISTINCT FROM subject THEN
        PERFORM pg_advisory_xact_lock_shared(1701994753, hashtext(actor));
    END IF;
    IF EXISTS (SELECT 1 FROM erased_users e WHERE e.user_id = actor) THEN
        FOREACH key IN ARRAY ARRAY ['request_ip', 'user_agent']
            LOOP
                IF json_typeof(NEW.metadata -> key) = 'string' THEN
                    NEW.metadata := jsonb_set(NEW.metadata::jsonb, ARRAY [key],
                                              to_jsonb('[erased]'::text))::json;
                    IF NEW.salts IS NOT NULL THEN
                        NEW.salts := jsonb_set(NEW.salts, ARRAY ['metadata', key], 'null'::jsonb);
                    END IF;
                END IF;
            END LOOP;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER shield_erased_person
    BEFORE INSERT
    ON events
    FOR EACH ROW
EXECUTE FUNCTION shield_erased_person();

-- Rows the projector wrote before this migration for sessions of people
-- already erased (a session started or ended after `user.erased` was
-- applied kept its client's address and agent).
UPDATE sessions_view
SET ip         = CASE WHEN ip IS NULL THEN NULL ELSE '[erased]' END,
    user_agent = CASE WHEN user_agent IS NULL THEN NULL ELSE '[erased]' END
WHERE user_id::text IN (SELECT user_id FROM erased_users)
  AND (ip IS DISTINCT FROM '[erased]' AND ip IS NOT NULL
    OR user_agent IS DISTINCT FROM '[erased]' AND user_agent IS NOT NULL);
