-- State of the worker's lockout policy (worker/src/lockout.rs). The event
-- store stays the truth: these tables only count what the worker consumed.

-- Every user.login_failed the worker has consumed, once: the event id is the
-- key, so a redelivered event is not counted twice.
CREATE TABLE login_failures
(
    event_id  uuid PRIMARY KEY,
    user_id   uuid        NOT NULL,
    ip        text        NULL,
    failed_at timestamptz NOT NULL
);

CREATE INDEX login_failures_user_id_failed_at_idx ON login_failures (user_id, failed_at);
CREATE INDEX login_failures_ip_failed_at_idx ON login_failures (ip, failed_at) WHERE ip IS NOT NULL;

-- Failures of a user up to reset_at no longer count: a successful login
-- (session.started) or a lock (user.locked) restarts the count.
CREATE TABLE lockout_resets
(
    user_id  uuid PRIMARY KEY,
    reset_at timestamptz NOT NULL
);

-- Client addresses refused at login until blocked_until (the API answers 429
-- with Retry-After): too many failures from one address, across all users.
CREATE TABLE login_ip_blocks
(
    ip            text PRIMARY KEY,
    blocked_until timestamptz NOT NULL,
    -- Failures in the window when the block was last set or extended.
    failures      integer     NOT NULL
);
