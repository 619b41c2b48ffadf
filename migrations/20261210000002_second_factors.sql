-- A person's second factors. `totp_factors` holds each authenticator app's
-- secret, encrypted by the api with the operator's key
-- (SECOND_FACTOR_KEY_FILE): a row is written when enrolment begins and
-- becomes enabled in the transaction that appends
-- `second_factor.totp_enabled`; `last_used_step` is the newest time step
-- a code was accepted for, so no code is accepted twice, by any process.
-- `recovery_codes` holds the digests `second_factor.recovery_codes_generated`
-- carries. `login_challenges` are the short-lived, single-use proofs that a
-- password was right, asked for by the second step of a login.
--
-- Names and paths are the domain's (`SecondFactorEvent::*`; infra's
-- sql_contract test checks them). `user.erased` takes all of it.

CREATE TABLE totp_factors
(
    factor_id      uuid PRIMARY KEY,
    user_id        uuid        NOT NULL,
    -- 12-byte nonce, then the ChaCha20-Poly1305 ciphertext and tag.
    secret         bytea       NOT NULL,
    enabled        boolean     NOT NULL DEFAULT false,
    last_used_step bigint,
    created_at     timestamptz NOT NULL DEFAULT now(),
    enabled_at     timestamptz
);

CREATE INDEX totp_factors_user_id_idx ON totp_factors (user_id);

CREATE TABLE recovery_codes
(
    user_id   uuid NOT NULL,
    code_hash text NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE login_challenges
(
    -- Lowercase hex SHA-256 of the challenge handed to the client.
    challenge_hash text PRIMARY KEY,
    user_id        uuid        NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);

CREATE INDEX login_challenges_user_id_idx ON login_challenges (user_id);

CREATE FUNCTION apply_second_factor_event() RETURNS trigger
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
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER apply_second_factor_event
    AFTER INSERT
    ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'second_factor')
EXECUTE FUNCTION apply_second_factor_event();

CREATE FUNCTION forget_second_factors() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    DELETE FROM totp_factors WHERE user_id = NEW.aggregate_id::uuid;
    DELETE FROM recovery_codes WHERE user_id = NEW.aggregate_id::uuid;
    DELETE FROM login_challenges WHERE user_id = NEW.aggregate_id::uuid;
    RETURN NULL;
END;
$$;

CREATE TRIGGER forget_second_factors
    AFTER INSERT
    ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'user' AND NEW.event_type = 'user.erased')
EXECUTE FUNCTION forget_second_factors();
