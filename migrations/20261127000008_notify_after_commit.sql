-- The relay is woken by its writers after they commit
-- (infra::event_log::announce_appended), no longer by a trigger: a
-- transaction that has sent NOTIFY holds PostgreSQL's global notification
-- lock through its commit, so every appending transaction committed (and
-- waited for its WAL flush) one after another, capping commands at one per
-- flush (about 250/s here). A NOTIFY sent after the commit, in a statement
-- of its own, writes no WAL and holds that lock for an instant. A writer
-- that does not announce (a crash in between, a bulk load) is found by the
-- relay's poll (RELAY_POLL_INTERVAL_MS).
DROP TRIGGER events_appended ON events;
DROP FUNCTION notify_events_appended();
