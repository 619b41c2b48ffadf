-- Integrity: every event is sealed and chained to the previous event of its
-- stream by a trigger, in the transaction that appends it, whichever process
-- writes it.
--
-- `sealed` is {"payload": P, "metadata": M} where every string leaf of the
-- event's payload and metadata is replaced by "sha256:" + hex(SHA-256(salt ||
-- value)) (UTF-8 bytes; salt is 32 hex characters). `salts` has the same
-- shape with each string leaf's salt (other leaves null). The hash covers
-- `sealed`, never plaintext, so erasing a personal value (its leaf becomes
-- "[erased]" and its salt null) leaves every hash and the proof intact,
-- and without its salt the commitment cannot be tested against guesses.
--
-- hash = hex(SHA-256("identity-event/1" || f(prev_hash) || f(aggregate_type)
--        || f(aggregate_id) || f(sequence) || f(event_type) || f(event_version)
--        || f(sealed as stored) || f(recorded_at in microseconds since the epoch)))
-- with f(x) = decimal byte length of x || ':' || x, every x as UTF-8 text, and
-- prev_hash '' for the first event of a stream. The README spells it out.
ALTER TABLE events
    ADD COLUMN sealed    json,
    ADD COLUMN salts     jsonb,
    ADD COLUMN prev_hash text,
    ADD COLUMN hash      text;

-- One leaf's or one subtree's commitments and salts.
CREATE FUNCTION seal_value(value jsonb, OUT sealed jsonb, OUT salts jsonb)
    LANGUAGE plpgsql VOLATILE AS
$$
DECLARE
    key         text;
    item        jsonb;
    item_sealed jsonb;
    item_salts  jsonb;
BEGIN
    CASE jsonb_typeof(value)
        WHEN 'string' THEN
            salts := to_jsonb(replace(gen_random_uuid()::text, '-', ''));
            sealed := to_jsonb('sha256:' || encode(
                    sha256(convert_to((salts #>> '{}') || (value #>> '{}'), 'UTF8')), 'hex'));
        WHEN 'object' THEN
            sealed := '{}';
            salts := '{}';
            FOR key, item IN SELECT * FROM jsonb_each(value)
                LOOP
                    SELECT * INTO item_sealed, item_salts FROM seal_value(item);
                    sealed := sealed || jsonb_build_object(key, item_sealed);
                    salts := salts || jsonb_build_object(key, item_salts);
                END LOOP;
        WHEN 'array' THEN
            sealed := '[]';
            salts := '[]';
            FOR item IN SELECT * FROM jsonb_array_elements(value)
                LOOP
                    SELECT * INTO item_sealed, item_salts FROM seal_value(item);
                    sealed := sealed || jsonb_build_array(item_sealed);
                    salts := salts || jsonb_build_array(item_salts);
                END LOOP;
        ELSE
            sealed := value;
            salts := 'null';
        END CASE;
END;
$$;

-- f(x) above.
CREATE FUNCTION hash_field(value text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT AS
$$
SELECT convert_to(octet_length(convert_to(value, 'UTF8'))::text || ':' || value, 'UTF8')
$$;

CREATE FUNCTION event_hash(prev_hash text, aggregate_type text, aggregate_id text, sequence bigint,
                           event_type text, event_version text, sealed text,
                           recorded_at timestamptz) RETURNS text
    LANGUAGE sql STABLE STRICT AS
$$
SELECT encode(sha256(
                      convert_to('identity-event/1', 'UTF8')
                          || hash_field(prev_hash)
                          || hash_field(aggregate_type)
                          || hash_field(aggregate_id)
                          || hash_field(sequence::text)
                          || hash_field(event_type)
                          || hash_field(event_version)
                          || hash_field(sealed)
                          || hash_field((extract(epoch FROM recorded_at) * 1000000)::bigint::text)
              ), 'hex')
$$;

-- The hash of the event before `sequence` in its stream; '' for the first.
CREATE FUNCTION previous_event_hash(aggregate_type text, aggregate_id text, sequence bigint)
    RETURNS text
    LANGUAGE plpgsql STABLE AS
$$
DECLARE
    previous text;
BEGIN
    IF sequence <= 1 THEN
        RETURN '';
    END IF;
    SELECT e.hash INTO previous
    FROM events e
    WHERE e.aggregate_type = previous_event_hash.aggregate_type
      AND e.aggregate_id = previous_event_hash.aggregate_id
      AND e.sequence = previous_event_hash.sequence - 1;
    IF previous IS NULL THEN
        RAISE EXCEPTION '% % has no event % to chain event % to',
            aggregate_type, aggregate_id, sequence - 1, sequence
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN previous;
END;
$$;

CREATE FUNCTION seal_event() RETURNS trigger
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
    NEW.hash := event_hash(NEW.prev_hash, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence,
                           NEW.event_type, NEW.event_version, NEW.sealed::text, NEW.recorded_at);
    RETURN NEW;
END;
$$;

-- Existing events, stream by stream in sequence order.
DO
$$
    DECLARE
        event           record;
        payload_sealed  jsonb;
        payload_salts   jsonb;
        metadata_sealed jsonb;
        metadata_salts  jsonb;
        sealed_text     text;
        previous        text;
    BEGIN
        FOR event IN SELECT * FROM events ORDER BY aggregate_type, aggregate_id, sequence
            LOOP
                SELECT * INTO payload_sealed, payload_salts FROM seal_value(event.payload::jsonb);
                SELECT * INTO metadata_sealed, metadata_salts FROM seal_value(event.metadata::jsonb);
                sealed_text := jsonb_build_object('payload', payload_sealed, 'metadata', metadata_sealed)::text;
                previous := previous_event_hash(event.aggregate_type, event.aggregate_id, event.sequence);
                UPDATE events
                SET sealed    = sealed_text::json,
                    salts     = jsonb_build_object('payload', payload_salts, 'metadata', metadata_salts),
                    prev_hash = previous,
                    hash      = event_hash(previous, event.aggregate_type, event.aggregate_id,
                                           event.sequence, event.event_type, event.event_version,
                                           sealed_text, event.recorded_at)
                WHERE aggregate_type = event.aggregate_type
                  AND aggregate_id = event.aggregate_id
                  AND sequence = event.sequence;
            END LOOP;
    END;
$$;

ALTER TABLE events
    ALTER COLUMN sealed SET NOT NULL,
    ALTER COLUMN salts SET NOT NULL,
    ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL;

CREATE TRIGGER seal_event
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION seal_event();

-- The log as a whole: the relay folds every event's hash, in publishing
-- order, into a running hash, and at intervals signs where it stands.
-- running = hex(SHA-256("identity-log/1" || f(previous running) || f(hash)
--           || f(transaction_id) || f(global_position))), '' before the first.
CREATE TABLE audit_chain_head
(
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    transaction_id     bigint      NOT NULL DEFAULT 0,
    global_position    bigint      NOT NULL DEFAULT 0,
    running_hash       text        NOT NULL DEFAULT '',
    event_count        bigint      NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_chain_head DEFAULT VALUES;

-- Public halves of the checkpoint signing keys (Ed25519), old ones included.
CREATE TABLE audit_signing_keys
(
    key_id     text PRIMARY KEY,
    -- 32 bytes, base64 (standard alphabet, padded).
    public_key text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- signature = base64(Ed25519 over "identity-checkpoint/1" || f(transaction_id)
--             || f(global_position) || f(running_hash) || f(event_count)
--             || f(created_at in microseconds) || f(key_id)).
CREATE TABLE audit_checkpoints
(
    transaction_id  bigint      NOT NULL,
    global_position bigint      NOT NULL,
    running_hash    text        NOT NULL,
    event_count     bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    key_id          text        NOT NULL REFERENCES audit_signing_keys (key_id),
    signature       text        NOT NULL,
    PRIMARY KEY (transaction_id, global_position)
);
