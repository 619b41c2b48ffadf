-- A failed credential check is stored here, in one statement whatever the
-- account, before it is answered; counting it for its address and appending
-- `user.login_failed` happen after the answer (so that known and unknown
-- emails answer in the same time) and remove the row. A row whose lease
-- ran out was left by a process that stopped: any api settles it again
-- (app::failed_logins). `metadata` is the event metadata; its
-- `causation_id` is `id`, which makes settling again idempotent.
CREATE TABLE pending_login_failures
(
    id           uuid PRIMARY KEY,
    user_id      uuid        NULL,
    address      text        NULL,
    ip           text        NULL,
    failed_at    timestamptz NOT NULL,
    metadata     jsonb       NOT NULL,
    leased_until timestamptz NOT NULL
);

CREATE INDEX pending_login_failures_leased_until_idx
    ON pending_login_failures (leased_until);

-- Each failure is counted for its address once, however often it is settled.
ALTER TABLE login_address_failures ADD COLUMN failure_id uuid NULL;
CREATE UNIQUE INDEX login_address_failures_failure_id_idx
    ON login_address_failures (failure_id);
