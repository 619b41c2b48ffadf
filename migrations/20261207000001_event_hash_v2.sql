-- Event hash version 2 covers the event's id too (version 1 left `event_id`
-- unproven). Events hashed under version 1 keep their hash and verify as
-- before; every event appended from now on is hashed under version 2:
--
-- hash = hex(SHA-256("identity-event/2" || f(prev_hash) || f(event_id)
--        || f(aggregate_type) || f(aggregate_id) || f(sequence) || f(event_type)
--        || f(event_version) || f(sealed as stored) || f(recorded_at in µs)))
--
-- with event_id in PostgreSQL's text form (lowercase, hyphenated). The
-- specification (docs/audit-log-specification.md) spells it out.
ALTER TABLE events ADD COLUMN hash_version smallint NOT NULL DEFAULT 1;
ALTER TABLE events ALTER COLUMN hash_version SET DEFAULT 2;
ALTER TABLE events ADD CONSTRAINT events_hash_version_known CHECK (hash_version IN (1, 2));

CREATE FUNCTION event_hash_v2(prev_hash text, event_id uuid, aggregate_type text,
                              aggregate_id text, sequence bigint, event_type text,
                              event_version text, sealed text, recorded_at timestamptz)
    RETURNS text
    LANGUAGE sql STABLE STRICT AS
$$
SELECT encode(sha256(
                      convert_to('identity-event/2', 'UTF8')
                          || hash_field(prev_hash)
                          || hash_field(event_id::text)
                          || hash_field(aggregate_type)
                          || hash_field(aggregate_id)
                          || hash_field(sequence::text)
                          || hash_field(event_type)
                          || hash_field(event_version)
                          || hash_field(sealed)
                          || hash_field((extract(epoch FROM recorded_at) * 1000000)::bigint::text)
              ), 'hex')
$$;

CREATE OR REPLACE FUNCTION seal_event() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    payload_sealed  jsonb;
    payload_salts   jsonb;
    metadata_sealed jsonb;
    metadata_salts  jsonb;
BEGIN
    SELECT * INTO payload_sealed, payload_salts FROM seal_value(NEW.payload::jsonb);
    SELECT * INTO metadata_sealed, metadata_salts FROM seal_value(NEW.metadata::jsonb);
    NEW.sealed := jsonb_build_object('payload', payload_sealed, 'metadata', metadata_sealed)::json;
    NEW.salts := jsonb_build_object('payload', payload_salts, 'metadata', metadata_salts);
    NEW.prev_hash := previous_event_hash(NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);
    NEW.hash_version := 2;
    NEW.hash := event_hash_v2(NEW.prev_hash, NEW.event_id, NEW.aggregate_type, NEW.aggregate_id,
                              NEW.sequence, NEW.event_type, NEW.event_version, NEW.sealed::text,
                              NEW.recorded_at);
    RETURN NEW;
END;
$$;
