-- The horizon of the event log in `snapshot`: every event whose
-- transaction_id is below it is committed and visible in that snapshot, and
-- no transaction can still add one below it. The readers of the log in
-- publishing order (the relay, the projector's applied prefix, rebuilds,
-- the audit export) read only below it, so none ever skips a row. They pass
-- the snapshot their statement reads events with,
-- `event_log_horizon(pg_current_snapshot())`: under READ COMMITTED this
-- function's own statements would see a newer one.
--
-- It is the oldest transaction running when the snapshot was taken (the
-- caller's own included, which its snapshot does not list), or the
-- snapshot's xmax when none was, leaving out the transactions of other
-- databases: transaction ids are shared by the whole server, but a
-- transaction connected to another database cannot write to this one. The
-- snapshot's xmin, used before, waited for those too, so one long
-- transaction anywhere on the server held publishing back as long as it ran.
--
-- A running transaction counts as another database's only when
-- pg_stat_activity (or pg_prepared_xacts) shows its id held in another
-- database. Every other one counts as this database's: one that ended
-- after the snapshot, one of a backend still starting or of no database,
-- one the view would hide. An unknown is waited for, so correctness never
-- depends on timing or on what the caller may see (PostgreSQL 15 shows
-- every backend's database and xid to any role).
--
-- pg_stat_activity pairs a backend's database, from its status slot, with
-- the xid that slot's process holds when read a moment later; a backend can
-- leave and another take its slot in between. A process that held an xid
-- of the snapshot held its slot since before the snapshot, so for the xids
-- that matter the pair is right if the view is read after the snapshot was
-- taken. A transaction reads the view once and keeps it, hence the clear.
CREATE FUNCTION event_log_horizon(snapshot pg_snapshot) RETURNS xid8
    LANGUAGE plpgsql
    VOLATILE AS
$$
BEGIN
    PERFORM pg_stat_clear_snapshot();
    RETURN least(
        (SELECT min(running.id)
           FROM pg_snapshot_xip(snapshot) AS running(id)
          WHERE NOT EXISTS (SELECT FROM pg_stat_activity AS backend
                             WHERE backend.backend_xid = xid(running.id)
                               AND backend.datname <> current_database())
            AND NOT EXISTS (SELECT FROM pg_prepared_xacts AS prepared
                             WHERE prepared.transaction = xid(running.id)
                               AND prepared.database <> current_database())),
        pg_current_xact_id_if_assigned(),
        pg_snapshot_xmax(snapshot));
END;
$$;
