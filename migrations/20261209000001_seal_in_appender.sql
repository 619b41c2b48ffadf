-- Events are sealed, chained and hashed by the process that appends them
-- (infra::event_stream), in the statement that inserts them: the recursive
-- PL/pgSQL sealing cost about a third of PostgreSQL's insert rate. The
-- database now only checks what it cannot trust the appender with, the
-- link to the stream's previous event, and still seals and hashes a row
-- inserted without a hash (by hand, by a test, by an older process) with
-- `seal_event`, unchanged. The formats do not change
-- (docs/audit-log-specification.md). Whether each hash is right is checked
-- by the signer before it signs.
DROP TRIGGER seal_event ON events;
CREATE TRIGGER seal_event
    BEFORE INSERT ON events
    FOR EACH ROW
    WHEN (NEW.hash IS NULL)
EXECUTE FUNCTION seal_event();

CREATE FUNCTION check_event_link() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    previous text := '';
BEGIN
    IF NEW.sequence > 1 THEN
        SELECT e.hash INTO previous
        FROM events e
        WHERE e.aggregate_type = NEW.aggregate_type
          AND e.aggregate_id = NEW.aggregate_id
          AND e.sequence = NEW.sequence - 1;
    END IF;
    IF previous IS NULL OR NEW.prev_hash IS DISTINCT FROM previous
        OR NEW.sealed IS NULL OR NEW.salts IS NULL THEN
        RAISE EXCEPTION '% % event % does not chain to event % of its stream',
            NEW.aggregate_type, NEW.aggregate_id, NEW.sequence, NEW.sequence - 1
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

-- Named to fire after `seal_event` and before `shield_erased_person`
-- (BEFORE triggers fire in name order), as sealing did.
CREATE TRIGGER seal_event_link
    BEFORE INSERT ON events
    FOR EACH ROW
    WHEN (NEW.hash IS NOT NULL)
EXECUTE FUNCTION check_event_link();
