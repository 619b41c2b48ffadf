-- Set-based rules (an email is used by one user at most) cannot be checked
-- inside one aggregate. A claim is inserted before the command runs and
-- deleted if the command fails. It becomes confirmed in the transaction that
-- appends the event using it (trigger below), so a claim left pending by a
-- crashed process can be told apart and taken over after a while.
CREATE TABLE unique_claims
(
    scope      text        NOT NULL,
    value      text        NOT NULL,
    owner_id   text        NOT NULL,
    confirmed  boolean     NOT NULL DEFAULT false,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, value)
);

CREATE INDEX unique_claims_owner ON unique_claims (scope, owner_id);

CREATE FUNCTION confirm_user_email_claim() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    new_email text;
BEGIN
    IF NEW.event_type = 'user.registered' THEN
        new_email := lower(NEW.payload -> 'Registered' ->> 'email');
    ELSIF NEW.event_type = 'user.email_changed' THEN
        new_email := lower(NEW.payload -> 'EmailChanged' ->> 'email');
    ELSE
        RETURN NULL;
    END IF;
    UPDATE unique_claims SET confirmed = true
     WHERE scope = 'user.email' AND value = new_email AND owner_id = NEW.aggregate_id;
    -- A change of email frees the previous address in the same transaction.
    DELETE FROM unique_claims
     WHERE scope = 'user.email' AND owner_id = NEW.aggregate_id AND value <> new_email AND confirmed;
    RETURN NULL;
END;
$$;

CREATE TRIGGER user_email_claims
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'user')
    EXECUTE FUNCTION confirm_user_email_claim();
