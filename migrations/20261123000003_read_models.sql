CREATE TABLE users_view
(
    id              uuid PRIMARY KEY,
    email           text        NOT NULL,
    email_key       text        NOT NULL,
    display_name    text        NOT NULL,
    status          text        NOT NULL,
    registered_at   timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    -- Last applied event of this user: an event at or below it is a duplicate.
    sequence        bigint      NOT NULL,
    global_position bigint      NOT NULL
);

-- Named as `CREATE TABLE ... (LIKE users_view INCLUDING ALL)` names them, so
-- that a rebuilt table (projector rebuild) ends with the same index names.
CREATE INDEX users_view_email_key_idx ON users_view (email_key);
CREATE INDEX users_view_status_id_idx ON users_view (status, id);

-- How far each projection has got, written in the transaction that writes its
-- rows. Ordered like the relay publishes: (transaction_id, global_position).
CREATE TABLE projection_checkpoints
(
    projection      text PRIMARY KEY,
    transaction_id  bigint      NOT NULL DEFAULT 0,
    global_position bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

INSERT INTO projection_checkpoints (projection) VALUES ('users_view');

-- Lets the API wake read-your-writes waiters instead of polling.
CREATE FUNCTION notify_projection_advanced() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('projection_advanced', NEW.projection);
    RETURN NULL;
END;
$$;

CREATE TRIGGER projection_advanced
    AFTER INSERT OR UPDATE ON projection_checkpoints
    FOR EACH ROW EXECUTE FUNCTION notify_projection_advanced();
