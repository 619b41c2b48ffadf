-- Each signed-in user's command budget (app::command_rate), one row per
-- user who sent a command: the moment their bucket is full again, moved
-- one interval on by every command admitted (GCRA). A row in the past is
-- a full bucket, so rows are never pruned; there is at most one per user.
-- UNLOGGED: this is throttling state, not a record. A crash or a failover
-- empties it, which only hands everyone a full bucket, and no command pays
-- for a WAL record of it.
CREATE UNLOGGED TABLE command_rate_limits
(
    user_id     uuid PRIMARY KEY,
    bucket_full timestamptz NOT NULL
);
