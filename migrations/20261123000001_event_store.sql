-- The event store. postgres-es inserts the named columns of its own schema
-- only, so every extra column has a default.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    -- Assigned at insert, not at commit: readers of the log must use the
    -- snapshot rule on transaction_id (see the relay) to never skip a row.
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid                         NOT NULL DEFAULT gen_random_uuid(),
    recorded_at     timestamptz                  NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_position ON events (global_position);
CREATE UNIQUE INDEX events_event_id ON events (event_id);
CREATE INDEX events_transaction_order ON events (transaction_id, global_position);

-- Needed by postgres-es even when no snapshots are taken.
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Wakes the outbox relay when a transaction that appended events commits
-- (NOTIFY is delivered on commit only).
CREATE FUNCTION notify_events_appended() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('events_appended', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_appended
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_appended();

-- Where each publisher of the log has got to, in the order it reads:
-- (transaction_id, global_position).
CREATE TABLE relay_checkpoints
(
    relay           text PRIMARY KEY,
    transaction_id  bigint      NOT NULL DEFAULT 0,
    global_position bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
