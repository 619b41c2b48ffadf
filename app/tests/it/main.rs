//! Integration tests of the use cases against a real PostgreSQL.

mod verify_store;
