-- Erasure (user.erased): app::erasure scrubs the metadata of every event a
-- person caused, found by its actor; this index finds them without reading
-- the whole event store. users_view.status gains the value 'erased' (the
-- column has no check to change).
CREATE INDEX events_actor_id_idx ON events ((metadata ->> 'actor_id'));
