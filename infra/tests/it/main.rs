//! infra against a real, migrated PostgreSQL.

mod sql_contract;
