-- Failed logins per client address, recorded by the api for every failed
-- credential check (unknown email, wrong password, wrong current password),
-- so that an address is blocked the same way whether the emails it tries
-- exist or not. `address` is the client's IPv4 address, or its IPv6 /56.
-- Rows older than the counting window are pruned as the address fails again.
CREATE TABLE login_address_failures
(
    address   text        NOT NULL,
    failed_at timestamptz NOT NULL
);

CREATE INDEX login_address_failures_address_failed_at_idx
    ON login_address_failures (address, failed_at);

-- login_ip_blocks.ip now holds the same address key; the worker no longer
-- counts failures per address.
COMMENT ON COLUMN login_ip_blocks.ip IS 'client address key: IPv4 address or IPv6 /56 network';

-- Nothing counts login_failures by address any more.
DROP INDEX login_failures_ip_failed_at_idx;
