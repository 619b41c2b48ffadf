-- An email claim's value becomes the address's canonical form
-- (domain::Email::uniqueness_key: the domain per UTS #46 in ASCII, the local
-- part NFKC-normalized and case-folded). SQL cannot compute it, so the
-- trigger no longer derives the value from the event's payload: it confirms
-- the pending claim of the event's user: app::claims lets an owner start a
-- claim only while it has no other fresh pending one in the scope.
--
-- The claims and users_view.email_key written before keep their old form
-- (the address lowercased) until infra::email_keys rekeys them, once, after
-- these migrations (infra::db::migrate).

-- Set on a claim left in its old form because another account holds the
-- canonical form: both accounts existed before it came in. The value stays
-- reserved for that owner, and login still reaches it by its old form.
ALTER TABLE unique_claims ADD COLUMN canonical_value text;

CREATE INDEX unique_claims_canonical_value ON unique_claims (scope, canonical_value)
    WHERE canonical_value IS NOT NULL;

CREATE OR REPLACE FUNCTION confirm_user_email_claim() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    new_value text;
BEGIN
    IF NEW.event_type NOT IN ('user.registered', 'user.email_changed') THEN
        RETURN NULL;
    END IF;
    -- The newest: an older one can only be stale, left by a crashed process.
    UPDATE unique_claims SET confirmed = true
     WHERE scope = 'user.email' AND owner_id = NEW.aggregate_id AND NOT confirmed
       AND value = (SELECT value FROM unique_claims
                     WHERE scope = 'user.email' AND owner_id = NEW.aggregate_id AND NOT confirmed
                     ORDER BY claimed_at DESC LIMIT 1)
    RETURNING value INTO new_value;
    IF new_value IS NULL THEN
        RETURN NULL;
    END IF;
    -- A change of email frees the previous address in the same transaction.
    DELETE FROM unique_claims
     WHERE scope = 'user.email' AND owner_id = NEW.aggregate_id AND value <> new_value AND confirmed;
    RETURN NULL;
END;
$$;

-- Data migrations written in Rust (run by infra::db::migrate after the SQL
-- ones), each applied once.
CREATE TABLE data_migrations
(
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
