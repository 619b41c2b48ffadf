-- Aggregate snapshots, written by infra::snapshots (not by postgres-es,
-- whose own snapshot table this replaces; it never held a row). One row per
-- stream: the state after its event `last_sequence`, serialized in the
-- shape `schema` names (domain::Snapshotted::SNAPSHOT_SCHEMA). A cache:
-- deleting any row only makes the next command on that stream fold it in
-- full. Erasure deletes the rows of the person's streams.
DROP TABLE snapshots;

CREATE TABLE snapshots
(
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    schema         integer     NOT NULL,
    last_sequence  bigint      NOT NULL CHECK (last_sequence > 0),
    payload        json        NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);
