-- The standing verification behind `GET /v1/audit/verify`
-- (`app::integrity::background`): one row, the state the background
-- verifier resumes from (the running hash up to where it stopped, what it
-- found) and whether someone asked for a full pass (`POST /v1/audit/verify`).
CREATE TABLE audit_verification
(
    singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    state               jsonb       NOT NULL,
    full_pass_requested boolean     NOT NULL DEFAULT false,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
