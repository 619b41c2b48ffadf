-- event_log_horizon without reading pg_stat_activity when the snapshot
-- lists no running transaction: then no transaction of another database
-- can be among them, and the horizon is the caller's own transaction or
-- the snapshot's xmax, as the full function finds. Reading the activity
-- view copies every backend's status (about 0.1 ms of PostgreSQL's CPU,
-- measured with pgbench), and the relay and the projector ask for the
-- horizon once per batch, which at low load means once per command.
ALTER FUNCTION event_log_horizon(pg_snapshot) RENAME TO event_log_horizon_among_running;

CREATE FUNCTION event_log_horizon(snapshot pg_snapshot) RETURNS xid8
    LANGUAGE sql
    VOLATILE AS
$$
SELECT CASE
           WHEN EXISTS (SELECT FROM pg_snapshot_xip(snapshot))
               THEN event_log_horizon_among_running(snapshot)
           ELSE least(pg_current_xact_id_if_assigned(), pg_snapshot_xmax(snapshot))
           END
$$;
