-- Passkeys (WebAuthn credentials) as a second factor, and the record of
-- when a person last proved a second factor in each session (step-up).
--
-- `passkeys` holds each credential as the api's WebAuthn library keeps it
-- (public key, counter: nothing secret), written disabled when a
-- registration is verified and enabled in the transaction that appends
-- `second_factor.passkey_registered`. `webauthn_ceremonies` keeps the
-- state between a ceremony's two requests (registration, or a step-up's
-- assertion; a login's rides on its `login_challenges` row), under a
-- digest of the handle given to the client, single-use and short-lived.
-- `second_factor_verifications` is the newest `second_factor.verified` of
-- each session: what a sensitive command's step-up check reads.
--
-- Names and paths are the domain's (`SecondFactorEvent::*`; infra's
-- sql_contract test checks them). `user.erased` takes all of it.

CREATE TABLE passkeys
(
    factor_id    uuid PRIMARY KEY,
    user_id      uuid        NOT NULL,
    -- The credential's id as the browser names it (base64url), so that a
    -- credential is registered to one factor only.
    credential_id text       NOT NULL UNIQUE,
    credential   jsonb       NOT NULL,
    name         text        NOT NULL,
    enabled      boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    enabled_at   timestamptz,
    last_used_at timestamptz
);

CREATE INDEX passkeys_user_id_idx ON passkeys (user_id);

CREATE TABLE webauthn_ceremonies
(
    -- Lowercase hex SHA-256 of the handle handed to the client.
    ceremony_hash text PRIMARY KEY,
    user_id       uuid        NOT NULL,
    purpose       text        NOT NULL CHECK (purpose IN ('registration', 'step_up')),
    state         jsonb       NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);

CREATE INDEX webauthn_ceremonies_user_id_idx ON webauthn_ceremonies (user_id);

ALTER TABLE login_challenges
    ADD COLUMN passkey_state jsonb;

CREATE TABLE second_factor_verifications
(
    session_id  uuid PRIMARY KEY,
    user_id     uuid        NOT NULL,
    method      text        NOT NULL,
    verified_at timestamptz NOT NULL
);

CREATE INDEX second_factor_verifications_user_id_idx ON second_factor_verifications (user_id);

-- Every factor that makes a login ask for a second step.
CREATE VIEW enabled_second_factors AS
SELECT user_id, factor_id, 'totp' AS kind
FROM totp_factors
WHERE enabled
UNION ALL
SELECT user_id, factor_id, 'passkey' AS kind
FROM passkeys
WHERE enabled;

CREATE OR REPLACE FUNCTION apply_second_factor_event() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    person uuid := NEW.aggregate_id::uuid;
BEGIN
    IF NEW.event_type = 'second_factor.totp_enabled' THEN
        UPDATE totp_factors
        SET enabled = true, enabled_at = NEW.recorded_at
        WHERE factor_id = (NEW.payload -> 'TotpEnabled' ->> 'factor_id')::uuid
          AND user_id = person;
    ELSIF NEW.event_type = 'second_factor.totp_removed' THEN
        DELETE FROM totp_factors
        WHERE factor_id = (NEW.payload -> 'TotpRemoved' ->> 'factor_id')::uuid;
    ELSIF NEW.event_type = 'second_factor.recovery_codes_generated' THEN
        DELETE FROM recovery_codes WHERE user_id = person;
        INSERT INTO recovery_codes (user_id, code_hash)
        SELECT person, code
        FROM regexp_split_to_table(NEW.payload -> 'RecoveryCodesGenerated' ->> 'code_hashes', ' ') AS code
        WHERE code <> ''
        ON CONFLICT DO NOTHING;
    ELSIF NEW.event_type = 'second_factor.recovery_code_used' THEN
        UPDATE recovery_codes
        SET used_at = NEW.recorded_at
        WHERE user_id = person
          AND code_hash = NEW.payload -> 'RecoveryCodeUsed' ->> 'code_hash';
    ELSIF NEW.event_type = 'second_factor.passkey_registered' THEN
        UPDATE passkeys
        SET enabled = true, enabled_at = NEW.recorded_at
        WHERE factor_id = (NEW.payload -> 'PasskeyRegistered' ->> 'factor_id')::uuid
          AND user_id = person;
    ELSIF NEW.event_type = 'second_factor.passkey_removed' THEN
        DELETE FROM passkeys
        WHERE factor_id = (NEW.payload -> 'PasskeyRemoved' ->> 'factor_id')::uuid;
    ELSIF NEW.event_type = 'second_factor.verified' THEN
        INSERT INTO second_factor_verifications (session_id, user_id, method, verified_at)
        VALUES ((NEW.payload -> 'Verified' ->> 'session_id')::uuid, person,
                NEW.payload -> 'Verified' ->> 'method', NEW.recorded_at)
        ON CONFLICT (session_id) DO UPDATE
            SET method = EXCLUDED.method, verified_at = EXCLUDED.verified_at
        WHERE second_factor_verifications.user_id = person;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION forget_second_factors() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    DELETE FROM totp_factors WHERE user_id = NEW.aggregate_id::uuid;
    DELETE FROM recovery_codes WHERE user_id = NEW.aggregate_id::uuid;
    DELETE FROM login_challenges WHERE user_id = NEW.aggregate_id::uuid;
    DELETE FROM passkeys WHERE user_id = NEW.aggregate_id::uuid;
    DELETE FROM webauthn_ceremonies WHERE user_id = NEW.aggregate_id::uuid;
    DELETE FROM second_factor_verifications WHERE user_id = NEW.aggregate_id::uuid;
    RETURN NULL;
END;
$$;
