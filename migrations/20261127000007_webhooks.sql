-- Webhooks. Subscriptions are the `webhook` aggregate's events; what is kept
-- here is what must not be in an event (the signing secrets) and the
-- worker's delivery queue.

-- A signing secret is recoverable (the worker signs with it), unlike a
-- password, so it cannot be hashed; events name it by `secret_id` only.
CREATE TABLE webhook_secrets (
    secret_id uuid PRIMARY KEY,
    webhook_id uuid NOT NULL,
    secret text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_secrets_by_webhook ON webhook_secrets (webhook_id);

-- One row per (event, subscribed webhook), written by the worker's
-- consumer before it acknowledges the message. A claimed row's
-- next_attempt_at is its lease: a worker that dies mid-delivery leaves it
-- due again when the lease runs out.
CREATE TABLE webhook_deliveries (
    delivery_id uuid PRIMARY KEY,
    webhook_id uuid NOT NULL,
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    global_position bigint NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    -- Failed attempts since the delivery was (re)scheduled; N of them make it dead.
    failures integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    UNIQUE (webhook_id, event_id)
);

CREATE INDEX webhook_deliveries_due
    ON webhook_deliveries (webhook_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_recent ON webhook_deliveries (webhook_id, created_at DESC);

CREATE TABLE webhook_delivery_attempts (
    attempt_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries ON DELETE CASCADE,
    started_at timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    status_code integer,
    error text,
    outcome text NOT NULL CHECK (outcome IN ('delivered', 'failed', 'dead'))
);

CREATE INDEX webhook_delivery_attempts_by_delivery
    ON webhook_delivery_attempts (delivery_id, attempt_id);
