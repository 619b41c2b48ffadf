-- The audit log read model: one row per event, holding the columns auditors
-- filter on. The projector writes a row in the transaction that applies the
-- event to its aggregate's view, idempotent by global_position; payloads and
-- metadata stay in the event store, joined at read time, so personal data
-- has one copy.
--
-- Lists are ordered the way the relay publishes, (transaction_id,
-- global_position), not by global_position alone: a position is assigned at
-- insert and a lower one can commit later, so only the publishing order up to
-- the projection's checkpoint is a prefix that never gains rows. Each filter's
-- index ends in that order, so a filtered page is an index range scan.
CREATE TABLE audit_log
(
    global_position bigint PRIMARY KEY,
    transaction_id  bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL,
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    recorded_at     timestamptz NOT NULL,
    actor_id        text,
    correlation_id  text,
    causation_id    text
);

CREATE UNIQUE INDEX audit_log_order_idx ON audit_log (transaction_id, global_position);
CREATE INDEX audit_log_aggregate_idx
    ON audit_log (aggregate_type, aggregate_id, transaction_id, global_position);
CREATE INDEX audit_log_event_type_idx ON audit_log (event_type, transaction_id, global_position);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, transaction_id, global_position);
CREATE INDEX audit_log_correlation_idx
    ON audit_log (correlation_id, transaction_id, global_position);
CREATE INDEX audit_log_recorded_at_idx ON audit_log (recorded_at, transaction_id, global_position);

-- Events stored before this migration; later ones arrive through the projector.
INSERT INTO audit_log (global_position, transaction_id, event_id, aggregate_type, aggregate_id,
                       sequence, event_type, event_version, recorded_at, actor_id, correlation_id,
                       causation_id)
SELECT global_position,
       transaction_id::text::bigint,
       event_id,
       aggregate_type,
       aggregate_id,
       sequence,
       event_type,
       event_version,
       recorded_at,
       metadata ->> 'actor_id',
       metadata ->> 'correlation_id',
       metadata ->> 'causation_id'
FROM events;
